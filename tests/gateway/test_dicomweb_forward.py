"""DICOMweb destination: STOW-RS per study, per-instance outcomes, retry/quarantine, auth and TLS; a real
Orthanc with the DICOMweb plugin finds every instance de-identified (QIDO-RS and WADO-RS)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread

from dicom_rules import DicomWebDestination
from dicom_rules.decision import BasicAuth, BearerAuth, HttpsSettings, OAuth2ClientCredentials
from gateway.core.config import StowSettings
from gateway.core.destinations import OutboundFile
from gateway.core.destinations.dicomweb import DicomWebSender
from tests.conftest import Patient, Study, make_small_sc, write_study
from tests.gateway.conftest import (
    gateway_config,
    instance_states,
    ledger_of,
    rules_to,
    storescu,
    wait_until,
)
from tests.gateway.stow_peer import StowPeer, stow_body
from tests.ops.pki import make_pki


@pytest.fixture
def peer() -> Iterator[StowPeer]:
    server = StowPeer().start()
    yield server
    server.stop()


def _outbox(tmp_path: Path, studies: int = 2, per_study: int = 2) -> list[OutboundFile]:
    files = []
    for s in range(studies):
        study = Study()
        datasets = [make_small_sc(study=study, number=n, side=32) for n in range(per_study)]
        for path in write_study(tmp_path / "outbox" / str(s), datasets):
            files.append(OutboundFile(len(files) + 1, path, str(dcmread(path).SOPInstanceUID)))
    return files


def _sender(tmp_path: Path, url: str, **kwargs: Any) -> DicomWebSender:
    return DicomWebSender(DicomWebDestination("archive", url, **kwargs), gateway_config(tmp_path / "gw"))


def test_one_stow_request_per_study_and_every_instance_stored(tmp_path: Path, peer: StowPeer) -> None:
    files = _outbox(tmp_path, studies=2, per_study=3)
    results = _sender(tmp_path, f"http://127.0.0.1:{peer.port}").send(files)
    assert [(r.instance_id, r.ok) for r in results] == [(f.instance_id, True) for f in files]
    assert len(peer.requests) == 2
    for request in peer.requests:
        assert len(request) == 3 and len({str(ds.StudyInstanceUID) for ds in request}) == 1


def test_partial_failure_fails_only_the_listed_instances(tmp_path: Path, peer: StowPeer) -> None:
    peer.answer = lambda ds: (202, stow_body(ds[1:], [(ds[0], 0xA700)]))
    files = _outbox(tmp_path, studies=1, per_study=3)
    results = _sender(tmp_path, f"http://127.0.0.1:{peer.port}").send(files)
    assert [(r.ok, r.reason) for r in results] == [(False, "stow:0xA700"), (True, ""), (True, "")]


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, None, "http:500"),
        (409, "failed", "stow:0xA900"),
        (202, "none", "stow-not-acknowledged"),
        (400, None, "http:400"),
    ],
)
def test_failed_answers_fail_every_instance_with_a_reason(
    tmp_path: Path, peer: StowPeer, status: int, body: str | None, reason: str
) -> None:
    def answer(datasets: list[Any]) -> tuple[int, Any]:
        if body == "failed":
            return status, stow_body([], [(ds, 0xA900) for ds in datasets])
        return status, ({} if body == "none" else None)

    peer.answer = answer
    results = _sender(tmp_path, f"http://127.0.0.1:{peer.port}").send(_outbox(tmp_path, 1, 2))
    assert [(r.ok, r.reason) for r in results] == [(False, reason)] * 2


def test_unreachable_archive_fails_with_the_transport_error(tmp_path: Path) -> None:
    from tests.conftest import free_port

    results = _sender(tmp_path, f"http://127.0.0.1:{free_port()}").send(_outbox(tmp_path, 1, 1))
    assert [(r.ok, r.reason) for r in results] == [(False, "http:ConnectError")]


def test_bearer_token_is_read_from_its_file_and_a_wrong_one_fails_401(tmp_path: Path, peer: StowPeer) -> None:
    peer.bearer = "right-token"
    token = tmp_path / "token"
    token.write_text("wrong-token\n")
    sender = _sender(tmp_path, f"http://127.0.0.1:{peer.port}", auth=BearerAuth(token))
    files = _outbox(tmp_path, 1, 1)
    assert [r.reason for r in sender.send(files)] == ["http:401"] and not sender.echo()
    token.write_text("right-token\n")  # rotated on disk: used without a restart
    assert [r.ok for r in sender.send(files)] == [True] and sender.echo()
    token.unlink()
    assert [r.reason for r in sender.send(files)] == ["auth-secret-unavailable"]


def test_basic_auth_password_comes_from_its_file(tmp_path: Path, peer: StowPeer) -> None:
    peer.basic = ("vera", "pa ss:word")
    password = tmp_path / "archive.pw"
    password.write_text("pa ss:word\n")
    sender = _sender(tmp_path, f"http://127.0.0.1:{peer.port}", auth=BasicAuth("vera", password))
    assert [r.ok for r in sender.send(_outbox(tmp_path, 1, 1))] == [True] and sender.echo()
    password.write_text("wrong\n")
    assert not sender.echo()


def test_oauth2_client_credentials_token_is_fetched_once_and_reused(tmp_path: Path, peer: StowPeer) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text("oauth-secret")
    url = f"http://127.0.0.1:{peer.port}"
    auth = OAuth2ClientCredentials(f"{url}/token", "vera", secret, scope="stow")
    sender = _sender(tmp_path, url, auth=auth)
    files = _outbox(tmp_path, 2, 1)
    assert all(r.ok for r in sender.send(files)) and all(r.ok for r in sender.send(files))
    assert peer.token_requests == 1 and len(peer.requests) == 4
    secret.write_text("not-the-secret")
    wrong = _sender(tmp_path, url, auth=OAuth2ClientCredentials(f"{url}/token", "other", secret))
    assert [r.reason for r in wrong.send(files[:1])] == ["auth-secret-unavailable"]


def test_https_with_ca_bundle_and_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server.certificate, pki.server.private_key)
    ctx.load_verify_locations(pki.ca)
    ctx.verify_mode = ssl.CERT_REQUIRED  # the archive wants our client certificate
    peer = StowPeer().start(ssl_context=ctx)
    try:
        url = f"https://127.0.0.1:{peer.port}"
        files = _outbox(tmp_path, 1, 1)
        mutual = HttpsSettings(pki.ca, pki.client.certificate, pki.client.private_key)
        assert [r.ok for r in _sender(tmp_path, url, tls=mutual).send(files)] == [True]
        no_client_cert = _sender(tmp_path, url, tls=HttpsSettings(ca_bundle=pki.ca))
        assert not no_client_cert.send(files)[0].ok
        untrusted = _sender(tmp_path, url)  # system CAs do not know the test CA
        assert untrusted.send(files)[0].reason == "http:ConnectError"
    finally:
        peer.stop()


@pytest.mark.integration
def test_partial_failure_retries_then_forwards_and_permanent_409_quarantines(
    tmp_path: Path, gateway: Any, peer: StowPeer
) -> None:
    failed_once: set[str] = set()

    def answer(datasets: list[Any]) -> tuple[int, Any]:
        first = str(datasets[0].SOPInstanceUID)
        if not failed_once:  # the first instance of the first request fails once (out of resources)
            failed_once.add(first)
            return 202, stow_body(datasets[1:], [(datasets[0], 0xA700)])
        return 200, stow_body(datasets, [])

    peer.answer = answer
    config = gateway_config(tmp_path / "gw", forward={"backoff_initial_s": 0.2, "backoff_max_s": 0.5})
    service = gateway(config, rules=rules_to(DicomWebDestination("archive", f"http://127.0.0.1:{peer.port}")))
    study = Study()
    files = write_study(tmp_path / "in", [make_small_sc(study=study, number=n) for n in range(3)])
    assert storescu(service.port, files).returncode == 0
    wait_until(lambda: instance_states(config) == {"forwarded": 3}, timeout=60)
    with ledger_of(config) as ledger:
        attempts = sorted(r.attempts for r in ledger.instances())
    assert attempts == [0, 0, 1]  # only the instance the archive failed was sent again
    assert len(peer.stored) == 3 and failed_once <= set(peer.stored)

    peer.answer = lambda ds: (409, stow_body([], [(d, 0xA900) for d in ds]))
    config2 = gateway_config(
        tmp_path / "gw2", forward={"backoff_initial_s": 0.1, "backoff_max_s": 0.2, "give_up_s": 0.5}
    )
    service2 = gateway(
        config2, rules=rules_to(DicomWebDestination("archive", f"http://127.0.0.1:{peer.port}"))
    )
    assert storescu(service2.port, files[:1]).returncode == 0
    wait_until(lambda: instance_states(config2) == {"quarantined": 1}, timeout=60)
    with ledger_of(config2) as ledger:
        (item,) = ledger.quarantine_items()
    assert item.kind == "forward" and item.reason == "forward-gave-up:stow:0xA900"


@pytest.mark.integration
def test_camera_stow_to_gateway_then_stow_to_orthanc_dicomweb_finds_every_instance_deidentified(
    tmp_path: Path, gateway: Any, orthanc: Any
) -> None:
    archive = orthanc(aet="ARCHIVE", dicomweb=True)
    dicomweb = f"http://127.0.0.1:{archive.http_port}/dicom-web"
    config = gateway_config(tmp_path / "gw", stow=StowSettings(port=0))
    service = gateway(config, rules=rules_to(DicomWebDestination("archive", dicomweb)))
    patient = Patient(name="Webb^Dicom", patient_id="MRN-WEB-5")
    study = Study()
    datasets = [make_small_sc(patient, study, n) for n in range(1, 4)]
    paths = write_study(tmp_path / "in", datasets)
    camera = DICOMwebClient(f"http://127.0.0.1:{service.stow.port}")
    camera.store_instances([dcmread(p) for p in paths])  # a real STOW-RS client to the gateway
    wait_until(lambda: instance_states(config) == {"forwarded": 3}, timeout=60)
    research = DICOMwebClient(dicomweb)
    found = research.search_for_instances()  # QIDO-RS on Orthanc
    assert len(found) == 3
    originals = {str(ds.SOPInstanceUID) for ds in datasets}
    for entry in found:
        study, series, sop = (entry[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
        ds = research.retrieve_instance(study, series, sop)  # WADO-RS
        assert sop not in originals and str(ds.PatientName) != "Webb^Dicom" and ds.PatientID != "MRN-WEB-5"
        assert study != str(datasets[0].StudyInstanceUID)
