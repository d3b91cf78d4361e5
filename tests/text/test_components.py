"""16-bit connected components (the text detector's fast path) equal the 32-bit reference, and a mask with
more components than 16 bits can label falls back to it."""

from __future__ import annotations

import cv2
import numpy as np

from anonymizer.text import components


def _reference(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    return cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)


def test_sixteen_bit_labels_match_the_reference() -> None:
    mask = (np.random.default_rng(0).random((600, 800)) < 0.3).astype(np.uint8)
    n, labels, stats, centroids = components.with_stats(mask)
    ref_n, ref_labels, ref_stats, ref_centroids = _reference(mask)
    assert labels.dtype == np.uint16 and n == ref_n > 1000
    assert np.array_equal(labels, ref_labels) and np.array_equal(stats, ref_stats)
    assert np.allclose(centroids, ref_centroids)


def test_too_many_components_fall_back_to_32_bit_labels() -> None:
    mask = np.zeros((600, 800), np.uint8)
    mask[::2, ::2] = 1  # 120,000 single pixels
    before = components.FALLBACKS["32-bit labels"]
    n, labels, stats, _ = components.with_stats(mask)
    assert n == 120_001 and labels.dtype == np.int32
    assert components.FALLBACKS["32-bit labels"] == before + 1
    assert np.array_equal(stats, _reference(mask)[2])
