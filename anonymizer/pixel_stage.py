"""The pixel stage's one entry point, called by the gateway pipeline for a group of one patient's images.

Contract: ``anonymize_group(datasets, plan, identity_seed)`` returns one Outcome per dataset, in order.
An Ok carries a new dataset with new pixels and a PixelReport. Any image that should be anonymized and
could not be is a Quarantine with a reason: original face pixels never leave through this function.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

import anonymizer.engines.baselines
import anonymizer.engines.surrogate  # noqa: F401 — registers the weight-free engines
from anonymizer import codec
from anonymizer.donors import DonorBankError
from anonymizer.engines import vera as _vera  # noqa: F401 — registers "vera" (needs a checkpoint)
from anonymizer.engines.base import Engine, create_engine
from anonymizer.faces.attributes import from_header
from anonymizer.faces.pipeline import PhotoResult, PipelineSettings, run_group
from anonymizer.keys import seed_id
from anonymizer.outcomes import Ok, Outcome, Quarantine
from anonymizer.plans import NoFaceAction, PixelMode, PixelPlan, PixelReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PixelSettings:
    """Process-wide settings the service passes once at start-up (see :func:`configure`)."""

    donor_bank: Path | None = None  # surrogate engine bank; $VERA_DONOR_BANK when None
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    engine_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # per engine name


_settings = PixelSettings()
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def configure(settings: PixelSettings) -> None:
    """Set process-wide pixel settings (donor bank path, verification margin...). Clears cached engines."""
    global _settings
    with _lock:
        _settings = settings
        _engines.clear()


def _engine(name: str, options: dict[str, Any]) -> Engine:
    merged = {**_settings.engine_defaults.get(name, {}), **options}
    if name == "surrogate" and "donor_bank" not in merged and _settings.donor_bank is not None:
        merged["donor_bank"] = str(_settings.donor_bank)
    key = name + json.dumps(merged, sort_keys=True, default=str)
    with _lock:
        if key not in _engines:
            _engines[key] = create_engine(name, merged)
        return _engines[key]


def _report(
    plan: PixelPlan, engine: str, seed: int, results: Sequence[PhotoResult], lossy: bool
) -> PixelReport:
    faces = [f for r in results for f in r.faces]
    distances = [f.check.distance for f in faces if f.check is not None]
    return PixelReport(
        faces_found=len(faces),
        faces_replaced_and_verified=all(r.ok for r in results),
        engine=engine,
        preserved=plan.preserve,
        identity_seed_id=seed_id(seed),
        boxes=tuple(f.detection.box for f in faces),
        scores={"min_identity_distance": float(min(distances))} if distances else {},
        lossy_recompressed=lossy,
    )


def _write(ds: Dataset, frames: list[np.ndarray], plan: PixelPlan) -> tuple[Dataset, bool]:
    out = copy.deepcopy(ds)
    lossy = codec.encode(out, frames, plan.jpeg_quality, codec.source_format(ds))
    return out, lossy


def _blank(datasets: Sequence[Dataset], plan: PixelPlan, seed: int) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for ds in datasets:
        try:
            frames = [np.zeros_like(f) for f in codec.decode(ds)]
            out, lossy = _write(ds, frames, plan)
        except codec.CodecError as exc:
            outcomes.append(Quarantine(str(exc)))
            continue
        outcomes.append(Ok(out, PixelReport(0, False, "blank", (), seed_id(seed), lossy_recompressed=lossy)))
    return outcomes


def _decode_all(datasets: Sequence[Dataset]) -> list[list[np.ndarray] | codec.CodecError]:
    decoded: list[list[np.ndarray] | codec.CodecError] = []
    for ds in datasets:
        try:
            decoded.append(codec.decode(ds))
        except codec.CodecError as exc:
            decoded.append(exc)
    return decoded


def _retry_with_fallback(
    photos: list[np.ndarray], results: list[PhotoResult], plan: PixelPlan, seed: int
) -> tuple[list[PhotoResult], list[str]]:
    """Re-run failed photos (a face was found, verification failed) with the rule's fallback engine."""
    engines = [plan.engine] * len(results)
    failed = [i for i, r in enumerate(results) if not r.ok and r.faces]
    if not failed or not plan.fallback_engine:
        return results, engines
    engine = _engine(plan.fallback_engine, {})
    retried = run_group([photos[i] for i in failed], engine, seed, plan.preserve, _settings.pipeline)
    log.warning("pixel fallback engine used", extra={"engine": plan.fallback_engine, "photos": len(failed)})
    for i, res in zip(failed, retried, strict=True):
        results[i], engines[i] = res, plan.fallback_engine
    return results, engines


def _no_face_mask(result: PhotoResult, photo: np.ndarray, plan: PixelPlan) -> PhotoResult:
    """No face where the plan expects one: quarantine, or (rule says mask) blank the whole frame to grey."""
    if result.faces or plan.no_face is not NoFaceAction.MASK:
        return result
    return PhotoResult(np.full_like(photo, 128), [], "")


def _anonymize(datasets: Sequence[Dataset], plan: PixelPlan, seed: int) -> list[Outcome]:
    decoded = _decode_all(datasets)
    photos = [f for d in decoded if not isinstance(d, codec.CodecError) for f in d]
    known = [
        from_header(ds)
        for ds, d in zip(datasets, decoded, strict=True)
        if not isinstance(d, Exception)
        for _ in d
    ]
    try:
        engine = _engine(plan.engine, plan.engine_options)
        results = (
            run_group(photos, engine, seed, plan.preserve, _settings.pipeline, attributes=known)
            if photos
            else []
        )
    except (DonorBankError, KeyError, RuntimeError) as exc:
        log.error("pixel engine unavailable", extra={"engine": plan.engine, "error": type(exc).__name__})
        return [Quarantine(f"pixel-engine-unavailable:{plan.engine}") for _ in datasets]
    results, engines = _retry_with_fallback(photos, results, plan, seed)
    results = [_no_face_mask(r, p, plan) for r, p in zip(results, photos, strict=True)]
    outcomes: list[Outcome] = []
    cursor = 0
    for ds, frames in zip(datasets, decoded, strict=True):
        if isinstance(frames, codec.CodecError):
            outcomes.append(Quarantine(str(frames)))
            continue
        mine = results[cursor : cursor + len(frames)]
        names = sorted(set(engines[cursor : cursor + len(frames)]))
        cursor += len(frames)
        bad = [r.reason for r in mine if not r.ok]
        if bad:
            outcomes.append(Quarantine(bad[0]))
            continue
        out, lossy = _write(ds, [r.image for r in mine if r.image is not None], plan)
        engine_name = "mask" if not any(r.faces for r in mine) else "+".join(names)
        outcomes.append(Ok(out, _report(plan, engine_name, seed, mine, lossy)))
    return outcomes


def anonymize_group(datasets: Sequence[Dataset], plan: PixelPlan, identity_seed: int) -> list[Outcome]:
    """One Outcome per dataset, in order; every face of the group gets the synthetic identity of the seed."""
    if plan.mode is PixelMode.PASSTHROUGH:
        return [Ok(ds, PixelReport(0, False, "passthrough", (), seed_id(identity_seed))) for ds in datasets]
    if plan.mode is PixelMode.BLANK:
        return _blank(datasets, plan, identity_seed)
    try:
        return _anonymize(datasets, plan, identity_seed)
    except Exception:
        log.exception("pixel stage failed")
        return [Quarantine("pixel-stage-error") for _ in datasets]
