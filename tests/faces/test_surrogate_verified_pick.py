"""The second pass's pick checked by verification itself (issue-11n10, ``verified_pick``): the gateway's
``verify_face`` run on a candidate's crops, and the pick falling back, in the ladder's ranking, past a
candidate verification would fail, to one it passes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_donors import DonorChoice
from anonymizer.engines.surrogate_ladder import CROP_MARGIN, _Attempt
from anonymizer.faces import pipeline
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.verify import VerifySettings
from anonymizer.plans import Region
from tests.faces.conftest import TEST_IDS, load_rgb

NOSE = (Region.NOSE,)
GATEWAY = VerifySettings()


def _aligned(engine: SurrogateEngine, name: str):  # type: ignore[no-untyped-def]
    image = load_rgb(name)
    records = pipeline._align_all(
        [image], [detect_faces(image)], engine.crop_size, NOSE, pipeline.PipelineSettings()
    )
    return records[0].aligned


def _attempt(score: tuple[float, ...], crops: list | None = None, name: str = "") -> _Attempt:
    choice = DonorChoice(identities=(name,), tier=0)
    return _Attempt(
        choice, 0, crops if crops is not None else [np.zeros((2, 2, 3), np.uint8)], [], False, score
    )


def test_verification_on_the_crop_fails_the_patient_and_passes_a_stranger(bank_path: Path) -> None:
    """The patient's own crop matches him (threshold + margin); another person's crop passes without a
    population, passes when a reference identity lies nearer to it than the patient, and fails the
    population test when every reference identity lies farther (a linkage attacker's first guess)."""
    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))
    patient = _aligned(engine, f"{TEST_IDS[0]}_03")
    stranger = _aligned(engine, f"{TEST_IDS[1]}_03")
    assert patient.descriptor is not None and stranger.descriptor is not None
    assert not engine._would_verify([patient], _attempt((0.0,), [patient.image]))
    assert engine._would_verify([patient], _attempt((0.0,), [stranger.image]))
    near = replace(_attempt((0.0,), [stranger.image]), reference=[stranger.descriptor[None]])
    assert engine._would_verify([patient], near)
    far = replace(_attempt((0.0,), [stranger.image]), reference=[(stranger.descriptor + 5.0)[None]])
    assert not engine._would_verify([patient], far)


class _Fake:
    """_finished and _would_verify stand-ins: which attempts verify, and each finish's pass."""

    def __init__(self, engine: SurrogateEngine, verifies: set[str]) -> None:
        self.engine, self.verifies, self.finished, self.margins = engine, verifies, [], []

    def finish(self, attempt, faces, common, preserve):  # type: ignore[no-untyped-def]
        self.finished.append((attempt.choice.identities[0], self.engine._bounding))
        return attempt

    def verify(self, faces, attempt, settings=GATEWAY) -> bool:  # type: ignore[no-untyped-def]
        self.margins.append((attempt.choice.identities[0], settings.margin))
        return attempt.choice.identities[0] in self.verifies


def _pick(bank_path: Path, monkeypatch: pytest.MonkeyPatch, verifies: set[str], pick_bounded: bool):
    """Main's pass: a (0.69, likely to verify), b (0.54); the bounded pass: c (passed, 0.84), d (0.66,
    likely to verify), e (climbed no rung). The ladder's pick: c (bounded) or a (main's)."""
    engine = SurrogateEngine(SurrogateSettings(verified_pick=1), load_bank(bank_path))
    fake = _Fake(engine, verifies)
    monkeypatch.setattr(engine, "_finished", fake.finish)
    monkeypatch.setattr(engine, "_would_verify", fake.verify)
    a = _attempt((0.0, 1.0, 1.0, 1.0, 1.0, 3.0, 0.69), name="a")
    b = _attempt((0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.54), name="b")
    c = replace(_attempt((1.0, 1.0, 1.0, 1.0, 1.0, 36.0, 0.84), name="c"), passed=True)
    d = _attempt((0.0, 1.0, 1.0, 1.0, 1.0, 3.0, 0.66), name="d")
    e = _attempt((-1.0,), crops=[], name="e")
    pick = c if pick_bounded else a
    engine._bounding = pick_bounded
    pool = [(a, False), (b, False), (c, True), (d, True), (e, True)]
    chosen = engine._verified(pick, pool, [], None, NOSE)  # type: ignore[arg-type]
    return chosen.choice.identities[0], engine._bounding, fake.finished


