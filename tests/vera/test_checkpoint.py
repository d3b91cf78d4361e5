"""Checkpoint round trip, hash and config refusal, and the engine factory's fail-closed start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anonymizer.engines.base import create_engine
from anonymizer.engines.vera.checkpoint import CheckpointError
from anonymizer.engines.vera.model import load_vera


def _render(model, seed: int = 3) -> torch.Tensor:  # type: ignore[no-untyped-def]
    G = model.G
    lat = G.sample_latents(2, torch.Generator().manual_seed(seed))
    noise = [torch.zeros(2, 1, h, w) for h, w in G.noise_shapes()]
    with torch.no_grad():
        return G(lat, noise).rgb


def test_bundle_round_trip_renders_identically(tiny_bundle: Path) -> None:
    a, b = load_vera(tiny_bundle), load_vera(tiny_bundle)
    torch.testing.assert_close(_render(a), _render(b), rtol=0, atol=0)
    meta = json.loads(tiny_bundle.with_suffix(".json").read_text())
    assert meta["kind"] == "vera" and len(meta["sha256"]) == 64
    assert meta["config"]["generator"]["resolution"] == 32


def test_modified_weights_are_refused_with_a_hash_error(tiny_bundle: Path) -> None:
    raw = bytearray(tiny_bundle.read_bytes())
    raw[-5] ^= 0xFF
    tiny_bundle.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_vera(tiny_bundle)


def test_config_mismatch_is_refused(tiny_bundle: Path) -> None:
    with pytest.raises(CheckpointError, match=r"generator.resolution=32 does not match the expected 256"):
        load_vera(tiny_bundle, expect={"generator.resolution": 256})
    meta = json.loads(tiny_bundle.with_suffix(".json").read_text())
    meta["config"]["generator"]["code_dim"] += 1  # sidecar edited: the weights no longer fit
    tiny_bundle.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_vera(tiny_bundle)


def test_swapped_encoder_is_refused(tiny_bundle: Path) -> None:
    enc = tiny_bundle.parent / "encoder.safetensors"
    enc.write_bytes(enc.read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match="encoder"):
        load_vera(tiny_bundle)


def test_vera_engine_without_checkpoint_is_a_startup_error(tmp_path: Path) -> None:
    import anonymizer.engines.vera  # noqa: F401  (registers "vera")

    with pytest.raises(CheckpointError, match=r"needs engine_options\.checkpoint"):
        create_engine("vera", {})
    with pytest.raises(CheckpointError, match="does not exist"):
        create_engine("vera", {"checkpoint": str(tmp_path / "missing.safetensors")})


def test_engine_factory_loads_a_valid_bundle(tiny_bundle: Path) -> None:
    import anonymizer.engines.vera  # noqa: F401

    engine = create_engine("vera", {"checkpoint": str(tiny_bundle), "steps": 2, "device": "cpu"})
    assert engine.name == "vera"


def test_site_encoders_load_frozen_from_facenet_weights_or_torchscript(tmp_path: Path) -> None:
    from facenet_pytorch import InceptionResnetV1

    from anonymizer.engines.vera.nets import load_frozen_encoder

    torch.save(InceptionResnetV1(pretrained=None).state_dict(), tmp_path / "site-facenet.pt")
    module, dim = load_frozen_encoder(tmp_path / "site-facenet.pt")
    assert dim == 512 and module(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    assert not any(p.requires_grad for p in module.parameters())
    scripted = torch.jit.script(
        torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    )
    scripted.save(str(tmp_path / "encoder.ts"))
    _, dim = load_frozen_encoder(tmp_path / "encoder.ts")
    assert dim == 8
    with pytest.raises(CheckpointError, match="not found"):
        load_frozen_encoder(tmp_path / "absent.safetensors")
