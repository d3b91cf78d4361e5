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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

import anonymizer.engines.baselines
import anonymizer.engines.surrogate  # noqa: F401 — registers the weight-free engines
from anonymizer import codec
from anonymizer.donors import DonorBankError
from anonymizer.engines import engine_options, load_engine
from anonymizer.engines import vera as _vera  # noqa: F401 — registers "vera" (needs a checkpoint)
from anonymizer.engines.base import Engine
from anonymizer.engines.surrogate import SurrogateSettings
from anonymizer.faces.attributes import from_header
from anonymizer.faces.pipeline import PhotoResult, PipelineSettings, run_group
from anonymizer.heap import keep_freed
from anonymizer.keys import seed_id
from anonymizer.outcomes import Ok, Outcome, Quarantine
from anonymizer.plans import NoFaceAction, PixelMode, PixelPlan, PixelReport, TextAction, TextReport
from anonymizer.text.frames import check_frames, protected_mask
from anonymizer.text.ocr import OcrUnavailable
from anonymizer.threads import kernel_threads

log = logging.getLogger(__name__)
PIXEL_DATA = 0x7FE00010


@dataclass(frozen=True)
class PixelSettings:
    """Process-wide settings the service passes once at start-up (see :func:`configure`)."""

    donor_bank: Path | None = None  # surrogate engine bank; $VERA_DONOR_BANK when None
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    engine_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # per engine name
    # OpenCV and BLAS threads while a group runs (anonymizer/threads.py): the gateway runs one worker
    # process per core, so one each (0 = the libraries' own defaults)
    kernel_threads: int = 1
    # large arrays from glibc's heap, freed ones kept for the next (anonymizer/heap.py): blocks below this
    # many bytes, and up to this much free heap between jobs (0 = glibc's defaults: each block above 32 MB
    # mapped and its pages faulted in again, 0.03-0.45 s of system CPU per 12 MP photo)
    heap_keep_bytes: int = 512 << 20


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
    merged = engine_options(name, options, _settings.engine_defaults, _settings.donor_bank)
    key = name + json.dumps(merged, sort_keys=True, default=str)
    with _lock:
        if key not in _engines:
            _engines[key] = load_engine(name, merged)
        return _engines[key]


def pipeline_settings(plan: PixelPlan) -> PipelineSettings:
    """The process-wide pipeline settings with the route's verification options (``pixels.verify``)."""
    pipeline = _settings.pipeline
    if pipeline.verify.population_rank == plan.population_rank:
        return pipeline
    return replace(pipeline, verify=replace(pipeline.verify, population_rank=plan.population_rank))


def _aims(plan: PixelPlan) -> dict[str, Any]:
    """The rule's engine options, with the surrogate's own linkage target following ``pixels.verify``:
    off when the test is off (no strength spent on it), never below what verification demands."""
    options = plan.engine_options
    if plan.engine != "surrogate" or "population_rank" in options or plan.population_rank == 1:
        return options
    own = SurrogateSettings.population_rank
    return {**options, "population_rank": max(own, plan.population_rank) if plan.population_rank else 0}


def _report(
    plan: PixelPlan,
    engine: str,
    seed: int,
    results: Sequence[PhotoResult],
    lossy: bool,
    text: TextReport,
    rung: int | None = None,
) -> PixelReport:
    faces = [f for r in results for f in r.faces]
    distances = [f.check.distance for f in faces if f.check is not None]
    scores: dict[str, float] = {}
    if distances:
        verify = _settings.pipeline.verify
        scores["min_identity_distance"] = float(min(distances))
        # how far the closest face lies beyond what verification demands (threshold + margin)
        scores["margin"] = float(min(distances)) - (verify.threshold + verify.margin)
    if rung is not None and faces:
        scores["rung"] = float(rung)  # the engine's strength rung for this pairing group
    return PixelReport(
        faces_found=len(faces),
        faces_replaced_and_verified=all(r.ok for r in results),
        engine=engine,
        preserved=plan.preserve,
        identity_seed_id=seed_id(seed),
        boxes=tuple(f.detection.box for f in faces),
        scores=scores,
        lossy_recompressed=lossy,
        text=text,
    )


def _header_copy(ds: Dataset) -> Dataset:
    """A new dataset for the output without the old Pixel Data: the encoder writes new frames, so the old
    ones (and pydicom's decoded-pixel cache) are never copied. The input is left as it was."""
    if PIXEL_DATA not in ds:
        return copy.deepcopy(ds)
    pixels = ds.get_item(PIXEL_DATA)  # raw or decoded element, put back unchanged below
    del ds[PIXEL_DATA]  # also drops the decoded-pixel cache, which decode() no longer needs
    try:
        return copy.deepcopy(ds)
    finally:
        ds[PIXEL_DATA] = pixels


def _write(
    ds: Dataset, frames: list[np.ndarray], plan: PixelPlan, decoded: Sequence[np.ndarray] = ()
) -> tuple[Dataset, bool]:
    """``decoded``: ds's frames as codec.decode returned them (then the block-exact encoder decodes none)."""
    fmt = codec.source_format(ds)
    out = _header_copy(ds)
    # ds: the source's JPEG blocks
    lossy = codec.encode(out, frames, plan.jpeg_quality, fmt, source=ds, decoded=decoded)
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
        text = TextReport(plan.text.action, checked=plan.text.action is not TextAction.KEEP)  # all black
        report = PixelReport(0, False, "blank", (), seed_id(seed), lossy_recompressed=lossy, text=text)
        outcomes.append(Ok(out, report))
    return outcomes


