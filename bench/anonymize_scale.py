"""`vera-gateway anonymize` at scale: peak memory on a small vs a 10x larger folder, and throughput on two
worker processes vs one, printed as ratios side by side.

    .venv/bin/python bench/anonymize_scale.py [--small 200] [--large 2000] [--per-study 4] [--side 64]

Inputs: small JPEG Baseline VL Photographic objects (London-set photos downscaled to ``--side`` pixels, or
synthetic gradients when ../shared is absent), ``--per-study`` photos per study, one patient per study.
Rules: the shipped default rules with ``mode: blank`` (the pixel path decodes, blanks and re-encodes every
photo without face models, so the run measures the stage sequence, the scan, the pool and the writes).
Peak RSS is sampled every 50 ms over the whole process tree (command, forkserver and workers) and for the
command process alone. A flat memory profile gives a large/small ratio near 1; ``--workers 2`` on a
2-core machine should approach 2x the throughput of ``--workers 1`` (startup of the workers included).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import FACES, Patient, Study, make_vl_photo  # noqa: E402


def _jpegs(folder: Path, side: int, count: int = 16) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(FACES.glob("*.jpg"))[:count] if FACES.is_dir() else []
    paths = []
    for i in range(count):
        if i < len(sources):
            img = Image.open(sources[i]).convert("RGB").resize((side, side))
        else:
            y, x = np.mgrid[0:side, 0:side]
            img = Image.fromarray(np.stack([x * 4 + i, y * 4, (x + y) * 2], -1).astype(np.uint8))
        path = folder / f"{i:02d}.jpg"
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths


def make_folder(folder: Path, count: int, per_study: int, jpegs: list[Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    study, patient = Study(), Patient()
    for n in range(count):
        if n % per_study == 0:
            study, patient = Study(), Patient(patient_id=f"BENCH-{n // per_study:06d}")
        ds = make_vl_photo(jpegs[n % len(jpegs)], patient, study, n % per_study + 1)
        ds.save_as(folder / f"{n:06d}.dcm", enforce_file_format=True)
    return folder


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return pids


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Run:
    label: str
    files: int
    workers: int
    wall_s: float
    peak_tree_mib: float
    peak_command_mib: float
    outcomes: dict[str, int]

    @property
    def per_s(self) -> float:
        return self.files / self.wall_s


def run(label: str, in_dir: Path, out_dir: Path, workers: int, secret: Path, rules: Path) -> Run:
    code = "import sys; from gateway.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "anonymize", str(in_dir), str(out_dir), "--rules", str(rules)]
    argv += ["--secret", str(secret), "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = {"tree": 0, "command": 0}

    def sample() -> None:
        while proc.poll() is None:
            peak["tree"] = max(peak["tree"], sum(_rss_kib(p) for p in _tree(proc.pid)))
            peak["command"] = max(peak["command"], _rss_kib(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    proc.wait()
    sampler.join()
    wall = time.perf_counter() - started
    summary = json.loads((out_dir / "anonymize-summary.json").read_text())
    files = sum(1 for _ in in_dir.glob("*.dcm"))
    return Run(label, files, workers, wall, peak["tree"] / 1024, peak["command"] / 1024, summary["outcomes"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--per-study", type=int, default=4)
    parser.add_argument("--side", type=int, default=64)
    args = parser.parse_args()
    from dicom_rules.loader import DEFAULT_RULES_PATH

    with tempfile.TemporaryDirectory(prefix="vera-anon-scale-") as tmp:
        work = Path(tmp)
        jpegs = _jpegs(work / "jpegs", args.side)
        small = make_folder(work / "small", args.small, args.per_study, jpegs)
        large = make_folder(work / "large", args.large, args.per_study, jpegs)
        secret = work / "secret.key"
        secret.write_text("5e" * 32)
        secret.chmod(0o600)
        rules = work / "rules.yaml"
        rules.write_text(
            DEFAULT_RULES_PATH.read_text().replace("mode: anonymize", "mode: blank").replace(
                "      preserve: []\n", ""
            )
        )
        runs = [
            run("small, 1 worker", small, work / "o1", 1, secret, rules),
            run("large, 1 worker", large, work / "o2", 1, secret, rules),
            run("large, 2 workers", large, work / "o3", 2, secret, rules),
        ]
    header = ("run", "files", "wall s", "files/s", "peak tree MiB", "peak cmd MiB")
    print("{:<18} {:>6} {:>8} {:>8} {:>14} {:>13}  outcomes".format(*header))
    for r in runs:
        print(
            f"{r.label:<18} {r.files:>6} {r.wall_s:>8.1f} {r.per_s:>8.1f} {r.peak_tree_mib:>14.0f} "
            f"{r.peak_command_mib:>13.0f}  {r.outcomes}"
        )
    small_run, large_one, large_two = runs
    print(f"peak RSS large/small (1 worker): tree {large_one.peak_tree_mib / small_run.peak_tree_mib:.2f}x, "
          f"command {large_one.peak_command_mib / small_run.peak_command_mib:.2f}x "
          f"for {large_one.files / small_run.files:.0f}x the files")
    speedup = large_two.per_s / large_one.per_s
    print(f"throughput 2 workers / 1 worker ({large_one.files} files, startup included): {speedup:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
