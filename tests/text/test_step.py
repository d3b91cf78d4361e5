"""The text step on canary photos: cards are filled and checked again, rulers on the allow-list stay, text
over a preserved region holds the photo, a broken OCR install raises (the pixel stage quarantines)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from anonymizer.evaluation.canary_text import (
    Canary,
    CanaryKind,
    clinical_background,
    draw_canaries,
    readable_tokens,
)
from anonymizer.plans import TextAction, TextPlan
from anonymizer.text.frames import check_frames
from anonymizer.text.ocr import OcrUnavailable, self_test
from anonymizer.text.step import scrub
from tests.conftest import FACES
from tests.text.conftest import MONO, card_photo, name_card, ruler

pytestmark = pytest.mark.usefixtures("tessdata_ok")
RULER_ONLY = TextPlan(keep_regex=r"^[0-9 .,]*(mm|cm)?$")


def test_label_card_is_inpainted_and_no_canary_token_stays_readable() -> None:
    photo, canaries = card_photo(seed=3, kinds=(CanaryKind.CARD, CanaryKind.DATESTAMP, CanaryKind.WRISTBAND))
    assert sum(len(readable_tokens(photo, c)) for c in canaries) >= 5  # the attacker reads the input
    result = scrub(photo, TextPlan())
    assert result.ok and result.image is not None, result.reason
    assert [readable_tokens(result.image, c) for c in canaries] == [set()] * len(canaries)
    report = result.report
    assert report.checked and report.clean and report.found >= 3 and report.redacted >= report.found
    changed = np.any(result.image != photo, axis=2)
    for x0, y0, x1, y1 in report.boxes:  # fills stay inside the reported boxes
        changed[y0:y1, x0:x1] = False
    assert not changed.any()


def test_small_slanted_wristband_is_removed_or_held_never_forwarded_readable() -> None:
    """14 px monospaced type at 29°: its glyphs merge into word blobs at the detector's finest level."""
    base, _ = card_photo(seed=5, kinds=(), size=(1200, 1600))
    photo, band = name_card(base, (700, 800), ("SCHMIDT JANE 01032116",), cap=14, angle=29.0, face=MONO,
                            paper=(190, 220, 255))
    assert len(readable_tokens(photo, band)) >= 2  # the attacker reads the input
    result = scrub(photo, TextPlan())
    assert result.image is None or readable_tokens(result.image, band) == set(), result.report
    assert result.image is not None, result.reason  # and it is removed, not only held


@pytest.mark.parametrize(("face", "stamp"), [("LiberationSerif-Italic", "24 12 2018"),
                                           ("LiberationSans-Italic", "02 02 2017")])
def test_italic_orange_date_stamp_is_removed(face: str, stamp: str) -> None:
    """40 px italic camera date stamps that OCR reads unsurely at the first crop's scale."""
    photo = Image.fromarray(clinical_background(np.random.default_rng(1), (1200, 1600)))
    font = ImageFont.truetype(f"/usr/share/fonts/truetype/liberation/{face}.ttf", round(40 / 0.72))
    draw = ImageDraw.Draw(photo)
    x0, y0, x1, y1 = draw.textbbox((1250, 1100), stamp, font=font)
    draw.text((1250, 1100), stamp, font=font, fill=(255, 150, 30))
    polygon = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)
    canary = Canary(CanaryKind.DATESTAMP, tuple(stamp.split()), polygon, 0.0, 40)
    assert len(readable_tokens(np.asarray(photo), canary)) >= 2  # the attacker reads the input
    result = scrub(np.asarray(photo), TextPlan())
    assert result.image is not None, result.reason
    assert readable_tokens(result.image, canary) == set()


