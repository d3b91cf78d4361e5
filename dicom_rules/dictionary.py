"""The DICOM data dictionary as rule checks need it (keyword ↔ tag, VR, VM), without importing pydicom.

Read from ``data/dicom_dictionary.json``, generated from pydicom's dictionary by
``scripts/gen_dicom_dictionary.py`` (pydicom version and DICOM edition recorded in the file; a test checks it
still matches the installed pydicom). Lookups behave as ``pydicom.datadict``'s: public tags first, then the
repeating groups (``60xx3000``); a tag in neither raises KeyError.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("data") / "dicom_dictionary.json"

Entry = tuple[str, str, str]  # (VR, VM, keyword)


@cache
def _table() -> tuple[dict[int, Entry], dict[str, tuple[int, int, Entry]], dict[str, int]]:
    data = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    entries: dict[int, Entry] = {int(tag, 16): (vr, vm, kw) for tag, (vr, vm, kw) in data["entries"].items()}
    repeaters = {
        # like pydicom's mask_match: equal on every non-x digit (XOR, then AND with F on those digits)
        mask: (int(mask.replace("x", "0"), 16), int("".join("F0"[c == "x"] for c in mask), 16), (vr, vm, kw))
        for mask, (vr, vm, kw) in data["repeaters"].items()
    }
    keywords = {kw: tag for tag, (_, _, kw) in entries.items()}  # pydicom's keyword_dict, same order
    return entries, repeaters, keywords


def keyword_tags() -> dict[str, int]:
    """keyword → tag, as ``pydicom.datadict.keyword_dict``."""
    return _table()[2]


def entry(tag: int) -> Entry:
    """(VR, VM, keyword) of a public or repeating-group tag; KeyError when the dictionary has neither."""
    entries, repeaters, _ = _table()
    if tag in entries:
        return entries[tag]
    if not (tag >> 16) & 1:
        for same, care, found in repeaters.values():
            if (tag ^ same) & care == 0:
                return found
    raise KeyError(f"tag {tag:08X} not found in the DICOM dictionary")


def dictionary_vr(tag: int) -> str:
    return entry(tag)[0]


def dictionary_vm(tag: int) -> str:
    return entry(tag)[1]


def keyword_for_tag(tag: int) -> str:
    """The keyword, or '' when the tag is not in the dictionary (as pydicom's)."""
    try:
        return entry(tag)[2]
    except KeyError:
        return ""
