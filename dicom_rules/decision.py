"""Output contract of the rules: one RouteDecision per dataset (plus the destinations and sources it names).

:mod:`dicom_rules.matching` evaluates routes, :mod:`dicom_rules.ruleset` holds them, and
:mod:`dicom_rules.loader` builds a RuleSet from YAML; this module imports none of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from anonymizer.plans import MetadataPlan, PixelPlan

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


@dataclass(frozen=True)
class HttpsSettings:
    """HTTPS to a DICOMweb peer: system CAs unless ``ca_bundle``; optional client certificate."""

    ca_bundle: Path | None = None
    certificate: Path | None = None
    private_key: Path | None = None


@dataclass(frozen=True)
class BasicAuth:
    username: str
    password_file: Path


@dataclass(frozen=True)
class BearerAuth:
    token_file: Path


@dataclass(frozen=True)
class OAuth2ClientCredentials:
    token_url: str
    client_id: str
    client_secret_file: Path
    scope: str = ""


WebAuth = BasicAuth | BearerAuth | OAuth2ClientCredentials


@dataclass(frozen=True)
class DicomWebDestination:
    name: str
    url: str  # base URL; STOW-RS posts to <url>/studies, QIDO-RS reads <url>/studies
    tls: HttpsSettings | None = None
    auth: WebAuth | None = None
    timeout_s: float = 120.0


Destination = DicomDestination | FolderDestination | DicomWebDestination


def describe_destination(dest: Destination) -> str:
    """One line for explain and doctor: the kind and where it points (no secrets)."""
    if isinstance(dest, FolderDestination):
        return f"{dest.name} (folder {dest.path})"
    if isinstance(dest, DicomWebDestination):
        auth = type(dest.auth).__name__ if dest.auth is not None else "no auth"
        return f"{dest.name} (dicomweb STOW-RS {dest.url}, {auth})"
    return f"{dest.name} (dicom {dest.ae_title}@{dest.host}:{dest.port}{', TLS' if dest.tls else ''})"


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
