"""A validated rule set: ordered routes evaluated against a dataset and its sender."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dicom_rules.decision import Destination, RouteDecision, Source
from dicom_rules.matching import Route

if TYPE_CHECKING:  # a dataset brings pydicom with it; `rules check` runs without
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class RuleSet:
    """A validated rule set: ordered routes, first match wins; the last route is a catch-all.

    ``sha256`` is the version (hash of the file and its includes); ``files`` are what a watcher polls.
    ``sources`` are enforced when an association is opened (the gateway's association policy);
    :meth:`decide` routes what was admitted, and :meth:`source_allowed` answers the same question.
    """

    name: str
    sha256: str
    sources: tuple[Source, ...] = ()
    destinations: dict[str, Destination] = field(default_factory=dict)
    catch_all: RouteDecision | None = None
    routes: tuple[Route, ...] = ()
    files: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()  # "file:line:col: warning: …" lines from `rules check`; never block

    def source_allowed(self, calling_ae: str, calling_ip: str) -> bool:
        """True when no sources are listed, or one of them lists this AE title (and network)."""
        return not self.sources or any(s.allows(calling_ae, calling_ip) for s in self.sources)

    def decide(self, ds: Dataset, calling_ae: str = "", calling_ip: str = "") -> RouteDecision:
        """First route whose conditions all hold; the last route is a catch-all, so there is always one."""
        for route in self.routes:
            if route.matches(ds, calling_ae):
                return route.decision
        assert self.catch_all is not None, "a RuleSet always ends with a catch-all"
        return self.catch_all
