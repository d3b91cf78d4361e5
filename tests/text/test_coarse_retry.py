"""``coarse_retry_look`` (issue-11x10; on by default since issue-11x11): a proposal read only because its
look was too coarse for the pre-OCR filter is read again only when a finer look scores at least
``coarse_retry_score`` (-12, far below the filter's threshold: issue-11x11), or its first read held a
token. (COARSE is a line whose looks the stub scores as hair: ``coarse_own_look``, issue-11x12, would leave
it unread, so these tests of the re-reads turn that off; tests/text/test_coarse_own_look.py.)"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from anonymizer.text import ocr, step
from anonymizer.text.detect import Proposal

# glyphs 60 px: the 2,500-pixel look shows 12 px type at 2.3 px (too coarse), a 10,000-pixel one at 2.7 px
COARSE = Proposal((400.0, 200.0), (500.0, 70.0), 0.0, 60.0)
UNSURE = [ocr.Word("abc", 40.0, (0, 0, 30, 20))]  # nearly text: worth reading again, not a token
TOKEN_AMONG_NOISE = [ocr.Word("AB12", 92.0, (0, 0, 40, 20)), ocr.Word("x" * 20, 10.0, (40, 0, 200, 20))]


HAIR = -14.0  # a finer look's score below coarse_retry_score: surely not text
CARD_BLOCK = -8.3  # below the filter's threshold (-2.7), above coarse_retry_score: a card block's look


@dataclass
class _Filter:
    value: float  # every look's score
    looked: int = 0

    def score(self, crop: np.ndarray, enough: float = float("inf")) -> float:
        self.looked += 1
        return self.value

    def passes(self, crop: np.ndarray) -> bool:  # the filter's own threshold: never what decides re-reads
        self.looked += 1
        return self.value >= -2.72


def _reads(
    monkeypatch: pytest.MonkeyPatch, words: list[ocr.Word], value: float, on: bool
) -> tuple[int, int]:
    """(OCR reads, filter looks) of reading COARSE on noise, every read returning ``words`` and every look
    scoring ``value``."""
    calls = []
    fake = _Filter(value)
    monkeypatch.setattr(step.ocr, "read_line", lambda crop, block=False: calls.append(crop.shape) or words)
    monkeypatch.setattr(step.text_filter, "load", lambda: fake)
    image = np.random.default_rng(5).integers(0, 256, (400, 800, 3), dtype=np.uint8)
    line = step._read(image, COARSE, None, step.TextSettings(coarse_retry_look=on, coarse_own_look=False))
    assert not line.text
    return len(calls), fake.looked


def test_the_proposal_is_coarse_for_the_look_and_not_for_the_finer_one() -> None:
    image = np.zeros((400, 800, 3), np.uint8)
    settings = step.TextSettings()
    assert step.look(image, COARSE)[1] * settings.detect.min_cap_px < step.text_filter.MIN_TYPE_PX
    fine = step.look(image, COARSE, settings.coarse_look_pixels)[1]
    assert fine * settings.detect.min_cap_px >= step.text_filter.MIN_TYPE_PX


def test_off_a_coarse_unsure_read_is_read_again_without_a_look(monkeypatch: pytest.MonkeyPatch) -> None:
    reads, looked = _reads(monkeypatch, UNSURE, HAIR, on=False)
    assert reads >= 4 and looked == 0  # first read, then wide, tight and inverted


def test_on_a_coarse_unsure_read_scoring_as_hair_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _reads(monkeypatch, UNSURE, HAIR, on=True) == (1, 1)


def test_on_a_coarse_unsure_read_the_filter_passes_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    off, _ = _reads(monkeypatch, UNSURE, 0.0, on=False)
    assert _reads(monkeypatch, UNSURE, 0.0, on=True) == (off, 1)


def test_on_a_look_below_the_filter_threshold_but_above_the_score_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The filter misjudges blocks whose glyph estimate is off: a card block scoring -8.3 was confirmed only
    by a re-read (text bench seed 23). Its re-reads stay."""
    off, _ = _reads(monkeypatch, UNSURE, CARD_BLOCK, on=False)
    assert _reads(monkeypatch, UNSURE, CARD_BLOCK, on=True) == (off, 1)


def test_the_score_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(step.ocr, "read_line", lambda crop, block=False: calls.append(crop.shape) or UNSURE)
    monkeypatch.setattr(step.text_filter, "load", lambda: _Filter(CARD_BLOCK))
    image = np.random.default_rng(5).integers(0, 256, (400, 800, 3), dtype=np.uint8)
    settings = step.TextSettings(coarse_retry_look=True, coarse_retry_score=-5.0, coarse_own_look=False)
    step._read(image, COARSE, None, settings)
    assert len(calls) == 1


def test_the_default_reads_a_coarse_unsure_read_scoring_as_hair_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(step.ocr, "read_line", lambda crop, block=False: calls.append(crop.shape) or UNSURE)
    monkeypatch.setattr(step.text_filter, "load", lambda: _Filter(HAIR))
    image = np.random.default_rng(5).integers(0, 256, (400, 800, 3), dtype=np.uint8)
    step._read(image, COARSE, None, step.TextSettings(coarse_own_look=False))
    assert len(calls) == 1


def test_on_a_token_among_fragments_is_read_again_whatever_the_look(monkeypatch: pytest.MonkeyPatch) -> None:
    off, _ = _reads(monkeypatch, TOKEN_AMONG_NOISE, HAIR, on=False)
    assert off >= 4
    assert _reads(monkeypatch, TOKEN_AMONG_NOISE, HAIR, on=True) == (off, 0)
