"""Face parser network: shapes at any input side, encoder features, IoU bookkeeping, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anonymizer.engines.vera.checkpoint import CheckpointError
from anonymizer.engines.vera.classes import NUM_CLASSES
from anonymizer.engines.vera.parser import (
    FaceParser,
    ParserConfig,
    load_parser,
    per_class_iou,
)
from anonymizer.engines.vera.training.parser import dice_loss, save_parser


def test_parser_outputs_class_logits_at_the_input_side() -> None:
    parser = FaceParser(ParserConfig(resolution=32)).eval()
    with torch.no_grad():
        assert parser(torch.zeros(2, 3, 48, 48)).shape == (2, NUM_CLASSES, 48, 48)
        feats = parser.features(torch.zeros(1, 3, 32, 32))
    assert len(feats) == 4 and feats[0].shape[-1] == 16  # finest first


def test_per_class_iou_counts_intersection_over_union_and_ignores_unknown() -> None:
    target = torch.tensor([[[5, 5, 1, -1]]])
    pred = torch.tensor([[[5, 1, 1, 5]]])
    iou = per_class_iou(pred, target)
    assert iou["mouth"] == pytest.approx(1 / 2) and iou["skin"] == pytest.approx(1 / 2)


def test_dice_loss_is_near_zero_for_a_confident_right_answer_and_high_for_a_wrong_one() -> None:
    target = torch.tensor([[[5, 5, 1, -1]]])
    right = torch.nn.functional.one_hot(target.clamp(min=0), NUM_CLASSES).permute(0, 3, 1, 2).float() * 50
    wrong = right.roll(1, dims=1)  # every pixel's mass on the neighbouring class
    assert dice_loss(right, target).item() < 0.05
    assert dice_loss(wrong, target).item() > 0.5


def test_parser_checkpoint_round_trip_and_kind_check(tmp_path: Path) -> None:
    parser = FaceParser(ParserConfig(resolution=32)).eval()
    save_parser(parser, tmp_path / "p.safetensors", "test")
    again = load_parser(tmp_path / "p.safetensors")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(parser(x), again(x))
    from anonymizer.engines.vera.model import load_vera

    with pytest.raises(CheckpointError, match="expected 'vera'"):
        load_vera(tmp_path / "p.safetensors")
