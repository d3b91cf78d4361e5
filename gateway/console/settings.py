"""The ``console:`` section of the service config (a frozen model; no web imports here)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ConsoleTls(BaseModel):
    """Certificate and key for HTTPS (PEM files, like the DICOM TLS listener's; relative to the data dir)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    certificate: Path
    private_key: Path


class ConsoleConfig(BaseModel):
    """The web console: loopback by default; any other bind address needs TLS (its own ``tls`` or the
    service's DICOM TLS certificate and key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bind: str = "127.0.0.1"
    port: int = Field(8108, ge=0, le=65535)
    users_file: Path = Path("console-users.yaml")  # relative to the data dir; `vera-gateway console add-user`
    trusted_proxy_header: str | None = None  # e.g. X-Remote-User, set by an authenticating reverse proxy ...
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")  # ... and believed only from these addresses
    proxy_default_role: str = Field("viewer", pattern="^(viewer|admin)$")  # proxy users not in users_file
    tls: ConsoleTls | None = None
    session_max_age_s: int = Field(8 * 3600, ge=60)
    login_attempts: int = Field(5, ge=1)  # failed logins per client address and per user name ...
    login_window_s: float = Field(300.0, gt=0)  # ... within this window, then 429 until it passes
    refresh_s: int = Field(10, ge=0)  # overview auto-refresh (0 = off)

    @field_validator("bind")
    @classmethod
    def _valid_ip(cls, value: str) -> str:
        ipaddress.ip_address(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            ipaddress.ip_network(address, strict=False)
        return value

    @property
    def on_loopback(self) -> bool:
        return ipaddress.ip_address(self.bind).is_loopback
