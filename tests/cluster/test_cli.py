"""`vera-gateway db|status|quarantine|doctor` against a cluster config (a real PostgreSQL), as an operator
runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from gateway.core.ledger import ReceivedInstance
from gateway.core.ledger.postgres import PostgresLedger

REPO = Path(__file__).resolve().parents[2]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "gateway.cli", "--config", str(config), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env={"PYTHONPATH": str(REPO)}
    )


def test_db_status_quarantine_and_doctor_work_against_the_cluster(tmp_path: Path, pg_url: str) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "node"), "ledger": pg_url}))
    assert cli(config, "db", "status").returncode == 1  # nothing applied yet
    upgraded = cli(config, "db", "upgrade")
    assert upgraded.returncode == 0 and (tmp_path / "node" / "secret.key").exists(), upgraded.stderr
    assert "missing none" in cli(config, "db", "status").stdout
    ledger = PostgresLedger(pg_url)
    ledger.heartbeat_node("receive", 0.0)
    ledger.record_received(
        ReceivedInstance("s", "st", "P", "1.2", "1.2", "ab" * 32, "ab/x.dcm", 1, "AE", "::1")
    )
    ledger.quarantine_received("undecodable:EOFError", "cd/y.bin", "MODALITY")
    status = cli(config, "status")
    assert status.returncode == 0, status.stderr
    assert "received" in status.stdout and ledger.node in status.stdout and "1 open item" in status.stdout
    studies = cli(config, "studies", "search")
    assert studies.returncode == 0, studies.stderr  # the console's queries run on PostgreSQL too
    trail = ledger.query("SELECT state FROM instance_events ORDER BY id")  # kept by a trigger, as on SQLite
    assert [r["state"] for r in trail] == ["received"]
    listed = cli(config, "quarantine", "list")
    assert listed.returncode == 0 and "undecodable:EOFError" in listed.stdout
    doctor = cli(config, "doctor", "--json")
    checks = {c["name"]: c["status"] for c in json.loads(doctor.stdout)}
    assert checks["postgresql"] == "ok" and checks["migrations"] == "ok" and checks["workers"] == "warn"
