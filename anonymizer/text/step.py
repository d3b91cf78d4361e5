"""The text step of the pixel stage: find text in a photo, inpaint it away, check again, or hold the photo.

``scrub(image, plan, protected)`` → :class:`TextResult`. Proposals come from the morphological detector
(:mod:`anonymizer.text.detect`); each is straightened and read as one line by tesseract; a line counts as text
when OCR reads a real token in it with confidence. A line whose whole reading matches the rule's allow-list is
kept. The rest is filled by inpainting (a neutral patch from the surroundings, never a blur of the text),
together with unconfirmed proposals of the same size right beside confirmed text (the other lines of a card).
Then a second pass must find no text outside the allow-list, or the photo is quarantined. Text touching the
preserved clinical region is never altered: the photo is quarantined. What OCR read never leaves this module.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace

import cv2
import numpy as np

from anonymizer.plans import Box, TextAction, TextPlan, TextReport
from anonymizer.text import ocr
from anonymizer.text.detect import DetectSettings, Proposal, propose

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextSettings:
    detect: DetectSettings = DetectSettings()
    line_height: int = 36  # OCR crops are scaled so the line is this tall (tesseract reads 20-40 px best)
    min_confidence: float = 55.0  # a word OCR is at least this sure of
    min_letters: int = 3  # a real token: at least this many letters, or ...
    min_digits: int = 2  # ... at least this many digits (dates, record numbers)
    neighbour_gap: float = 1.5  # unconfirmed proposals within this many line heights of text are text too
    margin: float = 0.3  # inpainted margin around a line, in line heights (plus 3 px)
    rounds: int = 3  # redaction rounds before the final check


@dataclass(frozen=True)
class TextResult:
    image: np.ndarray | None  # the checked (and possibly redacted) image; None when quarantined
    report: TextReport
    reason: str = ""  # quarantine reason (codes and counts only)

    @property
    def ok(self) -> bool:
        return self.image is not None and not self.reason


@dataclass(frozen=True)
class _Line:
    proposal: Proposal
    text: bool  # OCR confirmed a token
    allowed: bool  # and the whole reading is on the allow-list


def _crop(grey: np.ndarray, p: Proposal, height: int) -> np.ndarray:
    """The proposal straightened to horizontal, scaled to ``height`` px line height, with a margin."""
    along, across = p.size
    margin = 0.35 * across + 2
    scale = height / max(across, 1.0)
    w, h = (along + 2 * margin) * scale, (across + 2 * margin) * scale
    m = cv2.getRotationMatrix2D(p.centre, p.angle, scale)
    m[0, 2] += w / 2 - p.centre[0]
    m[1, 2] += h / 2 - p.centre[1]
    size = (max(8, int(w)), max(8, int(h)))
    return cv2.warpAffine(grey, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _is_token(word: ocr.Word, settings: TextSettings) -> bool:
    letters = sum(c.isalpha() for c in word.text)
    digits = sum(c.isdigit() for c in word.text)
    real = letters + digits >= settings.min_letters or digits >= settings.min_digits
    return real and word.confidence >= settings.min_confidence


def _read(grey: np.ndarray, p: Proposal, keep: re.Pattern[str] | None, settings: TextSettings) -> _Line:
    words = ocr.read_line(_crop(grey, p, settings.line_height))
    text = any(_is_token(w, settings) for w in words)
    reading = " ".join(w.text for w in words)
    allowed = text and keep is not None and keep.fullmatch(reading) is not None
    return _Line(p, text, allowed)


def _near(a: Proposal, b: Proposal, gap: float) -> bool:
    ratio = a.size[1] / max(b.size[1], 1e-3)
    if not 0.5 <= ratio <= 2.0:
        return False
    reach = gap * max(a.size[1], b.size[1])
    ax0, ay0, ax1, ay1 = a.box((1 << 30, 1 << 30), reach)
    bx0, by0, bx1, by1 = b.box((1 << 30, 1 << 30))
    return ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1


def _to_redact(lines: list[_Line], settings: TextSettings) -> list[Proposal]:
    """Confirmed, not allowed lines plus unconfirmed proposals of a similar size right beside them."""
    hits = [ln.proposal for ln in lines if ln.text and not ln.allowed]
    extra = [
        ln.proposal
        for ln in lines
        if not ln.text and any(_near(h, ln.proposal, settings.neighbour_gap) for h in hits)
    ]
    return hits + extra


def _mask(shape: tuple[int, ...], proposals: list[Proposal], settings: TextSettings) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    for p in proposals:
        grown = p.grown(settings.margin * p.size[1] + 3)
        cv2.fillPoly(mask, [np.round(grown.corners).astype(np.int32)], 1)
    return mask


def _inpaint(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list[Box]]:
    """Fill every masked area from its surroundings; big areas are filled at reduced size (same look)."""
    out = image.copy()
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    boxes: list[Box] = []
    for i in range(1, n):
        x, y, w, h, _ = stats[i]
        pad = max(8, min(w, h) // 2)
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(image.shape[1], x + w + pad), min(image.shape[0], y + h + pad)
        roi, hole = out[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        factor = min(1.0, 96.0 / max(1, min(w, h)))
        small = cv2.resize(roi, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        small_hole = cv2.dilate(small_hole, np.ones((3, 3), np.uint8))
        filled = cv2.inpaint(small, small_hole, 3, cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_LINEAR)
        roi[hole.astype(bool)] = filled[hole.astype(bool)]
        boxes.append((int(x), int(y), int(x + w), int(y + h)))
    return out, boxes


def _key(p: Proposal) -> tuple[int, ...]:
    return (round(p.centre[0]), round(p.centre[1]), round(p.size[0]), round(p.size[1]), round(p.angle))


def _scan(
    image: np.ndarray,
    keep: re.Pattern[str] | None,
    settings: TextSettings,
    known: dict[tuple[int, ...], _Line] | None = None,
    changed: np.ndarray | None = None,
) -> list[_Line]:
    """Read every proposal; a proposal read before whose crop did not change is not read again."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    lines = []
    for p in propose(image, settings.detect):
        cached = (known or {}).get(_key(p))
        if cached is not None and changed is not None:
            x0, y0, x1, y1 = p.box(image.shape, 0.35 * p.size[1] + 2)
            if not changed[y0:y1, x0:x1].any():
                lines.append(cached)
                continue
        lines.append(_read(grey, p, keep, settings))
    return lines


