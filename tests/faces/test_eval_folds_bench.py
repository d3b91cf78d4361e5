"""bench/eval_pixels.py's folds (leave-half-out and leave-one-out) and bench/merge_runs.py, which joins runs
that split the identities between processes (issue 11: the whole set is the measure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.eval_pixels import bank_labels, split_folds
from bench.merge_runs import gallery, merged

IDS = [f"{n:03d}" for n in range(1, 8)]


def test_two_folds_are_the_historical_alternate_halves() -> None:
    assert split_folds(IDS, 2) == [(IDS[0::2], IDS[1::2]), (IDS[1::2], IDS[0::2])]


def test_leave_one_out_tests_every_identity_once_against_a_bank_of_everyone_else() -> None:
    folds = split_folds(IDS, len(IDS))
    assert sorted(i for _, test in folds for i in test) == IDS
    for bank, test in folds:
        assert len(test) == 1 and test[0] not in bank
        assert sorted(bank + test) == IDS


def test_a_fold_count_that_does_not_divide_leaves_no_empty_fold() -> None:
    folds = split_folds(IDS, 5)
    assert all(test for _, test in folds)
    assert sorted(i for _, test in folds for i in test) == IDS


def _run(folder: Path, ids: list[str], ok: list[bool]) -> Path:
    folder.mkdir()
    descs = np.arange(len(ids) * 128, dtype=float).reshape(len(ids), 128)
    np.savez(
        folder / "outputs.npz",
        nose_ids=np.array(ids),
        nose_desc=descs,
        nose_ok=np.array(ok),
        nose_sex_kept=np.array([True] * len(ids)),
    )
    return folder


def test_merge_joins_the_runs_outputs_in_run_order(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", ["001", "001"], [True, False])
    b = _run(tmp_path / "b", ["002", "002", "003", "003"], [True] * 4)
    rows = merged([a, b])
    assert [i for i, _ in rows["nose"]["out_desc"]] == ["001", "001", "002", "002", "003", "003"]
    assert rows["nose"]["verified"] == [True, False, True, True, True, True]


def test_the_gallery_pairs_each_identity_with_its_two_originals(tmp_path: Path) -> None:
    descs = np.arange(4 * 128, dtype=float).reshape(4, 128)
    np.savez(tmp_path / "originals.npz", ids=np.array(["001", "002"]), descriptors=descs)
    faces = gallery(tmp_path / "originals.npz")
    assert sorted(faces) == ["001", "002"]
    assert np.array_equal(faces["002"][1], descs[3])


def test_the_leave_one_out_bank_drops_the_patient_by_the_banks_own_label() -> None:
    labels = ["london_001", "london_002", "london_013"]
    assert bank_labels(labels, ["013"]) == ["london_013"]
    assert bank_labels(labels, ["001", "002"]) == ["london_001", "london_002"]
    assert bank_labels(["001", "002"], ["002"]) == ["002"]  # a bank labelled by file stem


def test_a_test_identity_missing_from_the_bank_is_an_error_not_a_silent_keep() -> None:
    with pytest.raises(ValueError, match="099"):
        bank_labels(["london_001"], ["001", "099"])
