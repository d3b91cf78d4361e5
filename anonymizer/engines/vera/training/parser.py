"""Training the face parser from scratch (cross-entropy, optional soft Dice) and saving it."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from anonymizer.engines.vera.checkpoint import save_modules
from anonymizer.engines.vera.parser import FaceParser, ParserConfig
from anonymizer.engines.vera.training.data import FaceSet, augment

log = logging.getLogger(__name__)


def train_parser(
    cfg: ParserConfig, train: FaceSet, steps: int, batch: int = 8, lr: float = 2e-3, seed: int = 0,
    log_every: int = 50, aug: float = 0.5, dice: float = 0.0,
) -> tuple[FaceParser, list[float]]:
    """Train from scratch with augmentation; returns the parser and the loss history.

    ``dice`` > 0 adds that weight of soft multi-class Dice to the cross-entropy (helps thin regions)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    parser = FaceParser(cfg)
    opt = torch.optim.AdamW(parser.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    images = F.interpolate(train.images, size=(cfg.resolution,) * 2, mode="bilinear", align_corners=False)
    labels = F.interpolate(train.labels[:, None].float(), size=(cfg.resolution,) * 2, mode="nearest")
    labels = labels[:, 0].long()
    losses: list[float] = []
    start = time.monotonic()
    for step in range(steps):
        parser.train()
        idx = torch.randint(len(images), (batch,), generator=gen)
        x, y = augment(images[idx], labels[idx], gen, strength=aug)
        logits = parser(x)
        loss = F.cross_entropy(logits, y, ignore_index=-1)
        if dice > 0:
            loss = loss + dice * dice_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % log_every == 0 or step == steps - 1:
            log.info("parser step %d/%d loss %.4f (%.0fs)", step, steps, loss.item(),
                     time.monotonic() - start)
    return parser.eval(), losses


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch (target -1 ignored)."""
    valid = (target >= 0)[:, None].float()
    prob = logits.softmax(1) * valid
    onehot = F.one_hot(target.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2).float() * valid
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    return 1 - ((2 * inter + eps) / (denom + eps))[present].mean()


def save_parser(parser: FaceParser, path: Path, data: str) -> str:
    config = {"parser": parser.cfg.to_dict(), "data": data}
    return save_modules(path, {"parser": parser}, config, kind="parser")
