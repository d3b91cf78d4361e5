"""The lean receive path (gateway/core/lean_scp.py): its command-set codec against pynetdicom's, photos that
arrive over many PDUs spooled byte for byte, the DIMSE timeout, and the pynetdicom path behind the switch."""

from __future__ import annotations

import hashlib
import socket
import struct
import time
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import decode, encode

from dicom_rules import FolderDestination
from gateway.core.lean_scp import (
    C_STORE_RSP,
    LeanAssociation,
    command_uid,
    command_us,
    parse_command,
    response,
)
from tests.conftest import Study, face_photos, make_small_sc, make_vl_photo, write_study
from tests.gateway.conftest import gateway_config, instance_states, rules_to, storescu, wait_until
from tests.gateway.test_admission import _item, associate_rq, closed_count, connect, is_closed, read_pdu

pytestmark = pytest.mark.integration


def pynetdicom_store_rq(message_id: int = 7) -> bytes:
    """A C-STORE-RQ command set as pynetdicom encodes it (Implicit VR LE, group length first)."""
    primitive = C_STORE()
    primitive.MessageID, primitive.Priority = message_id, 2
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    primitive.AffectedSOPInstanceUID = "1.2.3.4.5"
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def test_a_command_set_from_pynetdicom_parses_and_our_response_decodes_in_pynetdicom() -> None:
    request = parse_command(pynetdicom_store_rq(message_id=7))
    assert command_us(request, 0x0100) == 0x0001 and command_us(request, 0x0110) == 7
    assert command_uid(request, 0x1000) == "1.2.3.4.5"
    answer = response(C_STORE_RSP, request, 0xA701, "1.2.840.10008.5.1.4.1.1.7", "too big (65536 bytes)")
    ds = decode(BytesIO(answer), True, True)
    assert ds.CommandField == 0x8001 and ds.MessageIDBeingRespondedTo == 7 and ds.Status == 0xA701
    assert ds.AffectedSOPInstanceUID == "1.2.3.4.5" and ds.ErrorComment == "too big (65536 bytes)"
    assert ds.CommandGroupLength == len(answer) - 12 and ds.CommandDataSetType == 0x0101


def test_photos_sent_in_16_kb_pdus_are_spooled_byte_for_byte(tmp_path: Path, gateway) -> None:
    study = Study()
    files = write_study(
        tmp_path / "in", [make_vl_photo(p, study=study, number=i) for i, p in enumerate(face_photos(2))]
    )
    config = gateway_config(tmp_path / "gw", quiet_period_s=600, max_wait_s=600, workers=0, max_pdu=16384)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    assert storescu(service.port, files).returncode == 0
    sent = {dcmread(f).SOPInstanceUID: f.read_bytes() for f in files}
    for path in config.spool_dir.rglob("*.dcm"):
        spooled = path.read_bytes()
        original = sent[dcmread(path).SOPInstanceUID]
        meta_end = original.index(b"\x08\x00", 132 + 12)  # the dataset after the file meta group
        assert spooled.endswith(original[meta_end:]) and len(spooled) - len(original) < 200
        assert path.name == hashlib.sha256(spooled).hexdigest() + ".dcm"  # hashed fragment by fragment
    assert sum(instance_states(config).values()) == 2


def test_a_message_that_never_completes_is_aborted_at_the_dimse_timeout(tmp_path: Path, gateway) -> None:
    """Each PDU arrives well within the network timeout, but the C-STORE never ends: the DIMSE timeout
    (from the message's first fragment) closes the association."""
    config = gateway_config(
        tmp_path / "gw", workers=0, quiet_period_s=600, network_timeout_s=5.0, dimse_timeout_s=1.5
    )
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    before = closed_count("dimse_timeout")
    sock = connect(service.port)
    sock.sendall(associate_rq())
    assert read_pdu(sock)[0] == 0x02
    command = b"\x00\x00\x00\x00\x04\x00\x00\x00" + struct.pack("<L", 0)  # a command fragment, not the last
    started, closed = time.monotonic(), False
    pdv = struct.pack(">LBB", len(command) + 2, 1, 0x01) + command
    sock.sendall(bytes((0x04, 0)) + struct.pack(">L", len(pdv)) + pdv)
    while time.monotonic() - started < 30:  # a message never ended: only the DIMSE timeout can end it
        try:
            sock.sendall(bytes((0x04, 0)) + struct.pack(">L", 0))  # an empty P-DATA-TF every 0.3 s
        except OSError:
            closed = True
            break
        if is_closed(sock, 0.3):
            closed = True
            break
    assert closed and time.monotonic() - started > config.dimse_timeout_s - 0.2  # from the first fragment
    wait_until(lambda: closed_count("dimse_timeout") == before + 1, timeout=30)  # for that reason
    wait_until(lambda: service.gate.active() == 0, timeout=30)


def test_the_pynetdicom_receive_path_stays_available_behind_the_switch(tmp_path: Path, gateway) -> None:
    files = write_study(tmp_path / "in", [make_small_sc(number=n) for n in range(3)])
    config = gateway_config(tmp_path / "gw", workers=0, quiet_period_s=600, receive_path="pynetdicom")
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    assert type(service.server).__name__ == "AdmittedServer"
    assert storescu(service.port, files).returncode == 0
    assert sum(instance_states(config).values()) == 3


