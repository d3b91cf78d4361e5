"""The patient's own sex estimate (``sex_estimate``, issue-11e6): with the eyes kept the self-check reads
sex by the donors' centroids, and the estimate used to be theirs too. London-set 067, a man, lay on the
centroids' female side: every donor set was of women and both outputs read as a woman, which no sex guard
can see (the self-check compares outputs with the estimate). The bank's probe calls him right."""

from __future__ import annotations

import numpy as np

from anonymizer.donors import DonorBank, DonorPhoto
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_donors import apparent_sex
from anonymizer.engines.surrogate_sex import SexProbe
from anonymizer.plans import Region


def _bank(n: int = 24) -> DonorBank:
    """Descriptors where sex lies along dimension 0, plus a loud dimension 1 on which the two groups' means
    differ too: the centroids' line and the probe's direction are not parallel."""
    rng = np.random.default_rng(5)
    photos = []
    for i in range(n):
        sex = "M" if i % 2 else "F"
        desc = rng.normal(0.0, 0.02, 128)
        desc[0] += 0.1 if sex == "M" else -0.1
        desc[1] += rng.normal(0.0, 0.4) + (0.3 if sex == "F" else -0.3)
        photos.append(
            DonorPhoto(f"id{i:02d}", np.zeros((68, 2)), np.zeros((4, 4, 3), np.uint8), desc, np.zeros(3),
                       np.zeros(2), sex, 30.0)
        )
    return DonorBank(np.zeros((68, 2)), photos, 4)


def _disputed(bank: DonorBank) -> np.ndarray:
    """A descriptor the centroids call female and the probe male: off their midpoint a little to the women's
    side of the centroids' line, and far along the probe's male direction across that line."""
    probe = SexProbe.fit(bank.photos)
    assert probe is not None
    women = np.mean([p.descriptor for p in bank.photos if p.sex == "F"], axis=0)
    men = np.mean([p.descriptor for p in bank.photos if p.sex == "M"], axis=0)
    line = (men - women) / np.linalg.norm(men - women)
    across = probe.direction() - (probe.direction() @ line) * line
    desc = (women + men) / 2 - 0.01 * line
    desc = desc + across * (1.0 - probe.score(desc)) / (probe.weights @ across)  # probe score +1
    assert apparent_sex(desc, bank) == "F" and probe.call(desc) == "M"
    return desc


def test_the_estimate_is_the_probes_when_named_though_the_self_check_reads_centroids() -> None:
    bank = _bank()
    desc = _disputed(bank)
    engine = SurrogateEngine(SurrogateSettings(sex_reader="centroids", sex_estimate="probe"), bank)
    reader = engine._profile_sex_reader()
    assert reader is not None and reader(desc) == "M"
    assert engine._read_sex(desc) == "F"  # the self-check still reads by the centroids
    plain = SurrogateEngine(SurrogateSettings(sex_reader="centroids"), bank)
    assert plain._profile_sex_reader() is None  # unset: the centroids' estimate, as before


def test_the_probe_reader_estimates_by_the_probe_as_before() -> None:
    bank = _bank()
    desc = _disputed(bank)
    reader = SurrogateEngine(SurrogateSettings(sex_reader="probe"), bank)._profile_sex_reader()
    assert reader is not None and reader(desc) == "M"


def test_the_eyes_kept_estimate_is_the_probes_by_default() -> None:
    bank = _bank()
    desc = _disputed(bank)
    eyes = SurrogateEngine(SurrogateSettings(), bank)._for_regions((Region.EYES,))
    assert eyes.settings.sex_reader == "centroids"  # region_kept: the self-check's reader unchanged
    reader = eyes._profile_sex_reader()
    assert reader is not None and reader(desc) == "M"


def test_the_nose_kept_estimate_is_the_probes_by_default() -> None:
    """London-set 067 with the nose kept (issue-11s11): the centroids' estimate made his donors women."""
    bank = _bank()
    desc = _disputed(bank)
    nose = SurrogateEngine(SurrogateSettings(), bank)._for_regions((Region.NOSE,))
    assert nose.settings.sex_reader == "centroids"  # region_kept: the self-check's reader unchanged
    assert nose._read_sex(desc) == "F"
    reader = nose._profile_sex_reader()
    assert reader is not None and reader(desc) == "M"
    off = SurrogateEngine(SurrogateSettings(nose_kept=()), bank)._for_regions((Region.NOSE,))
    assert off._profile_sex_reader() is None  # without it: the centroids' estimate, as before


def test_eyes_and_nothing_kept_remake_a_rung_read_as_the_other_sex_with_further_shape_steps() -> None:
    """London-set 083 (a woman, eyes kept) and 013 (a woman, nothing kept) read as men on nearly every rung:
    both settings now have mouth_kept's further keyed shape steps (surrogate_ladder._other_step)."""
    engine = SurrogateEngine(SurrogateSettings(), _bank())
    assert engine._for_regions((Region.EYES,)).settings.spread_shape_variants == 4
    assert engine._for_regions(()).settings.spread_shape_variants == 4
    assert engine._for_regions((Region.MOUTH,)).settings.spread_shape_variants == 4
    assert engine._for_regions((Region.NOSE,)).settings.spread_shape_variants == 0  # nose kept: unchanged
