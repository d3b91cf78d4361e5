"""``vera-gateway vera ...`` is registered through gateway.cli's command hook and runs a dry-run train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_vera_train_dry_run_through_the_gateway_cli(
    tmp_path: Path, tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    out = tmp_path / "run"
    rc = main(
        [
            "vera",
            "train",
            "--preset",
            "tiny",
            "--out",
            str(out),
            "--data",
            "london:/nowhere",
            "--encoder",
            str(tiny_bundle.parent / "encoder.safetensors"),
            "--steps",
            "7",
            "--set",
            "r1_gamma=0.5",
            "--set",
            "amp=false",
            "--dry-run",
        ]
    )
    assert rc == 0
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["steps"] == 7 and saved["r1_gamma"] == 0.5 and saved["amp"] is False and saved["dry_run"]
    assert json.loads(capsys.readouterr().out) == saved  # the resolved config is printed as saved
