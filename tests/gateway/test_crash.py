"""kill -9 of the gateway (and its workers) while receiving, processing and forwarding; restart; the
research Orthanc ends with every instance exactly once and the ledger is clean (all forwarded, one row each).

The ``VERA_GATEWAY_HOLD`` seam pauses the service at the nastiest point of each stage (file spooled but not
in the ledger; outputs fsynced but the job not recorded; destination answered but not recorded), the test
waits for the ``fault.hold`` log line, then kills the whole process group.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from anonymizer.plans import PixelMode
from gateway.core.ledger import InstanceRecord
from tests.conftest import Patient, Study, make_small_sc, write_study
from tests.gateway.conftest import GatewayProcess, gateway_config, ledger_of, storescu, wait_until

pytestmark = pytest.mark.integration


def ledger_rows(config: Any) -> list[InstanceRecord]:
    with ledger_of(config) as ledger:
        return ledger.instances()


def all_forwarded(config: Any, total: int) -> bool:
    rows = ledger_rows(config)
    return len(rows) == total and all(r.state == "forwarded" for r in rows)


def crash_at(gw: GatewayProcess, point: str, files: list[Path]) -> subprocess.CompletedProcess[str] | None:
    """Send ``files`` with the gateway paused at ``point``; kill -9 it there; return the sender's result."""
    marker = f'"point": "{point}"'
    before = gw.log_text().count(marker)
    gw.start(hold=f"{point}=120")
    result: list[subprocess.CompletedProcess[str]] = []
    sender = threading.Thread(target=lambda: result.append(storescu(gw.config.port, files)))
    sender.start()
    wait_until(lambda: gw.log_text().count(marker) > before, timeout=90)
    if point != "receive.after_spool":
        # the hold stops that stage only: let the send finish (a restarted gateway may reach a processing or
        # forwarding hold with earlier work before this send is through; the kill is meant for that stage)
        sender.join(timeout=60)
    gw.kill9()
    sender.join(timeout=60)
    return result[0] if result else None


def test_kill9_while_receiving_processing_and_forwarding_loses_and_duplicates_nothing(
    tmp_path: Path,
    orthanc: Any,
) -> None:
    research = orthanc(aet="RESEARCH")
    config = gateway_config(tmp_path / "gw", workers=1)
    destination = {
        "name": "research",
        "ae_title": "RESEARCH",
        "host": "127.0.0.1",
        "port": research.dicom_port,
    }
    gw = GatewayProcess(config, destination, PixelMode.BLANK)
    studies = [
        write_study(tmp_path / name, [make_small_sc(Patient(f"MRN-{name}-7731"), study, n) for n in range(4)])
        for name, study in (("receiving", Study()), ("processing", Study()), ("forwarding", Study()))
    ]
    sent: list[Path] = []
    for point, files in zip(
        ("receive.after_spool", "pipeline.after_outbox", "forward.after_send"), studies, strict=True
    ):
        for _ in range(2):  # crash twice at the same point (the second time while recovering the first)
            result = crash_at(gw, point, files)
            if point == "receive.after_spool":
                assert result is not None and result.returncode != 0  # never acknowledged: the PACS re-sends
            else:
                assert result is not None and result.returncode == 0, result.stderr
        sent += files
        gw.start()
        assert storescu(config.port, files).returncode == 0  # a re-send is harmless (idempotent)
        total = len(sent)
        wait_until(lambda: all_forwarded(config, total), timeout=90)  # noqa: B023
        gw.stop()
    rows = ledger_rows(config)
    assert len(rows) == len({r.sop_key for r in rows}) == 12
    assert len(research.wait_for_instances(12)) == 12
    assert research.rest("/statistics")["CountInstances"] == 12
    assert not list(config.spool_dir.rglob(".*.tmp")) and not list(config.outbox_dir.rglob(".*.tmp"))
    phi = [
        "MRN-receiving-7731",
        "MRN-processing-7731",
        "MRN-forwarding-7731",
        Patient().name,
        "19800517",
        "20240312",
        "ACC778812",
    ]
    phi += [str(dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in sent]
    logs = gw.log_text()
    names = " ".join(str(p) for p in config.data_dir.rglob("*"))
    assert not [value for value in phi if value in logs or value in names]  # no PHI in logs or file names
