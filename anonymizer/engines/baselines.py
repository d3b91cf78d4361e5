"""Baseline engines: blur, pixelate and mask. They honour the preserved region (the pipeline restores it) and
serve for comparison and as rule-selectable fallbacks. They remove the face, so verification does not expect
the independent detector to find one afterwards, only that the recognizer no longer matches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from anonymizer.engines.base import AlignedFace, register
from anonymizer.plans import Region


class _Baseline:
    name = "baseline"
    produces_face = False

    def __init__(self, crop_size: int = 256, strength: float = 1.0) -> None:
        self.crop_size = crop_size
        self.strength = strength

    def anonymize(
        self, faces: Sequence[AlignedFace], identity_seed: int, preserve: tuple[Region, ...]
    ) -> list[np.ndarray]:
        return [self._apply(f.image) for f in faces]

    def _apply(self, crop: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class BlurEngine(_Baseline):
    name = "blur"

    def _apply(self, crop: np.ndarray) -> np.ndarray:
        sigma = 0.06 * self.crop_size * self.strength
        return cv2.GaussianBlur(crop, (0, 0), sigma)


class PixelateEngine(_Baseline):
    name = "pixelate"

    def _apply(self, crop: np.ndarray) -> np.ndarray:
        cells = max(4, round(14 / self.strength))
        small = cv2.resize(crop, (cells, cells), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, crop.shape[1::-1], interpolation=cv2.INTER_NEAREST)


class MaskEngine(_Baseline):
    name = "mask"

    def _apply(self, crop: np.ndarray) -> np.ndarray:
        return np.full_like(crop, 128)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: options[k] for k in ("crop_size", "strength") if k in options}


@register("blur")
def _blur(options: dict[str, Any]) -> BlurEngine:
    return BlurEngine(**_options(options))


@register("pixelate")
def _pixelate(options: dict[str, Any]) -> PixelateEngine:
    return PixelateEngine(**_options(options))


@register("mask")
def _mask(options: dict[str, Any]) -> MaskEngine:
    return MaskEngine(**_options(options))
