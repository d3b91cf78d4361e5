"""Photo-scale skin detail (faces/skin.py): a donor's real skin quilted at pixel scale restores the fine band
that a pasted 512-px face lacks, deterministically, without repeating a patch or carrying a donor's mole."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anonymizer.donors import load_bank, skin_mask
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.grain import match_grain, skin_in_roi
from anonymizer.faces.regions import face_outline
from anonymizer.faces.skin import PATCH, SkinSource, quilt, skin_source


def _source(bank_path: Path, texture: np.ndarray | None = None) -> SkinSource | None:
    bank = load_bank(bank_path)
    texture = bank.photos[0].texture if texture is None else texture
    return skin_source(texture, skin_mask(bank.reference, bank.crop_size))


def _fine_var(gray: np.ndarray, mask: np.ndarray) -> float:
    return float((gray - cv2.GaussianBlur(gray, (0, 0), 1.0))[mask].var())


def test_quilt_is_seeded_and_keeps_the_band_spread(bank_path: Path) -> None:
    source = _source(bank_path)
    assert source is not None
    to_crop = np.array([[0.7, 0.0, 150.0], [0.0, 0.7, 180.0]])  # a face 1.4x the crop's size
    a = quilt(source, to_crop, (300, 260), seed=7)
    assert np.array_equal(a, quilt(source, to_crop, (300, 260), seed=7))
    assert not np.allclose(a, quilt(source, to_crop, (300, 260), seed=8))
    skin_band = source.band[tuple(source.centres[:, ::-1].T)]
    # the half-overlapping sine windows keep the variance of independent texture (within sampling noise)
    assert 0.6 < a[PATCH:-PATCH, PATCH:-PATCH].std() / skin_band.std() < 1.4


def test_quilt_does_not_repeat_one_patch_where_the_donor_has_no_skin(bank_path: Path) -> None:
    source = _source(bank_path)
    assert source is not None
    # a region mapped wholly onto the donor's mouth and below: every patch comes from skin nearby
    to_crop = np.array([[0.7, 0.0, 200.0], [0.0, 0.7, 340.0]])
    layer = quilt(source, to_crop, (96, 96), seed=3)
    step = PATCH // 2
    tiles = [layer[y : y + step, x : x + step] for y in range(0, 96, step) for x in range(0, 96, step)]
    same = sum(np.allclose(t, u) for i, t in enumerate(tiles) for u in tiles[i + 1 :])
    assert same == 0


def test_a_donor_mole_is_clipped_out_of_the_band(bank_path: Path) -> None:
    bank = load_bank(bank_path)
    texture = bank.photos[0].texture.copy()
    cx, cy = 180, 300  # left cheek of the reference shape
    cv2.circle(texture, (cx, cy), 4, (60, 40, 30), -1)
    source = _source(bank_path, texture)
    assert source is not None
    band = source.band
    skin = skin_mask(bank.reference, bank.crop_size)
    spread = 1.4826 * np.median(np.abs(band[skin]))
    assert band[cy, cx] > -3.2 * spread  # the mole is no deeper than the deepest pore
    assert band[cy, cx] < -1.5 * spread  # but it is not erased either (a darker spot stays a darker spot)


def test_donor_detail_restores_the_photo_fine_band(bank_path: Path, pair: list[np.ndarray]) -> None:
    image = pair[0]
    lm = detect_faces(image)[0].landmarks
    outline = face_outline(lm)
    roi = align.clip_box(outline.min(0), outline.max(0), image.shape, 10)
    x0, y0, x1, y1 = roi
    original = image[y0:y1, x0:x1]
    soft = cv2.GaussianBlur(original, (0, 0), 1.6)  # what an upsampled 512-px face looks like
    skin = skin_in_roi(lm, roi)
    al = align.canonical_alignment(lm, 512)
    to_crop = al.matrix.copy()
    to_crop[:, 2] += to_crop[:, :2] @ (x0, y0)
    weight = np.ones(skin.shape, np.float32)
    out = match_grain(soft, original, weight, skin, 11, _source(bank_path), to_crop)

    def gray(x: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)

    before = _fine_var(gray(soft), skin) / _fine_var(gray(original), skin)
    after = _fine_var(gray(out), skin) / _fine_var(gray(original), skin)
    assert before < 0.3
    assert 0.7 < after < 1.3
    # the added layer is the donor's, not the patient's: it does not correlate with the patient's fine band
    added = gray(out) - gray(soft)
    own = gray(original) - cv2.GaussianBlur(gray(original), (0, 0), 1.0)
    assert abs(np.corrcoef(added[skin], own[skin])[0, 1]) < 0.1
