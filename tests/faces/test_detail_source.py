"""Skin detail never comes from the patient: a mole on the patient's cheek leaves no trace in the output
(neither the mole nor the pale negative an anti-face would make of it), while the skin still has detail."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.pipeline import run_group
from anonymizer.faces.regions import interocular

SEED = 0x5EED_0003


def _spot_contrast(image: np.ndarray, centre: tuple[int, int], radius: int) -> float:
    """Mean grey level of a ring around the spot minus that of the spot (positive: the spot is darker)."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    disc, ring = np.zeros(gray.shape, np.uint8), np.zeros(gray.shape, np.uint8)
    cv2.circle(disc, centre, radius, 1, -1)
    cv2.circle(ring, centre, 3 * radius, 1, -1)
    cv2.circle(ring, centre, 2 * radius, 0, -1)
    return float(gray[ring > 0].mean() - gray[disc > 0].mean())


def test_a_patients_mole_does_not_reach_the_output(bank_path: Path, pair: list[np.ndarray]) -> None:
    image = pair[0].copy()
    lm = detect_faces(image)[0].landmarks
    centre = tuple(int(v) for v in (0.5 * (lm[3] + lm[48]) + 0.5 * (lm[31] - lm[48]) * 0.3))
    radius = max(3, int(0.05 * interocular(lm)))
    mole = np.zeros(image.shape[:2], np.float32)
    cv2.circle(mole, centre, radius, 1.0, -1)
    mole = cv2.GaussianBlur(mole, (0, 0), radius / 3)[..., None]
    image = np.clip(image * (1 - 0.55 * mole), 0, 255).astype(np.uint8)  # a dark brown spot
    before = _spot_contrast(image, centre, radius)
    assert before > 40  # the mole is plain to see in the input

    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))
    result = run_group([image], engine, SEED, ())[0]
    assert result.ok, result.reason
    after = _spot_contrast(result.image, centre, radius)
    print("CONTRAST", before, after)
    assert abs(after) < 0.15 * before, (before, after)
