"""The vera engine on real London-set photos: one synthetic identity per group, exact preserved pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonymizer.engines.base import AlignedFace, create_engine
from anonymizer.plans import Region
from tests.vera.conftest import FACES

pytestmark = pytest.mark.skipif(not (FACES / "london_set").is_dir(), reason="shared faces absent")


@pytest.fixture(scope="module")
def pair() -> list[AlignedFace]:
    from anonymizer.engines.vera import faceprep

    faces = []
    for i, name in enumerate(("001_03.jpg", "001_08.jpg")):
        image = faceprep.read_rgb(FACES / "london_set" / name)
        lm = faceprep.detect_landmarks(image)
        assert lm is not None
        crop, crop_lm = faceprep.align(image, lm, 128)
        mouth = np.zeros(crop.shape[:2], np.float32)
        x0, y0 = crop_lm[48:60].min(0).astype(int)
        x1, y1 = crop_lm[48:60].max(0).astype(int)
        mouth[y0 : y1 + 1, x0 : x1 + 1] = 1.0
        faces.append(AlignedFace(crop, crop_lm, {Region.MOUTH: mouth}, photo_index=i))
    return faces


def test_engine_keeps_mouth_pixels_exactly_and_is_keyed(tiny_bundle: Path, pair: list[AlignedFace]) -> None:
    import anonymizer.engines.vera  # noqa: F401

    engine = create_engine("vera", {"checkpoint": str(tiny_bundle), "steps": 3, "device": "cpu"})
    out = engine.anonymize(pair, identity_seed=77, preserve=(Region.MOUTH,))
    again = engine.anonymize(pair, identity_seed=77, preserve=(Region.MOUTH,))
    other = engine.anonymize(pair, identity_seed=78, preserve=(Region.MOUTH,))
    for face, img, img2, img3 in zip(pair, out, again, other, strict=True):
        assert img.shape == face.image.shape and img.dtype == np.uint8
        inside = face.masks[Region.MOUTH] >= 0.5
        assert np.array_equal(img[inside], face.image[inside])
        assert np.array_equal(img, img2)  # same key → same synthetic face
        assert not np.array_equal(img, img3)
        assert np.abs(img.astype(int) - face.image.astype(int))[~inside].mean() > 5  # the face was replaced
