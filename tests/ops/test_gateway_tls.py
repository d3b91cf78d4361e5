"""The running gateway with its plain and TLS listeners side by side, forwarding over TLS: DCMTK storescu
+tls → gateway TLS port → pipeline → forwarder over TLS → DCMTK storescp +tls; refusals on the TLS port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from anonymizer.plans import PixelMode
from dicom_rules.decision import DicomDestination, TlsSettings
from gateway.core.service import Service
from gateway.ops.tls import TlsListenerConfig, client_context
from tests.gateway.conftest import gateway_config, instance_states, rules_to, wait_until
from tests.ops.peers import dcmtk_storescp, echoscu, free_port, refused_at_limit, storescu, write_instance
from tests.ops.pki import Pki

pytestmark = pytest.mark.integration


def _client_tls(pki: Pki, identity: str = "client") -> list[str]:
    ident = getattr(pki, identity)
    return ["+tls", str(ident.private_key), str(ident.certificate), "+cf", str(pki.ca)]


@pytest.fixture
def research_pacs(pki: Pki, tmp_path: Path) -> Iterator[tuple[DicomDestination, Path]]:
    port, received = free_port(), tmp_path / "research"
    server = ["+tls", str(pki.server.private_key), str(pki.server.certificate), "+cf", str(pki.ca), "-rc"]
    tls = TlsSettings(pki.client.certificate, pki.client.private_key, pki.ca, True)
    with dcmtk_storescp(port, received, server):
        yield DicomDestination("research", "STORESCP", "127.0.0.1", port, tls), received


@pytest.fixture
def service(
    pki: Pki, tmp_path: Path, research_pacs: tuple[DicomDestination, Path], request: pytest.FixtureRequest
) -> Iterator[Service]:
    listener = TlsListenerConfig(
        port=free_port(),
        certificate=pki.server.certificate,
        private_key=pki.server.private_key,
        ca_bundle=pki.ca,
        handshake_timeout_s=5,
    )
    overrides = getattr(request, "param", {})
    config = gateway_config(tmp_path / "gw", tls=listener, ae_title="VERA_GW", **overrides)
    svc = Service(config, rules=rules_to(research_pacs[0], PixelMode.BLANK)).start()
    yield svc
    svc.stop()


def _received(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.exists() else []


def test_tls_and_plain_listeners_receive_and_forward_over_tls(
    pki: Pki, tmp_path: Path, service: Service, research_pacs: tuple[DicomDestination, Any]
) -> None:
    assert service.config.tls is not None
    files = [tmp_path / "tls.dcm", tmp_path / "plain.dcm"]
    for i, path in enumerate(files):
        write_instance(path, 40 + i)
    sent_tls = storescu(service.config.tls.port, files[:1], _client_tls(pki), aec="VERA_GW")
    sent_plain = storescu(service.port, files[1:], aec="VERA_GW")
    assert sent_tls.returncode == 0, sent_tls.stdout + sent_tls.stderr
    assert sent_plain.returncode == 0, sent_plain.stdout + sent_plain.stderr
    try:  # generous: the pipeline runs in a worker process, and CI machines are shared
        wait_until(lambda: instance_states(service.config).get("forwarded") == 2, 120)
    except TimeoutError:
        pytest.fail(f"not forwarded: ledger states {instance_states(service.config)}")
    assert len(_received(research_pacs[1])) == 2  # storescp wrote both before answering Success


@pytest.mark.parametrize("peer", ["anonymous", "rogue", "plain"])
def test_gateway_tls_port_refuses_peer_without_valid_certificate(
    pki: Pki, tmp_path: Path, service: Service, peer: str
) -> None:
    assert service.config.tls is not None
    write_instance(tmp_path / "x.dcm", 50)
    tls = {"anonymous": ["+tla", "+cf", str(pki.ca)], "rogue": _client_tls(pki, "rogue"), "plain": []}[peer]
    result = storescu(service.config.tls.port, [tmp_path / "x.dcm"], tls, aec="VERA_GW", timeout=30)
    assert result.returncode != 0
    assert instance_states(service.config) == {} or sum(instance_states(service.config).values()) == 0


def _associate(port: int, tls: Any = None) -> Any:
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title="VERA_GW", tls_args=tls)


@pytest.mark.parametrize(
    "service", [{"max_associations": 2, "max_associations_per_source": 10}], indirect=True
)
def test_association_limit_is_shared_by_plain_and_tls_listeners(pki: Pki, service: Service) -> None:
    assert service.config.tls is not None
    tls_args = (client_context(TlsSettings(pki.client.certificate, pki.client.private_key, pki.ca)), None)
    plain = _associate(service.port)
    over_tls = _associate(service.config.tls.port, tls_args)
    assert plain.is_established and over_tls.is_established
    # refusals probed with DCMTK's echoscu: pynetdicom can report a fast RJ as an abort (see peers.echoscu)
    for refused in (
        echoscu(service.port, aec="VERA_GW"),
        echoscu(service.config.tls.port, _client_tls(pki), aec="VERA_GW"),
    ):
        assert refused_at_limit(refused), refused.stdout + refused.stderr
    for assoc in (plain, over_tls):
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    # the slot is freed just after the A-RELEASE-RP is sent: poll, generously (one TLS try can take seconds)
    again = wait_until(lambda: _established_or_release(_associate(service.config.tls.port, tls_args)), 30)
    assert again


def _established_or_release(assoc: Any) -> bool:
    if assoc.is_established:
        assoc.release()
        return True
    return False
