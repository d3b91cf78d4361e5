"""Serve the console with uvicorn in a daemon thread of the gateway process.

The listening socket is bound here, before the thread starts, so a bind error fails the service start and
``port`` is known at once (port 0 in tests). Off loopback the console speaks HTTPS only, with a context built
by :func:`gateway.ops.tls.server_context` from the console's certificate (or the DICOM TLS listener's).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from gateway.console.app import create_app
from gateway.ops.admin import AdminService
from gateway.ops.tls import TlsSettings, server_context

LOG = structlog.get_logger("gateway.console")


class ConsoleServer:
    def __init__(self, admin: AdminService, secret: bytes) -> None:
        config = admin.config
        assert config.console is not None
        self.settings = config.console
        self.tls = self._tls_files(admin)
        self.app = create_app(
            admin, self.settings, secret, config.resolve(self.settings.users_file), tls=self.tls is not None
        )
        self.sock: socket.socket | None = None
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @staticmethod
    def _tls_files(admin: AdminService) -> tuple[Path, Path] | None:
        config = admin.config
        console = config.console
        assert console is not None
        if console.tls is not None:
            return config.resolve(console.tls.certificate), config.resolve(console.tls.private_key)
        if not console.on_loopback and config.tls is not None:  # share the DICOM TLS listener's identity
            return config.resolve(config.tls.certificate), config.resolve(config.tls.private_key)
        return None

    @property
    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.settings.bind}:{self.port}"

    def start(self) -> ConsoleServer:
        family = socket.AF_INET6 if ":" in self.settings.bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.settings.bind, self.settings.port))
        sock.listen(128)
        sock.set_inheritable(True)
        self.sock = sock
        options: dict[str, Any] = {
            "log_config": None,
            "access_log": False,
            "lifespan": "off",
            "server_header": False,
        }
        if self.tls is not None:
            options.update(ssl_certfile=str(self.tls[0]), ssl_keyfile=str(self.tls[1]))
        config = uvicorn.Config(self.app, **options)
        config.load()
        if self.tls is not None:
            config.ssl = self._context()  # BCP 195 settings from gateway/ops/tls.py, not uvicorn's defaults
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="console-http", daemon=True)
        self.thread.start()
        LOG.info("console.started", url=self.url, tls=self.tls is not None)
        return self

    def _context(self) -> ssl.SSLContext:
        assert self.tls is not None
        return server_context(TlsSettings(self.tls[0], self.tls[1], None, False))

    def _run(self) -> None:
        assert self.server is not None and self.sock is not None
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.sock is not None:
            self.sock.close()
