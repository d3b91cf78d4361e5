"""bench/miss_report.py on a tiny synthetic eval: the trace parser, the fold banks, which output pairs collide
and the tier-5 donor pool (issue 11: what misses the goals on untuned identities)."""

from __future__ import annotations

import numpy as np

from bench.miss_report import bank_folds, pair_collisions, parse_trace, tier5_pool

TRACE = """\
# fold 0 038 done
# trace nose 038 output-matches-input:0.647 ok:0.701
#   set 0 tier 5 rung 0 away 0.558 closer 0 donor london_013
#   set 0 tier 5 rung 1 away 0.601 closer 2 donor -
#   set 1 tier 4 rung 0 away 0.612 closer 1 donor london_013,london_027
# trace eyes 038 ok:0.690 no-face-after-anonymization
"""


def _at(*xs: float) -> np.ndarray:
    d = np.zeros(128)
    d[: len(xs)] = xs
    return d


def test_the_trace_gives_each_photo_its_reason_and_each_donor_set_its_rungs() -> None:
    groups = parse_trace(TRACE.splitlines())
    nose = groups[("nose", "038")]
    assert nose.checks == [("output-matches-input", 0.647), ("ok", 0.701)]
    assert sorted(nose.rungs) == [0, 1] and len(nose.rungs[0]) == 2
    assert nose.rungs[1][0] == (4, 0, 0.612, 1, "london_013,london_027")
    assert nose.tier() == "4/5"
    eyes = groups[("eyes", "038")]
    assert eyes.checks[1][0] == "no-face-after-anonymization" and np.isnan(eyes.checks[1][1])
    assert eyes.tier() == "-"


def test_each_identity_draws_from_the_bank_of_the_other_fold() -> None:
    folds = bank_folds(["001", "002", "003", "004", "005"])
    assert folds == {"001": 1, "003": 1, "005": 1, "002": 0, "004": 0}


def test_only_pairs_of_different_patients_under_0_6_collide() -> None:
    ids = np.array(["a", "a", "b", "c"])
    descs = np.stack([_at(0.0), _at(0.1), _at(0.5), _at(0.0, 0.7)])
    pairs = pair_collisions(ids, descs)
    assert set(pairs) == {("a", "b")}  # a-a is one patient; c is 0.7 from a's photos
    assert [round(d, 3) for d in pairs[("a", "b")]] == [0.5, 0.4]


def test_the_tier5_pool_is_the_same_sex_donors_far_enough_from_the_patient() -> None:
    bank = {
        "near": (np.stack([_at(0.5)]), "F"),  # 0.5 < 0.55 from the patient
        "far": (np.stack([_at(1.0), _at(0.3)]), "F"),  # one photo near: not in the pool
        "ok": (np.stack([_at(0.0, 0.6)]), "F"),
        "man": (np.stack([_at(0.0, 2.0)]), "M"),
    }
    assert tier5_pool([_at(0.0)], "F", bank) == {"ok"}
    assert tier5_pool([_at(0.0)], "M", bank) == {"man"}
