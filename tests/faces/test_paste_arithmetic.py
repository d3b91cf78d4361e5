"""The paste-back's in-place arithmetic (fewer 12 MP float temporaries) must give exactly the pixels of the
plain expressions it replaces, including the float64 sums that a NumPy float64 gain brings."""

from __future__ import annotations

import numpy as np

from anonymizer.faces.grain import _add_luminance
from anonymizer.faces.pipeline import _blend


def _inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    alpha = rng.random((64, 80, 1), dtype=np.float32)
    warped = rng.random((64, 80, 3), dtype=np.float32) * 300 - 20  # out of range on purpose: clipped
    base = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    layer = rng.standard_normal((64, 80)).astype(np.float32) * 40
    return alpha, warped, base, layer


def test_blend_equals_the_plain_expression() -> None:
    alpha, warped, base, _ = _inputs()
    plain = np.clip(alpha * warped + (1.0 - alpha) * base.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(_blend(alpha, warped, base), plain)
    assert np.array_equal(base, _inputs()[2])  # the photo's pixels are not written


def test_added_luminance_equals_the_plain_expression_in_float32_and_float64() -> None:
    rng = np.random.default_rng(3)
    # 400 x 400 of small detail: a float32-only sum rounds 5 of these pixels the other way
    base = rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)
    layer = rng.standard_normal((400, 400)).astype(np.float32) * 3
    for gain in (np.float64(1.37), 1.37, np.float32(0.61)):
        plain = np.clip(base.astype(np.float32) + gain * layer[..., None] + 0.5, 0, 255).astype(np.uint8)
        assert np.array_equal(_add_luminance(base, gain * layer), plain), type(gain)
