"""Start-up recovery of the one-journal-commit receive path (gateway/core/recovery.py): a partial spool
file is removed; after an OS crash a complete spool file without its ledger row gets the row back,
quarantined."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

from dicom_rules import FolderDestination
from gateway.core.ledger import InstanceState, QuarantineKind
from gateway.core.recovery import RECOVERED_REASON, boot_id, os_crashed
from gateway.core.spool import ContentStore
from tests.conftest import make_small_sc
from tests.gateway.conftest import gateway_config, instance_states, ledger_of, rules_to


def encoded(number: int = 1) -> bytes:
    buf = BytesIO()
    make_small_sc(number=number).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_a_partial_spool_file_is_removed_and_a_complete_orphan_is_only_counted(
    tmp_path: Path, gateway
) -> None:
    config = gateway_config(tmp_path / "gw", workers=0, quiet_period_s=600)
    spool = ContentStore(config.spool_dir, in_place=True)
    complete = spool.put(encoded(1))
    partial = spool.put(encoded(2))
    data = spool.read(partial.relpath)
    spool.path(partial.relpath).write_bytes(data[: len(data) // 2])  # the write a crash cut short
    assert not spool.verify(partial.relpath) and spool.verify(complete.relpath)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    assert not spool.path(partial.relpath).exists()
    assert spool.path(complete.relpath).exists()
    assert instance_states(config) == {}  # not an OS crash: an unacknowledged file, the sender re-sends it
    assert service.count_spool_orphans() == 1


def test_after_an_os_crash_a_spooled_instance_without_its_row_comes_back_quarantined(
    tmp_path: Path, gateway
) -> None:
    config = gateway_config(tmp_path / "gw", workers=0, quiet_period_s=600)
    stored = ContentStore(config.spool_dir, in_place=True).put(encoded(3))
    marker = {"boot_id": "an-earlier-boot", "pid": 1, "clean": False}  # the machine went down under it
    (config.data_dir / "run.json").write_text(json.dumps(marker))
    gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    with ledger_of(config) as ledger:
        rows = ledger.instances()
        assert [(r.state, r.reason, r.calling_ae) for r in rows] == [
            (InstanceState.QUARANTINED, RECOVERED_REASON, "")
        ]
        assert ledger.spool_paths() == {stored.relpath}
        items = ledger.quarantine_items()
    assert [(i.kind, i.reason, i.instance_id, i.job_id) for i in items] == [
        (QuarantineKind.INSTANCE, RECOVERED_REASON, rows[0].id, None)
    ]


def test_os_crash_needs_an_unclean_stop_under_another_boot() -> None:
    now = boot_id()
    assert os_crashed({"boot_id": "old", "clean": False}, now)
    assert not os_crashed({"boot_id": "old", "clean": True}, now)  # stopped cleanly, then rebooted
    assert not os_crashed(
        {"boot_id": now, "clean": False}, now
    )  # kill -9: WAL commits survive a process crash
    assert not os_crashed(None, now)
