"""Face-pipeline fixtures: a small donor bank built once per session from the London Set (test identities
left out), and real photos loaded as RGB arrays. Everything skips cleanly when ../shared is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FACES

DONOR_IDS = ("001", "003", "004", "005", "013", "024")
TEST_IDS = ("017", "030")


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
def bank_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-identity donor bank (12 photos), built once per session; test identities are not in it."""
    from anonymizer.donors import build_bank, save_bank

    files = [london(f"{i}_{e}") for i in DONOR_IDS for e in ("03", "08")]
    path = tmp_path_factory.mktemp("donors") / "donors.npz"
    save_bank(build_bank(FACES, files=files), path)
    return path


@pytest.fixture(scope="session")
def pair() -> list[np.ndarray]:
    """Neutral and smiling photo of one test identity (not in the bank)."""
    return [load_rgb(f"{TEST_IDS[0]}_03"), load_rgb(f"{TEST_IDS[0]}_08")]
