"""DICOM TLS (PS3.15 Annex B, BCP 195 profile): SSL contexts for the SCP and for the forwarder's SCU.

Pure functions over a frozen settings object (:class:`dicom_rules.decision.TlsSettings`, the same shape
per destination in the rule file and for the listener in the service config):

- :func:`server_context` — the TLS listener: our certificate + key; the peer (hospital PACS) must present a
  certificate signed by the CA bundle when ``require_peer_certificate`` is set.
- :func:`client_context` — the forwarder: verifies the destination's certificate against the CA bundle,
  presents our certificate + key when given (mutual TLS).

Only TLS 1.2 and 1.3, with the BCP 195 (RFC 7525 / RFC 9325) AEAD suites for TLS 1.2. Misconfiguration
raises :class:`TlsConfigError` naming the file and the fix, at startup, never at the first association.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from dicom_rules.decision import TlsSettings


def _log() -> Any:
    """structlog on first use: the admin commands load the config (this module) and never log from here."""
    import structlog

    return structlog.get_logger(__name__)

# RFC 7525 §4.2 (BCP 195) recommended suites, plus their ECDSA twins (RFC 9325 §4.2). TLS 1.3 suites
# are all AEAD and are left to OpenSSL's defaults.
BCP195_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    )
)
DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0


def __getattr__(name: str) -> Any:
    """``gateway.ops.tls.TlsSettings`` stays importable; it is loaded on first use (it pulls in pydicom)."""
    if name == "TlsSettings":
        from dicom_rules.decision import TlsSettings

        return TlsSettings
    raise AttributeError(name)


__all__ = [
    "BCP195_CIPHERS",
    "TlsConfigError",
    "TlsListenerConfig",
    "TlsSettings",
    "client_context",
    "describe_peer",
    "scu_tls_args",
    "server_context",
    "tls_settings_from_mapping",
]


class TlsConfigError(ValueError):
    """The TLS settings cannot produce a secure context (missing file, bad key, no CA to verify with)."""


class TlsLike(Protocol):
    """Anything shaped like :class:`TlsSettings` (the service config may carry its own model)."""

    @property
    def certificate(self) -> Path | None: ...
    @property
    def private_key(self) -> Path | None: ...
    @property
    def ca_bundle(self) -> Path | None: ...
    @property
    def require_peer_certificate(self) -> bool: ...


class TlsListenerConfig(BaseModel):
    """The ``tls:`` section of the service config: a TLS listener beside the plain one, with the same AE
    title, allow-list and limits. Relative paths resolve against the data dir."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: int = Field(2762, ge=0, le=65535)  # 2762: the IANA port for DICOM over TLS
    certificate: Path
    private_key: Path
    ca_bundle: Path | None = None
    require_peer_certificate: bool = True
    handshake_timeout_s: float = Field(DEFAULT_HANDSHAKE_TIMEOUT_S, gt=0)

    @model_validator(mode="after")
    def _ca_when_required(self) -> TlsListenerConfig:
        if self.require_peer_certificate and self.ca_bundle is None:
            raise ValueError("require_peer_certificate needs ca_bundle (the CA that signs the senders)")
        return self

    def settings(self, resolve: Callable[[Path], Path] = Path) -> TlsSettings:
        from dicom_rules.decision import TlsSettings  # lazily: pixel-free CLI commands stay fast

        ca = resolve(self.ca_bundle) if self.ca_bundle is not None else None
        return TlsSettings(
            resolve(self.certificate), resolve(self.private_key), ca, self.require_peer_certificate
        )

    def context(self, resolve: Callable[[Path], Path] = Path) -> ssl.SSLContext:
        return server_context(self.settings(resolve), handshake_timeout_s=self.handshake_timeout_s)


class _BoundedHandshakeContext(ssl.SSLContext):
    """Server context whose handshake cannot stall the accept loop for longer than a timeout.

    pynetdicom wraps accepted sockets in its accept thread; a client that connects and never speaks TLS
    would block every other caller. Failed handshakes are logged (peer address only) and re-raised so
    socketserver drops the connection.
    """

    handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        previous = sock.gettimeout()
        peer = _peer_ip(sock)  # before the handshake: a refused peer may have hung up afterwards
        sock.settimeout(self.handshake_timeout_s)
        try:
            wrapped = super().wrap_socket(sock, *args, **kwargs)
        except (OSError, ValueError) as exc:
            _log_handshake_failure(peer, exc)
            sock.close()
            raise
        wrapped.settimeout(previous)
        return wrapped


