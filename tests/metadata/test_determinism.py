"""Same secret → byte-identical output in another process; another secret → other UIDs and pseudonyms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.plans import MetadataPlan
from tests.metadata.conftest import SECRET, PhotoCase, saved

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from io import BytesIO
import pydicom
from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.plans import MetadataPlan
ds = pydicom.dcmread(sys.argv[1])
out = deidentify(ds, MetadataPlan(), KeyRing(bytes.fromhex(sys.argv[2])), None)
buf = BytesIO()
out.save_as(buf, enforce_file_format=True)
sys.stdout.buffer.write(buf.getvalue())
"""


def _in_child(path: Path, secret: bytes) -> bytes:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(path), secret.hex()], cwd=REPO, capture_output=True, check=True
    ).stdout


def test_two_processes_give_byte_identical_output(plain_photo: PhotoCase, tmp_path: Path) -> None:
    path = tmp_path / "in.dcm"
    path.write_bytes(plain_photo.data)
    first, second = _in_child(path, SECRET), _in_child(path, SECRET)
    assert first == second
    here = saved(deidentify(plain_photo.fresh(), MetadataPlan(), KeyRing(SECRET), None))
    assert here == first


def test_another_secret_gives_other_uids_and_pseudonyms(plain_photo: PhotoCase) -> None:
    a = deidentify(plain_photo.fresh(), MetadataPlan(), KeyRing(SECRET), None)
    b = deidentify(plain_photo.fresh(), MetadataPlan(), KeyRing(b"another-secret-0123456789abcdef"), None)
    for keyword in (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "PatientID",
        "StudyID",
        "AccessionNumber",
    ):
        assert a.get(keyword) != b.get(keyword), keyword
    assert a.StudyInstanceUID.startswith("2.25.") and len(a.StudyInstanceUID) <= 64
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID


def test_instances_of_one_patient_share_pseudonym_study_and_date_interval(plain_photo: PhotoCase) -> None:
    keys = KeyRing(SECRET)
    one, two = plain_photo.fresh(), plain_photo.fresh()
    two.SOPInstanceUID, two.ContentDate = "1.2.826.0.1.3680043.10.999.777", "20240319"
    a, b = (deidentify(ds, MetadataPlan(), keys, None) for ds in (one, two))
    assert (a.PatientID, a.StudyInstanceUID, a.StudyID, a.AccessionNumber) == (
        b.PatientID,
        b.StudyInstanceUID,
        b.StudyID,
        b.AccessionNumber,
    )
    assert a.SOPInstanceUID != b.SOPInstanceUID
    from datetime import datetime

    gap = datetime.strptime(b.ContentDate, "%Y%m%d") - datetime.strptime(a.ContentDate, "%Y%m%d")
    assert gap.days == 7 and a.ContentDate != "20240312"


def test_keyring_repr_never_shows_the_secret() -> None:
    assert SECRET.decode() not in repr(KeyRing(SECRET)) and SECRET.decode() not in str(KeyRing(SECRET))
