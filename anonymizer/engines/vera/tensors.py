"""Images between numpy (uint8 RGB, H×W×3) and torch ([3, H, W] float in [-1, 1])."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1.0  # [3, H, W]


def to_uint8(img: torch.Tensor) -> np.ndarray:
    return ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
