"""DICOM TLS with real peers: DCMTK storescp/storescu on one side, pynetdicom with our contexts."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import SecondaryCaptureImageStorage, Verification

from dicom_rules.decision import TlsSettings
from gateway.ops.tls import TlsConfigError, client_context, server_context, tls_settings_from_mapping
from tests.ops.peers import dcmtk_storescp, free_port, secondary_capture, storescu, write_instance
from tests.ops.pki import Pki

pytestmark = pytest.mark.integration


def _server_settings(pki: Pki, require: bool = True) -> TlsSettings:
    return TlsSettings(pki.server.certificate, pki.server.private_key, pki.ca, require)


def _client_settings(pki: Pki, identity: str = "client") -> TlsSettings:
    ident = getattr(pki, identity)
    return TlsSettings(ident.certificate, ident.private_key, pki.ca, True)


def _send(port: int, ctx: ssl.SSLContext, ds: Dataset) -> int | None:
    ae = AE(ae_title="VERA-GW")
    ae.add_requested_context(SecondaryCaptureImageStorage)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="STORESCP", tls_args=(ctx, None))
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(ds)
        return int(status.Status) if "Status" in status else None
    finally:
        assoc.release()


def _dcmtk_server_tls(pki: Pki) -> list[str]:
    return ["+tls", str(pki.server.private_key), str(pki.server.certificate), "+cf", str(pki.ca), "-rc"]


def test_forwarder_client_context_sends_to_dcmtk_tls_storescp(pki: Pki, tmp_path: Path) -> None:
    port, out = free_port(), tmp_path / "received"
    ds = secondary_capture(1)
    with dcmtk_storescp(port, out, _dcmtk_server_tls(pki)):
        status = _send(port, client_context(_client_settings(pki)), ds)
    assert status == 0x0000
    received = list(out.iterdir())
    assert len(received) == 1 and ds.SOPInstanceUID in received[0].name


def test_client_refuses_destination_with_untrusted_certificate(pki: Pki, tmp_path: Path) -> None:
    port = free_port()
    rogue_server = ["+tls", str(pki.rogue.private_key), str(pki.rogue.certificate), "-ic"]
    with dcmtk_storescp(port, tmp_path / "rogue", rogue_server):
        status = _send(port, client_context(_client_settings(pki)), secondary_capture(2))
    assert status is None
    assert not any((tmp_path / "rogue").iterdir())


def test_dcmtk_client_without_valid_certificate_cannot_send_to_dcmtk(pki: Pki, tmp_path: Path) -> None:
    """Control: DCMTK refuses our rogue client too, so the refusal tests below mean something."""
    port = free_port()
    with dcmtk_storescp(port, tmp_path / "in", _dcmtk_server_tls(pki)):
        status = _send(port, client_context(_client_settings(pki, "rogue")), secondary_capture(3))
    assert status is None


def _eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _handshake_refusals() -> float:
    from gateway.ops.policy import REFUSALS, RefusalReason

    return float(REFUSALS.labels(reason=RefusalReason.TLS_HANDSHAKE.value)._value.get())


class _TlsScp:
    """A pynetdicom SCP on the server context, recording what it stored."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.stored: list[str] = []
        self.lock = threading.Lock()
        ae = AE(ae_title="VERA-GW")
        ae.add_supported_context(SecondaryCaptureImageStorage)
        ae.add_supported_context(Verification)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 10
        handlers = [(evt.EVT_C_STORE, self._on_store)]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=ctx, evt_handlers=handlers)
        self.port = int(self.server.server_address[1])

    def _on_store(self, event: evt.Event) -> int:
        with self.lock:
            self.stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def tls_scp(pki: Pki):  # type: ignore[no-untyped-def]
    scp = _TlsScp(server_context(_server_settings(pki), handshake_timeout_s=5))
    yield scp
    scp.close()


def test_dcmtk_storescu_sends_over_tls_to_gateway_listener(
    pki: Pki, tls_scp: _TlsScp, tmp_path: Path
) -> None:
    ds = write_instance(tmp_path / "a.dcm", 4)
    tls = ["+tls", str(pki.client.private_key), str(pki.client.certificate), "+cf", str(pki.ca)]
    result = storescu(tls_scp.port, [tmp_path / "a.dcm"], tls)
    assert result.returncode == 0, result.stdout + result.stderr
    assert tls_scp.stored == [ds.SOPInstanceUID]


