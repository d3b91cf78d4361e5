"""Data: aligned face folders (CelebAMask-HQ layout with masks, FFHQ layout without), the shared London set
aligned with dlib landmarks and landmark-derived masks, and tensor augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from anonymizer.engines.vera import faceprep
from anonymizer.engines.vera.classes import celebamask_lut
from anonymizer.engines.vera.tensors import to_tensor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class FaceSet:
    images: torch.Tensor  # [N, 3, R, R] float in [-1, 1]
    labels: torch.Tensor  # [N, R, R] int64 class indices, -1 where unknown (no mask)
    ids:    list[str]     # identity label per image


def london_set(
    faces_root: Path, resolution: int, cache: Path, identities: set[str] | None = None, work_res: int = 256
) -> FaceSet:
    """London-set photos aligned to the canonical crop, landmark-derived masks (made at work_res)."""
    photos = faceprep.landmark_cache(faces_root / "london_set", cache)
    images, labels, ids = [], [], []
    for photo in photos:
        ident = photo.path.stem.split("_")[0]
        if identities is not None and ident not in identities:
            continue
        crop, lm = faceprep.align(faceprep.read_rgb(photo.path), photo.landmarks, work_res)
        label = faceprep.class_mask(crop, lm)
        crop = cv2.resize(crop, (resolution, resolution), interpolation=cv2.INTER_AREA)
        label = cv2.resize(label, (resolution, resolution), interpolation=cv2.INTER_NEAREST)
        images.append(to_tensor(crop))
        labels.append(torch.from_numpy(label.astype(np.int64)))
        ids.append(ident)
    return FaceSet(torch.stack(images), torch.stack(labels), ids)


def split_identities(ids: list[str], holdout: int) -> tuple[set[str], set[str]]:
    """Deterministic identity split: the last ``holdout`` identities (sorted) are held out."""
    uniq = sorted(set(ids))
    return set(uniq[:-holdout]), set(uniq[-holdout:])


class AlignedFolder(Dataset):
    """Aligned face crops. CelebAMask-HQ layout: ``images/`` + ``masks/<stem>.png`` (19-class label maps);
    FFHQ layout: images only (labels are -1; the trainer fills them from the parser)."""

    def __init__(self, root: Path, resolution: int) -> None:
        root = Path(root)
        img_dir = root / "images" if (root / "images").is_dir() else root
        self.files = sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        self.mask_dir = root / "masks" if (root / "masks").is_dir() else None
        self.resolution = resolution
        self.lut = np.array(celebamask_lut(), dtype=np.int64)
        if not self.files:
            raise FileNotFoundError(f"no images under {img_dir}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.resolution
        img = cv2.resize(faceprep.read_rgb(self.files[i]), (r, r), interpolation=cv2.INTER_AREA)
        label = torch.full((r, r), -1, dtype=torch.int64)
        if self.mask_dir is not None:
            mpath = self.mask_dir / (self.files[i].stem + ".png")
            if mpath.is_file():
                raw = cv2.imread(str(mpath), cv2.IMREAD_GRAYSCALE)
                raw = cv2.resize(raw, (r, r), interpolation=cv2.INTER_NEAREST)
                label = torch.from_numpy(self.lut[np.clip(raw, 0, len(self.lut) - 1)])
        return to_tensor(img), label


def augment(
    img: torch.Tensor, label: torch.Tensor, gen: torch.Generator, strength: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip, rotation (±10°), scale (±10%), shift (±5%), colour jitter; labels warped nearest."""
    b = img.shape[0]  # img: [B, 3, R, R]; label: [B, R, R]
    assert label.shape == (b, *img.shape[2:]), (label.shape, img.shape)
    u = torch.rand(b, 6, generator=gen).to(img.device) * 2 - 1  # [B, 6] in [-1, 1]
    ang = u[:, 0] * math.radians(10) * strength
    scale = 1 + 0.1 * strength * u[:, 1]
    flip = torch.where(u[:, 2] > 0, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=img.device)
    theta[:, 0, 0] = ang.cos() / scale * flip
    theta[:, 0, 1] = -ang.sin() / scale
    theta[:, 1, 0] = ang.sin() / scale * flip
    theta[:, 1, 1] = ang.cos() / scale
    theta[:, :, 2] = 0.05 * strength * u[:, 3:5]
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    lab = F.grid_sample(label[:, None].float(), grid, mode="nearest", padding_mode="border",
                        align_corners=False)
    gain = 1 + 0.15 * strength * torch.rand(b, 3, 1, 1, generator=gen).to(img.device)
    bias = 0.1 * strength * (u[:, 5:6, None, None])
    return ((out + 1) * gain - 1 + bias).clamp(-1, 1), lab[:, 0].long()
