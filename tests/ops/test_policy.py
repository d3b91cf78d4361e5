"""Association policy: allow-list, called-AE check, limits overall and per source, with real peers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import SecondaryCaptureImageStorage, Verification

from dicom_rules.decision import Source
from dicom_rules.ruleset import RuleSet
from gateway.ops.policy import (
    REFUSALS,
    AssociationGate,
    AssociationLimits,
    AssociationPolicy,
    RefusalReason,
    configure_ae,
    policy_from_rules,
)
from tests.ops.peers import echoscu, refused_at_limit, secondary_capture, storescu, write_instance

LIMITS = AssociationLimits(max_associations=3, max_per_source=8, acse_timeout_s=5, dimse_timeout_s=5)


def _refusals(reason: RefusalReason) -> float:
    return REFUSALS.labels(reason=reason.value)._value.get()


# ---- pure policy ---------------------------------------------------------------------------------------


def test_open_policy_admits_any_caller_but_checks_called_ae() -> None:
    policy = AssociationPolicy(called_ae_titles=frozenset({"VERA-GW"}))
    assert policy.check_caller("ANYONE", "VERA-GW", "10.1.2.3") is None
    refusal = policy.check_caller("ANYONE", "OTHER", "10.1.2.3")
    assert refusal is not None and refusal.reason == RefusalReason.CALLED_AE_NOT_RECOGNISED
    assert refusal.reject_codes == (1, 1, 7)


@pytest.mark.parametrize(
    ("calling", "ip", "expected"),
    [
        ("PACS1", "10.20.0.7", None),
        ("PACS1  ", "10.20.0.7", None),  # AE titles are space padded on the wire
        ("PACS1", "10.21.0.7", RefusalReason.ADDRESS_NOT_ALLOWED),
        ("PACS1", "::ffff:10.20.0.7", None),  # IPv4-mapped IPv6 from a dual-stack socket
        ("PACS1", "not-an-ip", RefusalReason.ADDRESS_NOT_ALLOWED),
        ("MODALITY", "192.168.5.5", None),  # no networks: any address
        ("INTRUDER", "10.20.0.7", RefusalReason.CALLING_AE_NOT_ALLOWED),
        ("CAM", "172.16.3.4", None),  # host bits in the configured CIDR are tolerated
        ("CAM", "172.17.3.4", RefusalReason.ADDRESS_NOT_ALLOWED),
    ],
)
def test_allow_list_matches_ae_title_and_cidr(calling: str, ip: str, expected: RefusalReason | None) -> None:
    sources = (
        Source("PACS1", ("10.20.0.0/16",)),
        Source("MODALITY"),
        Source("CAM", ("172.16.9.9/16",)),
    )
    policy = AssociationPolicy(sources)
    refusal = policy.check_caller(calling, "VERA-GW", ip)
    assert (refusal.reason if refusal else None) == expected
    rules = RuleSet(name="site", sha256="0" * 64, sources=policy.sources)
    assert rules.source_allowed(calling, ip) == (expected is None)  # the gate and the rules agree


@pytest.mark.parametrize(
    ("calling", "ip", "expected"),
    [
        ("ANY_MODALITY", "10.30.1.2", None),  # the README's wildcard form admits any AE title ...
        ("PACS1", "10.30.255.1", None),
        ("ANY_MODALITY", "10.31.0.1", RefusalReason.ADDRESS_NOT_ALLOWED),  # ... only from its networks
    ],
)
def test_wildcard_source_admits_any_ae_title_from_its_networks(
    calling: str, ip: str, expected: RefusalReason | None
) -> None:
    policy = AssociationPolicy((Source("*", ("10.30.0.0/16",)),))
    refusal = policy.check_caller(calling, "VERA-GW", ip)
    assert (refusal.reason if refusal else None) == expected
    rules = RuleSet(name="site", sha256="0" * 64, sources=policy.sources)
    assert rules.source_allowed(calling, ip) == (expected is None)


def test_policy_comes_from_rule_sources() -> None:
    rules = RuleSet(name="site", sha256="0" * 64, sources=(Source("PACS1", ("127.0.0.1/32",)),))
    policy = policy_from_rules(rules, LIMITS, ["VERA-GW"])
    assert policy.check_caller("PACS1", "VERA-GW", "127.0.0.1") is None
    refusal = policy.check_caller("PACS2", "VERA-GW", "127.0.0.1")
    assert refusal is not None and refusal.reason == RefusalReason.CALLING_AE_NOT_ALLOWED


def test_invalid_cidr_and_limits_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="invalid source network"):
        AssociationPolicy((Source("PACS1", ("10.0.0.300/8",)),))
    with pytest.raises(ValueError):
        AssociationLimits(max_associations=0)
    with pytest.raises(ValueError):
        AssociationLimits(max_pdu_bytes=100)


def test_gate_counts_overall_and_per_source_and_frees_slots() -> None:
    gate = AssociationGate(AssociationPolicy(limits=AssociationLimits(max_associations=3, max_per_source=2)))
    assert gate.admit(1, "A", "GW", "10.0.0.1") is None
    assert gate.admit(2, "A", "GW", "10.0.0.1") is None
    refused = gate.admit(3, "A", "GW", "10.0.0.1")
    assert refused is not None and refused.reason == RefusalReason.TOO_MANY_FROM_SOURCE
    assert gate.admit(4, "B", "GW", "10.0.0.2") is None
    refused = gate.admit(5, "C", "GW", "10.0.0.3")
    assert refused is not None and refused.reason == RefusalReason.TOO_MANY_ASSOCIATIONS
    gate.release(1)
    gate.release(1)  # idempotent: a refused or already-closed association frees nothing
    gate.release(99)
    assert gate.active() == 2 and gate.active("10.0.0.1") == 1
    assert gate.admit(6, "C", "GW", "10.0.0.3") is None


# ---- with real associations ------------------------------------------------------------------------------


class _GatedScp:
    def __init__(self, policy: AssociationPolicy) -> None:
        self.gate = AssociationGate(policy)
        self.stored: list[str] = []
        self._lock = threading.Lock()
        ae = AE(ae_title="VERA-GW")
        ae.add_supported_context(SecondaryCaptureImageStorage)
        ae.add_supported_context(Verification)
        configure_ae(ae, policy.limits)
        handlers = [(evt.EVT_C_STORE, self._on_store), *self.gate.evt_handlers()]
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = int(self.server.server_address[1])

    def _on_store(self, event: evt.Event) -> int:
        with self._lock:
            self.stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000


@pytest.fixture
def gated_scp(request: pytest.FixtureRequest) -> Iterator[_GatedScp]:
    policy = getattr(request, "param", AssociationPolicy(limits=LIMITS))
    scp = _GatedScp(policy)
    yield scp
    scp.server.shutdown()


def _associate(port: int, calling: str = "SCU", called: str = "VERA-GW") -> Association:
    ae = AE(ae_title=calling)
    ae.add_requested_context(SecondaryCaptureImageStorage)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title=called)


@pytest.mark.integration
def test_association_beyond_limit_is_refused_while_first_n_complete(gated_scp: _GatedScp) -> None:
    before = _refusals(RefusalReason.TOO_MANY_ASSOCIATIONS)
    first = [_associate(gated_scp.port, f"SCU{i}") for i in range(LIMITS.max_associations)]
    assert all(a.is_established for a in first)
    assert gated_scp.gate.active() == LIMITS.max_associations

    extra = echoscu(gated_scp.port, aec="VERA-GW")  # not pynetdicom: it can report a fast RJ as an abort
    assert refused_at_limit(extra), extra.stdout + extra.stderr  # RJ (0x02, 0x03, 0x02)
    assert _refusals(RefusalReason.TOO_MANY_ASSOCIATIONS) == before + 1

    datasets = [secondary_capture(10 + i) for i in range(len(first))]
    for assoc, ds in zip(first, datasets, strict=True):
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
    assert sorted(gated_scp.stored) == sorted(ds.SOPInstanceUID for ds in datasets)
    # slots are freed on close, which pynetdicom's acceptor sees after release() has returned here
    assert _wait_until(lambda: gated_scp.gate.active() == 0)
    again = _associate(gated_scp.port, "SCU-LATER")
    assert again.is_established
    again.release()


@pytest.mark.integration
@pytest.mark.parametrize(
    "gated_scp",
    [AssociationPolicy(limits=AssociationLimits(max_associations=10, max_per_source=2))],
    indirect=True,
)
def test_per_source_limit_refuses_third_association_from_same_address(gated_scp: _GatedScp) -> None:
    first = [_associate(gated_scp.port) for _ in range(2)]
    assert all(a.is_established for a in first)
    third = echoscu(gated_scp.port, aec="VERA-GW")
    assert refused_at_limit(third), third.stdout + third.stderr
    for assoc in first:
        assert assoc.send_c_echo().Status == 0x0000
        assoc.abort()  # aborted associations free their slot too
    assert _wait_until(lambda: gated_scp.gate.active() == 0)


def _wait_until(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        done.wait(0.02)
    return bool(predicate())


ALLOW_LIST = AssociationPolicy(
    sources=(Source("PACS1", ("127.0.0.0/8",)), Source("REMOTE", ("10.0.0.0/8",))),
    called_ae_titles=frozenset({"VERA-GW"}),
    limits=LIMITS,
)


@pytest.mark.integration
@pytest.mark.parametrize("gated_scp", [ALLOW_LIST], indirect=True)
@pytest.mark.parametrize(
    ("calling", "called", "reason", "ok"),
    [
        ("PACS1", "VERA-GW", None, True),
        ("INTRUDER", "VERA-GW", RefusalReason.CALLING_AE_NOT_ALLOWED, False),
        ("REMOTE", "VERA-GW", RefusalReason.ADDRESS_NOT_ALLOWED, False),
        ("PACS1", "SOMEONE-ELSE", RefusalReason.CALLED_AE_NOT_RECOGNISED, False),
    ],
)
def test_dcmtk_storescu_allowed_only_from_listed_ae_and_network(
    gated_scp: _GatedScp, tmp_path: Path, calling: str, called: str, reason: RefusalReason | None, ok: bool
) -> None:
    before = _refusals(reason) if reason else 0.0
    ds = write_instance(tmp_path / "x.dcm", 20)
    result = storescu(gated_scp.port, [tmp_path / "x.dcm"], aet=calling, aec=called)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    assert gated_scp.stored == ([ds.SOPInstanceUID] if ok else [])
    if reason:
        assert _refusals(reason) == before + 1
    assert _wait_until(lambda: gated_scp.gate.active() == 0)


def test_configure_ae_applies_timeouts_and_pdu() -> None:
    ae = AE()
    configure_ae(
        ae, AssociationLimits(acse_timeout_s=7, dimse_timeout_s=8, idle_timeout_s=9, max_pdu_bytes=65536)
    )
    assert (ae.acse_timeout, ae.dimse_timeout, ae.network_timeout) == (7, 8, 9)
    assert ae.maximum_pdu_size == 65536 and ae.maximum_associations > 16


RULES_WITH_SOURCES = """version: 1
name: hot-reload
sources:
{sources}
destinations:
  out:
    folder: out
