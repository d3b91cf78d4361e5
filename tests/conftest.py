"""Shared fixtures for every test folder (others reuse these; keep them documented).

- ``free_port()`` / fixture ``port_factory``: a free TCP port on 127.0.0.1, below the ephemeral range.
- ``faces_dir`` (session): ``../shared/data/faces/london_set``; tests that use it skip cleanly when absent.
- DICOM builders (plain functions, also importable as ``from tests.conftest import ...``):
  ``make_vl_photo(jpeg_path, patient=..., study=..., ...)`` wraps a real JPEG (no re-encoding) as a JPEG
  Baseline VL Photographic Image with realistic headers; ``make_small_sc(...)`` makes an uncompressed RGB
  Secondary Capture of about 50 kB (a non-face object); ``write_study(dir, datasets)`` saves files.
  ``Patient`` and ``Study`` hold the identifying values so tests can look for leaks.
- ``donor_bank`` (session): a small surrogate-engine donor bank (8 London Set identities, neutral photos;
  ``TEST_FACE_IDS`` are left out), built once per session; skips when the photos are absent.
- ``postgres``/``pg_url`` and ``s3``/``bucket`` (tests/services.py): a real PostgreSQL server (initdb/pg_ctl
  in a temp dir) and moto's S3 server, started on first use; in CI a missing service fails instead of skips.
- ``orthanc`` fixture: a factory that starts a real Orthanc on loopback ports with a tmp config and waits for
  its REST API; the returned :class:`Orthanc` has ``rest()``, ``instances()``, ``stop()``/``start()``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FACES = SHARED / "data" / "faces" / "london_set"
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
ORTHANC_BIN = next((p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)), "Orthanc")
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
pytest_plugins = ["tests.services"]  # postgres, pg_url, s3, bucket: real cluster services (started lazily)


# Listening ports come from below the kernel's ephemeral range (32768-60999 on Linux), spread by pid so
# parallel sessions rarely meet: a port taken with bind(0) can be handed to an outbound connection
# (storescu, a forwarder) before the test's listener binds it, which failed CI with EADDRINUSE.
_PORT_BASE, _PORT_SPAN = 20000, 12000
_next_port = _PORT_BASE + (os.getpid() * 97) % _PORT_SPAN


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and not handed out before by this process."""
    global _next_port
    for _ in range(_PORT_SPAN):
        port, _next_port = _next_port, _PORT_BASE + (_next_port + 1 - _PORT_BASE) % _PORT_SPAN
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port below the ephemeral range")


class GatewaySubprocess:
    """A ``vera-gateway`` child process started in its own session, logging JSON lines to ``log_path``
    (the single-node gateway of tests/gateway and the cluster nodes of tests/cluster)."""

    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log's JSON records whose event is ``name``."""
        found = []
        for line in self.log_text().splitlines():
            if f'"{name}"' in line:
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return found

    def kill9(self) -> None:
        """SIGKILL the gateway and its worker processes (its whole session, as systemd would)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def port_factory() -> Any:
    return free_port


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not FACES.is_dir():
        pytest.skip("../shared/data/faces/london_set is not present")
    return FACES


DONOR_FACE_IDS = ("001", "003", "004", "005", "013", "019", "022", "024")  # >= k = 6 identities
TEST_FACE_IDS = ("017", "030")  # never in a donor bank built here


@pytest.fixture(scope="session")
def donor_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a donor bank file for the surrogate engine (about 15 s to build on 2 cores)."""
    if not FACES.is_dir():
        pytest.skip("../shared/data/faces/london_set is not present")
    from anonymizer.donors import build_bank, save_bank

    path = tmp_path_factory.mktemp("donors") / "donors.npz"
    save_bank(build_bank(FACES, files=[FACES / f"{i}_03.jpg" for i in DONOR_FACE_IDS]), path)
    return path


