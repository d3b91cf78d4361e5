"""Distinct patients: the outward step (settings.outward_texture / outward_shape, issue-11c7). A mix of k
donors sits about 1/√k as far from its peers' centre as one real face; the step scales that deviation back
out, above the pore scale for the texture, and leaves everything else (and the engine, when off) alone."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.base import AlignedFace
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_synthesis import _PeerBase
from anonymizer.engines.surrogate_texture import outward

SIGMA = 2.0  # the pore scale of the test images (pixels)


def _smooth_and_grain(size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A centre, a broad deviation from it (a shaded cheek) and a one-pixel grain (skin pores)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    centre = np.full((size, size, 3), 120.0, np.float32)
    broad = (10.0 * np.sin(xx / 10.0) * np.cos(yy / 12.0))[..., None].repeat(3, 2)
    grain = (4.0 * ((xx + yy) % 2 * 2 - 1))[..., None].repeat(3, 2)
    return centre, broad, grain


def test_off_the_average_is_returned_untouched() -> None:
    centre, broad, grain = _smooth_and_grain()
    average = centre + broad + grain
    assert outward(average, centre, 1.0, SIGMA) is average  # not even a copy: off is the old engine


def test_the_broad_deviation_is_scaled_and_the_grain_is_left() -> None:
    centre, broad, grain = _smooth_and_grain()
    moved = outward(centre + broad + grain, centre, 2.0, SIGMA)
    inner = (slice(8, -8), slice(8, -8))  # away from the blur's border
    # the broad deviation doubles (a blur keeps a broad pattern nearly as it is)
    assert np.allclose((moved - centre - grain)[inner], 2.0 * broad[inner], atol=1.0)
    # the grain's band: what is left above the broad one is the grain itself, not twice it
    fine = moved - cv2.GaussianBlur(moved, (0, 0), SIGMA)
    own = grain - cv2.GaussianBlur(grain, (0, 0), SIGMA)
    assert np.abs(fine[inner]).mean() < 1.15 * np.abs(own[inner]).mean()
    # towards the centre (gain < 1) is the same rule, the other way
    assert np.linalg.norm(outward(centre + broad, centre, 0.5, SIGMA) - centre) < np.linalg.norm(broad)


def _ingredients(bank_path: Path, **settings: float) -> tuple[object, _PeerBase]:
    bank = load_bank(bank_path)
    engine = SurrogateEngine(SurrogateSettings(**settings), bank)
    groups = list(bank.by_identity().values())
    size = bank.crop_size
    peers = [photos[0] for photos in groups]
    base = _PeerBase(
        centre=np.mean([engine._common_tone(p) for p in peers], axis=0),
        anti=np.zeros((size, size, 3), np.float32),
        shape_centre=np.mean([p.landmarks for p in peers], axis=0),
        skin=None,
    )
    face = AlignedFace(image=np.zeros((size, size, 3), np.uint8), landmarks=bank.reference.copy())
    donors = groups[:3]
    weights = np.full(len(donors), 1.0 / len(donors))
    return engine._ingredients(face, donors, base, weights), base


def test_the_mix_moves_out_from_its_peers_centre_and_stays_the_same_mix(bank_path: Path) -> None:
    off, base = _ingredients(bank_path)
    on, _ = _ingredients(bank_path, outward_texture=2.0, outward_shape=1.5)
    again, _ = _ingredients(bank_path, outward_texture=2.0, outward_shape=1.5)
    # one patient, one identity: the step has no randomness of its own
    assert np.array_equal(on.average, again.average) and np.array_equal(on.shape, again.shape)
    # the texture: further out from the centre, along the same deviation (not a new direction)
    out_off = (off.average - base.centre).ravel().astype(np.float64)
    out_on = (on.average - base.centre).ravel().astype(np.float64)
    assert np.linalg.norm(out_on) > 1.5 * np.linalg.norm(out_off)
    assert out_on @ out_off / (np.linalg.norm(out_on) * np.linalg.norm(out_off)) > 0.95
    # the shape: exactly 1.5 × the deviation from the peers' mean landmarks
    assert np.allclose(on.shape - base.shape_centre, 1.5 * (off.shape - base.shape_centre), atol=1e-3)
    # the rungs' caricature reads the moved mix: its coarse deviation grew alike
    assert np.linalg.norm(on.coarse) > 1.5 * np.linalg.norm(off.coarse)


def test_off_is_the_engine_before(bank_path: Path) -> None:
    default, _ = _ingredients(bank_path)
    off, _ = _ingredients(bank_path, outward_texture=1.0, outward_shape=1.0)
    assert np.array_equal(default.average, off.average) and np.array_equal(default.shape, off.shape)
    assert SurrogateSettings().outward_texture == 1.0 and SurrogateSettings().outward_shape == 1.0
