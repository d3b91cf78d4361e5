"""Real-peer helpers for the ops tests: allocated ports, readiness waits, DCMTK processes, a tiny dataset."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydicom.dataset import Dataset

from tests.conftest import DCMTK_ENV, free_port, make_small_sc

STORESCP = Path("/usr/bin/storescp")
STORESCU = Path("/usr/bin/storescu")
ECHOSCU = Path("/usr/bin/echoscu")

__all__ = [
    "DCMTK_ENV",
    "dcmtk_storescp",
    "echoscu",
    "free_port",
    "refused_at_limit",
    "secondary_capture",
    "storescu",
    "wait_listening",
]


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
    """A small (16² RGB) Secondary Capture with a fresh SOP Instance UID, from the shared test builders."""
    return make_small_sc(side=16, seed=seed)


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


def echoscu(
    port: int, tls_args: Sequence[str] = (), timeout: float = 30.0, aec: str = "ANY-SCP"
) -> subprocess.CompletedProcess[str]:
    """DCMTK's C-ECHO; on an A-ASSOCIATE-RJ it exits non-zero and prints the result, source and reason.

    Tests probe refusals with it rather than pynetdicom: pynetdicom 3.0.4's ``associate()`` reports a fast
    A-ASSOCIATE-RJ as an abort (``is_rejected`` False) when its calling thread resumes only after its DUL
    thread has read the RJ and closed the socket (``ACSE._negotiate_as_requestor`` checks
    ``socket._is_connected`` after ``socket._ready.wait()``), which a loaded machine makes likely."""
    cmd = [str(ECHOSCU), *tls_args, "-aet", "ECHOSCU", "-aec", aec, "127.0.0.1", str(port)]
    return subprocess.run(cmd, env=DCMTK_ENV, capture_output=True, text=True, timeout=timeout)


LIMIT_REJECTION = (  # A-ASSOCIATE-RJ (0x02, 0x03, 0x02) as DCMTK prints it
    "Result: Rejected Transient, Source: Service Provider (Presentation Related)",
    "Reason: Local Limit Exceeded",
)


def refused_at_limit(result: subprocess.CompletedProcess[str]) -> bool:
    """The DCMTK tool was refused with A-ASSOCIATE-RJ transient / provider / local limit exceeded."""
    said = result.stdout + result.stderr
    return result.returncode != 0 and all(line in said for line in LIMIT_REJECTION)
