"""Measures for bench/eval_pixels.py beyond identity: skin sharpness, seams, attribute probes, box IoU, the
linkage attack, collisions between patients, and what survives the DICOM codec (PSNR, bit-identical blocks).

Probes are ridge-regularised linear models on dlib descriptors (sex, age) and on similarity-normalised
68-point geometry (neutral vs smiling), fitted leave-identity-out on the London Set's self-reported labels:
the probe that judges identity X's outputs never saw X. Each probe's own accuracy on originals is printed.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from anonymizer.faces import align
from anonymizer.faces.detect import hog_detect
from anonymizer.faces.regions import RegionSettings, face_outline, interocular, region_mask
from anonymizer.plans import Region

SAME_PERSON = 0.6
FEATURES = (Region.EYES, Region.BROWS, Region.NOSE, Region.MOUTH)


def _roi(landmarks: np.ndarray, shape: tuple[int, ...], pad: float = 0.6) -> tuple[int, int, int, int]:
    outline = face_outline(landmarks)
    return align.clip_box(outline.min(0), outline.max(0), shape, int(pad * interocular(landmarks)))


def _gray(image: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = roi
    return cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)


def skin_region(landmarks: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Cheeks and forehead: the face inside its outline (pulled in from hair and background) without eyes,
    brows, nose and mouth."""
    x0, y0, x1, y1 = roi
    shape = (y1 - y0, x1 - x0)
    face = region_mask(landmarks, [Region.FACE], shape, (x0, y0), RegionSettings(0.0)).astype(np.uint8)
    inset = max(1, int(0.15 * interocular(landmarks)))
    face = cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * inset + 1,) * 2)) > 0
    parts = region_mask(landmarks, FEATURES, shape, (x0, y0), RegionSettings(0.25))
    return face & ~parts


def skin_sharpness_ratio(original: np.ndarray, output: np.ndarray, landmarks: np.ndarray) -> float:
    """Variance of the Laplacian on skin, output ÷ original (1 = as much fine detail as the photo had)."""
    roi = _roi(landmarks, original.shape)
    mask = skin_region(landmarks, roi)
    if not mask.any():
        return float("nan")
    a = cv2.Laplacian(_gray(original, roi), cv2.CV_32F, ksize=3)[mask].var()
    b = cv2.Laplacian(_gray(output, roi), cv2.CV_32F, ksize=3)[mask].var()
    return float(b / max(a, 1e-6))


def seam_ratio(original: np.ndarray, output: np.ndarray, landmarks: np.ndarray) -> float:
    """Gradient energy in a band along the paste boundary (the face outline, ± 0.15 × inter-ocular), output ÷
    original: above 1 the boundary shows as an edge the photo did not have."""
    roi = _roi(landmarks, original.shape)
    x0, y0, x1, y1 = roi
    edge = np.zeros((y1 - y0, x1 - x0), np.uint8)
    outline = np.round(face_outline(landmarks) - (x0, y0)).astype(np.int32)
    cv2.polylines(edge, [outline], True, 1, 1)
    band = cv2.distanceTransform(1 - edge, cv2.DIST_L2, 5) <= 0.15 * interocular(landmarks)

    def energy(image: np.ndarray) -> float:
        g = _gray(image, roi)
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1)
        return float((gx**2 + gy**2)[band].mean())

    return energy(output) / max(energy(original), 1e-6)


def box_iou(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> float:
    if a is None or b is None:
        return 0.0
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1)


def nearest_box(
    boxes: list[tuple[int, int, int, int]], centre: np.ndarray
) -> tuple[int, int, int, int] | None:
    if not boxes:
        return None
    return min(
        boxes, key=lambda b: float(np.hypot((b[0] + b[2]) / 2 - centre[0], (b[1] + b[3]) / 2 - centre[1]))
    )


def box_iou_sizes(
    original: np.ndarray, output: np.ndarray, centre: np.ndarray, sizes: int = 6, long_side: int = 480
) -> list[float]:
    """dlib box IoU of original and output with both photos downscaled to ``long_side`` and to ``sizes`` - 1
    further sizes within one pyramid step (5/6) below it; the first is the single reading. One reading
    decides near ties by where dlib's pyramid and HOG cells fall on the photo (issue-11b5: main's outputs read
    0.885-0.975 at six such sizes), so the mean is what a dlib user who resizes differently meets."""
    return [box_iou(a, b) for a, b in box_pairs_sizes(original, output, centre, sizes, long_side)]


