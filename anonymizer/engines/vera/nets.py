"""Discriminator (image + segmentation), the frozen high-level encoder, and the learned projection head."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class EncoderConfig:
    embed_dim: int = 128   # embedding size
    width:     int = 32    # first conv channels
    input_res: int = 64    # images are resized to this side

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class SmallFaceEncoder(nn.Module):
    """A small CNN identity/appearance encoder, trained contrastively on the shared faces, then frozen."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        layers: list[nn.Module] = []
        chans = [3, w, w * 2, w * 4, w * 4]
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1),
                       nn.GroupNorm(8, chans[i + 1]), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(chans[-1], cfg.embed_dim)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        assert rgb.ndim == 4 and rgb.shape[1] == 3, rgb.shape  # [B, 3, H, W] in [-1, 1]
        x = F.interpolate(rgb, size=(self.cfg.input_res,) * 2, mode="bilinear", align_corners=False)
        return self.out(self.body(x).mean([2, 3]))  # [B, embed_dim]


class ProjectionHead(nn.Module):
    """Learned head: frozen-encoder embedding → unit-norm high-level code."""

    def __init__(self, embed_dim: int, hl_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embed_dim, hidden), nn.SiLU(), nn.Linear(hidden, hl_dim))

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(emb.float()), dim=1)  # [B, hl_dim]


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` and row i of ``b`` are positives, other rows negatives."""
    assert a.shape == b.shape and a.ndim == 2, (a.shape, b.shape)
    logits = F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T / temperature  # [B, B]
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def load_frozen_encoder(path: Path) -> tuple[nn.Module, int]:
    """Load the site's encoder (any torch module from a file), frozen; returns (module, embed_dim).

    Accepted: our ``*.safetensors`` SmallFaceEncoder (with its JSON sidecar), a TorchScript file,
    or facenet-pytorch InceptionResnetV1 weights named ``*facenet*.pt`` (a state dict, loaded weights-only).
    """
    from anonymizer.engines.vera.checkpoint import CheckpointError, load_module

    if not Path(path).is_file():
        raise CheckpointError(f"encoder file not found: {path}")
    if path.suffix == ".safetensors":
        module, _ = load_module(path, lambda cfg: SmallFaceEncoder(EncoderConfig(**cfg["encoder"])))
        dim = module.cfg.embed_dim
    elif "facenet" in path.name:
        from facenet_pytorch import InceptionResnetV1

        facenet = InceptionResnetV1(pretrained=None)
        state = torch.load(path, map_location="cpu", weights_only=True)
        facenet.load_state_dict({k: v for k, v in state.items() if not k.startswith("logits.")})
        module, dim = _Resized(facenet, 160), 512
    else:
        module = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            dim = int(module(torch.zeros(1, 3, 64, 64)).shape[1])
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)
    return module, dim


class _Resized(nn.Module):
    """Feeds a wrapped encoder at its native input side (FaceNet: 160 px, [-1, 1] ≈ its standardisation)."""

    def __init__(self, inner: nn.Module, side: int) -> None:
        super().__init__()
        self.inner, self.side = inner, side

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(rgb, size=(self.side, self.side), mode="bilinear", align_corners=False)
        return self.inner(x)  # [B, embed_dim]


def r1_penalty(real_logits: torch.Tensor, real_inputs: list[torch.Tensor]) -> torch.Tensor:
    """R1: squared gradient norm of D at real samples."""
    grads = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return torch.stack([g.float().pow(2).flatten(1).sum(1) for g in grads]).sum(0).mean()
