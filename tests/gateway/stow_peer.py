"""A small STOW-RS peer we control (http.server on loopback): it answers what a test scripts (500, 409,
partial failure), checks bearer tokens, serves an OAuth2 token endpoint and records every request."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any

from pydicom import dcmread

Answer = Callable[[list[Any]], tuple[int, dict[str, Any] | None]]


def split_parts(content_type: str, body: bytes) -> list[bytes]:
    boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip('"').encode()
    chunks = body.split(b"--" + boundary)[1:-1]
    return [chunk.split(b"\r\n\r\n", 1)[1][:-2] for chunk in chunks]


def stow_body(referenced: list[Any], failed: list[tuple[Any, int]]) -> dict[str, Any]:
    def item(ds: Any, reason: int | None = None) -> dict[str, Any]:
        out = {
            "00081150": {"vr": "UI", "Value": [str(ds.SOPClassUID)]},
            "00081155": {"vr": "UI", "Value": [str(ds.SOPInstanceUID)]},
        }
        if reason is not None:
            out["00081197"] = {"vr": "US", "Value": [reason]}
        return out

    body: dict[str, Any] = {}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": [item(ds) for ds in referenced]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [item(ds, r) for ds, r in failed]}
    return body


def store_all(datasets: list[Any]) -> tuple[int, dict[str, Any] | None]:
    return 200, stow_body(datasets, [])


@dataclass
class StowPeer:
    answer: Answer = store_all
    bearer: str | None = None  # required Authorization: Bearer value
    basic: tuple[str, str] | None = None  # required HTTP Basic user and password
    client_secret: str = "oauth-secret"
    requests: list[list[Any]] = field(default_factory=list)  # datasets per STOW request
    token_requests: int = 0
    stored: dict[str, Any] = field(default_factory=dict)  # SOP Instance UID → dataset
    server: ThreadingHTTPServer | None = None
    qido_status: int = 200  # what GET (QIDO-RS) answers; 200 with an empty list
    allow: str | None = None  # OPTIONS answers 200 with this Allow header; None: no OPTIONS (501)
    options_requests: int = 0

    def start(self, ssl_context: ssl.SSLContext | None = None) -> StowPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def _authorized(self) -> bool:
                given = self.headers.get("Authorization")
                if peer.basic is not None:
                    pair = base64.b64encode(":".join(peer.basic).encode()).decode()
                    return given == f"Basic {pair}"
                return not peer.bearer or given == f"Bearer {peer.bearer}"

            def do_GET(self) -> None:
                if not self._authorized():
                    return self._reply(401)
                self._reply(peer.qido_status, [] if peer.qido_status == 200 else None)

            def do_OPTIONS(self) -> None:
                peer.options_requests += 1
                if peer.allow is None:
                    return self.send_error(501)
                self.send_response(200)
                self.send_header("Allow", peer.allow)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                body = self._body()
                if self.path == "/token":
                    return self._token()
                if not self._authorized():
                    return self._reply(401)
                parts = split_parts(self.headers["Content-Type"], body)
                datasets = [dcmread(BytesIO(p)) for p in parts]
                peer.requests.append(datasets)
                status, answer = peer.answer(datasets)
                stored = set()
                for item in (answer or {}).get("00081199", {}).get("Value", []):
                    stored.add(item["00081155"]["Value"][0])
                peer.stored.update(
                    {str(ds.SOPInstanceUID): ds for ds in datasets if str(ds.SOPInstanceUID) in stored}
                )
                self._reply(status, answer)

            def _token(self) -> None:
                peer.token_requests += 1
                expected = base64.b64encode(f"vera:{peer.client_secret}".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    return self._reply(401, {"error": "invalid_client"})
                peer.bearer = peer.bearer or "issued-token-1"
                self._reply(200, {"access_token": peer.bearer, "token_type": "Bearer", "expires_in": 3600})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
