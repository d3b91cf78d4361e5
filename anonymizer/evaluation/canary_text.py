"""Canary text drawn into photos: name cards, wristbands, overlays, camera date stamps, writing on skin.

Used by the text-stage tests and by ``bench/text_pixels.py``. Every canary records the tokens it printed and
the polygon it covers, so a bench can ask an OCR pass whether any token is still readable on the output.
Fonts are Debian's (``fonts-dejavu``, ``fonts-liberation``); randomness comes from the caller's generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
SURNAMES = ("DOE", "MUELLER", "DUBOIS", "SCHMIDT", "MARTIN", "JANSSEN", "KOWALSKI", "BERNARD", "FISCHER")
GIVEN = ("JANE", "PETER", "CLAIRE", "ANNA", "LUKAS", "MARIE", "THOMAS", "SOPHIE", "JONAS")


class CanaryKind(StrEnum):
    CARD = "card"  # dark text on a light (or coloured) card, 1-3 lines
    WRISTBAND = "wristband"  # one line on a narrow coloured strip
    OVERLAY = "overlay"  # light text on a dark bar (a chart screenshot's overlay)
    DATESTAMP = "datestamp"  # orange camera date stamp in a corner
    SKIN = "skin"  # text written straight onto the photo (skin, drape, background)


@dataclass(frozen=True)
class Canary:
    kind: CanaryKind
    tokens: tuple[str, ...]  # what was printed, word by word (PHI stand-ins: names, record numbers, dates)
    polygon: np.ndarray  # (4, 2) float32, the drawn element's corners in photo pixels
    angle: float  # degrees, counter-clockwise
    cap_px: int  # cap height of the type in photo pixels


@lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """Upright and italic sans, serif and mono faces of the installed Debian fonts (no symbol fonts)."""
    found = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.glob("*.ttf") if "Math" not in p.name)
    if not found:
        raise FileNotFoundError("no fonts: apt-get install fonts-dejavu fonts-liberation")
    return tuple(found)


@lru_cache(maxsize=256)
def _font(path: Path, cap_px: int) -> ImageFont.FreeTypeFont:
    size = max(6, round(cap_px / 0.72))  # cap height is about 0.72 em in these faces
    return ImageFont.truetype(str(path), size)


def _lines(kind: CanaryKind, rng: np.random.Generator) -> list[str]:
    surname, given = rng.choice(SURNAMES), rng.choice(GIVEN)
    mrn = "".join(str(d) for d in rng.integers(0, 10, 8))
    dob = f"{rng.integers(1, 29):02d}.{rng.integers(1, 13):02d}.{rng.integers(1930, 2020)}"
    if kind is CanaryKind.DATESTAMP:
        return [f"{rng.integers(1, 29):02d} {rng.integers(1, 13):02d} {rng.integers(2015, 2027)}"]
    if kind is CanaryKind.WRISTBAND:
        return [f"{surname} {given} {mrn}"]
    if kind is CanaryKind.OVERLAY:
        return [f"{surname}, {given}  MRN {mrn}"]
    if kind is CanaryKind.SKIN:
        return [f"{surname} {mrn}"]
    n = int(rng.integers(1, 4))
    return [f"{surname}, {given}", f"MRN {mrn}", f"DOB {dob}"][:n]


def _colours(kind: CanaryKind, rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(ink, paper) RGB(A); paper None draws straight onto the photo."""
    if kind is CanaryKind.OVERLAY:
        return (240, 240, 240), (20, 20, 30, 210)
    if kind is CanaryKind.DATESTAMP:
        return (255, 150, 30), None
    if kind is CanaryKind.SKIN:
        return tuple(int(v) for v in rng.choice([(20, 20, 90), (30, 30, 30), (120, 20, 60)])), None
    papers = [(250, 250, 245), (255, 240, 150), (190, 220, 255), (255, 200, 210), (210, 245, 210)]
    paper = papers[int(rng.integers(0, len(papers)))] if rng.random() < 0.6 else papers[0]
    if kind is CanaryKind.WRISTBAND:
        paper = papers[int(rng.integers(0, len(papers)))]
    ink = (10, 10, 10) if rng.random() < 0.8 else (20, 40, 140)
    return ink, (*paper, 255)


