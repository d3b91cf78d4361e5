"""The pre-OCR filter: every line OCR would confirm is still read, most hair goes unread, the outcome on a
label card equals the unfiltered step's, and altered weights are refused (the text check cannot run)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from anonymizer.evaluation.canary_text import CanaryKind
from anonymizer.plans import TextPlan
from anonymizer.text import filter as text_filter
from anonymizer.text.detect import Proposal, propose
from anonymizer.text.ocr import OcrUnavailable
from anonymizer.text.step import TextSettings, _read, _worth_reading, look, scrub
from tests.conftest import FACES
from tests.text.conftest import card_photo

pytestmark = pytest.mark.usefixtures("tessdata_ok")
FILTERED, UNFILTERED = TextSettings(), TextSettings(prefilter=False)


def _face(photo_id: str = "001_03") -> np.ndarray:
    path = FACES / f"{photo_id}.jpg"
    if not path.is_file():
        pytest.skip(f"London Set photo {path.name} not in ../shared/data")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("seed", [2, 4])
def test_every_line_ocr_confirms_is_still_read(seed: int) -> None:
    """Cards, wristbands, overlays, date stamps and writing on a background: a line the unfiltered step
    confirms as text is never left unread by the filter."""
    kinds = (CanaryKind.CARD, CanaryKind.WRISTBAND, CanaryKind.OVERLAY, CanaryKind.DATESTAMP, CanaryKind.SKIN)
    photo, _ = card_photo(seed=seed, kinds=kinds, size=(1200, 1600))
    confirmed = [p for p in propose(photo) if _read(photo, p, None, UNFILTERED).text]
    assert len(confirmed) >= 4  # the canaries are there to be found
    assert [p for p in confirmed if not _worth_reading(photo, p, FILTERED)] == []


def test_most_hair_and_face_proposals_go_unread() -> None:
    photo = _face()
    proposals = propose(photo)
    assert len(proposals) >= 10  # hair, eyes, eyebrows
    unread = [p for p in proposals if not _worth_reading(photo, p, FILTERED)]
    assert len(unread) >= 0.6 * len(proposals)
    assert all(not _read(photo, p, None, UNFILTERED).text for p in unread)


def _reference_score(crop: np.ndarray) -> float:
    """The filter's score as fitted: :func:`text_filter.scores` (the training path) on one crop."""
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(text_filter.as_input(crop))[None, None]
        return float(text_filter.scores(text_filter.load().net, x)[0])


def test_the_fast_score_is_the_fitted_score_on_real_proposals() -> None:
    """The step scores each proposal by :func:`text_filter.one_score` (both polarities side by side, its own
    pooling): the same number as the fitted network's, on every proposal of a face photo and of a photo
    with a card, a date stamp and a wristband (odd sizes, both scales), so the fitted threshold holds."""
    card, _ = card_photo(seed=3, kinds=(CanaryKind.CARD, CanaryKind.DATESTAMP, CanaryKind.WRISTBAND))
    crops = [look(photo, p)[0] for photo in (_face(), card) for p in propose(photo)]
    assert len(crops) >= 20 and len({c.shape for c in crops}) >= 10
    assert any(min(c.shape) >= 16 for c in crops)  # the half scale counts too
    fast = np.array([text_filter.load().score(c) for c in crops])
    reference = np.array([_reference_score(c) for c in crops])
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-4)
    threshold = text_filter.load().threshold
    assert np.array_equal(fast >= threshold, reference >= threshold)
    # ``passes`` skips the half-scale look of a crop that passes at full scale: the same answers
    assert [text_filter.load().passes(c) for c in crops] == list(fast >= threshold)
    assert any(min(c.shape) >= 16 and f >= threshold for c, f in zip(crops, fast, strict=True))


def test_the_fast_score_matches_on_every_small_size() -> None:
    """Odd and even sizes, from the smallest crop up: padding, the inverse's offset and the odd row or
    column each pooling drops all line up with the fitted network's."""
    rng = np.random.default_rng(5)
    for h in range(4, 40, 3):
        for w in range(4, 70, 5):
            crop = rng.integers(0, 256, (h, w)).astype(np.uint8)
            assert abs(text_filter.load().score(crop) - _reference_score(crop)) < 1e-4, (h, w)