@pytest.mark.parametrize("seed", [2, 20])
def test_overlay_bar_goes_whole_with_the_words_the_detector_missed(seed: int) -> None:
    """A chart overlay across the top: light type on a dark bar, part of it never proposed (the bar's edge
    lowers the local contrast); the bar a confirmed line lies on is filled whole."""
    rng = np.random.default_rng(seed)
    photo, (bar,) = draw_canaries(clinical_background(rng, (1200, 1600)), rng, [CanaryKind.OVERLAY],
                                  cap_range=(45, 75))
    assert len(readable_tokens(photo, bar)) >= 3  # the attacker reads the input
    result = scrub(photo, TextPlan())
    assert result.image is not None, result.reason
    assert readable_tokens(result.image, bar) == set()
    below = int(bar.polygon[:, 1].max()) + 40
    assert not np.any(result.image[below:] != photo[below:])  # the photo below the bar is untouched


def test_photo_without_text_is_checked_clean_and_left_untouched() -> None:
    photo, _ = card_photo(seed=5, kinds=())
    result = scrub(photo, TextPlan())
    assert result.ok and result.report.checked and result.report.found == 0
    assert result.image is photo


def test_rotated_card_on_skin_is_redacted() -> None:
    base, _ = card_photo(seed=11, kinds=())
    photo, canary = name_card(base, (600, 450), ("KOWALSKI, ANNA", "MRN 30917752"), cap=26, angle=-24)
    assert readable_tokens(photo, canary)
    result = scrub(photo, TextPlan())
    assert result.ok and result.image is not None
    assert readable_tokens(result.image, canary) == set()


def test_ruler_numbers_on_the_allow_list_stay_and_the_card_beside_them_goes() -> None:
    base, _ = card_photo(seed=7, kinds=())
    photo, card = name_card(ruler(base, (80, 700)), (800, 250), ("DOE, JANE", "MRN 00471155"))
    result = scrub(photo, RULER_ONLY)
    assert result.ok and result.image is not None, result.reason
    assert result.report.kept >= 1
    assert readable_tokens(result.image, card) == set()
    ruler_area = (slice(700, 790), slice(80, 600))
    assert np.array_equal(result.image[ruler_area], photo[ruler_area])  # not a pixel of the ruler changed


def test_without_the_allow_list_the_ruler_labels_are_redacted_too() -> None:
    base, _ = card_photo(seed=7, kinds=())
    photo = ruler(base, (80, 700))
    result = scrub(photo, TextPlan())
    assert result.ok and result.report.redacted >= 1 and result.report.kept == 0


def test_text_over_the_preserved_region_quarantines_and_alters_nothing() -> None:
    photo, canaries = card_photo(seed=3)
    protected = np.zeros(photo.shape[:2], bool)
    x, y = canaries[0].polygon.mean(0).astype(int)
    protected[y - 5 : y + 5, x - 5 : x + 5] = True  # the card lies on the preserved region
    before = photo.copy()
    result = scrub(photo, TextPlan(), protected)
    assert result.image is None and result.reason == "text-over-preserved-region"
    assert np.array_equal(photo, before)


def test_quarantine_policy_holds_any_text_and_keep_checks_nothing() -> None:
    photo, _ = card_photo(seed=3)
    held = scrub(photo, TextPlan(action=TextAction.QUARANTINE))
    assert held.image is None and held.reason.startswith("text-in-pixels:")
    kept = scrub(photo, TextPlan(action=TextAction.KEEP))
    assert kept.image is photo and not kept.report.checked and not kept.report.clean


def test_logs_name_counts_and_boxes_never_the_text(caplog: pytest.LogCaptureFixture) -> None:
    photo, canaries = card_photo(seed=3, kinds=(CanaryKind.CARD, CanaryKind.OVERLAY))
    with caplog.at_level(logging.DEBUG):
        _, report, reason = check_frames([photo], TextPlan(), [None])
    assert not reason and report.redacted >= 2
    record = next(r for r in caplog.records if r.getMessage() == "text step")
    assert record.redacted == report.redacted and record.boxes  # type: ignore[attr-defined]
    logged = " ".join(str(v) for r in caplog.records for v in (r.getMessage(), *r.__dict__.values()))
    for token in (t for c in canaries for t in c.tokens if len(t) >= 4):
        assert token not in logged


