"""The deployable VerA bundle: EMA generator + projection head + frozen encoder (+ parser), verified."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anonymizer.engines.vera.checkpoint import (
    CheckpointError,
    load_into,
    read_checked,
    save_modules,
    sha256_file,
)
from anonymizer.engines.vera.classes import CLASSES
from anonymizer.engines.vera.generator import Generator, GeneratorConfig
from anonymizer.engines.vera.nets import ProjectionHead, load_frozen_encoder
from anonymizer.engines.vera.parser import FaceParser, load_parser

KIND = "vera"


@dataclass
class VeraModel:
    G:       Generator
    head:    ProjectionHead
    encoder: torch.nn.Module
    parser:  FaceParser | None
    meta:    dict[str, Any]

    def to(self, device: torch.device) -> VeraModel:
        for m in (self.G, self.head, self.encoder, self.parser):
            if m is not None:
                m.to(device).eval().requires_grad_(False)
        return self

    def high_code(self, rgb: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] → [B, hl_dim] unit-norm high-level code (frozen encoder + head)."""
        return self.head(self.encoder(rgb))


def save_vera(
    path: Path, G: Generator, head: ProjectionHead, encoder_path: Path, parser_path: Path | None, data: str,
    extra: dict[str, Any] | None = None,
) -> str:
    config = {
        "generator": G.cfg.to_dict(),
        "classes": list(CLASSES),
        "head": {"embed_dim": head.net[0].in_features, "hl_dim": G.cfg.hl_dim},
        "encoder": {"file": Path(encoder_path).name, "sha256": sha256_file(Path(encoder_path))},
        "parser": ({"file": Path(parser_path).name, "sha256": sha256_file(Path(parser_path))}
                   if parser_path else None),
        "data": data,
        **(extra or {}),
    }
    return save_modules(path, {"G": G, "head": head}, config, kind=KIND)


def _check_dep(name: str, spec: dict[str, Any] | None, path: Path | None, ckpt: Path) -> None:
    if spec is None:
        return
    if path is None or not path.is_file():
        raise CheckpointError(f"{ckpt.name}: {name} file {spec['file']!r} not beside it, not configured")
    digest = sha256_file(path)
    if digest != spec["sha256"]:
        raise CheckpointError(f"{ckpt.name}: {name} {path.name} sha256 {digest[:12]}… is not the one it was "
                              f"trained with ({spec['sha256'][:12]}…)")


def load_vera(
    path: Path, encoder_path: Path | None = None, parser_path: Path | None = None,
    expect: dict[str, Any] | None = None,
) -> VeraModel:
    """Load and verify a bundle; the encoder/parser default to the files named in its config, beside it."""
    path = Path(path)
    tensors, meta = read_checked(path, KIND, expect)
    cfg = meta["config"]
    if cfg.get("classes") != list(CLASSES):
        raise CheckpointError(f"{path.name}: class list {cfg.get('classes')} differs from {CLASSES}")
    encoder_path = encoder_path or path.parent / cfg["encoder"]["file"]
    _check_dep("encoder", cfg["encoder"], encoder_path, path)
    if cfg.get("parser") and parser_path is None:
        parser_path = path.parent / cfg["parser"]["file"]
        _check_dep("parser", cfg["parser"], parser_path, path)
    G = Generator(GeneratorConfig(**cfg["generator"]))
    head = ProjectionHead(cfg["head"]["embed_dim"], cfg["head"]["hl_dim"])
    load_into({"G": G, "head": head}, tensors)
    encoder, _ = load_frozen_encoder(encoder_path)
    parser = load_parser(parser_path) if parser_path else None  # an explicit parser is the site's choice
    model = VeraModel(G, head, encoder, parser, meta)
    return model.to(torch.device("cpu"))
