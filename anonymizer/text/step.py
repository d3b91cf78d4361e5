"""The text step of the pixel stage: find text in a photo, inpaint it away, check again, or hold the photo.

``scrub(image, plan, protected)`` → :class:`TextResult`. Proposals come from the morphological detector
(:mod:`anonymizer.text.detect`); those the pre-OCR filter (:mod:`anonymizer.text.filter`) finds surely not
text (hair) stay unread, the others are straightened and read as one line by tesseract; a line counts as text
when OCR reads a real token in it with confidence. A line whose whole reading matches the rule's allow-list is
kept. The rest is filled by inpainting (a neutral patch from the surroundings, never a blur of the text),
together with unconfirmed proposals of the same size right beside confirmed text (the other lines of a card)
and the card or bar a confirmed line lies on.
Then a second pass must find no text outside the allow-list, or the photo is quarantined. Text touching the
preserved clinical region is never altered: the photo is quarantined. What OCR read never leaves this module.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from anonymizer.channels import channel_mean
from anonymizer.plans import Box, TextAction, TextPlan, TextReport
from anonymizer.text import components, ocr
from anonymizer.text import filter as text_filter
from anonymizer.text.detect import DetectSettings, Proposal, base_scale, propose

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextSettings:
    detect: DetectSettings = field(default_factory=DetectSettings)
    line_height: int = 36  # OCR crops are scaled so the line is this tall (tesseract reads 20-40 px best)
    max_crop_pixels: int = 60_000  # but no crop is made larger than this, except down to 0.6 of that scale
    min_confidence: float = 70.0  # a word OCR is at least this sure of (type reads 85-96; hair, fabric < 65)
    min_letters: int = 3  # a real token: at least this many letters, or ...
    min_digits: int = 2  # ... at least this many digits (dates, record numbers)
    short_extra: float = 15.0  # extra confidence for tokens of at most three characters
    plausible_confidence: float = 50.0  # beside a confident token, words read this surely count as text
    min_token_share: float = 0.35  # confident tokens' share of all characters read in a proposal
    neighbour_gap: float = 1.5  # unconfirmed proposals within this many line heights of text are text too
    margin: float = 0.3  # inpainted margin around a line, in line heights (plus 3 px)
    end_margin: float = 0.8  # and at its two ends (a glyph the detector left out of the line)
    rounds: int = 3  # redaction rounds before the final check
    prefilter: bool = True  # lines the pre-OCR filter finds surely not text are not read (False: read all)
    # a proposal read only because its look was too coarse for the filter is read again (wide, tight,
    # inverted, ...) only when a finer look of up to ``coarse_look_pixels`` scores at least
    # ``coarse_retry_score`` or its first read held a token (issue-11x10; off: its re-reads are those of any
    # line). The score is not the filter's threshold (-2.7): a card block whose glyph estimate is off scored
    # -8.3 there and was confirmed by a re-read (text bench seed 23); hair and fabric score down to -15
    # (issue-11x11). On since issue-11x11: on the text bench's twelve seeds (400 scrubs each) and 24 12 MP
    # canary photos no re-read it skips confirmed text, so every output is main's; 20 -> 15 reads on the
    # 12 MP timing photo
    coarse_retry_look: bool = True
    coarse_look_pixels: int = 10_000
    coarse_retry_score: float = -12.0
    # a line too coarse for the filter's look (its box over ~80 px across: the box, not the glyphs, sets
    # the look's scale) is left unread when three looks score below ``own_look_score``: at its own glyph
    # height at the filter's 16 px scale (judged, up to ``own_look_pixels``), the finer look of
    # ``coarse_look_pixels``, and at the coarsest judged scale (issue-11x12; blocks are read as before).
    # Off: every such line is read
    coarse_own_look: bool = True
    own_look_pixels: int = 60_000
    own_look_score: float = -10.0


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
    words: tuple[Proposal, ...] = ()  # the confident tokens OCR read, in image pixels (what holds a photo)
    fill: tuple[Proposal, ...] = ()  # what is filled: the whole line, or a block's words


def _block(p: Proposal) -> bool:
    """Several lines in one proposal (a card whose lines touch): read as a block, not as one line."""
    return p.glyph_px > 0 and p.size[1] > 1.8 * p.glyph_px


def _contrast(crop: np.ndarray, orient: bool = True) -> np.ndarray:
    """Grey for OCR along the crop's main colour axis (ink vs paper): orange digits on skin differ in hue
    far more than in brightness. Not stretched: amplified noise (hair, fabric) costs tesseract dearly.
    ``orient``: dark ink on light paper (else either polarity, as the colour axis falls)."""
    if crop.ndim == 2:
        flat = crop.reshape(-1, 1).astype(np.float32)
        centred = flat - flat.mean(0)
    else:
        flat = crop.reshape(-1, 3).astype(np.float32)
        centred = flat - channel_mean(flat)  # flat.mean(0), bit for bit, faster (anonymizer/channels.py)
    axis = np.linalg.svd(centred[:: max(1, len(centred) // 4000)], full_matrices=False)[2][0]
    values = centred @ axis
    grey = np.clip(values + 128.0, 0, 255).astype(np.uint8).reshape(crop.shape[:2])
    if orient and _light_ink(grey):
        grey = 255 - grey  # tesseract prefers dark ink on light paper
    return grey


def _glyph_count(mask: np.ndarray) -> int:
    """Components of glyph size in a binary crop: a quarter to nine tenths of its height, not too wide."""
    h = mask.shape[0]
    _, _, stats, _ = components.with_stats(mask.astype(np.uint8))
    tall = (stats[1:, 3] >= 0.25 * h) & (stats[1:, 3] <= 0.9 * h) & (stats[1:, 2] <= 1.5 * stats[1:, 3])
    return int(np.count_nonzero(tall))


def _light_ink(grey: np.ndarray) -> bool:
    """Ink is the Otsu class that breaks into glyph-sized pieces (paper is one piece around them, with
    small counters); the brightness of the middle band decides a tie (bold type is about half ink)."""
    t, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = grey <= t
    dark_glyphs, light_glyphs = _glyph_count(dark), _glyph_count(~dark)
    if dark_glyphs != light_glyphs:
        return light_glyphs > dark_glyphs
    h, w = grey.shape
    return bool(np.median(grey[h // 4 : h - h // 4, w // 10 : w - w // 10]) < 128)


def _crop(
    image: np.ndarray, p: Proposal, height: int, max_pixels: int, margin_share: float = 0.35,
    orient: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The proposal straightened to horizontal, its glyphs scaled to about ``height`` px, with a margin;
    at most ``max_pixels`` (tesseract's time grows with the crop; 12 px type still reads when smaller)."""
    along, across = p.size
    # a line's box is trimmed from its smear and can be lower than its glyphs: the glyphs set the scale
    glyph = p.glyph_px * 1.3 if _block(p) else max(across, p.glyph_px)
    across = max(across, glyph)
    margin = margin_share * glyph + 2
    scale = height / max(glyph, 1.0)
    area = (along + 2 * margin) * (across + 2 * margin)
    scale = min(scale, max(0.6 * scale, (max_pixels / max(area, 1.0)) ** 0.5))
    return _straightened(image, p, (along + 2 * margin, across + 2 * margin), scale, orient)


