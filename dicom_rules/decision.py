"""Output contract of the rules: one RouteDecision per dataset. The YAML loader builds RuleSets."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydicom.dataset import Dataset

from anonymizer.plans import MetadataPlan, PixelPlan


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
    """A validated rule set. The placeholder has one catch-all route; the YAML loader builds real ones."""

    name: str
    sha256: str
    sources: tuple[Source, ...] = ()
    destinations: dict[str, Destination] = field(default_factory=dict)
    catch_all: RouteDecision | None = None

    def decide(self, ds: Dataset, calling_ae: str = "", calling_ip: str = "") -> RouteDecision:
        assert self.catch_all is not None
        return self.catch_all


def default_rules() -> RuleSet:
    out = FolderDestination(name="research-folder", path=Path("outbox-research"))
    decision = RouteDecision(
        route_name="catch-all",
        action=RouteAction.FORWARD,
        destination=out,
        pixels=PixelPlan(),
        metadata=MetadataPlan(rule_set_name="default"),
    )
    return RuleSet(name="default", sha256="0" * 64, destinations={out.name: out}, catch_all=decision)


def load_rules(path: Path) -> RuleSet:
    raise NotImplementedError("YAML rule files land with the rules issue")
