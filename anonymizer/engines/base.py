"""Engine contract: engines see aligned face crops of ONE pairing group and return anonymized crops.

The face pipeline (detection, alignment, region masks, paste-back, exact compositing of the preserved region
and verification) is shared by every engine; an engine only turns faces into synthetic faces.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from anonymizer.plans import Region


@dataclass
class AlignedFace:
    """One face, similarity-aligned to a square canonical crop."""

    image: np.ndarray  # (S, S, 3) uint8 RGB
    landmarks: np.ndarray  # (68, 2) float32, crop pixel coordinates (x, y)
    masks: dict[Region, np.ndarray] = field(default_factory=dict)  # (S, S) float32 in [0, 1]
    photo_index: int = 0  # which photo of the group this face came from
    descriptor: np.ndarray | None = None  # (128,) dlib descriptor of the original face, when known
    sex: str = ""  # "F" | "M" from the photo's DICOM header (PatientSex); "" when unknown
    age: float = float("nan")  # years, from the header (PatientAge); NaN when unknown


class Engine(Protocol):
    """A face generator back-end: surrogate (donor bank), vera (neural), or a baseline."""

    name: str
    crop_size: int  # the canonical crop side the engine wants

    def anonymize(
        self, faces: Sequence[AlignedFace], identity_seed: int, preserve: tuple[Region, ...]
    ) -> list[np.ndarray]:
        """Return one (S, S, 3) uint8 crop per face. All faces share one synthetic identity from the seed."""
        ...


EngineFactory = Callable[[dict[str, Any]], Engine]
_REGISTRY: dict[str, EngineFactory] = {}


def register(name: str) -> Callable[[EngineFactory], EngineFactory]:
    def wrap(factory: EngineFactory) -> EngineFactory:
        _REGISTRY[name] = factory
        return factory

    return wrap


# Built-in engines register themselves when their module is imported; create_engine imports it on demand.
BUILTIN_MODULES = {
    "surrogate": "anonymizer.engines.surrogate",
    "blur": "anonymizer.engines.baselines",
    "pixelate": "anonymizer.engines.baselines",
    "mask": "anonymizer.engines.baselines",
    "vera": "anonymizer.engines.vera",
}


def create_engine(name: str, options: dict[str, Any] | None = None) -> Engine:
    """Build a registered engine; an unknown name is a clear error, never a silent fallback."""
    if name not in _REGISTRY and name in BUILTIN_MODULES:
        importlib.import_module(BUILTIN_MODULES[name])
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown engine {name!r} (registered: {known})")
    return _REGISTRY[name](options or {})


def engine_options(
    name: str,
    options: dict[str, Any],
    defaults: dict[str, dict[str, Any]] | None = None,
    donor_bank: Path | str | None = None,
) -> dict[str, Any]:
    """The options an engine is built with: the service's defaults for that engine under the rule's options
    (the rule wins); the surrogate gets the configured donor bank when neither names one."""
    merged = {**(defaults or {}).get(name, {}), **options}
    if name == "surrogate" and "donor_bank" not in merged and donor_bank is not None:
        merged["donor_bank"] = str(donor_bank)
    return merged


def load_engine(
    name: str,
    options: dict[str, Any],
    defaults: dict[str, dict[str, Any]] | None = None,
    donor_bank: Path | str | None = None,
) -> Engine:
    """The one way an engine is loaded, by the pixel stage and by ``vera-gateway doctor`` alike."""
    return create_engine(name, engine_options(name, options, defaults, donor_bank))


def registered_engines() -> list[str]:
    return sorted(_REGISTRY)
