"""Service logs: third-party messages that quote dataset values are redacted before they are written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert "Invalid value for VR UI: <value redacted>" in events
    assert all(line.startswith("{") for line in proc.stderr.splitlines())  # warnings are JSON too
