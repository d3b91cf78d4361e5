"""Cluster fixtures: one PostgreSQL server per session (a fresh database per test) and one S3 endpoint.

- ``postgres`` (session): a :class:`tests.services.Postgres` on a free loopback port.
- ``pg_url``: the URL of a new, empty database on it.
- ``s3`` (session): a running :class:`tests.services.S3Server`; ``bucket``: a new bucket name on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.conftest import free_port
from tests.services import Postgres, S3Server

_BUCKETS = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres(free_port()).init()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(postgres: Postgres) -> str:
    return postgres.create_database()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = S3Server(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.create_bucket(f"vera-test-{next(_BUCKETS)}")