@pytest.fixture(scope="session")
def wide_donor_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bank of 20 identities (test identities left out), so that two patients' donor sets barely overlap,
    as in a real bank; the 8-identity bank shares most donors between any two patients (about 40 s)."""
    if not FACES.is_dir():
        pytest.skip("../shared/data/faces/london_set is not present")
    from anonymizer.donors import build_bank, save_bank

    ids = sorted({p.name[:3] for p in FACES.glob("*_03.jpg")} - set(TEST_FACE_IDS))[:20]
    path = tmp_path_factory.mktemp("wide-donors") / "donors.npz"
    save_bank(build_bank(FACES, files=[FACES / f"{i}_03.jpg" for i in ids]), path)
    return path


def patient_face_photos() -> list[Path]:
    """Neutral and smiling photo of the first test identity (not in any donor bank built here)."""
    return [FACES / f"{TEST_FACE_IDS[0]}_{e}.jpg" for e in ("03", "08")]


def face_photos(count: int) -> list[Path]:
    """The first ``count`` london_set photos (sorted), or skip."""
    if not FACES.is_dir():
        pytest.skip("../shared/data/faces/london_set is not present")
    return sorted(FACES.glob("*.jpg"))[:count]


@dataclass(frozen=True)
class Patient:
    patient_id: str = "MRN-0042117"
    name: str = "Doe^Jane^Q"
    birth_date: str = "19800517"
    sex: str = "F"
    issuer: str = "HOSP-A"


@dataclass(frozen=True)
class Study:
    study_uid: str = field(default_factory=generate_uid)
    series_uid: str = field(default_factory=generate_uid)
    accession: str = "ACC778812"
    date: str = "20240312"
    time: str = "101530"
    description: str = "Orthodontic pre-treatment photos"


def _common_header(ds: Dataset, patient: Patient, study: Study, number: int, sop_class: str) -> None:
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = patient.name, patient.patient_id, patient.issuer
    ds.PatientBirthDate, ds.PatientSex = patient.birth_date, patient.sex
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study.study_uid, study.series_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study.time
    ds.AccessionNumber, ds.StudyID, ds.StudyDescription = study.accession, "S1", study.description
    ds.ReferringPhysicianName = "Smith^John"
    ds.InstitutionName = "St Example Hospital"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.Manufacturer, ds.ManufacturerModelName, ds.DeviceSerialNumber = "Nikon", "D750", "SN-3321"
    ds.BurnedInAnnotation = "NO"
    ds.PatientOrientation = ""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID


def make_vl_photo(
    jpeg_path: Path, patient: Patient | None = None, study: Study | None = None, number: int = 1
) -> Dataset:
    """A JPEG Baseline VL Photographic Image (modality XC) wrapping the JPEG bytes as they are."""
    patient, study = patient or Patient(), study or Study()
    data = jpeg_path.read_bytes()
    with Image.open(BytesIO(data)) as img:
        cols, rows = img.size
        sampling = getattr(img, "layer", None)
    subsampled = bool(sampling) and any(h != sampling[0][1] or v != sampling[0][2] for _, h, v, _ in sampling)
    ds = Dataset()
    _common_header(ds, patient, study, number, VL_PHOTO)
    ds.Modality, ds.ImageType = "XC", ["ORIGINAL", "PRIMARY"]
    ds.AcquisitionDateTime = study.date + study.time
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_FULL_422" if subsampled else "YBR_FULL"
    ds.PlanarConfiguration, ds.Rows, ds.Columns = 0, rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    return ds


def make_small_sc(
    patient: Patient | None = None,
    study: Study | None = None,
    number: int = 1,
    side: int = 128,
    seed: int = 0,
) -> Dataset:
    """An uncompressed RGB Secondary Capture (side² · 3 bytes, ~50 kB at 128): a non-face test object."""
    patient, study = patient or Patient(), study or Study()
    ds = Dataset()
    _common_header(ds, patient, study, number, SECONDARY_CAPTURE)
    ds.Modality, ds.ConversionType = "OT", "WSD"
    pixels = np.random.default_rng(seed + number).integers(0, 255, (side, side, 3), dtype=np.uint8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = pixels.tobytes()
    return ds


def write_study(directory: Path, datasets: Sequence[Dataset]) -> list[Path]:
    """Save datasets as ``NNN.dcm`` files (file meta enforced); returns the paths in order."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        path = directory / f"{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


class Orthanc:
    """A real Orthanc process on loopback ports (Orthanc 1.10 binds 0.0.0.0; no bind-address option)."""

    def __init__(
        self,
        root: Path,
        aet: str = "ORTHANC",
        modalities: dict[str, list[Any]] | None = None,
        dicomweb: bool = False,
    ) -> None:
        self.root, self.aet, self.dicomweb = root, aet, dicomweb
        self.http_port, self.dicom_port = free_port(), free_port()
        self.modalities = modalities or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        config = {
            "Name": "test-orthanc",
            "StorageDirectory": str(self.root / "db"),
            "IndexDirectory": str(self.root / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "DicomModalities": self.modalities,
            "Plugins": [],
            "StableAge": 1,
            "HttpTimeout": 30,
        }
        if self.dicomweb:  # Debian's orthanc-dicomweb plugin: DICOMweb under /dicom-web/
            config["Plugins"] = [ORTHANC_DICOMWEB]
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(config))
        return path

    def start(self, timeout: float = 30.0) -> Orthanc:
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "orthanc.log").open("ab")
        # TCP_NODELAY=1 like every DCMTK peer here: without it Orthanc's DCMTK leaves Nagle on and each
        # C-STORE waits out a 40 ms delayed ACK (about 20 instances/s whatever the receiver does)
        self.proc = subprocess.Popen(
            [ORTHANC_BIN, str(self._write_config())], stdout=log, stderr=log, env=DCMTK_ENV
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.root / 'orthanc.log').read_text()[-2000:]}")
            try:
                self.rest("/system")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise TimeoutError("Orthanc REST API did not come up")

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM and wait (reusable storage), or SIGKILL at teardown (throw-away storage)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def rest(self, path: str, body: Any = None, method: str | None = None) -> Any:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def instances(self) -> list[str]:
        return list(self.rest("/instances"))

    def instance_tags(self, orthanc_id: str) -> dict[str, Any]:
        return dict(self.rest(f"/instances/{orthanc_id}/simplified-tags"))

    def wait_for_instances(self, count: int, timeout: float = 60.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.instances()
            if len(found) >= count:
                return found
            time.sleep(0.2)
        return self.instances()

    def clear(self) -> None:
        for patient in self.rest("/patients"):
            self.rest(f"/patients/{patient}", method="DELETE")


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``orthanc(aet="ORTHANC", modalities={...}, start=True, dicomweb=False)`` → a running
    :class:`Orthanc` (with the DICOMweb plugin at ``/dicom-web/`` when asked)."""
    if not os.path.exists(ORTHANC_BIN) and shutil.which("Orthanc") is None:
        pytest.skip("Orthanc is not installed")
    started: list[Orthanc] = []

    def factory(
        aet: str = "ORTHANC",
        modalities: dict[str, list[Any]] | None = None,
        start: bool = True,
        dicomweb: bool = False,
    ) -> Orthanc:
        if dicomweb and not os.path.exists(ORTHANC_DICOMWEB):
            pytest.skip("orthanc-dicomweb is not installed")
        server = Orthanc(tmp_path / f"orthanc{len(started)}", aet, modalities, dicomweb)
        started.append(server)
        return server.start() if start else server

    yield factory
    for server in started:
        server.stop(graceful=False)
