"""bench/nose_linkage.py: the nose transplant that measures how much rank an exact nose alone gives, and the
gallery rank it reads (issue 11, nose kept)."""

from __future__ import annotations

import numpy as np

from anonymizer.faces.regions import RegionSettings, region_mask
from anonymizer.plans import Region
from bench.nose_linkage import _rank, paste_nose


def _landmarks(shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """68 points of a frontal face in a 200 px image: eyes at y 80, nose 27-35 below them (others spread)."""
    lm = np.zeros((68, 2))
    lm[:, 0], lm[:, 1] = np.linspace(40, 160, 68), 150.0  # outline, brows, mouth: out of the way
    lm[36:42] = [(60, 80), (66, 76), (74, 76), (80, 80), (74, 84), (66, 84)]
    lm[42:48] = lm[36:42] + np.array([60.0, 0.0])
    lm[27:31] = [(100, 78 + 10 * k) for k in range(4)]  # bridge
    lm[31:36] = [(90, 118), (95, 120), (100, 121), (105, 120), (110, 118)]  # nostrils
    return lm + np.asarray(shift)


def test_the_source_nose_lands_on_the_host_nose_and_nothing_else_moves() -> None:
    rng = np.random.default_rng(3)
    source = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    host = np.full((200, 200, 3), 40, np.uint8)
    src_lm, host_lm = _landmarks(), _landmarks((12.0, -6.0))
    out = paste_nose(source, src_lm, host, host_lm)
    inner = region_mask(src_lm, (Region.NOSE,), (200, 200), settings=RegionSettings(margin=0.0))
    ys, xs = np.nonzero(inner)
    moved = out[ys - 6, xs + 12].astype(int)  # the host's nose sits 12 px right and 6 px up
    assert np.abs(moved - source[ys, xs].astype(int)).mean() < 3  # the patient's pixels, not the host's
    far = ~region_mask(host_lm, (Region.NOSE,), (200, 200), settings=RegionSettings(margin=0.3))
    assert (out[far] == host[far]).all()


def test_the_rank_counts_identities_nearer_than_the_patient_and_can_leave_the_host_out() -> None:
    near = {"p": 0.7, "a": 0.5, "b": 0.69, "c": 0.71, "host": 0.2}
    assert _rank(near, "p") == 4
    assert _rank(near, "p", leave_out="host") == 3
