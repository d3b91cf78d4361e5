"""What dlib's HOG box keys on, kept in the surrogate's face (issue 11k): the donor shape fitted on its inner
features keeps the inner face at the patient's size when its outline is wider, and the synthetic brows get
the patient's darkness against the skin (a donor average's brows are a faint smear)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines import surrogate_ladder
from anonymizer.engines.surrogate import Strength, SurrogateEngine, SurrogateSettings, _target_shape
from anonymizer.engines.surrogate_brows import brow_contrast, match_brows
from anonymizer.engines.surrogate_synthesis import _donor_fit, _named
from anonymizer.engines.surrogate_target import FIT_ALL, FIT_INNER
from anonymizer.faces import align, pipeline
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.regions import interocular
from anonymizer.plans import Region

SIZE = 512


def _crop(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lm = detect_faces(image)[0].landmarks
    al = align.canonical_alignment(lm, SIZE)
    return align.crop(image, al), align.apply(al.matrix, lm)


def _brow_height(landmarks: np.ndarray) -> float:
    """Brows above the eye line, × inter-ocular distance."""
    return float((landmarks[36:48, 1].mean() - landmarks[17:27, 1].mean()) / interocular(landmarks))


def test_a_wide_donor_outline_shrinks_the_inner_face_unless_fitted_on_the_features(
    pair: list[np.ndarray],
) -> None:
    _, patient = _crop(pair[0])
    centre = patient[27:36].mean(0)
    donor = patient.copy()
    donor[:17] = centre + 1.35 * (patient[:17] - centre)  # the donors' outline, caricatured wider
    eyes_kept, still = (Region.EYES,), Strength(1.0, 1.0, 0.0)  # jaw 0: the outline stays the patient's
    whole = _target_shape(patient, donor, eyes_kept, 1.0, still, 0.0, FIT_ALL)
    inner = _target_shape(patient, donor, eyes_kept, 1.0, still, 0.0, FIT_INNER)
    # fitted on all 68 points the donor face is scaled down to the patient's outline: with the eyes kept at
    # the patient's size the brows come down onto them and the nose shortens
    assert _brow_height(whole) < _brow_height(patient) - 0.03
    assert whole[33, 1] - whole[27, 1] < 0.95 * (patient[33, 1] - patient[27, 1])
    # fitted on the features the inner face is the donor's, here the patient's own, at the patient's size
    assert np.abs(inner[17:] - patient[17:]).max() < 0.5
    assert np.array_equal(inner[36:48], patient[36:48])  # kept either way


def test_the_settings_name_where_the_inner_fit_and_brow_contrast_apply() -> None:
    assert _donor_fit("", (Region.EYES,)) == FIT_ALL  # off by default
    assert _donor_fit("eyes,nose", (Region.EYES,)) == FIT_INNER
    assert _donor_fit("eyes,nose", (Region.MOUTH,)) == FIT_ALL
    assert _named("nothing, mouth", ()) and _named("nothing, mouth", (Region.MOUTH,))
    assert not _named("eyes", ())


def _faint_brows(crop: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The crop with its brows painted over by the skin just below them, then a faint grey bar drawn in."""
    out = crop.copy()
    iod = interocular(lm)
    for brow in (slice(17, 22), slice(22, 27)):
        points = np.round(lm[brow]).astype(np.int32)
        skin = np.median(
            crop[int(lm[brow, 1].max() + 0.2 * iod), int(lm[brow, 0].min()) : int(lm[brow, 0].max())], 0
        )
        cv2.polylines(out, [points], False, tuple(int(v) for v in skin), int(0.3 * iod))
        cv2.polylines(out, [points], False, tuple(int(v) - 40 for v in skin), int(0.08 * iod))
    return out


def test_faint_synthetic_brows_take_the_patients_darkness_and_the_skin_stays(pair: list[np.ndarray]) -> None:
    crop, lm = _crop(pair[0])
    patient = brow_contrast(crop, lm)
    faint = _faint_brows(crop, lm)
    before = brow_contrast(faint, lm)
    assert patient is not None and before is not None and before < 0.6 * patient
    matched = match_brows(faint, lm, patient)
    after = brow_contrast(matched, lm)
    assert after is not None and abs(after - patient) < 0.25 * patient
    # only the brows changed: the forehead well above them and the eyes and below are the same pixels
    iod = interocular(lm)
    top, bottom = int(lm[17:27, 1].min() - 0.5 * iod), int(lm[36:48, 1].mean())
    changed = np.abs(matched.astype(int) - faint.astype(int)).max(axis=2) > 1
    assert not changed[:top].any() and not changed[bottom:].any()

    # the deepened brows keep their hue and lose colour with their lightness (a scaled skin deviation
    # turned skin-coloured hair blue-green): no pixel's chroma grows
    def chroma(image: np.ndarray) -> np.ndarray:
        return np.abs(cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)[changed][:, 1:] - 128.0)

    assert (chroma(matched) <= chroma(faint) + 2.0).all()
    # a patient with fainter brows than the synthetic ones: they get lighter, never beyond the skin
    lighter = match_brows(crop, lm, 0.5 * patient)
    assert brow_contrast(lighter, lm) < patient  # type: ignore[operator]
    assert match_brows(crop, lm, None) is crop


def test_the_brow_finish_leaves_the_ladders_choice_and_only_deepens_brows(
    bank_path: Path, pair: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the finish is kept only when the group's self-check is no worse (surrogate_ladder._no_worse, the
    # colour finish's rule); here it is always kept, to see what it changes
    monkeypatch.setattr(surrogate_ladder, "_no_worse", lambda chosen, finished: True)
    bank = load_bank(bank_path)
    records = pipeline._align_all(pair, [detect_faces(p) for p in pair], 512, (), pipeline.PipelineSettings())
    faces = [r.aligned for r in records]
    runs = []
    for named in ("", "nothing"):
        settings = SurrogateSettings(
            ladder=(Strength(1.35, 2.2, 0.6, 0.0, 0.8),),
            donor_sets=1,
            k=5,
            k_min=3,
            brow_contrast=named,
            brow_finish=True,
        )
        engine = SurrogateEngine(settings, bank)
        crops = engine.anonymize(faces, 21, ())
        runs.append((crops, list(engine.trace), engine.last_level))
    (plain, trace, level), (finished, trace_f, level_f) = runs
    assert trace == trace_f and level == level_f  # the same rungs tried, the same one chosen
    for face, before, after in zip(faces, plain, finished, strict=True):
        changed = np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 2
        lm = face.landmarks
        assert changed.any()
        rows = np.nonzero(changed.any(axis=1))[0]
        iod = interocular(lm)
        # the brows and what the Poisson blend carries a little around them: nothing at the mouth or jaw
        assert rows.max() < lm[30, 1] and rows.min() > lm[17:27, 1].min() - 0.6 * iod
