"""Service logs: third-party messages that quote dataset values are redacted before they are written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.ops.logs import redact
from tests.conftest import Study, make_small_sc, write_study
from tests.gateway.conftest import GatewayProcess, gateway_config, storescu

REPO = Path(__file__).resolve().parents[2]
RECEIVE = """
from io import BytesIO
from gateway.core.intake import Caller, StoreRequest, check_conformance, parse_header
from gateway.ops.logs import configure_logging
from tests.conftest import make_small_sc

configure_logging("INFO")
ds = make_small_sc()
ds.StudyInstanceUID, ds.PatientAge = "1.2.840.0113.4", "45"  # leading-zero UID: common in the wild
buf = BytesIO()
ds.save_as(buf, enforce_file_format=True)
parsed = parse_header(buf.getvalue())
check_conformance(parsed, StoreRequest(buf.getvalue(), ds.SOPClassUID, ds.SOPInstanceUID, Caller("A", "ip")))
str(parsed.PatientAge)
"""


def test_pydicom_validation_warnings_are_logged_without_the_value() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", RECEIVE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "0113" not in proc.stderr and "'45'" not in proc.stderr  # both were in the JSON logs before
    events = [json.loads(line)["event"] for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(e.startswith("Invalid value for VR UI: <redacted>") for e in events)
    assert all(line.startswith("{") for line in proc.stderr.splitlines())  # warnings are JSON too


# Leading zeros make these non-conformant (pynetdicom and pydicom warn and quote them); the last is over 64
# characters (pynetdicom refuses it with an error that quotes it).
NONCONFORMANT = ("2.25.0123456789.0987654321", "1.2.826.00042.7.77", "1.2.3." + "4" * 70)


@pytest.mark.integration
@pytest.mark.parametrize("receive_path", ["lean", "pynetdicom"])
def test_sender_supplied_uids_never_reach_the_logs(tmp_path: Path, receive_path: str) -> None:
    config = gateway_config(
        tmp_path / "gw", workers=0, quiet_period_s=600, max_wait_s=600, receive_path=receive_path
    )
    datasets = []
    for i, uid in enumerate(NONCONFORMANT):
        ds = make_small_sc(study=Study(study_uid=NONCONFORMANT[1]), number=i, side=16)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        datasets.append(ds)
    files = write_study(tmp_path / "in", datasets)
    gateway = GatewayProcess(config, {"name": "out", "path": str(tmp_path / "out")}).start()
    try:
        for path in files:
            storescu(config.port, [path])
        log = gateway.log_text()
    finally:
        gateway.stop()
    if receive_path == "pynetdicom":  # it decodes the command set with pydicom: it talks about them
        assert "Non-conformant <redacted>" in log
    assert log.count("instance.received") + log.count("instance.rejected") == len(NONCONFORMANT)
    for uid in NONCONFORMANT:
        assert uid not in log
        assert max(uid.split("."), key=len) not in log  # not even its longest component


def test_redact_keeps_the_words_and_removes_values() -> None:
    text = "Non-conformant 'Affected SOP Instance UID' value '1.2.3.04' (0010,0010) [Doe^Jane] id 12345678"
    assert redact(text) == "Non-conformant <redacted> value <redacted> <redacted> <redacted> id <redacted>"
    assert redact("Association Aborted (A-P-ABORT)") == "Association Aborted (A-P-ABORT)"
