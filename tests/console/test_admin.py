"""The admin service layer (shared by CLI and console) on a real SQLite ledger with an injected clock, the
console's config rules, its HTTPS listener, and ``vera-gateway console add-user``."""

from __future__ import annotations

import io
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.core.config import ConfigError, load_config
from gateway.core.ledger import Deidentified, Forwarded, Quarantined, open_ledger
from gateway.ops.admin import Actor, AdminService, InvalidInput, PermissionDenied, Role
from tests.console.conftest import received

ADMIN, VIEWER = Actor("alice", Role.ADMIN), Actor("victor", Role.VIEWER)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _service(tmp_path: Path, clock: Clock) -> tuple[AdminService, Any]:
    config = load_config(None, data_dir=tmp_path / "gw")
    ledger = open_ledger(config, clock=clock)
    return AdminService(config, ledger, clock=clock), ledger


def _run(ledger: Any, clock: Clock, step: float) -> Any:
    ledger.group_received()
    clock.now += step
    (job,) = ledger.ready_jobs(quiet_s=0, max_wait_s=0)
    return ledger.start_job(job)


def test_trail_records_every_transition_with_its_time_and_stage_durations(tmp_path: Path) -> None:
    clock = Clock()
    admin, ledger = _service(tmp_path, clock)
    iid = ledger.record_received(received(1)).instance_id
    run = _run(ledger, clock, 2.0)  # waited 2 s
    clock.now += 3.0  # processed in 3 s
    ledger.finish_job(run, [Deidentified(iid, "research", "o/1.dcm", "2.25.9")])
    clock.now += 0.5  # forwarded after 0.5 s
    (output,) = ledger.due_outputs()
    ledger.record_forwarding([Forwarded(output)])
    trail = admin.trail(run.job_id)
    assert trail is not None
    (inst,) = trail.instances
    assert [e.state for e in inst.events] == [
        "received",
        "grouped",
        "processing",
        "deidentified",
        "forwarded",
    ]
    assert inst.events[0].at == 1_000_000.0 and inst.events[-1].at == 1_000_005.5
    d = inst.durations
    assert (d.waiting, d.processing, d.forwarding, d.total) == (2.0, 3.0, 0.5, 5.5)
    assert inst.instance.out_uid_hash and "2.25.9" not in repr(inst)


def test_throughput_counts_forwarded_instances_per_bucket(tmp_path: Path) -> None:
    clock = Clock()
    admin, ledger = _service(tmp_path, clock)
    for n in range(3):
        iid = ledger.record_received(received(n, study=f"s{n}")).instance_id
        ledger.finish_job(
            _run(ledger, clock, 0.1), [Deidentified(iid, "research", f"o/{n}.dcm", f"2.25.{n}")]
        )
        (output,) = ledger.due_outputs()
        ledger.record_forwarding([Forwarded(output)])
        clock.now += 600  # ten minutes apart
    hour = admin.throughput("forwarded", 3600, 12)
    assert sum(hour.counts) == 3 and hour.counts.count(1) == 3 and hour.bucket_s == 300
    assert sum(admin.throughput("forwarded", 600, 12).counts) == 1
    overview = admin.overview()
    assert overview.queue_depth == 0 and sum(overview.day.counts) == 3
    assert [(d.destination, d.forwarded, d.backlog) for d, _ in overview.destinations] == [("research", 3, 0)]