@pytest.mark.parametrize(
    "peer",
    [
        pytest.param("anonymous", id="no-certificate"),
        pytest.param("rogue", id="certificate-from-another-ca"),
    ],
)
def test_gateway_listener_refuses_peer_without_valid_certificate(
    pki: Pki, tls_scp: _TlsScp, tmp_path: Path, peer: str
) -> None:
    write_instance(tmp_path / "b.dcm", 5)
    if peer == "anonymous":
        tls = ["+tla", "+cf", str(pki.ca)]
    else:
        tls = ["+tls", str(pki.rogue.private_key), str(pki.rogue.certificate), "+cf", str(pki.ca)]
    before = _handshake_refusals()
    result = storescu(tls_scp.port, [tmp_path / "b.dcm"], tls)
    assert result.returncode != 0
    assert tls_scp.stored == []
    assert _eventually(lambda: _handshake_refusals() == before + 1)  # logged and counted by the server
    # the listener still serves a good peer afterwards
    good = ["+tls", str(pki.client.private_key), str(pki.client.certificate), "+cf", str(pki.ca)]
    assert storescu(tls_scp.port, [tmp_path / "b.dcm"], good).returncode == 0
    assert len(tls_scp.stored) == 1


def test_plain_tcp_client_is_refused_by_tls_listener(tls_scp: _TlsScp, tmp_path: Path) -> None:
    write_instance(tmp_path / "c.dcm", 6)
    result = storescu(tls_scp.port, [tmp_path / "c.dcm"], timeout=20)
    assert result.returncode != 0
    assert tls_scp.stored == []


def test_contexts_allow_only_tls12_and_newer_with_aead_ciphers(pki: Pki) -> None:
    for ctx in (server_context(_server_settings(pki)), client_context(_client_settings(pki))):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12 and all(c["aead"] for c in tls12)
        assert all("GCM" in c["name"] for c in tls12)


def test_server_requires_peer_certificate_by_default(pki: Pki) -> None:
    assert server_context(_server_settings(pki)).verify_mode == ssl.CERT_REQUIRED
    relaxed = TlsSettings(pki.server.certificate, pki.server.private_key, None, False)
    assert server_context(relaxed).verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (TlsSettings(None, None, None, True), "certificate is not configured"),
        (TlsSettings(Path("/nonexistent.crt"), Path("/nonexistent.key"), None, True), "does not exist"),
    ],
)
def test_misconfigured_server_context_names_the_fix(settings: TlsSettings, message: str) -> None:
    with pytest.raises(TlsConfigError, match=message):
        server_context(settings)


def test_server_with_required_peer_certificate_but_no_ca_bundle_is_refused(pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match="CA bundle"):
        server_context(TlsSettings(pki.server.certificate, pki.server.private_key, None, True))


def test_mismatched_key_and_certificate_are_refused(pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match="do not load together"):
        server_context(TlsSettings(pki.server.certificate, pki.client.private_key, pki.ca, True))


def test_settings_from_mapping_resolves_relative_paths(tmp_path: Path) -> None:
    tls = tls_settings_from_mapping({"certificate": "c.pem", "ca_bundle": "/etc/ca.pem"}, tmp_path)
    assert tls is not None and tls.certificate == tmp_path / "c.pem" and tls.ca_bundle == Path("/etc/ca.pem")
    assert tls.require_peer_certificate is True
    assert tls_settings_from_mapping(None) is None
    with pytest.raises(TlsConfigError, match="unknown"):
        tls_settings_from_mapping({"cert": "x"})


def test_service_config_tls_section_builds_listener_context(pki: Pki, tmp_path: Path) -> None:
    from gateway.core.config import ConfigError, load_config

    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"data_dir: {tmp_path}\ntls:\n  port: 2762\n  certificate: {pki.server.certificate}\n"
        f"  private_key: {pki.server.private_key}\n  ca_bundle: {pki.ca}\n"
    )
    config = load_config(path)
    assert config.tls is not None and config.tls.port == 2762
    assert config.tls.context(config.resolve).verify_mode == ssl.CERT_REQUIRED
    path.write_text(
        f"tls:\n  certificate: {pki.server.certificate}\n  private_key: {pki.server.private_key}\n"
    )
    with pytest.raises(ConfigError, match="ca_bundle"):
        load_config(path)


def test_silent_client_holds_the_tls_listener_no_longer_than_the_handshake_timeout(
    pki: Pki, tmp_path: Path
) -> None:
    import socket

    scp = _TlsScp(server_context(_server_settings(pki), handshake_timeout_s=1.0))
    try:
        write_instance(tmp_path / "d.dcm", 7)
        good = ["+tls", str(pki.client.private_key), str(pki.client.certificate), "+cf", str(pki.ca)]
        with socket.create_connection(("127.0.0.1", scp.port)):  # connects, never says ClientHello
            started = time.monotonic()
            result = storescu(scp.port, [tmp_path / "d.dcm"], good, timeout=30)
            elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(scp.stored) == 1 and elapsed < 10
    finally:
        scp.close()
