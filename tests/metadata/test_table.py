"""The shipped Table E.1-1 is the standard's table: cross-checked against ../shared when present."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from anonymizer.metadata.table import Code, ProfileRow, load_table, resolve, resolve_combined
from anonymizer.plans import ProfileOption

REPO = Path(__file__).resolve().parents[2]
SHARED_TABLE = REPO.parent / "shared" / "data" / "dicom-standard" / "confidentiality_profile_attributes.json"
SHIPPED = REPO / "anonymizer" / "metadata" / "data" / "ps315_e1_1.json"


def _generator() -> Any:
    path = REPO / "scripts" / "gen_profile_table.py"
    spec = importlib.util.spec_from_file_location("gen_profile_table", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_table_has_all_621_rows_with_edition_and_repeating_groups() -> None:
    table = load_table()
    assert table.edition and "E.1-1" in json.loads(SHIPPED.read_text())["standard"]
    assert len(table.rows) == 621
    tags = {row.tag for row in table.rows}
    assert {"50xxxxxx", "60xx3000", "60xx4000", "private"} <= tags
    basic = Counter(row.basic for row in table.rows)
    assert basic == {
        "X": 384,
        "D": 92,
        "U": 54,
        "Z": 42,
        "X/D": 22,
        "X/Z": 11,
        "X/Z/D": 8,
        "Z/D": 6,
        "X/Z/U*": 2,
    }


def test_shipped_table_matches_the_standard_json_when_present() -> None:
    if not SHARED_TABLE.is_file():
        pytest.skip("../shared dicom-standard table not present")
    gen = _generator()
    source = json.loads(SHARED_TABLE.read_text())
    regenerated = gen.build_table(source, "x", "x")["rows"]
    shipped = json.loads(SHIPPED.read_text())["rows"]
    assert shipped == regenerated
    by_tag = {gen.normalise_tag(r["tag"]): r for r in source}
    for row in shipped:  # every option column survives, code for code
        src = by_tag[row["tag"]]
        assert row["basic"] == src["basicProfile"]
        assert {gen.OPTION_COLUMNS[k]: v for k, v in src.items() if k in gen.OPTION_COLUMNS} == row["options"]


def test_combined_codes_follow_the_photo_iod_type() -> None:
    assert resolve_combined("00080023", "Z/D") is Code.DUMMY  # Content Date: Type 1 in Ophthalmic Photography
    assert resolve_combined("00400555", "X/Z") is Code.ZERO  # Acquisition Context Sequence: Type 2
    assert resolve_combined("00080080", "X/Z/D") is Code.REMOVE  # Institution Name: Type 3
    assert resolve_combined("00082112", "X/Z/U*") is Code.U_SEQ  # Source Image Sequence: Type 2C
    assert resolve_combined("00081140", "X/Z/U*") is Code.REMOVE  # Referenced Image Sequence: Type 3
    assert resolve_combined("22000005", "X/Z") is Code.REMOVE  # not in the photo IODs: safe default
    assert resolve_combined("00700084", "Z/D") is Code.ZERO


def test_option_precedence_modified_dates_and_clean_win_over_keep() -> None:
    row = ProfileRow(
        "0018700c",
        "Date of Last Detector Calibration",
        "X/D",
        (
            ("retain_device_identity", "K"),
            ("retain_longitudinal_full_dates", "K"),
            ("retain_longitudinal_modified_dates", "C"),
        ),
        True,
    )
    assert resolve(row, frozenset({ProfileOption.RETAIN_DEVICE_IDENTITY})) is Code.KEEP
    assert (
        resolve(
            row,
            frozenset(
                {ProfileOption.RETAIN_DEVICE_IDENTITY, ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES}
            ),
        )
        is Code.CLEAN
    )
    assert resolve(row, frozenset()) is Code.REMOVE