def _straightened(
    image: np.ndarray, p: Proposal, outer: tuple[float, float], scale: float, orient: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The box ``outer`` (along, across: the proposal with its margin) around the proposal's centre,
    straightened to horizontal at ``scale``, as grey for OCR or the filter (:func:`_contrast`)."""
    w, h = outer[0] * scale, outer[1] * scale
    m = cv2.getRotationMatrix2D(p.centre, p.angle, scale)
    m[0, 2] += w / 2 - p.centre[0]
    m[1, 2] += h / 2 - p.centre[1]
    size = (max(8, int(w)), max(8, int(h)))
    crop = cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return _contrast(crop, orient), m


def look(
    image: np.ndarray, p: Proposal, max_pixels: int = text_filter.MAX_PIXELS
) -> tuple[np.ndarray, float]:
    """What the pre-OCR filter sees of a proposal (the OCR crop, small, in either polarity: the filter
    judges both), and its scale."""
    crop, m = _crop(image, p, text_filter.GLYPH_PX, max_pixels, orient=False)
    return crop, float(np.hypot(m[0, 0], m[0, 1]))


def own_look(image: np.ndarray, p: Proposal, max_pixels: int) -> tuple[np.ndarray, float]:
    """The filter's look at the proposal's own glyph estimate: glyphs at the filter's 16 px (its box, not
    its glyph, sets :func:`look`'s scale, so a box over ~80 px across is too coarse there at any pixel
    budget), with the same margin, at most ``max_pixels``; and its scale."""
    outer = _own_outer(p)
    scale = min(_own_scale(p), (max_pixels / max(outer[0] * outer[1], 1.0)) ** 0.5)
    return _straightened(image, p, outer, scale, orient=False)[0], scale


def _own_outer(p: Proposal) -> tuple[float, float]:
    """The proposal's box (along, across) with a margin of its own glyph estimate, as :func:`own_look` and
    :func:`_coarsest_look` straighten it."""
    along, across = p.size
    glyph = p.glyph_px * 1.3 if _block(p) else max(across, p.glyph_px)
    margin = 0.35 * glyph + 2
    return along + 2 * margin, max(across, glyph) + 2 * margin


def _own_scale(p: Proposal) -> float:
    return text_filter.GLYPH_PX / max(p.glyph_px, 1.0)


def _surely_not_text(image: np.ndarray, p: Proposal, settings: TextSettings) -> bool:
    """A line too coarse for :func:`look` that three looks judge surely not text (``coarse_own_look``): its
    :func:`own_look` (glyphs at 16 px, fine enough to judge), the finer look of ``coarse_look_pixels`` and a
    look at the coarsest judged scale (the smallest type at 2.4 px) all score below ``own_look_score``.
    Each alone misjudges some text: a line of 54 px type scored -16.6 in its own look (text bench seed 97),
    lines of 72 px type -10.4 in the finer look (seed 31); all three stayed above -4.3 on every line OCR
    confirmed. Blocks are read as before (a block's glyph estimate can be far off its type)."""
    if not settings.coarse_own_look or _block(p):
        return False
    if _own_scale(p) * settings.detect.min_cap_px < text_filter.MIN_TYPE_PX:
        return False  # glyphs over ~80 px: no look at 16 px glyphs shows the smallest type; read, as before
    crop, scale = own_look(image, p, settings.own_look_pixels)
    if scale * settings.detect.min_cap_px < text_filter.MIN_TYPE_PX:
        return False
    enough = settings.own_look_score
    looks = (
        lambda: crop,
        lambda: look(image, p, settings.coarse_look_pixels)[0],
        lambda: _coarsest_look(image, p, settings),
    )
    return all(text_filter.load().score(make(), enough) < enough for make in looks)


def _coarsest_look(image: np.ndarray, p: Proposal, settings: TextSettings) -> np.ndarray:
    """The proposal at the coarsest scale at which the smallest type is still judged (2.4 px), with
    :func:`own_look`'s margin, at most ``own_look_pixels``."""
    outer = _own_outer(p)
    wanted = text_filter.MIN_TYPE_PX / settings.detect.min_cap_px
    scale = min(wanted, (settings.own_look_pixels / max(outer[0] * outer[1], 1.0)) ** 0.5)
    return _straightened(image, p, outer, scale, orient=False)[0]


def _retry(image: np.ndarray, p: Proposal, settings: TextSettings) -> bool:
    """Worth reading again after a read that was nearly text. With ``coarse_retry_look``, a proposal read
    only because its look was too coarse (a large-glyph block in hair: up to six reads) is read again only
    when a finer look, with up to ``coarse_look_pixels``, scores at least ``coarse_retry_score`` (or is
    still too coarse)."""
    if not settings.coarse_retry_look or not settings.prefilter:
        return True
    _, scale = look(image, p)
    if scale * settings.detect.min_cap_px >= text_filter.MIN_TYPE_PX:
        return True
    crop, scale = look(image, p, settings.coarse_look_pixels)
    if scale * settings.detect.min_cap_px < text_filter.MIN_TYPE_PX:
        return True
    enough = settings.coarse_retry_score
    return text_filter.load().score(crop, enough) >= enough


def _worth_reading(image: np.ndarray, p: Proposal, settings: TextSettings) -> bool:
    """Not surely non-text by the pre-OCR filter; a look too coarse to show the smallest type the detector
    finds (a tall block of large glyphs, shrunk to the look's pixel budget) is read, unless its own look
    says surely not text (``coarse_own_look``)."""
    if not settings.prefilter:
        return True
    crop, scale = look(image, p)
    if scale * settings.detect.min_cap_px < text_filter.MIN_TYPE_PX:
        return not _surely_not_text(image, p, settings)
    return text_filter.load().passes(crop)


def _in_image(words: list[ocr.Word], m: np.ndarray, p: Proposal) -> tuple[Proposal, ...]:
    """OCR word boxes (crop pixels) as oriented boxes in image pixels."""
    inverse = cv2.invertAffineTransform(m)
    scale = float(np.hypot(m[0, 0], m[0, 1]))
    out = []
    for w in words:
        x0, y0, x1, y1 = w.box
        cx, cy = inverse @ np.array([(x0 + x1) / 2, (y0 + y1) / 2, 1.0])
        size = ((x1 - x0) / scale, (y1 - y0) / scale)
        out.append(Proposal((float(cx), float(cy)), size, p.angle, p.glyph_px))
    return tuple(out)


def _is_token(word: ocr.Word, settings: TextSettings) -> bool:
    letters = sum(c.isalpha() for c in word.text)
    digits = sum(c.isdigit() for c in word.text)
    real = letters + digits >= settings.min_letters or digits >= settings.min_digits
    short = letters + digits <= 3  # "ANG" in an ear, "58" in hair: short reads must be surer
    return real and word.confidence >= settings.min_confidence + (settings.short_extra if short else 0.0)


def _is_text(words: list[ocr.Word], settings: TextSettings) -> bool:
    """Confident tokens, and they are much of what was read (OCR on hair or fabric reads many short,
    unsure fragments, a few of which may look like a token by chance)."""
    if not any(_is_token(w, settings) for w in words):
        return False
    plausible = sum(len(w.text) for w in words if w.confidence >= settings.plausible_confidence)
    return plausible >= settings.min_token_share * sum(len(w.text) for w in words)


def _nearly(word: ocr.Word, block: bool) -> bool:
    """A word worth reading again: three characters read fairly surely, or (in a line, not a block: hair
    read as a block gives many) four read at all (a clean 40 px date stamp once read as two unsure
    4-character words at one scale, and surely at the next)."""
    chars = sum(c.isalnum() for c in word.text)
    return (chars >= 3 and word.confidence >= 30) or (not block and chars >= 4)


def _two_tone(crop: np.ndarray) -> np.ndarray | None:
    """The crop in black and white when it is cleanly two-toned (Otsu's two classes explain at least 90 %
    of its variance: ink on even paper; hair and fabric explain about 70 %), else None. Tesseract's LSTM
    reads the grey crop, and misreads faint even print (orange on skin: ink 40, paper 130 along the colour
    axis) that it reads at 90+ in black and white."""
    t, binary = cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = crop <= t
    share = float(dark.mean())
    if not 0.0 < share < 1.0:
        return None
    values = crop.astype(np.float32)
    between = share * (1.0 - share) * (values[dark].mean() - values[~dark].mean()) ** 2
    return binary if between >= 0.9 * values.var() else None


def _misread_print(crop: np.ndarray, words: list[ocr.Word]) -> bool:
    """Nothing, or three characters however unsure, read on a two-toned crop: print misread at this one
    crop, worth reading again (a 40 px serif date stamp on skin read as noise at 6-22; a 19 px wristband,
    its crop's margin reaching onto darker skin, read as nothing)."""
    chars = sum(c.isalnum() for w in words for c in w.text)
    return not 0 < chars < 3 and _two_tone(crop) is not None


def _retries(
    image: np.ndarray, p: Proposal, crop: np.ndarray, m: np.ndarray, words: list[ocr.Word],
    settings: TextSettings,
) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
    """Crops to read again when a read was nearly text, made only as they are needed: a wide, a tight and
    the inverted crop (a card's edge inside the margin, or the wrong polarity guess (bold type), lowers
    tesseract's confidence, and some lines read only with more paper around them), and first, for a block
    (a line beside hair or fabric), its surest word's row as one line. (Leaving a block's tight and inverted
    reads out saved a little time in hair but let a 40 px card at 30° go out readable.) Before all, a
    two-toned crop in black and white."""
    size = (settings.line_height, settings.max_crop_pixels)
    binary = _two_tone(crop)
    if binary is not None:
        yield binary, m, _block(p)
    if _block(p) and words:  # (an empty read of a clean crop has no surest word)
        best = max(words, key=lambda w: w.confidence)
        row = _in_image([ocr.Word("", 0.0, (0, best.box[1], crop.shape[1], best.box[3]))], m, p)[0]
        row = Proposal(row.centre, row.size, p.angle, min(p.glyph_px, row.size[1]))
        yield (*_crop(image, row, *size), False)
    block = _block(p)
    yield (*_crop(image, p, *size, margin_share=0.6), block)
    yield (*_crop(image, p, *size, margin_share=0.1), block)
    yield 255 - crop, m, block


def _read(
    image: np.ndarray, p: Proposal, keep: re.Pattern[str] | None, settings: TextSettings, whole: bool = True
) -> _Line:
    """Read one proposal; ``whole``: ``image`` is the whole photo, not a part of it cut out again."""
    if not _worth_reading(image, p, settings):
        return _Line(p, text=False, allowed=False)  # unread: still a neighbour that a card's fill takes
    crop, m = _crop(image, p, settings.line_height, settings.max_crop_pixels)
    words = ocr.read_line(crop, block=_block(p))
    text = _is_text(words, settings)
    nearly = any(_nearly(w, _block(p)) for w in words)
    token = any(_is_token(w, settings) for w in words)
    if not text and (nearly or token or _misread_print(crop, words)) and (
        token or _retry(image, p, settings)
    ):
        for again, again_m, as_block in _retries(image, p, crop, m, words, settings):
            retry = ocr.read_line(again, block=as_block)
            if _is_text(retry, settings):
                words, text, crop, m = retry, True, again, again_m
                break
    reading = " ".join(w.text for w in words)
    allowed = text and keep is not None and keep.fullmatch(reading) is not None
    if not text or allowed:
        return _Line(p, text, allowed)
    tokens = _in_image([w for w in words if _is_token(w, settings)], m, p)
    # a line is filled whole (glyphs OCR skipped go too); a block (several lines, maybe hair or fabric
    # around them) only along the rows where OCR found words, so a coarse proposal does not blank half a
    # photo while the rest of a row (a record number after the name) still goes
    width = crop.shape[1]
    rows = [ocr.Word("", 0.0, (0, w.box[1], width, w.box[3])) for w in words if any(map(str.isalnum, w.text))]
    if _block(p):  # and the card under the block, when the block covers most of it
        fill = (*_in_image(rows, m, p), *_block_card(image, p, whole))
    else:
        fill = (p, *_card(image, p, whole))
    return _Line(p, text, allowed, tokens, fill)


def _runs_on(paper: np.ndarray, window: Box, shape: tuple[int, ...], whole: bool) -> bool:
    """The paper reaches a side of the search window inside the photo (a photo's own edge may cut a card;
    the edge of a part of the photo (``whole`` false) may not)."""
    x0, y0, x1, y1 = window
    sides = ((y0 > 0, paper[0]), (y1 < shape[0], paper[-1]), (x0 > 0, paper[:, 0]),
             (x1 < shape[1], paper[:, -1]))
    if paper[0].any() and paper[-1].any():
        return True  # spans the window across: a card ends above or below its text
    return any((inside or not whole) and edge.any() for inside, edge in sides)


def _card(image: np.ndarray, p: Proposal, whole: bool) -> tuple[Proposal, ...]:
    """The card or bar a text line is printed on, when it ends near the line: the uniform paper beside the
    line, flooded at reduced size, bounded within the line's length (or the photo's width) on either end
    and a few heights across.
    The whole card goes (a word the detector missed at the card's edge goes with it); paper that runs on
    (a wall, skin) is no card and nothing more is filled."""
    g = max(p.size[1], p.glyph_px)
    reach = max(p.size[0], image.shape[1])  # an overlay bar may span the photo, the line at one end
    window = Proposal(p.centre, (p.size[0] + 2 * reach, p.size[1] + 8 * g), p.angle, p.glyph_px)
    x0, y0, x1, y1 = window.box(image.shape)
    factor = min(1.0, 6.0 / max(g, 1.0))
    roi = cv2.resize(image[y0:y1, x0:x1], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    h, w = roi.shape[:2]
    rad = np.deg2rad(p.angle)
    normal = np.array([-np.sin(rad), np.cos(rad)])
    # paper lies just beyond the glyphs; a line box taller than its type (a slant) puts it further out
    seeds = [(side, reach_out) for reach_out in (0.8 * p.glyph_px, 0.8 * g) for side in (-1.0, 1.0)]
    for side, out in seeds:
        seed = (np.array(p.centre) + side * normal * out - (x0, y0)) * factor
        sx, sy = round(float(seed[0])), round(float(seed[1]))
        if not (0 < sx < w - 1 and 0 < sy < h - 1):
            continue
        mask = np.zeros((h + 2, w + 2), np.uint8)
        flags = 8 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
        cv2.floodFill(roi, mask, (sx, sy), 0, (14,) * 3, (14,) * 3, flags)
        paper = mask[1:-1, 1:-1]
        if _runs_on(paper, (x0, y0, x1, y1), image.shape, whole):
            continue
        ys, xs = np.nonzero(paper)
        (cx, cy), size, angle = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
        too_big = size[0] * size[1] / factor**2 > 0.25 * image.shape[0] * image.shape[1]  # a backdrop
        if len(xs) < 0.3 * size[0] * size[1] or not 1 <= min(size) <= 8 * g * factor or too_big:
            continue
        along, across = (size[0], size[1]) if size[0] >= size[1] else (size[1], size[0])
        angle = angle if size[0] >= size[1] else angle + 90.0  # the card's long side, as for a line
        angle = (angle + 90.0) % 180.0 - 90.0
        centre = (cx / factor + x0, cy / factor + y0)
        return (Proposal(centre, (along / factor, across / factor), angle, p.glyph_px),)
    return ()


def _block_card(image: np.ndarray, p: Proposal, whole: bool) -> tuple[Proposal, ...]:
    """The card a block of lines lies on, only when it is hardly larger than the block: the card's lines
    that OCR did not read in block mode go with it (a 13 px italic name above its record number went out
    readable), while a coarse block in hair or on skin never grows into a cheek or a wall."""
    return tuple(c for c in _card(image, p, whole) if c.size[0] * c.size[1] <= 2.0 * p.size[0] * p.size[1])


def _near(a: Proposal, b: Proposal, gap: float) -> bool:
    """``b`` is type of the same size and direction right beside text line ``a``: further along the same
    line (the record number after the name), or the line above or below (a card's other lines)."""
    ratio = a.glyph_px / max(b.glyph_px, 1e-3)
    turn = abs((a.angle - b.angle + 90.0) % 180.0 - 90.0)
    if not 0.6 <= ratio <= 1.7 or turn > 12.0:
        return False
    rad = np.deg2rad(a.angle)
    dx, dy = b.centre[0] - a.centre[0], b.centre[1] - a.centre[1]
    u, v = abs(dx * np.cos(rad) + dy * np.sin(rad)), abs(-dx * np.sin(rad) + dy * np.cos(rad))
    line = max(a.size[1], b.size[1])
    gap_along = u - (a.size[0] + b.size[0]) / 2
    gap_across = v - (a.size[1] + b.size[1]) / 2
    same_line = v <= 0.5 * line and gap_along <= 2 * gap * line
    next_line = gap_along <= 0.5 * line and gap_across <= gap * line
    return same_line or next_line


def _to_redact(
    lines: list[_Line], settings: TextSettings, protected: np.ndarray | None = None
) -> tuple[list[Proposal], list[Proposal]]:
    """(what to fill, the words that must not touch the preserved region): confirmed, not allowed lines,
    plus unconfirmed proposals of a similar size right beside them (those only where they stay clear of the
    preserved region: unconfirmed, they never hold a photo)."""
    allowed = [ln.proposal for ln in lines if ln.allowed]
    confirmed = [ln for ln in lines if ln.text and not ln.allowed and not _read_again(ln, allowed)]
    hits = [ln.proposal for ln in confirmed]
    extra = [
        ln.proposal
        for ln in lines
        if not ln.text and any(_near(h, ln.proposal, settings.neighbour_gap) for h in hits)
    ]
    if protected is not None:
        extra = [p for p in extra if not _areas(protected.shape, [p], [p], settings)[0].hits(protected)]
    return [f for ln in confirmed for f in ln.fill] + extra, [w for ln in confirmed for w in ln.words]


def _read_again(line: _Line, allowed: list[Proposal]) -> bool:
    """Every word of ``line`` lies on one allowed line (another proposal of the same ruler labels, cut at a
    different level, where OCR misread a digit): the allow-list decision is that line's, whose whole
    reading matched. Its pixels are kept anyway; a word beyond its box still counts."""
    def on(word: Proposal, ok: Proposal) -> bool:
        turn = abs((word.angle - ok.angle + 90.0) % 180.0 - 90.0)
        rad = np.deg2rad(ok.angle)
        dx, dy = word.centre[0] - ok.centre[0], word.centre[1] - ok.centre[1]
        u, v = dx * np.cos(rad) + dy * np.sin(rad), -dx * np.sin(rad) + dy * np.cos(rad)
        reach = max(ok.size[1], ok.glyph_px)
        return turn <= 12.0 and abs(u) <= ok.size[0] / 2 and abs(v) <= reach / 2 + 0.25 * ok.glyph_px
    return bool(line.words) and any(all(on(w, ok) for w in line.words) for ok in allowed)


@dataclass(frozen=True)
class _Area:
    """One place to fill: a box and the mask of the grown text lines inside it."""

    box: Box
    hole: np.ndarray  # bool, box-sized: the lines grown by the margin (what is filled)
    core: np.ndarray  # bool, box-sized: the lines themselves

    def hits(self, protected: np.ndarray | None) -> bool:
        """The text itself lies on the preserved region (a margin reaching into it is only trimmed)."""
        x0, y0, x1, y1 = self.box
        return protected is not None and bool((protected[y0:y1, x0:x1] & self.core).any())


def _areas(
    shape: tuple[int, ...], fills: list[Proposal], cores: list[Proposal], settings: TextSettings
) -> list[_Area]:
    """The grown fills, in groups whose boxes overlap (no full-size mask: photos are 12 MP), each with the
    words (``cores``) inside it."""
    grown = [
        (p, p.grown(settings.margin * p.size[1] + 3, settings.end_margin * p.size[1] + 3)) for p in fills
    ]
    groups = [([pg], pg[1].box(shape)) for pg in grown]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if _touches(groups[i][1], groups[j][1]):
                    a, b = groups[i][1], groups[j][1]
                    box = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    groups[i] = (groups[i][0] + groups[j][0], box)
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    areas = []
    for members, (x0, y0, x1, y1) in groups:
        hole = np.zeros((y1 - y0, x1 - x0), np.uint8)
        core = np.zeros_like(hole)
        for _, g in members:
            cv2.fillPoly(hole, [np.round(g.corners - (x0, y0)).astype(np.int32)], 1)
        for c in cores:
            cv2.fillPoly(core, [np.round(c.corners - (x0, y0)).astype(np.int32)], 1)
        areas.append(_Area((x0, y0, x1, y1), hole.astype(bool), core.astype(bool)))
    return areas


def _inpaint(out: np.ndarray, areas: list[_Area], protected: np.ndarray | None) -> None:
    """Fill every area from its surroundings, in place; big areas are filled at reduced size (the fill is
    smooth anyway, and Telea's cost grows with the hole's pixel count)."""
    for area in areas:
        x, y, x1, y1 = area.box
        w, h = x1 - x, y1 - y
        pad = max(8, min(w, h) // 2)
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x2, y2 = min(out.shape[1], x1 + pad), min(out.shape[0], y1 + pad)
        roi = out[y0:y2, x0:x2]
        hole = np.zeros(roi.shape[:2], np.uint8)
        hole[y - y0 : y1 - y0, x - x0 : x1 - x0] = area.hole
        if protected is not None:
            hole[protected[y0:y2, x0:x2]] = 0  # the preserved region is never altered
        factor = min(1.0, 96.0 / max(1, min(w, h)))
        small = cv2.resize(roi, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        small_hole = cv2.dilate(small_hole, np.ones((3, 3), np.uint8))
        filled = cv2.inpaint(small, small_hole, 3, cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_LINEAR)
        roi[hole.astype(bool)] = filled[hole.astype(bool)]


def _scan(
    image: np.ndarray, keep: re.Pattern[str] | None, settings: TextSettings, whole: bool = True
) -> list[_Line]:
    """Propose and read every line of the photo (or of a part of it: ``whole`` false)."""
    return [_read(image, p, keep, settings, whole) for p in propose(image, settings.detect)]


def _rescan(
    image: np.ndarray, keep: re.Pattern[str] | None, settings: TextSettings, lines: list[_Line],
    boxes: list[Box],
) -> list[_Line]:
    """Lines after a fill: the photo changed only inside ``boxes``, so only their surroundings are proposed
    again (a fill can leave fragments, or split a line); a proposal found there again unchanged and clear of
    every fill (its crop holds the same pixels) keeps its reading, the rest are read again."""
    h, w = image.shape[:2]
    scale = base_scale(image.shape, settings.detect)
    grid = max(1, round(2**settings.detect.levels / scale))  # the pyramid's pixel grid, in photo pixels
    rois = []
    for x0, y0, x1, y1 in boxes:
        pad = int(0.5 * max(x1 - x0, y1 - y0)) + 32
        x0, y0 = max(0, x0 - pad) // grid * grid, max(0, y0 - pad) // grid * grid
        rois.append((x0, y0, min(w, x1 + pad), min(h, y1 + pad)))
    out = [ln for ln in lines if not any(_touches(ln.proposal.box(image.shape), r) for r in rois)]
    before = {_key(ln.proposal): ln for ln in lines}
    for x0, y0, x1, y1 in rois:
        part = image[y0:y1, x0:x1]
        for p in propose(part, settings.detect, scale):
            moved = _shifted(p, x0, y0)
            old = before.get(_key(moved))
            reach = moved.box(image.shape, margin=0.5 * max(moved.size[1], moved.glyph_px) + 4)
            if old is not None and not any(_touches(reach, b) for b in boxes):
                out.append(old)
                continue
            line = _read(part, p, keep, settings, whole=False)
            # the words and fills too: read in the part, they were filled at the part's offset in the photo
            # (a date stamp re-read after a card's fill was filled beside itself and held the photo)
            out.append(replace(line, proposal=moved, words=tuple(_shifted(w, x0, y0) for w in line.words),
                               fill=tuple(_shifted(f, x0, y0) for f in line.fill)))
    return out


def _shifted(p: Proposal, dx: int, dy: int) -> Proposal:
    return Proposal((p.centre[0] + dx, p.centre[1] + dy), p.size, p.angle, p.glyph_px)


def _key(p: Proposal) -> tuple[int, ...]:
    """A proposal's box and angle, rounded: the same line proposed again from unchanged pixels."""
    return tuple(round(v) for v in (*p.centre, *p.size, p.angle, p.glyph_px))


def _touches(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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
    ocr.ensure_ready()
    keep = re.compile(plan.keep_regex) if plan.keep_regex else None
    lines = _scan(image, keep, settings)
    report = TextReport(plan.action, checked=False, found=sum(ln.text for ln in lines),
                        kept=sum(ln.allowed for ln in lines))
    out, boxes, redacted = image, [], 0
    for _ in range(settings.rounds):
        targets, words = _to_redact(lines, settings, protected)
        if not targets:
            return TextResult(out, replace(report, checked=True, redacted=redacted, boxes=tuple(boxes)))
        if plan.action is TextAction.QUARANTINE:
            return TextResult(None, report, f"text-in-pixels:{len(targets)}")
        areas = _areas(image.shape, targets, words, settings)
        if any(a.hits(protected) for a in areas):
            return TextResult(None, report, "text-over-preserved-region")
        out = out.copy() if out is image else out
        _inpaint(out, areas, protected)
        new_boxes = [a.box for a in areas]
        boxes, redacted = boxes + new_boxes, redacted + len(targets)
        lines = _rescan(out, keep, settings, lines, new_boxes)
    left = len(_to_redact(lines, settings, protected)[0])
    report = replace(report, redacted=redacted, boxes=tuple(boxes))
    if left:
        return TextResult(None, report, f"text-remains-after-redaction:{left}")
    return TextResult(out, replace(report, checked=True))


def _extent(mask: np.ndarray) -> Box:
    """(x0, y0, x1, y1): the bounding box of a mask's true pixels (not empty); the rows and columns that
    hold any, not every pixel's coordinates (a 12 MP mask: ~0.5 ms, where ``np.nonzero`` took ~15 ms)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def touches_protected(
    original: np.ndarray,
    plan: TextPlan,
    protected: np.ndarray | None,
    settings: TextSettings = TextSettings(),
) -> bool:
    """Text on the photo as taken (before the face step replaced what lies around the preserved region)
    overlapping the preserved region. Only the region's surroundings are scanned."""
    if protected is None or plan.action is TextAction.KEEP or not protected.any():
        return False
    ocr.ensure_ready()
    x0, y0, x1, y1 = _extent(protected)
    pad = max(x1 - x0, y1 - y0) // 2 + 32
    h, w = original.shape[:2]
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    keep = re.compile(plan.keep_regex) if plan.keep_regex else None
    lines = _scan(original[y0:y1, x0:x1], keep, settings, whole=False)
    fills, words = _to_redact([ln for ln in lines if ln.text], settings)
    return any(a.hits(protected[y0:y1, x0:x1]) for a in _areas((y1 - y0, x1 - x0), fills, words, settings))
