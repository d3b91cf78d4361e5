"""The admin's rule language: which route a study takes, where it goes, and how it is de-identified.

Entry points: :func:`load_rules` (file → :class:`RuleSet`, or :class:`RulesError` with file:line errors),
:func:`default_rules`, :meth:`RuleSet.decide` (dataset + caller → :class:`RouteDecision`) and
:class:`RulesWatcher` (hot reload between jobs).
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from dicom_rules.watcher import RulesWatcher


def __getattr__(name: str) -> Any:
    """RulesWatcher on first use: it brings structlog (40 ms) that `rules check` has no use for."""
    if name == "RulesWatcher":
        from dicom_rules.watcher import RulesWatcher

        return RulesWatcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
