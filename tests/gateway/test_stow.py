"""STOW-RS receiver: a real DICOMweb client stores photos to the gateway; refusals are clear and PHI-free."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from structlog.testing import capture_logs

from dicom_rules import FolderDestination
from gateway.core.config import StowSettings
from gateway.core.destinations.dicomweb import MultipartBody, parse_stow_response
from tests.conftest import Patient, Study, make_small_sc, write_study
from tests.gateway.conftest import gateway_config, instance_states, rules_to, wait_until

TOKEN = "camera-app-token-0123456789"
RELATED = 'multipart/related; type="application/dicom"'


def _service(tmp_path: Path, gateway: Any, spool_writer: Any = None, **stow: Any) -> Any:
    (tmp_path / "camera.token").write_text(TOKEN + "\n")
    settings = {"port": 0, "clients": [{"name": "CAMERA_APP", "token_file": tmp_path / "camera.token"}]}
    config = gateway_config(tmp_path / "gw", stow=StowSettings(**{**settings, **stow}))
    extra = {"spool_writer": spool_writer} if spool_writer else {}
    return gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")), **extra)


def _url(service: Any) -> str:
    return f"http://127.0.0.1:{service.stow.port}"


def _post(service: Any, paths: list[Path], token: str = TOKEN, path: str = "/studies") -> httpx.Response:
    body = MultipartBody(paths)
    headers = {"Content-Type": body.content_type, "Authorization": f"Bearer {token}"}
    return httpx.post(_url(service) + path, content=b"".join(body), headers=headers, timeout=30)


def _raw_head(multipart: MultipartBody, length: int) -> bytes:
    """The request line and headers of a STOW-RS POST, for tests that write the body on a raw socket."""
    return (
        "POST /studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {multipart.content_type}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    patient = Patient(name="Stowe^Harriet", patient_id="MRN-STOW-77")
    study = Study()
    return write_study(tmp_path / "in", [make_small_sc(patient, study, n) for n in range(1, 4)])


def test_dicomweb_client_stores_photos_and_they_come_out_deidentified(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    service = _service(tmp_path, gateway)
    client = DICOMwebClient(_url(service), headers={"Authorization": f"Bearer {TOKEN}"})
    response = client.store_instances([dcmread(p) for p in photos])
    referenced = {str(item.ReferencedSOPInstanceUID) for item in response.ReferencedSOPSequence}
    assert referenced == {str(dcmread(p).SOPInstanceUID) for p in photos}
    assert "FailedSOPSequence" not in response
    wait_until(lambda: instance_states(service.config) == {"forwarded": 3}, timeout=60)
    outputs = [dcmread(p) for p in (tmp_path / "out").glob("*.dcm")]
    assert len(outputs) == 3
    for ds in outputs:
        assert str(ds.PatientName) != "Stowe^Harriet" and ds.PatientID != "MRN-STOW-77"
        assert str(ds.SOPInstanceUID) not in referenced
    calling = {r.calling_ae for r in service.ledger.instances()}
    assert calling == {"CAMERA_APP"}


def test_wrong_token_is_refused_401_and_logged_without_phi(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    service = _service(tmp_path, gateway)
    study_uid = str(dcmread(photos[0]).StudyInstanceUID)
    with capture_logs() as logs:
        response = _post(service, photos, token="not-the-token", path=f"/studies/{study_uid}")
    assert response.status_code == 401 and "Bearer" in response.headers["www-authenticate"]
    (entry,) = [e for e in logs if e["event"] == "stow.request"]
    assert entry["reason"] == "wrong-token" and entry["http_status"] == 401
    text = repr(logs)
    for phi in (study_uid, "Stowe", "MRN-STOW-77", "not-the-token", TOKEN):
        assert phi not in text
    assert instance_states(service.config) == {}
    assert httpx.post(_url(service) + "/studies", content=b"x", timeout=10).status_code == 401  # no header


def test_declared_2gb_upload_is_refused_413_before_the_body_and_the_service_keeps_running(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    service = _service(tmp_path, gateway)
    body = MultipartBody(photos)
    with socket.create_connection(("127.0.0.1", service.stow.port), timeout=10) as sock:
        sock.sendall(_raw_head(body, 2 * 1024**3) + b"--" + body.boundary.encode())  # a few bytes of the 2 GB
        answer = sock.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413")
    assert _post(service, photos).status_code == 200


def test_streamed_body_over_the_limit_is_refused_413(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    service = _service(tmp_path, gateway, max_request_bytes=256 * 1024)
    body = MultipartBody(photos)

    def endless() -> Iterator[bytes]:  # chunked, no declared length: counted as it streams
        yield b"--" + body.boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
        for _ in range(2 * 1024):  # would be 2 GB; the receiver stops it after 256 kB
            yield bytes(1024 * 1024)

    headers = {"Content-Type": body.content_type, "Authorization": f"Bearer {TOKEN}"}
    with capture_logs() as logs:
        try:
            response = httpx.post(_url(service) + "/studies", content=endless(), headers=headers, timeout=30)
            assert response.status_code == 413
        except httpx.HTTPError:  # the server answered and closed while we were still writing
            pass
    (entry,) = [e for e in logs if e["event"] == "stow.request"]
    assert entry["http_status"] == 413 and entry["reason"] == "request-too-large"
    assert _post(service, photos[:1]).status_code == 200


@pytest.mark.parametrize(
    ("content_type", "body", "status", "reason"),
    [
        (f"{RELATED}; boundary=b1", b"garbage without parts", 400, "malformed"),
        (f"{RELATED}; boundary=b1", b"--b1\r\nContent-Type: a", 400, "trunc"),
        (RELATED, b"--b1--\r\n", 400, "no-boundary"),
        ("application/dicom", b"DICM", 415, "not-multipart"),
        ('multipart/related; type="application/dicom+json"; boundary=b1', b"--b1--\r\n", 415, "type-not"),
    ],
)
def test_malformed_requests_get_a_clear_4xx_and_the_service_keeps_running(
    tmp_path: Path, gateway: Any, photos: list[Path], content_type: str, body: bytes, status: int, reason: str
) -> None:
    service = _service(tmp_path, gateway)
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {TOKEN}"}
    response = httpx.post(_url(service) + "/studies", content=body, headers=headers, timeout=10)
    assert response.status_code == status and reason in response.json()["error"]
    assert _post(service, photos[:1]).status_code == 200


def test_each_instance_gets_its_own_status_undecodable_and_unsupported_fail_alone(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    service = _service(tmp_path, gateway)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 64)
    mr = make_small_sc(number=9)
    mr.SOPClassUID = mr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage
    (unsupported,) = write_study(tmp_path / "mr", [mr])
    response = _post(service, [photos[0], garbage, unsupported])
    assert response.status_code == 202
    outcome = parse_stow_response(response.headers["content-type"], response.content)
    assert outcome.referenced == {str(dcmread(photos[0]).SOPInstanceUID)}
    assert outcome.failed[str(mr.SOPInstanceUID)] == 0x0122
    reasons = [item["00081197"]["Value"][0] for item in response.json()["00081198"]["Value"]]
    assert sorted(reasons) == [0x0122, 0xA900]  # the intake's answer, as for C-STORE: no SOP Class UID
    wait_until(lambda: instance_states(service.config).get("forwarded") == 1, timeout=60)
    rejected = service.ledger.quarantine_items()
    assert [(r.reason, r.calling_ae) for r in rejected] == [("missing:SOPClassUID", "CAMERA_APP")]


def test_all_failed_answers_409_with_0xC210_for_the_undecodable(tmp_path: Path, gateway: Any) -> None:
    service = _service(tmp_path, gateway)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not dicom at all")
    response = _post(service, [garbage])
    assert response.status_code == 409
    assert [i["00081197"]["Value"] for i in response.json()["00081198"]["Value"]] == [[0xC210]]


def test_https_receiver_identifies_clients_by_certificate_cn_or_token(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    import ssl

    from tests.ops.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    (tmp_path / "camera.token").write_text(TOKEN)
    stow = StowSettings(
        port=0,
        tls={
            "certificate": pki.server.certificate,
            "private_key": pki.server.private_key,
            "ca_bundle": pki.ca,
        },
        clients=[
            {"name": "WARD_TABLET", "certificate_cn": "pacs-client"},
            {"name": "CAMERA_APP", "token_file": tmp_path / "camera.token"},
        ],
    )
    config = gateway_config(tmp_path / "gw", stow=stow)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    url = f"https://127.0.0.1:{service.stow.port}/studies"
    body = MultipartBody(photos[:1])

    def post(cert: Any = None, token: str | None = None) -> int:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        if cert is not None:
            ctx.load_cert_chain(cert.certificate, cert.private_key)
        headers = {"Content-Type": body.content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        with httpx.Client(verify=ctx) as client:
            return client.post(url, content=b"".join(body), headers=headers, timeout=30).status_code

    assert post(cert=pki.client) == 200  # the certificate's CN names the client
    assert post(token=TOKEN) == 200
    assert post() == 401
    with pytest.raises(httpx.TransportError):  # TLS 1.3: the server drops it right after the handshake
        post(cert=pki.rogue)  # signed by another CA
    wait_until(lambda: instance_states(config) == {"forwarded": 1}, timeout=60)  # the same instance twice
    assert {r.calling_ae for r in service.ledger.instances()} == {"WARD_TABLET"}


def test_a_client_outside_its_networks_is_refused_403_and_counted(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    from prometheus_client import REGISTRY

    def refused() -> float:
        labels = {"status": "403", "reason": "network-not-allowed"}
        return REGISTRY.get_sample_value("vera_gateway_stow_requests_total", labels) or 0.0

    before = refused()
    (tmp_path / "camera.token").write_text(TOKEN)
    client = {"name": "CAMERA_APP", "token_file": tmp_path / "camera.token", "networks": ["10.99.0.0/16"]}
    service = _service(tmp_path, gateway, clients=[client])
    assert _post(service, photos[:1]).status_code == 403  # right token, but 127.0.0.1 is not in 10.99/16
    assert refused() == before + 1 and instance_states(service.config) == {}


def test_disk_full_answers_0xA700_per_instance_and_keeps_nothing(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    def full_disk(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    service = _service(tmp_path, gateway, spool_writer=full_disk)
    response = _post(service, photos)
    assert response.status_code == 409
    reasons = [item["00081197"]["Value"][0] for item in response.json()["00081198"]["Value"]]
    assert reasons == [0xA700] * len(photos)
    assert [p for p in service.config.spool_dir.rglob("*") if p.is_file()] == []
    assert instance_states(service.config) == {}


def test_stow_response_parser_reads_dicom_xml_too() -> None:
    xml = b"""<?xml version="1.0"?><NativeDicomModel>
      <DicomAttribute tag="00081199" vr="SQ"><Item number="1">
        <DicomAttribute tag="00081155" vr="UI"><Value number="1">2.25.1</Value></DicomAttribute></Item>
      </DicomAttribute>
      <DicomAttribute tag="00081198" vr="SQ"><Item number="1">
        <DicomAttribute tag="00081155" vr="UI"><Value number="1">2.25.2</Value></DicomAttribute>
        <DicomAttribute tag="00081197" vr="US"><Value number="1">42752</Value></DicomAttribute></Item>
      </DicomAttribute></NativeDicomModel>"""
    outcome = parse_stow_response("application/dicom+xml", xml)
    assert outcome.referenced == {"2.25.1"} and outcome.failed == {"2.25.2": 0xA700}
    assert parse_stow_response("application/dicom+json", b"{not json").referenced == set()


def test_a_client_that_hangs_up_mid_body_leaves_the_service_running(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    service = _service(tmp_path, gateway)
    multipart = MultipartBody(photos)
    body = b"".join(multipart)
    head = _raw_head(multipart, len(body))
    with capture_logs() as logs:
        with socket.create_connection(("127.0.0.1", service.stow.port), timeout=10) as sock:
            sock.sendall(head + body[:1000])  # then gone
        wait_until(lambda: any(e["event"] == "stow.request" for e in logs), timeout=10)
    (entry,) = [e for e in logs if e["event"] == "stow.request"]
    assert entry["reason"] == "client-disconnected" and entry["stored"] == 0
    assert _post(service, photos[:1]).status_code == 200


@pytest.mark.parametrize(
    ("stow", "message"),
    [
        ({"clients": [{"name": "CAM"}]}, "exactly one of token_file or certificate_cn"),
        ({"clients": [{"name": "CAM", "token_file": "t", "certificate_cn": "c"}]}, "exactly one"),
        ({"clients": [{"name": "CAM", "certificate_cn": "cam-01"}]}, "need tls with a ca_bundle"),
        ({"clients": [{"name": "CAM", "token_file": "t", "networks": ["nope"]}]}, "networks"),
        ({"bind": "localhost"}, "stow.bind"),
        ({"max_request_bytes": 0}, "max_request_bytes"),
    ],
)
def test_stow_config_errors_name_the_field(tmp_path: Path, stow: dict[str, Any], message: str) -> None:
    from gateway.core.config import ConfigError, load_config

    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"stow": stow}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_instances_of_another_study_or_with_mismatched_file_meta_fail_0xA900(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    service = _service(tmp_path, gateway)
    response = _post(service, photos[:1], path="/studies/1.2.3.4")  # not this photo's study
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    (path,) = write_study(tmp_path / "odd", [make_small_sc(number=7)])
    uid = str(dcmread(path).SOPInstanceUID).encode()
    other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")
    path.write_bytes(path.read_bytes().replace(uid, other, 1))  # the file meta now names another instance
    assert _post(service, [path]).status_code == 409
    assert [q.reason for q in service.ledger.quarantine_items()] == ["sop-instance-mismatch"]


def test_a_resent_request_is_idempotent(tmp_path: Path, gateway: Any, photos: list[Path]) -> None:
    service = _service(tmp_path, gateway)  # a sender that lost the answer (or our process) sends again
    assert _post(service, photos).status_code == 200
    assert _post(service, photos).status_code == 200
    wait_until(lambda: instance_states(service.config) == {"forwarded": 3}, timeout=60)
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 3


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        ({"min_body_bytes_per_s": 2000, "body_grace_s": 1.0}, "body-too-slow"),
        ({"min_body_bytes_per_s": 0, "body_timeout_s": 1.5}, "body-timeout"),
    ],
)
def test_a_trickling_body_is_answered_408_while_another_client_stores(
    tmp_path: Path, gateway: Any, photos: list[Path], limits: dict[str, Any], reason: str
) -> None:
    import threading
    import time

    from prometheus_client import REGISTRY

    def counted() -> float:
        labels = {"status": "408", "reason": reason}
        return REGISTRY.get_sample_value("vera_gateway_stow_requests_total", labels) or 0.0

    before = counted()
    service = _service(tmp_path, gateway, max_concurrent_requests=2, **limits)
    multipart = MultipartBody(photos)
    body = b"".join(multipart)
    head = _raw_head(multipart, len(body))
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:  # 50 bytes every 0.1 s: 500 B/s, never the whole body
        try:
            sock.sendall(head)
            for at in range(0, len(body) - 1, 50):
                if stop.wait(0.1):
                    return
                sock.sendall(body[at : min(at + 50, len(body) - 1)])
        except OSError:  # the server closed the connection
            pass

    address = ("127.0.0.1", service.stow.port)
    with capture_logs() as logs, socket.create_connection(address, timeout=15) as sock:
        started = time.monotonic()
        sender = threading.Thread(target=trickle, args=(sock,), daemon=True)
        sender.start()
        assert _post(service, photos[:1]).status_code == 200  # the other slot still works meanwhile
        answer = b""
        while chunk := sock.recv(4096):  # the server answers, then closes: recv returns b""
            answer += chunk
        held = time.monotonic() - started
        stop.set()
        sender.join(timeout=5)
    assert answer.startswith(b"HTTP/1.1 408") and held < 6
    entries = [e for e in logs if e["event"] == "stow.request" and e["http_status"] == 408]
    assert [e["reason"] for e in entries] == [reason] and entries[0]["client"] == "CAMERA_APP"
    assert "Stowe" not in repr(logs) and "MRN-STOW-77" not in repr(logs)
    assert counted() == before + 1
    assert _post(service, photos[1:2]).status_code == 200


def test_a_rotated_token_file_is_picked_up_without_a_restart(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    service = _service(tmp_path, gateway)
    assert _post(service, photos[:1]).status_code == 200
    token_file, rotated = tmp_path / "camera.token", "rotated-camera-token-9876543210-longer"
    with capture_logs() as logs:
        token_file.write_text(rotated + "\n")
        assert _post(service, photos[1:2]).status_code == 401  # the old token is revoked at once
        assert _post(service, photos[1:2], token=rotated).status_code == 200
        token_file.write_text("")  # emptied (or removed): nobody gets in until it is fixed
        assert _post(service, photos[2:], token=rotated).status_code == 401
        token_file.write_text(TOKEN)
        assert _post(service, photos[2:]).status_code == 200
    events = [e["event"] for e in logs if e["event"].startswith("stow.token")]
    assert events == ["stow.token_reloaded", "stow.token_unavailable", "stow.token_reloaded"]
    assert rotated not in repr(logs) and TOKEN not in repr(logs)
    wait_until(lambda: instance_states(service.config) == {"forwarded": 3}, timeout=60)


def test_a_missing_token_file_at_start_up_is_an_error_naming_the_file(tmp_path: Path) -> None:
    from gateway.core.destinations.webauth import SecretError
    from gateway.core.stow import StowReceiver

    settings = StowSettings(clients=[{"name": "CAM", "token_file": tmp_path / "missing.token"}])
    with pytest.raises(SecretError, match=r"missing\.token"):
        StowReceiver(settings, intake=None, resolve=lambda p: p)  # type: ignore[arg-type]


def test_connections_that_trickle_or_never_send_headers_are_closed(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    import threading
    import time

    service = _service(tmp_path, gateway, max_concurrent_requests=3, header_timeout_s=1.0)
    head = _raw_head(MultipartBody(photos), 1000)
    address = ("127.0.0.1", service.stow.port)
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:  # one byte every 0.1 s: the headers never end in time
        try:
            for at in range(len(head) - 4):
                if stop.wait(0.1):
                    return
                sock.sendall(head[at : at + 1])
        except OSError:  # the server closed the connection
            pass

    def closed_within(sock: socket.socket) -> float:
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed without a response
        return time.monotonic() - started

    with capture_logs() as logs:
        with (
            socket.create_connection(address, timeout=10) as idle,
            socket.create_connection(address, timeout=10) as slow,
        ):
            sender = threading.Thread(target=trickle, args=(slow,), daemon=True)
            sender.start()
            assert _post(service, photos[:1]).status_code == 200  # the third slot works meanwhile
            assert closed_within(idle) < 3 and closed_within(slow) < 3
            stop.set()
            sender.join(timeout=5)
        assert _post(service, photos[1:2]).status_code == 200
    reasons = [e["reason"] for e in logs if e["event"] == "stow.request"]
    assert sorted(reasons) == ["header-timeout", "header-timeout", "ok", "ok"]
    body = MultipartBody(photos[2:])
    headers = {"Content-Type": body.content_type, "Authorization": f"Bearer {TOKEN}"}
    with capture_logs() as logs, httpx.Client(timeout=10) as client:  # keep-alive: idle after its answer
        assert (
            client.post(_url(service) + "/studies", content=b"".join(body), headers=headers).status_code
            == 200
        )
        time.sleep(1.5)
    assert [e["reason"] for e in logs if e["event"] == "stow.request"] == ["ok"]  # closed quietly


def test_a_408_reaches_a_client_that_goes_on_sending_after_it(
    tmp_path: Path, gateway: Any, photos: list[Path]
) -> None:
    """The server half-closes after a 408 and drops late bytes: a socket closed outright while the client's
    bytes keep arriving is reset, and the client's read can end in ECONNRESET instead of a clean end."""
    import threading

    service = _service(tmp_path, gateway, min_body_bytes_per_s=0, body_timeout_s=1.0)
    multipart = MultipartBody(photos[:1])
    body = b"".join(multipart)
    stop = threading.Event()

    def keep_sending(sock: socket.socket) -> None:  # a byte every 2 ms, never the whole body
        try:
            for at in range(100, len(body) - 1):
                if stop.wait(0.002):
                    return
                sock.send(body[at : at + 1])
        except OSError:
            pass

    with socket.create_connection(("127.0.0.1", service.stow.port), timeout=15) as sock:
        sock.sendall(_raw_head(multipart, len(body)) + body[:100])
        sender = threading.Thread(target=keep_sending, args=(sock,), daemon=True)
        sender.start()
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        finally:
            stop.set()
            sender.join(timeout=5)
    assert answer.startswith(b"HTTP/1.1 408")
