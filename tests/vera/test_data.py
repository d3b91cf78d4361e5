"""Training-data preparation: landmark-derived class masks on a real photo, CelebAMask-HQ re-mapping."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from anonymizer.engines.vera import faceprep
from anonymizer.engines.vera.classes import CLASS_INDEX
from anonymizer.engines.vera.training.data import AlignedFolder, augment
from tests.vera.conftest import FACES


@pytest.mark.skipif(not (FACES / "london_set").is_dir(), reason="shared faces absent")
def test_landmark_masks_put_each_region_where_its_landmarks_are() -> None:
    image = faceprep.read_rgb(FACES / "london_set" / "004_03.jpg")
    lm = faceprep.detect_landmarks(image)
    assert lm is not None
    crop, crop_lm = faceprep.align(image, lm, 128)
    eyes = (crop_lm[36:42].mean(0) + crop_lm[42:48].mean(0)) / 2
    assert np.allclose(eyes / 128, [0.5, 0.40], atol=0.02)  # canonical frame
    label = faceprep.class_mask(crop, crop_lm)
    for name, points in (("mouth", crop_lm[48:60]), ("nose", crop_lm[30:36]), ("eyes", crop_lm[36:42])):
        x, y = np.round(points.mean(0)).astype(int)
        assert label[y, x] == CLASS_INDEX[name], name
    assert label[2, 2] == CLASS_INDEX["background"]  # plain studio wall in the corner
    assert label[int(crop_lm[30, 1]) - 20, int(crop_lm[30, 0])] in (CLASS_INDEX["skin"], CLASS_INDEX["nose"])


def test_celebamask_labels_are_remapped_to_vera_classes(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "0.png"), np.zeros((16, 16, 3), np.uint8))
    raw = np.zeros((16, 16), np.uint8)
    raw[0:4] = 4  # l_eye
    raw[4:8] = 12  # l_lip
    raw[8:12] = 13  # hair
    raw[12:16] = 18  # cloth
    cv2.imwrite(str(tmp_path / "masks" / "0.png"), raw)
    _, label = AlignedFolder(tmp_path, 16)[0]
    assert label[0, 0] == CLASS_INDEX["eyes"] and label[5, 0] == CLASS_INDEX["mouth"]
    assert label[9, 0] == CLASS_INDEX["hair"] and label[13, 0] == CLASS_INDEX["cloth"]


def test_folder_without_masks_yields_unknown_labels(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
    img, label = AlignedFolder(tmp_path, 8)[0]
    assert img.shape == (3, 8, 8) and (label == -1).all()


def test_augmentation_moves_labels_with_pixels() -> None:
    img = torch.full((2, 3, 16, 16), -1.0)
    img[:, :, 4:8, 4:8] = 1.0
    label = (img[:, 0] > 0).long()
    out, lab = augment(img, label, torch.Generator().manual_seed(0), strength=0.0)  # identity or mirror
    assert torch.equal((out[:, 0] > 0).long(), lab)
