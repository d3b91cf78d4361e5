"""The weight-free line detector: rotated lines keep their angle, light type on dark bars and small type
are proposed, and a plain background proposes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from anonymizer.text.detect import propose
from tests.text.conftest import FONT, MONO, card_photo, name_card


@pytest.mark.parametrize("angle", [-30.0, -12.0, 0.0, 18.0, 30.0])
def test_rotated_line_is_proposed_along_its_direction(angle: float) -> None:
    base, _ = card_photo(seed=5, kinds=())
    photo, card = name_card(base, (600, 450), ("MRN 00471155",), cap=28, angle=angle)
    centre = card.polygon.mean(0)
    hits = [p for p in propose(photo) if np.hypot(*(np.array(p.centre) - centre)) < 40]
    assert hits, "no proposal on the card"
    # PIL turns counter-clockwise on screen; image angles (y down) have the opposite sign
    assert min(abs(p.angle + angle) for p in hits) <= 5.0, [round(p.angle, 1) for p in hits]


def test_light_type_on_a_dark_bar_and_12px_type_are_proposed() -> None:
    base, _ = card_photo(seed=5, kinds=())
    photo, small = name_card(base, (800, 700), ("DOE JANE 00471155",), cap=12)
    image = Image.fromarray(photo)
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, 40, 700, 90), fill=(25, 25, 35))
    draw.text((120, 48), "MRN 00471155", font=ImageFont.truetype(str(FONT), 33), fill=(240, 240, 240))
    found = propose(np.asarray(image))
    assert any(abs(p.centre[1] - 65) < 20 for p in found), "overlay line missed"
    near_small = [np.hypot(*(np.array(p.centre) - small.polygon.mean(0))) for p in found]
    assert min(near_small, default=1e9) < 30, "12 px line missed"


def test_plain_background_proposes_nothing() -> None:
    photo, _ = card_photo(seed=5, kinds=())
    assert propose(photo) == []


def test_small_slanted_monospaced_line_is_proposed_from_its_word_blobs() -> None:
    """14 px monospaced type at 29° on a 2 MP photo: at the finest level its glyphs touch and form slanted
    word blobs taller than any glyph; they count by their thickness."""
    base, _ = card_photo(seed=5, kinds=(), size=(1200, 1600))
    photo, band = name_card(base, (700, 800), ("SCHMIDT JANE 01032116",), cap=14, angle=29.0, face=MONO,
                            paper=(190, 220, 255))
    centre = band.polygon.mean(0)
    hits = [p for p in propose(photo) if np.hypot(*(np.array(p.centre) - centre)) < 60]
    assert hits and min(abs(p.angle + 29.0) for p in hits) <= 5.0, [round(p.angle, 1) for p in hits]
