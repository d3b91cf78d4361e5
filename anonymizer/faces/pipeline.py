"""The face pipeline for one pairing group: detect → align → engine → paste back → keep region → verify.

Every engine shares this code; an engine only turns aligned crops into synthetic crops. Inside the preserved
region the output equals the input exactly (before any re-encoding); a narrow feathered seam lies outside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import cv2
import numpy as np

from anonymizer.engines.base import AlignedFace, Engine
from anonymizer.faces import align
from anonymizer.faces.attributes import PatientAttributes
from anonymizer.faces.detect import DetectedFace, detect_faces
from anonymizer.faces.grain import match_grain, skin_in_roi
from anonymizer.faces.regions import (
    LandmarkRegions,
    RegionProvider,
    RegionSettings,
    face_outline,
    feather_out,
    interocular,
    region_mask,
)
from anonymizer.faces.skin import SkinSource
from anonymizer.faces.verify import FaceCheck, VerifySettings, descriptor, torch_descriptor, verify_face
from anonymizer.plans import Region


@dataclass(frozen=True)
class PipelineSettings:
    feather: float = 0.08  # paste-back feather (sigma), fraction of the inter-ocular distance
    seam: float = 0.06  # feathered seam outside the preserved region, fraction of the inter-ocular distance
    regions: RegionSettings = field(default_factory=RegionSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    # the downscaled INTER_AREA copies of a photo (MTCNN's, verification's HOG copy, both descriptor chips)
    # are made by 2:1 halvings first at ratios of at least this (faces.area: ~50 ms less per 12 MP photo,
    # a fraction of a level's difference; the London set's ratios are 2.1-3.8, untouched); 0: one pass each
    halve_from: float = 4.0


@dataclass
class FaceResult:
    detection: DetectedFace
    check: FaceCheck | None = None


@dataclass
class PhotoResult:
    """One photo of the group: its anonymized pixels (None when it failed) and per-face verification."""

    image: np.ndarray | None
    faces: list[FaceResult] = field(default_factory=list)
    reason: str = ""  # "" when every face was replaced and verified

    @property
    def ok(self) -> bool:
        return self.image is not None and not self.reason


@dataclass
class _Record:
    photo: int
    detection: DetectedFace
    alignment: align.Alignment
    aligned: AlignedFace


def _align_all(
    images: Sequence[np.ndarray],
    detections: list[list[DetectedFace]],
    size: int,
    preserve: tuple[Region, ...],
    settings: PipelineSettings,
    attributes: Sequence[PatientAttributes] = (),
) -> list[_Record]:
    records = []
    how = torch_descriptor if settings.verify.descriptor == "torch" else descriptor
    describe = partial(how, halve_from=settings.halve_from)
    for photo, faces in enumerate(detections):
        known = attributes[photo] if photo < len(attributes) else PatientAttributes()
        for det in faces:
            al = align.canonical_alignment(det.landmarks, size)
            lm = align.apply(al.matrix, det.landmarks)
            masks = {Region.FACE: region_mask(lm, [Region.FACE], (size, size), settings=RegionSettings(0.0))}
            if preserve:
                keep = region_mask(lm, preserve, (size, size), settings=settings.regions)
                for region in preserve:
                    masks[region] = keep
            aligned = AlignedFace(
                image=align.crop(images[photo], al),
                landmarks=lm,
                masks={k: v.astype(np.float32) for k, v in masks.items()},
                photo_index=photo,
                descriptor=describe(images[photo], det.landmarks),
                sex=known.sex,
                age=known.age,
            )
            records.append(_Record(photo, det, al, aligned))
    return records


def smooth_mask(hard: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-feathered float mask; large sigmas are blurred at reduced size (same result, much faster)."""
    factor = max(1.0, sigma / 4.0)
    if factor <= 1.5:
        return cv2.GaussianBlur(hard.astype(np.float32), (0, 0), sigma)
    h, w = hard.shape
    small = cv2.resize(
        hard.astype(np.float32),
        (max(1, int(w / factor)), max(1, int(h / factor))),
        interpolation=cv2.INTER_AREA,
    )
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _blend(alpha: np.ndarray, warped: np.ndarray, base: np.ndarray) -> np.ndarray:
    """round(alpha * warped + (1 - alpha) * base) as uint8: the same float32 operations in the same order as
    the plain expression (bit-identical), in place, so a 12 MP face's ROI makes two float copies, not six."""
    mixed = np.multiply(alpha, warped, dtype=np.float32)
    other = base.astype(np.float32)
    other *= 1.0 - alpha
    mixed += other
    mixed += 0.5
    np.clip(mixed, 0, 255, out=mixed)
    return mixed.astype(np.uint8)


