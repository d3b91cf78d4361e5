"""Console fixtures: a real ledger filled through the ledger's own transitions, users with argon2 hashes, and
Starlette TestClients logged in as ``admin`` or ``viewer``.

- ``filled_ledger(config)``: one forwarded instance (job 1) and one quarantined "no face" instance (job 2).
- fixture ``console``: a :class:`ConsoleEnv` (config, ledger, admin service, app) with ``client(user)``.
- ``login(client, user, password)`` posts the login form with the page's CSRF token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from dicom_rules import default_rules
from gateway.console.app import create_app
from gateway.console.users import write_user
from gateway.core.config import GatewayConfig, load_config
from gateway.core.ledger import (
    Deidentified,
    Forwarded,
    JobRun,
    Ledger,
    Quarantined,
    ReceivedInstance,
    open_ledger,
)
from gateway.ops.admin import AdminService, Role

PASSWORDS = {"alice": "alice-admin-pw", "victor": "victor-viewer-pw"}
SECRET = b"s" * 32
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # tests only: argon2id, cheap
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def received(n: int, study: str = "study-key-1", patient: str = "pseudo-patient-1") -> ReceivedInstance:
    return ReceivedInstance(
        f"sop-key-{n}",
        study,
        patient,
        "1.2.840.10008.5.1.4.1.1.77.1.4",
        "1.2.840.10008.1.2.4.50",
        f"{n:064x}",
        f"ab/{n}.dcm",
        1000 + n,
        "HOSP_PACS",
        "127.0.0.1",
    )


def _run_next_job(ledger: Ledger) -> JobRun:
    ledger.group_received()
    (job,) = ledger.ready_jobs(quiet_s=0, max_wait_s=0)
    run = ledger.start_job(job)
    assert run is not None
    return run


def filled_ledger(ledger: Ledger) -> dict[str, int]:
    """Job 1: one forwarded instance. Job 2 (another study): one instance quarantined for no face."""
    ok = ledger.record_received(received(1)).instance_id
    ledger.finish_job(_run_next_job(ledger), [Deidentified(ok, "research", "o/1.dcm", "2.25.1")])
    (output,) = ledger.due_outputs()
    ledger.record_forwarding([Forwarded(output)])
    bad = ledger.record_received(received(2, "study-key-2", "pseudo-patient-2")).instance_id
    ledger.finish_job(_run_next_job(ledger), [Quarantined(bad, "pixels:no face found")])
    return {"forwarded": ok, "quarantined": bad, "item": ledger.quarantine_items()[0].id}


@dataclass
class ConsoleEnv:
    config: GatewayConfig
    ledger: Ledger
    admin: AdminService
    app: Any
    ids: dict[str, int]
    clients: list[TestClient] = field(default_factory=list)

    def client(self, user: str | None = None, address: str = "testclient") -> TestClient:
        client = TestClient(self.app, client=(address, 50000), follow_redirects=False)
        self.clients.append(client)
        if user is not None:
            response = login(client, user, PASSWORDS[user])
            assert response.status_code == 303, response.text
        return client


def csrf_of(client: TestClient, path: str = "/login") -> str:
    match = CSRF.search(client.get(path).text)
    assert match is not None
    return match.group(1)


def login(client: TestClient, user: str, password: str) -> Any:
    token = csrf_of(client)
    return client.post("/login", data={"username": user, "password": password, "csrf_token": token})


def make_env(tmp_path: Path, rules_file: Path | None = None, **console: Any) -> ConsoleEnv:
    config = load_config(
        None, data_dir=tmp_path / "gw", rules_file=rules_file, console={"port": 0, **console}
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    users = config.resolve(config.console.users_file)  # type: ignore[union-attr]
    write_user(users, "alice", Role.ADMIN, PASSWORDS["alice"], FAST_HASHER)
    write_user(users, "victor", Role.VIEWER, PASSWORDS["victor"], FAST_HASHER)
    ledger = open_ledger(config)
    rules = None if rules_file else (lambda: default_rules())
    admin = AdminService(config, ledger, rules)  # creates the trail triggers, as the scheduler does at start
    ids = filled_ledger(ledger)
    app = create_app(admin, config.console, SECRET, users)  # type: ignore[arg-type]
    return ConsoleEnv(config, ledger, admin, app, ids)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleEnv]:
    env = make_env(tmp_path)
    yield env
    for client in env.clients:
        client.close()
    env.ledger.close()
