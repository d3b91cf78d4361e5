"""Detection runs MTCNN on one torch thread (two OpenMP threads spin against each other on a loaded 2-core
machine: 1.0-1.4 s CPU per photo instead of 0.05 s) and gives the caller's thread count back."""

from __future__ import annotations

import torch

from anonymizer.faces.detect import detect_faces
from anonymizer.faces.models import one_torch_thread
from tests.faces.conftest import load_rgb


def test_detection_uses_one_thread_and_restores_the_callers_count() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        faces = detect_faces(load_rgb("017_03"))
        assert len(faces) == 1 and faces[0].detector == "mtcnn"
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_boxes_do_not_depend_on_the_callers_thread_count() -> None:
    image = load_rgb("030_08")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = detect_faces(image)
        torch.set_num_threads(2)
        two = detect_faces(image)
    finally:
        torch.set_num_threads(before)
    assert [f.box for f in one] == [f.box for f in two]
    assert all((a.landmarks == b.landmarks).all() for a, b in zip(one, two, strict=True))
