"""Lazily loaded face models, shared per process (thread-safe, loaded once, never at import).

MTCNN (facenet-pytorch, weights in the wheel) is the primary detector; dlib's HOG detector is the independent
second detector used for verification; dlib's 68-point shape predictor and ResNet face recognizer come from
``face_recognition_models``. Nothing is downloaded.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_lock = threading.Lock()
_detect_lock = threading.Lock()


@dataclass(frozen=True)
class DlibModels:
    hog: Any  # dlib.fhog_object_detector
    predictor: Any  # dlib.shape_predictor (68 points)
    recognizer: Any  # dlib.face_recognition_model_v1


def _model_paths() -> tuple[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # face_recognition_models imports pkg_resources
        import face_recognition_models as frm
    return frm.pose_predictor_model_location(), frm.face_recognition_model_location()


@lru_cache(maxsize=1)
def _dlib_models() -> DlibModels:
    import dlib

    predictor_path, recognizer_path = _model_paths()
    return DlibModels(
        hog=dlib.get_frontal_face_detector(),
        predictor=dlib.shape_predictor(predictor_path),
        recognizer=dlib.face_recognition_model_v1(recognizer_path),
    )


def dlib_models() -> DlibModels:
    with _lock:
        return _dlib_models()


@lru_cache(maxsize=1)
def _mtcnn() -> Any:
    import torch
    from facenet_pytorch import MTCNN

    device = "cuda" if torch.cuda.is_available() else "cpu"
    # clinical photos hold large faces: a coarse pyramid start (min face 40 px on the downscaled copy) is
    # several times faster than the default 20 px and loses nothing at that size
    return MTCNN(keep_all=True, device=device, post_process=False, min_face_size=40)


def mtcnn() -> Any:
    with _lock:
        return _mtcnn()


def recognizer_path() -> str:
    """The installed dlib face-recognition ResNet file (faces.descriptor_torch reads it too)."""
    return _model_paths()[1]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run MTCNN's small networks on one intra-op thread. On a loaded machine (2 cores, several workers) two
    OpenMP threads wait on each other: detection took 1.0-1.4 s CPU instead of 0.03 s. One thread also makes
    the boxes independent of the machine's core count."""
    with torch_threads(1):
        yield


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch's intra-op thread count set to ``count`` inside the block (0: left as it is); restored after."""
    if count <= 0:
        yield
        return
    import torch

    with _detect_lock:  # the thread count is process-wide: callers on other threads wait their turn
        before = torch.get_num_threads()
        if before != count:
            torch.set_num_threads(count)
        try:
            yield
        finally:
            if before != count:
                torch.set_num_threads(before)
