"""Typed plans: what the caller (the gateway, through dicom_rules) asks the anonymizer to do.

These are the narrow interfaces between the rule language and the library. They are frozen
dataclasses so that a plan, once built, is valid and cannot drift while a job runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Region(StrEnum):
    """Clinical regions that can be preserved exactly as photographed."""

    MOUTH = "mouth"
    NOSE = "nose"
    EYES = "eyes"
    BROWS = "brows"
    FACE = "face"


class PairingScope(StrEnum):
    """Which photos share one synthetic identity: all of a study, or all of a patient (any study)."""

    STUDY = "study"
    PATIENT = "patient"


class NoFaceAction(StrEnum):
    """What to do with a photo the plan says holds a face when no face is found."""

    QUARANTINE = "quarantine"
    MASK = "mask"


class NoPatientIdAction(StrEnum):
    """What to do with a photo without PatientID: it becomes its own patient per study (per instance when
    StudyInstanceUID is missing too), never pooled with other ID-less photos; or it is quarantined."""

    PER_STUDY = "per_study"
    QUARANTINE = "quarantine"


class PixelMode(StrEnum):
    """Whether pixels are anonymized, passed through (non-face images a rule vouches for), or blanked."""

    ANONYMIZE = "anonymize"
    PASSTHROUGH = "passthrough"
    BLANK = "blank"


class TextAction(StrEnum):
    """What happens to text found in the pixels (name cards, wristbands, overlays, date stamps)."""

    REDACT = "redact"  # inpaint every text line outside the allow-list, verify, else quarantine
    QUARANTINE = "quarantine"  # any text outside the allow-list holds the photo
    KEEP = "keep"  # no text check (the output says BurnedInAnnotation YES)


@dataclass(frozen=True)
class TextPlan:
    """The text step of one route: the action and the allow-list of clinical text (e.g. ruler numbers)."""

    action: TextAction = TextAction.REDACT
    keep_regex: str | None = None  # a line whose whole reading matches (re.fullmatch) is kept


@dataclass(frozen=True)
class PixelPlan:
    """How the pixels of one route are handled."""

    mode: PixelMode = PixelMode.ANONYMIZE
    engine: str = "surrogate"  # registered engine name: surrogate | vera | blur | pixelate | mask
    preserve: tuple[Region, ...] = ()
    pairing: PairingScope = PairingScope.PATIENT
    no_face: NoFaceAction = NoFaceAction.QUARANTINE
    no_patient_id: NoPatientIdAction = NoPatientIdAction.PER_STUDY  # applied by the decide stage
    fallback_engine: str | None = None  # only used when the rule names one explicitly
    jpeg_quality: int = 95
    engine_options: dict[str, Any] = field(default_factory=dict)
    text: TextPlan = field(default_factory=TextPlan)
    # verification's population (linkage) test: at least this many real reference faces must be nearer to
    # the output than the patient's own input; 0 turns the test off (fail-closed default: 1)
    population_rank: int = 1


class TagAction(StrEnum):
    """Per-tag override actions an admin may write in a rule file."""

    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"
    REPLACE = "replace"
    HASH = "hash"
    SHIFT_DATE = "shift-date"


@dataclass(frozen=True)
class TagOverride:
    tag: int  # (group << 16) | element
    action: TagAction
    value: str | None = None  # for REPLACE


class ProfileOption(StrEnum):
    """PS3.15 Table E.1-1 option columns."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"


@dataclass(frozen=True)
class MetadataPlan:
    """How the header of one route is de-identified."""

    options: frozenset[ProfileOption] = frozenset(
        {ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES, ProfileOption.CLEAN_DESCRIPTORS}
    )
    strict: bool = False  # remove every text-VR attribute that is not on the keep list
    overrides: tuple[TagOverride, ...] = ()
    safe_private: tuple[str, ...] = ()  # "gggg,\"Creator\",ee" entries kept under Retain Safe Private
    allow_burned_in_annotation: bool = False
    rule_set_name: str = "default"
    rule_set_hash: str = ""
    shift_time: bool = False  # shift TM values with the per-patient offset too
    # Added by the metadata engineer (all defaulted, backwards compatible):
    strict_keep: tuple[str, ...] = ()  # extra keywords strict mode keeps (beside the built-in keep list)
    clean_vocabulary: tuple[str, ...] = ()  # extra words that Clean (C) keeps in descriptors
    date_offset_min_days: int = -365  # per-patient date shift range, inclusive
    date_offset_max_days: int = -30
    jpeg_full_scan: bool = False  # scan JPEG entropy data for hidden markers too (slower; see jpeg_markers)


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels


@dataclass(frozen=True)
class TextReport:
    """What the text step did to one image: counts and boxes only, never what was read."""

    action: TextAction
    checked: bool  # detection ran, and (after any redaction) a second pass found no text left
    found: int = 0  # text lines OCR confirmed (allowed ones included)
    kept: int = 0  # lines on the allow-list, left as they are
    redacted: int = 0  # lines inpainted (confirmed ones and their unconfirmed neighbours)
    boxes: tuple[Box, ...] = ()  # redacted areas

    @property
    def clean(self) -> bool:
        """Checked, and nothing but allow-listed text is left: BurnedInAnnotation may say NO."""
        return self.checked and self.action is not TextAction.KEEP


@dataclass(frozen=True)
class PixelReport:
    """What the pixel stage did to one image; the metadata stage marks the header from it."""

    faces_found: int
    faces_replaced_and_verified: bool
    engine: str
    preserved: tuple[Region, ...] = ()
    identity_seed_id: str = ""  # short hash of the seed, safe to log
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    scores: dict[str, float] = field(default_factory=dict)
    lossy_recompressed: bool = False
    text: TextReport | None = None  # None: no text step ran (no pixels were looked at)