def test_a_pick_that_verifies_is_kept_and_finished_once(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _pick(bank_path, monkeypatch, {"a", "c", "d"}, True) == ("c", True, [("c", True)])


def test_a_pick_verification_fails_gives_way_to_the_next_in_the_ladders_ranking(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """067's case: the bounded pass's passed rung fails verification; main's 0.69 attempt (ranked above the
    bounded 0.66 one) verifies and is finished as main's pass made it (no bound)."""
    name, bounding, finished = _pick(bank_path, monkeypatch, {"a", "d"}, True)
    assert (name, bounding) == ("a", False)
    assert finished == [("c", True), ("a", False)]


def test_the_pick_is_checked_at_verifications_margin_a_replacement_with_more(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = SurrogateEngine(SurrogateSettings(verified_pick=1), load_bank(bank_path))
    fake = _Fake(engine, {"a"})
    monkeypatch.setattr(engine, "_finished", fake.finish)
    monkeypatch.setattr(engine, "_would_verify", fake.verify)
    a = _attempt((0.0, 1.0, 1.0, 1.0, 1.0, 3.0, 0.69), name="a")
    c = replace(_attempt((1.0, 1.0, 1.0, 1.0, 1.0, 36.0, 0.84), name="c"), passed=True)
    engine._verified(c, [(a, False), (c, True)], [], None, NOSE)  # type: ignore[arg-type]
    gateway = VerifySettings().margin
    assert fake.margins == [("c", gateway), ("a", pytest.approx(gateway + CROP_MARGIN))]


def test_the_ranking_goes_on_across_passes_and_skips_a_set_without_rungs(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, bounding, finished = _pick(bank_path, monkeypatch, {"d", "e"}, True)
    assert (name, bounding) == ("d", True)
    assert finished == [("c", True), ("a", False), ("d", True)]


def test_when_nothing_verifies_the_ladders_pick_is_used(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail-closed: verification then quarantines it; the finish and the pass are the pick's."""
    name, bounding, finished = _pick(bank_path, monkeypatch, set(), False)
    assert (name, bounding) == ("a", False)
    assert [n for n, _ in finished] == ["a", "c", "d", "b"]


@pytest.mark.parametrize(
    ("setting", "first_passes", "called"), [(0, False, False), (1, True, False), (1, False, True)]
)
def test_only_a_group_whose_first_pass_passes_no_set_is_checked(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch, setting: int, first_passes: bool, called: bool
) -> None:
    """Off, or a first pass that passes a set (no second pass): the ladder's pick finished as before."""
    settings = SurrogateSettings(verified_pick=setting, shape_bound=1.0, region_kept=(), nose_kept=())
    engine = SurrogateEngine(settings, load_bank(bank_path))  # no sibling: the overrides are given here
    face = _aligned(engine, f"{TEST_IDS[0]}_03")
    crop = np.zeros_like(face.image)
    passes = iter([first_passes, True])

    def draw(faces, seed, preserve, patient, common):  # type: ignore[no-untyped-def]
        passed, donor = next(passes), sorted(engine.bank.by_identity())[0]
        attempt = _attempt((float(passed),), [crop], donor)
        attempt = replace(attempt, passed=passed)
        engine._pass_results = [attempt]
        return attempt, common

    seen: list[str] = []
    monkeypatch.setattr(engine, "_draw_sets", draw)
    monkeypatch.setattr(engine, "_finished", lambda a, *rest: seen.append("finished") or a)
    monkeypatch.setattr(engine, "_verified", lambda pick, *rest: seen.append("verified") or pick)
    engine.anonymize([face], 7, NOSE)
    assert seen == (["verified"] if called else ["finished"])


def test_level_two_adds_the_rungs_read_beyond_verifications_distance(bank_path: Path) -> None:
    """Off or 1: no rung pool; 2: the rungs whose nearest output read beyond 0.65 - 0.02, with their pass."""
    engine = SurrogateEngine(SurrogateSettings(verified_pick=2), load_bank(bank_path))
    near, far, empty = (_attempt((0.0, 0.0, 1.0, 1.0, 1.0, 0.0, x)) for x in (0.62, 0.64, 0.70))
    empty = replace(empty, crops=[])
    assert engine._near_threshold() == []
    engine._rungs_tried = [(near, False), (far, True), (empty, True)]
    assert engine._near_threshold() == [(far, True)]


def test_the_crop_check_is_verification_with_more_margin_never_less(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every face of the group checked, with the gateway's settings unless told (a replacement: the margin
    widened by CROP_MARGIN, the crop reading a little farther from the patient than the pasted photo)."""
    import anonymizer.engines.surrogate_ladder as ladder
    from anonymizer.faces.verify import FaceCheck

    seen: list[VerifySettings] = []

    def spy(original, output, landmarks, settings, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(settings)
        return FaceCheck(True, 0.7, True)

    monkeypatch.setattr(ladder, "verify_face", spy)
    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))
    face = _aligned(engine, f"{TEST_IDS[0]}_03")
    assert engine._would_verify([face, face], _attempt((0.0,), [face.image, face.image]))
    assert engine._would_verify([face], _attempt((0.0,), [face.image]), ladder.CROP_VERIFY)
    gateway = VerifySettings()
    assert seen[:2] == [gateway, gateway] and len(seen) == 3
    assert seen[2].threshold == gateway.threshold and seen[2].population_rank == gateway.population_rank
    assert seen[2].margin == pytest.approx(gateway.margin + ladder.CROP_MARGIN) and ladder.CROP_MARGIN > 0


@pytest.mark.parametrize(("sets", "second"), [(0, 6), (12, 12)])
def test_bound_donor_sets_applies_to_the_second_pass_only(bank_path: Path, sets: int, second: int) -> None:
    engine = SurrogateEngine(SurrogateSettings(donor_sets=6, bound_donor_sets=sets), load_bank(bank_path))
    assert engine._sets(NOSE) == 6
    engine._bounding = True
    assert engine._sets(NOSE) == second
