"""The shipped PS3.15 Table E.1-1 and how one row resolves to one action for a set of options.

The table is generated data (``scripts/gen_profile_table.py``) with its edition recorded. This module turns
(row, options) into a single action code; the combined codes are decided by the attribute's Type in the photo
IODs we de-identify (see :data:`PHOTO_IOD_TYPE`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from anonymizer.metadata.errors import ProfileTableError
from anonymizer.plans import ProfileOption

TABLE_RESOURCE = "ps315_e1_1.json"


class Code(StrEnum):
    """Single action codes of Table E.1-1 after resolution (U_SEQ is the U* of X/Z/U*)."""

    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"
    U_SEQ = "U*"


@dataclass(frozen=True)
class ProfileRow:
    tag: str  # "00080050", "60xx3000", "50xxxxxx" or "private"
    name: str
    basic: str  # as printed in the standard: "X", "X/Z/D", ...
    options: tuple[tuple[str, str], ...]  # (ProfileOption value, "K" | "C")
    in_std_composite_iod: bool


@dataclass(frozen=True)
class ProfileTable:
    edition: str
    source: str
    rows: tuple[ProfileRow, ...]

    def by_tag(self) -> dict[str, ProfileRow]:
        return {row.tag: row for row in self.rows}


# Type of the combined-code attributes in the photo IODs: VL Photographic Image, Secondary Capture,
# Multi-frame True Color SC, Ophthalmic Photography 8/16 bit, Dermoscopic Photography (PS3.3 modules
# Patient, General Study, General Series, General Equipment, General Image, VL Image, Ophthalmic Photography
# Image, Acquisition Context, SOP Common). The strongest requirement over those IODs is recorded; a
# conditional type counts as its base type. Attributes not listed here do not occur in those IODs.
PHOTO_IOD_TYPE: dict[str, int] = {
    "00400555": 2,  # Acquisition Context Sequence: Acquisition Context module, Type 2
    "0008002a": 1,  # Acquisition DateTime: Ophthalmic Photography Image / VL Image, Type 1C
    "00080023": 1,  # Content Date: Ophthalmic Photography Image, Type 1 (General Image 2C)
    "00080033": 1,  # Content Time: Ophthalmic Photography Image, Type 1 (General Image 2C)
    "00100020": 2,  # Patient ID: Patient module, Type 2
    "00082112": 2,  # Source Image Sequence: Ophthalmic Photography Image, Type 2C
    "00081140": 3,  # Referenced Image Sequence: General Image, Type 3
    "00080022": 3,  # Acquisition Date: General Image, Type 3
    "00080032": 3,  # Acquisition Time: General Image, Type 3
    "00080021": 3,  # Series Date: General Series, Type 3
    "00080031": 3,  # Series Time: General Series, Type 3
    "00081070": 3,  # Operators' Name: General Series, Type 3
    "00181030": 3,  # Protocol Name: General Series, Type 3
    "00081072": 3,  # Operator Identification Sequence: General Series, Type 3
    "00081111": 3,  # Referenced Performed Procedure Step Sequence: General Series, Type 3
    "00081110": 3,  # Referenced Study Sequence: General Study, Type 3
    "00080080": 3,  # Institution Name: General Equipment, Type 3
    "00080082": 3,  # Institution Code Sequence: General Equipment, Type 3
    "00081010": 3,  # Station Name: General Equipment, Type 3
    "00181000": 3,  # Device Serial Number: General Equipment, Type 3
    "00080012": 3,  # Instance Creation Date: SOP Common, Type 3
    "00080013": 3,  # Instance Creation Time: SOP Common, Type 3
    "00102203": 3,  # Patient's Sex Neutered: Patient module, Type 2C (animals only): 3 for human photos
}


def resolve_combined(tag: str, basic: str) -> Code:
    """Pick one code out of a combined code by the attribute's Type in the photo IODs.

    Type 1 → D (U* for X/Z/U*), Type 2 → Z (U* for X/Z/U*), Type 3 → X. Safe default for an attribute that
    the photo IODs do not contain: the leftmost code (X where allowed, else Z), i.e. remove or empty.
    """
    parts = basic.split("/")
    if len(parts) == 1:
        return Code(basic)
    kind = PHOTO_IOD_TYPE.get(tag)
    if kind is None or (kind == 3 and "X" in parts):
        return Code(parts[0])
    if "U*" in parts:
        return Code.U_SEQ
    if kind == 1 and "D" in parts:
        return Code.DUMMY
    if "Z" in parts:
        return Code.ZERO
    return Code.DUMMY


def resolve(row: ProfileRow, options: frozenset[ProfileOption]) -> Code:
    """The action for one row under a set of options.

    Precedence when several enabled options name the row: Modified Dates (C, the date shift) wins over a K of
    another option, any other C (clean) wins over K (the more conservative), otherwise K. Full Dates and
    Modified Dates together resolve to Modified Dates.
    """
    named = {opt: code for opt, code in row.options if ProfileOption(opt) in options}
    if not named:
        return resolve_combined(row.tag, row.basic)
    if named.get(ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES.value) == "C":
        return Code.CLEAN
    if "C" in named.values():
        return Code.CLEAN
    return Code.KEEP


def _row(raw: dict[str, Any]) -> ProfileRow:
    options = tuple(sorted((str(k), str(v)) for k, v in raw["options"].items()))
    for opt, _code in options:
        ProfileOption(opt)  # unknown option names are a broken table
    return ProfileRow(str(raw["tag"]), str(raw["name"]), str(raw["basic"]), options,
                      bool(raw["in_std_composite_iod"]))


@cache
def load_table() -> ProfileTable:
    """Load the shipped table once per process."""
    try:
        text = resources.files("anonymizer.metadata").joinpath("data", TABLE_RESOURCE).read_text()
        data = json.loads(text)
        rows = tuple(_row(r) for r in data["rows"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileTableError(f"cannot load {TABLE_RESOURCE}: {type(exc).__name__}") from exc
    if len(rows) != int(data["row_count"]):
        raise ProfileTableError(f"{TABLE_RESOURCE}: row_count does not match the rows")
    return ProfileTable(str(data["edition"]), str(data["source"]), rows)