def _peer_ip(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return "?"


def _log_handshake_failure(peer: str, exc: BaseException) -> None:
    """Observer: log (peer address and OpenSSL reason only) and count; must never raise."""
    reason = getattr(exc, "reason", None) or type(exc).__name__
    try:
        from gateway.ops.policy import RefusalReason, count_refusal

        count_refusal(RefusalReason.TLS_HANDSHAKE, peer_ip=peer, tls_reason=str(reason))
    except Exception:  # pragma: no cover - observers may fail without harm
        _log().warning("tls_handshake_failed", peer_ip=peer, tls_reason=reason)


def _require_file(path: Path | None, what: str, fix: str) -> Path:
    if path is None:
        raise TlsConfigError(f"TLS {what} is not configured; {fix}")
    path = Path(path)
    if not path.is_file():
        raise TlsConfigError(f"TLS {what} {path} does not exist or is not a file; {fix}")
    return path


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(BCP195_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION


def _load_identity(ctx: ssl.SSLContext, settings: TlsLike, fix: str) -> None:
    cert = _require_file(settings.certificate, "certificate", fix)
    key = _require_file(settings.private_key, "private key", fix)
    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"TLS certificate {cert} and key {key} do not load together ({exc.reason}); "
            "check that the key matches the certificate and is not password-protected"
        ) from exc


def _load_ca(ctx: ssl.SSLContext, ca_bundle: Path | None) -> None:
    fix = "set ca_bundle to the PEM file of the CA(s) that sign the peers' certificates"
    ca = _require_file(ca_bundle, "CA bundle", fix)
    try:
        ctx.load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise TlsConfigError(f"TLS CA bundle {ca} is not a PEM certificate file ({exc.reason})") from exc


def server_context(
    settings: TlsLike, *, handshake_timeout_s: float = DEFAULT_HANDSHAKE_TIMEOUT_S
) -> ssl.SSLContext:
    """Context for the TLS listener. Certificate and key are mandatory; a CA bundle too when peers must
    present a certificate (the DICOM default). Without ``require_peer_certificate`` a presented client
    certificate is still verified when a CA bundle is given."""
    ctx = _BoundedHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.handshake_timeout_s = handshake_timeout_s
    _harden(ctx)
    _load_identity(ctx, settings, "set certificate and private_key of the TLS listener (PEM files)")
    if settings.require_peer_certificate:
        _load_ca(ctx, settings.ca_bundle)
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif settings.ca_bundle is not None:
        _load_ca(ctx, settings.ca_bundle)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(settings: TlsLike, *, check_hostname: bool = False) -> ssl.SSLContext:
    """Context for a C-STORE/C-ECHO SCU. The destination's certificate is verified against the CA bundle
    (``require_peer_certificate=False`` turns verification off and is logged as a warning). Our
    certificate + key are presented when configured. DICOM peers are usually addressed by IP, so host
    name checking is opt-in."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    if settings.certificate is not None or settings.private_key is not None:
        _load_identity(ctx, settings, "give both certificate and private_key for mutual TLS, or neither")
    if settings.require_peer_certificate:
        _load_ca(ctx, settings.ca_bundle)
        ctx.check_hostname = check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        unchecked = "the destination's certificate is not checked"
        _log().warning("tls_peer_verification_disabled", detail=unchecked)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def scu_tls_args(
    settings: TlsLike | None, host: str, *, check_hostname: bool = False
) -> tuple[ssl.SSLContext, str | None] | None:
    """``tls_args`` for ``AE.associate``: ``None`` for plain TCP, else (client context, server name).
    The server name is only sent when host names are checked (SNI with an IP address is invalid)."""
    if settings is None:
        return None
    ctx = client_context(settings, check_hostname=check_hostname)
    return ctx, (host if check_hostname else None)


def tls_settings_from_mapping(
    data: dict[str, Any] | None, base_dir: Path | None = None
) -> TlsSettings | None:
    """Build :class:`TlsSettings` from a config mapping (``certificate``, ``private_key``, ``ca_bundle``,
    ``require_peer_certificate``); relative paths resolve against ``base_dir``. ``None`` means plain TCP."""
    if not data:
        return None
    unknown = set(data) - {"certificate", "private_key", "ca_bundle", "require_peer_certificate"}
    if unknown:
        raise TlsConfigError(f"unknown TLS setting(s): {', '.join(sorted(unknown))}")

    def path(key: str) -> Path | None:
        value = data.get(key)
        if value in (None, ""):
            return None
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() or base_dir is None else base_dir / p

    from dicom_rules.decision import TlsSettings

    return TlsSettings(
        certificate=path("certificate"),
        private_key=path("private_key"),
        ca_bundle=path("ca_bundle"),
        require_peer_certificate=bool(data.get("require_peer_certificate", True)),
    )


def describe_peer(sock: object) -> dict[str, str]:
    """TLS facts of an established connection for logs: version, cipher, peer certificate subject CN.
    The CN names a machine, not a patient."""
    if not isinstance(sock, ssl.SSLSocket):
        return {"tls": "no"}
    cipher = sock.cipher()
    info = {"tls": sock.version() or "?", "cipher": cipher[0] if cipher else "?"}
    cert = sock.getpeercert() or {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                info["peer_cn"] = str(value)
    return info
