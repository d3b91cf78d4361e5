"""The STOW-RS receiver (PS3.18 §10.5): camera apps POST ``multipart/related`` DICOM to the same intake as
the SCP.

Each ``application/dicom`` part becomes one :class:`StoreRequest`; the intake answers per instance exactly as
for C-STORE (Success only after the spool fsync and the ledger commit; 0xA700, 0xA900, 0xC210 otherwise),
and the response lists every instance in ReferencedSOPSequence or FailedSOPSequence with that status as its
FailureReason: HTTP 200 when all were stored, 202 when some, 409 when none. Before any body is read the
client is identified (bearer token or client-certificate CN from ``stow.clients``) and a declared length over
``max_request_bytes`` is refused with 413; the body is parsed as it streams, one part in memory at a time.
A body that trickles (slower than ``min_body_bytes_per_s`` after ``body_grace_s``, or longer than
``body_timeout_s`` in all) is answered 408 and the connection closed, so a slow client cannot hold one of the
``max_concurrent_requests`` slots for long; nor can a connection that trickles (or never sends) its request
line and headers: it is closed after ``header_timeout_s``. Token files are re-read when they change (mtime,
size or inode), so a rotated token needs no restart.
The access log is ours and carries no path (the path may hold a Study Instance UID), only the client name,
address, status and counts.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from pydicom import dcmread
from python_multipart.multipart import MultipartParseError, MultipartParser
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from dicom_rules.decision import Source
from gateway.core.config import StowSettings
from gateway.core.destinations.webauth import SecretError, read_secret
from gateway.core.intake import OUT_OF_RESOURCES, SUCCESS, Caller, Intake, StoreRequest
from gateway.core.scp import IMAGE_TRANSFER_SYNTAXES, PHOTO_SOP_CLASSES, VIDEO, VIDEO_PHOTOGRAPHIC
from gateway.ops.metrics import STOW_REQUESTS
from gateway.ops.tls import TlsSettings, server_context

LOG = structlog.get_logger("gateway.stow")

DICOM_JSON = "application/dicom+json"
SOP_CLASS_NOT_SUPPORTED = 0x0122
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
STUDY_MISMATCH = 0xA900
PEER_CN = "vera_peer_cn"
HEADER_TAGS = ["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"]
LINGER_S = 2.0  # how long a closing connection still reads (and drops) what the client sends


class Refused(Exception):
    """The whole request is refused with an HTTP status; ``reason`` is a code for the access log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class StowResult:
    """Per-instance outcome of one request: (SOP class, SOP instance, status) in arrival order."""

    outcomes: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def stored(self) -> int:
        return sum(1 for *_, status in self.outcomes if status == SUCCESS)

    def http_status(self) -> int:
        if not self.outcomes:
            return 400
        return 200 if self.stored == len(self.outcomes) else 202 if self.stored else 409

    def body(self) -> dict[str, Any]:
        def item(cls: str, uid: str, status: int | None) -> dict[str, Any]:
            out: dict[str, Any] = {}
            if cls:
                out["00081150"] = {"vr": "UI", "Value": [cls]}
            if uid:
                out["00081155"] = {"vr": "UI", "Value": [uid]}
            if status is not None:
                out["00081197"] = {"vr": "US", "Value": [status]}
            return out

        ok = [item(c, u, None) for c, u, s in self.outcomes if s == SUCCESS]
        failed = [item(c, u, s) for c, u, s in self.outcomes if s != SUCCESS]
        body: dict[str, Any] = {}
        if ok:
            body["00081199"] = {"vr": "SQ", "Value": ok}
        if failed:
            body["00081198"] = {"vr": "SQ", "Value": failed}
        return body


class BodyClock:
    """How long the client may still take to send its next chunk. Only the time spent waiting for the
    client counts (not our storing of the parts before): in all at most ``body_timeout_s``, and after
    ``body_grace_s`` each byte received buys ``1 / min_body_bytes_per_s`` seconds more."""

    def __init__(self, settings: StowSettings) -> None:
        self.settings = settings
        self.waited = 0.0

    def budget(self, received: int) -> tuple[float, str]:
        """(seconds left for the next chunk, the access-log reason when they run out)."""
        s = self.settings
        left = s.body_timeout_s - self.waited
        if s.min_body_bytes_per_s:
            slow = s.body_grace_s + received / s.min_body_bytes_per_s - self.waited
            if slow < left:
                return slow, "body-too-slow"
        return left, "body-timeout"


