"""``coarse_own_look`` (issue-11x12): a line too coarse for the pre-OCR filter's look (a box over ~80 px
across) is left unread when three looks score below ``own_look_score``: at its own glyph height at the
filter's 16 px scale (fine enough to judge), the finer look of ``coarse_look_pixels`` and the coarsest
judged scale."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from anonymizer.evaluation.canary_text import clinical_background
from anonymizer.plans import TextPlan
from anonymizer.text import detect, step
from anonymizer.text import filter as text_filter

from .conftest import name_card

# the timing photo's #50: glyphs 52 px in a line box 90 px across (the box sets the look's scale: too coarse)
HAIR_LINE = detect.Proposal((400.0, 200.0), (299.0, 90.0), 0.0, 52.0)
BLOCK = detect.Proposal((400.0, 200.0), (491.0, 134.0), 0.0, 60.0)  # the timing photo's #57: two lines
HUGE = detect.Proposal((500.0, 300.0), (900.0, 400.0), 0.0, 232.0)  # glyphs over 80 px: no own look judges
HAIR = -16.0  # the timing photo's #50 own look (its other two: -11.5, -10.5)
TEXT = -4.3  # the lowest of the three looks' best on a coarse line OCR confirmed (text bench seed 31)
NOISE_READ: list[step.ocr.Word] = []


@dataclass
class _Filter:
    value: float | list[float]  # every look's score, or each look's in turn
    looked: int = 0

    def score(self, crop: np.ndarray, enough: float = float("inf")) -> float:
        self.looked += 1
        return self.value if isinstance(self.value, float) else self.value[self.looked - 1]

    def passes(self, crop: np.ndarray) -> bool:
        self.looked += 1
        return self.value >= -2.72


def _reads(
    monkeypatch: pytest.MonkeyPatch, p: detect.Proposal, value: float | list[float], **settings: object
) -> tuple[int, int]:
    """(OCR reads, filter looks) of reading ``p`` on noise, every look scoring ``value``."""
    calls: list[tuple[int, ...]] = []
    fake = _Filter(value)
    read = lambda crop, block=False: calls.append(crop.shape) or NOISE_READ  # noqa: E731
    monkeypatch.setattr(step.ocr, "read_line", read)
    monkeypatch.setattr(step.text_filter, "load", lambda: fake)
    image = np.random.default_rng(5).integers(0, 256, (600, 1200, 3), dtype=np.uint8)
    line = step._read(image, p, None, step.TextSettings(**settings))  # type: ignore[arg-type]
    assert not line.text
    return len(calls), fake.looked


def test_the_line_is_too_coarse_for_the_look_and_judged_by_its_own() -> None:
    image = np.zeros((600, 1200, 3), np.uint8)
    settings = step.TextSettings()
    assert step.look(image, HAIR_LINE, settings.coarse_look_pixels)[1] * 12 < text_filter.MIN_TYPE_PX
    crop, scale = step.own_look(image, HAIR_LINE, settings.own_look_pixels)
    assert scale == pytest.approx(text_filter.GLYPH_PX / HAIR_LINE.glyph_px)
    assert scale * settings.detect.min_cap_px >= text_filter.MIN_TYPE_PX
    assert crop.shape == pytest.approx((round((90 + 2 * (0.35 * 90 + 2)) * scale),
                                        round((299 + 2 * (0.35 * 90 + 2)) * scale)), abs=1)


def test_off_a_coarse_proposal_is_read_whatever_its_own_look(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reads(monkeypatch, HAIR_LINE, HAIR, coarse_own_look=False) == (1, 0)


def test_on_three_looks_scoring_as_hair_leave_it_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reads(monkeypatch, HAIR_LINE, HAIR, coarse_own_look=True) == (0, 3)


def test_on_a_line_scoring_as_text_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reads(monkeypatch, HAIR_LINE, TEXT, coarse_own_look=True) == (1, 1)


@pytest.mark.parametrize("which", [0, 1, 2])
def test_on_one_look_scoring_as_text_is_enough_to_read(monkeypatch: pytest.MonkeyPatch, which: int) -> None:
    """Each look alone misjudges some text (a line of 54 px type scored -16.6 in its own look and +2.5 in
    the finer one, text bench seed 97): one look at or above the score and the line is read."""
    scores = [HAIR, HAIR, HAIR]
    scores[which] = TEXT
    assert _reads(monkeypatch, HAIR_LINE, scores, coarse_own_look=True) == (1, which + 1)


def test_the_score_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reads(monkeypatch, HAIR_LINE, -9.7, coarse_own_look=True) == (1, 1)
    assert _reads(monkeypatch, HAIR_LINE, -9.7, coarse_own_look=True, own_look_score=-8.0) == (0, 3)


def test_on_a_block_is_read_whatever_its_own_look(monkeypatch: pytest.MonkeyPatch) -> None:
    """A block's glyph estimate can be far off its type: a card block OCR confirmed at its first read scored
    -13.7 in its own look (text bench seed 11, case 2)."""
    assert step._block(BLOCK)
    assert _reads(monkeypatch, BLOCK, HAIR, coarse_own_look=True) == (1, 0)


def test_on_glyphs_over_80_px_are_read_without_a_look(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reads(monkeypatch, HUGE, HAIR, coarse_own_look=True) == (1, 0)


def test_on_an_own_look_shrunk_below_the_judged_scale_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pixel budget that shrinks the own look until the smallest type would be under 2.4 px: read."""
    assert _reads(monkeypatch, HAIR_LINE, HAIR, coarse_own_look=True, own_look_pixels=500) == (1, 0)


def test_on_a_large_card_is_still_found_and_filled() -> None:
    """A 60 px name card (its line boxes too coarse for the look): the real filter's own looks pass it, so
    with the setting on the text is read, found and filled as with it off."""
    photo = clinical_background(np.random.default_rng(4), (1500, 2000))
    photo, _ = name_card(photo, (1000, 700), ("SMITH 2741",), cap=60)
    settings = step.TextSettings(coarse_own_look=True)
    coarse = [p for p in detect.propose(photo, settings.detect) if step.look(photo, p)[1] * 12 < 2.4]
    judged = [p for p in coarse if step.own_look(photo, p, settings.own_look_pixels)[1] * 12 >= 2.4]
    assert judged and not any(step._surely_not_text(photo, p, settings) for p in judged)
    on = step.scrub(photo, TextPlan(), None, settings)
    off = step.scrub(photo, TextPlan(), None, step.TextSettings(coarse_own_look=False))
    assert on.ok and on.report.found >= 1 and on.report.redacted >= 1
    assert on.report == off.report and np.array_equal(on.image, off.image)
