"""quilt's donor patches come from a view of every window of the band: the same values as indexing each
pixel, including (through the per-pixel path) centres whose patch would cross the band's top or left edge
(skin centres never do; indexing wraps there, and does the same)."""

from __future__ import annotations

import numpy as np

from anonymizer.faces.skin import PATCH, _patches


def _per_pixel(band: np.ndarray, centres: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return band[centres[:, 1, None, None] + offsets[None, :, None], centres[:, 0, None, None] + offsets]


def test_patches_equal_per_pixel_indexing() -> None:
    rng = np.random.default_rng(2)
    band = rng.normal(0, 3, (128, 160)).astype(np.float32)
    for patch in (PATCH, 7):
        half = patch // 2
        offsets = np.arange(-half, patch - half)
        inside = np.stack([rng.integers(half, 160 - patch + half + 1, 300),
                           rng.integers(half, 128 - patch + half + 1, 300)], 1).astype(np.int32)
        assert np.array_equal(_patches(band, inside, offsets), _per_pixel(band, inside, offsets))
        edge = np.vstack([inside[:5], [[half - 1, 40], [100, half - 2]]]).astype(np.int32)  # would wrap
        assert np.array_equal(_patches(band, edge, offsets), _per_pixel(band, edge, offsets))
