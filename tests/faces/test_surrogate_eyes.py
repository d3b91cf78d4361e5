"""The eyes kept (issue-11ek): the synthetic brows keep the patient's height above the kept eyes while their
shape and texture are the donors' (dlib's HOG box takes the brow bar for the face's top edge), and the
levers of this setting reach only the eyes-kept engine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import Strength, SurrogateEngine, SurrogateSettings, _target_shape
from anonymizer.engines.surrogate_target import FIT_ALL, keep_brow_height
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.regions import interocular
from anonymizer.plans import Region


def _landmarks(image: np.ndarray) -> np.ndarray:
    lm = detect_faces(image)[0].landmarks
    return align.apply(align.canonical_alignment(lm, 512).matrix, lm)


def _brow_heights(landmarks: np.ndarray) -> np.ndarray:
    """Each brow's mean height above its eye's centre, × inter-ocular distance (the crop is upright)."""
    eyes = (landmarks[36:42, 1].mean(), landmarks[42:48, 1].mean())
    brows = (landmarks[17:22, 1].mean(), landmarks[22:27, 1].mean())
    return (np.array(eyes) - np.array(brows)) / interocular(landmarks)


def test_the_brows_go_back_to_the_patients_height_and_keep_the_donors_shape(pair: list[np.ndarray]) -> None:
    patient = _landmarks(pair[0])
    centre = patient[27:36].mean(0)
    donor = patient.copy()
    donor[:17] = centre + 1.35 * (patient[:17] - centre)  # a wide caricatured outline
    donor[17:27, 0] += np.linspace(-4.0, 4.0, 10)  # and brows of its own length
    eyes_kept = (Region.EYES,)
    target = _target_shape(patient, donor, eyes_kept, 1.0, Strength(1.0, 1.0, 0.0), 0.0, FIT_ALL)
    assert (_brow_heights(target) < _brow_heights(patient) - 0.03).all()  # the 68-point fit lowers them
    kept = keep_brow_height(target, patient, 1.0)
    assert np.abs(_brow_heights(kept) - _brow_heights(patient)).max() < 0.002
    # each brow moved as a whole along the vertical: its shape and place across the face are the target's
    for brow in (slice(17, 22), slice(22, 27)):
        moved = kept[brow] - target[brow]
        assert np.abs(moved - moved.mean(0)).max() < 1e-3 and np.abs(moved[:, 0]).max() < 0.5
    assert np.array_equal(np.delete(kept, range(17, 27), 0), np.delete(target, range(17, 27), 0))
    half = keep_brow_height(target, patient, 0.5)
    expected = (_brow_heights(target) + _brow_heights(patient)) / 2
    assert np.abs(_brow_heights(half) - expected).max() < 0.002
    assert keep_brow_height(target, patient, 0.0) is target  # off: the same array, bit for bit



def test_the_eyes_kept_levers_reach_only_the_eyes_kept_engine(bank_path: Path) -> None:
    settings = SurrogateSettings()
    bank = load_bank(bank_path)
    engine, without = SurrogateEngine(settings, bank), SurrogateEngine(replace(settings, eyes_kept=()), bank)
    eyes = engine._for_regions((Region.EYES,))
    assert dict(settings.eyes_kept) and settings.brow_height == 0.0  # brow_height: built, off
    for name, value in settings.eyes_kept:
        assert getattr(eyes.settings, name) == value
    assert eyes._group_aim((Region.EYES,)) == 5 > settings.population_rank  # linkage aim of the eyes kept
    # every other setting's engine is that of an engine without eyes_kept: their outputs stay bit-identical
    for preserve in ((), (Region.MOUTH,), (Region.NOSE,)):
        kept = replace(engine._for_regions(preserve).settings, eyes_kept=())
        assert kept == without._for_regions(preserve).settings
