import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from anonymizer.keys import IdentityError, KeyRing, SecretError, load_or_create_secret


def test_uid_remap_is_deterministic_and_valid():
    keys = KeyRing(b"k" * 32)
    uid = keys.uid("1.2.3.4")
    assert uid == keys.uid("1.2.3.4")
    assert uid != KeyRing(b"j" * 32).uid("1.2.3.4")
    assert uid.startswith("2.25.") and len(uid) <= 64


def test_identity_seed_is_the_same_in_another_process():
    code = "from anonymizer.keys import KeyRing; print(KeyRing(b'k'*32).identity_seed('PABC'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == KeyRing(b"k" * 32).identity_seed("PABC")


def test_date_offset_in_range():
    keys = KeyRing(b"k" * 32)
    offsets = {keys.date_offset_days(f"P{i}", -100, -10) for i in range(200)}
    assert min(offsets) >= -100 and max(offsets) <= -10 and len(offsets) > 20


def test_secret_created_0600_and_open_file_refused(tmp_path):
    path = tmp_path / "secret"
    secret = load_or_create_secret(path)
    assert (path.stat().st_mode & 0o777) == 0o600 and len(secret) == 32
    path.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_or_create_secret(path)


def _header(**values: str) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_patient_of_keys_on_patient_id_and_issuer() -> None:
    keys = KeyRing(b"k" * 32)
    a = _header(PatientID="MRN-1", IssuerOfPatientID="HOSP-A", StudyInstanceUID="1.2.3")
    assert keys.patient_of(a) == keys.patient_pseudonym("MRN-1", "HOSP-A")
    assert keys.patient_of(a) == keys.patient_of(_header(PatientID="MRN-1", IssuerOfPatientID="HOSP-A"))
    assert keys.patient_of(a) != keys.patient_of(_header(PatientID="MRN-1", IssuerOfPatientID="HOSP-B"))


def test_patient_of_without_patient_id_is_per_study_then_per_instance() -> None:
    keys = KeyRing(b"k" * 32)
    study_a = keys.patient_of(_header(StudyInstanceUID="1.2.3", SOPInstanceUID="1.2.3.1"))
    empty_id = _header(PatientID="", StudyInstanceUID="1.2.3", SOPInstanceUID="1.2.3.2")
    assert study_a == keys.patient_of(empty_id)
    assert study_a != keys.patient_of(_header(StudyInstanceUID="1.2.4", SOPInstanceUID="1.2.4.1"))
    assert study_a != keys.patient_pseudonym("", "")  # never the one key every ID-less patient once shared
    one, two = (keys.patient_of(_header(SOPInstanceUID=f"1.2.5.{i}")) for i in (1, 2))
    assert one != two
    with pytest.raises(IdentityError):
        keys.patient_of(_header(PatientID="  "))


def test_no_other_module_keys_patients_on_patient_id() -> None:
    """One patient identity: stages call KeyRing.patient_of, never patient_pseudonym on a header's own ID."""
    root = Path(__file__).resolve().parents[1]
    allowed = {"anonymizer/keys.py", "anonymizer/metadata/walker.py"}  # walker: nested IDs in sequences
    callers = {
        str(path.relative_to(root))
        for package in ("gateway", "anonymizer", "dicom_rules")
        for path in (root / package).rglob("*.py")
        if "patient_pseudonym(" in path.read_text()
    }
    assert callers <= allowed, callers - allowed
