"""The generated data dictionary (dicom_rules/data/dicom_dictionary.json) matches the installed pydicom's,
so rule checks resolve keywords, tags, VRs and VMs exactly as pydicom would, without importing it."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pydicom
from pydicom._version import __dicom_version__
from pydicom.datadict import get_entry, keyword_dict, keyword_for_tag

from dicom_rules import dictionary

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from gen_dicom_dictionary import _one_entry_per_line, build_table  # noqa: E402


def test_the_table_on_disk_is_what_the_generator_writes_from_the_installed_pydicom() -> None:
    table = json.loads(dictionary.TABLE_PATH.read_text(encoding="utf-8"))
    assert table["source"].startswith(f"pydicom {pydicom.__version__} ")
    assert table["edition"] == __dicom_version__
    assert dictionary.TABLE_PATH.read_text(encoding="utf-8") == _one_entry_per_line(build_table())


def test_keywords_resolve_as_pydicoms_keyword_dict() -> None:
    assert dictionary.keyword_tags() == keyword_dict
    assert list(dictionary.keyword_tags()) == list(keyword_dict)


def test_every_tag_and_repeating_group_looks_up_as_in_pydicom() -> None:
    rng = random.Random(12)
    known = list(pydicom.datadict.DicomDictionary)
    repeating = [0x60003000, 0x60023000, 0x601E0010, 0x50000005, 0x501E3000, 0x7F000040, 0x10000000]
    unknown = [rng.randrange(0, 0xFFFFFFFF) & 0xFFFEFFFF for _ in range(5000)]  # even (public) groups
    for tag in known + repeating + unknown:
        try:
            vr, vm, _, _, keyword = get_entry(tag)
        except KeyError:
            assert keyword_for_tag(tag) == dictionary.keyword_for_tag(tag) == ""
            try:
                dictionary.entry(tag)
            except KeyError:
                continue
            raise AssertionError(f"{tag:08X} is in the table, not in pydicom") from None
        assert dictionary.entry(tag) == (vr, vm, keyword), f"{tag:08X}"
    assert dictionary.entry(0x60023000)[2] == "OverlayData"  # a repeating group, not in the main table
