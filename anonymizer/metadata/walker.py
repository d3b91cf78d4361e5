"""Apply a compiled plan to a dataset, recursing into sequences (any depth).

Elements that need no change are never converted from their raw form; PixelData is never touched here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]

from anonymizer.keys import KeyRing
from anonymizer.metadata.compiled import Action, CompiledPlan, Entry
from anonymizer.metadata.errors import MetadataError
from anonymizer.metadata.values import (
    BINARY_VRS,
    DATE_VRS,
    TEXT_VRS,
    clean_text,
    coerce,
    dummy_value,
    fit,
    shift_value,
)

PIXEL_DATA = 0x7FE00010
DICOM_UID_ROOT = "1.2.840.10008."
PATIENT_ID = 0x00100020
ISSUER_OF_PATIENT_ID = 0x00100021
_VR_CACHE: dict[int, str] = {}


@dataclass
class Context:
    """Per-instance keyed values; the UID memo keeps repeated references cheap."""

    keys: KeyRing
    compiled: CompiledPlan
    patient_pseudonym: str
    days: int
    seconds: int
    study_id: str
    accession: str
    root: Dataset | None = None  # the instance's top-level dataset
    uids: dict[str, str] = field(default_factory=dict)
    shifted: bool = False

    def uid(self, value: str) -> str:
        value = value.strip().rstrip("\x00")
        if not value or value in UID_dictionary or value.startswith(DICOM_UID_ROOT):
            return value  # well-known: SOP classes, transfer syntaxes, coding schemes, DICOM-defined UIDs
        new = self.uids.get(value)
        if new is None:
            new = self.keys.uid(value)
            self.uids[value] = new
        return new


def dictionary_vr(tag: int) -> str:
    """The data dictionary's VR of a public tag; "" when unknown or ambiguous ("US or SS"). Cached."""
    cached = _VR_CACHE.get(tag)
    if cached is None:
        try:
            cached = dictionary_VR(tag)
        except KeyError:
            cached = ""
        cached = "" if " or " in cached else cached
        _VR_CACHE[tag] = cached
    return cached


def element_vr(ds: Dataset, tag: int) -> str:
    """VR without converting the element: the dictionary's for public tags (as pydicom would use for UN), else
    the one the file stated, else UN."""
    vr = dictionary_vr(tag) if not (tag >> 16) & 1 else ""
    if vr:
        return vr
    return str(ds.get_item(tag).VR or "UN")


def scrub(ds: Dataset, ctx: Context, in_useq: bool = False) -> None:
    """De-identify one dataset level in place; private tags are handled by :func:`scrub_private`."""
    cp = ctx.compiled
    actions = cp.actions
    private = []
    for key in list(ds.keys()):
        tag = int(key)  # plain ints: dict lookups without pydicom's Python-level Tag.__eq__
        if tag >> 16 & 1:
            private.append(tag)
            continue
        if tag == PIXEL_DATA:
            continue
        entry = actions.get(tag)
        if entry is None:
            entry = cp.fallback(tag, element_vr(ds, tag))
        action = entry[0]
        if in_useq and action in (Action.KEEP, Action.RECURSE):
            action = _in_useq(ds, tag, action)
        if action is not Action.KEEP:
            APPLY[action](ds, tag, entry, ctx)
    if private:
        scrub_private(ds, private, ctx)


def _in_useq(ds: Dataset, tag: int, action: Action) -> Action:
    """Inside a U* sequence every UID is remapped, at any depth."""
    vr = element_vr(ds, tag)
    if vr == "UI":
        return Action.UID
    return Action.USEQ if vr == "SQ" else action


def _recurse(ds: Dataset, tag: int, entry: Entry, ctx: Context, in_useq: bool = False) -> None:
    vr = element_vr(ds, tag)
    if vr != "SQ":
        if vr in DATE_VRS and entry[0] is Action.RECURSE and ctx.compiled.shift_dates:
            _shift(ds, tag, entry, ctx)  # a K on a date still shifts unless Full Dates is on
        return
    for item in ds[tag].value:
        scrub(item, ctx, in_useq)