def _render(lines: list[str], font: ImageFont.FreeTypeFont, ink: tuple[int, ...],
            paper: tuple[int, ...] | None, pad: int) -> Image.Image:
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [probe.textbbox((0, 0), line, font=font) for line in lines]
    line_h = max(b[3] - b[1] for b in boxes)
    width = max(b[2] - b[0] for b in boxes) + 2 * pad
    height = len(lines) * line_h + (len(lines) - 1) * (line_h // 3) + 2 * pad
    tile = Image.new("RGBA", (width, height), paper if paper is not None else (0, 0, 0, 0))
    draw = ImageDraw.Draw(tile)
    for i, (line, box) in enumerate(zip(lines, boxes, strict=True)):
        origin = (pad - box[0], pad + i * (line_h + line_h // 3) - box[1])
        draw.text(origin, line, font=font, fill=(*ink, 255))
    return tile


def _place(photo: Image.Image, tile: Image.Image, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """Rotate ``tile`` about its centre, alpha-paste it centred at ``centre``; return the corners."""
    rotated = tile.rotate(angle, resample=Image.BICUBIC, expand=True)
    x0 = round(centre[0] - rotated.width / 2)
    y0 = round(centre[1] - rotated.height / 2)
    photo.alpha_composite(rotated, (x0, y0))
    w, h = tile.size
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], np.float32)
    rad = np.deg2rad(angle)
    rot = np.array([[np.cos(rad), np.sin(rad)], [-np.sin(rad), np.cos(rad)]], np.float32)
    return (corners @ rot.T + np.array(centre, np.float32)).astype(np.float32)


def _free_spot(size: tuple[int, int], extent: tuple[int, int], taken: list[tuple[int, int, int, int]],
               rng: np.random.Generator, kind: CanaryKind) -> tuple[float, float] | None:
    h, w = size
    ew, eh = extent
    if ew >= w or eh >= h:
        return None
    for _ in range(60):
        if kind is CanaryKind.DATESTAMP:
            cx, cy = w - ew / 2 - rng.uniform(0.02, 0.06) * w, h - eh / 2 - rng.uniform(0.02, 0.06) * h
        elif kind is CanaryKind.OVERLAY:
            cx, cy = rng.uniform(ew / 2, max(ew / 2 + 1, w - ew / 2)), eh / 2 + rng.uniform(0, 0.03) * h
        else:
            cx, cy = rng.uniform(ew / 2, w - ew / 2), rng.uniform(eh / 2, h - eh / 2)
        box = (int(cx - ew / 2), int(cy - eh / 2), int(cx + ew / 2), int(cy + eh / 2))
        inside = box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h
        if inside and not any(_overlap(box, t) for t in taken):
            return cx, cy
    return None


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_canaries(
    photo: np.ndarray,
    rng: np.random.Generator,
    kinds: list[CanaryKind],
    *,
    avoid: list[tuple[int, int, int, int]] | None = None,
    cap_range: tuple[int, int] = (12, 80),
    max_angle: float = 30.0,
) -> tuple[np.ndarray, list[Canary]]:
    """Draw one canary per kind onto a copy of an RGB photo, away from ``avoid`` boxes (x0, y0, x1, y1)."""
    image = Image.fromarray(photo).convert("RGBA")
    taken = list(avoid or [])
    canaries: list[Canary] = []
    for kind in kinds:
        lines = _lines(kind, rng)
        cap = int(rng.integers(cap_range[0], cap_range[1] + 1))
        if kind is CanaryKind.DATESTAMP:
            cap = min(cap, 40)
        font = _font(font_files()[int(rng.integers(0, len(font_files())))], cap)
        ink, paper = _colours(kind, rng)
        tile = _render(lines, font, ink, paper, pad=max(2, cap // 2) if paper else 2)
        angle = 0.0 if kind in (CanaryKind.DATESTAMP, CanaryKind.OVERLAY) else float(
            rng.uniform(-max_angle, max_angle))
        rad = np.deg2rad(abs(angle))
        extent = (int(tile.width * np.cos(rad) + tile.height * np.sin(rad)) + 4,
                  int(tile.width * np.sin(rad) + tile.height * np.cos(rad)) + 4)
        spot = _free_spot(photo.shape[:2], extent, taken, rng, kind)
        if spot is None:
            continue
        polygon = _place(image, tile, angle, spot)
        taken.append((int(spot[0] - extent[0] / 2), int(spot[1] - extent[1] / 2),
                      int(spot[0] + extent[0] / 2), int(spot[1] + extent[1] / 2)))
        tokens = tuple(t.strip(",") for line in lines for t in line.split() if t.strip(","))
        canaries.append(Canary(kind, tokens, polygon, angle, cap))
    return np.asarray(image.convert("RGB")), canaries


def clinical_background(rng: np.random.Generator, size: tuple[int, int] = (1200, 1600)) -> np.ndarray:
    """A plain clinical-looking photo without a face: skin close-up, surgical drape or studio backdrop."""
    h, w = size
    palettes = [(205, 160, 135), (170, 120, 95), (120, 85, 65),  # skin
                (60, 120, 110), (90, 130, 170), (200, 200, 205)]  # drape, backdrop
    base = np.array(palettes[int(rng.integers(0, len(palettes)))], np.float32)
    noise = rng.normal(0, 1, (h // 16 + 1, w // 16 + 1)).astype(np.float32)
    low = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 2), (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 1.0 + 0.12 * ((xx / w - 0.5) + (yy / h - 0.5))
    grain = rng.normal(0, 2.5, (h, w, 1)).astype(np.float32)
    img = base * light[..., None] + 10.0 * low[..., None] + grain
    return np.clip(img, 0, 255).astype(np.uint8)


def canary_mask(shape: tuple[int, int], canaries: list[Canary], pad: int = 0) -> np.ndarray:
    """Bool mask of the canaries' polygons (grown by ``pad`` pixels)."""
    mask = np.zeros(shape, np.uint8)
    for c in canaries:
        cv2.fillPoly(mask, [np.round(c.polygon).astype(np.int32)], 1)
    if pad > 0:
        mask = cv2.dilate(mask, np.ones((2 * pad + 1, 2 * pad + 1), np.uint8))
    return mask.astype(bool)


MAX_RUN = 32  # alphanumerics in the longest line drawn (name, given name and record number run together)


def _normal(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def straightened(image: np.ndarray, canary: Canary, cap_target: int = 32) -> np.ndarray:
    """The canary's area, rotated back to horizontal and scaled to a comfortable reading size (in colour)."""
    centre = canary.polygon.mean(0)
    w = float(np.linalg.norm(canary.polygon[1] - canary.polygon[0]))
    h = float(np.linalg.norm(canary.polygon[3] - canary.polygon[0]))
    scale = cap_target / max(canary.cap_px, 1)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), -canary.angle, scale)
    pad = 0.6 * canary.cap_px + 6
    out_w, out_h = (w + 2 * pad) * scale, (h + 2 * pad) * scale
    m[0, 2] += out_w / 2 - centre[0]
    m[1, 2] += out_h / 2 - centre[1]
    flags = cv2.INTER_CUBIC if scale >= 1 else cv2.INTER_AREA
    return cv2.warpAffine(image, m, (int(out_w), int(out_h)), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _views(crop: np.ndarray) -> list[np.ndarray]:
    """Greyscale views an attacker tries: brightness, and the crop's main colour axis stretched to full
    range (orange ink on skin barely differs in brightness; a faint leftover is amplified)."""
    if crop.ndim == 2:
        return [crop]
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    flat = crop.reshape(-1, 3).astype(np.float32)
    centred = flat - flat.mean(0)
    axis = np.linalg.svd(centred[:: max(1, len(centred) // 4000)], full_matrices=False)[2][0]
    values = (centred @ axis).reshape(crop.shape[:2])
    lo, hi = np.percentile(values, (0.5, 99.5))
    axis_view = np.clip((values - lo) * 255.0 / max(hi - lo, 1e-3), 0, 255).astype(np.uint8)
    return [grey, axis_view]


def readable_tokens(image: np.ndarray, canary: Canary) -> set[str]:
    """Tokens of ``canary`` that tesseract can still read in ``image``: an attacker who knows where the
    card was and how it was turned. Block mode on the straightened area, at two sizes (cap height 32 px,
    and the photo's own size when that is larger or smaller by half), in brightness and along the main colour
    axis, both polarities."""
    from tesserocr import PSM, PyTessBaseAPI

    from anonymizer.text.ocr import tessdata_dir

    caps = [32] + ([canary.cap_px] if not 16 <= canary.cap_px <= 48 else [])
    crops = [straightened(image, canary, cap) for cap in caps]
    texts: list[str] = []
    with PyTessBaseAPI(path=str(tessdata_dir()) + "/", lang="eng", psm=PSM.SINGLE_BLOCK) as api:
        for view in (v for crop in crops for v in _views(crop)):
            for img in (view, 255 - view):
                api.SetImage(Image.fromarray(img))
                texts.append(api.GetUTF8Text())
    return tokens_in(canary.tokens, texts)


def tokens_in(tokens: tuple[str, ...], texts: list[str]) -> set[str]:
    """The tokens found in what OCR read: read whole, or (from four characters) inside what one read ran
    together (a token split or merged by OCR), leaving out words longer than any line drawn: tesseract reads
    a fill's edge as a run of 100+ letters ("...ananannannnn...") that holds a short name by chance."""
    words: set[str] = set()
    joined = ""
    for text in texts:
        read = [_normal(t) for t in text.split()]
        words |= set(read)
        joined += "".join(w for w in read if len(w) <= MAX_RUN) + " "
    found = set()
    for token in tokens:
        t = _normal(token)
        if t and (t in words or (len(t) >= 4 and t in joined)):
            found.add(token)
    return found
