"""Keyed, deterministic remapping: the one place where the gateway secret is turned into pseudonyms.

Everything derives from HMAC-SHA256 with a purpose label, so values for different purposes never collide
and the same input gives the same output on any worker and machine that shares the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

SECRET_BYTES = 32
NO_PATIENT_ID = "\x00no-patient-id"  # issuer of the fallback identities: no real issuer is NUL-prefixed


class IdentityError(ValueError):
    """An instance without PatientID, StudyInstanceUID and SOPInstanceUID: nothing to key a patient on."""


def _top_text(ds: Dataset, keyword: str) -> str:
    """A top-level value decoded with the dataset's character set, stripped; "" when absent or empty."""
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def has_patient_id(ds: Dataset) -> bool:
    return bool(_top_text(ds, "PatientID"))


class SecretError(RuntimeError):
    """The gateway secret is missing, unreadable or too open."""


def load_or_create_secret(path: Path, *, create: bool = True) -> bytes:
    """Read the secret file; create it (0600) on first run when allowed. Refuse group/world-readable files."""
    if not path.exists():
        if not create:
            raise SecretError(f"secret file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(SECRET_BYTES) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretError(f"secret file {path} has mode {mode:o}; run: chmod 600 {path}")
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = text.encode()
    if len(secret) < 16:
        raise SecretError(f"secret in {path} is shorter than 16 bytes")
    return secret


@dataclass(frozen=True)
class KeyRing:
    """Derives every keyed value from one secret."""

    secret: bytes

    def digest(self, purpose: str, *parts: str) -> bytes:
        msg = "\x1f".join((purpose, *parts)).encode("utf-8")
        return hmac.new(self.secret, msg, hashlib.sha256).digest()

    def uid(self, original_uid: str) -> str:
        """UID → 2.25.<decimal of 128 bits>; fits the 64-character UI limit."""
        value = int.from_bytes(self.digest("uid", original_uid)[:16], "big")
        return f"2.25.{value}"

    def patient_pseudonym(self, patient_id: str, issuer: str = "") -> str:
        """Stable pseudonym for PatientID/PatientName, safe to log."""
        return "P" + self.digest("patient", issuer, patient_id)[:8].hex().upper()

    def patient_of(self, ds: Dataset) -> str:
        """The one patient identity of an instance: every stage (ledger, grouping, identity seed, header
        pseudonyms, date shift) keys the patient on this value.

        PatientID (with its issuer) when present. Without one, photos are never pooled with other ID-less
        photos: the study is the patient, or the instance itself when StudyInstanceUID is missing too.
        """
        pid = _top_text(ds, "PatientID")
        if pid:
            return self.patient_pseudonym(pid, _top_text(ds, "IssuerOfPatientID"))
        study_uid = _top_text(ds, "StudyInstanceUID")
        if study_uid:
            return self.patient_pseudonym("study:" + study_uid, NO_PATIENT_ID)
        sop_uid = _top_text(ds, "SOPInstanceUID")
        if sop_uid:
            return self.patient_pseudonym("instance:" + sop_uid, NO_PATIENT_ID)
        raise IdentityError("no PatientID, StudyInstanceUID or SOPInstanceUID")

    def date_offset_days(self, patient_pseudonym: str, min_days: int = -365, max_days: int = -30) -> int:
        """Per-patient date shift in [min_days, max_days], so intervals inside one patient survive."""
        span = max_days - min_days + 1
        value = int.from_bytes(self.digest("date-offset", patient_pseudonym)[:8], "big")
        return min_days + value % span

    def identity_seed(self, patient_pseudonym: str) -> int:
        """Seed of the synthetic identity of one patient: the same in every photo, study and worker."""
        return int.from_bytes(self.digest("identity-seed", patient_pseudonym)[:8], "big")

    def short_hash(self, purpose: str, value: str, length: int = 12) -> str:
        """A short keyed hash for logs and the 'hash' tag action."""
        return self.digest(purpose, value)[: length // 2].hex().upper()

    def time_offset_seconds(self, patient_pseudonym: str) -> int:
        """Per-patient time-of-day shift in [0, 86399] s, used when a plan shifts TM values too."""
        return int.from_bytes(self.digest("time-offset", patient_pseudonym)[:8], "big") % 86400

    def study_id(self, study_instance_uid: str, study_id: str) -> str:
        """Non-empty StudyID pseudonym (SH, 16 max), the same for every instance of one study."""
        return "S" + self.digest("study-id", study_instance_uid, study_id)[:6].hex().upper()

    def accession_number(self, accession: str, study_instance_uid: str) -> str:
        """Non-empty AccessionNumber pseudonym (SH); from the study UID when the original is empty."""
        return "A" + self.digest("accession", accession, study_instance_uid)[:6].hex().upper()

    def __repr__(self) -> str:
        """Never print the secret (tracebacks, pytest reports, logs of objects that hold a KeyRing)."""
        return f"KeyRing(secret=<{len(self.secret)} bytes redacted>)"


def seed_id(seed: int) -> str:
    """A loggable name for an identity seed (not the seed itself)."""
    return hashlib.sha256(seed.to_bytes(8, "big")).hexdigest()[:10]
