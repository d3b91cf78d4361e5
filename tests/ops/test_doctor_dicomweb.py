"""`doctor` and `echo` check a DICOMweb destination (QIDO-RS with its own auth) and the STOW-RS receiver."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from dicom_rules.decision import BearerAuth, DicomWebDestination
from gateway.cli import main as cli_main
from gateway.core.config import load_config
from gateway.ops.doctor import failed, render, run_checks
from tests.gateway.stow_peer import StowPeer
from tests.ops.test_doctor import FAST, _rules, site  # noqa: F401 (fixture)

OFFLINE = dataclasses.replace(FAST, network=False)


@pytest.fixture
def peer() -> Any:
    server = StowPeer(bearer="archive-token").start()
    yield server
    server.stop()


def test_doctor_probes_a_dicomweb_destination_with_its_token(
    site: dict[str, Any],  # noqa: F811
    peer: StowPeer,
) -> None:
    token = site["tmp"] / "archive.token"
    token.write_text("archive-token\n")
    dest = DicomWebDestination("archive", f"http://127.0.0.1:{peer.port}", auth=BearerAuth(token))
    checks = run_checks(site["config"], _rules(site["bank"], [dest]), FAST)
    assert failed(checks) == [], render(checks)
    assert "QIDO-RS HTTP 200" in {c.name: c for c in checks}["destination archive"].detail
    token.write_text("stale-token\n")
    checks = run_checks(site["config"], _rules(site["bank"], [dest]), FAST)
    (problem,) = failed(checks)
    assert problem.name == "destination archive" and "HTTP 401" in problem.detail
    assert "stale-token" not in render(checks)


def test_doctor_checks_the_stow_receiver_section(site: dict[str, Any]) -> None:  # noqa: F811
    data = site["config"].data_dir
    missing = {"clients": [{"name": "CAM", "token_file": "nope.token"}], "bind": "0.0.0.0"}
    config = load_config(None, data_dir=data, stow=missing)
    dest = DicomWebDestination("archive", "http://127.0.0.1:9")  # not probed: network off below
    checks = run_checks(config, _rules(site["bank"], [dest]), OFFLINE)
    assert [c.name for c in failed(checks)] == ["stow client CAM"]
    open_config = load_config(None, data_dir=data, stow={"bind": "0.0.0.0"})
    checks = run_checks(open_config, _rules(site["bank"], [dest]), OFFLINE)
    assert {c.name: c.status.value for c in checks}["stow allow-list"] == "warn"


def test_echo_cli_probes_a_dicomweb_url(tmp_path: Path, capsys: Any) -> None:
    peer = StowPeer().start()
    try:
        assert cli_main(["echo", f"http://127.0.0.1:{peer.port}", "--data-dir", str(tmp_path)]) == 0
        assert "OK (QIDO-RS HTTP 200" in capsys.readouterr().out
    finally:
        peer.stop()
    assert cli_main(["echo", f"http://127.0.0.1:{peer.port}", "--data-dir", str(tmp_path)]) == 1
    assert "FAILED (ConnectError" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("qido", "allow", "exit_code", "said", "options_asked"),
    [
        (405, "POST, OPTIONS", 0, "QIDO-RS HTTP 405 (not offered here), OPTIONS /studies HTTP 200", 1),
        (404, None, 1, "OPTIONS /studies HTTP 501: neither answers; is url the DICOMweb base", 1),
        (501, "GET, HEAD", 1, "Allow: GET, HEAD has no POST", 1),
        (503, "POST", 1, "QIDO-RS HTTP 503 in", 0),  # a failing archive: no fallback hides it
        (403, "POST", 1, "refuses this account", 0),
    ],
)
def test_echo_falls_back_to_options_only_where_qido_is_not_offered(
    tmp_path: Path, capsys: Any, qido: int, allow: str | None, exit_code: int, said: str, options_asked: int
) -> None:
    peer = StowPeer(qido_status=qido, allow=allow).start()
    try:
        assert cli_main(["echo", f"http://127.0.0.1:{peer.port}", "--data-dir", str(tmp_path)]) == exit_code
    finally:
        peer.stop()
    assert said in capsys.readouterr().out
    assert peer.options_requests == options_asked


def test_doctor_names_what_failed_when_the_archive_offers_neither(
    site: dict[str, Any],  # noqa: F811
) -> None:
    peer = StowPeer(qido_status=404).start()
    try:
        dest = DicomWebDestination("archive", f"http://127.0.0.1:{peer.port}/wrong-base")
        (problem,) = failed(run_checks(site["config"], _rules(site["bank"], [dest]), FAST))
    finally:
        peer.stop()
    assert problem.name == "destination archive"
    assert "QIDO-RS HTTP 404" in problem.detail and "OPTIONS /studies HTTP 501" in problem.detail
