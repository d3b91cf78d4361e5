"""Fidelity of the surrogate's face where a region is kept (issue 11z): the synthetic outline never sits
inside the patient's (a contour and jaw edges inside the face, a smaller dlib box), a flash takes the skin's
colour back, and the lids are no redder than the patient's (fair donors' pink lids)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines import surrogate_synthesis
from anonymizer.engines.surrogate import Strength, SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_colour import (
    _lid_masks,
    highlight_level,
    lid_colours,
    match_lids,
    skin_light,
    tame_highlights,
)
from anonymizer.engines.surrogate_target import outline_floor
from anonymizer.faces import align, pipeline
from anonymizer.faces.detect import detect_faces, hog_detect
from anonymizer.faces.regions import face_outline
from anonymizer.plans import Region

PUSH_RUNG = Strength(2.1, 3.4, 1.0, 1.4, 3.6)  # the ladder's last rung: outline overshoot, kept nose or eyes


def _crop(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lm = detect_faces(image)[0].landmarks
    al = align.canonical_alignment(lm, 512)
    return align.crop(image, al), align.apply(al.matrix, lm)


def _inward(target: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Per jaw point of ``target``, how far (pixels) it lies inside the patient's outline (< 0: outside)."""
    outline = face_outline(patient).astype(np.float32)
    return np.array([cv2.pointPolygonTest(outline, (float(x), float(y)), True) for x, y in target[:17]])


def test_outline_floor_lifts_an_inner_jaw_onto_the_patients_and_keeps_a_wider_one(
    pair: list[np.ndarray],
) -> None:
    _, patient = _crop(pair[0])
    centre = patient[27:36].mean(0)
    narrow = patient.copy()
    narrow[:17] = centre + 0.85 * (patient[:17] - centre)
    assert _inward(narrow, patient).min() > 10.0
    floored = outline_floor(narrow, patient, 0.0)
    assert _inward(floored, patient).max() < 1.0
    assert np.array_equal(floored[17:], narrow[17:])  # inner points untouched
    wide = patient.copy()
    wide[:17] = centre + 1.1 * (patient[:17] - centre)
    assert np.allclose(outline_floor(wide, patient, 0.0), wide)


def _targets(bank_path: Path, image: np.ndarray, floor: float, monkeypatch: pytest.MonkeyPatch) -> list:
    settings = SurrogateSettings(ladder=(PUSH_RUNG,), donor_sets=1, k=5, k_min=3, outline_floor=floor)
    engine = SurrogateEngine(settings, load_bank(bank_path))
    records = pipeline._align_all(
        [image], [detect_faces(image)], engine.crop_size, (Region.EYES,), pipeline.PipelineSettings()
    )
    targets: list[np.ndarray] = []
    poisson = surrogate_synthesis._poisson

    def spy(synth, face, preserve, landmarks, *rest):  # type: ignore[no-untyped-def]
        targets.append(landmarks)
        return poisson(synth, face, preserve, landmarks, *rest)

    monkeypatch.setattr(surrogate_synthesis, "_poisson", spy)
    engine.anonymize([records[0].aligned], 5, (Region.EYES,))
    return [targets[0], records[0].aligned.landmarks]


