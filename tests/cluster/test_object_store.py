"""The S3 object store against moto's server: content-addressed round trips, the config's choice, retention.
(A receiver answering 0xA700 while the store is down: tests/cluster/test_node.py.)"""

from __future__ import annotations

from pathlib import Path

from gateway.core.config import GatewayConfig, ObjectStoreSettings
from gateway.core.objectstore import S3Store, open_store
from gateway.core.spool import ContentStore, sha256_hex
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
