"""Tiny VerA configurations shared by the tests (32 px, few channels, CPU, seeded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from anonymizer.engines.vera.generator import Generator, GeneratorConfig
from anonymizer.engines.vera.model import VeraModel, save_vera
from anonymizer.engines.vera.nets import EncoderConfig, ProjectionHead, SmallFaceEncoder
from anonymizer.engines.vera.training.config import PRESETS
from anonymizer.engines.vera.training.encoder import save_encoder

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FACES = SHARED / "data" / "faces"
TINY_G = GeneratorConfig(**PRESETS["tiny"]["G"])
TINY_ENC = EncoderConfig(embed_dim=16, width=8, input_res=32)


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    """Seeded, single-threaded (the CI machine is shared); the thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    """A saved tiny VerA bundle (random weights) with its encoder beside it; returns the bundle path."""
    torch.manual_seed(1)
    enc = SmallFaceEncoder(TINY_ENC).eval()
    save_encoder(enc, tmp_path / "encoder.safetensors", "random test encoder")
    G = Generator(TINY_G)
    head = ProjectionHead(TINY_ENC.embed_dim, TINY_G.hl_dim)
    save_vera(tmp_path / "vera.safetensors", G, head, tmp_path / "encoder.safetensors", None, "test")
    return tmp_path / "vera.safetensors"


@pytest.fixture
def tiny_model(tiny_bundle: Path) -> VeraModel:
    from anonymizer.engines.vera.model import load_vera

    return load_vera(tiny_bundle)