def _useq(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    _recurse(ds, tag, entry, ctx, in_useq=True)


def _remove(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    del ds[tag]


def ascii_value(ds: Dataset, tag: int) -> str:
    """Value of an ASCII-only VR (UI, DA, DT, TM, AE, CS...) without converting the raw element."""
    elem = ds.get_item(tag)
    value = elem.value
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip(" \x00")
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return "\\".join(str(v) for v in value)


def _empty(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    vr = element_vr(ds, tag)
    _set(ds, tag, vr, [] if vr == "SQ" else (b"" if vr in BINARY_VRS else None))


def _set(ds: Dataset, tag: int, vr: str, value: object) -> None:
    """Store a value we generated (valid for the VR by construction: pydicom's re-validation is skipped)."""
    ds[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)


def _dummy(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    vr = element_vr(ds, tag)
    if vr == "UI":
        _uid(ds, tag, entry, ctx)
    else:
        _set(ds, tag, vr, dummy_value(vr))


def _uid(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    if element_vr(ds, tag) != "UI":
        _dummy_or_recurse(ds, tag, entry, ctx)
        return
    value = ascii_value(ds, tag)
    if value:
        _set(ds, tag, "UI", "\\".join(ctx.uid(v) for v in value.split("\\")))


def _dummy_or_recurse(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    if ds[tag].VR == "SQ":
        _useq(ds, tag, entry, ctx)
    else:
        _set(ds, tag, ds[tag].VR, dummy_value(ds[tag].VR))


def _shift(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    vr = element_vr(ds, tag)
    shift_time = ctx.compiled.plan.shift_time
    if vr not in DATE_VRS or (vr == "TM" and not shift_time):
        return
    text = ascii_value(ds, tag)
    if text:
        _set(ds, tag, vr, shift_value(vr, text, ctx.days, ctx.seconds if shift_time else 0))
        ctx.shifted = True


def _clean(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    """C by VR: dates shift, AE titles become keyed names, text keeps vocabulary words, sequences recurse."""
    vr = element_vr(ds, tag)
    if vr in DATE_VRS:
        _shift(ds, tag, entry, ctx)
    elif vr == "SQ":
        _recurse(ds, tag, entry, ctx)
    elif vr == "AE":
        value = str(ds[tag].value or "")
        _set(ds, tag, vr, "AE" + ctx.keys.short_hash("ae-title", value, 12) if value else "")
    elif vr in TEXT_VRS:
        elem = ds[tag]
        text = "\\".join(str(v) for v in elem.value) if elem.VM > 1 else str(elem.value or "")
        _set(ds, tag, vr, fit(vr, clean_text(text, ctx.compiled.vocabulary)))
    elif vr == "UI":
        _uid(ds, tag, entry, ctx)
    else:
        del ds[tag]  # binary or numeric values cannot be inspected for identity: fail closed


def _patient_id(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    _set(ds, tag, "LO", _nested_pseudonym(ds, ctx))


def _patient_name(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    _set(ds, tag, "PN", _nested_pseudonym(ds, ctx))


def _nested_pseudonym(ds: Dataset, ctx: Context) -> str:
    """Pseudonym of the PatientID (and issuer) at this level; the instance's own where there is none.

    At the top level this equals ``ctx.patient_pseudonym`` (same inputs, processed before they change).
    """
    if ds is ctx.root:
        return ctx.patient_pseudonym  # same inputs, already hashed once
    pid_elem = ds.get(PATIENT_ID)
    pid = str(pid_elem.value or "").strip() if pid_elem is not None else ""
    if not pid:
        return ctx.patient_pseudonym
    issuer_elem = ds.get(ISSUER_OF_PATIENT_ID)
    issuer = str(issuer_elem.value or "").strip() if issuer_elem is not None else ""
    return ctx.keys.patient_pseudonym(pid, issuer)


def _study_id(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    _set(ds, tag, "SH", ctx.study_id)


def _accession(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    _set(ds, tag, "SH", ctx.accession)


def _replace(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    vr = element_vr(ds, tag)
    try:
        _set(ds, tag, vr, coerce(vr, str(entry[1])))
    except ValueError as exc:
        raise MetadataError(f"override replace on ({tag >> 16:04X},{tag & 0xFFFF:04X}): {exc}") from None


def _hash(ds: Dataset, tag: int, entry: Entry, ctx: Context) -> None:
    """Keyed hash for text, keyed UID for UI, the patient's shift for dates; other VRs are removed."""
    vr = element_vr(ds, tag)
    if vr == "UI":
        _uid(ds, tag, entry, ctx)
    elif vr in DATE_VRS:
        _shift(ds, tag, entry, ctx)
    elif vr in TEXT_VRS and vr != "UR":
        value = str(ds[tag].value or "")
        _set(ds, tag, vr, fit(vr, ctx.keys.short_hash(f"tag-{tag:08X}", value, 16)) if value else "")
    else:
        del ds[tag]


APPLY: dict[Action, Callable[[Dataset, int, Entry, Context], None]] = {
    Action.RECURSE: _recurse,
    Action.USEQ: _useq,
    Action.REMOVE: _remove,
    Action.EMPTY: _empty,
    Action.DUMMY: _dummy,
    Action.CLEAN: _clean,
    Action.UID: _uid,
    Action.SHIFT: _shift,
    Action.PATIENT_ID: _patient_id,
    Action.PATIENT_NAME: _patient_name,
    Action.STUDY_ID: _study_id,
    Action.ACCESSION: _accession,
    Action.REPLACE: _replace,
    Action.HASH: _hash,
}


def scrub_private(ds: Dataset, tags: list[int], ctx: Context) -> None:
    """Remove private elements unless Retain Safe Private lists them (or an override keeps them)."""
    cp = ctx.compiled
    kept_blocks: set[int] = set()
    creators = []
    for tag in tags:
        group, elem = tag >> 16, tag & 0xFFFF
        if 0x0010 <= elem <= 0x00FF:
            creators.append(tag)
            continue
        override = cp.private_overrides.get(tag)
        if override is not None:
            APPLY[override[0]](ds, tag, override, ctx)
        elif _is_safe(ds, group, elem, cp):
            _recurse(ds, tag, (Action.RECURSE, None), ctx)
        else:
            del ds[tag]
        if tag in ds:
            kept_blocks.add((group << 16) | (elem >> 8))
    for tag in creators:
        if tag not in kept_blocks:
            del ds[tag]


def _is_safe(ds: Dataset, group: int, elem: int, cp: CompiledPlan) -> bool:
    if not cp.safe_private or elem < 0x1000:
        return False
    creator_tag = (group << 16) | (elem >> 8)
    if creator_tag not in ds:
        return False
    return (group, str(ds[creator_tag].value).strip(), elem & 0xFF) in cp.safe_private
