"""A tamed highlight gets the skin's colour back: a donor mix's specular flash is desaturated (white), and
holding only its lightness down left a flat grey-white patch on the forehead (London 001, eyes kept)."""

from __future__ import annotations

import cv2
import numpy as np

from anonymizer.engines.surrogate_colour import highlight_level, skin_light, tame_highlights
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces


def test_a_white_flash_on_the_forehead_takes_the_skin_colour(pair: list[np.ndarray]) -> None:
    lm = detect_faces(pair[0])[0].landmarks
    al = align.canonical_alignment(lm, 512)
    crop, lm = align.crop(pair[0], al), align.apply(al.matrix, lm)
    light = skin_light(crop, lm)
    level = highlight_level(crop, lm, light)
    assert light is not None and np.isfinite(level)
    brow = lm[17:27].mean(0)
    spot_at = (int(brow[0]), int(brow[1] - 0.25 * np.ptp(lm[:, 0])))  # the forehead above the brows
    spot = np.zeros(crop.shape[:2], np.uint8)
    cv2.circle(spot, spot_at, 22, 1, -1)
    flashed = crop.copy()
    flashed[spot > 0] = 250  # a specular flash: near white, no chroma
    out = tame_highlights(flashed, lm, light, level)
    lab_out = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float32)
    x, y = spot_at
    skin_chroma = light[y, x, 1:] - 128.0
    assert np.linalg.norm(skin_chroma) > 4.0  # the skin there is coloured
    got = lab_out[y, x, 1:] - 128.0
    assert np.linalg.norm(got - skin_chroma) < 0.35 * np.linalg.norm(skin_chroma)  # now coloured like skin
    assert lab_out[y, x, 0] - light[y, x, 0] < 1.6 * level  # and its lightness held down as before
