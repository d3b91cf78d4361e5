"""The receive path's fast parse (the dataset read from behind the SCP's own file meta) against its reference
path (pydicom's dcmread of the whole Part 10 file): the same answer on valid and on mutated datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.core.intake import (
    Caller,
    Nonconformant,
    StoreRequest,
    check_conformance,
    parse_header,
    parse_received,
)
from gateway.core.part10 import PREAMBLE, file_meta
from tests.gateway.test_fuzz import SEED, base_files, elements

COUNT = 1500
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns on every mutated value


def request(ds: Dataset, body: bytes, syntax: str) -> StoreRequest:
    """A C-STORE as the lean SCP hands it over: our Part 10 header, then the dataset bytes as received."""
    header = PREAMBLE + file_meta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), syntax)
    caller = Caller("FUZZ", "127.0.0.1")
    sop_class, instance = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
    return StoreRequest(header + body, sop_class, instance, caller, None, len(header), syntax)


def encoded(ds: Dataset, implicit: bool, little_endian: bool = True) -> bytes:
    buf = DicomBytesIO()
    buf.is_implicit_VR, buf.is_little_endian = implicit, little_endian
    write_dataset(buf, ds)
    return buf.getvalue()


def mutated(body: bytes, rng: np.random.Generator) -> bytes:
    """Byte flips, a truncation, inserted bytes or a length field rewritten (as in test_fuzz.py)."""
    out = bytearray(body)
    kind = int(rng.integers(4))
    if kind == 0:
        for pos in rng.integers(0, len(out), int(rng.integers(1, 5))):
            out[pos] ^= int(rng.integers(1, 256))
    elif kind == 1:
        del out[int(rng.integers(1, len(out))) :]
    elif kind == 2:
        pos = int(rng.integers(0, len(out)))
        out[pos:pos] = bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
    else:
        off, header, _ = elements(bytes(out), 0)[int(rng.integers(len(elements(bytes(out), 0))))]
        value = int(rng.choice([0, 1, 3, 0xFFFF, int(rng.integers(0, 1 << 16))]))
        out[off + header - 2 : off + header] = (value & 0xFFFF).to_bytes(2, "little")
    return bytes(out)


def outcome(parse: object, req: StoreRequest) -> tuple[str, object]:
    """What the intake makes of a parse: the rejection (status, reason) or the decoded elements' values."""
    try:
        ds = parse(req)  # type: ignore[operator]
        check_conformance(ds, req)
        return "ok", [(elem.tag, elem.VR, elem.value) for elem in ds]
    except Nonconformant as exc:
        return "rejected", (exc.status, str(exc))
    except Exception as exc:  # the intake answers 0xC210 for any of these
        return "raised", type(exc).__name__


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_fast_parse_answers_as_dcmread_on_valid_and_mutated_datasets(tmp_path: Path, implicit: bool) -> None:
    rng = np.random.default_rng(SEED)
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    bases = base_files(tmp_path)
    kinds: dict[str, int] = {}
    for i in range(COUNT):
        ds = bases[i % len(bases)]
        body = encoded(ds, implicit)
        req = request(ds, body if i < len(bases) else mutated(body, rng), str(syntax))
        fast, reference = outcome(parse_received, req), outcome(lambda r: parse_header(r.data), req)
        assert fast == reference, f"case {i}"
        kinds[fast[0]] = kinds.get(fast[0], 0) + 1
    assert kinds.get("ok", 0) > 50  # both kinds were met
    assert kinds.get("rejected", 0) + kinds.get("raised", 0) > 200


def test_fast_parse_takes_the_reference_path_for_big_endian(tmp_path: Path) -> None:
    ds = base_files(tmp_path)[0]
    req = request(ds, encoded(ds, False, little_endian=False), str(ExplicitVRBigEndian))
    assert outcome(parse_received, req) == outcome(lambda r: parse_header(r.data), req)
    assert outcome(parse_received, req)[0] == "ok"
