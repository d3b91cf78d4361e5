"""Canary photos for the text step: label cards, rulers and writing drawn with Debian's fonts (seeded)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from anonymizer.evaluation.canary_text import Canary, CanaryKind, clinical_background, draw_canaries

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
# tight: small slanted type merges into word blobs
MONO = Path("/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf")


def card_photo(seed: int = 3, kinds: tuple[CanaryKind, ...] = (CanaryKind.CARD,),
               size: tuple[int, int] = (900, 1200)) -> tuple[np.ndarray, list[Canary]]:
    """A plain clinical background (a dermatology close-up, no face) with canary text drawn in."""
    rng = np.random.default_rng(seed)
    photo, canaries = draw_canaries(clinical_background(rng, size), rng, list(kinds), cap_range=(22, 40),
                                    max_angle=20)
    assert len(canaries) == len(kinds)
    return photo, canaries


def name_card(photo: np.ndarray, centre: tuple[int, int], lines: tuple[str, ...], cap: int = 30,
              angle: float = 0.0, face: Path = FONT,
              paper: tuple[int, int, int] | None = (250, 250, 245),
              ink: tuple[int, int, int] = (0, 0, 0)) -> tuple[np.ndarray, Canary]:
    """``ink``-on-``paper`` card with ``lines`` at ``centre`` (for exact placement, e.g. over the mouth);
    ``paper`` None writes straight onto the photo (skin, a backdrop)."""
    font = ImageFont.truetype(str(face), round(cap / 0.72))
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [probe.textbbox((0, 0), line, font=font) for line in lines]
    line_h = max(b[3] - b[1] for b in boxes)
    pad = cap // 2
    w = max(b[2] - b[0] for b in boxes) + 2 * pad
    h = len(lines) * line_h + (len(lines) - 1) * (line_h // 3) + 2 * pad
    tile = Image.new("RGBA", (w, h), (*paper, 255) if paper is not None else (0, 0, 0, 0))
    draw = ImageDraw.Draw(tile)
    for i, (line, box) in enumerate(zip(lines, boxes, strict=True)):
        origin = (pad - box[0], pad + i * (line_h + line_h // 3) - box[1])
        draw.text(origin, line, font=font, fill=(*ink, 255))
    image = Image.fromarray(photo).convert("RGBA")
    rotated = tile.rotate(angle, resample=Image.BICUBIC, expand=True)
    image.alpha_composite(rotated, (centre[0] - rotated.width // 2, centre[1] - rotated.height // 2))
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], np.float32)
    rad = np.deg2rad(angle)
    rot = np.array([[np.cos(rad), np.sin(rad)], [-np.sin(rad), np.cos(rad)]], np.float32)
    polygon = corners @ rot.T + np.array(centre, np.float32)
    tokens = tuple(t.strip(",") for line in lines for t in line.split())
    return np.asarray(image.convert("RGB")), Canary(CanaryKind.CARD, tokens, polygon, angle, cap)


def ruler(photo: np.ndarray, origin: tuple[int, int], length: int = 520) -> np.ndarray:
    """A ruler strip: millimetre ticks and a line of centimetre labels ("1 2 3 4 5 cm")."""
    out = photo.copy()
    x0, y0 = origin
    cv2.rectangle(out, (x0, y0), (x0 + length, y0 + 90), (245, 240, 225), -1)
    step = length // 52
    for i in range(51):
        tick = 26 if i % 10 == 0 else (18 if i % 5 == 0 else 10)
        cv2.line(out, (x0 + 10 + i * step, y0), (x0 + 10 + i * step, y0 + tick), (30, 30, 30), 2)
    image = Image.fromarray(out)
    font = ImageFont.truetype(str(FONT), 30)
    ImageDraw.Draw(image).text((x0 + 14, y0 + 44), "10  20  30  40  50 mm", font=font, fill=(30, 30, 30))
    return np.asarray(image)


@pytest.fixture(scope="session")
def tessdata_ok() -> None:
    from anonymizer.text.ocr import OcrUnavailable, self_test

    try:
        self_test()
    except OcrUnavailable as exc:
        pytest.fail(f"tesseract is part of the install (scripts/setup.sh): {exc}")
