"""Whole-file checks on the merged rule data: references, reachability, VR compatibility, conflicts.

They read the raw data defensively (pydantic reports shape errors), so one run reports every problem.
Each finding is ``(path, message, hint, at_key)``; the loader turns the path into file:line:column.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticCustomError

from anonymizer.plans import TagAction
from dicom_rules.dictionary import keyword_tags
from dicom_rules.model import CALLING_AE
from dicom_rules.source import PathT
from dicom_rules.tags import DATE_VRS, HASHABLE_VRS, NUMERIC_VRS, TagInfo, check_replacement, resolve

PIXEL_DATA = 0x7FE00010
# Attributes that name the patient outright; keeping one needs metadata.allow_identifiers: true.
DIRECT_IDENTIFIERS = frozenset(
    keyword_tags()[k]
    for k in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientBirthName",
        "PatientMotherBirthName",
        "OtherPatientIDs",
        "OtherPatientNames",
        "OtherPatientIDsSequence",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "MedicalRecordLocator",
        "PersonName",
        "ResponsiblePerson",
        "MilitaryRank",
        "RegionOfResidence",
        "CountryOfResidence",
    )
)
NUMERIC_OPS = ("lt", "le", "gt", "ge")


@dataclass(frozen=True)
class Finding:
    path: PathT
    message: str
    hint: str = ""
    at_key: bool = False


def check_document(data: dict[str, Any]) -> list[Finding]:
    routes = data.get("routes")
    if not isinstance(routes, list):
        return []
    destinations = data.get("destinations")
    names = {str(n) for n in destinations} if isinstance(destinations, dict) else set()
    findings = _check_reachability(routes) + _check_open_catch_all(routes)
    seen: dict[str, int] = {}
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        findings += _check_route_name(route, i, seen)
        findings += _check_destination(route, i, names)
        findings += _check_match(route, i)
        findings += _check_overrides(route, i)
    return findings


def _is_catch_all(route: Any) -> bool:
    return isinstance(route, dict) and not route.get("match")


def _route_name(route: Any, i: int) -> str:
    return str(route.get("name", f"#{i + 1}")) if isinstance(route, dict) else f"#{i + 1}"


def _check_reachability(routes: list[Any]) -> list[Finding]:
    first = next((i for i, r in enumerate(routes) if _is_catch_all(r)), None)
    if first is None:
        return [
            Finding(
                ("routes",),
                "no catch-all route: a study that matches no route would have no plan",
                "add a last route without match, e.g. {name: catch-all, quarantine: no route matched}",
                at_key=True,
            )
        ]
    catch = _route_name(routes[first], first)
    return [
        Finding(
            ("routes", j),
            f"route {_route_name(routes[j], j)!r} is unreachable: it comes after catch-all route {catch!r}",
            "move it above the catch-all, or give the catch-all a match",
        )
        for j in range(first + 1, len(routes))
    ]


def _check_open_catch_all(routes: list[Any]) -> list[Finding]:
    """A catch-all that forwards with pixels passed through would send any unmatched face unchanged."""
    i = next((i for i, r in enumerate(routes) if _is_catch_all(r)), None)
    if i is None or not routes[i].get("to"):
        return []
    pixels = routes[i].get("pixels")
    if isinstance(pixels, dict) and pixels.get("mode") == "passthrough":
        return [
            Finding(
                ("routes", i, "pixels", "mode"),
                "the catch-all forwards with pixels passed through: any unmatched photo would keep its face",
                "give passthrough routes a match (e.g. Modality: OP); the catch-all should anonymize",
            )
        ]
    return []


def _check_route_name(route: dict[str, Any], i: int, seen: dict[str, int]) -> list[Finding]:
    name = route.get("name")
    if not isinstance(name, str):
        return []
    if name in seen:
        return [
            Finding(
                ("routes", i, "name"),
                f"route name {name!r} is used twice",
                f"route #{seen[name] + 1} has the same name; names appear in logs and explain",
            )
        ]
    seen[name] = i
    return []


def _check_destination(route: dict[str, Any], i: int, names: set[str]) -> list[Finding]:
    target = route.get("to")
    if not isinstance(target, str) or target in names:
        return []
    close = difflib.get_close_matches(target, sorted(names), n=1)
    hint = (
        f"did you mean {close[0]!r}?"
        if close
        else (f"define it under destinations (known: {', '.join(sorted(names)) or 'none'})")
    )
    return [Finding(("routes", i, "to"), f"destination {target!r} is not defined", hint)]


def _check_match(route: dict[str, Any], i: int) -> list[Finding]:
    match = route.get("match")
    if not isinstance(match, dict):
        return []
    findings = []
    for key, cond in match.items():
        info = (
            _resolve_quietly(str(key).rsplit(".", 1)[-1])
            if key != CALLING_AE
            else TagInfo(-1, CALLING_AE, "AE")
        )
        problem = _condition_problem(info, cond) if info is not None else None
        if problem:
            findings.append(Finding(("routes", i, "match", key), *problem))
    return findings


def _condition_problem(info: TagInfo, cond: Any) -> tuple[str, str] | None:
    ops = set(cond) if isinstance(cond, dict) else {"equals"}
    if info.vr == "SQ" and ops - {"present", "absent"}:
        return f"{info.label} is a sequence; only present/absent can test it", "use present: true"
    if ops & set(NUMERIC_OPS) and info.vr and info.vr not in NUMERIC_VRS:
        return (
            f"numeric comparison on {info.label} (VR {info.vr}), which is not a number",
            "use equals, one_of or regex",
        )
    return None


def _check_overrides(route: dict[str, Any], i: int) -> list[Finding]:
    metadata = route.get("metadata")
    overrides = metadata.get("overrides") if isinstance(metadata, dict) else None
    if not isinstance(overrides, dict):
        return []
    findings: list[Finding] = []
    first_key: dict[int, str] = {}
    allow_identifiers = isinstance(metadata, dict) and metadata.get("allow_identifiers") is True
    for key, spec in overrides.items():
        path = ("routes", i, "metadata", "overrides", key)
        info = _resolve_quietly(key)
        if info is None:
            continue
        if info.tag in first_key:
            findings.append(
                Finding(
                    path,
                    f"{info.label} has two overrides ({first_key[info.tag]!r} and {key!r})",
                    "keep one action per attribute",
                    at_key=True,
                )
            )
            continue
        first_key[info.tag] = str(key)
        findings += [Finding(path, m, h) for m, h in _override_problems(info, spec)]
        if not allow_identifiers and _action_of(spec)[0] == TagAction.KEEP and info.tag in DIRECT_IDENTIFIERS:
            findings.append(
                Finding(
                    path,
                    f"keep on {info.label} sends a direct identifier to the destination",
                    "use hash for a keyed pseudonym; or set metadata.allow_identifiers: true "
                    "for a destination inside the hospital",
                )
            )
    return findings


def _override_problems(info: TagInfo, spec: Any) -> list[tuple[str, str]]:
    action, value = _action_of(spec)
    if action is None:
        return []
    if info.tag == PIXEL_DATA:
        return [
            ("PixelData is handled by the pixels plan, not by metadata overrides", "remove this override")
        ]
    try:
        if action == TagAction.REPLACE and value is not None:
            check_replacement(info, value)
        elif action == TagAction.HASH and info.vr not in HASHABLE_VRS:
            return [
                (
                    f"hash needs a text attribute; {info.label} has VR {info.vr or 'unknown'}",
                    "use remove, empty or replace",
                )
            ]
        elif action == TagAction.SHIFT_DATE and info.vr not in DATE_VRS:
            return [
                (
                    f"shift-date needs a DA or DT attribute; {info.label} has VR {info.vr or 'unknown'}",
                    "times (TM) follow metadata.shift_time; use keep, remove or empty here",
                )
            ]
    except PydanticCustomError as exc:
        return [(exc.message(), str((exc.context or {}).get("hint", "")))]
    return []


def _action_of(spec: Any) -> tuple[TagAction | None, str | None]:
    if isinstance(spec, dict) and len(spec) == 1 and "replace" in spec:
        return TagAction.REPLACE, str(spec["replace"])
    raw = spec.get("action") if isinstance(spec, dict) else spec
    value = spec.get("value") if isinstance(spec, dict) else None
    if not isinstance(raw, str):
        return None, None
    try:
        return TagAction(raw), None if value is None else str(value)
    except ValueError:
        return None, None


def _resolve_quietly(key: Any) -> TagInfo | None:
    try:
        return resolve(str(key))
    except PydanticCustomError:
        return None
