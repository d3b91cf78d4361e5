"""The admin's rule language: which route a study takes, where it goes, and how it is de-identified.

Entry points: :func:`load_rules` (file → :class:`RuleSet`), :func:`default_rules`, and
:meth:`RuleSet.decide` (dataset + caller → :class:`RouteDecision`).
"""

from dicom_rules.decision import (
    DicomDestination,
    FolderDestination,
    RouteAction,
    RouteDecision,
    RuleSet,
    default_rules,
    load_rules,
)

__all__ = [
    "DicomDestination",
    "FolderDestination",
    "RouteAction",
    "RouteDecision",
    "RuleSet",
    "default_rules",
    "load_rules",
]
