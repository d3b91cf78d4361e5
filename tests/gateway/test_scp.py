"""The SCP with real peers: DCMTK storescu/echoscu and a pynetdicom SCU sending raw (bad) bytes."""

from __future__ import annotations

import errno
import subprocess
import threading
from pathlib import Path

import pytest
from pynetdicom import AE, _config
from pynetdicom.sop_class import SecondaryCaptureImageStorage, VLPhotographicImageStorage  # type: ignore

from dicom_rules import FolderDestination
from gateway.core.config import CallerRule
from tests.conftest import DCMTK_ENV, Study, face_photos, make_small_sc, make_vl_photo, write_study
from tests.gateway.conftest import gateway_config, instance_states, ledger_of, rules_to, storescu, wait_until

pytestmark = pytest.mark.integration

SYNTAXES = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1"]


def quiet_config(tmp_path: Path, **overrides: object):
    """No job becomes ready during these tests: they look at the receive path only."""
    return gateway_config(tmp_path / "gw", quiet_period_s=600, max_wait_s=600, workers=0, **overrides)


def send_raw(port: int, path: Path, aet: str = "HOSP_PACS") -> int:
    """C-STORE the file's bytes after its file meta as they are (no decoding), return the status."""
    ae = AE(ae_title=aet)
    for syntax in SYNTAXES:
        ae.add_requested_context(SecondaryCaptureImageStorage, [syntax])
        ae.add_requested_context(VLPhotographicImageStorage, [syntax])
    assoc = ae.associate("127.0.0.1", port, ae_title="VERA_GW")
    assert assoc.is_established
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        status = assoc.send_c_store(path)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
        assoc.release()
    return int(status.Status)


def test_storescu_jpeg_photos_are_spooled_under_hash_names(tmp_path: Path, gateway) -> None:
    study = Study()
    files = write_study(
        tmp_path / "in", [make_vl_photo(p, study=study, number=i) for i, p in enumerate(face_photos(3))]
    )
    config = quiet_config(tmp_path)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    echo = subprocess.run(
        ["/usr/bin/echoscu", "-aet", "HOSP_PACS", "-aec", "VERA_GW", "127.0.0.1", str(service.port)],
        capture_output=True,
        text=True,
        env=DCMTK_ENV,
        timeout=30,
    )
    assert echo.returncode == 0, echo.stderr
    result = storescu(service.port, files)
    assert result.returncode == 0, result.stderr
    states = instance_states(config)
    assert sum(states.values()) == 3 and set(states) <= {"received", "grouped"}
    spooled = sorted(p.name for p in config.spool_dir.rglob("*.dcm"))
    assert len(spooled) == 3 and all(len(name) == 64 + 4 for name in spooled)
    assert study.study_uid not in " ".join(spooled)
    with ledger_of(config) as ledger:
        assert {r.transfer_syntax for r in ledger.instances()} == {"1.2.840.10008.1.2.4.50"}


def test_resending_the_same_instance_is_idempotent(tmp_path: Path, gateway) -> None:
    files = write_study(tmp_path / "in", [make_small_sc()])
    config = quiet_config(tmp_path)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    for _ in range(2):
        assert storescu(service.port, files).returncode == 0
    assert sum(instance_states(config).values()) == 1


def test_unknown_calling_ae_is_rejected_at_association(tmp_path: Path, gateway) -> None:
    files = write_study(tmp_path / "in", [make_small_sc()])
    config = quiet_config(
        tmp_path, allowed_callers=(CallerRule(ae_title="HOSP_PACS", networks=("127.0.0.0/8",)),)
    )
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    refused = storescu(service.port, files, aet="INTRUDER")
    assert refused.returncode != 0 and "Rejected" in refused.stderr + refused.stdout
    assert not config.spool_dir.exists() or not list(config.spool_dir.rglob("*.dcm"))
    assert storescu(service.port, files, aet="HOSP_PACS").returncode == 0


