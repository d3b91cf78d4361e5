"""DICOMweb destination: STOW-RS (PS3.18 §10.5) of de-identified instances, one POST per study.

The body is ``multipart/related; type="application/dicom"`` streamed from the outbox files with a declared
Content-Length (no chunked encoding, no whole batch in memory). The outcome of every instance comes from
the STOW response: listed in FailedSOPSequence → failed with its FailureReason; HTTP 200 → stored; HTTP 202
→ stored only when listed in ReferencedSOPSequence; any other answer or a transport error → failed. The
forwarder retries failures with the same back-off, breaker and give-up as C-STORE failures. Deterministic
output UIDs make a re-send idempotent at the archive.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
from pydicom import dcmread

from dicom_rules.decision import DicomWebDestination
from gateway.core.config import GatewayConfig
from gateway.core.destinations import OutboundFile, SendResult, register
from gateway.core.destinations.webauth import SecretError, http_auth, https_context

DICOM_JSON = "application/dicom+json"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
CHUNK = 1 << 20
QIDO_OK = (200, 204)
# QIDO-RS not offered at this URL: a STOW-only endpoint (or a gateway in front of one) may still take POSTs
QIDO_NOT_OFFERED = (400, 404, 405, 406, 501)


@dataclass
class StowOutcome:
    """What a STOW-RS response says: stored SOP Instance UIDs and failed ones with their reason code."""

    referenced: set[str] = field(default_factory=set)
    failed: dict[str, int | None] = field(default_factory=dict)


def parse_stow_response(content_type: str, body: bytes) -> StowOutcome:
    """DICOM JSON (PS3.18 F.2) or DICOM XML (PS3.19 A.1); an unparsable or empty body lists nothing."""
    if not body.strip():
        return StowOutcome()
    try:
        if "xml" in content_type:
            return _parse_xml(body)
        return _parse_json(json.loads(body))
    except (ValueError, ElementTree.ParseError, TypeError, AttributeError):
        return StowOutcome()


def _parse_json(data: Any) -> StowOutcome:
    if isinstance(data, list):
        data = data[0] if data else {}
    outcome = StowOutcome()
    for item in data.get(REFERENCED_SOP_SEQUENCE, {}).get("Value", []):
        outcome.referenced.update(map(str, item.get(REFERENCED_SOP_INSTANCE_UID, {}).get("Value", [])))
    for item in data.get(FAILED_SOP_SEQUENCE, {}).get("Value", []):
        reasons = item.get(FAILURE_REASON, {}).get("Value", [None])
        for uid in item.get(REFERENCED_SOP_INSTANCE_UID, {}).get("Value", []):
            outcome.failed[str(uid)] = int(reasons[0]) if reasons and reasons[0] is not None else None
    return outcome


def _parse_xml(body: bytes) -> StowOutcome:
    root = ElementTree.fromstring(body)
    outcome = StowOutcome()

    def values(item: ElementTree.Element, tag: str) -> list[str]:
        attributes = item.findall(f"DicomAttribute[@tag='{tag}']")
        return [v.text or "" for a in attributes for v in a.findall("Value")]

    for seq, failed in ((REFERENCED_SOP_SEQUENCE, False), (FAILED_SOP_SEQUENCE, True)):
        for item in root.findall(f"DicomAttribute[@tag='{seq}']/Item"):
            for uid in values(item, REFERENCED_SOP_INSTANCE_UID):
                if failed:
                    reasons = values(item, FAILURE_REASON)
                    outcome.failed[uid] = int(reasons[0]) if reasons and reasons[0] else None
                else:
                    outcome.referenced.add(uid)
    return outcome


def results_for(status: int, outcome: StowOutcome, files: Sequence[OutboundFile]) -> list[SendResult]:
    results = []
    for f in files:
        if f.out_sop_uid in outcome.failed:
            code = outcome.failed[f.out_sop_uid]
            reason = f"stow:0x{code:04X}" if code is not None else f"stow-failed:http-{status}"
            results.append(SendResult(f.instance_id, False, reason))
        elif status == 200 or (status == 202 and f.out_sop_uid in outcome.referenced):
            results.append(SendResult(f.instance_id, True))
        elif status == 202:
            results.append(SendResult(f.instance_id, False, "stow-not-acknowledged"))
        else:
            results.append(SendResult(f.instance_id, False, f"http:{status}"))
    return results


class MultipartBody:
    """A multipart/related STOW-RS body over files on disk: exact length first, then streamed parts."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.boundary = uuid.uuid4().hex
        self.paths = list(paths)
        self.sizes = [p.stat().st_size for p in self.paths]

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="application/dicom"; boundary={self.boundary}'

    def _head(self, size: int) -> bytes:
        head = f"--{self.boundary}\r\nContent-Type: application/dicom\r\nContent-Length: {size}\r\n\r\n"
        return head.encode()

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def __len__(self) -> int:
        return sum(len(self._head(s)) + s + 2 for s in self.sizes) + len(self._tail())

    def __iter__(self) -> Iterator[bytes]:
        for path, size in zip(self.paths, self.sizes, strict=True):
            yield self._head(size)
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    yield chunk
            yield b"\r\n"
        yield self._tail()


