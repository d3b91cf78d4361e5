"""Donor bank: consented donor photos reduced to what the surrogate engine needs.

Per donor photo: identity label, 68 landmarks in the canonical crop, a shape-free texture (the crop warped
to the bank's reference shape), the dlib 128-d descriptor, skin tone (CIE Lab), expression (mouth opening,
mouth width)
and, when a ``manifest.csv`` is found next to the photos, self-reported sex and age. Stored as one ``.npz``
(no pickle) with a JSON header; textures are JPEG-encoded.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.regions import interocular, region_mask
from anonymizer.faces.verify import descriptor
from anonymizer.faces.warp import extended, piecewise_affine, triangulate
from anonymizer.plans import Region

log = logging.getLogger(__name__)

BANK_VERSION = 1
BANK_CROP = 512
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
LONDON_SET_HINT = (
    "Supply consented donor photos (frontal, evenly lit), e.g. the Face Research Lab London Set "
    "(L. DeBruine & B. Jones 2017, CC BY 4.0, doi:10.6084/m9.figshare.5047666.v5), and build a bank with "
    "`vera-gateway donors build DIR -o donors.npz`."
)


class DonorBankError(RuntimeError):
    """The donor bank is missing, unreadable, or too small."""


@dataclass
class DonorPhoto:
    identity: str
    landmarks: np.ndarray  # (68, 2) canonical crop coordinates
    texture: np.ndarray  # (S, S, 3) uint8, warped to the bank reference shape
    descriptor: np.ndarray  # (128,)
    skin_lab: np.ndarray  # (3,) mean L*a*b* of cheek/forehead skin
    expression: np.ndarray  # (2,) mouth opening, mouth width (÷ inter-ocular distance)
    sex: str = ""  # "F" | "M" | ""
    age: float = float("nan")


def skin_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Face skin without eyes, brows, nose and mouth (bool (S, S)), for colour statistics."""
    from anonymizer.faces.regions import RegionSettings

    face = region_mask(landmarks, [Region.FACE], (size, size), settings=RegionSettings(0.0))
    parts = region_mask(
        landmarks,
        [Region.EYES, Region.BROWS, Region.NOSE, Region.MOUTH],
        (size, size),
        settings=RegionSettings(0.15),
    )
    return face & ~parts