def test_garbage_and_truncated_datasets_fail_while_parallel_good_association_succeeds(
    tmp_path: Path,
    gateway,
) -> None:
    good = write_study(tmp_path / "good", [make_small_sc(number=n) for n in range(20)])
    bad_dir = tmp_path / "bad"
    (sc_file,) = write_study(bad_dir / "sc", [make_small_sc(number=99)])
    (photo_file,) = write_study(bad_dir / "vl", [make_vl_photo(face_photos(1)[0])])
    raw = sc_file.read_bytes()
    truncated_sc = bad_dir / "truncated_sc.dcm"
    truncated_sc.write_bytes(raw[: len(raw) - 20000])
    truncated_photo = bad_dir / "truncated_photo.dcm"
    truncated_photo.write_bytes(photo_file.read_bytes()[:-50000])
    garbage = bad_dir / "garbage.dcm"
    meta_end = raw.index(b"\x08\x00")  # first dataset element after the file meta group
    garbage.write_bytes(raw[:meta_end] + bytes(range(256)) * 40)
    config = quiet_config(tmp_path)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    good_result: list[subprocess.CompletedProcess[str]] = []
    sender = threading.Thread(target=lambda: good_result.append(storescu(service.port, good)))
    sender.start()
    statuses = [send_raw(service.port, p) for p in (garbage, truncated_sc, truncated_photo)]
    sender.join(timeout=120)
    assert all(s in (0xC210, 0xA900) or (s & 0xF000) in (0xA000, 0xC000) for s in statuses), statuses
    assert all(s != 0 for s in statuses)
    assert good_result and good_result[0].returncode == 0, good_result[0].stderr if good_result else "no run"
    assert sum(instance_states(config).values()) == 20
    with ledger_of(config) as ledger:
        items = ledger.quarantine_items()
    assert len(items) == 3 and all(i.kind == "receive" and i.blob_path for i in items)


def test_store_fails_0xA700_when_disk_full(tmp_path: Path, gateway) -> None:
    def full_disk(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    (path,) = write_study(tmp_path / "in", [make_small_sc()])
    config = quiet_config(tmp_path)
    service = gateway(
        config, rules=rules_to(FolderDestination("out", tmp_path / "out")), spool_writer=full_disk
    )
    assert send_raw(service.port, path) == 0xA700
    assert [p for p in config.spool_dir.rglob("*") if p.is_file()] == []
    assert instance_states(config) == {}


def test_cli_echo_reaches_a_dicom_peer_and_reports_a_dead_one(tmp_path: Path, gateway, capsys) -> None:
    from gateway.cli import main as cli_main
    from tests.conftest import free_port

    config = quiet_config(tmp_path)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    data = ["--data-dir", str(config.data_dir)]
    assert cli_main(["echo", f"VERA_GW@127.0.0.1:{service.port}", *data]) == 0
    assert cli_main(["echo", f"NOBODY@127.0.0.1:{free_port()}", *data]) == 1
    assert cli_main(["echo", "no-such-destination", *data]) == 2
    out = capsys.readouterr().out
    assert "OK" in out and "FAILED" in out


def test_unacknowledged_spool_files_are_counted_at_start(tmp_path: Path, gateway) -> None:
    from gateway.core.spool import ContentStore

    config = quiet_config(tmp_path)
    ContentStore(config.spool_dir).put(b"spooled, then the service died before the ledger commit")
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    assert service.count_spool_orphans() == 1
    (path,) = write_study(tmp_path / "in", [make_small_sc()])
    assert storescu(service.port, [path]).returncode == 0
    assert service.count_spool_orphans() == 1  # a received instance is not an orphan


def test_a_c_store_on_a_context_id_never_accepted_aborts_only_its_association(
    tmp_path: Path, gateway
) -> None:
    """pynetdicom answers a C-STORE on a context ID it never accepted with an A-ABORT; the next association
    stores."""
    from io import BytesIO

    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    config = quiet_config(tmp_path)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    ds = make_small_sc(side=32, number=1)
    ae = AE(ae_title="HOSP_PACS")
    ae.add_requested_context(SecondaryCaptureImageStorage, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", service.port, ae_title="VERA_GW")
    assert assoc.is_established
    assert assoc.send_c_store(ds).Status == 0x0000
    req = C_STORE()
    req.MessageID, req.Priority = 2, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    req.DataSet = BytesIO(encode(ds, False, True))
    assoc.dimse.send_msg(req, 99)  # a context ID the gateway never accepted
    wait_until(lambda: assoc.is_aborted, timeout=10)
    files = write_study(tmp_path / "in", [make_small_sc(side=32, number=3)])
    assert storescu(service.port, files, timeout=30).returncode == 0
    assert sum(instance_states(config).values()) == 2
