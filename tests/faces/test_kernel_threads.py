"""The pixel stage runs OpenCV and BLAS on one thread per worker (anonymizer/threads.py): the limit holds
inside the block, the caller's counts come back after it, and the anonymized pixels do not depend on it."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from anonymizer import pixel_stage
from anonymizer.outcomes import Ok
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset
from anonymizer.plans import PixelPlan, Region
from anonymizer.threads import current_threads, kernel_threads
from tests.faces.conftest import london


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def test_the_limit_holds_inside_and_the_callers_counts_come_back(two_threads: None) -> None:
    np.ones((64, 64)) @ np.ones((64, 64))  # numpy's BLAS is loaded
    outside = current_threads()
    assert outside[0] == 2
    with kernel_threads(1):
        assert current_threads() == (1, 1)
    assert current_threads() == outside
    with kernel_threads(0):  # 0: the libraries' own counts
        assert current_threads() == outside


def test_blocks_open_on_two_threads_restore_only_when_the_last_closes(two_threads: None) -> None:
    entered, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def other() -> None:
        with kernel_threads(1):
            entered.set()
            release.wait(10)
            seen.append(cv2.getNumThreads())  # (OpenBLAS reports its count per thread)

    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(10)
    with kernel_threads(1):
        pass  # closes first: the other block still runs under the limit
    release.set()
    thread.join(10)
    assert seen == [1]
    assert cv2.getNumThreads() == 2


def test_anonymized_pixels_do_not_depend_on_the_thread_counts(bank_path: Path) -> None:
    ds = jpeg_to_dataset(london("017_03").read_bytes(), PhotoContext("THREADS"))
    plan = PixelPlan(preserve=(Region.MOUTH,))
    digests = []
    for threads in (1, 0):  # 0: OpenCV and BLAS on every core
        pixel_stage.configure(pixel_stage.PixelSettings(donor_bank=bank_path, kernel_threads=threads))
        try:
            (outcome,) = pixel_stage.anonymize_group([ds], plan, 7)
        finally:
            pixel_stage.configure(pixel_stage.PixelSettings())
        assert isinstance(outcome, Ok), outcome
        digests.append(hashlib.sha256(outcome.dataset.PixelData).hexdigest())
    assert digests[0] == digests[1]