def test_replay_and_discard_check_roles_and_write_the_audit_log(tmp_path: Path) -> None:
    clock = Clock()
    admin, ledger = _service(tmp_path, clock)
    ids = []
    for n in (1, 2):
        iid = ledger.record_received(received(n, study=f"s{n}")).instance_id
        ledger.finish_job(_run(ledger, clock, 0.1), [Quarantined(iid, "pixels:no-face-found")])
        ids.append(iid)
    first, second = (q.id for q in admin.quarantine())
    with pytest.raises(PermissionDenied):
        admin.replay(first, VIEWER, "trying")
    with pytest.raises(InvalidInput):
        admin.discard(second, ADMIN, "   ")
    assert admin.replay(first, ADMIN, "rule fixed") == "received"
    assert admin.discard(second, ADMIN, "not a research photo") == "dropped"
    with pytest.raises(LookupError):
        admin.discard(second, ADMIN, "again")
    assert admin.quarantine() == []
    log = [(a.actor, a.action, a.target, a.reason, a.outcome) for a in reversed(admin.audit_log())]
    assert log == [
        ("victor", "replay", f"quarantine:{first}", "trying", "denied"),
        ("alice", "replay", f"quarantine:{first}", "rule fixed", "instance received"),
        ("alice", "discard", f"quarantine:{second}", "not a research photo", "instance dropped"),
    ]
    dropped = ledger.instance(ids[1])
    assert dropped.state == "dropped" and dropped.reason == "discarded: not a research photo"
    assert admin.trail(2).job.state == "forwarded"  # type: ignore[union-attr]  # nothing left to send


def test_a_console_off_loopback_needs_tls(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"console\.bind is not loopback"):
        load_config(None, data_dir=tmp_path, console={"bind": "0.0.0.0"})
    cert = {"certificate": "c.pem", "private_key": "k.pem"}
    assert load_config(None, data_dir=tmp_path, console={"bind": "0.0.0.0", "tls": cert}).console is not None
    with pytest.raises(ConfigError):
        load_config(None, data_dir=tmp_path, console={"bind": "console.example.org"})


def test_console_serves_https_with_the_tls_material(tmp_path: Path) -> None:
    from gateway.console.server import ConsoleServer
    from tests.ops.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    tls = {"certificate": str(pki.server.certificate), "private_key": str(pki.server.private_key)}
    config = load_config(None, data_dir=tmp_path / "gw", console={"port": 0, "tls": tls})
    admin = AdminService(config, open_ledger(config))
    server = ConsoleServer(admin, b"k" * 32).start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        with urllib.request.urlopen(server.url + "/login", context=ctx, timeout=10) as response:
            assert response.status == 200
            assert "secure" in response.headers["set-cookie"].lower()
            assert "max-age" in response.headers["strict-transport-security"]
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP on the TLS port: refused
            urllib.request.urlopen(server.url.replace("https", "http") + "/login", timeout=10)
    finally:
        server.stop()


def test_add_user_writes_an_argon2id_hash_readable_by_the_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli import main as cli_main
    from gateway.console.users import UserStore

    users = tmp_path / "users.yaml"
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long passphrase\n"))
    args = ["console", "add-user", "alice", "--role", "admin", "--password-stdin", "--users-file", str(users)]
    assert cli_main(args) == 0
    assert "$argon2id$" in users.read_text() and "a long passphrase" not in users.read_text()
    assert users.stat().st_mode & 0o077 == 0
    store = UserStore(users)
    assert store.verify("alice", "a long passphrase").role is Role.ADMIN  # type: ignore[union-attr]
    assert store.verify("alice", "wrong") is None and store.verify("bob", "a long passphrase") is None
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert cli_main([*args[:3], "--password-stdin", "--users-file", str(users)]) == 1


def test_cli_status_reads_the_rule_file_bytes_without_loading_the_rules(tmp_path: Path) -> None:
    """No service holds a validated rule set for the CLI: `status` reports the file as it lies on disk (the
    sha256 of its bytes, as sha256sum prints), marked unchecked, even when the file would not validate."""
    import hashlib

    rules = tmp_path / "site.yaml"
    rules.write_text("name: site\nroutes:\n  - name: a\n  - name: b\nnot_a_key: 1\n")
    config = load_config(None, data_dir=tmp_path / "gw", rules_file=rules)
    status = AdminService(config, open_ledger(config)).rules_status()
    assert status.sha256 == hashlib.sha256(rules.read_bytes()).hexdigest()
    assert (status.name, status.routes, status.last_result) == ("site", 2, "unchecked")
    assert status.path == str(rules)
    default = AdminService(load_config(None, data_dir=tmp_path / "gw2"), open_ledger(config)).rules_status()
    assert Path(default.path).name == "default.yaml" and default.file == ""
    assert default.sha256 == hashlib.sha256(Path(default.path).read_bytes()).hexdigest()
