"""Face-pipeline fixtures: the session's small donor bank (built once from the London Set, test identities
left out), and real photos loaded as RGB arrays. Everything skips cleanly when ../shared is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FACES
from tests.conftest import TEST_FACE_IDS as TEST_IDS


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


def london(name: str) -> Path:
    path = FACES / f"{name}.jpg"
    if not path.is_file():
        pytest.skip("../shared/data/faces/london_set is not present")
    return path


def load_rgb(name: str) -> np.ndarray:
    return np.asarray(Image.open(london(name)).convert("RGB"))


@pytest.fixture(scope="session")
def bank_path(donor_bank: Path) -> Path:
    """The session's shared donor bank (tests/conftest.py: 5 identities, neutral photos, no test ids)."""
    return donor_bank


@pytest.fixture(scope="session")
def pair() -> list[np.ndarray]:
    """Neutral and smiling photo of one test identity (not in the bank)."""
    return [load_rgb(f"{TEST_IDS[0]}_03"), load_rgb(f"{TEST_IDS[0]}_08")]
