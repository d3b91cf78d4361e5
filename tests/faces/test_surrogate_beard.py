"""No beard shadow on women (issue-11n4): the anti-face's darkening over the lower face of a light-skinned
woman is cut to ``anti_beard``'s share; a man, dark skin or the setting off leave the texture as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_synthesis import beard_area, beardless
from anonymizer.faces.regions import interocular
from anonymizer.plans import Region


def _at(weight: np.ndarray, point: np.ndarray) -> float:
    return float(weight[round(float(point[1])), round(float(point[0])), 0])


def test_the_beard_area_holds_chin_upper_lip_and_cheeks_not_forehead_or_lids(bank_path: Path) -> None:
    bank = load_bank(bank_path)
    ref, iod = bank.reference, interocular(bank.reference)
    area = beard_area(ref, bank.crop_size)
    chin = ref[8] - np.array([0.0, 0.25 * iod])
    upper_lip = (ref[33] + ref[51]) / 2
    cheek = (ref[3] + ref[31]) / 2  # between the jaw and the nose's base
    forehead = (ref[21] + ref[22]) / 2 - np.array([0.0, 0.4 * iod])
    assert min(_at(area, chin), _at(area, upper_lip), _at(area, cheek)) > 0.9
    assert _at(area, forehead) < 0.05 and _at(area, ref[37]) < 0.05  # an upper lid


def test_a_light_skinned_woman_loses_the_darkening_over_her_lower_face_only(bank_path: Path) -> None:
    engine = SurrogateEngine(SurrogateSettings(anti_beard=0.0), load_bank(bank_path))
    size = engine.bank.crop_size
    mix = np.full((size, size, 3), 150.0, np.float32)
    anti = np.zeros((size, size, 1), np.float32)
    split = int(engine.bank.reference[30, 1])  # the nose's tip
    anti[:split], anti[split:] = 20.0, -20.0  # lighter above the nose's tip, darker below
    texture = mix + anti
    out = engine._beardless(texture, anti, woman=True)
    area = beard_area(engine.bank.reference, size)[..., 0]
    lower = (area > 0.99) & (np.arange(size)[:, None] >= split)
    upper = (area > 0.99) & (np.arange(size)[:, None] < split)
    assert lower.any() and upper.any()
    assert np.allclose(out[lower], 150.0, atol=0.5)  # darkening (20 levels) gone in the area
    assert np.allclose(out[upper], 170.0)  # lightening kept
    assert np.allclose(out[area < 1e-4], texture[area < 1e-4], atol=0.01)  # outside the area: as it was
    assert engine._beardless(texture, anti, woman=False) is texture
    flipped = SurrogateEngine(SurrogateSettings(anti_beard=-1.0), engine.bank)._beardless(texture, anti, True)
    assert np.allclose(flipped[lower], 170.0, atol=1.0)  # negative: darkening turned into lightening


def test_only_a_light_skinned_woman_with_the_setting_on_is_beardless() -> None:
    on, off = SurrogateSettings(anti_beard=0.0, anti_beard_ita=28.0), SurrogateSettings()
    assert beardless(("F", 50.0), on)
    assert not beardless(("F", -35.0), on)  # dark skin: the lower face's darkening is shading there
    assert not beardless(("M", 50.0), on) and not beardless(("", 50.0), on)
    assert not beardless(("F", 50.0), off)


def test_the_nose_kept_override_reaches_the_nose_only(bank_path: Path) -> None:
    engine = SurrogateEngine(SurrogateSettings(nose_kept=(("anti_beard", 0.0),)), load_bank(bank_path))
    assert engine._for_regions((Region.NOSE,)).settings.anti_beard == 0.0
    for kept in ((), (Region.MOUTH,), (Region.EYES,)):
        assert engine._for_regions(kept).settings.anti_beard == 1.0
