"""Canaries that went out readable on the bench, each rebuilt here: print that tesseract misreads at the first
crop is read again (a clean two-toned crop read as nothing or as unsure noise: seed 23 case 177, a 19 px
wristband; seed 47 case 159, an orange serif date stamp on skin), and a card read as a block goes whole
(hold-out seed 61 case 75). Each case went out readable before its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonymizer.evaluation.canary_text import clinical_background, readable_tokens
from anonymizer.plans import TextPlan
from anonymizer.text.step import scrub
from tests.text.conftest import name_card

pytestmark = pytest.mark.usefixtures("tessdata_ok")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
LIBERATION = Path("/usr/share/fonts/truetype/liberation")


@pytest.mark.parametrize(("seed", "centre"), [(38, (606, 308)), (54, (600, 308))])
def test_wristband_whose_crop_reaches_onto_darker_skin_is_redacted(
    seed: int, centre: tuple[int, int]
) -> None:
    """19 px bold serif on a yellow band at -14° on skin: the first crop's margin reaches past the band onto
    the darker skin, a black bar after the contrast step, and tesseract read the line as nothing at all."""
    base = clinical_background(np.random.default_rng(seed), (1200, 1600))
    photo, band = name_card(base, centre, ("DOE JANE 94933928",), cap=19, angle=-13.82,
                            face=DEJAVU / "DejaVuSerif-Bold.ttf", paper=(255, 240, 150), ink=(20, 40, 140))
    assert len(readable_tokens(photo, band)) == 3  # the attacker reads the input
    result = scrub(photo, TextPlan())
    assert result.image is not None, result.reason
    assert readable_tokens(result.image, band) == set()


@pytest.mark.parametrize(("seed", "centre"), [(21, (1379, 1141)), (54, (1382, 1145))])
def test_faint_serif_date_stamp_on_skin_is_redacted(seed: int, centre: tuple[int, int]) -> None:
    """A 40 px orange serif date stamp on skin: even and clean, but faint along the colour axis (ink 40,
    paper 130); tesseract read it as noise at confidence 6-57 in grey, and at 90+ in black and white."""
    base = clinical_background(np.random.default_rng(seed), (1200, 1600))
    photo, stamp = name_card(base, centre, ("27 02 2023",), cap=40, face=DEJAVU / "DejaVuSerif.ttf",
                             paper=None, ink=(255, 150, 30))
    assert len(readable_tokens(photo, stamp)) == 3  # the attacker reads the input
    result = scrub(photo, TextPlan())
    assert result.image is not None, result.reason
    assert readable_tokens(result.image, stamp) == set()


def test_small_card_read_as_a_block_goes_whole() -> None:
    """13 px bold italic on a two-line card at 14°: proposed as one block, whose block read found only the
    record number's row; the name's row was left (its first word cut by the fill, its second readable)."""
    base = clinical_background(np.random.default_rng(27), (1200, 1600))
    photo, card = name_card(base, (1325, 548), ("BERNARD, SOPHIE", "MRN 65301479"), cap=13, angle=13.92,
                            face=LIBERATION / "LiberationSerif-BoldItalic.ttf", paper=(255, 240, 150),
                            ink=(10, 10, 10))
    assert len(readable_tokens(photo, card)) == 4  # the attacker reads the input
    result = scrub(photo, TextPlan())
    assert result.image is not None, result.reason
    assert readable_tokens(result.image, card) == set()
    x0, y0, x1, y1 = (int(v) for v in (*card.polygon.min(0), *card.polygon.max(0)))
    outside = np.ones(photo.shape[:2], bool)
    outside[max(0, y0 - 40) : y1 + 40, max(0, x0 - 40) : x1 + 40] = False
    assert np.array_equal(result.image[outside], photo[outside])  # the card goes, not its surroundings
