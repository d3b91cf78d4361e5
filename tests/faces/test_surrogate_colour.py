"""Colour and light of the synthetic face (engines/surrogate_colour.py): the patient's skin light and tone
arrive, the patient's features do not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anonymizer.donors import load_bank, skin_mask
from anonymizer.engines.surrogate_colour import feature_colours, match_features, relight, skin_light
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces


def _patient_crop(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lm = detect_faces(image)[0].landmarks
    al = align.canonical_alignment(lm, 512)
    return align.crop(image, al), align.apply(al.matrix, lm)


def test_relight_gives_the_synthetic_skin_the_patients_light(bank_path: Path, pair: list[np.ndarray]) -> None:
    crop, lm = _patient_crop(pair[0])
    bank = load_bank(bank_path)
    donor = bank.photos[0]
    # a darker, bluer patient than any donor: what a global match left greyer and lighter
    patient = np.clip(crop.astype(np.float32) * (0.55, 0.5, 0.45), 0, 255).astype(np.uint8)
    target = skin_light(patient, lm)
    assert target is not None
    out = relight(donor.texture, bank.reference, target)
    skin = skin_mask(bank.reference, 512)
    got = skin_light(out, bank.reference)
    assert got is not None
    before = skin_light(donor.texture, bank.reference)
    assert before is not None
    assert np.abs(before - target)[skin].mean() > 15
    assert np.abs(got - target)[skin].mean(0).max() < 3.0  # every Lab channel within 3 levels on the skin

    # the donor's own detail stays: relighting moves the broad light only
    def fine(x: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return g - cv2.GaussianBlur(g, (0, 0), 3.0)

    assert np.corrcoef(fine(out)[skin], fine(donor.texture)[skin])[0, 1] > 0.8


def test_skin_light_ignores_the_patients_features(pair: list[np.ndarray]) -> None:
    crop, lm = _patient_crop(pair[0])
    light = skin_light(crop, lm)
    painted = crop.copy()
    for points in (lm[36:42], lm[42:48], lm[48:60], lm[17:22], lm[22:27]):  # eyes, mouth, brows
        cv2.fillPoly(painted, [np.round(points).astype(np.int32)], (255, 0, 255))
    assert light is not None
    again = skin_light(painted, lm)
    assert again is not None
    assert np.abs(again - light).max() < 1.0


def test_lips_take_the_patients_colour_and_the_skin_does_not_move(
    bank_path: Path, pair: list[np.ndarray]
) -> None:
    crop, lm = _patient_crop(pair[0])
    # a mauve-lipped patient: lips moved in Lab by less than the shift limit
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[cv2.fillPoly(np.zeros(crop.shape[:2], np.uint8), [np.round(lm[48:60]).astype(np.int32)], 1) > 0] += (
        -20,
        -8,
        -12,
    )
    patient = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    want = feature_colours(patient, lm)
    bank = load_bank(bank_path)
    donor, ref = bank.photos[0].texture, bank.reference
    out = match_features(donor, ref, want)
    lab_in = cv2.cvtColor(donor, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_out = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float32)
    lips = np.zeros(donor.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(ref[48:60]).astype(np.int32)], 1)
    cv2.fillPoly(lips, [np.round(ref[60:68]).astype(np.int32)], 0)
    lips_in, lips_out = lab_in[lips > 0].mean(0), lab_out[lips > 0].mean(0)
    assert want[0] is not None
    assert np.abs(lips_in - want[0]).max() > 8  # the donor's lips differ from the patient's
    assert np.abs(lips_out - want[0]).max() < 0.5 * np.abs(lips_in - want[0]).max()
    cheek = skin_mask(ref, 512)
    cheek[int(ref[48:68, 1].min()) - 25 :] = False  # skin above the mouth, away from eyes by the skin mask
    assert np.abs(lab_out[cheek] - lab_in[cheek]).mean() < 1.0
