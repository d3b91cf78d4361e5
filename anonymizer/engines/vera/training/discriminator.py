"""Discriminator (image + segmentation), used only while training."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from anonymizer.engines.vera.classes import NUM_CLASSES
from anonymizer.engines.vera.layers import ConvDown


@dataclass(frozen=True)
class DiscriminatorConfig:
    resolution:  int = 64     # input side
    num_classes: int = NUM_CLASSES
    channels:    int = 64     # channels at the top resolution
    max_ch:      int = 256    # channel cap deeper in
    mbstd_group: int = 4      # minibatch-stddev group size

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class Discriminator(nn.Module):
    """Two stems (RGB, segmentation probabilities) summed into one residual trunk down to 4×4."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.img_stem = nn.Conv2d(3, c, 1)
        self.seg_stem = nn.Conv2d(cfg.num_classes, c, 1)
        blocks, side = [], cfg.resolution
        while side > 4:
            nxt = min(cfg.max_ch, c * 2)
            blocks.append(ConvDown(c, nxt))
            c, side = nxt, side // 2
        self.trunk = nn.Sequential(*blocks)
        self.final = nn.Conv2d(c + 1, c, 3, padding=1)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, c), nn.LeakyReLU(0.2), nn.Linear(c, 1))

    def forward(self, rgb: torch.Tensor, seg_prob: torch.Tensor) -> torch.Tensor:
        b, _, r, _ = rgb.shape  # rgb: [B, 3, R, R]; seg_prob: [B, K, R, R]
        assert r == self.cfg.resolution and seg_prob.shape == (b, self.cfg.num_classes, r, r), seg_prob.shape
        x = F.leaky_relu(self.img_stem(rgb) + self.seg_stem(seg_prob), 0.2)
        x = self.trunk(x)  # [B, C, 4, 4]
        g = min(self.cfg.mbstd_group, b)
        while b % g:
            g -= 1
        std = x.float().view(g, -1, *x.shape[1:]).std(0, unbiased=False).mean([1, 2, 3])  # [B/g]
        std = std.to(x.dtype).repeat(g)[:, None, None, None].expand(-1, 1, 4, 4)
        x = F.leaky_relu(self.final(torch.cat([x, std], 1)), 0.2)
        return self.fc(x)[:, 0]  # [B] logits
