"""Real-peer helpers for the ops tests: allocated ports, readiness waits, DCMTK processes, a tiny dataset."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

STORESCP = Path("/usr/bin/storescp")
STORESCU = Path("/usr/bin/storescu")
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> None:
    """Readiness wait: the port is in LISTEN state (read from /proc, so no probe connection is made)."""
    needle = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode} before listening")
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as fh:
                if any(needle in line and line.split()[3] == "0A" for line in fh):
                    return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port}")


def secondary_capture(seed: int = 0) -> Dataset:
    """A small, valid Secondary Capture instance with synthetic pixels and no real person in it."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "TEST^OPS"
    ds.PatientID = "OPS-0001"
    ds.Modality = "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rng.integers(0, 255, (16, 16), dtype=np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_instance(path: Path, seed: int = 0) -> Dataset:
    ds = secondary_capture(seed)
    ds.save_as(path, enforce_file_format=True)
    return ds


@contextmanager
def dcmtk_storescp(
    port: int, out_dir: Path, tls_args: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """DCMTK storescp on loopback, writing received instances into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(STORESCP), *tls_args, "--output-directory", str(out_dir), "--accept-all", str(port)]
    proc = subprocess.Popen(cmd, env=DCMTK_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def storescu(
    port: int,
    files: Sequence[Path],
    tls_args: Sequence[str] = (),
    timeout: float = 30.0,
    aet: str = "STORESCU",
    aec: str = "ANY-SCP",
) -> subprocess.CompletedProcess[str]:
    cmd = [str(STORESCU), *tls_args, "-aet", aet, "-aec", aec, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, text=True, timeout=timeout)
