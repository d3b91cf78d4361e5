"""Text-region proposals: a fast morphological detector over an image pyramid (no weights, no OCR).

Glyphs are small blobs clearly darker or lighter than their neighbourhood (a local-mean threshold in both
polarities, so dark ink on a card and light type on a dark overlay are both seen). Blobs of a glyph's shape
are widened by a share of their own height, so the glyphs and words of one line touch while the lines above
and below do not; a component holding at least three glyphs of one size is a proposal, with its oriented
box (rotated text keeps its angle). Each pyramid level finds one band of glyph heights, so 12 px and 80 px
type are both found with fixed thresholds. Glyphs that touch (bold, narrow or tight type) form word blobs,
which are cut into glyph-sized pieces; lines that need them are proposed besides the lines of separate glyphs.
The proposals are confirmed (or not) by OCR in :mod:`anonymizer.text.ocr`; this module only proposes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from anonymizer.text import components


@dataclass(frozen=True)
class DetectSettings:
    min_cap_px: int = 12  # smallest type found, in full-image pixels
    work_cap_px: float = 8.0  # the smallest type is scaled to about this height at the finest level ...
    max_work_pixels: float = 3.0e6  # ... unless that level would be larger (a 12 MP photo: scale 0.5, 6 px)
    levels: int = 4  # pyramid levels (factor 2 each)
    contrast: int = 12  # a glyph is this much darker (or lighter) than its neighbourhood's mean (0-255)
    min_glyph_fill: float = 0.12  # glyph pixels / glyph box area
    min_line_px: float = 4.0  # a proposal's glyph height, at its level
    max_line_px: float = 20.0  # larger type is found one level coarser
    # the local mean's window for light ink: small, as a dark overlay bar is barely taller than its type (at
    # 51 px, 14 px light type on a bar at the photo's top edge was lost against the bright surroundings);
    # dark ink's window grows with the largest glyph (2.5 times it)
    light_block: int = 41
    min_elongation: float = 1.2  # long side / short side of a proposal (a card's block is squarer)
    min_fill: float = 0.35  # component pixels / oriented-box area
    min_glyphs: int = 3  # glyph blobs of one size in a line proposal
    word_gap: float = 0.7  # glyphs this many of their heights apart belong to one line
    max_lines: int = 4  # a proposal spans at most this many lines of its own glyphs


@dataclass(frozen=True)
class Proposal:
    """A candidate text line: an oriented box in full-image pixels."""

    centre: tuple[float, float]
    size: tuple[float, float]  # (along the line, across it)
    angle: float  # degrees; the line runs along this angle (image coordinates, y down)
    glyph_px: float = 0.0  # median glyph height; ``size[1]`` well above it means several lines (a card)

    @property
    def corners(self) -> np.ndarray:
        """(4, 2) float32 corners of the oriented box."""
        return cv2.boxPoints((self.centre, self.size, self.angle)).astype(np.float32)

    def grown(self, margin: float, along: float | None = None) -> Proposal:
        """Grown by ``margin`` on every side, or by ``along`` at the line's two ends when given."""
        ends = margin if along is None else along
        grown = (self.size[0] + 2 * ends, self.size[1] + 2 * margin)
        return Proposal(self.centre, grown, self.angle, self.glyph_px)

    def box(self, shape: tuple[int, ...], margin: float = 0.0) -> tuple[int, int, int, int]:
        """Axis-aligned (x0, y0, x1, y1) around the grown box, clipped to an image of ``shape``."""
        pts = self.grown(margin).corners
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int)
        return max(0, int(x0)), max(0, int(y0)), min(int(shape[1]), int(x1)), min(int(shape[0]), int(y1))


def base_scale(shape: tuple[int, ...], settings: DetectSettings) -> float:
    """Finest level's scale: the smallest type lands at ``work_cap_px`` (never upsampled), within a pixel
    budget for the finest level (the detector's cost grows with it)."""
    pixels = float(shape[0] * shape[1])
    return min(1.0, settings.work_cap_px / settings.min_cap_px, (settings.max_work_pixels / pixels) ** 0.5)


