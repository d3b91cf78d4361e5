"""The torch port of dlib's face-recognition ResNet (faces/descriptor_torch.py) gives dlib's descriptor: the
same 128 values and the same distances on real faces' chips, in a batch as one by one, on the thread count
the group's kernel_threads block sets; a file that is not that network is refused."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
import torch

from anonymizer.faces import descriptor_torch
from anonymizer.faces.descriptor_torch import DlibFormatError, DlibResNet, descriptors
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.models import dlib_models, recognizer_path
from anonymizer.faces.verify import descriptor, face_chip, torch_descriptor
from anonymizer.threads import group_limit, kernel_threads
from tests.faces.conftest import load_rgb

# both expressions, women and men, fair and dark skin (London-set identities)
PHOTOS = ("001_03", "004_08", "008_03", "013_08", "017_03", "022_08")
TOLERANCE = 1e-4  # measured: 3.3e-7 largest difference of a value, 1.1e-6 distance between the two


@pytest.fixture(scope="module")
def faces() -> list[tuple[np.ndarray, np.ndarray]]:
    found = []
    for name in PHOTOS:
        image = load_rgb(name)
        found.append((image, detect_faces(image)[0].landmarks))
    return found


def _dlib(chip: np.ndarray) -> np.ndarray:
    return np.asarray(dlib_models().recognizer.compute_face_descriptor(chip), np.float32)


def _distances(d: np.ndarray) -> np.ndarray:
    return np.linalg.norm(d[:, None] - d[None], axis=2)


def test_the_port_gives_dlibs_descriptor_and_distances_on_real_faces(faces: list) -> None:
    chips = [face_chip(image, landmarks) for image, landmarks in faces]
    reference = np.stack([_dlib(c) for c in chips])
    ported = np.stack([descriptors([c])[0] for c in chips])
    assert np.abs(ported - reference).max() < TOLERANCE
    assert np.linalg.norm(ported - reference, axis=1).max() < TOLERANCE
    assert np.abs(_distances(ported) - _distances(reference)).max() < TOLERANCE
    # the photos are six different people: the comparison is not between near-equal vectors
    assert _distances(reference)[np.triu_indices(len(chips), 1)].min() > 0.6
    # a whole-image call crops the same chip: verification's descriptor function, ported
    image, landmarks = faces[0]
    assert np.abs(torch_descriptor(image, landmarks) - descriptor(image, landmarks)).max() < TOLERANCE


def test_a_batch_gives_the_descriptors_of_single_chips(faces: list) -> None:
    chips = [face_chip(image, landmarks) for image, landmarks in faces]
    noisy = np.clip(chips[0] + np.random.default_rng(5).normal(0, 25, chips[0].shape), 0, 255)
    chips.append(noisy.astype(np.uint8))  # an unusual input: the layers' arithmetic, not a face prior
    batch = descriptors(chips)
    for chip, row in zip(chips, batch, strict=True):
        assert np.abs(row - descriptors([chip])[0]).max() < 1e-5
    assert np.abs(batch[-1] - _dlib(chips[-1])).max() < TOLERANCE


def test_the_network_runs_on_the_groups_thread_count_and_leaves_torchs_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    seen: list[int] = []
    real = descriptor_torch.torch_threads

    def spy(count: int) -> AbstractContextManager[None]:
        seen.append(count)
        return real(count)

    monkeypatch.setattr(descriptor_torch, "torch_threads", spy)
    chip = np.full((150, 150, 3), 128, np.uint8)
    descriptors([chip])  # outside a group: one thread
    with kernel_threads(3):
        assert group_limit() == 3
        descriptors([chip])
    assert group_limit() == 0
    assert seen == [1, 3]
    assert torch.get_num_threads() == before


def test_a_file_that_is_not_the_network_is_refused(tmp_path: Path) -> None:
    data = Path(recognizer_path()).read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError):
        DlibResNet(truncated)
    other = tmp_path / "other.dat"  # the loss layer renamed
    other.write_bytes(data.replace(b"loss_metric_2", b"loss_metric_3", 1))
    with pytest.raises(DlibFormatError):
        DlibResNet(other)


def test_verification_on_the_port_decides_as_on_dlib(faces: list) -> None:
    """verify_face with ``descriptor="torch"``: the same outcome and distance as with dlib, for an output
    that is the patient (fails) and one that is another person (passes)."""
    from anonymizer.faces.verify import VerifySettings, verify_face

    (patient, landmarks), (other, _) = faces[0], faces[1]
    assert patient.shape == other.shape  # London-set portraits: the other face lies where the patient's does
    for output in (patient, other):
        by_dlib = verify_face(patient, output, landmarks, VerifySettings(descriptor="dlib"))
        by_torch = verify_face(patient, output, landmarks, VerifySettings(descriptor="torch"))
        assert (by_torch.passed, by_torch.reason, by_torch.detected) == (
            by_dlib.passed,
            by_dlib.reason,
            by_dlib.detected,
        )
        assert abs(by_torch.distance - by_dlib.distance) < TOLERANCE
    assert not verify_face(patient, patient, landmarks, VerifySettings(descriptor="torch")).passed
    assert verify_face(patient, other, landmarks, VerifySettings(descriptor="torch")).passed
