"""A gateway cluster on loopback for tests and bench/cluster.py: real `vera-gateway` processes (receivers,
workers, forwarder) sharing a PostgreSQL ledger and an S3 bucket, each in its own session so a test can
kill -9 it. Logs go to ``<root>/<name>.log`` (JSON lines)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import yaml

from tests.conftest import GatewaySubprocess, free_port

REPO = Path(__file__).resolve().parents[2]

RULES = """
version: 1
name: cluster-test
destinations:
  pacs:
    ae_title: {aet}
    host: 127.0.0.1
    port: {port}
routes:
  - name: catch-all
    pixels: {{mode: blank}}
    metadata: {{profile: basic}}
    to: pacs
"""


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not reached")


class Node(GatewaySubprocess):
    def __init__(self, root: Path, name: str, args: list[str], env: dict[str, str]) -> None:
        self.root, self.name, self.args, self.env = root, name, args, env
        self.log_path = root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, hold: str = "") -> Node:
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO), "VERA_GATEWAY_HOLD": hold}
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", *self.args],
                stdout=log,
                stderr=log,
                env=env,
                cwd=REPO,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


class Cluster:
    """Config + processes. ``object_store`` None: local folders (shared ``<root>/shared`` data dir)."""

    def __init__(
        self, root: Path, ledger_url: str, pacs: tuple[str, int], s3: tuple[str, str] | None, **settings: Any
    ) -> None:
        self.root = root
        self.ledger_url = ledger_url
        root.mkdir(parents=True, exist_ok=True)
        (root / "rules.yaml").write_text(RULES.format(aet=pacs[0], port=pacs[1]))
        config: dict[str, Any] = {
            "ledger": ledger_url,
            "rules_file": str(root / "rules.yaml"),
            "secret_file": str(root / "secret.key"),
            "metrics_port": None,
            "quiet_period_s": 0.5,
            "poll_interval_s": 0.1,
            "stall_after_s": 4.0,
            "worker_heartbeat_s": 1.0,
            "forward_lease_s": 30.0,
            "forward": {"backoff_initial_s": 0.2, "backoff_max_s": 1.0},
            **settings,
        }
        if s3 is not None:
            config["object_store"] = {
                "endpoint_url": s3[0],
                "bucket": s3[1],
                "connect_timeout_s": 1.0,
                "max_attempts": 1,
            }
        self.config_path = root / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.shared_store = s3 is not None
        self.nodes: dict[str, Node] = {}
        self.ports: dict[str, int] = {}

    def _node(self, name: str, *args: str, env: dict[str, str] | None = None) -> Node:
        data = self.root / (name if self.shared_store else "shared")  # no object store: one shared folder
        node = Node(
            self.root, name, ["--config", str(self.config_path), "--data-dir", str(data), *args], env or {}
        )
        self.nodes[name] = node
        return node

    def receiver(self, name: str, hold: str = "") -> Node:
        port = self.ports.setdefault(name, free_port())
        node = self._node(name, "serve", "--role", "receive", "--port", str(port)).start(hold)
        wait_until(lambda: node.events("node.started") or not node.alive(), 60)
        assert node.alive(), node.log_text()[-3000:]
        return node

    def forwarder(self, name: str = "forwarder") -> Node:
        node = self._node(name, "serve", "--role", "forward").start()
        wait_until(lambda: node.events("node.started") or not node.alive(), 60)
        assert node.alive(), node.log_text()[-3000:]
        return node

    def worker(self, name: str, hold: str = "", metrics: bool = False) -> Node:
        extra = (
            ["--metrics-port", str(self.ports.setdefault(f"{name}-metrics", free_port()))] if metrics else []
        )
        return self._node(name, "worker", "--queue", "gpu", *extra).start(hold)

    def wait_workers(self, count: int, timeout: float = 90) -> None:
        wait_until(
            lambda: self.sql("SELECT COUNT(*) AS n FROM procrastinate_workers")[0]["n"] >= count, timeout, 0.3
        )

    def sql(self, query: str, params: Any = ()) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        with psycopg.connect(self.ledger_url, row_factory=dict_row, connect_timeout=3) as conn:
            return list(conn.execute(query, params))

    def instance_states(self) -> dict[str, int]:
        try:
            rows = self.sql("SELECT state, COUNT(*) AS n FROM instances GROUP BY state")
        except psycopg.Error:
            return {}
        return {r["state"]: int(r["n"]) for r in rows}

    def stop(self) -> None:
        """Tear down: kill -9 every node (their data is thrown away; a graceful stop only costs time)."""
        for node in self.nodes.values():
            if node.alive():
                node.kill9()
