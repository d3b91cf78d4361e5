"""faces.area.area_copy: INTER_AREA copies by halvings first at large ratios (issue-11x13), and the pipeline's
``halve_from`` setting reaching every copy of a photo (MTCNN's, verification's HOG copy, both chips)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anonymizer.engines.base import create_engine
from anonymizer.faces import area, detect, verify
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.pipeline import PipelineSettings, run_group
from tests.faces.conftest import load_rgb


def _one_pass(image: np.ndarray, scale: float) -> np.ndarray:
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _photo_like(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth shading with fine noise and a few sharp-edged blocks (a photo's edges and grain)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(xx / 97.0) * np.cos(yy / 131.0)
    image = np.repeat(base[..., None], 3, axis=2) + rng.normal(0, 6, (h, w, 3))
    for _ in range(8):
        x, y = rng.integers(0, w - 200), rng.integers(0, h - 200)
        image[y : y + rng.integers(40, 200), x : x + rng.integers(40, 200)] = rng.integers(0, 256, 3)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(3000, 4000), (1351, 2113), (1437, 1899)])
def test_off_and_small_ratios_are_one_pass_bit_for_bit(shape: tuple[int, int]) -> None:
    image = _photo_like(shape, 1)
    for scale in (0.12, 0.26, 0.4):
        assert np.array_equal(area.area_copy(image, scale, 0.0), _one_pass(image, scale))
    # below halve_from (the London set: ratios 2.1-3.8) the copy is main's
    for scale in (0.26, 0.3, 0.4, 0.9):
        assert np.array_equal(area.area_copy(image, scale, 4.0), _one_pass(image, scale))


@pytest.mark.parametrize("shape", [(3000, 4000), (1351, 2113), (2379, 2115)])
def test_large_ratios_halve_first_and_stay_within_a_level(shape: tuple[int, int]) -> None:
    image = _photo_like(shape, 2)
    scale = 0.12  # MTCNN's 480 px copy of a 4000 px photo: ratio 8.3, halved twice, then 2.08 in one pass
    fast = area.area_copy(image, scale, 4.0)
    half = _one_pass(_one_pass(image, 0.5), 0.5)
    assert np.array_equal(fast, _one_pass(half, 4 * scale))  # the halvings, then one pass at 4x the scale
    ref = _one_pass(image, scale)
    assert abs(fast.shape[0] - ref.shape[0]) <= 1 and abs(fast.shape[1] - ref.shape[1]) <= 1
    h, w = min(fast.shape[0], ref.shape[0]), min(fast.shape[1], ref.shape[1])
    diff = np.abs(fast[:h, :w].astype(int) - ref[:h, :w].astype(int))
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3  # a fraction of a level; edges a few


def test_cells_cover_the_same_source_area() -> None:
    """A bright dot's centroid lands where one pass puts it (the final cells are 1 / scale source pixels from
    the origin): the copy is not shifted, so boxes and landmarks map back by the same scale."""
    for x, y in ((1001, 733), (2500, 1999), (3301, 417)):
        image = np.zeros((3000, 4000, 3), np.uint8)
        cv2.circle(image, (x, y), 9, (255, 255, 255), -1)
        centres = []
        for copy in (area.area_copy(image, 0.12, 4.0), _one_pass(image, 0.12)):
            grey = copy[..., 0].astype(float)
            yy, xx = np.mgrid[0 : grey.shape[0], 0 : grey.shape[1]]
            centres.append(np.array([(xx * grey).sum(), (yy * grey).sum()]) / grey.sum())
        assert np.abs(centres[0] - centres[1]).max() < 0.02, centres


def test_detection_on_a_london_photo_is_unchanged_and_close_on_a_large_one() -> None:
    image = load_rgb("001_03")  # 1350 px: MTCNN's ratio 2.8, below halve_from
    off, on = detect_faces(image, halve_from=0.0)[0], detect_faces(image, halve_from=4.0)[0]
    assert off.box == on.box and np.array_equal(off.landmarks, on.landmarks)
    large = cv2.resize(image, (4050, 4050), interpolation=cv2.INTER_CUBIC)  # ratio 8.4: halved twice
    off, on = detect_faces(large, halve_from=0.0)[0], detect_faces(large, halve_from=4.0)[0]
    # dlib's fit at this size moves a few pixels with a pixel of MTCNN's box, as much as with main's copy of
    # the photo shifted by one column (docs/face-engine.md, issue-11x13): a mean under 1.5 % of the IOD
    iod = np.linalg.norm(off.landmarks[36:42].mean(0) - off.landmarks[42:48].mean(0))
    assert np.abs(np.subtract(off.box, on.box)).max() <= 4
    assert np.linalg.norm(off.landmarks - on.landmarks, axis=1).mean() < 0.015 * iod
    chips = [verify.descriptor(large, off.landmarks, halve_from) for halve_from in (0.0, 4.0)]
    assert verify.distance(*chips) < 0.02


def test_run_group_hands_the_setting_to_every_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    image = cv2.resize(load_rgb("001_03"), (3000, 3000), interpolation=cv2.INTER_CUBIC)
    seen: list[tuple[float, float]] = []

    def spy(source: np.ndarray, scale: float, halve_from: float = 0.0) -> np.ndarray:
        seen.append((round(1.0 / scale, 1), halve_from))
        return area.area_copy(source, scale, halve_from)

    monkeypatch.setattr(detect, "area_copy", spy)
    monkeypatch.setattr(verify, "area_copy", spy)
    engine = create_engine("blur")
    for halve_from in (4.0, 0.0):
        seen.clear()
        run_group([image], engine, 1, settings=PipelineSettings(halve_from=halve_from))
        # MTCNN's copy, the original's chip, the HOG copy and the output's chip
        assert len(seen) == 4 and {h for _, h in seen} == {halve_from}, seen
        assert all(ratio > 2.0 for ratio, _ in seen)
    assert PipelineSettings().halve_from == 4.0
