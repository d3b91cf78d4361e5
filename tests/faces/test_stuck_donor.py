"""A donor set whose outputs keep matching the same donor, rung after rung, is given up for the next set."""

from __future__ import annotations

from anonymizer.engines.surrogate_ladder import stuck_on_donor
from anonymizer.engines.surrogate_settings import SurrogateSettings


def test_the_same_donor_on_three_rungs_in_a_row_gives_the_set_up() -> None:
    same = [("london_120", None)] * 3
    assert stuck_on_donor(same, 3)
    assert stuck_on_donor([(None, None), *same], 3)  # the last three count
    assert SurrogateSettings().stuck_donor_rungs == 0  # measured, and off by default (settings comment)


def test_a_set_still_moving_or_not_matching_keeps_climbing() -> None:
    assert not stuck_on_donor([("a", None), ("a", None)], 3)  # not yet three rungs
    assert not stuck_on_donor([("a", None), ("b", None), ("a", None)], 3)  # the donor changed
    assert not stuck_on_donor([("a", "a"), ("a", None), ("a", "a")], 3)  # one face got free once
    assert not stuck_on_donor([(None, None)] * 4, 3)  # far from every donor: the distance decides
    assert not stuck_on_donor([("a", None)] * 5, 0)  # 0 = climb every rung
