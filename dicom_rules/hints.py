"""Hints for pydantic's built-in error kinds, so that every rule-file error tells the admin what to write."""

from __future__ import annotations

from typing import Any

FIELD_HINTS = {
    "ae_title": "AE titles are 1-16 characters without backslash, e.g. RESEARCH_PACS",
    "name": "names use letters, digits, '.', '_' or '-', e.g. ortho-photos",
    "to": "name a destination defined under destinations",
    "engine": "engine names are lower-case, e.g. surrogate or vera",
    "fallback_engine": "engine names are lower-case, e.g. surrogate or vera",
    "routes": "add routes: with at least a catch-all route (a route without match)",
    "port": "a TCP port, 1-65535 (DICOM commonly uses 104, 4242 or 11112)",
    "jpeg_quality": "a JPEG quality between 50 and 100",
    "host": "a host name or IP address",
    "folder": "a folder path; relative paths resolve against the gateway data dir",
    "preserve": "regions kept exactly as photographed: mouth, nose, eyes, brows",
    "pairing": "study: one synthetic identity per study; patient: one per patient across studies",
    "no_face": "quarantine (default, fail closed) or mask",
    "no_patient_id": "per_study (default: each ID-less study is its own patient) or quarantine",
    "mode": "anonymize (faces replaced), passthrough (no face in these images) or blank",
    "options": "PS3.15 options in snake_case, e.g. retain_longitudinal_modified_dates, clean_descriptors",
    "action": "keep, remove, empty, hash, shift-date, or {replace: VALUE}",
    "profile": "only the PS3.15 Basic Application Level Confidentiality Profile: basic",
}

KIND_HINTS = {
    "dict_type": "expected a mapping (key: value lines, or {key: value})",
    "model_type": "expected a mapping (key: value lines, or {key: value})",
    "model_attributes_type": "expected a mapping (key: value lines, or {key: value})",
    "tuple_type": "expected a list (- item lines, or [a, b])",
    "list_type": "expected a list (- item lines, or [a, b])",
    "string_type": "expected text; quote it if YAML reads it as a number, date or boolean",
    "bool_type": "write true or false",
    "bool_parsing": "write true or false",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
}


def hint_for(kind: str, field: str, ctx: dict[str, Any] | None) -> str:
    """The most specific hint we have: one the validator gave, else per field, else per error kind."""
    ctx = ctx or {}
    if ctx.get("hint"):
        return str(ctx["hint"])
    if field in FIELD_HINTS and kind not in KIND_HINTS:
        return FIELD_HINTS[field]
    if kind in {"enum", "literal_error"}:
        return "values are lower-case and spelled as listed"
    return KIND_HINTS.get(kind, "see `vera-gateway rules schema` for what this key accepts")
