"""bench/face_quality.py's box reading at several photo sizes (issue 11's dlib box IoU): one reading decides
near ties by where dlib's grid falls, so the bench also prints the mean over six sizes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.face_quality import box_iou_sizes

PHOTO = Path(__file__).resolve().parents[3] / "shared" / "data" / "faces" / "london_set" / "017_03.jpg"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    if not PHOTO.exists():
        pytest.skip("London set not in ../shared")
    return cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


def test_the_same_photo_keeps_its_box_at_every_size(photo: np.ndarray) -> None:
    centre = np.array(photo.shape[1::-1], float) / 2
    assert box_iou_sizes(photo, photo.copy(), centre) == [1.0] * 6


def test_a_much_smaller_face_moves_the_box_at_every_size(photo: np.ndarray) -> None:
    h, w = photo.shape[:2]
    smaller = cv2.resize(photo, (round(w * 0.6), round(h * 0.6)), interpolation=cv2.INTER_AREA)
    canvas = np.full_like(photo, int(np.median(photo[:20])))
    top, left = (h - smaller.shape[0]) // 2, (w - smaller.shape[1]) // 2
    canvas[top : top + smaller.shape[0], left : left + smaller.shape[1]] = smaller
    ious = box_iou_sizes(photo, canvas, np.array([w / 2, h / 2]), sizes=3)
    assert len(ious) == 3 and max(ious) < 0.9
