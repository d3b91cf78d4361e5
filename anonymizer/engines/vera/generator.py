"""The VerA generator: a dual latent space (per-class shape/texture codes + one high-level code).

Per class k, a local generator of 1×1 modulated convs on Fourier position features turns (shape_k, h) into a
pseudo-depth map and (texture_k, h) into a feature map. A softmax over the K depths gives coarse masks that
fuse the K feature maps; a modulated 3×3 render net (styled by h) upsamples them to RGB + segmentation, the
segmentation with a residual from the coarse masks. Our own design after the VerA / SemanticStyleGAN ideas.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from anonymizer.engines.vera.classes import NUM_CLASSES
from anonymizer.engines.vera.layers import ClassModConv1x1, EqualLinear, ModConv, fourier_grid


@dataclass(frozen=True)
class GeneratorConfig:
    resolution:     int = 64    # output side, power of two (64 tiny … 512 full)
    num_classes:    int = NUM_CLASSES
    code_dim:       int = 64    # per-class shape / texture code size (w space)
    hl_dim:         int = 64    # high-level code size (projection-head output, unit norm)
    local_ch:       int = 64    # channels inside each local generator
    local_layers:   int = 2     # 1×1 layers for shape and again for texture
    feat_ch:        int = 64    # fused feature channels
    num_freqs:      int = 4     # Fourier octaves of the position grid
    coarse_res:     int = 16    # side of the local-generator grid
    render_ch:      int = 64    # render-net channels at the coarse resolution
    min_ch:         int = 16    # render-net channels floor at the top resolution
    mapping_layers: int = 2     # MLP depth of the code mapping

    def __post_init__(self) -> None:
        for side in (self.resolution, self.coarse_res):
            assert side >= 4 and side & (side - 1) == 0, f"{side} must be a power of two"
        assert self.coarse_res <= self.resolution

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def with_(self, **kw: int) -> GeneratorConfig:
        return replace(self, **kw)


@dataclass
class Latents:
    """All latents of a batch: what inversion optimises and anonymization edits."""

    shape:   torch.Tensor  # [B, K, code_dim] w-space shape codes
    texture: torch.Tensor  # [B, K, code_dim] w-space texture codes
    high:    torch.Tensor  # [B, hl_dim] high-level code

    def detach(self) -> Latents:
        return Latents(self.shape.detach(), self.texture.detach(), self.high.detach())


@dataclass
class GenOutput:
    rgb:    torch.Tensor  # [B, 3, R, R] in about [-1, 1]
    seg:    torch.Tensor  # [B, K, R, R] segmentation logits
    coarse: torch.Tensor  # [B, K, c, c] coarse fusion masks (softmax over pseudo-depth)


class CodeMapping(nn.Module):
    """z → w for every (class, shape|texture) code: one MLP with a learned (class, kind) embedding."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.embed = nn.Parameter(torch.randn(cfg.num_classes, 2, cfg.code_dim))
        dims = [2 * cfg.code_dim] + [cfg.code_dim] * cfg.mapping_layers
        self.mlp = nn.Sequential(
            *[EqualLinear(dims[i], dims[i + 1], lr_mul=0.01, activate=True)
              for i in range(cfg.mapping_layers)]
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, k, two, d = z.shape  # z: [B, K, 2, D]
        assert two == 2 and (k, d) == self.embed.shape[::2], z.shape
        z = z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + 1e-8)
        return self.mlp(torch.cat([z, self.embed[None].expand(b, -1, -1, -1)], -1))  # [B, K, 2, D]


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        k, d, c = cfg.num_classes, cfg.code_dim + cfg.hl_dim, cfg.local_ch
        self.mapping = CodeMapping(cfg)
        self.register_buffer("w_avg", torch.zeros(k, 2, cfg.code_dim))
        self.register_buffer("grid", fourier_grid(cfg.coarse_res, cfg.num_freqs))  # [F0, c, c]
        f0 = self.grid.shape[0]
        self.shape_net = nn.ModuleList(
            [ClassModConv1x1(k, f0 if i == 0 else c, c, d) for i in range(cfg.local_layers)]
        )
        self.to_depth = ClassModConv1x1(k, c, 1, d, activate=False, demodulate=False)
        self.depth_gain = nn.Parameter(torch.tensor(4.0))  # sharpens the depth softmax (crisper class masks)
        self.texture_net = nn.ModuleList([ClassModConv1x1(k, c, c, d) for _ in range(cfg.local_layers)])
        self.to_feat = ClassModConv1x1(k, c, cfg.feat_ch, d, activate=False, demodulate=False)
        self.render = _RenderNet(cfg)

    def sample_latents(
        self,
        batch:      int,
        gen:        torch.Generator | None = None,  # seeded for deterministic identities
        high:       torch.Tensor | None = None,     # [B, hl_dim] given high-level code, else random
        truncation: float = 1.0,                    # ψ: pull w towards the running mean
    ) -> Latents:
        cfg, dev = self.cfg, self.w_avg.device
        z = torch.randn(batch, cfg.num_classes, 2, cfg.code_dim, generator=gen, device="cpu").to(dev)
        w = self.mapping(z)  # [B, K, 2, D]
        w = self.w_avg + truncation * (w - self.w_avg)
        if high is None:
            high = F.normalize(torch.randn(batch, cfg.hl_dim, generator=gen, device="cpu"), dim=1).to(dev)
        assert high.shape == (batch, cfg.hl_dim), high.shape
        return Latents(w[:, :, 0], w[:, :, 1], high)

    def noise_shapes(self) -> list[tuple[int, int]]:
        return self.render.noise_shapes()

    def forward(self, lat: Latents, noise: list[torch.Tensor] | None = None) -> GenOutput:
        cfg = self.cfg
        b = lat.high.shape[0]
        assert lat.shape.shape == (b, cfg.num_classes, cfg.code_dim), lat.shape.shape
        assert lat.texture.shape == lat.shape.shape and lat.high.shape == (b, cfg.hl_dim)
        hk = lat.high[:, None].expand(-1, cfg.num_classes, -1)  # [B, K, hl]
        s_style = torch.cat([lat.shape, hk], -1)  # [B, K, D + hl]
        t_style = torch.cat([lat.texture, hk], -1)
        x = self.grid[None, None].expand(b, cfg.num_classes, -1, -1, -1)  # [B, K, F0, c, c]
        for layer in self.shape_net:
            x = layer(x, s_style)
        depth = self.to_depth(x, s_style)[:, :, 0]  # [B, K, c, c]
        for layer in self.texture_net:
            x = layer(x, t_style)
        feats = self.to_feat(x, t_style)  # [B, K, feat, c, c]
        coarse = torch.softmax(depth * self.depth_gain, 1)  # [B, K, c, c]
        fused = (coarse[:, :, None] * feats).sum(1)  # [B, feat, c, c]
        rgb, seg = self.render(fused, lat.high, noise)
        up = F.interpolate(coarse, size=rgb.shape[-2:], mode="bilinear", align_corners=False)
        return GenOutput(rgb, seg + torch.log(up + 1e-4), coarse)


