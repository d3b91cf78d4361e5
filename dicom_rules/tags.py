"""DICOM attribute names in rule files: keywords or tags, checked against the data dictionary (generated from
pydicom's, see dicom_rules/dictionary.py; pydicom itself is imported only to validate a replacement value)."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass
from functools import cache

from pydantic_core import PydanticCustomError

from dicom_rules.dictionary import dictionary_vm, dictionary_vr, entry, keyword_for_tag, keyword_tags

_TAG_RE = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")

HASHABLE_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UI", "UT"})
DATE_VRS = frozenset({"DA", "DT"})
SINGLE_TEXT_VRS = frozenset({"LT", "ST", "UT"})  # backslash is text here, not a value separator
NUMERIC_VRS = frozenset({"DS", "FD", "FL", "IS", "SL", "SS", "SV", "UL", "US", "UV"})


@dataclass(frozen=True)
class TagInfo:
    tag: int
    keyword: str  # "" for private or unknown-but-allowed tags
    vr: str  # "" when the dictionary has none (private tags)

    @property
    def label(self) -> str:
        text = f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"
        return f"{self.keyword} {text}" if self.keyword else text

    @property
    def is_private(self) -> bool:
        return bool((self.tag >> 16) & 1)


def rule_error(kind: str, message: str, hint: str = "") -> PydanticCustomError:
    """A validation error that carries a hint through pydantic to the file:line report."""
    return PydanticCustomError(kind, message, {"hint": hint} if hint else None)


@cache
def _keywords() -> tuple[str, ...]:
    return tuple(keyword_tags())


def resolve(text: str) -> TagInfo:
    """'PatientName', '(0010,0010)', '0010,0010' or '00100010' → TagInfo; unknown public names are errors."""
    text = str(text).strip()
    match = _TAG_RE.match(text)
    if match:
        return _resolve_number(text, int(match.group(1) + match.group(2), 16))
    keywords = keyword_tags()
    if text in keywords:
        tag = keywords[text]
        return TagInfo(tag, text, _vr(tag))
    if text.startswith("(") or text.endswith(")"):
        raise rule_error(
            "unknown_keyword",
            f"{text!r} is neither a keyword nor a tag",
            "inside {…} or […] quote tags: '(0008,0080)', or write 00080080",
        )
    close = difflib.get_close_matches(text, _keywords(), n=3, cutoff=0.75)
    hint = (
        f"did you mean {' or '.join(repr(c) for c in close)}?"
        if close
        else ("use a DICOM keyword such as PatientName or a tag such as (0010,0010)")
    )
    raise rule_error("unknown_keyword", f"unknown DICOM keyword {text!r}", hint)


def resolve_path(text: str) -> tuple[TagInfo, ...]:
    """'AnatomicRegionSequence.CodeMeaning' → (sequence, …, leaf); every part but the last is a sequence."""
    parts = tuple(resolve(part) for part in str(text).split("."))
    for info in parts[:-1]:
        if info.vr != "SQ":
            raise rule_error(
                "not_a_sequence",
                f"{info.label} is not a sequence, so nothing can follow it after a dot",
                "a dotted key goes through sequences, e.g. AnatomicRegionSequence.CodeMeaning",
            )
    return parts


def _resolve_number(text: str, tag: int) -> TagInfo:
    if (tag >> 16) & 1:
        return TagInfo(tag, "", "")
    try:
        entry(tag)
    except KeyError:
        raise rule_error(
            "unknown_tag",
            f"tag {text} is not in the DICOM data dictionary",
            "check the group and element numbers (private tags have an odd group)",
        ) from None
    return TagInfo(tag, keyword_for_tag(tag), _vr(tag))


def _vr(tag: int) -> str:
    vr = dictionary_vr(tag)
    return vr.split(" or ")[0] if " or " in vr else vr


def check_replacement(info: TagInfo, value: str) -> None:
    """Raise if ``value`` is not a valid value for the attribute's VR (each of a multi-value)."""
    if not info.vr:
        raise rule_error(
            "replace_private",
            f"cannot check a replacement for private tag {info.label}",
            "use keep, remove or empty on private tags",
        )
    if info.vr == "SQ" or info.vr.startswith("O") or info.vr in {"UN", "AT"}:
        raise rule_error(
            "replace_vr",
            f"{info.label} has VR {info.vr}; it cannot be replaced with text",
            "use remove or empty instead",
        )
    parts = [value] if info.vr in SINGLE_TEXT_VRS else value.split("\\")
    _check_vm(info, len(parts))
    for part in parts:
        _check_one(info, part)


def _check_vm(info: TagInfo, count: int) -> None:
    """Backslash separates values; the count must fit the dictionary's value multiplicity."""
    vm = dictionary_vm(info.tag)
    low_text, _, high_text = vm.partition("-")
    low = int(low_text)
    high = int(high_text) if high_text.isdigit() else (low if not high_text else 10**6)
    if not low <= count <= high:
        raise rule_error(
            "replace_vm",
            f"{info.label} takes {vm} value(s); the replacement has {count}",
            "a backslash separates values; write exactly as many as the attribute takes",
        )


def _check_one(info: TagInfo, value: str) -> None:
    from pydicom import config as dicom_config  # only for a rule file that replaces values (0.3 s import)
    from pydicom.valuerep import validate_value

    try:
        validate_value(info.vr, _coerce(info.vr, value), dicom_config.RAISE)
        if info.vr == "DA" and value:
            dt.datetime.strptime(value, "%Y%m%d")
    except (ValueError, TypeError) as exc:
        raise rule_error(
            "replace_vr",
            f"{value!r} is not a valid {info.vr} value for {info.label}",
            _vr_hint(info.vr) or str(exc),
        ) from None


def _coerce(vr: str, value: str) -> object:
    if vr in {"US", "SS", "UL", "SL", "UV", "SV"}:
        return int(value)
    if vr in {"FL", "FD"}:
        return float(value)
    return value


def _vr_hint(vr: str) -> str:
    return {
        "DA": "dates are YYYYMMDD, e.g. 20240131",
        "TM": "times are HHMMSS(.ffffff), e.g. 093000",
        "DT": "date-times are YYYYMMDDHHMMSS, e.g. 20240131093000",
        "AS": "ages are nnnD/W/M/Y, e.g. 040Y",
        "UI": "UIDs are dotted digits, at most 64 characters",
        "CS": "code strings are at most 16 upper-case letters, digits, space or _",
        "SH": "short strings are at most 16 characters",
        "IS": "integer strings are at most 12 characters",
        "DS": "decimal strings are at most 16 characters",
        "LO": "long strings are at most 64 characters, no backslash",
        "PN": "person names are Family^Given^Middle^Prefix^Suffix, at most 64 characters per group",
        "US": "an unsigned whole number 0-65535",
    }.get(vr, "")