def test_a_pdata_header_alone_then_a_close_frees_the_slot(tmp_path: Path, gateway) -> None:
    config = gateway_config(tmp_path / "gw", workers=0, quiet_period_s=600)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    sock = connect(service.port)
    sock.sendall(associate_rq())
    assert read_pdu(sock)[0] == 0x02
    sock.sendall(bytes((0x04, 0)) + struct.pack(">L", 1000) + bytes(10))
    sock.shutdown(socket.SHUT_WR)
    wait_until(lambda: service.gate.active() == 0, timeout=30)


def store_rq_with_context(abstract: str, transfer: str) -> bytes:
    """An A-ASSOCIATE-RQ offering one presentation context (ID 1), from test_admission's minimal RQ."""
    rq = associate_rq()
    old = _item(0x30, b"1.2.840.10008.1.1") + _item(0x40, b"1.2.840.10008.1.2")
    new = _item(0x30, abstract.encode()) + _item(0x40, transfer.encode())
    old_pc, new_pc = _item(0x20, bytes((1, 0, 0, 0)) + old), _item(0x20, bytes((1, 0, 0, 0)) + new)
    body = rq[6:].replace(old_pc, new_pc)
    return rq[:2] + struct.pack(">L", len(body)) + body


def pdata_pdu(context_id: int, control: int, payload: bytes) -> bytes:
    pdv = struct.pack(">LBB", len(payload) + 2, context_id, control) + payload
    return bytes((0x04, 0)) + struct.pack(">L", len(pdv)) + pdv


def c_store(sock: socket.socket, sop_class: str, ds: Dataset, message_id: int) -> int:
    """Send one C-STORE on context 1 (Explicit VR LE) and return the status of its response."""
    primitive = C_STORE()
    primitive.MessageID, primitive.Priority = message_id, 2
    primitive.AffectedSOPClassUID, primitive.AffectedSOPInstanceUID = sop_class, ds.SOPInstanceUID
    data = encode(ds, False, True)
    primitive.DataSet = BytesIO(data)  # the command then says a dataset follows
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    sock.sendall(pdata_pdu(1, 0x03, encode(message.command_set, True, True)))
    sock.sendall(pdata_pdu(1, 0x02, data))
    answer = read_pdu(sock)
    assert answer[:1] == b"\x04"
    return int(decode(BytesIO(answer[12:]), True, True).Status)


def test_a_c_store_whose_sop_class_is_not_its_contexts_gets_0x0122_and_the_association_goes_on(
    tmp_path: Path, gateway
) -> None:
    config = gateway_config(tmp_path / "gw", workers=0, quiet_period_s=600)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    ds = make_small_sc(side=32, number=1)
    sock = connect(service.port)
    sock.sendall(store_rq_with_context(ds.SOPClassUID, "1.2.840.10008.1.2.1"))
    assert read_pdu(sock)[:1] == b"\x02"
    assert c_store(sock, "1.2.840.10008.5.1.4.1.1.77.1.4", ds, 1) == 0x0122  # VL Photographic on SC's context
    assert c_store(sock, ds.SOPClassUID, ds, 2) == 0x0000  # same association, the right SOP class
    sock.sendall(bytes((0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0)))  # A-RELEASE-RQ
    assert read_pdu(sock)[:1] == b"\x06"
    assert sum(instance_states(config).values()) == 1


def test_a_remembered_negotiation_answers_like_a_fresh_one_and_still_checks_the_ae_titles(
    tmp_path: Path,
) -> None:
    from gateway.core.negotiation import Negotiations, ae_titles, negotiate
    from gateway.core.scp import build_ae

    supported = build_ae(gateway_config(tmp_path / "gw")).supported_contexts
    negotiations = Negotiations(supported, max_pdu=65536)
    first, second = associate_rq(calling="MODALITY_A"), associate_rq(calling="PACS_B", called="OTHER")
    remembered = negotiations.for_request(first)
    assert negotiations.for_request(second) is remembered  # same contexts: pynetdicom is not asked again
    fresh = negotiate(second, supported, 65536)
    assert remembered.accept(second) == fresh.accept(second)
    assert remembered.accept(second)[10:42] == second[10:42]  # the AE titles as this RQ sent them
    assert list(remembered.contexts) == [1] and ae_titles(second) == ("PACS_B", "OTHER")
    blank = second[:26] + b" " * 16 + second[42:]
    with pytest.raises(ValueError):
        ae_titles(blank)  # pynetdicom's own check, on every RQ


def test_a_caller_gone_before_the_a_associate_ac_leaves_no_slot_taken(tmp_path: Path, gateway) -> None:
    """The gate admits before the A-ASSOCIATE-AC is sent; a peer that reset in between (the AC's send fails)
    must not keep the slot, or such callers would lock everyone out at max_associations."""
    config = gateway_config(tmp_path / "gw", workers=0, quiet_period_s=600)
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    ours, peer = socket.socketpair()
    peer.close()  # gone: the AC's sendall raises BrokenPipeError
    LeanAssociation(service.server.setup, ours, ("127.0.0.1", 0), associate_rq()).serve()
    assert service.gate.active() == 0
