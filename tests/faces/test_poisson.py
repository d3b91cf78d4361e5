"""The blend's Poisson solve by sine transforms (anonymizer/poisson.py, issue-11t5) against OpenCV's
seamlessClone, and as the solution of its equation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anonymizer import poisson
from tests.faces.conftest import load_rgb


def _faces() -> tuple[np.ndarray, np.ndarray]:
    """Two real faces as 512 px crops: the destination, and a source that differs everywhere."""
    image = load_rgb("001_03")
    side = min(image.shape[:2])
    crop = cv2.resize(image[:side, :side], (512, 512), interpolation=cv2.INTER_AREA)
    other = cv2.resize(load_rgb("004_08")[:side, :side], (512, 512), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(other[:, ::-1]), crop


def _mask(centre: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    mask = np.zeros((512, 512), np.uint8)
    cv2.ellipse(mask, centre, axes, 15, 0, 360, 255, -1)
    return mask


@pytest.mark.parametrize(("centre", "axes"), [((256, 270), (150, 190)), ((200, 300), (90, 60))])
def test_the_sine_solve_is_opencvs_clone_within_one_level(
    centre: tuple[int, int], axes: tuple[int, int]
) -> None:
    source, destination = _faces()
    mask = _mask(centre, axes)
    x, y, w, h = cv2.boundingRect(mask)
    theirs = cv2.seamlessClone(source, destination, mask.copy(), (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    before = mask.copy()
    ours = poisson.clone(source, destination, mask)
    assert np.array_equal(mask, before)  # OpenCV erodes its mask in place; ours is left alone
    difference = np.abs(ours.astype(int) - theirs)
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.1  # OpenCV's float32 rounding, a few % of values
    # the clone really moved the face: the source's gradients, not the destination's values
    inside = cv2.erode(mask, np.ones((9, 9), np.uint8)) > 0
    assert np.abs(ours.astype(int) - destination)[inside].mean() > 5
    outside = np.ones((512, 512), bool)
    outside[y : y + h, x : x + w] = False
    assert np.array_equal(ours[outside], destination[outside])


def test_a_source_that_differs_by_a_constant_gives_back_the_destination() -> None:
    """NORMAL_CLONE carries gradients only: the destination plus a constant has the destination's, so the
    solution is the destination (to float rounding; truncation may take a value one level down)."""
    _, destination = _faces()
    destination = np.clip(destination, 10, 200).astype(np.uint8)
    mask = _mask((256, 256), (170, 200))
    ours = poisson.clone(destination + np.uint8(40), destination, mask)
    lowered = destination.astype(int) - ours
    assert lowered.min() >= 0 and lowered.max() <= 1


def test_a_mask_without_an_interior_leaves_the_destination() -> None:
    source, destination = _faces()
    mask = np.zeros((512, 512), np.uint8)
    mask[100:102, 50:300] = 255  # two rows: no interior to solve for
    assert np.array_equal(poisson.clone(source, destination, mask), destination)
    mask[:] = 0
    mask[0, :] = 255  # the image's edge alone: OpenCV never clones there
    assert np.array_equal(poisson.clone(source, destination, mask), destination)
