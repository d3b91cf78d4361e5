"""kill -9 of the gateway while a STOW-RS request is between the spool fsync and the ledger commit: the
client never got a Success, re-sends, and every instance ends forwarded exactly once; no PHI in logs or file
names."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from gateway.core.config import StowSettings
from gateway.core.destinations.dicomweb import MultipartBody
from tests.conftest import Patient, Study, free_port, make_small_sc, write_study
from tests.gateway.conftest import GatewayProcess, gateway_config, ledger_of, wait_until

pytestmark = pytest.mark.integration


def _stow(port: int, files: list[Path]) -> int:
    body = MultipartBody(files)
    headers = {"Content-Type": body.content_type}
    url = f"http://127.0.0.1:{port}/studies"
    return httpx.post(url, content=b"".join(body), headers=headers, timeout=120).status_code


def test_kill9_mid_stow_then_resend_forwards_every_instance_once(tmp_path: Path) -> None:
    config = gateway_config(tmp_path / "gw", workers=1, stow=StowSettings(port=free_port()))
    gw = GatewayProcess(config, {"name": "out", "path": str(tmp_path / "out")})
    patient = Patient(name="Crash^Stowe", patient_id="MRN-STOW-CRASH")
    files = write_study(tmp_path / "in", [make_small_sc(patient, Study(), n) for n in range(3)])
    gw.start(hold="receive.after_spool=120")
    answers: list[Any] = []

    def send() -> None:
        try:
            answers.append(_stow(config.stow.port, files))  # type: ignore[union-attr]
        except httpx.HTTPError as exc:
            answers.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: '"point": "receive.after_spool"' in gw.log_text(), timeout=60)
    gw.kill9()
    sender.join(timeout=60)
    assert answers and isinstance(answers[0], httpx.HTTPError)  # never acknowledged: the app re-sends
    gw.start()
    try:
        assert _stow(config.stow.port, files) == 200  # type: ignore[union-attr]

        def forwarded() -> bool:
            with ledger_of(config) as ledger:
                rows = ledger.instances()
            return len(rows) == 3 and all(r.state == "forwarded" for r in rows)

        wait_until(forwarded, timeout=90)
    finally:
        gw.stop()
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 3
    phi = ["Crash^Stowe", "MRN-STOW-CRASH", str(dcmread(files[0]).StudyInstanceUID)]
    names = " ".join(str(p) for p in config.data_dir.rglob("*"))
    assert not [value for value in phi if value in gw.log_text() or value in names]
