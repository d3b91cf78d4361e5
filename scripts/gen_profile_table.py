#!/usr/bin/env python3
"""Generate the project's PS3.15 Table E.1-1 (Application Level Confidentiality Profile Attributes).

Input: the JSON rows parsed from the web edition of the DICOM Standard by innolitics/dicom-standard
(``confidentiality_profile_attributes.json``). Output: ``anonymizer/metadata/data/ps315_e1_1.json``, our own
normalised table with the edition recorded. Run again when the standard moves on:

    .venv/bin/python scripts/gen_profile_table.py [--source PATH] [--edition 2024b] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_STANDARD = REPO.parent / "shared" / "data" / "dicom-standard"
DEFAULT_SOURCE = SHARED_STANDARD / "confidentiality_profile_attributes.json"
DEFAULT_OUT = REPO / "anonymizer" / "metadata" / "data" / "ps315_e1_1.json"
DEFAULT_EDITION = "2024b"
SOURCE_NOTE = (
    "DICOM PS3.15 Table E.1-1 as parsed by innolitics/dicom-standard "
    "(commit 7f4749d09ed3ef2fa70637d376d423a4b13523cd, regenerated January 2025)"
)

# Source column -> our option name (the values of anonymizer.plans.ProfileOption).
OPTION_COLUMNS = {
    "rtnSafePrivOpt": "retain_safe_private",
    "rtnUIDsOpt": "retain_uids",
    "rtnDevIdOpt": "retain_device_identity",
    "rtnInstIdOpt": "retain_institution_identity",
    "rtnPatCharsOpt": "retain_patient_characteristics",
    "rtnLongFullDatesOpt": "retain_longitudinal_full_dates",
    "rtnLongModifDatesOpt": "retain_longitudinal_modified_dates",
    "cleanDescOpt": "clean_descriptors",
    "cleanStructContOpt": "clean_structured_content",
    "cleanGraphOpt": "clean_graphics",
}
BASIC_CODES = {"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
OPTION_CODES = {"K", "C"}
TAG_RE = re.compile(r"^\(([0-9A-FX]{4}),([0-9A-FX]{4})\)$")
PRIVATE_ROW = "(GGGG,EEEE) WHERE GGGG IS ODD"


def normalise_tag(tag: str) -> str:
    """'(0008,0050)' -> '00080050'; '(60XX,3000)' -> '60xx3000'; the private row -> 'private'."""
    text = tag.strip().upper()
    if text == PRIVATE_ROW:
        return "private"
    match = TAG_RE.match(text)
    if match is None:
        raise ValueError(f"unexpected tag form {tag!r}")
    return (match.group(1) + match.group(2)).lower()


def convert_row(row: dict[str, str]) -> dict[str, object]:
    basic = row["basicProfile"].strip()
    if basic not in BASIC_CODES:
        raise ValueError(f"unknown basic action {basic!r} for {row['tag']}")
    options: dict[str, str] = {}
    for column, option in OPTION_COLUMNS.items():
        if column in row:
            code = row[column].strip()
            if code not in OPTION_CODES:
                raise ValueError(f"unknown option code {code!r} for {row['tag']} {column}")
            options[option] = code
    return {
        "tag": normalise_tag(row["tag"]),
        "name": row["name"].strip(),
        "in_std_composite_iod": row["stdCompIOD"].strip().upper() == "Y",
        "basic": basic,
        "options": options,
    }


def build_table(rows: list[dict[str, str]], edition: str, source_sha256: str) -> dict[str, object]:
    converted = sorted((convert_row(r) for r in rows), key=lambda r: str(r["tag"]))
    tags = [r["tag"] for r in converted]
    if len(set(tags)) != len(tags):
        raise ValueError("duplicate tags in the source table")
    return {
        "standard": "DICOM PS3.15 Annex E, Table E.1-1",
        "edition": edition,
        "source": SOURCE_NOTE,
        "source_sha256": source_sha256,
        "row_count": len(converted),
        "option_names": sorted(OPTION_COLUMNS.values()),
        "rows": converted,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--edition", default=DEFAULT_EDITION)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    raw = args.source.read_bytes()
    table = build_table(json.loads(raw), args.edition, hashlib.sha256(raw).hexdigest())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    tmp.replace(args.out)
    print(f"wrote {table['row_count']} rows (edition {args.edition}) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