class PartCollector:
    """python-multipart callbacks: collects complete parts (headers, bytes), one part bounded in size."""

    def __init__(self, max_part_bytes: int) -> None:
        self.max_part_bytes = max_part_bytes
        self.done: list[tuple[dict[str, str], bytes]] = []
        self.finished = False
        self._data = bytearray()
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _begin(self) -> None:
        self._data, self._headers = bytearray(), {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1").strip()
        self._field, self._value = bytearray(), bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if len(self._data) + (end - start) > self.max_part_bytes:
            raise Refused(413, "instance-too-large")
        self._data.extend(data[start:end])

    def _part_end(self) -> None:
        self.done.append((self._headers, bytes(self._data)))
        self._data = bytearray()

    def _end(self) -> None:
        self.finished = True


def media_type_params(header: str) -> tuple[str, dict[str, str]]:
    kind, *rest = (p.strip() for p in header.split(";"))
    params = {}
    for p in rest:
        key, _, value = p.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return kind.lower(), params


def boundary_of(content_type: str) -> bytes:
    kind, params = media_type_params(content_type)
    if kind != "multipart/related":
        raise Refused(415, "not-multipart-related")
    if params.get("type", "application/dicom").lower() != "application/dicom":
        raise Refused(415, "type-not-application-dicom")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise Refused(400, "no-boundary")
    return boundary.encode("latin-1")


def supported(sop_class: str, transfer_syntax: str) -> int:
    """0 when the SCP would accept this pair too; else the PS3.18 failure reason."""
    if sop_class not in PHOTO_SOP_CLASSES and sop_class != VIDEO_PHOTOGRAPHIC:
        return SOP_CLASS_NOT_SUPPORTED
    allowed = IMAGE_TRANSFER_SYNTAXES + (VIDEO if sop_class == VIDEO_PHOTOGRAPHIC else ())
    return 0 if transfer_syntax in allowed else TRANSFER_SYNTAX_NOT_SUPPORTED


class TokenFile:
    """One client's bearer token, re-read when its file changes. A file that turns unreadable or empty
    authenticates no one until it is fixed (the last token is not kept: a removed token is revoked)."""

    def __init__(self, client: str, path: Path) -> None:
        self.client, self.path = client, path
        self._stamp: tuple[int, int, int] | None = None
        self._value = b""
        self._reads = 0
        self.value()
        if not self._value:  # at start-up a missing token file is a configuration error
            read_secret(path)

    def value(self) -> bytes:
        """The token now (one stat per call; the file is read only when its stamp changed)."""
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                self._value = read_secret(self.path).encode()
                if self._reads:
                    LOG.info("stow.token_reloaded", client=self.client)
                self._stamp, self._reads = stamp, self._reads + 1
        except (OSError, SecretError) as exc:
            if self._stamp is not None or self._value:
                LOG.warning("stow.token_unavailable", client=self.client, error=type(exc).__name__)
            self._stamp, self._value = None, b""
        return self._value


class StowReceiver:
    """The request handler with its dependencies passed in: intake, settings and the client tokens."""

    def __init__(self, settings: StowSettings, intake: Intake, resolve: Callable[[Path], Path]) -> None:
        self.settings = settings
        self.intake = intake
        self.tokens = {
            c.name: TokenFile(c.name, resolve(c.token_file))
            for c in settings.clients
            if c.token_file is not None
        }
        self.cns = {c.certificate_cn: c.name for c in settings.clients if c.certificate_cn is not None}
        self.sources = {c.name: Source(c.name, c.networks) for c in settings.clients}

    def client_name(self, request: Request, peer: str) -> str:
        """The allowed client that made this request (credential, then its networks, as for AE titles);
        raises :class:`Refused` (401/403) otherwise."""
        if not self.settings.clients:
            return "STOW"
        name = self._identify(request)
        if not self.sources[name].allows(name, peer):
            raise Refused(403, "network-not-allowed")
        return name

    def _identify(self, request: Request) -> str:
        cn = request.scope.get("state", {}).get(PEER_CN)
        if cn and cn in self.cns:
            return self.cns[cn]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            for name, token_file in self.tokens.items():
                expected = token_file.value()
                if expected and hmac.compare_digest(token.strip().encode(), expected):
                    return name
            raise Refused(401, "wrong-token")
        raise Refused(403 if cn else 401, "certificate-not-allowed" if cn else "no-credentials")

    async def store(self, request: Request) -> Response:
        started = time.perf_counter()
        peer = request.client.host if request.client else "?"
        client, result, size = "-", StowResult(), 0
        try:
            client = self.client_name(request, peer)
            boundary = boundary_of(request.headers.get("content-type", ""))
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.settings.max_request_bytes:
                raise Refused(413, "request-too-large")  # before reading a byte of the body
            size = await self._receive(request, boundary, Caller(client, peer), result)
            response: Response = JSONResponse(
                result.body(), status_code=result.http_status(), media_type=DICOM_JSON
            )
            reason = "ok" if result.outcomes else "no-instances"
        except Refused as exc:
            response, reason = self._refusal(exc, result), exc.reason
        STOW_REQUESTS.labels(status=str(response.status_code), reason=reason).inc()
        LOG.info(
            "stow.request",
            client=client,
            peer_ip=peer,
            http_status=response.status_code,
            reason=reason,
            stored=result.stored,
            failed=len(result.outcomes) - result.stored,
            bytes=size,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return response

    def _refusal(self, exc: Refused, result: StowResult) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="vera-gateway"'} if exc.status == 401 else {}
        if exc.status == 408:
            headers["Connection"] = "close"  # uvicorn closes the connection and frees its slot
        body = {"error": exc.reason, **result.body()}  # instances stored before the refusal stay stored
        return JSONResponse(body, status_code=exc.status, headers=headers, media_type=DICOM_JSON)

    async def _receive(self, request: Request, boundary: bytes, caller: Caller, result: StowResult) -> int:
        collector = PartCollector(self.settings.max_instance_bytes)
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        study = request.path_params.get("study", "")
        size = 0
        async for chunk in _stream(request, BodyClock(self.settings)):
            size += len(chunk)
            if size > self.settings.max_request_bytes:
                raise Refused(413, "request-too-large")
            try:
                parser.write(chunk)
            except MultipartParseError:
                raise Refused(400, "malformed-multipart") from None
            while collector.done:
                headers, data = collector.done.pop(0)
                outcome = await run_in_threadpool(self._store_part, headers, data, study, caller)
                result.outcomes.append(outcome)
        if not collector.finished:
            raise Refused(400, "truncated-multipart")
        return size

    def _store_part(
        self, headers: dict[str, str], data: bytes, study: str, caller: Caller
    ) -> tuple[str, str, int]:
        kind = media_type_params(headers.get("content-type", "application/dicom"))[0]
        if kind != "application/dicom":
            raise Refused(415, "part-not-application-dicom")
        try:  # the file meta plays the C-STORE request's part: the intake checks the dataset against it
            ds = dcmread(BytesIO(data), stop_before_pixels=True, specific_tags=HEADER_TAGS)
            meta = ds.file_meta
            cls = str(meta.get("MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
            uid = str(meta.get("MediaStorageSOPInstanceUID", "") or ds.get("SOPInstanceUID", ""))
            syntax, study_uid = str(meta.get("TransferSyntaxUID", "")), str(ds.get("StudyInstanceUID", ""))
        except Exception:  # undecodable: the intake answers 0xC210 and quarantines it
            cls, uid, syntax, study_uid = "", "", "", study
        if cls and (refusal := supported(cls, syntax)):
            return cls, uid, refusal
        if study and study_uid and study_uid != study:
            return cls, uid, STUDY_MISMATCH
        try:
            status = self.intake.receive(StoreRequest(data, cls, uid, caller))
        except Exception as exc:  # a decider may not fail open: the sender retries later
            LOG.error("stow.store_failed", error=type(exc).__name__)
            status = OUT_OF_RESOURCES
        return cls, uid, status


async def _stream(request: Request, clock: BodyClock) -> AsyncIterator[bytes]:
    chunks, received = request.stream().__aiter__(), 0
    while True:
        budget, reason = clock.budget(received)
        waiting_since = time.monotonic()
        try:
            async with asyncio.timeout(max(budget, 0.0)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:  # instances completed before stay stored
            raise Refused(408, reason) from None
        except ClientDisconnect:  # instances completed before stay stored; the sender retries the rest
            raise Refused(400, "client-disconnected") from None
        finally:
            clock.waited += time.monotonic() - waiting_since
        received += len(chunk)
        yield chunk


def build_app(receiver: StowReceiver) -> Starlette:
    routes = [
        Route("/studies", receiver.store, methods=["POST"]),
        Route("/studies/{study}", receiver.store, methods=["POST"]),
    ]
    return Starlette(routes=routes)


class _LingeringTransport:
    """The connection's transport, closed in stages (RFC 9112 section 9.6): ``close()`` sends the response's
    end (FIN) at once and closes the socket ``LINGER_S`` later or when the client closes. Closing outright
    while a client still sends (a trickling body answered 408) makes the kernel answer its next bytes with a
    TCP reset, and a reset can destroy the 408 in the client's buffer before it is read."""

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._loop = loop
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def is_closing(self) -> bool:
        return self.lingering or self._inner.is_closing()

    def close(self) -> None:
        if self.is_closing():
            return
        if not self._inner.can_write_eof():  # TLS: no half-close
            self._inner.close()
            return
        self.lingering = True
        self._inner.write_eof()  # after what is still buffered
        self._loop.call_later(LINGER_S, self._inner.close)

    def close_now(self) -> None:
        self._inner.close()


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol that passes the verified client certificate's subject CN to the app, never
    writes uvicorn's access log (its lines carry the request path), and closes a connection whose next
    request line and headers have not all arrived ``header_timeout_s`` after it opened or after its last
    response (uvicorn counts open connections against ``limit_concurrency`` and has no such deadline)."""

    header_timeout_s = 10.0  # set per server by :func:`protocol_for`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False

    def _arm_header_deadline(self) -> None:
        self.loop.call_later(self.header_timeout_s, self._header_deadline, self.cycle)

    def _header_deadline(self, cycle_then: object) -> None:
        if self.cycle is not cycle_then or self.transport.is_closing():
            return  # a request arrived in time, or the connection is already going
        if self.cycle is not None and not self.conn.trailing_data[0]:
            self.transport.close()  # an idle keep-alive connection: nothing to report
            return
        peer = self.transport.get_extra_info("peername")
        STOW_REQUESTS.labels(status="408", reason="header-timeout").inc()
        LOG.info(
            "stow.request",
            client="-",
            peer_ip=peer[0] if peer else "?",
            http_status=408,
            reason="header-timeout",
            stored=0,
            failed=0,
            bytes=0,
        )
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if not self.transport.lingering:  # a closing connection's late bytes are dropped
            super().data_received(data)

    def eof_received(self) -> None:
        if self.transport.lingering:
            self.transport.close_now()  # the client closed too: nothing left to wait for
            return
        super().eof_received()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_LingeringTransport(transport, self.loop))  # type: ignore[arg-type]
        ssl_object = transport.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        cn = next((v for rdn in (cert or {}).get("subject", ()) for k, v in rdn if k == "commonName"), None)
        self.app_state = {**self.app_state, PEER_CN: cn}
        self._arm_header_deadline()


def protocol_for(settings: StowSettings) -> type[_Protocol]:
    return type("StowProtocol", (_Protocol,), {"header_timeout_s": settings.header_timeout_s})


class StowServer:
    """uvicorn in a background thread; :meth:`start` returns once it listens."""

    def __init__(self, settings: StowSettings, intake: Intake, resolve: Callable[[Path], Path]) -> None:
        self.settings = settings
        app = build_app(StowReceiver(settings, intake, resolve))
        config = uvicorn.Config(
            app,
            host=settings.bind,
            port=settings.port,
            http=protocol_for(settings),
            lifespan="off",
            log_config=None,
            access_log=False,
            # uvicorn counts the connection that asks too: N + 1 lets exactly N requests run
            limit_concurrency=settings.max_concurrent_requests + 1,
            timeout_keep_alive=5,
        )
        config.load()
        if settings.tls is not None:
            t = settings.tls
            ca = resolve(t.ca_bundle) if t.ca_bundle is not None else None
            tls = TlsSettings(resolve(t.certificate), resolve(t.private_key), ca, t.require_peer_certificate)
            config.ssl = server_context(tls)  # the same BCP 195 hardening as the DICOM TLS listener
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="stow", daemon=True)

    def start(self, timeout_s: float = 15.0) -> StowServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                where = f"{self.settings.bind}:{self.settings.port}"
                raise RuntimeError(f"STOW-RS receiver did not start on {where}")
            time.sleep(0.01)
        LOG.info("stow.listening", bind=self.settings.bind, port=self.port, tls=self.settings.tls is not None)
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