def test_with_the_eyes_kept_the_synthetic_outline_is_not_inside_the_patients(
    bank_path: Path, pair: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    target, patient = _targets(bank_path, pair[0], 0.0, monkeypatch)
    assert _inward(target, patient).max() < 1.0
    monkeypatch.undo()
    target, patient = _targets(bank_path, pair[0], -1.0, monkeypatch)  # off: the overshoot rung narrows it
    assert _inward(target, patient).max() > 3.0


def test_with_the_eyes_kept_dlibs_box_stays_the_originals(bank_path: Path, pair: list[np.ndarray]) -> None:
    eyes_kept = (*SurrogateSettings().eyes_kept, ("donor_sets", 2))  # the default's aim, this test's 2 sets
    settings = SurrogateSettings(donor_sets=2, k=5, k_min=3, eyes_kept=eyes_kept)
    engine = SurrogateEngine(settings, load_bank(bank_path))
    results = pipeline.run_group(pair, engine, 11, (Region.EYES,))
    for image, result in zip(pair, results, strict=True):
        assert result.image is not None
        before, after = hog_detect(image), hog_detect(result.image)
        assert len(before) == len(after) == 1
        (a0, b0, a1, b1), (c0, d0, c1, d1) = before[0], after[0]
        inter = max(0, min(a1, c1) - max(a0, c0)) * max(0, min(b1, d1) - max(b0, d0))
        union = (a1 - a0) * (b1 - b0) + (c1 - c0) * (d1 - d0) - inter
        assert inter / union >= 0.9


def test_a_colourless_flash_takes_the_skins_chroma_back(pair: list[np.ndarray]) -> None:
    crop, lm = _crop(pair[0])
    light = skin_light(crop, lm)
    level = highlight_level(crop, lm, light)
    assert light is not None
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    spot = np.zeros(crop.shape[:2], np.uint8)
    forehead = (int(lm[27, 0]), int(lm[19, 1] - 0.25 * (lm[33, 1] - lm[27, 1])))
    cv2.circle(spot, forehead, 20, 1, -1)
    inside = spot > 0
    lab[inside, 0] = np.minimum(light[inside][:, 0] + 3 * level, 250)  # a white, colourless flash
    lab[inside, 1:] = 128.0
    flash = cv2.cvtColor(lab.astype(np.uint8), cv2.COLOR_LAB2RGB)

    def chroma_gap(image: np.ndarray) -> float:
        got = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
        return float(np.abs(got[inside][:, 1:] - light[inside][:, 1:]).mean())

    assert chroma_gap(tame_highlights(flash, lm, light, level)) > 6.0  # darkened only: still colourless
    recoloured = tame_highlights(flash, lm, light, level, chroma=1.0)
    assert chroma_gap(recoloured) < 2.0
    # skin under half the patient's highlight level keeps its colour
    rise = cv2.cvtColor(flash, cv2.COLOR_RGB2LAB).astype(np.float32)[..., 0] - light[..., 0]
    darkened = tame_highlights(flash, lm, light, level)
    assert np.abs(recoloured.astype(int) - darkened.astype(int))[rise < 0.5 * level].max() <= 1


def test_red_lids_are_lowered_to_the_patients_redness_and_pale_ones_stay(pair: list[np.ndarray]) -> None:
    crop, lm = _crop(pair[0])
    want = lid_colours(crop, lm)
    rings = _lid_masks(lm, crop.shape[0])
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    for ring in rings:
        lab[ring, 1] += 14.0  # pink-red lids
    red = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    out = cv2.cvtColor(match_lids(red, lm, want), cv2.COLOR_RGB2LAB).astype(np.float32)
    for ring, colour in zip(rings, want, strict=True):
        assert colour is not None
        assert abs(out[ring, 1].mean() - colour[1]) < 2.5
    mouth = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(mouth, [np.round(lm[48:60]).astype(np.int32)], 1)
    before = cv2.cvtColor(red, cv2.COLOR_RGB2LAB).astype(np.float32)
    assert np.abs(out - before)[mouth > 0].max() <= 2.0  # far from the eyes nothing moves (Lab rounding)
    # lids paler than the patient's are left alone (lifting them, or matching b*, drew grey-blue rings)
    pale = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    for ring in rings:
        pale[ring, 1] -= 8.0
        pale[ring, 2] += 10.0
    pale_rgb = cv2.cvtColor(np.clip(pale, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    assert np.array_equal(match_lids(pale_rgb, lm, want), pale_rgb)


def test_the_colour_finish_leaves_the_ladders_choice_as_it_was(
    bank_path: Path, pair: list[np.ndarray]
) -> None:
    bank = load_bank(bank_path)
    records = pipeline._align_all(pair, [detect_faces(p) for p in pair], 512, (), pipeline.PipelineSettings())
    faces = [r.aligned for r in records]
    runs = []
    for finish in (False, True):
        settings = SurrogateSettings(
            donor_sets=2, k=5, k_min=3, highlight_chroma=1.0 if finish else 0.0, lid_colour=finish
        )
        engine = SurrogateEngine(settings, bank)
        crops = engine.anonymize(faces, 21, ())
        runs.append((crops, list(engine.trace), engine.last_level))
    (plain, trace, level), (finished, trace_f, level_f) = runs
    assert trace == trace_f and level == level_f  # the same rungs tried, the same one chosen
    assert any(not np.array_equal(a, b) for a, b in zip(plain, finished, strict=True))
