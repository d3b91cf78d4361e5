"""Checkpoint I/O: safetensors weights + JSON config + sha256; never pickle.

``<stem>.safetensors`` holds the tensors (keys prefixed by module name), ``<stem>.json`` the constructor
config, training-data description and the weights' sha256. Loading refuses a hash or config mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT = "vera-ckpt/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the configuration it is loaded for."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_modules(path: Path, modules: dict[str, nn.Module], config: dict[str, Any], kind: str) -> str:
    """Atomically write weights + JSON sidecar; returns the weights' sha256."""
    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{name}.{key}": value.detach().cpu().contiguous()
        for name, module in modules.items()
        for key, value in module.state_dict().items()
    }
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "kind": kind})
    digest = sha256_file(tmp)
    meta = {"format": FORMAT, "kind": kind, "sha256": digest, "config": config}
    tmp_json = sidecar(path).with_name(sidecar(path).name + ".tmp")
    tmp_json.write_text(json.dumps(meta, indent=2, sort_keys=True))
    for src, dst in ((tmp, path), (tmp_json, sidecar(path))):
        with src.open("rb") as fh:
            os.fsync(fh.fileno())
        src.replace(dst)
    return digest


def read_checked(
    path: Path, kind: str | None = None, expect: dict[str, Any] | None = None
) -> tuple[dict, dict]:
    """(tensors, meta) after verifying the file exists, its sha256, its kind and the expected config keys."""
    path = Path(path)
    if not path.is_file() or not sidecar(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path} (and its .json sidecar)")
    meta = json.loads(sidecar(path).read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: unknown checkpoint format {meta.get('format')!r}")
    digest = sha256_file(path)
    if digest != meta.get("sha256"):
        raise CheckpointError(
            f"{path.name}: sha256 mismatch (file {digest[:12]}…, "
            f"config says {str(meta.get('sha256'))[:12]}…); "
            "refusing a modified or truncated checkpoint"
        )
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{path.name}: is a {meta.get('kind')!r} checkpoint, expected {kind!r}")
    for key, want in (expect or {}).items():
        have = _lookup(meta["config"], key)
        if have != want:
            raise CheckpointError(f"{path.name}: config {key}={have!r} does not match the expected {want!r}")
    return load_file(str(path)), meta


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def load_into(modules: dict[str, nn.Module], tensors: dict[str, torch.Tensor]) -> None:
    """Load prefixed tensors into modules strictly; a missing or extra key is a CheckpointError."""
    for name, module in modules.items():
        prefix = name + "."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"weights for {name!r} do not fit the configured network: {exc}") from exc


def load_module(
    path: Path, build: Callable[[dict[str, Any]], nn.Module], name: str = "module", kind: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Build a module from the checkpoint's config and load its weights (single-module checkpoints)."""
    tensors, meta = read_checked(path, kind)
    module = build(meta["config"])
    load_into({name: module}, tensors)
    return module, meta
