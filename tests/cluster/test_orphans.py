"""Orphaned objects (PUT succeeded, no ledger row) against moto and PostgreSQL: counted after the grace
period, deleted after orphan_delete_after_s, and a key a row references never touched. Listing is paginated
(pages of 2 keys here) and time is injected, not waited for."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from gateway.cluster.orphans import OrphanReconciler
from gateway.core.config import ObjectStoreSettings
from gateway.core.ledger import ReceivedInstance
from gateway.core.ledger.postgres import PostgresLedger
from gateway.core.objectstore import S3Store
from tests.services import S3Server

GRACE, DELETE_AFTER = 3600.0, 7 * 86400.0


def orphans_gauge(area: str) -> float | None:
    return REGISTRY.get_sample_value("vera_gateway_object_orphans", {"area": area})


def receive(ledger: PostgresLedger, spool: S3Store, data: bytes) -> str:
    stored = spool.put(data)
    item = ReceivedInstance(
        f"sop-{stored.sha256[:8]}", "study", "P", "1.2", "1.2", stored.sha256, stored.relpath, 1, "AE", "::1"
    )
    assert ledger.record_received(item).instance_id
    return stored.relpath


def test_orphans_are_counted_after_the_grace_period_and_deleted_only_when_unreferenced(
    pg_url: str, s3: S3Server, bucket: str
) -> None:
    settings = ObjectStoreSettings(
        bucket=bucket, endpoint_url=s3.endpoint, connect_timeout_s=1, max_attempts=1,
        orphan_grace_s=GRACE, orphan_delete_after_s=DELETE_AFTER,
    )  # fmt: skip
    ledger = PostgresLedger(pg_url)
    spool, outbox, quarantine = (S3Store(settings, a, s) for a, s in
                                 (("spool", ".dcm"), ("outbox", ".dcm"), ("quarantine", ".bin")))  # fmt: skip
    referenced = {receive(ledger, spool, f"acknowledged {i}".encode()) for i in range(3)}
    blob = quarantine.put(b"refused at receive").relpath
    ledger.quarantine_received("undecodable", blob, "AE")
    lost_spool = {spool.put(f"put, then the commit failed {i}".encode()).relpath for i in range(2)}
    lost_out = outbox.put(b"uploaded, never committed").relpath
    lost_blob = quarantine.put(b"quarantine blob without a row").relpath

    offset = [0.0]
    reconciler = OrphanReconciler(settings, ledger, clock=lambda: time.time() + offset[0], page_size=2)

    fresh = reconciler.scan()  # inside the grace period: maybe still committing, not counted
    assert fresh["spool"].listed == 5 and all(s.orphans == 0 for s in fresh.values())

    offset[0] = GRACE + 60
    counted = reconciler.scan()
    assert set(counted["spool"].kept) == lost_spool and counted["outbox"].kept == [lost_out]
    assert counted["quarantine"].kept == [lost_blob]
    assert orphans_gauge("spool") == 2 and orphans_gauge("outbox") == 1 and orphans_gauge("quarantine") == 1
    assert spool.relpaths() == referenced | lost_spool  # counted, not yet deleted

    offset[0] = DELETE_AFTER + 60
    deleted = reconciler.scan()
    assert {a: s.deleted for a, s in deleted.items()} == {"spool": 2, "outbox": 1, "quarantine": 1}
    assert spool.relpaths() == referenced and outbox.relpaths() == set()
    assert quarantine.relpaths() == {blob}  # the row's blob stays
    assert orphans_gauge("spool") == 0
    ledger.shutdown()


def test_an_orphan_rewritten_by_a_receiver_is_young_again_and_kept(
    pg_url: str, s3: S3Server, bucket: str
) -> None:
    """Same bytes stored again (a sender's retry): the PUT refreshes the object, the row now references it."""
    settings = ObjectStoreSettings(
        bucket=bucket, endpoint_url=s3.endpoint, connect_timeout_s=1, max_attempts=1
    )
    ledger = PostgresLedger(pg_url)
    spool = S3Store(settings, "spool")
    relpath = spool.put(b"first try: commit failed").relpath
    old = OrphanReconciler(settings, ledger, clock=lambda: time.time() + settings.orphan_grace_s + 60)
    assert old.scan()["spool"].kept == [relpath]
    assert receive(ledger, spool, b"first try: commit failed") == relpath  # the retry commits
    later = OrphanReconciler(settings, ledger, clock=lambda: time.time() + 30 * 86400)
    assert later.scan()["spool"].orphans == 0 and spool.relpaths() == {relpath}
    ledger.shutdown()


def test_deleting_orphans_sooner_than_counting_them_is_refused() -> None:
    with pytest.raises(ValidationError, match="orphan_delete_after_s"):
        ObjectStoreSettings(bucket="vera", orphan_grace_s=3600, orphan_delete_after_s=60)
    assert ObjectStoreSettings(bucket="vera", orphan_delete_after_s=None).orphan_delete_after_s is None
