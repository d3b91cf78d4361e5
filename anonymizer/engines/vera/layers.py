"""Building blocks: equalised linear, modulated convs (1×1 batched over classes; 3×3), Fourier features.

Pure PyTorch (no custom CUDA ops). Every modulated conv demodulates its weights per sample.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights scaled at run time)."""

    def __init__(
        self,
        in_dim:     int,            # input features
        out_dim:    int,            # output features
        bias_init:  float = 0.0,    # initial bias value
        lr_mul:     float = 1.0,    # learning-rate multiplier
        activate:   bool = False,   # leaky ReLU after the affine map
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)  # [..., out_dim]
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.activate else out


def fourier_grid(size: int, num_freqs: int, device: torch.device | None = None) -> torch.Tensor:
    """Fourier position features of a size×size grid in [-1, 1]²: (4·num_freqs + 2, size, size)."""
    coords = torch.linspace(-1.0, 1.0, size, device=device)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # [size, size] each
    freqs = (2.0 ** torch.arange(num_freqs, device=device)) * math.pi  # [num_freqs]
    ang_x = xx[None] * freqs[:, None, None]  # [num_freqs, size, size]
    ang_y = yy[None] * freqs[:, None, None]
    return torch.cat([xx[None], yy[None], ang_x.sin(), ang_x.cos(), ang_y.sin(), ang_y.cos()], 0)


class ClassModConv1x1(nn.Module):
    """K independent 1×1 modulated convolutions run at once, one per face class (local generators)."""

    def __init__(
        self,
        num_classes: int,           # K
        in_ch:       int,           # input channels per class
        out_ch:      int,           # output channels per class
        style_dim:   int,           # per-class style vector size
        activate:    bool = True,   # leaky ReLU + bias
        demodulate:  bool = True,   # per-sample weight demodulation
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, out_ch, in_ch))
        self.bias = nn.Parameter(torch.zeros(num_classes, out_ch))
        self.affine = nn.ModuleList(
            [EqualLinear(style_dim, in_ch, bias_init=1.0) for _ in range(num_classes)]
        )
        self.scale = 1.0 / math.sqrt(in_ch)
        self.activate, self.demodulate = activate, demodulate

    def forward(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        b, k = x.shape[:2]  # x: [B, K, Cin, H, W]
        assert styles.shape[:2] == (b, k), (styles.shape, x.shape)  # styles: [B, K, style_dim]
        s = torch.stack([aff(styles[:, i]) for i, aff in enumerate(self.affine)], 1)  # [B, K, Cin]
        wgt = self.weight[None] * self.scale * s[:, :, None, :]  # [B, K, Cout, Cin]
        if self.demodulate:
            wgt = wgt * torch.rsqrt(wgt.pow(2).sum(3, keepdim=True) + 1e-8)
        out = torch.einsum("bkoi,bkihw->bkohw", wgt, x)  # [B, K, Cout, H, W]
        if self.activate:
            out = F.leaky_relu(out + self.bias[None, :, :, None, None], 0.2) * math.sqrt(2)
        else:
            out = out + self.bias[None, :, :, None, None]
        return out


class ModConv(nn.Module):
    """3×3 (or k×k) modulated convolution with demodulation, optional ×2 bilinear upsampling and noise."""

    def __init__(
        self,
        in_ch:      int,            # input channels
        out_ch:     int,            # output channels
        style_dim:  int,            # global style vector size
        kernel:     int = 3,        # kernel size
        upsample:   bool = False,   # bilinear ×2 before the conv
        demodulate: bool = True,    # False for toRGB / toSeg
        activate:   bool = True,    # noise + bias + leaky ReLU
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.affine = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.noise_strength = nn.Parameter(torch.zeros(())) if activate else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.upsample, self.demodulate, self.activate, self.pad = upsample, demodulate, activate, kernel // 2

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        b = x.shape[0]  # x: [B, Cin, H, W]; style: [B, style_dim]
        assert style.shape[0] == b, (style.shape, x.shape)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        s = self.affine(style)  # [B, Cin]
        # Modulate activations instead of weights (same maths, one shared conv, AMP-friendly).
        x = x * s[:, :, None, None]
        out = F.conv2d(x, self.weight * self.scale, padding=self.pad)  # [B, Cout, H', W']
        if self.demodulate:
            wgt = self.weight[None] * self.scale * s[:, None, :, None, None]  # [B, Cout, Cin, k, k]
            dcoef = torch.rsqrt(wgt.pow(2).sum([2, 3, 4]) + 1e-8)  # [B, Cout]
            out = out * dcoef[:, :, None, None]  # [B, Cout, 1, 1]
        if not self.activate:
            return out + self.bias[None, :, None, None]
        if noise is not None:
            assert self.noise_strength is not None
            out = out + self.noise_strength * noise
        return F.leaky_relu(out + self.bias[None, :, None, None], 0.2) * math.sqrt(2)


class ConvDown(nn.Module):
    """Discriminator residual block: two 3×3 convs, average-pool ×0.5, 1×1 skip."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, in_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv1(x), 0.2)
        y = F.avg_pool2d(F.leaky_relu(self.conv2(y), 0.2), 2)
        return (y + F.avg_pool2d(self.skip(x), 2)) / math.sqrt(2)