def study_of(path: Path) -> str:
    ds = dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
    return str(ds.StudyInstanceUID)


class DicomWebSender:
    def __init__(self, destination: DicomWebDestination, config: GatewayConfig) -> None:
        self.destination = destination
        self.config = config

    def _client(self) -> httpx.Client:
        verify = https_context(self.destination.tls)
        timeout = httpx.Timeout(self.destination.timeout_s, connect=self.config.forward.connect_timeout_s)
        auth = http_auth(self.destination.auth, self.destination.tls, self.destination.timeout_s)
        return httpx.Client(verify=verify, timeout=timeout, auth=auth, follow_redirects=False)

    def send(self, files: Sequence[OutboundFile]) -> list[SendResult]:
        """One STOW-RS request per study; one result per file."""
        results: list[SendResult] = []
        studies: dict[str, list[OutboundFile]] = defaultdict(list)
        for f in files:
            try:
                studies[study_of(f.path)].append(f)
            except Exception as exc:  # missing or corrupt outbox file: this file fails alone
                results.append(SendResult(f.instance_id, False, f"outbox-unreadable:{type(exc).__name__}"))
        if not studies:
            return results
        try:
            client = self._client()
        except (OSError, ValueError) as exc:  # CA bundle or client certificate does not load
            return results + [SendResult(f.instance_id, False, f"tls:{type(exc).__name__}") for f in files]
        with client:
            for group in studies.values():
                results += self._stow(client, group)
        return results

    def _stow(self, client: httpx.Client, files: Sequence[OutboundFile]) -> list[SendResult]:
        try:
            body = MultipartBody([f.path for f in files])
            response = client.post(
                f"{self.destination.url}/studies",
                content=iter(body),
                headers={
                    "Content-Type": body.content_type,
                    "Content-Length": str(len(body)),
                    "Accept": DICOM_JSON,
                },
            )
        except SecretError:
            return [SendResult(f.instance_id, False, "auth-secret-unavailable") for f in files]
        except (httpx.HTTPError, OSError) as exc:
            return [SendResult(f.instance_id, False, f"http:{type(exc).__name__}") for f in files]
        outcome = parse_stow_response(response.headers.get("content-type", ""), response.content)
        return results_for(response.status_code, outcome, files)

    def probe(self) -> tuple[bool, str]:
        """QIDO-RS ``GET /studies?limit=1`` (auth and TLS as for STOW); where the archive does not offer
        QIDO-RS there, ``OPTIONS /studies`` must allow POST instead. (ok, what happened)."""
        started = time.perf_counter()
        studies = f"{self.destination.url}/studies"
        try:
            with self._client() as client:
                qido = client.get(studies, params={"limit": "1"}, headers={"Accept": DICOM_JSON})
                if qido.status_code not in QIDO_NOT_OFFERED:
                    took = (time.perf_counter() - started) * 1000
                    return qido.status_code in QIDO_OK, qido_detail(qido, took)
                options = client.options(studies)
        except SecretError as exc:
            return False, str(exc)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return options_verdict(qido.status_code, options)

    def echo(self) -> bool:
        return self.probe()[0]


def qido_detail(response: httpx.Response, took_ms: float) -> str:
    """What a QIDO-RS answer means for sending, in words an operator can act on."""
    status = response.status_code
    said = f"QIDO-RS HTTP {status} in {took_ms:.0f} ms"
    if status in QIDO_OK:
        return said
    if status == 401:
        return f"{said}: the archive did not accept our credentials (auth and its secret file)"
    if status == 403:
        return f"{said}: the archive knows us but refuses this account (its permissions)"
    if 300 <= status < 400:
        return f"{said}: redirected to {response.headers.get('location', '?')}; set url to the final address"
    if status >= 500:
        return f"{said}: the archive failed (server error); try again later or ask its administrator"
    return f"{said}: unexpected answer"


def options_verdict(qido_status: int, options: httpx.Response) -> tuple[bool, str]:
    """After QIDO-RS was not offered: does ``OPTIONS /studies`` say STOW-RS (POST) is?"""
    said = f"QIDO-RS HTTP {qido_status} (not offered here), OPTIONS /studies HTTP {options.status_code}"
    if not 200 <= options.status_code < 300:
        return False, f"{said}: neither answers; is url the DICOMweb base (the part before /studies)?"
    allow = options.headers.get("allow")
    if allow is None:
        return True, f"{said} (no Allow header): the endpoint is there; a first send will prove STOW-RS"
    if "POST" not in {m.strip().upper() for m in allow.split(",")}:
        return False, f"{said}: Allow: {allow} has no POST, so STOW-RS is not offered at this url"
    return True, f"{said}, Allow: {allow}: STOW-RS reachable"


@register(DicomWebDestination)
def make_dicomweb_sender(destination: DicomWebDestination, config: GatewayConfig) -> DicomWebSender:
    return DicomWebSender(destination, config)
