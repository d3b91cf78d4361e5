"""bench/face_quality.py's linkage attack for an attacker who knows the patient's sex: the gallery holds only
the originals of her self-reported sex, and chance follows that gallery's size (issue 11, nose kept)."""

from __future__ import annotations

import numpy as np

from bench.eval_pixels import print_same_sex_linkage
from bench.face_quality import linkage_chance, linkage_ranks, same_sex_linkage


def _at(*xs: float) -> np.ndarray:
    """A descriptor on the first axes of a 128-d space."""
    d = np.zeros(128)
    d[: len(xs)] = xs
    return d


SEXES = {"a": "F", "b": "F", "e": "F", "c": "M", "d": "M", "x": ""}
GALLERY = {
    "a": [_at(0.0), _at(0.05)],  # the patient: her nearest photo is 0.0 on axis 0
    "b": [_at(2.0)],
    "e": [_at(0.0, 3.0)],
    "c": [_at(0.6, 0.1)],  # two men nearer to her output than she is
    "d": [_at(0.7)],
    "x": [_at(0.65)],  # sex not reported: nearer too, but in no same-sex gallery
}


def test_the_same_sex_rank_leaves_the_other_sex_out_of_the_gallery() -> None:
    output = [("a", _at(0.9))]  # 0.9 from her, 0.3 / 0.2 from the men, 0.25 from x
    assert linkage_ranks(output, GALLERY) == [4]
    ranks, sizes = same_sex_linkage(output, GALLERY, SEXES)
    assert (ranks, sizes) == ([1], [3])


def test_a_woman_of_her_sex_still_outranks_her_and_an_unknown_sex_patient_is_left_out() -> None:
    outputs = [("a", _at(1.9)), ("x", _at(0.65)), ("c", _at(0.6, 0.1))]
    ranks, sizes = same_sex_linkage(outputs, GALLERY, SEXES)
    assert ranks == [2, 1]  # b (0.1 away) outranks a; c is first among the two men
    assert sizes == [3, 2]


def test_chance_is_the_mean_over_outputs_of_top_over_the_gallery_size() -> None:
    assert linkage_chance([3, 2], 1) == (1 / 3 + 1 / 2) / 2
    assert linkage_chance([20, 19], 5) == (5 / 20 + 5 / 19) / 2
    assert linkage_chance([3], 5) == 1.0
    assert np.isnan(linkage_chance([], 5))


def test_the_bench_prints_rank_and_chance_per_setting(capsys) -> None:
    rows = {"nose": [{"out_desc": [("a", _at(0.9)), ("c", _at(0.6, 0.1))]}]}
    print_same_sex_linkage(rows, GALLERY, SEXES)
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("| nose"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # both ranked first; chance (1/3 + 1/2) / 2 = 41.7 %, r5 chance 100 %; 2x capped at 100 %
    assert cells == ["nose", "2", "100.0% / 100.0%", "41.7% / 100.0%", "83.3% / 100.0%", "2-3"]
