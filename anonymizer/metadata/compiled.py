"""Compile (shipped table + plan) once into a per-tag action lookup; cached per plan.

Modes for attributes the table does not list: *standard* keeps them, except narrative text (LT, ST, UT, UC)
and person names (PN), which are removed; *strict* also removes every other text-VR attribute (AE, AS, CS,
LO, SH, UR) that is not on the keep list (:data:`STRICT_KEEP_KEYWORDS`, ``plan.strict_keep``, keep
overrides) and remaps every UID that is not a well-known one. Sequences are always recursed and dates always
shifted (unless Full Dates).

The hot path does one dict lookup per element. Rows of repeating groups (50xx, 60xx), group lengths,
private tags and unlisted attributes go through :meth:`CompiledPlan.fallback`, whose answers are memoised
per (tag, VR) in the compiled plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum, auto
from functools import lru_cache

from pydicom.datadict import dictionary_VR, keyword_dict

from anonymizer.metadata.errors import MetadataError
from anonymizer.metadata.table import Code, load_table, resolve
from anonymizer.metadata.values import CLEAN_VOCABULARY, TEXT_VRS, UNLISTED_REMOVED_VRS
from anonymizer.plans import MetadataPlan, ProfileOption, TagAction


class Action(Enum):
    KEEP = auto()  # K for an element that is not a sequence: nothing to do
    RECURSE = auto()  # K on a sequence: keep it, clean its items
    USEQ = auto()  # U* of X/Z/U*: keep the sequence, clean its items, remap every UID in it
    REMOVE = auto()
    EMPTY = auto()
    DUMMY = auto()
    CLEAN = auto()
    UID = auto()
    SHIFT = auto()
    PATIENT_ID = auto()
    PATIENT_NAME = auto()
    STUDY_ID = auto()
    ACCESSION = auto()
    REPLACE = auto()
    HASH = auto()


Entry = tuple[Action, str | None]

CODE_ACTION = {
    Code.DUMMY: Action.DUMMY,
    Code.ZERO: Action.EMPTY,
    Code.REMOVE: Action.REMOVE,
    Code.KEEP: Action.RECURSE,  # RECURSE degrades to KEEP for a non-sequence at run time
    Code.CLEAN: Action.CLEAN,
    Code.UID: Action.UID,
    Code.U_SEQ: Action.USEQ,
}
OVERRIDE_ACTION = {
    TagAction.KEEP: Action.RECURSE,
    TagAction.REMOVE: Action.REMOVE,
    TagAction.EMPTY: Action.EMPTY,
    TagAction.REPLACE: Action.REPLACE,
    TagAction.HASH: Action.HASH,
    TagAction.SHIFT_DATE: Action.SHIFT,
}
# Project policy on top of the table (each is a D/Z value the table allows): keyed pseudonyms.
PSEUDONYM_TAGS: dict[int, Action] = {
    0x00100020: Action.PATIENT_ID,
    0x00100010: Action.PATIENT_NAME,
    0x00200010: Action.STUDY_ID,
    0x00080050: Action.ACCESSION,
}
# Unlisted text attributes that strict mode keeps: needed to make sense of a photo, and coded values.
STRICT_KEEP_KEYWORDS = (
    "SpecificCharacterSet", "ImageType", "Modality", "PhotometricInterpretation", "ConversionType",
    "Laterality", "ImageLaterality", "BodyPartExamined", "LossyImageCompression",
    "LossyImageCompressionMethod", "BurnedInAnnotation", "RecognizableVisualFeatures",
    "PresentationLUTShape", "PatientOrientation", "ViewPosition", "QualityControlImage",
    "PixelPresentation", "VolumetricProperties", "VolumeBasedCalculationTechnique", "ColorSpace",
    "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning", "MappingResource",
    "ContextIdentifier", "ValueType", "RelationshipType", "ContinuityOfContent", "PatientIdentityRemoved",
    "DeidentificationMethod", "LongitudinalTemporalInformationModified",
)
_SAFE_PRIVATE = re.compile(r'^\s*([0-9A-Fa-f]{4})\s*,\s*"([^"]*)"\s*,\s*([0-9A-Fa-f]{2})\s*$')
_HEX_TAG = re.compile(r"[0-9a-f]{8}")


@dataclass(frozen=True)
class CompiledPlan:
    plan: MetadataPlan
    actions: dict[int, Entry]
    curve: Action
    overlay_data: Action
    overlay_comments: Action
    private_retain: bool
    safe_private: frozenset[tuple[int, str, int]]
    private_overrides: dict[int, Entry]
    strict_keep: frozenset[int]
    shift_dates: bool
    vocabulary: frozenset[str]
    _memo: dict[tuple[int, str], Entry] = field(default_factory=dict, compare=False)

    def fallback(self, tag: int, vr: str) -> Entry:
        """Action for a public tag that has no row of its own (memoised)."""
        entry = self._memo.get((tag, vr))
        if entry is None:
            entry = self._fallback(tag, vr)
            self._memo[(tag, vr)] = entry
        return entry

    def _fallback(self, tag: int, vr: str) -> Entry:
        group, elem = tag >> 16, tag & 0xFFFF
        if elem == 0 and group != 0x0002:
            return (Action.REMOVE, None)  # group lengths: retired, recomputed by writers that want them
        if 0x5000 <= group <= 0x50FF:
            return (self.curve, None)
        if 0x6000 <= group <= 0x60FF:
            return (self._overlay(elem), None)
        if vr == "SQ":
            return (Action.RECURSE, None)
        if vr in ("DA", "DT") or (vr == "TM" and self.plan.shift_time):
            return (Action.SHIFT if self.shift_dates else Action.KEEP, None)
        if vr in UNLISTED_REMOVED_VRS and tag not in self.strict_keep:
            return (Action.REMOVE, None)  # unlisted narrative text and person names: removed in both modes
        if self.plan.strict and vr in TEXT_VRS and tag not in self.strict_keep:
            return (Action.REMOVE, None)
        if self.plan.strict and vr == "UI" and ProfileOption.RETAIN_UIDS not in self.plan.options:
            return (Action.UID, None)
        return (Action.KEEP, None)

    def _overlay(self, elem: int) -> Action:
        if elem == 0x3000:
            return self.overlay_data
        if elem == 0x4000:
            return self.overlay_comments
        # Without its bitmap an overlay plane's description and label are orphans that may name people.
        return Action.REMOVE if self.overlay_data is Action.REMOVE else Action.KEEP


def _tag_of(keyword: str) -> int:
    return int(keyword_dict[keyword])


def parse_safe_private(entries: tuple[str, ...]) -> frozenset[tuple[int, str, int]]:
    """'gggg,"Creator",ee' entries → (group, creator, element low byte)."""
    parsed = set()
    for entry in entries:
        match = _SAFE_PRIVATE.match(entry)
        if match is None or not int(match.group(1), 16) & 1:
            raise MetadataError("safe private entry is not of the form gggg,\"Creator\",ee with odd gggg")
        parsed.add((int(match.group(1), 16), match.group(2).strip(), int(match.group(3), 16)))
    return frozenset(parsed)


def _graphics(code: Code) -> Action:
    # Overlay bitmaps and curves cannot be checked for burned-in names, so Clean Graphics still removes them.
    return Action.REMOVE if code in (Code.REMOVE, Code.CLEAN) else CODE_ACTION[code]


def _by_vr(tag: int, action: Action, plan: MetadataPlan, shift_dates: bool) -> Action:
    """Resolve C on date/time attributes at compile time: DA/DT shift; TM kept unless the plan shifts it."""
    if action is not Action.CLEAN:
        return action
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return action
    if vr in ("DA", "DT") or (vr == "TM" and plan.shift_time):
        return Action.SHIFT if shift_dates else Action.KEEP
    return Action.KEEP if vr == "TM" else action


def _table_actions(plan: MetadataPlan, options: frozenset[ProfileOption],
                   shift_dates: bool) -> tuple[dict[int, Entry], dict[str, Code]]:
    actions: dict[int, Entry] = {}
    special: dict[str, Code] = {}
    for row in load_table().rows:
        code = resolve(row, options)
        if _HEX_TAG.fullmatch(row.tag):
            tag = int(row.tag, 16)
            actions[tag] = (_by_vr(tag, CODE_ACTION[code], plan, shift_dates), None)
        else:
            special[row.tag] = code
    return actions, special


def _apply_overrides(plan: MetadataPlan, actions: dict[int, Entry]) -> dict[int, Entry]:
    private: dict[int, Entry] = {}
    for override in plan.overrides:
        entry = (OVERRIDE_ACTION[TagAction(override.action)], override.value)
        if entry[0] is Action.REPLACE and override.value is None:
            raise MetadataError(f"override replace on ({override.tag >> 16:04X},{override.tag & 0xFFFF:04X}) "
                                "has no value")
        target = private if (override.tag >> 16) & 1 else actions
        target[override.tag] = entry
    return private


@lru_cache(maxsize=64)
def compile_plan(plan: MetadataPlan) -> CompiledPlan:
    """Table + options + overrides → one lookup; built once per plan and cached."""
    options = frozenset(ProfileOption(o) for o in plan.options)
    shift_dates = (ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES not in options
                   or ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in options)
    actions, special = _table_actions(plan, options, shift_dates)
    for tag, action in PSEUDONYM_TAGS.items():
        actions[tag] = (action, None)
    private_overrides = _apply_overrides(plan, actions)
    keep = {_tag_of(k) for k in (*STRICT_KEEP_KEYWORDS, *plan.strict_keep)}
    keep |= {o.tag for o in plan.overrides if o.action == TagAction.KEEP}
    retain_private = special["private"] is Code.CLEAN
    return CompiledPlan(
        plan=plan,
        actions=actions,
        curve=_graphics(special["50xxxxxx"]),
        overlay_data=_graphics(special["60xx3000"]),
        overlay_comments=_graphics(special["60xx4000"]),
        private_retain=retain_private,
        safe_private=parse_safe_private(plan.safe_private) if retain_private else frozenset(),
        private_overrides=private_overrides,
        strict_keep=frozenset(keep),
        shift_dates=shift_dates,
        vocabulary=CLEAN_VOCABULARY | frozenset(w.upper() for w in plan.clean_vocabulary),
    )
