"""Face parser: a segmentation-models-pytorch U-Net (small encoder, from scratch) over the VerA classes.

It provides region masks, the segmentation target for inversion, and encoder features for a perceptual loss.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anonymizer.engines.vera.checkpoint import load_module
from anonymizer.engines.vera.classes import CLASSES, NUM_CLASSES

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


def load_parser(path: Path) -> FaceParser:
    def build(config: dict) -> nn.Module:
        pc = dict(config["parser"])
        pc["decoder"] = tuple(pc["decoder"])
        return FaceParser(ParserConfig(**pc))

    module, _ = load_module(path, build, name="parser", kind="parser")
    assert isinstance(module, FaceParser)
    return module.eval().requires_grad_(False)
