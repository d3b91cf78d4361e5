"""Training loop on a tiny CelebAMask-HQ-layout folder: config saved, checkpoints written, resume, dry run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from anonymizer.engines.vera.model import load_vera
from anonymizer.engines.vera.training.config import load_config, resolve, with_
from anonymizer.engines.vera.training.train import train


@pytest.fixture
def celeba_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "celeba"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(8):
        cv2.imwrite(str(root / "images" / f"{i}.png"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
        label = np.zeros((40, 40), np.uint8)
        label[10:30, 10:30] = 1  # skin
        label[22:26, 16:24] = 11  # upper lip → mouth
        cv2.imwrite(str(root / "masks" / f"{i}.png"), label)
    return root


def test_train_saves_config_checkpoints_and_resumes(
    tmp_path: Path, celeba_folder: Path, tiny_bundle: Path
) -> None:
    out = tmp_path / "run"
    cfg = resolve(
        "tiny",
        {
            "out_dir": str(out),
            "data": str(celeba_folder),
            "batch": 4,
            "steps": 2,
            "encoder": str(tiny_bundle.parent / "encoder.safetensors"),
            "ckpt_every": 1,
            "log_every": 1,
            "r1_every": 2,
            "workers": 0,
        },
    )
    history = train(cfg)
    assert len(history) == 2 and {"d_loss", "g_adv", "mirror", "recode"} <= set(history[0])
    assert load_config(out / "train_config.json") == cfg
    model = load_vera(out / "vera.safetensors")
    assert model.meta["config"]["step"] == 2
    resumed = train(with_(cfg, steps=3))
    assert len(resumed) == 1  # continued from step 2
    state = json.loads((out / "last.json").read_text())
    assert state["config"]["step"] == 3


def test_dry_run_resolves_prints_and_saves_without_training(
    tmp_path: Path, tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = resolve(
        "tiny",
        {
            "out_dir": str(tmp_path / "dry"),
            "data": "unused",
            "encoder": str(tiny_bundle.parent / "encoder.safetensors"),
            "dry_run": True,
        },
    )
    assert train(cfg) == []
    assert json.loads(capsys.readouterr().out)["G"]["resolution"] == 32
    assert (tmp_path / "dry" / "train_config.json").exists()
    assert not (tmp_path / "dry" / "vera.safetensors").exists()


def test_unknown_option_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown training options"):
        resolve("tiny", {"out_dir": "x", "data": "x", "encoder": "x", "learning_rate": 1.0})


def test_ffhq_layout_takes_masks_from_the_parser(tmp_path: Path, tiny_bundle: Path) -> None:
    from anonymizer.engines.vera.parser import FaceParser, ParserConfig
    from anonymizer.engines.vera.training.parser import save_parser

    rng = np.random.default_rng(1)
    folder = tmp_path / "ffhq"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    save_parser(FaceParser(ParserConfig(resolution=32)), tmp_path / "parser.safetensors", "random")
    base = {
        "out_dir": str(tmp_path / "run"),
        "data": str(folder),
        "batch": 4,
        "steps": 1,
        "workers": 0,
        "encoder": str(tiny_bundle.parent / "encoder.safetensors"),
        "w_seg_consist": 0.5,
    }
    with pytest.raises(ValueError, match="need a parser"):
        train(resolve("tiny", base))
    history = train(resolve("tiny", {**base, "parser": str(tmp_path / "parser.safetensors")}))
    assert len(history) == 1
    assert load_vera(tmp_path / "run" / "vera.safetensors").parser is not None  # recorded and verified
