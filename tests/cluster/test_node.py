"""Cluster nodes: they follow an edited rule file without a restart, and one node with ``--role all`` does
every part of the work (receive, run jobs in a worker thread, forward); while the object store is down its
receiver answers 0xA700 and acknowledges nothing, and once the store is back everything flows. A receiving
node with ``stow:`` runs STOW-RS into the bucket and the shared ledger; a node with ``console:`` serves the
console on the cluster's ledger."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cluster.node import ClusterNode, Role, rules_source
from gateway.console.settings import ConsoleConfig
from gateway.console.users import write_user
from gateway.core.config import GatewayConfig, ObjectStoreSettings, StowSettings
from gateway.core.destinations.dicomweb import MultipartBody
from gateway.core.ledger import InstanceState
from gateway.core.ledger.postgres import PostgresLedger
from gateway.core.objectstore import S3Store
from gateway.ops.admin import Role as AdminRole
from tests.cluster.nodes import RULES, wait_until
from tests.conftest import DCMTK_ENV, Study, free_port, make_small_sc, write_study
from tests.console.conftest import CSRF, FAST_HASHER, PASSWORDS, received
from tests.services import S3Server


def test_rules_source_hot_reloads_an_edited_rule_file(tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES.format(aet="PACS_A", port=104))
    rules = rules_source(GatewayConfig(data_dir=tmp_path, rules_file=rules_file))
    assert rules().destinations["pacs"].ae_title == "PACS_A"
    rules_file.write_text(RULES.format(aet="PACS_B", port=104))
    os.utime(rules_file, (rules_file.stat().st_atime, rules_file.stat().st_mtime + 5))
    wait_until(lambda: rules().destinations["pacs"].ae_title == "PACS_B", 5)  # polled at most once a second


def storescu(port: int, files: list[Path]) -> subprocess.CompletedProcess[str]:
    cmd = ["/usr/bin/storescu", "-v", "-xy", "-aec", "VERA_GW", "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, env=DCMTK_ENV, timeout=60)


@pytest.mark.integration
def test_one_node_with_role_all_answers_a700_while_the_store_is_down_then_everything_flows(
    tmp_path: Path, pg_url: str, s3: S3Server, bucket: str, orthanc: Any
) -> None:
    pacs = orthanc()
    (tmp_path / "rules.yaml").write_text(RULES.format(aet=pacs.aet, port=pacs.dicom_port))
    store = ObjectStoreSettings(bucket=bucket, endpoint_url=s3.endpoint, connect_timeout_s=1, max_attempts=1)
    config = GatewayConfig(
        data_dir=tmp_path / "node", port=free_port(), metrics_port=None, ledger=pg_url, object_store=store,
        rules_file=tmp_path / "rules.yaml", quiet_period_s=0.3, poll_interval_s=0.1,
    )  # fmt: skip
    files = write_study(tmp_path / "in", [make_small_sc(study=Study(), number=n, side=16) for n in (1, 2, 3)])
    node = ClusterNode(config, Role.ALL).start()
    try:
        s3.stop()
        try:
            refused = storescu(config.port, files[:1])
        finally:
            s3.start()
        assert "Refused: OutOfResources" in refused.stderr  # 0xA700
        assert node.ledger.instances() == []  # nothing acknowledged, nothing recorded
        accepted = storescu(config.port, files)
        assert accepted.returncode == 0 and "Refused" not in accepted.stderr
        wait_until(lambda: len(pacs.instances()) == 3, 60, 0.3)
        wait_until(lambda: {i.state for i in node.ledger.instances()} == {InstanceState.FORWARDED}, 30)
        assert len(node.ledger.instances()) == 3
    finally:
        node.stop()
    assert not any(t.is_alive() for t in node.threads)  # the worker thread stops with the node


def cluster_config(tmp_path: Path, pg_url: str, s3: S3Server, bucket: str, **extra: Any) -> GatewayConfig:
    store = ObjectStoreSettings(bucket=bucket, endpoint_url=s3.endpoint, connect_timeout_s=1, max_attempts=1)
    (tmp_path / "rules.yaml").write_text(RULES.format(aet="PACS", port=free_port()))
    return GatewayConfig(
        data_dir=tmp_path / "node", port=free_port(), metrics_port=None, ledger=pg_url, object_store=store,
        rules_file=tmp_path / "rules.yaml", quiet_period_s=60, **extra,
    )  # fmt: skip


def test_a_receive_node_with_stow_stores_into_the_bucket_and_the_shared_ledger(
    tmp_path: Path, pg_url: str, s3: S3Server, bucket: str
) -> None:
    config = cluster_config(tmp_path, pg_url, s3, bucket, stow=StowSettings(port=0))
    files = write_study(tmp_path / "in", [make_small_sc(study=Study(), number=n, side=16) for n in (1, 2)])
    node = ClusterNode(config, Role.RECEIVE).start()
    try:
        body = MultipartBody(files)
        url = f"http://127.0.0.1:{node.stow.port}/studies"
        response = httpx.post(
            url, content=b"".join(body), headers={"Content-Type": body.content_type}, timeout=30
        )
        assert response.status_code == 200, response.text[:300]
        rows = node.ledger.instances()
        stored = S3Store(config.object_store, "spool").relpaths()  # type: ignore[arg-type]
        assert len(rows) == 2 and stored == {f"{r.sha256[:2]}/{r.sha256}.dcm" for r in rows}
        assert node.health()["stow"]
    finally:
        node.stop()
    assert not node.stow.thread.is_alive()


def test_the_console_on_a_forward_node_shows_what_another_node_received(
    tmp_path: Path, pg_url: str, s3: S3Server, bucket: str
) -> None:
    config = cluster_config(tmp_path, pg_url, s3, bucket, console=ConsoleConfig(port=0))
    config.data_dir.mkdir(parents=True)
    users = config.resolve(config.console.users_file)  # type: ignore[union-attr]
    write_user(users, "alice", AdminRole.ADMIN, PASSWORDS["alice"], FAST_HASHER)
    node = ClusterNode(config, Role.FORWARD).start()
    receiver = PostgresLedger(pg_url)  # a receiver on another machine records a study
    try:
        receiver.record_received(received(7, study="cluster-study-key-7"))
        assert receiver.group_received()  # its coordinator made a study job of it
        with httpx.Client(base_url=node.console.url, timeout=10) as client:
            token = CSRF.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
            login = client.post(
                "/login", data={"username": "alice", "password": PASSWORDS["alice"], "csrf_token": token}
            )
            assert login.status_code == 303
            page = client.get("/studies")
        assert page.status_code == 200 and "cluster-study-key-7"[:16] in page.text
        assert node.health()["console"]
    finally:
        receiver.shutdown()
        node.stop()