routes:
  - name: catch-all
    pixels: {{mode: blank}}
    to: out
"""


def _write_rules(path: Path, *aes: str) -> None:
    sources = "\n".join(f"  - ae_title: {ae}\n    networks: [127.0.0.0/8]" for ae in aes)
    path.write_text(RULES_WITH_SOURCES.format(sources=sources))


@pytest.mark.integration
def test_gateway_admits_a_source_added_to_the_rule_file_without_restart(tmp_path: Path) -> None:
    from gateway.core.service import Service
    from tests.gateway.conftest import gateway_config

    rules = tmp_path / "rules.yaml"
    _write_rules(rules, "PACS1")
    service = Service(gateway_config(tmp_path / "gw", rules_file=rules)).start()
    try:
        write_instance(tmp_path / "x.dcm", 60)
        assert storescu(service.port, [tmp_path / "x.dcm"], aet="PACS2", aec="VERA_GW").returncode != 0
        assert storescu(service.port, [tmp_path / "x.dcm"], aet="PACS1", aec="VERA_GW").returncode == 0
        _write_rules(rules, "PACS1", "PACS2")
        assert _wait_until(lambda: service.rules().sources[-1].ae_title == "PACS2", 10)
        assert _wait_until(
            lambda: storescu(service.port, [tmp_path / "x.dcm"], aet="PACS2", aec="VERA_GW").returncode == 0,
            10,
        )
    finally:
        service.stop()


@pytest.mark.integration
def test_running_gateway_refuses_association_beyond_limit_while_first_n_store(tmp_path: Path) -> None:
    from dicom_rules.decision import FolderDestination
    from gateway.core.service import Service
    from tests.gateway.conftest import gateway_config, instance_states, rules_to

    n = 3
    config = gateway_config(
        tmp_path / "gw", max_associations=n, max_associations_per_source=n, quiet_period_s=3600
    )
    service = Service(config, rules=rules_to(FolderDestination("out", Path("out")))).start()
    try:
        first = [_associate(service.port, f"SCU{i}", config.ae_title) for i in range(n)]
        assert all(a.is_established for a in first)
        extra = echoscu(service.port, aec=config.ae_title)
        assert refused_at_limit(extra), extra.stdout + extra.stderr
        for i, assoc in enumerate(first):
            assert assoc.send_c_store(secondary_capture(70 + i)).Status == 0x0000
            assoc.release()
        assert sum(instance_states(config).values()) == n
    finally:
        service.stop()
