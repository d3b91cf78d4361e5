"""Line OCR with Debian's tesseract through tesserocr (in-process libtesseract, LSTM models, no downloads).

tesserocr's wheel carries libtesseract; the language models come from Debian's ``tesseract-ocr-eng`` (and
``-deu``, ``-fra``) under ``/usr/share/tesseract-ocr/*/tessdata``, or from ``$TESSDATA_PREFIX`` when set.
One API object per thread (libtesseract is not re-entrant). :func:`self_test` reads a rendered line and
checks the answer, so an install that loads but cannot read is caught by ``doctor`` and by the stage.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

LANG = "eng"  # confirmation only needs to see that a line is text; Latin digits and capitals suffice
DEBIAN_TESSDATA = (
    Path("/usr/share/tesseract-ocr/5/tessdata"),
    Path("/usr/share/tesseract-ocr/4.00/tessdata"),
)
SELF_TEST_TEXT = "VERA 2741"
VARIABLES = {
    "tessedit_do_invert": "0",  # crops arrive as dark ink on light paper; no second, inverted pass
    "load_system_dawg": "0",  # no dictionary: record numbers and names are not words, and loading is faster
    "load_freq_dawg": "0",
}


class OcrUnavailable(RuntimeError):
    """tesseract or its language data is missing or broken: photos cannot be checked for text."""


@dataclass(frozen=True)
class Word:
    text: str  # what OCR read: PHI, never logged
    confidence: float  # 0-100
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the line crop


def tessdata_dir() -> Path:
    """Where the language models are: $TESSDATA_PREFIX when set (and only then), else Debian's folder."""
    env = os.environ.get("TESSDATA_PREFIX")
    candidates = [Path(env)] if env else list(DEBIAN_TESSDATA)
    for folder in candidates:
        if (folder / f"{LANG}.traineddata").is_file():
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise OcrUnavailable(
        f"no {LANG}.traineddata in {where}: apt-get install tesseract-ocr tesseract-ocr-{LANG}"
    )


_local = threading.local()


def _api() -> object:
    """This thread's tesseract API, created on first use (in single-line mode, LSTM only)."""
    folder = tessdata_dir()
    api = getattr(_local, "api", None)
    if api is not None and getattr(_local, "folder", None) == folder:
        return api
    try:
        from tesserocr import OEM, PSM, PyTessBaseAPI
    except ImportError as exc:
        raise OcrUnavailable("tesserocr is not installed: pip install tesserocr") from exc
    try:
        api = PyTessBaseAPI(
            path=str(folder) + os.sep, lang=LANG, psm=PSM.SINGLE_LINE, oem=OEM.LSTM_ONLY, variables=VARIABLES
        )
    except RuntimeError as exc:
        raise OcrUnavailable(f"tesseract could not load {LANG} from {folder}: {exc}") from exc
    _local.api, _local.folder = api, folder
    return api


def read_line(grey: np.ndarray, block: bool = False) -> list[Word]:
    """Words of one horizontal text line (uint8 greyscale crop), with confidences and boxes.

    ``block``: the crop holds several lines (tesseract's single-block mode instead of single-line)."""
    from tesserocr import PSM, RIL, iterate_level

    api = _api()
    api.SetPageSegMode(PSM.SINGLE_BLOCK if block else PSM.SINGLE_LINE)  # type: ignore[attr-defined]
    img = np.ascontiguousarray(grey, np.uint8)
    h, w = img.shape
    api.SetImageBytes(img.tobytes(), w, h, 1, w)  # type: ignore[attr-defined]
    api.Recognize()  # type: ignore[attr-defined]
    words: list[Word] = []
    iterator = api.GetIterator()  # type: ignore[attr-defined]
    if iterator is None:
        return words
    for item in iterate_level(iterator, RIL.WORD):
        try:
            text = item.GetUTF8Text(RIL.WORD) or ""
        except RuntimeError:  # an empty word (tesserocr raises instead of returning "")
            continue
        box = item.BoundingBox(RIL.WORD)
        if text.strip() and box is not None:
            words.append(Word(text.strip(), float(item.Confidence(RIL.WORD)), tuple(box)))
    return words


@lru_cache(maxsize=1)
def _self_test_image() -> np.ndarray:
    img = np.full((48, 260), 255, np.uint8)
    cv2.putText(img, SELF_TEST_TEXT, (8, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.1, 0, 2, cv2.LINE_AA)
    return img


def self_test() -> str:
    """Read a rendered line and check it; returns tesseract's version line. Raises OcrUnavailable."""
    try:
        import tesserocr
    except ImportError as exc:
        raise OcrUnavailable("tesserocr is not installed: pip install tesserocr") from exc
    read = " ".join(w.text for w in read_line(_self_test_image()))
    if read.replace(" ", "") != SELF_TEST_TEXT.replace(" ", ""):
        raise OcrUnavailable(f"tesseract misread its self-test line ({len(read)} characters read)")
    return tesserocr.tesseract_version().splitlines()[0]


def ensure_ready() -> None:
    """Raise OcrUnavailable unless this thread's tesseract passed its self-test (once per model folder):
    a photo in which the detector proposes nothing must not pass as checked when OCR could not have run."""
    folder = tessdata_dir()
    if getattr(_local, "tested", None) != folder:
        self_test()
        _local.tested = folder
