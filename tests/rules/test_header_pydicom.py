"""dicom_rules/header_pydicom.py: pydicom loaded without its pixel and download stack, in a fresh interpreter;
a no-op where pydicom is already loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dicom_rules.header_pydicom import PIXEL_AND_DOWNLOAD_STACK, load_pydicom_for_headers

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
from dicom_rules.header_pydicom import load_pydicom_for_headers
first, again = load_pydicom_for_headers(), load_pydicom_for_headers()
import pydicom.config
absent = sorted(m for m in {stack!r} if m in sys.modules)
import numpy  # marked absent only while pydicom imported: later imports work
print(json.dumps([first, again, absent, pydicom.config.have_numpy, "numpy" in sys.modules]))
"""


def test_pydicom_loads_without_the_stack_and_numpy_still_imports_afterwards() -> None:
    probe = PROBE.format(stack=PIXEL_AND_DOWNLOAD_STACK)
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, again, absent, have_numpy, numpy_loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (first, again) == (True, False)  # the second call finds pydicom loaded
    assert absent == []  # none of them loaded, and no None markers left in sys.modules
    assert have_numpy is False and numpy_loaded is True


def test_it_is_a_no_op_where_pydicom_is_already_loaded() -> None:
    import pydicom.config

    before = {m: sys.modules.get(m, "missing") for m in PIXEL_AND_DOWNLOAD_STACK}
    assert load_pydicom_for_headers() is False
    assert {m: sys.modules.get(m, "missing") for m in PIXEL_AND_DOWNLOAD_STACK} == before
    assert pydicom.config.have_numpy  # this test process keeps its full pydicom