def test_a_label_card_comes_out_as_without_the_filter() -> None:
    photo, _ = card_photo(seed=3, kinds=(CanaryKind.CARD, CanaryKind.DATESTAMP, CanaryKind.WRISTBAND))
    filtered = scrub(photo, TextPlan(), settings=FILTERED)
    reference = scrub(photo, TextPlan(), settings=UNFILTERED)
    assert filtered.ok and reference.ok and reference.report.redacted >= 3
    assert filtered.report == reference.report
    assert filtered.image is not None and reference.image is not None
    assert np.array_equal(filtered.image, reference.image)


def test_a_look_too_coarse_for_small_type_is_always_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tall block of large glyphs is shrunk to the look's pixel budget, where 12 px type would vanish."""
    photo = np.full((1200, 1600, 3), 200, np.uint8)
    monkeypatch.setattr(text_filter.TextFilter, "passes", lambda self, crop: False)
    fine = Proposal((800.0, 600.0), (300.0, 40.0), 0.0, 30.0)
    coarse = Proposal((800.0, 600.0), (900.0, 500.0), 0.0, 120.0)
    assert not _worth_reading(photo, fine, FILTERED)
    assert _worth_reading(photo, coarse, FILTERED)
    assert _worth_reading(photo, fine, replace(FILTERED, prefilter=False))


def test_altered_or_missing_weights_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / text_filter.WEIGHTS.name
    shutil.copy(text_filter.WEIGHTS, weights)
    shutil.copy(text_filter.WEIGHTS.with_suffix(".json"), weights.with_suffix(".json"))
    assert text_filter.load(weights).threshold == text_filter.load().threshold  # a faithful copy loads
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(OcrUnavailable, match="sha256"):
        text_filter._read(weights)
    with pytest.raises(OcrUnavailable, match="not found"):
        text_filter._read(tmp_path / "missing.safetensors")


def _former_both_polarities(net: object, x: object) -> float:
    """``filter._both_polarities`` before issue-11t3 (a new tensor per ReLU and per zeroing, the column
    masks made on every call), written out as the reference of its faster form."""
    import torch
    from torch import nn

    first, w = net[0], x.shape[3]  # type: ignore[index, attr-defined]
    grid = 2 ** sum(isinstance(layer, nn.MaxPool2d) for layer in net)  # type: ignore[attr-defined]
    start = grid * (w // grid + 1)
    edges = torch.nn.functional.conv2d(x, first.weight, None, padding=1)
    bias = first.bias.view(1, -1, 1, 1)
    gap = edges.new_zeros((*edges.shape[:3], start - w))
    a, level = torch.cat([edges + bias, gap, bias - edges], dim=3), 1
    for layer in net[1:]:  # type: ignore[index]
        if isinstance(layer, nn.MaxPool2d):
            level *= 2
            column, width, at = torch.arange(a.shape[3] // 2), w // level, start // level
            a = text_filter._pool2(a) * ((column < width) | ((column >= at) & (column < at + width)))
        else:
            a = layer(a)
    inverse = start // level
    return max(float(a[..., : w // level].max()), float(a[..., inverse : inverse + w // level].max()))


def test_the_in_place_network_pass_gives_the_former_logits_bit_for_bit() -> None:
    import torch

    net = text_filter.load().net
    rng = np.random.default_rng(6)
    with torch.inference_mode():
        for h, w in [(8, 8), (9, 31), (16, 17), (23, 64), (40, 61), (12, 130)]:
            crop = rng.integers(0, 256, (h, w)).astype(np.uint8)
            x = torch.from_numpy(text_filter.as_input(crop))[None, None]
            for _ in range(2):  # the second time from the cached column masks
                assert text_filter._both_polarities(net, x) == _former_both_polarities(net, x), (h, w)
