"""The receive path behind the SCP: check the dataset, spool it durably, record it in the ledger, answer.

Status codes come from here only: Success after the spool file is fsynced and the ledger committed; 0xA700
when the disk or the ledger cannot take it (nothing half-written is left under a final name); 0xA900 when the
dataset does not match the negotiated SOP class or instance; 0xC210 when it cannot be decoded. Rejected
datasets are kept in the quarantine store with a ledger record, and the SCP keeps serving.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from io import BytesIO
from typing import TYPE_CHECKING, Any

import structlog
from pydicom import dcmread, uid
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from anonymizer.keys import KeyRing
from gateway.core import faults
from gateway.core.ledger import Duplicate, Ledger, LedgerError, ReceivedInstance, open_ledger
from gateway.core.ledger.group import GroupCommit
from gateway.core.spool import ContentStore, Writer, write_all
from gateway.ops.metrics import QUARANTINED, RECEIVED, STAGE_SECONDS

if TYPE_CHECKING:
    from gateway.core.config import GatewayConfig

LOG = structlog.get_logger("gateway.intake")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
# PS3.4 Table B.2-1 gives C-STORE three failure families: A7xx "Refused: Out of Resources" (the SCP cannot
# store this instance), A9xx (does not match the SOP class) and Cxxx (cannot understand). A dataset above the
# configured cap is the first: the receiver refuses it for its own limit, not for its content (it was never
# decoded). The low byte is ours to choose; 0x01 keeps it apart from 0xA700 (disk or ledger, worth a retry),
# and the response's Error Comment states the limit, so the sender's operator sees why.
DATASET_TOO_LARGE = 0xA701
CANNOT_UNDERSTAND = 0xC210
UNDEFINED_LENGTH = 0xFFFFFFFF


class Nonconformant(ValueError):
    """The dataset decoded but breaks a rule the gateway relies on; the message is a reason code."""

    def __init__(self, reason: str, status: int = DATASET_MISMATCH) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Caller:
    ae_title: str
    address: str


@dataclass(frozen=True)
class StoreRequest:
    """The C-STORE as the SCP saw it: raw bytes (preamble + file meta + dataset) and the request's UIDs."""

    data: bytes
    sop_class_uid: str
    sop_instance_uid: str
    caller: Caller
    sha256: str | None = None  # of ``data``, when the SCP hashed it while receiving
    # the SCP's own Part 10 header: its length in ``data`` and the transfer syntax it names (0 / "": unknown)
    meta_length: int = 0
    transfer_syntax: str = ""


# Transfer syntaxes whose dataset pydicom's dcmread decodes as it is (no inflate, no byte swap): the fast
# path reads these from behind the SCP's own file meta; anything else goes through dcmread whole.
_AS_READ = {uid.ImplicitVRLittleEndian: True, uid.ExplicitVRLittleEndian: False}
_WHOLE_FILE = {uid.DeflatedExplicitVRLittleEndian, uid.ExplicitVRBigEndian, *uid.PrivateTransferSyntaxes}


def parse_header(data: bytes) -> Dataset:
    """Decode the whole dataset and check it is complete; raises on anything undecodable or truncated."""
    try:
        ds = dcmread(BytesIO(data))
    except Exception as exc:  # pydicom raises many types on garbage
        raise Nonconformant(f"undecodable:{type(exc).__name__}", CANNOT_UNDERSTAND) from exc
    return _complete(ds)


def parse_received(request: StoreRequest) -> Dataset:
    """:func:`parse_header` for a C-STORE whose file meta the SCP wrote itself: only the dataset is read,
    the way dcmread reads it after that file meta (no re-parse of our own header, no FileDataset): about
    half of dcmread's Python on a small object. The reference path (dcmread of the whole file) is taken
    for any other transfer syntax or a dataset that starts with group 0000/0002 elements; tests compare
    the two (tests/gateway/test_intake_parse.py)."""
    offset, syntax = request.meta_length, request.transfer_syntax
    head = request.data[offset : offset + 2]
    if not offset or not syntax or syntax in _WHOLE_FILE or len(head) < 2 or head in (b"\0\0", b"\2\0"):
        return parse_header(request.data)
    fp = BytesIO(request.data)
    fp.seek(offset)
    try:
        ds = read_dataset(fp, _AS_READ.get(syntax, False), True)
        ds._character_set  # noqa: B018 - decoded by dcmread too (FileDataset's original encoding)
    except Exception as exc:  # as parse_header: whatever pydicom raises is undecodable
        raise Nonconformant(f"undecodable:{type(exc).__name__}", CANNOT_UNDERSTAND) from exc
    return _complete(ds)


