"""Output contract of the rules: one RouteDecision per dataset. The YAML loader builds RuleSets."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path

from pydicom.dataset import Dataset

from anonymizer.plans import MetadataPlan, PixelPlan
from dicom_rules.matching import Route

DEFAULT_RULES_PATH = Path(__file__).with_name("default.yaml")
ANY_AE = "*"


class RouteAction(StrEnum):
    FORWARD = "forward"
    QUARANTINE = "quarantine"
    DROP = "drop"


@dataclass(frozen=True)
class TlsSettings:
    certificate: Path | None = None
    private_key: Path | None = None
    ca_bundle: Path | None = None
    require_peer_certificate: bool = True


@dataclass(frozen=True)
class DicomDestination:
    name: str
    ae_title: str
    host: str
    port: int
    tls: TlsSettings | None = None


@dataclass(frozen=True)
class FolderDestination:
    name: str
    path: Path  # relative paths resolve against the gateway data dir


Destination = DicomDestination | FolderDestination


@dataclass(frozen=True)
class Source:
    ae_title: str
    networks: tuple[str, ...] = ()  # CIDRs; empty means any address

    def allows(self, calling_ae: str, calling_ip: str) -> bool:
        """Same semantics as the gateway's association policy: AE title ``*`` admits any AE title."""
        if self.ae_title.strip() not in (calling_ae.strip(), ANY_AE):
            return False
        if not self.networks:
            return True
        address = _parse_ip(calling_ip)
        return address is not None and any(
            address.version == net.version and address in net
            for net in map(ipaddress.ip_network, self.networks)
        )


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class RouteDecision:
    route_name: str
    action: RouteAction
    destination: Destination | None
    pixels: PixelPlan
    metadata: MetadataPlan
    reason: str = ""


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


def default_rules(default_engine: str = "surrogate") -> RuleSet:
    """The shipped ``dicom_rules/default.yaml``: Basic Profile, modified dates, clean descriptors."""
    return _load_cached(DEFAULT_RULES_PATH, default_engine)


@cache
def _load_cached(path: Path, default_engine: str) -> RuleSet:
    return load_rules(path, default_engine=default_engine)


def load_rules(path: Path, *, default_engine: str = "surrogate") -> RuleSet:
    """Load and validate a rule file (plus includes). Raises :class:`dicom_rules.source.RulesError`.

    ``default_engine`` (from the gateway config) is used by routes whose pixels section names no engine.
    """
    from dicom_rules.loader import load_rule_file  # the loader builds RuleSets, so it imports this module

    return load_rule_file(Path(path), default_engine=default_engine)