@dataclass(frozen=True)
class _Glyphs:
    boxes: np.ndarray  # (n, 4) int x, y, w, h at the level
    centres: np.ndarray  # (n, 2) int x, y
    heights: np.ndarray  # (n,) the type's height: the box's, or a slanted word blob's thickness
    word: np.ndarray  # (n,) int: 0 for a glyph, else the word blob (touching glyphs) this piece is cut from


def _glyphs(grey: np.ndarray, settings: DetectSettings, polarities: tuple[int, ...] = (0, 1)) -> _Glyphs:
    """Glyph-like blobs darker (polarity 0) or lighter (1) than their neighbourhood, and the word blobs of
    type whose glyphs touch (bold or tight type, slanted or level), split into glyph-sized pieces."""
    kinds = ((cv2.THRESH_BINARY_INV, settings.contrast), (cv2.THRESH_BINARY, -settings.contrast))
    boxes, centres, heights, word = [], [], [], []
    for polarity, (kind, c) in enumerate(kinds[i] for i in polarities):
        block = settings.light_block if kind == cv2.THRESH_BINARY else int(2.5 * settings.max_line_px) | 1
        ink = cv2.adaptiveThreshold(grey, 1, cv2.ADAPTIVE_THRESH_MEAN_C, kind, block, c)
        _, labels, stats, cents = components.with_stats(ink)
        w, h, area = stats[:, 2], stats[:, 3], stats[:, 4]
        keep = (
            (h >= settings.min_line_px * 0.6) & (h <= settings.max_line_px)
            & (w <= 2.5 * h) & (area >= settings.min_glyph_fill * w * h) & (area <= 0.95 * w * h)
        )
        keep[0] = False
        words = _word_blobs(labels, stats, keep, settings)
        boxes += [stats[keep, :4], words.boxes]
        centres += [cents[keep].astype(int), words.centres]
        heights += [h[keep], words.heights]
        word += [np.zeros(int(keep.sum()), np.int64), words.word + (polarity << 24)]  # ids unique per level
    return _Glyphs(np.concatenate(boxes), np.concatenate(centres), np.concatenate(heights).astype(float),
                   np.concatenate(word))


def _word_blobs(
    labels: np.ndarray, stats: np.ndarray, glyph: np.ndarray, settings: DetectSettings
) -> _Glyphs:
    """Blobs that are several touching glyphs of one line (bold or tight type merges into words at some
    pyramid level, slanted or not): as thick as one line of type, a few times as long, about half ink.
    Each is cut into pieces as long as it is thick, so that a line of two words still counts its glyphs
    (a 13 px wristband at 29° and 51 px bold writing at 8° were found nowhere else)."""
    w, h, area = stats[:, 2], stats[:, 3], stats[:, 4]
    candidates = np.nonzero(
        ~glyph & (h >= settings.min_line_px) & (h <= 2.5 * settings.max_line_px) & (w >= 0.8 * h)
        & (w <= 12 * h) & (w <= 12 * settings.max_line_px) & (area >= 0.15 * w * h)
    )[0]
    boxes, centres, heights, word = [np.zeros((0, 4), int)], [np.zeros((0, 2), int)], [np.zeros(0)], [[]]
    for i in candidates[candidates > 0]:
        x, y, bw, bh = stats[i, :4]
        xs, ys = _outline(labels[y : y + bh, x : x + bw] == i)
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
        thin, long = min(rw, rh), max(rw, rh)
        fill = area[i] / max(rw * rh, 1.0)
        tilt = ((angle + 90.0 if rw < rh else angle) + 90.0) % 180.0 - 90.0
        if not (settings.min_line_px <= thin <= settings.max_line_px and long >= 1.8 * thin
                and 0.3 <= fill <= 0.85 and abs(tilt) <= 45.0):
            continue
        pieces = max(2, round(long / thin))
        along = np.array([np.cos(np.deg2rad(tilt)), np.sin(np.deg2rad(tilt))])
        offsets = (np.arange(pieces) + 0.5) / pieces - 0.5
        points = np.array([cx + x, cy + y]) + offsets[:, None] * long * along
        half = thin / 2
        boxes.append(np.column_stack([points - half, np.full((pieces, 2), thin)]).round().astype(int))
        centres.append(np.clip(points.round(), 0, np.array(labels.shape[::-1]) - 1).astype(int))
        heights.append(np.full(pieces, thin))
        word.append([int(i)] * pieces)
    return _Glyphs(np.concatenate(boxes), np.concatenate(centres), np.concatenate(heights),
                   np.concatenate(word).astype(np.int64))


