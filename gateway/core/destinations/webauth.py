"""HTTPS and authentication for DICOMweb peers (used by the STOW-RS sender and its echo).

Secrets are read from their files when a request is made (so a rotated token file is picked up without a
restart) and never logged. OAuth2 client-credentials tokens (RFC 6749 §4.4) are cached per token URL and
client until shortly before they expire, and dropped when the archive answers 401.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Generator
from pathlib import Path

import httpx

from dicom_rules.decision import BasicAuth, BearerAuth, HttpsSettings, OAuth2ClientCredentials, WebAuth

TOKEN_MARGIN_S = 30.0  # renew this long before the token's expiry


class SecretError(RuntimeError):
    """A secret file is missing, unreadable or empty; the message names the file, never its content."""


def read_secret(path: Path) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise SecretError(f"secret file {path}: {exc.strerror or type(exc).__name__}") from None
    if not value:
        raise SecretError(f"secret file {path} is empty")
    return value


def https_context(tls: HttpsSettings | None) -> ssl.SSLContext:
    """Verify the peer against ``ca_bundle`` (or the system CAs); TLS 1.2 at least; optional client cert."""
    cafile = str(tls.ca_bundle) if tls is not None and tls.ca_bundle is not None else None
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None and tls.certificate is not None and tls.private_key is not None:
        ctx.load_cert_chain(str(tls.certificate), str(tls.private_key))
    return ctx


class BearerFileAuth(httpx.Auth):
    def __init__(self, token_file: Path) -> None:
        self.token_file = token_file

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {read_secret(self.token_file)}"
        yield request


class BasicFileAuth(httpx.Auth):
    def __init__(self, username: str, password_file: Path) -> None:
        self.username, self.password_file = username, password_file

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        basic = httpx.BasicAuth(self.username, read_secret(self.password_file))
        yield from basic.auth_flow(request)


_TOKENS: dict[tuple[str, str], tuple[str, float]] = {}
_TOKENS_LOCK = threading.Lock()


class OAuth2ClientCredentialsAuth(httpx.Auth):
    """Bearer token from the token endpoint (client id + secret by HTTP Basic, RFC 6749 §2.3.1)."""

    def __init__(self, settings: OAuth2ClientCredentials, verify: ssl.SSLContext, timeout_s: float) -> None:
        self.settings, self.verify, self.timeout_s = settings, verify, timeout_s
        self.key = (settings.token_url, settings.client_id)

    def token(self) -> str:
        with _TOKENS_LOCK:
            cached = _TOKENS.get(self.key)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            data = {"grant_type": "client_credentials"}
            if self.settings.scope:
                data["scope"] = self.settings.scope
            secret = read_secret(self.settings.client_secret_file)
            response = httpx.post(
                self.settings.token_url,
                data=data,
                auth=(self.settings.client_id, secret),
                verify=self.verify,
                timeout=self.timeout_s,
            )
            if response.status_code != 200:
                raise SecretError(f"token endpoint answered HTTP {response.status_code}")
            body = response.json()
            token = str(body.get("access_token", ""))
            if not token:
                raise SecretError("token endpoint answered without access_token")
            lifetime = float(body.get("expires_in", 300))
            _TOKENS[self.key] = (token, time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN_S))
            return token

    def forget(self) -> None:
        with _TOKENS_LOCK:
            _TOKENS.pop(self.key, None)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        response = yield request
        if response.status_code == 401:
            self.forget()  # the next attempt (after back-off) fetches a fresh token


def token_endpoint_context(tls: HttpsSettings | None) -> ssl.SSLContext:
    """The identity provider often lives elsewhere than the archive: system CAs plus the archive's bundle."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None and tls.ca_bundle is not None:
        ctx.load_verify_locations(cafile=str(tls.ca_bundle))
    return ctx


def http_auth(auth: WebAuth | None, tls: HttpsSettings | None, timeout_s: float) -> httpx.Auth | None:
    if isinstance(auth, BasicAuth):
        return BasicFileAuth(auth.username, auth.password_file)
    if isinstance(auth, BearerAuth):
        return BearerFileAuth(auth.token_file)
    if isinstance(auth, OAuth2ClientCredentials):
        return OAuth2ClientCredentialsAuth(auth, token_endpoint_context(tls), timeout_s)
    return None
