"""The detail donor's nearest-centre table is built once per skin mask and shared: every donor of a bank
has the same mask (the reference shape's), so groups reuse it; a different mask must get its own table."""

from __future__ import annotations

import numpy as np

from anonymizer.faces.skin import _nearest_table, skin_source


def _texture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(60, 200, (256, 256, 3), dtype=np.uint8)


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[0:256, 0:256]
    return (y - 128) ** 2 + (x - 128) ** 2 < radius**2


def test_one_mask_one_table_shared_between_donors() -> None:
    a, b = skin_source(_texture(1), _disk(90)), skin_source(_texture(2), _disk(90))
    assert a is not None and b is not None
    assert a.nearest is b.nearest  # built once
    assert not a.nearest.flags.writeable
    assert np.array_equal(a.nearest, _nearest_table(a.centres, 256))
    assert not np.array_equal(a.band, b.band)  # the donor's own skin still differs


def test_another_mask_gets_its_own_table() -> None:
    small, large = skin_source(_texture(1), _disk(60)), skin_source(_texture(1), _disk(110))
    assert small is not None and large is not None
    assert not np.array_equal(small.nearest, large.nearest)
    assert np.array_equal(small.nearest, _nearest_table(small.centres, 256))
    assert np.array_equal(large.nearest, _nearest_table(large.centres, 256))