def _outline(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of each row's first and last true pixel of a component's box mask: for ``cv2.minAreaRect``
    and the extent along any direction, all a component's pixels are no better. Their convex hull is the
    same (every pixel lies between its row's two ends), and so is the rectangle OpenCV fits to it, bit for bit
    (13,686 components checked); a linear projection's maximum and minimum lie at a row's ends. A component
    of thousands of pixels gives a few hundred points (its rotated rectangle in ~1/5 of the time)."""
    rows = np.flatnonzero(mask.any(1))
    first = mask[rows].argmax(1)
    last = mask.shape[1] - 1 - mask[rows, ::-1].argmax(1)
    two = last > first
    return np.concatenate([first, last[two]]), np.concatenate([rows, rows[two]])


def _smear(shape: tuple[int, ...], glyphs: _Glyphs, settings: DetectSettings) -> np.ndarray:
    """Each glyph's box widened by a share of its own height: glyphs and words of one line touch, lines
    above and below do not (the gap between words grows with the type; a fixed kernel cannot follow)."""
    mask = np.zeros(shape[:2], np.uint8)
    reach = settings.word_gap * glyphs.heights
    trim = 0.15 * glyphs.heights
    x0 = glyphs.boxes[:, 0] - reach
    x1 = glyphs.boxes[:, 0] + glyphs.boxes[:, 2] + reach
    y0 = glyphs.boxes[:, 1] + trim
    y1 = glyphs.boxes[:, 1] + glyphs.boxes[:, 3] - trim
    for a, b, c, d in np.stack([x0, y0, x1, y1], 1).round().astype(int):
        cv2.rectangle(mask, (int(a), int(b)), (int(c), int(d)), 1, -1)
    return mask


def _group(labels: np.ndarray, n: int, glyphs: _Glyphs) -> list[np.ndarray]:
    """Indices of the glyphs whose centre lies in each component (index = component label)."""
    owner = labels[glyphs.centres[:, 1], glyphs.centres[:, 0]] if len(glyphs.centres) else np.zeros(0, int)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(n)]


def _direction(deg: float) -> tuple[np.ndarray, np.ndarray]:
    rad = np.deg2rad(deg)
    return np.array([np.cos(rad), np.sin(rad)]), np.array([-np.sin(rad), np.cos(rad)])


SWEEP = np.deg2rad(np.arange(-60.0, 61.0, 3.0))


def _text_angle(centres: np.ndarray, first_guess: float) -> float:
    """The direction in which the glyph centres line up best (least spread across it): a sweep over the
    centres, not the photo, plus a line fit; the smear's own box can lean the wrong way on short lines."""
    vx, vy = cv2.fitLine(centres, cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()[:2]
    fit = (float(np.degrees(np.arctan2(vy, vx))) + 90.0) % 180.0 - 90.0
    candidates = np.concatenate([SWEEP, np.deg2rad([first_guess, fit])])
    normals = np.stack([-np.sin(candidates), np.cos(candidates)], 1)  # (k, 2)
    across = centres @ normals.T  # (n, k)
    spread = across.max(0) - across.min(0)
    best = spread.min()
    # among near-ties (a short word lines up in many directions) keep the guess closest to the smear's
    near = np.nonzero(spread <= best + 1.0)[0]
    turn = np.abs((np.degrees(candidates[near]) - first_guess + 90.0) % 180.0 - 90.0)
    return float(np.degrees(candidates[near[np.argmin(turn)]]))


def _line_box(
    points: np.ndarray, centres: np.ndarray, boxes: np.ndarray, glyph: float
) -> tuple[tuple[float, float], tuple[float, float], float] | None:
    """Oriented box of one component: the direction of its glyph centres when they form one line (the
    smear of rotated glyphs is thicker than the line), else of its pixels; across spans the glyph rows."""
    (_, _), (rw, rh), angle = cv2.minAreaRect(points)
    angle = angle + 90.0 if rw < rh else angle
    angle = (angle + 90.0) % 180.0 - 90.0
    if len(centres) >= 3:
        angle = _text_angle(centres, angle)
    along_dir, normal = _direction(angle)
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    corners = np.concatenate([np.column_stack(c) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))])
    u, v = corners @ along_dir, centres @ normal  # the glyphs' extent, not the smear's
    along = float(np.ptp(u))
    across = min(float(np.ptp(points @ normal)), float(np.ptp(v)) + 1.3 * glyph)
    mid_u, mid_v = (u.min() + u.max()) / 2, (v.min() + v.max()) / 2
    centre = along_dir * mid_u + normal * mid_v
    return (float(centre[0]), float(centre[1])), (along, across), angle


def _alike(heights: np.ndarray, glyph: float) -> np.ndarray:
    return np.abs(heights - glyph) <= 0.35 * glyph + 1


def _rows_box(
    points: np.ndarray, centres: np.ndarray, glyph: float
) -> tuple[tuple[float, float], tuple[float, float], float]:
    """A block's box along the direction in which one row holds the most glyph centres of its type size (a
    card's lines, however few glyphs each has): along its pixels, across those glyphs' rows."""
    normals = np.stack([-np.sin(SWEEP), np.cos(SWEEP)], 1)
    across = np.sort(centres @ normals.T, axis=0)
    counts = [np.searchsorted(across[:, k], across[:, k] + 0.5 * glyph, "right") - np.arange(len(centres))
              for k in range(len(SWEEP))]
    angle = float(np.degrees(SWEEP[int(np.argmax([c.max() for c in counts]))]))
    along_dir, normal = _direction(angle)
    u, v = points @ along_dir, centres @ normal
    mid = along_dir * (u.min() + u.max()) / 2 + normal * (v.min() + v.max()) / 2
    return (float(mid[0]), float(mid[1])), (float(np.ptp(u)), float(np.ptp(v)) + 1.3 * glyph), angle


def _text_height(glyph_heights: np.ndarray, settings: DetectSettings) -> float | None:  # of one component
    """The type's height (the median of the glyphs, dots and commas left out) when there are enough glyphs
    of one size: a line of type, not a strand of hair or an eyelid; else None."""
    if len(glyph_heights) < settings.min_glyphs:
        return None
    main = glyph_heights[glyph_heights >= 0.5 * np.percentile(glyph_heights, 90)]  # not dots and commas
    median = float(np.median(main))
    alike = np.count_nonzero(np.abs(main - median) <= 0.35 * median + 1)
    return median if alike >= max(settings.min_glyphs, 0.6 * len(main)) else None


def _level_proposals(
    channels: list[np.ndarray], factor: float, settings: DetectSettings, finest: bool
) -> list[Proposal]:
    # chroma at the finest level: only ink more colourful than its surroundings (a 12 px orange date stamp
    # on a face); darker-than-paper ink is seen in brightness there
    found_in = [_glyphs(c, settings, (1,) if finest and k else (0, 1)) for k, c in enumerate(channels)]
    fields = ("boxes", "centres", "heights", "word")
    words = [np.where(g.word > 0, g.word + (k << 26), 0) for k, g in enumerate(found_in)]  # unique ids
    every = _Glyphs(*(np.concatenate([getattr(g, f) for g in found_in]) for f in fields[:3]),
                    np.concatenate(words))
    # lines of separate glyphs first, as they are; then lines that need word blobs' pieces (where a piece
    # joins a line of separate glyphs it could tilt or split it, so those stay as found without pieces)
    separate = _Glyphs(*(getattr(every, f)[every.word == 0] for f in fields))
    found = _lines_of(separate, channels[0].shape, factor, settings, need_piece=False)
    if every.word.any():
        found += _lines_of(every, channels[0].shape, factor, settings, need_piece=True)
    return found


def _several_words(word: np.ndarray) -> bool:
    """A line that needs word blobs: two of them, or one and two glyphs (one blob alone, cut into pieces,
    would make any long strand of hair or fabric a line)."""
    blobs = len(np.unique(word[word > 0]))
    return blobs >= 2 or (blobs == 1 and np.count_nonzero(word == 0) >= 2)


def _lines_of(
    glyphs: _Glyphs, shape: tuple[int, ...], factor: float, settings: DetectSettings, need_piece: bool
) -> list[Proposal]:
    """Line proposals from the components of the smeared glyphs (``need_piece``: only components with a
    piece of a word blob in them)."""
    joined = _smear(shape, glyphs, settings)
    n, labels, stats, _ = components.with_stats(joined)
    per_line = _group(labels, n, glyphs)
    found: list[Proposal] = []
    # a line holds at least ``min_glyphs`` glyphs (``_text_height``): most components (a hair's blob, a pore)
    # hold fewer and are passed over before any per-component work
    for i in (i for i in range(1, n) if len(per_line[i]) >= settings.min_glyphs):
        x, y, w, h, area = stats[i]
        if need_piece and not _several_words(glyphs.word[per_line[i]]):
            continue
        heights = glyphs.heights[per_line[i]]
        glyph = _text_height(heights, settings)
        if glyph is None or not settings.min_line_px <= glyph <= settings.max_line_px:
            continue
        xs, ys = _outline(labels[y : y + h, x : x + w] == i)  # (a line's extent: every pixel is no better)
        points = np.column_stack([xs + x, ys + y]).astype(np.float32)
        mine = per_line[i]
        centres, boxes = glyphs.centres[mine].astype(np.float32), glyphs.boxes[mine].astype(np.float32)
        box = _line_box(points, centres, boxes, glyph)
        if box is None:
            continue
        (cx, cy), (along, across), angle = box
        if across > 1.8 * glyph:  # several lines, or one line with hair or an edge stuck to it
            found += _main_row(centres, boxes, heights, glyph, factor, settings)
        if across > settings.max_lines * 1.4 * glyph:
            # the direction in which all glyph centres line up best can cross a card's short lines (three
            # 12 px lines at 14° measured at 3°, too tall: hold-out seed 101 case 194): measure along its rows
            (cx, cy), (along, across), angle = _rows_box(points, centres[_alike(heights, glyph)], glyph)
        if across > settings.max_lines * 1.4 * glyph:
            continue  # taller than a few lines of its glyphs: a mass of hair or fabric, not a card
        if along < settings.min_elongation * across or area < settings.min_fill * along * across:
            continue
        if abs(angle) > 60.0:
            continue  # text runs within ±60° of horizontal here; steeper components are edges, hair, limbs
        found.append(Proposal((cx * factor, cy * factor), (along * factor, across * factor), angle,
                              glyph * factor))
    return found


def _main_row(
    centres: np.ndarray, boxes: np.ndarray, heights: np.ndarray, glyph: float, factor: float,
    settings: DetectSettings,
) -> list[Proposal]:
    """The one line that holds most of a tall component's glyphs of its type size, as a line proposal of
    its own: a name written just above hair, or beside a dark edge, joins their blobs into one component,
    whose block read (and its direction, set by all blobs) fails. A card of several alike lines has no such
    row (each holds a share), so it stays one block; hair has rarely enough alike glyphs in one row.
    Once a row is taken, the rest is searched again the same way (up to ``max_lines`` rows): a card's line
    whose corner touches a date stamp at another angle joins it into one component, and the stamp's row
    alone left the card's line unproposed (hold-out seed 97 case 117)."""
    alike = _alike(heights, glyph)
    c, b = centres[alike], boxes[alike]
    left = np.ones(len(c), bool)
    found: list[Proposal] = []
    for _ in range(settings.max_lines):
        member = _best_row(c, left, glyph)
        if member is None:
            break
        row = _row_proposal(c[member], b[member], glyph, factor, settings)
        found += [row] if row is not None else []
        left &= ~member
    return found


def _best_row(c: np.ndarray, left: np.ndarray, glyph: float) -> np.ndarray | None:
    """Mask of the glyph centres of one row: among those ``left``, the direction where most lie within half
    a glyph height across; None unless that row holds at least four and 60 % of them. Glyphs already taken
    by an earlier row count again where they continue this one (the card's last letters, which the date
    stamp's row took)."""
    rest = c[left]
    if len(rest) < 4:
        return None
    normals = np.stack([-np.sin(SWEEP), np.cos(SWEEP)], 1)
    across = np.sort(rest @ normals.T, axis=0)  # (n, k): each direction's positions across, sorted
    ends = np.stack([np.searchsorted(across[:, k], across[:, k] + 0.5 * glyph, "right")
                     for k in range(len(SWEEP))], 1)
    counts = ends - np.arange(len(rest))[:, None]  # glyphs within half a glyph height of each one
    k = int(np.argmax(counts.max(0)))
    best = int(counts[:, k].max())
    if best < max(4, 0.6 * len(rest)):
        return None
    start = across[int(np.argmax(counts[:, k])), k]
    v = c @ normals[k]
    band = (v >= start) & (v <= start + 0.5 * glyph)
    u = c @ np.array([np.cos(SWEEP[k]), np.sin(SWEEP[k])])
    mine = u[band & left]
    return band & (left | ((u >= mine.min() - 1.5 * glyph) & (u <= mine.max() + 1.5 * glyph)))


def _row_proposal(
    c: np.ndarray, b: np.ndarray, glyph: float, factor: float, settings: DetectSettings
) -> Proposal | None:
    x0, y0 = b[:, 0], b[:, 1]
    x1, y1 = x0 + b[:, 2], y0 + b[:, 3]
    corners = np.concatenate([np.column_stack(q) for q in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))])
    (cx, cy), (along, thick), angle = _line_box(corners, c, b, glyph)
    if along < settings.min_elongation * thick or abs(angle) > 60.0:
        return None
    return Proposal((cx * factor, cy * factor), (along * factor, thick * factor), angle, glyph * factor)


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _distinct(proposals: list[Proposal], overlap: float = 0.6) -> list[Proposal]:
    """One proposal per line: a line found again at a coarser level (same box) is read once."""
    kept: list[tuple[Proposal, tuple[int, int, int, int]]] = []
    big = (1 << 30, 1 << 30)
    for p in proposals:
        box = p.box(big)
        if all(_iou(box, other) < overlap for _, other in kept):
            kept.append((p, box))
    return [p for p, _ in kept]


def propose(
    image: np.ndarray, settings: DetectSettings = DetectSettings(), scale: float | None = None
) -> list[Proposal]:
    """Candidate text lines of an RGB (or grey) image, in full-image pixels; ``scale``: the finest level's
    (a part of a photo is proposed at the photo's own, so that unchanged lines come out the same)."""
    scale = base_scale(image.shape, settings) if scale is None else scale
    proposals: list[Proposal] = []
    small = image
    if scale < 1.0:
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    levels = _channels(small)
    for depth in range(settings.levels):
        if min(levels[0].shape[:2]) < 16:
            break
        proposals.extend(_level_proposals(levels, 1.0 / (scale * 2**-depth), settings, depth == 0))
        levels = [cv2.pyrDown(c) for c in levels]
    return _distinct(proposals)


def _channels(image: np.ndarray) -> list[np.ndarray]:
    """Brightness, and chroma (max − min of RGB): an orange date stamp on skin is as bright as the skin."""
    if image.ndim == 2:
        return [image]
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    r, g, b = cv2.split(image)
    chroma = cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))
    return [grey, chroma]
