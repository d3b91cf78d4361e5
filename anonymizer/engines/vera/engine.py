"""The "vera" engine: joint inversion of a pairing group, keyed identity swap, render, exact region composite.

Each crop from the face pipeline is re-aligned (from its 68 landmarks) to the model's canonical frame, so the
engine does not depend on the pipeline's crop convention; the result is warped back and blended into the crop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anonymizer.engines.base import AlignedFace, register
from anonymizer.engines.vera import faceprep
from anonymizer.engines.vera.checkpoint import CheckpointError
from anonymizer.engines.vera.classes import region_class_indices
from anonymizer.engines.vera.device import pick_device
from anonymizer.engines.vera.inversion import InversionConfig, invert, replace_identity
from anonymizer.engines.vera.model import VeraModel, load_vera
from anonymizer.engines.vera.parser import predict
from anonymizer.engines.vera.tensors import to_tensor, to_uint8
from anonymizer.plans import Region

log = logging.getLogger(__name__)


class VeraEngine:
    name = "vera"

    def __init__(
        self,
        model:      VeraModel,
        inversion:  InversionConfig | None = None,
        crop_size:  int = 256,          # canonical crop side the pipeline should hand us
        truncation: float = 0.7,        # ψ for keyed identity codes
        device:     torch.device | None = None,
    ) -> None:
        self.model = model.to(device or torch.device("cpu"))
        self.inversion, self.crop_size = inversion or InversionConfig(), crop_size
        self.truncation, self.device = truncation, device or torch.device("cpu")
        self.last_stats: dict[str, float] = {}

    def _canonical(self, faces: Sequence[AlignedFace], r: int) -> tuple[torch.Tensor, list[np.ndarray]]:
        mats = [faceprep.canonical_transform(f.landmarks.astype(np.float32), r) for f in faces]
        crops = [cv2.warpAffine(f.image, m, (r, r), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
                 for f, m in zip(faces, mats, strict=True)]
        return torch.stack([to_tensor(c) for c in crops]).to(self.device), mats  # [N, 3, r, r]

    @torch.no_grad()
    def _labels(self, faces: Sequence[AlignedFace], r: int) -> torch.Tensor | None:
        """Parser labels [N, r, r], parsed at the parser's own resolution from the sharper crop."""
        parser = self.model.parser
        if parser is None:
            return None
        hi, _ = self._canonical(faces, parser.cfg.resolution)
        labels = predict(parser, hi)[:, None].float()  # [N, 1, p, p]
        return F.interpolate(labels, size=(r, r), mode="nearest")[:, 0].long()

    def _preserve_masks(self, labels: torch.Tensor, keep: tuple[int, ...]) -> torch.Tensor:
        if not keep:
            return torch.zeros_like(labels, dtype=torch.float32)[:, None]
        m = torch.isin(labels, torch.tensor(keep, device=labels.device)).float()[:, None]  # [N, 1, r, r]
        return F.max_pool2d(m, 3, 1, 1)  # dilate by one pixel

    def anonymize(
        self, faces: Sequence[AlignedFace], identity_seed: int, preserve: tuple[Region, ...]
    ) -> list[np.ndarray]:
        assert faces, "a pairing group has at least one face"
        t0 = time.monotonic()
        keep = region_class_indices(tuple(preserve))
        r = self.model.G.cfg.resolution
        target, mats = self._canonical(faces, r)
        labels = self._labels(faces, r)
        pmask = self._preserve_masks(labels, keep) if labels is not None else None
        with torch.enable_grad():
            result = invert(self.model, target, labels, pmask, self.inversion, shared=True)
        with torch.no_grad():
            swapped = replace_identity(self.model, result.latents, identity_seed, keep, self.truncation)
            anon = self.model.G(swapped, result.noise)
        rgb = anon.rgb
        if pmask is not None:
            rgb = pmask * target + (1 - pmask) * rgb  # original pixels inside the preserved classes
        outs = [self._paste(f, to_uint8(img), m, preserve)
                for f, img, m in zip(faces, rgb, mats, strict=True)]
        self.last_stats = {"mse_before": result.mse_before, "mse_after": result.mse_after,
                           "seconds": time.monotonic() - t0, "faces": float(len(faces))}
        return outs

    def _paste(
        self, face: AlignedFace, canon: np.ndarray, mat: np.ndarray, preserve: tuple[Region, ...]
    ) -> np.ndarray:
        """Warp the canonical result back into the crop, feathered; original pixels in preserved masks."""
        s = face.image.shape[0]
        inv = cv2.invertAffineTransform(mat)
        back = cv2.warpAffine(canon, inv, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        r = canon.shape[0]
        inner = np.zeros((r, r), np.float32)
        margin = max(1, r // 16)
        inner[margin:-margin, margin:-margin] = 1.0
        cover = cv2.warpAffine(inner, inv, (s, s), flags=cv2.INTER_LINEAR)
        cover = cv2.GaussianBlur(cover, (0, 0), max(1.0, s / 64))[..., None]
        out = cover * back.astype(np.float32) + (1 - cover) * face.image.astype(np.float32)
        out = np.clip(np.round(out), 0, 255).astype(np.uint8)
        for region in preserve:
            mask = face.masks.get(region)
            if mask is not None:
                inside = mask >= 0.5
                out[inside] = face.image[inside]  # exact: the pipeline's own mask wins
        return out


def _factory(options: dict[str, Any]) -> VeraEngine:
    ckpt = options.get("checkpoint")
    if not ckpt:
        raise CheckpointError("engine 'vera' needs engine_options.checkpoint (a trained VerA model); "
                              "it never falls back silently")
    path = Path(ckpt)
    if not path.is_file():
        raise CheckpointError(f"engine 'vera': checkpoint {path} does not exist")
    expect = {"generator.resolution": int(options["resolution"])} if "resolution" in options else None
    model = load_vera(path, _opt_path(options, "encoder"), _opt_path(options, "parser"), expect)
    inv = InversionConfig(steps=int(options.get("steps", 200)), lr=float(options.get("lr", 0.05)),
                          optimize_noise=bool(options.get("optimize_noise", False)))
    device = pick_device(str(options.get("device", "auto")))
    torch.manual_seed(int(options.get("seed", 0)))
    log.info("vera engine ready: checkpoint sha256 %s…, %d px, device %s", model.meta["sha256"][:12],
             model.G.cfg.resolution, device)
    crop, psi = int(options.get("crop_size", 256)), float(options.get("truncation", 0.7))
    return VeraEngine(model, inv, crop, psi, device)


def _opt_path(options: dict[str, Any], key: str) -> Path | None:
    return Path(options[key]) if options.get(key) else None


register("vera")(_factory)