def _complete(ds: Dataset) -> Dataset:
    """``ds`` when no element it holds is shorter than its length field says (a truncated dataset)."""
    for tag, elem in ds._dict.items():
        if not isinstance(elem, RawDataElement) or elem.length == UNDEFINED_LENGTH or elem.value is None:
            continue
        if len(elem.value) != elem.length:
            raise Nonconformant(f"truncated-element:{tag:08X}", CANNOT_UNDERSTAND)
    return ds


def check_conformance(ds: Dataset, request: StoreRequest) -> None:
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"):
        if not str(ds.get(keyword, "")).strip():
            raise Nonconformant(f"missing:{keyword}")
    if str(ds.SOPClassUID) != request.sop_class_uid:
        raise Nonconformant("sop-class-mismatch")
    if str(ds.SOPInstanceUID) != request.sop_instance_uid:
        raise Nonconformant("sop-instance-mismatch")
    if "Rows" in ds and "PixelData" not in ds and "FloatPixelData" not in ds:
        raise Nonconformant("pixel-data-missing-or-truncated", CANNOT_UNDERSTAND)


@cache
def _received(outcome: str) -> Any:
    """The RECEIVED counter's child for ``outcome``, looked up once (labels() is ~5 µs of Python a call)."""
    return RECEIVED.labels(outcome=outcome)


@cache
def _receive_seconds() -> Any:
    return STAGE_SECONDS.labels(stage="receive")


def _file_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


