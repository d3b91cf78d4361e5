"""Fuzzing the receive path through a real association: >= 1,000 mutated datasets (seeded), sent as raw
bytes after an intact file meta. The gateway must keep serving; every answer is Success, 0xA900 or 0xC210
(0xA700 is for a full disk only); every accepted instance ends forwarded or quarantined with its own reason;
nothing is written outside the data dir."""

from __future__ import annotations

import os
import struct
import time
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import SecondaryCaptureImageStorage, VLPhotographicImageStorage  # type: ignore

from dicom_rules import FolderDestination
from gateway.core.ledger import InstanceState, QuarantineKind
from tests.conftest import Patient, Study, make_small_sc, make_vl_photo
from tests.gateway.conftest import gateway_config, ledger_of, rules_to, wait_until

pytestmark = pytest.mark.integration

SEED = 20261129
COUNT = int(os.environ.get("VERA_FUZZ_COUNT", "1000"))
ALLOWED = {0x0000, 0xA900, 0xC210}
FINAL = {InstanceState.FORWARDED, InstanceState.QUARANTINED, InstanceState.DROPPED}
LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def elements(data: bytes, start: int) -> list[tuple[int, int, int]]:
    """(offset, header length, value length) of the top-level explicit-VR-LE elements after ``start``."""
    out, off = [], start
    while off + 8 <= len(data):
        vr = data[off + 4 : off + 6]
        if vr in LONG_LENGTH_VRS:
            if off + 12 > len(data):
                break
            header, (length,) = 12, struct.unpack_from("<L", data, off + 8)
        else:
            header, (length,) = 8, struct.unpack_from("<H", data, off + 6)
        out.append((off, header, length))
        if length == 0xFFFFFFFF:
            break  # undefined length (sequence, encapsulated pixel data): the walk stops here
        off += header + length
    return out


def meta_end(data: bytes) -> int:
    (group_length,) = struct.unpack_from("<L", data, 132 + 8)
    return 132 + 12 + group_length


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One of seven mutations of the dataset part (the file meta stays valid so the SCU can send it)."""
    start = meta_end(data)
    body = bytearray(data[start:])
    elems = elements(bytes(body), 0)
    kind = int(rng.integers(7))
    off, header, length = elems[int(rng.integers(len(elems)))]
    if kind == 0:  # a few random bytes flipped
        for pos in rng.integers(0, len(body), int(rng.integers(1, 5))):
            body[pos] ^= int(rng.integers(1, 256))
    elif kind == 1:  # an element's VR replaced by two random capitals (e.g. UI -> QI)
        body[off + 4 : off + 6] = bytes(rng.integers(65, 91, 2, dtype=np.uint8))
    elif kind == 2:  # an element's length field set to a random value
        width = 4 if header == 12 else 2
        value = int(rng.choice([0, 1, 3, 0xFFFF, 0xFFFFFFFF, int(rng.integers(0, 1 << 16))]))
        body[off + header - width : off + header] = (value & ((1 << (8 * width)) - 1)).to_bytes(
            width, "little"
        )
    elif kind == 3:  # truncated
        del body[int(rng.integers(1, len(body))) :]
    elif kind == 4:  # an element's value replaced by random bytes
        if length not in (0, 0xFFFFFFFF):
            body[off + header : off + header + length] = bytes(rng.integers(0, 256, length, dtype=np.uint8))
    elif kind == 5:  # random bytes inserted
        pos = int(rng.integers(0, len(body)))
        body[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
    else:  # an element moved to the end (tag order broken)
        if length != 0xFFFFFFFF:
            chunk = bytes(body[off : off + header + length])
            del body[off : off + header + length]
            body += chunk
    return data[:start] + bytes(body)


def base_files(tmp_path: Path) -> list[Dataset]:
    """Encoded bases: a small uncompressed Secondary Capture and a small JPEG VL Photographic."""
    jpeg = tmp_path / "tiny.jpg"
    pixels = np.random.default_rng(SEED).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(jpeg, quality=90)
    return [make_small_sc(side=8), make_vl_photo(jpeg)]


def fuzz_files(tmp_path: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(SEED)
    folder = tmp_path / "fuzz"
    folder.mkdir()
    bases = base_files(tmp_path)
    paths = []
    for i in range(count):
        ds = bases[i % len(bases)]
        ds.PatientID = f"FUZZ-{i % 7}"  # a few patients, so pipeline groups hold several instances
        ds.StudyInstanceUID = Study().study_uid if i % 50 == 0 else ds.StudyInstanceUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        path = folder / f"{i:04d}.dcm"
        path.write_bytes(mutate(buf.getvalue(), rng))
        paths.append(path)
    return paths


def send_all(port: int, paths: list[Path]) -> list[int]:
    ae = AE(ae_title="FUZZER")
    for syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"):
        ae.add_requested_context(SecondaryCaptureImageStorage, [syntax])
        ae.add_requested_context(VLPhotographicImageStorage, [syntax])
    statuses: list[int] = []
    old, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title="VERA_GW")
        for path in paths:
            if not assoc.is_established:  # the gateway may abort a broken stream; it must accept again
                assoc = ae.associate("127.0.0.1", port, ae_title="VERA_GW")
            assert assoc.is_established
            rsp = assoc.send_c_store(path)
            statuses.append(int(rsp.Status) if "Status" in rsp else -1)
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
    return statuses


def test_a_thousand_mutated_datasets_get_right_answers_and_end_forwarded_or_quarantined(
    tmp_path: Path, gateway
) -> None:
    paths = fuzz_files(tmp_path, COUNT)
    config = gateway_config(tmp_path / "gw", workers=0, quiet_period_s=0.5, max_wait_s=5)
    out = config.data_dir / "research"
    service = gateway(config, rules=rules_to(FolderDestination("research", out)))
    started = time.monotonic()
    statuses = send_all(service.port, paths)
    tally = {s: statuses.count(s) for s in set(statuses)}
    assert set(tally) <= ALLOWED, tally  # -1: no response at all (the association died mid-request)
    assert tally.get(0x0000, 0) > 100 and tally.get(0xC210, 0) > 50  # both kinds were exercised
    with ledger_of(config) as ledger:

        def settled() -> bool:
            return set(ledger.counts().instances) <= FINAL

        wait_until(settled, timeout=120, interval=0.5)
        rows = ledger.instances(limit=100_000)
        rejected = [q for q in ledger.quarantine_items() if q.kind is QuarantineKind.RECEIVE]
    assert len(rows) >= tally[0x0000] - 5  # same-bytes re-sends are the only Success without a row
    assert all(r.reason for r in rows if r.state is InstanceState.QUARANTINED)
    assert len(rejected) == tally.get(0xA900, 0) + tally.get(0xC210, 0)
    assert all(r.reason for r in rejected)
    inputs, data_dir = tmp_path / "fuzz", config.data_dir
    stray = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file() and not p.is_relative_to(inputs) and not p.is_relative_to(data_dir)
    ]
    assert stray == [p for p in stray if p.name == "tiny.jpg"]
    assert service.health()["threads"]
    assert time.monotonic() - started < 240
    assert Patient().patient_id not in " ".join(str(p) for p in data_dir.rglob("*"))
