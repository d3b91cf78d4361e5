"""Face parser: a segmentation-models-pytorch U-Net (small encoder, from scratch) over the VerA classes.

It provides region masks, the segmentation target for inversion, and encoder features for a perceptual loss.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anonymizer.engines.vera.checkpoint import load_module, save_modules
from anonymizer.engines.vera.classes import CLASSES, NUM_CLASSES
from anonymizer.engines.vera.data import FaceSet, augment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParserConfig:
    encoder:       str = "mobilenet_v2"          # smp encoder name (weights are never downloaded)
    depth:         int = 4                       # encoder depth
    decoder:       tuple[int, ...] = (64, 48, 32, 16)  # decoder channels, one per depth level
    resolution:    int = 128                     # input side
    num_classes:   int = NUM_CLASSES

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "decoder": list(self.decoder)}


class FaceParser(nn.Module):
    def __init__(self, cfg: ParserConfig) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        assert len(cfg.decoder) == cfg.depth, "one decoder width per encoder level"
        self.cfg = cfg
        self.net = smp.Unet(
            encoder_name=cfg.encoder, encoder_weights=None, encoder_depth=cfg.depth,
            decoder_channels=list(cfg.decoder), classes=cfg.num_classes,
        )

    def _resize(self, rgb: torch.Tensor) -> torch.Tensor:
        r = self.cfg.resolution
        if rgb.shape[-1] == r:
            return rgb
        return F.interpolate(rgb, size=(r, r), mode="bilinear", align_corners=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        assert rgb.ndim == 4 and rgb.shape[1] == 3, rgb.shape  # [B, 3, H, W] in [-1, 1]
        logits = self.net(self._resize(rgb))  # [B, K, r, r]
        return F.interpolate(logits, size=rgb.shape[-2:], mode="bilinear", align_corners=False)

    def features(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        """Encoder feature maps (for the perceptual loss), finest first, input image excluded."""
        return list(self.net.encoder(self._resize(rgb)))[1:]


def per_class_iou(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int = NUM_CLASSES
) -> dict[str, float]:
    """IoU per class over a whole set (pred, target: [N, H, W] class indices; -1 ignored)."""
    valid = target >= 0
    out: dict[str, float] = {}
    for k in range(num_classes):
        p, t = (pred == k) & valid, (target == k) & valid
        union = (p | t).sum().item()
        out[CLASSES[k]] = float((p & t).sum().item() / union) if union else float("nan")
    return out


@torch.no_grad()
def predict(parser: FaceParser, images: torch.Tensor, batch: int = 8, flip_tta: bool = True) -> torch.Tensor:
    """Class index per pixel [N, H, W]; with ``flip_tta`` the mirrored image's probabilities are averaged in
    (the VerA classes are left/right symmetric, so a mirror needs no label swap)."""
    parser.eval()
    out = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        prob = parser(x).softmax(1)
        if flip_tta:
            prob = prob + parser(x.flip(3)).softmax(1).flip(3)
        out.append(prob.argmax(1))
    return torch.cat(out)


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


def load_parser(path: Path) -> FaceParser:
    def build(config: dict) -> nn.Module:
        pc = dict(config["parser"])
        pc["decoder"] = tuple(pc["decoder"])
        return FaceParser(ParserConfig(**pc))

    module, _ = load_module(path, build, name="parser", kind="parser")
    assert isinstance(module, FaceParser)
    return module.eval().requires_grad_(False)