def skin_lab(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab[mask].mean(0) if mask.any() else lab.reshape(-1, 3).mean(0)


def expression(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    iod = max(interocular(lm), 1e-6)
    opening = np.linalg.norm(lm[62] - lm[66]) / iod
    width = np.linalg.norm(lm[48] - lm[54]) / iod
    return np.array([opening, width], np.float32)


def ita_degrees(lab: np.ndarray) -> float:
    """Individual typology angle of a skin colour: lighter skin → larger angle."""
    return float(np.degrees(np.arctan2(lab[0] - 50.0, lab[2])))


def _read_manifest(folder: Path) -> dict[str, dict[str, str]]:
    for candidate in (folder / "manifest.csv", folder.parent / "manifest.csv"):
        if candidate.is_file():
            with candidate.open(newline="") as fh:
                return {Path(row.get("file", "")).name: row for row in csv.DictReader(fh)}
    return {}


def _attributes(name: str, manifest: dict[str, dict[str, str]]) -> tuple[str, str, float]:
    row = manifest.get(name, {})
    identity = row.get("identity") or Path(name).stem.split("_")[0]
    sex = {"female": "F", "male": "M"}.get(row.get("gender_self_reported", "").lower(), "")
    try:
        age = float(row.get("age_self_reported", "nan"))
    except ValueError:
        age = float("nan")
    return identity, sex, age


def _analyse(path: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    image = np.asarray(Image.open(path).convert("RGB"))
    faces = detect_faces(image)
    if not faces:
        return None
    face = faces[0]
    al = align.canonical_alignment(face.landmarks, size)
    return align.crop(image, al), align.apply(al.matrix, face.landmarks), descriptor(image, face.landmarks)


@dataclass
class DonorBank:
    reference: np.ndarray  # (68, 2) reference shape in the canonical crop
    photos: list[DonorPhoto]
    crop_size: int = BANK_CROP
    meta: dict[str, object] = field(default_factory=dict)

    def identities(self) -> list[str]:
        return sorted({p.identity for p in self.photos})

    def by_identity(self) -> dict[str, list[DonorPhoto]]:
        groups: dict[str, list[DonorPhoto]] = {}
        for p in self.photos:
            groups.setdefault(p.identity, []).append(p)
        return groups

    def without(self, identities: Sequence[str]) -> DonorBank:
        """A bank without the given identities (leave-out evaluation)."""
        drop = set(identities)
        return DonorBank(
            self.reference,
            [p for p in self.photos if p.identity not in drop],
            self.crop_size,
            dict(self.meta),
        )


def build_bank(
    folder: Path,
    size: int = BANK_CROP,
    progress: Callable[[int, int], None] | None = None,
    files: Sequence[Path] | None = None,
) -> DonorBank:
    """Analyse every photo in ``folder`` (or the given files); photos without a face are skipped."""
    paths = (
        sorted(files)
        if files is not None
        else sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    )
    if not paths:
        raise DonorBankError(f"no donor photos in {folder}. {LONDON_SET_HINT}")
    manifest = _read_manifest(Path(folder))
    raw = []
    for i, path in enumerate(paths):
        found = _analyse(path, size)
        if found is None:
            log.warning("donor photo without a face skipped", extra={"index": i})
        else:
            raw.append((path.name, *found))
        if progress:
            progress(i + 1, len(paths))
    if not raw:
        raise DonorBankError(f"no faces found in the donor photos of {folder}")
    reference = np.mean([lm for _, _, lm, _ in raw], axis=0).astype(np.float32)
    tris = triangulate(extended(reference, size))
    photos = []
    for name, crop_img, lm, desc in raw:
        identity, sex, age = _attributes(name, manifest)
        texture = piecewise_affine(crop_img, extended(lm, size), extended(reference, size), tris, size)
        photos.append(
            DonorPhoto(
                identity, lm, texture, desc, skin_lab(crop_img, skin_mask(lm, size)), expression(lm), sex, age
            )
        )
    meta = {
        "version": BANK_VERSION,
        "photos": len(photos),
        "identities": len({p.identity for p in photos}),
        "skipped": len(paths) - len(raw),
    }
    return DonorBank(reference, photos, size, meta)


def _encode_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def save_bank(bank: DonorBank, path: Path) -> None:
    """Write atomically (temp file, fsync, rename)."""
    blobs = [_encode_jpeg(p.texture) for p in bank.photos]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    arrays = {
        "reference": bank.reference.astype(np.float32),
        "landmarks": np.stack([p.landmarks for p in bank.photos]).astype(np.float32),
        "descriptors": np.stack([p.descriptor for p in bank.photos]).astype(np.float32),
        "skin_lab": np.stack([p.skin_lab for p in bank.photos]).astype(np.float32),
        "expression": np.stack([p.expression for p in bank.photos]).astype(np.float32),
        "age": np.array([p.age for p in bank.photos], np.float32),
        "sex": np.array([p.sex for p in bank.photos], dtype="<U1"),
        "identity": np.array([p.identity for p in bank.photos], dtype="<U64"),
        "texture_bytes": np.frombuffer(b"".join(blobs), np.uint8),
        "texture_offsets": offsets,
        "meta": np.array([json.dumps({**bank.meta, "crop_size": bank.crop_size})]),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        import os

        os.fsync(fh.fileno())
    tmp.replace(path)


def load_bank(path: Path) -> DonorBank:
    path = Path(path)
    if not path.is_file():
        raise DonorBankError(f"donor bank {path} not found. {LONDON_SET_HINT}")
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"][0]))
        if meta.get("version") != BANK_VERSION:
            raise DonorBankError(f"donor bank {path} has version {meta.get('version')}, need {BANK_VERSION}")
        data, offsets = z["texture_bytes"], z["texture_offsets"]
        photos = [
            DonorPhoto(
                identity=str(z["identity"][i]),
                landmarks=z["landmarks"][i],
                texture=np.asarray(
                    Image.open(io.BytesIO(data[offsets[i] : offsets[i + 1]].tobytes())).convert("RGB")
                ),
                descriptor=z["descriptors"][i],
                skin_lab=z["skin_lab"][i],
                expression=z["expression"][i],
                sex=str(z["sex"][i]),
                age=float(z["age"][i]),
            )
            for i in range(len(offsets) - 1)
        ]
        return DonorBank(z["reference"], photos, int(meta["crop_size"]), meta)


_cache: dict[Path, DonorBank] = {}
_cache_lock = threading.Lock()


def cached_bank(path: Path) -> DonorBank:
    """Load a bank once per process."""
    key = Path(path).resolve()
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load_bank(key)
        return _cache[key]