def test_broken_ocr_install_raises_so_the_photo_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))  # no language data there
    photo, _ = card_photo(seed=3)
    with pytest.raises(OcrUnavailable):
        self_test()
    with pytest.raises(OcrUnavailable):
        scrub(photo, TextPlan())
    (tmp_path / "eng.traineddata").write_bytes(b"not a model")  # present but corrupt
    with pytest.raises(OcrUnavailable):
        self_test()


LIBERATION = Path("/usr/share/fonts/truetype/liberation")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


@pytest.mark.parametrize(("face", "cap", "angle", "paper"), [
    (LIBERATION / "LiberationSerif-Italic.ttf", 64, 0.7, (250, 250, 245)),
    (DEJAVU / "DejaVuSerif-BoldItalic.ttf", 44, 20.6, (250, 250, 245)),
    (LIBERATION / "LiberationSans-Italic.ttf", 59, 28.0, (190, 220, 255)),  # a wristband
])
def test_large_card_type_is_redacted(face: Path, cap: int, angle: float, paper: tuple[int, int, int]) -> None:
    """Large type on a card (44-64 px): its line box is lower than its glyphs, its glyphs touch at the
    coarse level that sees them, the paper lies closer to the line than its box's height; each once went
    out readable."""
    base = clinical_background(np.random.default_rng(4), (1200, 1600))
    photo, card = name_card(base, (800, 2 * cap), ("BERNARD, LUKAS",), cap=cap, angle=angle, face=face,
                            paper=paper)  # near the photo's top edge, as the misses were
    assert readable_tokens(photo, card)  # the attacker reads the input
    result = scrub(photo, TextPlan())
    assert result.image is None or readable_tokens(result.image, card) == set(), result.report
    assert result.image is not None, result.reason  # removed, not only held


@pytest.mark.parametrize(("photo_id", "centre", "text", "cap", "angle", "face", "ink"), [
    # bold, slanted a little, on the backdrop
    ("037_08", (1032, 75), "DUBOIS 29193986", 51, 8.2, "LiberationSans-Bold", (30, 30, 30)),
    # beside hair: read as a block
    ("001_08", (616, 97), "DUBOIS 44870995", 41, 15.0, "LiberationSans-Bold", (120, 20, 60)),
    # just above hair: its glyphs and the hair's blobs one tall component, whose block read fails; its
    # main row is read as a line
    ("001_08", (619, 100), "DUBOIS 44870995", 41, 15.05, "LiberationSans-Bold", (120, 20, 60)),
    # beside a dark jacket's edge: the same, and the component's direction (set by all blobs) was off
    ("002_03", (560, 1245), "DOE 58094835", 55, 7.25, "DejaVuSans-BoldOblique", (20, 20, 90)),
    # condensed bold at 30°: its glyphs too tall for the finest level, its word blobs for the next
    ("024_08", (173, 803), "JANSSEN 55220856", 23, 29.8, "DejaVuSansCondensed-Bold", (120, 20, 60)),
])
def test_writing_on_a_face_photo_is_redacted(
    photo_id: str, centre: tuple[int, int], text: str, cap: int, angle: float, face: str,
    ink: tuple[int, int, int],
) -> None:
    """Writing straight onto a face photo's backdrop and hair (no card to fill), as bench photos had it
    when it went out readable."""
    path = FACES / f"{photo_id}.jpg"
    if not path.is_file():
        pytest.skip("../shared/data/faces/london_set is not present")
    font = next(d / f"{face}.ttf" for d in (LIBERATION, DEJAVU) if (d / f"{face}.ttf").is_file())
    base = np.asarray(Image.open(path).convert("RGB"))
    photo, writing = name_card(base, centre, (text,), cap=cap, angle=angle, face=font, paper=None, ink=ink)
    assert readable_tokens(photo, writing)  # the attacker reads the input
    result = scrub(photo, TextPlan())
    assert result.image is not None, result.reason
    assert readable_tokens(result.image, writing) == set()