class _RenderNet(nn.Module):
    """Modulated 3×3 conv pyramid from the coarse grid to the output side; skip toRGB / toSeg outputs."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        levels = int(math.log2(cfg.resolution // cfg.coarse_res))
        chans = [max(cfg.min_ch, cfg.render_ch >> i) for i in range(levels + 1)]
        self.sides = [cfg.coarse_res << i for i in range(levels + 1)]
        self.inp = ModConv(cfg.feat_ch, chans[0], cfg.hl_dim)
        self.convs = nn.ModuleList()
        for i in range(1, levels + 1):
            self.convs.append(ModConv(chans[i - 1], chans[i], cfg.hl_dim, upsample=True))
            self.convs.append(ModConv(chans[i], chans[i], cfg.hl_dim))
        self.to_rgb = nn.ModuleList(
            [ModConv(c, 3, cfg.hl_dim, 1, demodulate=False, activate=False) for c in chans]
        )
        self.to_seg = nn.ModuleList(
            [ModConv(c, cfg.num_classes, cfg.hl_dim, 1, demodulate=False, activate=False) for c in chans]
        )

    def noise_shapes(self) -> list[tuple[int, int]]:
        return [(self.sides[0], self.sides[0])] + [(s, s) for s in self.sides[1:] for _ in range(2)]

    def forward(
        self, fused: torch.Tensor, high: torch.Tensor, noise: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b = fused.shape[0]  # fused: [B, feat, c, c]; high: [B, hl]
        if noise is None:
            noise = [torch.randn(b, 1, h, w, device=fused.device, dtype=fused.dtype)
                     for h, w in self.noise_shapes()]
        assert len(noise) == len(self.noise_shapes()), len(noise)
        x = self.inp(fused, high, noise[0])
        rgb, seg = self.to_rgb[0](x, high), self.to_seg[0](x, high)
        for i in range(0, len(self.convs), 2):
            x = self.convs[i](x, high, noise[1 + i])
            x = self.convs[i + 1](x, high, noise[2 + i])
            rgb = _up2(rgb) + self.to_rgb[1 + i // 2](x, high)
            seg = _up2(seg) + self.to_seg[1 + i // 2](x, high)
        return rgb, seg  # [B, 3, R, R], [B, K, R, R]


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
