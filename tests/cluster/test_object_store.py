"""The S3 object store against moto's server: content-addressed round trips, and a receiver that answers
0xA700 while the store is down (nothing acknowledged that is not stored) and Success once it is back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gateway.cluster.node import ClusterNode, Role
from gateway.core.config import GatewayConfig, ObjectStoreSettings
from gateway.core.objectstore import S3Store, open_store
from gateway.core.spool import ContentStore, sha256_hex
from tests.cluster.nodes import RULES
from tests.conftest import DCMTK_ENV, free_port, make_small_sc, write_study
from tests.services import S3Server


def settings(s3: S3Server, bucket: str) -> ObjectStoreSettings:
    return ObjectStoreSettings(bucket=bucket, endpoint_url=s3.endpoint, connect_timeout_s=1, max_attempts=1)


def test_put_is_content_addressed_and_reads_back(s3: S3Server, bucket: str) -> None:
    store = S3Store(settings(s3, bucket), "spool")
    stored = store.put(b"dicom bytes")
    assert stored.relpath == f"{stored.sha256[:2]}/{stored.sha256}.dcm" and stored.sha256 == sha256_hex(
        b"dicom bytes"
    )
    assert store.put(b"dicom bytes") == stored
    assert store.read(stored.relpath) == b"dicom bytes"
    assert store.relpaths() == {stored.relpath}
    assert S3Store(settings(s3, bucket), "outbox").relpaths() == set()  # areas do not mix
    store.discard(stored.relpath)
    assert not store.exists(stored.relpath)


def test_config_selects_the_store(tmp_path: Path, s3: S3Server, bucket: str) -> None:
    local = GatewayConfig(data_dir=tmp_path)
    assert isinstance(open_store(local, "spool"), ContentStore)
    remote = GatewayConfig(data_dir=tmp_path, object_store=settings(s3, bucket))
    assert isinstance(open_store(remote, "quarantine"), S3Store)


def storescu(port: int, files: list[Path]) -> subprocess.CompletedProcess[str]:
    cmd = ["/usr/bin/storescu", "-v", "-xy", "-aec", "VERA_GW", "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=DCMTK_ENV)


@pytest.mark.integration
def test_receiver_answers_a700_while_the_store_is_down_and_success_when_it_is_back(
    tmp_path: Path, pg_url: str, s3: S3Server, bucket: str
) -> None:
    (tmp_path / "rules.yaml").write_text(RULES.format(aet="PACS", port=free_port()))
    config = GatewayConfig(
        data_dir=tmp_path / "node",
        port=free_port(),
        metrics_port=None,
        ledger=pg_url,
        rules_file=tmp_path / "rules.yaml",
        object_store=settings(s3, bucket),
        quiet_period_s=60,
    )
    files = write_study(tmp_path / "in", [make_small_sc(number=1, side=16)])
    node = ClusterNode(config, Role.RECEIVE).start()
    try:
        s3.stop()
        try:
            refused = storescu(config.port, files)
        finally:
            s3.start()
        assert "refused: outofresources" in (refused.stdout + refused.stderr).lower()  # 0xA700
        assert node.ledger.instances() == []  # nothing acknowledged, nothing recorded
        accepted = storescu(config.port, files)
        assert accepted.returncode == 0 and "refused" not in accepted.stderr.lower()
        (row,) = node.ledger.query("SELECT spool_path, sha256 FROM instances")
        assert sha256_hex(S3Store(settings(s3, bucket), "spool").read(row["spool_path"])) == row["sha256"]
    finally:
        node.stop()


def test_retention_deletes_forwarded_objects_from_the_bucket(pg_url: str, s3: S3Server, bucket: str) -> None:
    from gateway.core.ledger import Deidentified, Forwarded, ReceivedInstance
    from gateway.core.ledger.postgres import PostgresLedger
    from gateway.core.service import purge_finished

    ledger = PostgresLedger(pg_url)
    spool, outbox = S3Store(settings(s3, bucket), "spool"), S3Store(settings(s3, bucket), "outbox")
    received, output = spool.put(b"as received"), outbox.put(b"de-identified")
    ledger.record_received(
        ReceivedInstance(
            "sop", "study", "P", "1.2", "1.2", received.sha256, received.relpath, 11, "AE", "::1"
        )
    )
    ledger.group_received()
    run = ledger.start_job(ledger.ready_jobs(quiet_s=0, max_wait_s=0)[0])
    assert run is not None
    ledger.finish_job(run, [Deidentified(run.instances[0].id, "pacs", output.relpath, "2.25.1")])
    ledger.record_forwarding([Forwarded(ledger.due_outputs()[0])])
    assert purge_finished(ledger, spool, outbox, before=ledger.clock() + 1) == 1
    assert spool.relpaths() == set() and outbox.relpaths() == set()
