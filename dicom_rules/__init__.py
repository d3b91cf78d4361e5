"""The admin's rule language: which route a study takes, where it goes, and how it is de-identified.

Entry points: :func:`load_rules` (file → :class:`RuleSet`, or :class:`RulesError` with file:line errors),
:func:`default_rules`, :meth:`RuleSet.decide` (dataset + caller → :class:`RouteDecision`) and
:class:`RulesWatcher` (hot reload between jobs).
"""

from dicom_rules.decision import (
    DicomDestination,
    DicomWebDestination,
    FolderDestination,
    RouteAction,
    RouteDecision,
    Source,
    TlsSettings,
)
from dicom_rules.loader import default_rules, load_rules
from dicom_rules.ruleset import RuleSet
from dicom_rules.source import RuleError, RulesError
from dicom_rules.watcher import RulesWatcher

__all__ = [
    "DicomDestination",
    "DicomWebDestination",
    "FolderDestination",
    "RouteAction",
    "RouteDecision",
    "RuleError",
    "RuleSet",
    "RulesError",
    "RulesWatcher",
    "Source",
    "TlsSettings",
    "default_rules",
    "load_rules",
]
