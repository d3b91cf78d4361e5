"""What the DICOM header says about the patient's apparent sex and age (PatientSex, PatientAge): the surrogate
engine's donor choice follows it when present, and falls back to estimates from the face otherwise."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_AGE = re.compile(r"^(\d{3})([DWMY])$")
_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


@dataclass(frozen=True)
class PatientAttributes:
    sex: str = ""  # "F" | "M" | "" (unknown or other)
    age: float = float("nan")  # years


def age_years(value: str) -> float:
    """A DICOM AS value ("034Y", "006M", "010W", "003D") in years; NaN when absent or malformed."""
    match = _AGE.match(str(value or "").strip().upper())
    if not match:
        return float("nan")
    return int(match.group(1)) * _UNIT_YEARS[match.group(2)]


def from_header(ds: Any) -> PatientAttributes:
    sex = str(ds.get("PatientSex", "") or "").strip().upper()
    return PatientAttributes(sex if sex in ("F", "M") else "", age_years(str(ds.get("PatientAge", "") or "")))