def paste_face(
    out: np.ndarray,
    original: np.ndarray,
    record: _Record,
    synthetic: np.ndarray,
    preserve: tuple[Region, ...],
    provider: RegionProvider,
    settings: PipelineSettings,
    grain_seed: int | None = None,
    detail: SkinSource | None = None,
) -> None:
    """Blend one synthetic crop into ``out`` (in place), then restore the preserved region exactly.
    With a ``grain_seed`` the synthetic skin gets the photo's own grain level (seeded noise)."""
    lm = record.detection.landmarks
    iod = interocular(lm)
    sigma = max(1.0, settings.feather * iod)
    outline = face_outline(lm)
    roi = align.clip_box(outline.min(0), outline.max(0), original.shape, pad=int(3 * sigma) + 2)
    x0, y0, x1, y1 = roi
    warped = align.warp_crop_to_roi(synthetic, record.alignment, roi).astype(np.float32)
    hard = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(hard, [np.round(outline - (x0, y0)).astype(np.int32)], 1)
    alpha = smooth_mask(hard, sigma)[..., None]
    keep = np.zeros(hard.shape, bool)
    if preserve:
        keep = provider.masks(original, lm, preserve, roi)
        alpha = alpha * (1.0 - feather_out(keep, settings.seam * iod))[..., None]
    blended = _blend(alpha, warped, out[y0:y1, x0:x1])
    if grain_seed is not None:
        skin = skin_in_roi(lm, roi)
        to_crop = record.alignment.matrix.copy()
        to_crop[:, 2] += to_crop[:, :2] @ (x0, y0)  # ROI pixels -> crop pixels
        weight = alpha[..., 0] * ~keep
        blended = match_grain(blended, original[y0:y1, x0:x1], weight, skin, grain_seed, detail, to_crop)
    blended[keep] = original[y0:y1, x0:x1][keep]
    out[y0:y1, x0:x1] = blended


def run_group(
    images: Sequence[np.ndarray],
    engine: Engine,
    identity_seed: int,
    preserve: tuple[Region, ...] = (),
    settings: PipelineSettings = PipelineSettings(),
    provider: RegionProvider | None = None,
    detections: list[list[DetectedFace]] | None = None,
    attributes: Sequence[PatientAttributes] = (),
) -> list[PhotoResult]:
    """Anonymize all faces of one pairing group with one synthetic identity; verify every face.
    ``attributes`` (per image, from the DICOM header) tell the engine the patient's sex and age."""
    provider = provider or LandmarkRegions(settings.regions)
    if detections is None:
        detections = [detect_faces(img, halve_from=settings.halve_from) for img in images]
    records = _align_all(images, detections, engine.crop_size, preserve, settings, attributes)
    crops = engine.anonymize([r.aligned for r in records], identity_seed, preserve) if records else []
    if len(crops) != len(records):
        raise RuntimeError(f"engine {engine.name} returned {len(crops)} crops for {len(records)} faces")
    # the engine's population of real faces for the linkage test (surrogate: the donor bank)
    reference = list(getattr(engine, "last_reference", ()) or ())
    outputs = [img.copy() for img in images]
    for rec, synthetic in zip(records, crops, strict=True):
        assert synthetic.shape == rec.aligned.image.shape and synthetic.dtype == np.uint8, synthetic.shape
        grain = (identity_seed + 7919 * rec.photo) % 2**63 if getattr(engine, "photo_grain", False) else None
        detail = getattr(engine, "photo_detail", None)  # a donor's skin for the finest band (faces/skin.py)
        paste_face(
            outputs[rec.photo], images[rec.photo], rec, synthetic, preserve, provider, settings, grain, detail
        )
    expect_face = bool(getattr(engine, "produces_face", True))
    before = {id(r.detection): r.aligned.descriptor for r in records}
    results = []
    for photo, faces in enumerate(detections):
        if not faces:
            results.append(PhotoResult(None, [], "no-face-found"))
            continue
        checks = [
            FaceResult(
                det,
                verify_face(
                    images[photo],
                    outputs[photo],
                    det.landmarks,
                    settings.verify,
                    expect_face=expect_face,
                    original_descriptor=before.get(id(det)),
                    reference=reference,
                    group_originals=[d for key, d in before.items() if key != id(det)],
                    halve_from=settings.halve_from,
                ),
            )
            for det in faces
        ]
        failed = [c.check.reason for c in checks if c.check is not None and not c.check.passed]
        results.append(PhotoResult(outputs[photo], checks, failed[0] if failed else ""))
    return results


def original_descriptors(
    images: Sequence[np.ndarray], detections: list[list[DetectedFace]]
) -> list[np.ndarray]:
    """Descriptors of every detected face, photo by photo (for evaluation)."""
    return [descriptor(images[p], d.landmarks) for p, faces in enumerate(detections) for d in faces]
