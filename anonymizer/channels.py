"""A per-pixel weight as a full image, for numpy arithmetic on colour images that must stay bit-identical.

numpy runs ``image * weight[..., None]`` ((H, W, 3) by (H, W, 1)) as one inner loop of three elements per
pixel: on a 512 px crop that is ~0.7 ms where the same product of two (H, W, 3) arrays takes ~0.1 ms. The
weight repeated on every channel by OpenCV's ``merge`` (~0.05 ms) gives each product the same operands, so
every value comes out the same, bit for bit (IEEE arithmetic does not depend on the loop that runs it).
Used on the synthesis' per-rung steps and the paste (issue-11t3, docs/face-engine.md).
"""

from __future__ import annotations

import cv2
import numpy as np


def per_channel(plane: np.ndarray, channels: int = 3) -> np.ndarray:
    """A weight ``plane`` (..., H, W) as a C-contiguous (..., H, W, channels) array of its own dtype:
    ``np.broadcast_to(plane[..., None], (..., H, W, channels))`` made real, so that an expression gives the
    same values (and dtype) with it as with ``plane[..., None]``."""
    flat = np.ascontiguousarray(plane).reshape(-1, plane.shape[-1])  # OpenCV merges 2-D planes
    if flat.dtype == np.bool_:  # OpenCV has no bool: the same bytes as uint8
        merged = cv2.merge([flat.view(np.uint8)] * channels).view(np.bool_)
    elif flat.dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64):
        merged = cv2.merge([flat] * channels)
    else:
        merged = np.ascontiguousarray(np.broadcast_to(flat[..., None], (*flat.shape, channels)))
    return merged.reshape(*plane.shape, channels)


def widen(values: np.ndarray, channels: int = 3) -> np.ndarray:
    """``values`` whose last axis is 1 repeated ``channels`` times (``per_channel`` of its plane); any other
    array as it is. For a term added to or multiplied with a colour image: the same values as broadcasting."""
    return per_channel(values[..., 0], channels) if values.ndim >= 3 and values.shape[-1] == 1 else values


def per_pixel(vector: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A (C,) per-channel ``vector`` as a read-only (H, W, C) view whose every row is one contiguous tile of
    it: numpy then runs ``image - vector`` along whole rows instead of three elements per pixel (~7x faster
    at 512 px), with the same operands for every value."""
    h, w, c = shape
    row = np.tile(np.asarray(vector), w)
    assert row.shape == (w * c,), (row.shape, shape)
    return np.broadcast_to(row, (h, w * c)).reshape(h, w, c)


def channel_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values.mean(0), values.std(0))`` of (n, C) pixels, bit for bit, about twice as fast. numpy sums
    an (n, C) array over axis 0 row after row (sequentially, not pairwise) in loops of C elements; the same
    sequential sums run here along each channel's own contiguous row (``np.add.accumulate``), and the
    divisions are numpy's own (float64, cast back). tests/faces/test_channels.py holds this to numpy."""
    n = values.shape[0]
    by_channel = np.ascontiguousarray(values.T)
    mean = _row_means(by_channel, n, values.dtype)
    deviation = by_channel - mean[:, None]
    np.multiply(deviation, deviation, out=deviation)
    var = (np.add.accumulate(deviation, axis=1)[:, -1].astype(np.float64) / n).astype(values.dtype)
    return mean, np.sqrt(var)


def channel_mean(values: np.ndarray) -> np.ndarray:
    """``values.mean(0)`` of (n, C) pixels, bit for bit (``channel_stats``' sums, without the std)."""
    return _row_means(np.ascontiguousarray(values.T), values.shape[0], values.dtype)


def _row_means(by_channel: np.ndarray, n: int, dtype: np.dtype) -> np.ndarray:
    """Each row's sequential sum (numpy's axis-0 order) over ``n``, divided as numpy's mean divides."""
    return (np.add.accumulate(by_channel, axis=1)[:, -1].astype(np.float64) / n).astype(dtype)
