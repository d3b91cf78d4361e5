"""Value rules per VR: dummy values (D), cleaning of text (C) and the keyed date/time shift.

All functions are pure and take strings as pydicom stores them (multi-values joined by backslash or as a
MultiValue); nothing here logs values.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from pydicom.dataset import Dataset

# Dummy values valid for the VR (and VM 1). UI dummies are keyed UIDs, made by the caller.
DUMMY_TEXT: dict[str, str] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "PN": "ANONYMOUS",
    "UR": "urn:anonymized",
}
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMBER_VRS = frozenset({"FL", "FD", "SL", "SS", "SV", "UL", "US", "UV", "AT"})
TEXT_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
# Unlisted attributes of these VRs are removed in standard mode too: narrative text, and person names that
# Table E.1-1 does not list (e.g. Secondary Reviewer Name).
UNLISTED_REMOVED_VRS = frozenset({"LT", "ST", "UT", "UC", "PN"})
DATE_VRS = frozenset({"DA", "DT", "TM"})
MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240}

# Words that carry no identity in clinical photography descriptors; Clean (C) keeps only these.
CLEAN_VOCABULARY = frozenset(
    """
    FACE FACIAL FRONTAL FRONT LATERAL LEFT RIGHT BILATERAL OBLIQUE PROFILE BASAL VIEW VIEWS SMILE SMILING
    NEUTRAL REST REPOSE CLOSED OPEN MOUTH LIPS LIP NOSE NASAL EYE EYES BROW BROWS CHIN JAW TEETH DENTAL
    INTRAORAL EXTRAORAL OCCLUSAL UPPER LOWER MAXILLARY MANDIBULAR ORTHODONTIC ORTHODONTICS RHINOPLASTY
    OPHTHALMOLOGY OPHTHALMIC FUNDUS EXTERNAL PHOTO PHOTOS PHOTOGRAPH PHOTOGRAPHY CLINICAL IMAGE IMAGES
    SERIES STUDY PRE POST OP OPERATIVE PREOPERATIVE POSTOPERATIVE FOLLOW UP BASELINE VISIT MONTH MONTHS
    WEEK WEEKS YEAR YEARS DAY DAYS DERMATOLOGY DERMOSCOPY SKIN LESION HEAD NECK EAR EARS CHEEK CHEEKS
    FOREHEAD COLOR COLOUR VISIBLE LIGHT VL XC SC AND OF WITH WITHOUT THE A
    TREATMENT PRETREATMENT POSTTREATMENT PROGRESS INITIAL INTERIM FINAL RETENTION DEBOND BRACES ALIGNER
    CLASS I II III OVERJET OVERBITE CROSSBITE OPENBITE MIDLINE ARCH SURGERY SURGICAL SEPTORHINOPLASTY
    BLEPHAROPLASTY PTOSIS STRABISMUS ORBIT PERIORBITAL LID LIDS EYELID EYELIDS CORNEA IRIS PUPIL GAZE PRIMARY
    UPGAZE DOWNGAZE WORM THREE QUARTER CLOSE ZOOM SCALE RULER REFERENCE STANDARD CALIBRATION
    """.split()  # noqa: SIM905
)
_TOKEN = re.compile(r"[A-Za-z]+|[0-9]+")


def dummy_value(vr: str) -> Any:
    """A dummy value valid for ``vr`` (VM 1); SQ gets one empty item. UI is handled by the caller."""
    if vr in DUMMY_TEXT:
        return DUMMY_TEXT[vr]
    if vr in BINARY_VRS:
        return b"\x00\x00"
    if vr in ("FL", "FD"):
        return 0.0
    if vr in NUMBER_VRS:
        return 0
    if vr == "SQ":
        return [Dataset()]
    return ""


def clean_text(value: str, vocabulary: frozenset[str]) -> str:
    """C for free text: keep only vocabulary words and numbers of at most two digits; drop everything else."""
    out = []
    for part in str(value).split("\\"):
        tokens = [t for t in _TOKEN.findall(part) if t.upper() in vocabulary or (t.isdigit() and len(t) <= 2)]
        out.append(" ".join(tokens))
    return "\\".join(out)


def _shift_da(text: str, days: int) -> str:
    text = text.strip()
    if len(text) != 8 or not text.isdigit():
        return ""
    shifted = date(int(text[:4]), int(text[4:6]), int(text[6:8])) + timedelta(days=days)
    return shifted.strftime("%Y%m%d")


def _split_tm(text: str) -> tuple[int, int, int, str, int]:
    """'HHMMSS.FFFFFF' → hours, minutes, seconds, fraction text, number of digits before the fraction."""
    main, _, frac = text.partition(".")
    if not main.isdigit() or len(main) not in (2, 4, 6) or (frac and not frac.isdigit()):
        raise ValueError("bad TM")
    hh, mm, ss = int(main[0:2]), int(main[2:4] or 0), int(main[4:6] or 0)
    return hh, mm, ss, frac, len(main)


def _shift_tm(text: str, seconds: int) -> str:
    text = text.strip()
    try:
        hh, mm, ss, frac, width = _split_tm(text)
    except ValueError:
        return ""
    total = (hh * 3600 + mm * 60 + min(ss, 59) + seconds) % 86400
    main = f"{total // 3600:02d}{total % 3600 // 60:02d}{total % 60:02d}"[:width]
    return main + ("." + frac if frac else "")


def _shift_dt(text: str, days: int, seconds: int) -> str:
    text = text.strip()
    match = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?", text)
    if match is None:
        return ""
    y, mo, d, h, mi, s, frac, tz = match.groups()
    width = len(text) - len(frac or "") - len(tz or "")
    try:
        moment = datetime(int(y), int(mo or 1), int(d or 1), int(h or 0), int(mi or 0), min(int(s or 0), 59))
    except ValueError:
        return ""
    moment += timedelta(days=days, seconds=seconds)
    return moment.strftime("%Y%m%d%H%M%S")[:width] + (frac or "") + (tz or "")


def shift_value(vr: str, value: str, days: int, seconds: int) -> str:
    """Shift every value of a DA/DT/TM string; unparseable values become empty (fail closed)."""
    parts = str(value).split("\\")
    if vr == "DA":
        return "\\".join(_shift_da(p, days) for p in parts)
    if vr == "DT":
        return "\\".join(_shift_dt(p, days, seconds) for p in parts)
    return "\\".join(_shift_tm(p, seconds) for p in parts)


def coerce(vr: str, text: str) -> Any:
    """An admin's replacement text as a value of ``vr``; ValueError when it cannot be one."""
    if vr in ("FL", "FD"):
        return float(text)
    if vr in NUMBER_VRS:
        return int(text, 0)
    if vr in BINARY_VRS:
        return text.encode("ascii")
    if vr == "SQ":
        raise ValueError("a sequence cannot be replaced by text")
    for part in text.split("\\"):
        if vr == "IS":
            int(part)
        elif vr == "DS":
            float(part)
        elif vr in DATE_VRS and not re.fullmatch(r"[0-9.+-]*", part):
            raise ValueError(f"not a {vr} value")
    limit = MAX_LENGTH.get(vr)
    if limit is not None and any(len(part) > limit for part in text.split("\\")):
        raise ValueError(f"replacement is longer than {vr} allows")
    return text


def fit(vr: str, text: str) -> str:
    """Truncate a generated value to the VR's maximum length."""
    limit = MAX_LENGTH.get(vr)
    return text[:limit] if limit else text