def test_small_orange_date_stamp_on_skin_is_redacted_or_held() -> None:
    """A 12 px orange camera date stamp on skin: as bright as the skin, it shows only in chroma, which the
    finest pyramid level reads too."""
    grain = np.random.default_rng(2).normal(0, 2.5, (1200, 1600, 3))
    base = np.clip(np.array([205.0, 160.0, 135.0]) + grain, 0, 255).astype(np.uint8)
    mono = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    photo, stamp = name_card(base, (1450, 1120), ("06 01 2019",), cap=12, face=mono, paper=None,
                             ink=(255, 150, 30))
    assert readable_tokens(photo, stamp)  # the attacker reads the input (along the colour axis)
    result = scrub(photo, TextPlan())
    assert result.image is None or readable_tokens(result.image, stamp) == set(), result.report


@pytest.mark.parametrize(("photo_id", "centre", "text", "cap", "face", "pad"), [
    # spanning nearly the photo's width, of which only one word is confirmed: the bar is a card even when
    # it runs further beyond that word than half the photo (it once went out with the name)
    ("017_03", (737, 93), "FISCHER, LUKAS  MRN 20726900", 49, "DejaVuSansCondensed-Oblique", 24),
    # light, thin, narrow 51 px type: too tall for one pyramid level's glyphs, its thin strokes broken up at
    # the next; each level now sees glyphs up to 20 px
    ("108_08", (598, 62), "KOWALSKI, JONAS  MRN 35376525", 51, "LiberationSansNarrow-Regular", 25),
])
def test_overlay_bar_goes_with_its_text(photo_id: str, centre: tuple[int, int], text: str, cap: int,
                                        face: str, pad: int) -> None:
    """A chart overlay on a face photo: light type on a dark bar (bench photos sent both out readable)."""
    path = FACES / f"{photo_id}.jpg"
    if not path.is_file():
        pytest.skip("../shared/data/faces/london_set is not present")
    base = np.asarray(Image.open(path).convert("RGB"))
    font = next(d / f"{face}.ttf" for d in (LIBERATION, DEJAVU) if (d / f"{face}.ttf").is_file())
    photo, bar = _overlay_bar(base, centre, text, cap, font, pad)
    assert len(readable_tokens(photo, bar)) >= 3  # the attacker reads the input
    result = scrub(photo, TextPlan())
    assert result.image is not None, result.reason
    assert readable_tokens(result.image, bar) == set()


def _overlay_bar(base: np.ndarray, centre: tuple[int, int], text: str, cap: int, face: Path,
                 pad: int) -> tuple[np.ndarray, Canary]:
    """A chart overlay: light type on a translucent dark bar, level, centred at ``centre``."""
    font = ImageFont.truetype(str(face), round(cap / 0.72))
    probe = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    w, h = probe[2] - probe[0] + 2 * pad, probe[3] - probe[1] + 2 * pad
    tile = Image.new("RGBA", (w, h), (20, 20, 30, 210))
    ImageDraw.Draw(tile).text((pad - probe[0], pad - probe[1]), text, font=font, fill=(240, 240, 240, 255))
    photo_img = Image.fromarray(base).convert("RGBA")
    x0, y0 = centre[0] - w // 2, centre[1] - h // 2
    photo_img.alpha_composite(tile, (x0, y0))
    polygon = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], np.float32)
    tokens = tuple(t.strip(",") for t in text.split())
    return np.asarray(photo_img.convert("RGB")), Canary(CanaryKind.OVERLAY, tokens, polygon, 0.0, cap)


def test_the_preserved_regions_extent_is_its_bounding_box() -> None:
    """``touches_protected`` scans around the region's bounding box, found from its rows and columns."""
    from anonymizer.text.step import _extent

    rng = np.random.default_rng(4)
    for _ in range(20):
        mask = np.zeros((rng.integers(1, 60), rng.integers(1, 60)), bool)
        mask[tuple(rng.integers(0, s, 3) for s in mask.shape)] = True
        ys, xs = np.nonzero(mask)
        assert _extent(mask) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
