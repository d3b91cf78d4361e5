"""Clean-shaven surrogates (engines/surrogate_shaven.py): a stubbled chin is told from a clean one, and the
shave lifts a moustache's darkness while the lips and the skin outside the lower face stay as they were."""

from __future__ import annotations

import cv2
import numpy as np

from anonymizer.engines.surrogate_shaven import chin_grain, is_shaven, shave_weight, shaved, shaved_detail
from anonymizer.engines.surrogate_synthesis import beard_area
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.regions import interocular


def _crop(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lm = detect_faces(image)[0].landmarks
    al = align.canonical_alignment(lm, 512)
    return align.crop(image, al), align.apply(al.matrix, lm)


def _stubble(crop: np.ndarray, lm: np.ndarray, seed: int = 0) -> np.ndarray:
    """Dark hair specks over the chin and the upper lip."""
    rng = np.random.default_rng(seed)
    out = crop.copy()
    iod = interocular(lm)
    for x0, x1, y0, y1 in (
        (lm[6, 0], lm[10, 0], lm[57, 1] + 0.05 * iod, lm[8, 1]),
        (lm[48, 0], lm[54, 0], lm[33, 1] + 0.05 * iod, lm[51, 1] - 0.03 * iod),
    ):
        for _ in range(400):
            x, y = int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1))
            cv2.line(out, (x, y), (x + 1, y + 2), (60, 45, 40), 1)
    return out


def test_a_stubbled_chin_is_not_read_as_clean_shaven(pair: list[np.ndarray]) -> None:
    crop, lm = _crop(pair[0])
    stubbled = _stubble(crop, lm)
    clean, rough = chin_grain(crop.astype(np.float32), lm), chin_grain(stubbled.astype(np.float32), lm)
    assert rough > 1.5 * clean
    assert is_shaven(crop.astype(np.float32), lm, max(clean, 1.0))
    assert not is_shaven(stubbled.astype(np.float32), lm, max(clean, 1.0))


def test_the_shave_lifts_a_moustache_and_leaves_lips_and_forehead(pair: list[np.ndarray]) -> None:
    crop, lm = _crop(pair[0])
    iod = interocular(lm)
    texture = crop.astype(np.float32)
    moustache = np.zeros(crop.shape[:2], np.uint8)
    y = int(0.5 * (lm[33, 1] + lm[51, 1]))
    cv2.line(moustache, (int(lm[48, 0]), y), (int(lm[54, 0]), y), 1, max(3, int(0.06 * iod)))
    dark = texture.copy()
    dark[moustache > 0] *= 0.5
    weight = shave_weight(beard_area(lm, 512), lm)
    out = shaved(dark, weight, lm, 1.0)
    inside = moustache > 0
    before = np.abs(dark[inside] - texture[inside]).mean()
    assert np.abs(out[inside] - texture[inside]).mean() < 0.4 * before  # the bar fills in with the skin
    assert np.all(out >= dark - 1e-3)  # only ever lighter
    lips = np.zeros_like(moustache)
    cv2.fillPoly(lips, [np.round(lm[48:60]).astype(np.int32)], 1)
    assert np.abs(out[lips > 0] - dark[lips > 0]).mean() < 1.0  # the lips keep their darkness
    forehead = (
        slice(int(lm[19, 1] - 0.5 * iod), int(lm[19, 1] - 0.2 * iod)),
        slice(int(lm[19, 0]), int(lm[24, 0])),
    )
    assert np.array_equal(out[forehead], dark[forehead])
    # off (share 0): the texture itself
    assert np.array_equal(shaved(dark, weight, lm, 0.0), dark)


def test_shaved_detail_holds_stubble_specks_to_the_cheeks_band(pair: list[np.ndarray]) -> None:
    crop, lm = _crop(pair[0])
    texture = _stubble(crop, lm).astype(np.float32)
    detail = texture - cv2.GaussianBlur(texture, (0, 0), 0.03 * interocular(lm))
    weight = shave_weight(beard_area(lm, 512), lm)
    held = shaved_detail(detail, weight, lm, 1.0)
    chin = (slice(int(lm[57, 1] + 10), int(lm[8, 1] - 10)), slice(int(lm[7, 0]), int(lm[9, 0])))
    assert np.abs(held[chin]).max() < 0.5 * np.abs(detail[chin]).max()
    assert np.array_equal(held[:100], detail[:100])  # above the lower face: untouched
