#!/usr/bin/env python3
"""Generate ``dicom_rules/data/dicom_dictionary.json``: keyword, VR and VM of every public DICOM attribute.

Rule checks (``vera-gateway rules check``) resolve keywords and tags and check replacement values against the
data dictionary; reading it from this table instead of ``pydicom.datadict`` keeps pydicom (0.3 s of imports:
numpy, its config and pixel handlers) out of the commands that only check rules. Input: pydicom's dictionary
(``DicomDictionary`` and ``RepeatersDictionary``, itself generated from the standard); the pydicom version and
the DICOM edition it carries are recorded in the output, and tests/rules/test_dicom_dictionary.py checks that
the table still matches the installed pydicom. Run again after upgrading pydicom:

    .venv/bin/python scripts/gen_dicom_dictionary.py [--out PATH]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "dicom_rules" / "data" / "dicom_dictionary.json"


def build_table() -> dict[str, Any]:
    """The table as written: entries in pydicom's order (keyword lookups keep its last-wins order)."""
    import pydicom
    from pydicom._version import __dicom_version__
    from pydicom.datadict import DicomDictionary, RepeatersDictionary

    return {
        "source": f"pydicom {pydicom.__version__} datadict (DicomDictionary, RepeatersDictionary)",
        "edition": __dicom_version__,
        "generator": "scripts/gen_dicom_dictionary.py",
        "columns": ["vr", "vm", "keyword"],
        "entries": {f"{tag:08X}": [vr, vm, kw] for tag, (vr, vm, _, _, kw) in DicomDictionary.items()},
        "repeaters": {mask: [vr, vm, kw] for mask, (vr, vm, _, _, kw) in RepeatersDictionary.items()},
    }


def _one_entry_per_line(table: dict[str, Any]) -> str:
    """JSON with one dictionary entry per line, so a pydicom upgrade reads as a short diff."""
    lines = ["{"]
    for key, value in table.items():
        if isinstance(value, dict):
            rows = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
            lines.append(f"{json.dumps(key)}: {{\n" + ",\n".join(rows) + "\n},")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value)},")
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    table = build_table()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_one_entry_per_line(table), encoding="utf-8")
    print(
        f"{args.out}: {len(table['entries'])} entries, {len(table['repeaters'])} repeaters",
        f"({table['source']})",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
