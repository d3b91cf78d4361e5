"""The frozen high-level encoder and the learned projection head (the discriminator is training-only:
:mod:`anonymizer.engines.vera.training.discriminator`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


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