def scrub(
    image: np.ndarray,
    plan: TextPlan,
    protected: np.ndarray | None = None,
    settings: TextSettings = TextSettings(),
) -> TextResult:
    """Check an RGB photo for text and act on it per ``plan``; ``protected`` marks the preserved region.

    Redaction runs in rounds: a fill can split a line's leftovers into new proposals, which the next round
    reads. The photo passes only when a full pass finds no text outside the allow-list.
    Raises :class:`anonymizer.text.ocr.OcrUnavailable` when OCR cannot run (the caller quarantines).
    """
    if plan.action is TextAction.KEEP:
        return TextResult(image, TextReport(plan.action, checked=False))
    keep = re.compile(plan.keep_regex) if plan.keep_regex else None
    lines = _scan(image, keep, settings)
    report = TextReport(plan.action, checked=False, found=sum(ln.text for ln in lines),
                        kept=sum(ln.allowed for ln in lines))
    out, boxes, redacted = image, [], 0
    for _ in range(settings.rounds):
        targets = _to_redact(lines, settings)
        if not targets:
            return TextResult(out, replace(report, checked=True, redacted=redacted, boxes=tuple(boxes)))
        if plan.action is TextAction.QUARANTINE:
            return TextResult(None, report, f"text-in-pixels:{len(targets)}")
        mask = _mask(image.shape, targets, settings)
        if protected is not None and (mask.astype(bool) & protected).any():
            return TextResult(None, report, "text-over-preserved-region")
        out, new_boxes = _inpaint(out, mask)
        boxes, redacted = boxes + new_boxes, redacted + len(targets)
        changed = cv2.dilate(mask, np.ones((15, 15), np.uint8))
        lines = _scan(out, keep, settings, {_key(ln.proposal): ln for ln in lines}, changed)
    left = len(_to_redact(lines, settings))
    report = replace(report, redacted=redacted, boxes=tuple(boxes))
    if left:
        return TextResult(None, report, f"text-remains-after-redaction:{left}")
    return TextResult(out, replace(report, checked=True))
