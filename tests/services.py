"""Real cluster services started by the test suite itself: PostgreSQL (initdb/pg_ctl in a temp dir) and an
S3 endpoint (moto's server on 127.0.0.1). No mocks: the gateway talks to them over TCP like in production.

PostgreSQL refuses to run as root; CI runs as root, so the server runs as Debian's ``postgres`` system user
(created by the ``postgresql`` package that scripts/setup.sh installs) in a directory outside pytest's
root-only tmp tree. As any other user it runs as that user. ``CI=true`` turns a missing binary into a
failure instead of a skip, so a broken setup cannot hide the PostgreSQL tests.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BINDIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
PG_USER = "vera"  # superuser name created by initdb (trust auth on loopback only)
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def missing(what: str) -> None:
    """Skip on a developer machine without the service; fail in CI, where setup.sh must provide it."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (scripts/setup.sh installs it)")
    pytest.skip(f"{what} is not installed")


class Postgres:
    """One PostgreSQL server in its own directory on a loopback port; ``restart()`` is a crash."""

    def __init__(self, port: int) -> None:
        if not PG_BINDIRS:
            missing("PostgreSQL (apt postgresql)")
        self.bindir = Path(PG_BINDIRS[-1])
        self.port = port
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="vera-pg-"))
        if self.run_as is not None:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.data = self.root / "data"
        self._databases = itertools.count(1)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as is not None:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120)

    def init(self) -> Postgres:
        # --no-sync and fsync=off: a crash of the *server process* (kill -9, -m immediate) still loses nothing
        # committed (the OS has the pages); only a machine crash would, and tests do not simulate that.
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", PG_USER, "--no-sync", "-E", "UTF8")
        return self.start()

    def start(self) -> Postgres:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200 -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-o", options, "start"
        )
        return self

    def stop(self, immediate: bool = False) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(
                "pg_ctl", "-D", str(self.data), "-w", "-m", "immediate" if immediate else "fast", "stop"
            )

    def restart(self, immediate: bool = True) -> None:
        self.stop(immediate=immediate)
        self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        self.stop(immediate=True)
        shutil.rmtree(self.root, ignore_errors=True)


class S3Server:
    """moto's S3 server in a thread of the test process (state survives stop/start on the same port)."""

    def __init__(self, port: int) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            missing("moto[server]")
        self.port = port
        self._factory = ThreadedMotoServer
        self._server: object | None = None
        os.environ.update({k: os.environ.get(k, v) for k, v in S3_ENV.items()})
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        server = self._factory(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None

    def create_bucket(self, name: str) -> str:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(Bucket=name)
        return name


# ---- fixtures (registered for every test folder by tests/conftest.py) ------------------------------------
_BUCKETS = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server per session on a free loopback port."""
    from tests.conftest import free_port

    server = Postgres(free_port()).init()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres.create_database()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """One S3 endpoint (moto) per session on a free loopback port."""
    from tests.conftest import free_port

    server = S3Server(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A new bucket on the session's S3 endpoint."""
    return s3.create_bucket(f"vera-test-{next(_BUCKETS)}")
