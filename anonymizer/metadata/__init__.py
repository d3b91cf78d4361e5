"""PS3.15 header de-identification. Entry point: :func:`deidentify`.

``deidentify`` applies the shipped Table E.1-1 with the plan's options and overrides (compiled once per plan),
keyed pseudonyms and date shift from the :class:`~anonymizer.keys.KeyRing`, removes private tags, strips
APP1–APP15/COM from encapsulated JPEG frames (COM from JPEG 2000) without decoding them, and marks the
header. Any failure raises a :class:`~anonymizer.metadata.errors.MetadataError`, on which the caller
quarantines.
"""

from __future__ import annotations

from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from anonymizer.keys import KeyRing
from anonymizer.metadata.compiled import Action, CompiledPlan, compile_plan
from anonymizer.metadata.encapsulated import strip_jpeg_markers
from anonymizer.metadata.errors import BurnedInAnnotationError, MetadataError
from anonymizer.metadata.marking import mark
from anonymizer.metadata.walker import APPLY, Context, ascii_value, scrub
from anonymizer.plans import MetadataPlan, PixelReport, ProfileOption, TagAction

__all__ = ["BurnedInAnnotationError", "MetadataError", "deidentify"]

# File meta attributes that can name the sending station or carry private payloads.
FILE_META_DROP = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)
PSEUDONYM_KEYWORDS = (
    (0x00100020, "PatientID", "patient_pseudonym"),
    (0x00100010, "PatientName", "patient_pseudonym"),
    (0x00200010, "StudyID", "study_id"),
    (0x00080050, "AccessionNumber", "accession"),
)


def _text(ds: Dataset, tag: int) -> str:
    """A top-level text value (decoded with the dataset's character set), stripped; "" when absent."""
    if tag not in ds:
        return ""
    value = ds[tag].value
    return "" if value is None else str(value).strip()


@lru_cache(maxsize=4096)
def _patient_offsets(keys: KeyRing, pseudonym: str, span: tuple[int, int]) -> tuple[int, int]:
    """(date offset days, time offset seconds) of one patient; photos come many per patient."""
    return keys.date_offset_days(pseudonym, *span), keys.time_offset_seconds(pseudonym)


@lru_cache(maxsize=4096)
def _study_values(keys: KeyRing, study_uid: str, study_id: str, accession: str) -> tuple[str, str]:
    return keys.study_id(study_uid, study_id), keys.accession_number(accession, study_uid)


def _context(ds: Dataset, cp: CompiledPlan, keys: KeyRing) -> Context:
    """Keyed per-instance values, taken from the original header before anything changes."""
    plan = cp.plan
    study_uid = ascii_value(ds, 0x0020000D) if 0x0020000D in ds else ""
    pseudonym = keys.patient_of(ds)  # the one patient identity (a per-study one without PatientID)
    days, seconds = _patient_offsets(keys, pseudonym, (plan.date_offset_min_days, plan.date_offset_max_days))
    study_id, accession = _study_values(keys, study_uid, _text(ds, 0x00200010), _text(ds, 0x00080050))
    return Context(keys=keys, compiled=cp, patient_pseudonym=pseudonym, days=days,
                   seconds=seconds if plan.shift_time else 0, study_id=study_id, accession=accession, root=ds)


def _ensure_pseudonyms(ds: Dataset, ctx: Context) -> None:
    """Type 2 identifiers that research PACSes merge on must be present and non-empty."""
    overridden = {o.tag for o in ctx.compiled.plan.overrides if o.action != TagAction.HASH}
    for tag, keyword, value in PSEUDONYM_KEYWORDS:
        if tag not in overridden and not _text(ds, tag):
            setattr(ds, keyword, getattr(ctx, value))


def _add_replacements(ds: Dataset, ctx: Context) -> None:
    """A top-level REPLACE override also sets an attribute that the instance does not have."""
    for override in ctx.compiled.plan.overrides:
        tag = override.tag
        if override.action == TagAction.REPLACE and not (tag >> 16) & 1 and tag not in ds:
            vr = dictionary_VR(tag).split(" or ")[0]
            ds[tag] = DataElement(tag, vr, None)
            APPLY[Action.REPLACE](ds, tag, (Action.REPLACE, override.value), ctx)


def _file_meta(ds: Dataset, ctx: Context) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for tag in FILE_META_DROP:
        if tag in meta:
            del meta[tag]
    if "MediaStorageSOPInstanceUID" in meta and ProfileOption.RETAIN_UIDS not in ctx.compiled.plan.options:
        meta.MediaStorageSOPInstanceUID = ctx.uid(str(meta.MediaStorageSOPInstanceUID))


def deidentify(ds: Dataset, plan: MetadataPlan, keys: KeyRing, pixel_report: PixelReport | None) -> Dataset:
    """De-identify ``ds`` in place and return it. Raises MetadataError; never returns a half-done header."""
    burned_in = 0x00280301 in ds and ascii_value(ds, 0x00280301).upper() == "YES"  # Burned In Annotation
    if burned_in and not plan.allow_burned_in_annotation:
        raise BurnedInAnnotationError("BurnedInAnnotation is YES and the rule does not allow it")
    try:
        cp = compile_plan(plan)
        ctx = _context(ds, cp, keys)
        scrub(ds, ctx)
        _ensure_pseudonyms(ds, ctx)
        _add_replacements(ds, ctx)
        _file_meta(ds, ctx)
        strip_jpeg_markers(ds, fast=not plan.jpeg_full_scan)
        mark(ds, plan, pixel_report, burned_in)
    except MetadataError:
        raise
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise MetadataError(f"header could not be de-identified: {type(exc).__name__}") from exc
    return ds
