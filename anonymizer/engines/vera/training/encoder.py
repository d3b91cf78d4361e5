"""Contrastive pre-training of the small frozen encoder on the shared faces (stands in for a site's FaceNet).

Positives are two augmented photos of the same identity (neutral vs smiling, randomly mirrored); the other
identities in the batch are negatives (InfoNCE). After training the encoder is frozen and saved.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from anonymizer.engines.vera.checkpoint import save_modules
from anonymizer.engines.vera.nets import EncoderConfig, SmallFaceEncoder
from anonymizer.engines.vera.training.data import FaceSet, augment
from anonymizer.engines.vera.training.losses import info_nce

log = logging.getLogger(__name__)


def _pairs(faces: FaceSet) -> list[tuple[int, int]]:
    by_id: dict[str, list[int]] = {}
    for i, ident in enumerate(faces.ids):
        by_id.setdefault(ident, []).append(i)
    return [(v[0], v[-1]) for v in by_id.values()]


def train_encoder(
    cfg: EncoderConfig, faces: FaceSet, steps: int, batch: int = 16, lr: float = 1e-3, seed: int = 0
) -> tuple[SmallFaceEncoder, list[float]]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    enc = SmallFaceEncoder(cfg)
    opt = torch.optim.AdamW(enc.parameters(), lr=lr, weight_decay=1e-4)
    pairs = torch.tensor(_pairs(faces))  # [P, 2]
    batch = min(batch, len(pairs))
    losses: list[float] = []
    for step in range(steps):
        pick = pairs[torch.randperm(len(pairs), generator=gen)[:batch]]  # [B, 2]
        swap = torch.rand(batch, generator=gen) < 0.5
        a, b = torch.where(swap, pick[:, 1], pick[:, 0]), torch.where(swap, pick[:, 0], pick[:, 1])
        xa, _ = augment(faces.images[a], faces.labels[a], gen)
        xb, _ = augment(faces.images[b], faces.labels[b], gen)
        loss = info_nce(enc(xa), enc(xb))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0:
            log.info("encoder step %d loss %.4f", step, loss.item())
    return enc.eval().requires_grad_(False), losses


def save_encoder(enc: SmallFaceEncoder, path: Path, data: str) -> str:
    return save_modules(path, {"module": enc}, {"encoder": enc.cfg.to_dict(), "data": data}, kind="encoder")
