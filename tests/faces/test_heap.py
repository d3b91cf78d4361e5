"""glibc's heap kept for the pixel stage's large arrays (anonymizer/heap.py): a freed 40 MB array's pages are
not faulted in again for the next one, the pixel stage sets the thresholds from its settings, and the
anonymized pixels are the same with and without them (each in a fresh process: mallopt is process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anonymizer import heap, pixel_stage
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset
from anonymizer.plans import PixelMode, PixelPlan
from tests.faces.conftest import london

REPO = Path(__file__).resolve().parents[2]
glibc = pytest.mark.skipif(heap._mallopt() is None, reason="the C library has no mallopt (not glibc)")

FAULTS = """
import json, resource, sys
import numpy as np
from anonymizer import heap
heap.keep_freed(int(sys.argv[1]))
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(40 << 20, np.uint8)  # 40 MB: above glibc's largest dynamic mmap threshold
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""

DIGEST = """
import hashlib, sys
from pathlib import Path
from anonymizer import pixel_stage
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset
from anonymizer.plans import PixelPlan, Region
bank, photo, keep = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
pixel_stage.configure(pixel_stage.PixelSettings(donor_bank=bank, heap_keep_bytes=keep))
ds = jpeg_to_dataset(photo.read_bytes(), PhotoContext("HEAP"))
(outcome,) = pixel_stage.anonymize_group([ds], PixelPlan(preserve=(Region.MOUTH,)), 7)
print(hashlib.sha256(outcome.dataset.PixelData).hexdigest())
"""


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=600, check=True)
    return done.stdout.strip().splitlines()[-1]


@glibc
def test_a_freed_large_array_is_reused_without_faulting_its_pages_in_again() -> None:
    default = json.loads(_run(FAULTS, "0"))
    kept = json.loads(_run(FAULTS, str(256 << 20)))
    # glibc's defaults map each 40 MB array afresh and fault its pages in every time (~530 faults here with
    # numpy's transparent huge pages, ~10,000 without); kept, the second array reuses the first's pages
    assert min(default[1:]) > 100, default
    assert max(kept[1:]) * 10 < min(default[1:]), (kept, default)


def test_zero_leaves_the_c_librarys_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_applied", None)
    monkeypatch.setattr(heap, "_mallopt", lambda: pytest.fail("mallopt looked up for 0"))
    assert heap.keep_freed(0) is False
    assert heap.applied() is None


def test_without_mallopt_nothing_is_set_and_nothing_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_applied", None)
    monkeypatch.setattr(heap, "_mallopt", lambda: None)
    assert heap.keep_freed(256 << 20) is False
    assert heap.applied() is None


def test_the_pixel_stage_sets_the_threshold_of_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    monkeypatch.setattr(pixel_stage, "keep_freed", asked.append)
    ds = jpeg_to_dataset(london("017_03").read_bytes(), PhotoContext("HEAP"))
    pixel_stage.configure(pixel_stage.PixelSettings(heap_keep_bytes=123 << 20))
    try:
        pixel_stage.anonymize_group([ds], PixelPlan(mode=PixelMode.BLANK), 7)
    finally:
        pixel_stage.configure(pixel_stage.PixelSettings())
    assert asked == [123 << 20]
    assert pixel_stage.PixelSettings().heap_keep_bytes == 512 << 20  # on by default


@glibc
def test_anonymized_pixels_are_the_same_with_and_without_the_kept_heap(bank_path: Path) -> None:
    photo = str(london("017_03"))
    with_heap = _run(DIGEST, str(bank_path), photo, str(512 << 20))
    without = _run(DIGEST, str(bank_path), photo, "0")
    assert with_heap == without
