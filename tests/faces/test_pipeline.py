"""Surrogate pipeline on real photos: preserved region exact, same seed → same identity across processes,
pairs consistent, outputs far from the patient."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.pipeline import run_group
from anonymizer.faces.regions import LandmarkRegions
from anonymizer.faces.verify import descriptor, distance
from anonymizer.plans import Region

SEED = 0x5EED_0001
REPO = Path(__file__).resolve().parents[2]
CHILD = """
import hashlib, sys, numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from PIL import Image
from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.faces.pipeline import run_group
from anonymizer.plans import Region
bank, photo, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
engine = SurrogateEngine(SurrogateSettings(), load_bank(bank))
image = np.asarray(Image.open(photo).convert("RGB"))
result = run_group([image], engine, seed, (Region.MOUTH,))[0]
print(",".join(engine.last_choice.identities), hashlib.sha256(result.image.tobytes()).hexdigest())
"""


@pytest.fixture(scope="module")
def engine(bank_path: Path) -> SurrogateEngine:
    return SurrogateEngine(SurrogateSettings(), load_bank(bank_path))


@pytest.fixture(scope="module")
def mouth_run(engine: SurrogateEngine, pair: list[np.ndarray]) -> tuple[list, tuple[str, ...]]:
    results = run_group(pair, engine, SEED, (Region.MOUTH,))
    assert engine.last_choice is not None
    return results, engine.last_choice.identities


def test_mouth_region_is_exact_and_face_changes(mouth_run: tuple, pair: list[np.ndarray]) -> None:
    results, _ = mouth_run
    for image, result in zip(pair, results, strict=True):
        assert result.ok, result.reason
        face = result.faces[0].detection
        lm = face.landmarks
        h, w = image.shape[:2]
        keep = LandmarkRegions().masks(image, lm, (Region.MOUTH,), (0, 0, w, h))
        assert keep.sum() > 1000
        assert np.array_equal(result.image[keep], image[keep])
        changed = np.any(result.image != image, axis=-1)
        x0, y0, x1, y1 = face.box
        assert changed[y0:y1, x0:x1].mean() > 0.5  # the rest of the face is replaced
        assert not changed[: y0 // 2].any()  # far outside the face nothing moves


def test_outputs_are_new_identity_and_pair_consistent(mouth_run: tuple, pair: list[np.ndarray]) -> None:
    results, _ = mouth_run
    descs = [descriptor(r.image, detect_faces(r.image)[0].landmarks) for r in results]
    originals = [descriptor(img, detect_faces(img)[0].landmarks) for img in pair]
    for d, o in zip(descs, originals, strict=True):
        assert distance(d, o) > 0.6
    assert distance(descs[0], descs[1]) < 0.6  # both photos show the same synthetic person
    assert all(r.faces[0].check.passed for r in results)


def test_same_seed_same_identity_in_another_process(bank_path: Path, engine: SurrogateEngine) -> None:
    from tests.faces.conftest import TEST_IDS, load_rgb, london

    photo = london(f"{TEST_IDS[0]}_03")
    image = load_rgb(f"{TEST_IDS[0]}_03")
    here = run_group([image], engine, SEED, (Region.MOUTH,))[0]
    assert engine.last_choice is not None
    expected = f"{','.join(engine.last_choice.identities)} {hashlib.sha256(here.image.tobytes()).hexdigest()}"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(bank_path), str(photo), str(SEED)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert child.stdout.strip().splitlines()[-1] == expected


def test_other_seeds_pick_other_donor_sets(engine: SurrogateEngine, pair: list[np.ndarray]) -> None:
    from anonymizer.engines.surrogate import choose_donors

    profile = _profile(engine, pair)
    choices = {choose_donors(engine.bank, seed, profile, engine.settings).identities for seed in range(40)}
    assert len(choices) > 3
    assert all(engine.settings.k_min <= len(set(c)) == len(c) <= engine.settings.k for c in choices)


def _profile(engine: SurrogateEngine, pair: list[np.ndarray]) -> dict:
    from anonymizer.engines.surrogate import _patient_profile
    from anonymizer.faces.pipeline import PipelineSettings, _align_all

    records = _align_all(pair, [detect_faces(p)[:1] for p in pair], engine.crop_size, (), PipelineSettings())
    return _patient_profile([r.aligned for r in records], engine.bank)