class Intake:
    """Spool + ledger for one gateway; shared by all association threads."""

    def __init__(self, spool: ContentStore, quarantine: ContentStore, ledger: Ledger, keys: KeyRing) -> None:
        self.spool = spool
        self.quarantine = quarantine
        self.ledger = ledger
        self.keys = keys
        self.receipts = GroupCommit(ledger.record_received_many, ledger.record_received)

    def receive(self, request: StoreRequest) -> int:
        started = time.perf_counter()
        try:
            ds = parse_received(request)
            check_conformance(ds, request)
            facts = self._facts(request, ds)
        except Nonconformant as exc:
            return self._reject(request, str(exc), exc.status)
        except Exception as exc:  # whatever pydicom raises on a value it cannot decode: never 0xA700
            return self._reject(request, f"undecodable:{type(exc).__name__}", CANNOT_UNDERSTAND)
        status = self._store(request, facts)
        _receive_seconds().observe(time.perf_counter() - started)
        return status

    def _store(self, request: StoreRequest, facts: dict[str, str]) -> int:
        try:
            stored = self.spool.put(request.data, request.sha256)
        except OSError as exc:
            return self._out_of_resources("spool-write-failed", exc)
        faults.hold("receive.after_spool")
        item = ReceivedInstance(**facts, sha256=stored.sha256, spool_path=stored.relpath, size=stored.size)
        try:
            result = self.receipts.record_received(item)  # with concurrent associations' rows
        except (LedgerError, OSError) as exc:
            if not self._in_use(stored.relpath):
                self.spool.discard(stored.relpath)
            return self._out_of_resources("ledger-write-failed", exc.__cause__ or exc)
        if result.duplicate is Duplicate.SAME_BYTES and not self._in_use(stored.relpath):
            self.spool.discard(stored.relpath)  # the original's files were purged (retention): keep no copy
        outcome = "duplicate" if result.duplicate is Duplicate.SAME_BYTES else "stored"
        _received(outcome).inc()
        LOG.info(
            "instance.received",
            instance_id=result.instance_id,
            sop_key=item.sop_key[:12],
            study_key=item.study_key[:12],
            patient=item.patient_key,
            duplicate=str(result.duplicate),
            size=item.size,
            calling_ae=request.caller.ae_title,
        )
        return SUCCESS

    def _facts(self, request: StoreRequest, ds: Dataset) -> dict[str, str]:
        """The ledger fields that come from the dataset; decoding them may raise on a corrupted value."""
        return {
            "sop_key": self.keys.short_hash("ledger-sop", request.sop_instance_uid, 32),
            "study_key": self.keys.short_hash("ledger-study", str(ds.StudyInstanceUID), 32),
            "patient_key": self.keys.patient_of(ds),
            "sop_class_uid": request.sop_class_uid,
            "transfer_syntax": request.transfer_syntax or _file_syntax(ds),
            "calling_ae": request.caller.ae_title,
            "calling_ip": request.caller.address,
        }

    def recover(self, relpath: str, reason: str) -> bool:
        """Give a complete spool file without a ledger row its row back, quarantined with ``reason``
        (start-up recovery after an OS crash; the caller is unknown). False when the file does not decode
        or those bytes are already recorded."""
        data = self.spool.read(relpath)
        try:
            ds = parse_header(data)
            request = StoreRequest(data, str(ds.SOPClassUID), str(ds.SOPInstanceUID), Caller("", ""))
            facts = self._facts(request, ds)
        except Exception:
            return False
        item = ReceivedInstance(
            **facts, sha256=relpath.rsplit("/", 1)[-1][:64], spool_path=relpath, size=len(data)
        )
        return self.ledger.record_recovered(item, reason) is not None

    def _in_use(self, relpath: str) -> bool:
        try:
            return self.ledger.spool_path_in_use(relpath)
        except LedgerError:
            return True  # cannot tell: keep the file (it is complete), never delete a referenced one

    def refuse_too_large(self, caller: Caller, limit_bytes: int) -> int:
        """A C-STORE whose dataset went past ``limit_bytes``: it was drained, not stored; log and count it."""
        RECEIVED.labels(outcome="too_large").inc()
        LOG.warning(
            "instance.refused",
            reason="dataset_too_large",
            status=f"0x{DATASET_TOO_LARGE:04X}",
            limit_bytes=limit_bytes,
            calling_ae=caller.ae_title,
            peer_ip=caller.address,
        )
        return DATASET_TOO_LARGE

    def _out_of_resources(self, reason: str, exc: BaseException) -> int:
        code = errno.errorcode.get(getattr(exc, "errno", 0) or 0, type(exc).__name__)
        RECEIVED.labels(outcome="out_of_resources").inc()
        LOG.error("instance.refused", reason=reason, error=code, status="0xA700")
        return OUT_OF_RESOURCES

    def reject(self, request: StoreRequest, reason: str, status: int) -> int:
        """Refuse ``request`` with ``status``, its bytes kept in the quarantine (the SCP's own checks)."""
        return self._reject(request, reason, status)

    def _reject(self, request: StoreRequest, reason: str, status: int) -> int:
        RECEIVED.labels(outcome="rejected").inc()
        QUARANTINED.labels(stage="receive").inc()
        blob: str | None = None
        try:
            blob = self.quarantine.put(request.data).relpath
            qid = self.ledger.quarantine_received(reason, blob, request.caller.ae_title)
        except (OSError, LedgerError) as exc:
            LOG.error("quarantine.record_failed", reason=reason, error=type(exc).__name__)
            qid = -1
        LOG.warning(
            "instance.rejected",
            reason=reason,
            status=f"0x{status:04X}",
            quarantine_id=qid,
            calling_ae=request.caller.ae_title,
        )
        return status


def open_intake(
    config: GatewayConfig,
    keys: KeyRing,
    spool_writer: Writer = write_all,
    clock: Callable[[], float] = time.time,
) -> Intake:
    """The receive path of ``config``: the spool (written in place: one journal commit per instance, see
    gateway/core/recovery.py), the quarantine and the intake's own ledger handle. The main process and each
    receiver process (``receive_processes`` > 1) open their own; then the spool and the ledger also lock
    against the other processes."""
    several = config.receive_processes > 1
    spool = ContentStore(config.spool_dir, writer=spool_writer, in_place=True, cross_process=several)
    quarantine = ContentStore(config.quarantine_dir, writer=spool_writer, suffix=".bin")
    return Intake(spool, quarantine, open_ledger(config, clock=clock, receive_path=True), keys)