def box_pairs_sizes(
    original: np.ndarray, output: np.ndarray, centre: np.ndarray, sizes: int = 6, long_side: int = 480
) -> list[tuple[tuple[int, int, int, int] | None, tuple[int, int, int, int] | None]]:
    """(original's box, output's box) in full-image pixels at the sizes of ``box_iou_sizes``."""
    pairs = []
    for k in range(sizes):
        side = round(long_side * (5 / 6) ** (k / sizes))
        before = nearest_box(hog_detect(original, side), centre)
        pairs.append((before, nearest_box(hog_detect(output, side), centre)))
    return pairs


def contrast_change(
    original: np.ndarray,
    output: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    long_side: int = 480,
) -> dict[str, float]:
    """Gradient energy of the output ÷ the original's, at the box reading's scale (grey, Sobel magnitude),
    in three parts each photo's own 68 landmarks place: the band along the jaw line (points 0-16, ±0.15 ×
    inter-ocular: the face's edge against cheek, neck and background), the band along the brows (17-26) and
    the inner face (hull of points 17-67)."""

    def energy(image: np.ndarray, landmarks: np.ndarray) -> list[float]:
        small = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
        scale = min(1.0, long_side / max(image.shape[:2]))
        small = cv2.resize(small, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        magnitude = np.hypot(cv2.Sobel(small, cv2.CV_32F, 1, 0), cv2.Sobel(small, cv2.CV_32F, 0, 1))
        lm = np.round(np.asarray(landmarks, np.float64) * scale).astype(np.int32)
        width = max(1, round(0.3 * interocular(lm)))
        masks = []
        for points, closed in ((lm[0:17], False), (lm[17:27], False)):
            mask = np.zeros(small.shape, np.uint8)
            cv2.polylines(mask, [points], closed, 1, width)
            masks.append(mask)
        inner = np.zeros(small.shape, np.uint8)
        cv2.fillConvexPoly(inner, cv2.convexHull(lm[17:68]), 1)
        masks.append(inner)
        return [float(magnitude[m > 0].mean()) if m.any() else float("nan") for m in masks]

    a, b = energy(original, before), energy(output, after)
    return {k: b[i] / max(a[i], 1e-6) for i, k in enumerate(("edge", "brows", "innerE"))}


def outline_change(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """How the output's face geometry differs from the original's (68 landmarks each), as the box reads it:
    ratios out / original of the jaw's width (points 0-16), the brow-to-chin height, the inner face's size
    (eye centres to mouth) and the whole extent, and the centre's shift in inter-ocular units (x, y)."""

    def parts(lm: np.ndarray) -> tuple[float, float, float, float]:
        eyes = (lm[36:42].mean(0), lm[42:48].mean(0))
        inner = float(np.linalg.norm((eyes[0] + eyes[1]) / 2 - lm[48:68].mean(0)))
        height = float(lm[8, 1] - lm[17:27, 1].min())
        extent = float(np.sqrt(np.prod(lm.max(0) - lm.min(0))))
        return float(np.linalg.norm(lm[16] - lm[0])), height, inner, extent

    a, b = parts(np.asarray(before, float)), parts(np.asarray(after, float))
    iod_a = interocular(np.asarray(before, float))
    shift = (np.asarray(after, float).mean(0) - np.asarray(before, float).mean(0)) / max(iod_a, 1e-6)
    keys = ("jaw", "height", "inner", "extent")
    change = {k: b[i] / max(a[i], 1e-6) for i, k in enumerate(keys)}
    change["dx"], change["dy"] = float(shift[0]), float(shift[1])
    return change


# --- probes -------------------------------------------------------------------------------------------------


def geometry(landmarks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """68 landmarks similarity-aligned to ``reference``, minus it, in inter-ocular units: (136,)."""
    lm = align.apply(align.similarity(landmarks, reference), landmarks)
    return ((lm - reference) / interocular(reference)).ravel().astype(np.float64)


@dataclass
class Sample:
    identity: str
    descriptor: np.ndarray
    geometry: np.ndarray
    smiling: bool
    sex: str  # "F" | "M" | ""
    age: float


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, float]:
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return mu / sd, w / sd, float(y.mean() - (mu / sd) @ w)


@dataclass
class Probes:
    """Leave-identity-out linear probes: ``predict(kind, identity, x)`` uses a model fitted without it."""

    samples: list[Sample]
    lam: float = 30.0
    _models: dict[tuple[str, str], tuple[np.ndarray, float]] = field(default_factory=dict)

    def _target(self, kind: str, s: Sample) -> float:
        if kind == "smile":
            return 1.0 if s.smiling else -1.0
        if kind == "sex":
            return {"M": 1.0, "F": -1.0}.get(s.sex, float("nan"))
        return s.age

    def _features(self, kind: str, s: Sample) -> np.ndarray:
        return s.geometry if kind == "smile" else s.descriptor

    def _model(self, kind: str, identity: str) -> tuple[np.ndarray, float]:
        key = (kind, identity)
        if key not in self._models:
            train = [s for s in self.samples if s.identity != identity and np.isfinite(self._target(kind, s))]
            x = np.stack([self._features(kind, s) for s in train])
            y = np.array([self._target(kind, s) for s in train])
            _, w, b = _ridge(x, y, self.lam)
            self._models[key] = (w, b)
        return self._models[key]

    def predict(self, kind: str, identity: str, features: np.ndarray) -> float:
        w, b = self._model(kind, identity)
        return float(features @ w + b)

    def call(self, kind: str, identity: str, features: np.ndarray) -> str | float:
        value = self.predict(kind, identity, features)
        if kind == "smile":
            return "smile" if value > 0 else "neutral"
        if kind == "sex":
            return "M" if value > 0 else "F"
        return value

    def own_accuracy(self) -> dict[str, float]:
        """Each probe on the originals, leave-identity-out: accuracy (smile, sex) and mean |age error|."""
        smile = [
            self.call("smile", s.identity, s.geometry) == ("smile" if s.smiling else "neutral")
            for s in self.samples
        ]
        sexed = [s for s in self.samples if s.sex]
        sex = [self.call("sex", s.identity, s.descriptor) == s.sex for s in sexed]
        aged = [s for s in self.samples if np.isfinite(s.age)]
        age = [abs(self.predict("age", s.identity, s.descriptor) - s.age) for s in aged]
        return {"smile": float(np.mean(smile)), "sex": float(np.mean(sex)), "age_mae": float(np.mean(age))}


# --- population measures ------------------------------------------------------------------------------------


def linkage_ranks(outputs: list[tuple[str, np.ndarray]], gallery: dict[str, list[np.ndarray]]) -> list[int]:
    """Rank of each output's own patient among every gallery identity (nearest photo per identity; 1 = the
    attacker's first guess is right)."""
    ids = sorted(gallery)
    stacks = {i: np.stack(gallery[i]) for i in ids}
    ranks = []
    for identity, desc in outputs:
        nearest = {i: float(np.linalg.norm(stacks[i] - desc[None], axis=1).min()) for i in ids}
        ranks.append(1 + sum(d < nearest[identity] for i, d in nearest.items() if i != identity))
    return ranks


def same_sex_linkage(
    outputs: list[tuple[str, np.ndarray]], gallery: dict[str, list[np.ndarray]], sexes: dict[str, str]
) -> tuple[list[int], list[int]]:
    """The linkage attack of an attacker who knows the patient's sex: each output's rank among the gallery
    identities of its patient's self-reported sex only, and that gallery's size (for chance: 1 / size,
    5 / size). Outputs of a patient whose sex is not known are left out of both lists."""
    ranks, sizes = [], []
    for identity, desc in outputs:
        sex = sexes.get(identity, "")
        if not sex:
            continue
        cohort = {i: photos for i, photos in gallery.items() if sexes.get(i) == sex}
        ranks += linkage_ranks([(identity, desc)], cohort)
        sizes.append(len(cohort))
    return ranks, sizes


def linkage_chance(sizes: list[int], top: int) -> float:
    """Chance that a random ordering ranks the patient within `top`, averaged over outputs whose galleries
    hold `sizes` identities."""
    return float(np.mean([min(1.0, top / n) for n in sizes])) if sizes else float("nan")


SAME_SEX_HEAD = ("outputs", "same-sex r1 / r5", "chance r1 / r5", "2× chance r1 / r5", "gallery size")


def same_sex_cells(
    outputs: list[tuple[str, np.ndarray]], gallery: dict[str, list[np.ndarray]], sexes: dict[str, str]
) -> tuple[str, ...]:
    """One setting's row under ``SAME_SEX_HEAD``: the share of outputs whose patient ranks 1st / within 5
    among the originals of her sex, that gallery's chance and twice it (capped at 100 %), its sizes."""
    ranks, sizes = same_sex_linkage(outputs, gallery, sexes)
    chance1, chance5 = linkage_chance(sizes, 1), linkage_chance(sizes, 5)

    def rate(hits: list[bool]) -> str:
        return f"{100 * np.mean(hits):.1f}%" if hits else "-"

    return (
        str(len(ranks)),
        f"{rate([r == 1 for r in ranks])} / {rate([r <= 5 for r in ranks])}",
        f"{100 * chance1:.1f}% / {100 * chance5:.1f}%",
        f"{min(100.0, 200 * chance1):.1f}% / {min(100.0, 200 * chance5):.1f}%",
        f"{min(sizes, default=0)}-{max(sizes, default=0)}",
    )


def collision_rate(items: list[tuple[str, np.ndarray]]) -> float:
    """Share of pairs of DIFFERENT identities whose descriptors are under dlib's same-person threshold."""
    if len(items) < 2:
        return float("nan")
    labels = np.array([i for i, _ in items])
    descs = np.stack([d for _, d in items])
    dist = np.linalg.norm(descs[:, None] - descs[None], axis=2)
    upper = np.triu(np.ones_like(dist, bool), 1) & (labels[:, None] != labels[None])
    return float((dist[upper] < SAME_PERSON).mean())


# --- what the DICOM codec keeps -----------------------------------------------------------------------------


def through_codec(original_jpeg: bytes, output: np.ndarray) -> tuple[np.ndarray, float]:
    """Encode ``output`` the way the gateway does (a DICOM made from the original JPEG, re-encoded by the
    codec), decode it again; also the share of 8×8 blocks (all components) whose dequantised DCT coefficients
    are identical to the original file's."""
    from pydicom import dcmread

    from anonymizer import codec
    from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset

    ds = jpeg_to_dataset(original_jpeg, PhotoContext("EVAL"))
    codec.encode(ds, [output])
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    again = dcmread(io.BytesIO(buf.getvalue()))
    decoded = codec.decode(again)[0]
    fragment = next(iter(_fragments(again)))
    return decoded, identical_block_share(original_jpeg, fragment)


def _fragments(ds: object) -> list[bytes]:
    from pydicom.encaps import generate_frames

    return list(generate_frames(ds.PixelData, number_of_frames=1))  # type: ignore[attr-defined]


def _dequantised(data: bytes) -> list[np.ndarray]:
    import jpeglib

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.jpg"
        path.write_bytes(data)
        jpeg = jpeglib.read_dct(str(path))
        planes = [jpeg.Y, jpeg.Cb, jpeg.Cr] if jpeg.has_chrominance else [jpeg.Y]
        tables = [jpeg.qt[n] for n in jpeg.quant_tbl_no[: len(planes)]]
        return [
            p.astype(np.int32) * t[None, None].astype(np.int32) for p, t in zip(planes, tables, strict=True)
        ]


def identical_block_share(a: bytes, b: bytes) -> float:
    pa, pb = _dequantised(a), _dequantised(b)
    if [p.shape for p in pa] != [p.shape for p in pb]:
        return 0.0
    same = sum(int((x == y).all(axis=(2, 3)).sum()) for x, y in zip(pa, pb, strict=True))
    return same / sum(x.shape[0] * x.shape[1] for x in pa)