def _passthrough(datasets: Sequence[Dataset], plan: PixelPlan, seed: int) -> list[Outcome]:
    """Pixels a rule vouches for (no face): only the text step looks at them, and they are re-encoded
    only when it filled something."""
    if plan.text.action is TextAction.KEEP:
        text = TextReport(TextAction.KEEP, checked=False)
        return [Ok(ds, PixelReport(0, False, "passthrough", (), seed_id(seed), text=text)) for ds in datasets]
    outcomes: list[Outcome] = []
    for ds, frames in zip(datasets, _decode_all(datasets), strict=True):
        if isinstance(frames, codec.CodecError):
            outcomes.append(Quarantine(str(frames)))
            continue
        images, text, reason = check_frames(frames, plan.text, [None] * len(frames))
        if reason:
            outcomes.append(Quarantine(reason))
            continue
        out, lossy = _write(ds, images, plan, frames) if text.redacted else (ds, False)
        outcomes.append(Ok(out, PixelReport(0, False, "passthrough", (), seed_id(seed),
                                            lossy_recompressed=lossy, text=text)))
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
    retried = run_group([photos[i] for i in failed], engine, seed, plan.preserve, pipeline_settings(plan))
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
    known = [  # PatientSex/PatientAge from the header outrank the descriptor's guess (one per frame)
        from_header(ds)
        for ds, d in zip(datasets, decoded, strict=True)
        if not isinstance(d, Exception)
        for _ in d
    ]
    try:
        engine = _engine(plan.engine, _aims(plan))
        results = (
            run_group(photos, engine, seed, plan.preserve, pipeline_settings(plan), attributes=known)
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
        images, text, reason = _text_step(mine, photos[cursor - len(frames) : cursor], plan)
        if reason:
            outcomes.append(Quarantine(reason))
            continue
        out, lossy = _write(ds, images, plan, frames)
        engine_name = "mask" if not any(r.faces for r in mine) else "+".join(names)
        rung = getattr(engine, "last_level", None) if names == [plan.engine] else None
        outcomes.append(Ok(out, _report(plan, engine_name, seed, mine, lossy, text, rung)))
    return outcomes


def _text_step(
    results: Sequence[PhotoResult], originals: Sequence[np.ndarray], plan: PixelPlan
) -> tuple[list[np.ndarray], TextReport, str]:
    """Text on the face step's output; text touching a preserved region (as taken) holds the photo."""
    images = [r.image for r in results if r.image is not None]
    protected = [
        protected_mask(img.shape, [f.detection.landmarks for f in r.faces], plan.preserve,
                       _settings.pipeline.regions)
        for img, r in zip(images, results, strict=True)
    ]
    return check_frames(images, plan.text, protected, originals)


def anonymize_group(datasets: Sequence[Dataset], plan: PixelPlan, identity_seed: int) -> list[Outcome]:
    """One Outcome per dataset, in order; every face of the group gets the synthetic identity of the seed."""
    keep_freed(_settings.heap_keep_bytes)
    with kernel_threads(_settings.kernel_threads):
        return _anonymize_group(datasets, plan, identity_seed)


def _anonymize_group(datasets: Sequence[Dataset], plan: PixelPlan, identity_seed: int) -> list[Outcome]:
    if plan.mode is PixelMode.BLANK:
        return _blank(datasets, plan, identity_seed)
    try:
        if plan.mode is PixelMode.PASSTHROUGH:
            return _passthrough(datasets, plan, identity_seed)
        return _anonymize(datasets, plan, identity_seed)
    except OcrUnavailable as exc:  # never forwarded unchecked
        log.error("text check unavailable", extra={"error": str(exc)})
        return [Quarantine("ocr-unavailable") for _ in datasets]
    except Exception as exc:
        log.error("pixel stage failed", extra={"error": type(exc).__name__, "photos": len(datasets)})
        if len(datasets) == 1:
            return [Quarantine(f"pixel-stage-error:{type(exc).__name__}")]
        return _isolate(datasets, plan, identity_seed)


def _isolate(datasets: Sequence[Dataset], plan: PixelPlan, seed: int) -> list[Outcome]:
    """A group run raised: find the photos that raise on their own (each is quarantined with its own reason),
    then run the others together again so they still share one synthetic identity."""
    outcomes: list[Outcome | None] = [None] * len(datasets)
    for i, ds in enumerate(datasets):
        try:
            outcomes[i] = _anonymize([ds], plan, seed)[0]
        except Exception as exc:
            outcomes[i] = Quarantine(f"pixel-stage-error:{type(exc).__name__}")
    healthy = [
        i for i, o in enumerate(outcomes) if not isinstance(o, Quarantine) or "pixel-stage" not in o.reason
    ]
    if 1 < len(healthy) < len(datasets):
        try:
            for i, outcome in zip(
                healthy, _anonymize([datasets[i] for i in healthy], plan, seed), strict=True
            ):
                outcomes[i] = outcome
        except Exception as exc:  # they fail only together: keep their results from the runs alone
            log.error(
                "pixel stage failed again without the isolated photos", extra={"error": type(exc).__name__}
            )
    return [o if o is not None else Quarantine("pixel-stage-error") for o in outcomes]
