"""Mark a de-identified header: identity removed, method, CID 7050 codes, temporal and visual flags."""

from __future__ import annotations

from functools import lru_cache

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from anonymizer.metadata.table import load_table
from anonymizer.plans import MetadataPlan, PixelReport, ProfileOption, TextReport

ENGINE = "VerA Gateway metadata 1"

# CID 7050 De-identification Method (PS3.16), coding scheme DCM.
CID_7050: dict[str, str] = {
    "113100": "Basic Application Confidentiality Profile",
    "113101": "Clean Pixel Data Option",
    "113102": "Clean Recognizable Visual Features Option",
    "113103": "Clean Graphics Option",
    "113104": "Clean Structured Content Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113110": "Retain UIDs Option",
    "113111": "Retain Safe Private Option",
    "113112": "Retain Institution Identity Option",
}
OPTION_CODE: dict[ProfileOption, str] = {
    ProfileOption.CLEAN_GRAPHICS: "113103",
    ProfileOption.CLEAN_STRUCTURED_CONTENT: "113104",
    ProfileOption.CLEAN_DESCRIPTORS: "113105",
    ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES: "113106",
    ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES: "113107",
    ProfileOption.RETAIN_PATIENT_CHARACTERISTICS: "113108",
    ProfileOption.RETAIN_DEVICE_IDENTITY: "113109",
    ProfileOption.RETAIN_UIDS: "113110",
    ProfileOption.RETAIN_SAFE_PRIVATE: "113111",
    ProfileOption.RETAIN_INSTITUTION_IDENTITY: "113112",
}


def applied_codes(plan: MetadataPlan, pixel_report: PixelReport | None) -> tuple[str, ...]:
    """CID 7050 codes for exactly what this plan and pixel report applied, in code order."""
    text = pixel_report.text if pixel_report is not None else None
    return _codes(
        plan,
        pixel_report is not None and pixel_report.faces_replaced_and_verified,
        text is not None and text.clean,
    )


@lru_cache(maxsize=256)
def _codes(plan: MetadataPlan, faces_verified: bool, text_clean: bool = False) -> tuple[str, ...]:
    options = set(plan.options)
    if ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in options:
        options.discard(ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES)  # modified dates win (table.resolve)
    codes = {"113100", *(OPTION_CODE[ProfileOption(o)] for o in options)}
    if faces_verified:
        codes.add("113102")
    if text_clean:
        codes.add("113101")  # burned-in text checked by OCR and removed (or none found)
    return tuple(sorted(codes))


@lru_cache(maxsize=256)
def _method_values(plan: MetadataPlan, pixel_engine: str | None, text_step: str = "") -> tuple[str, ...]:
    values = [ENGINE, f"PS3.15 E.1-1 {load_table().edition}",
              f"rules {plan.rule_set_name} {plan.rule_set_hash[:16]}".strip()]
    if pixel_engine is not None:
        values.append(f"pixels {pixel_engine}")
    if text_step:
        values.append(text_step)
    return tuple(v.replace("\\", "/")[:64] for v in values)


def text_step_value(text: TextReport | None) -> str:
    """The text step as one De-identification Method value: action and counts, never what was read."""
    if text is None:
        return ""
    if not text.checked:
        return f"text {text.action.value}: not checked"
    return f"text {text.action.value}: checked, {text.redacted} redacted, {text.kept} kept"


def burned_in_value(ds_flag_yes: bool, text: TextReport | None) -> str | None:
    """BurnedInAnnotation to write: NO only when the pixels were checked and are clean; None = leave it."""
    if text is None:
        return None
    return "NO" if text.clean and not ds_flag_yes else "YES"


def _put(ds: Dataset, tag: int, vr: str, value: object) -> None:
    ds[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)  # valid by construction


def _code_item(code: str) -> Dataset:
    item = Dataset()
    _put(item, 0x00080100, "SH", code)  # Code Value
    _put(item, 0x00080102, "SH", "DCM")  # Coding Scheme Designator
    _put(item, 0x00080104, "LO", CID_7050[code])  # Code Meaning
    return item


def mark(ds: Dataset, plan: MetadataPlan, pixel_report: PixelReport | None, burned_in: bool) -> None:
    """Write the de-identification marking attributes (PS3.15 E.1.1, PS3.3 C.12.1)."""
    full = ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES in plan.options
    modified = ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in plan.options
    verified = pixel_report is not None and pixel_report.faces_replaced_and_verified
    _put(ds, 0x00120062, "CS", "NO" if burned_in else "YES")  # Patient Identity Removed
    engine = None if pixel_report is None else pixel_report.engine
    text = None if pixel_report is None else pixel_report.text
    _put(ds, 0x00120063, "LO", list(_method_values(plan, engine, text_step_value(text))))  # Method
    burned = burned_in_value(burned_in, text)
    if burned is not None:
        _put(ds, 0x00280301, "CS", burned)  # Burned In Annotation
    _put(ds, 0x00120064, "SQ", [_code_item(c) for c in applied_codes(plan, pixel_report)])
    _put(ds, 0x00280303, "CS", "UNMODIFIED" if full and not modified else "MODIFIED")
    _put(ds, 0x00280302, "CS", "NO" if verified else "YES")  # Recognizable Visual Features
