"""`rules explain` runs the route's text step on the pixels as sent and names counts and boxes, never the
text that was read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset
from dicom_rules import load_rules
from dicom_rules.explain import explain, render
from tests.text.conftest import card_photo

pytestmark = pytest.mark.usefixtures("tessdata_ok")
DEFAULT = Path(__file__).resolve().parents[2] / "dicom_rules" / "default.yaml"


def test_explain_names_text_counts_and_boxes_never_the_text() -> None:
    photo, canaries = card_photo(seed=3)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=95)
    ds = jpeg_to_dataset(buf.getvalue(), PhotoContext("PAT-EXPL", "Doe^Jane"))
    expl = explain(ds, load_rules(DEFAULT))
    assert expl.text is not None and expl.text.found >= 1 and expl.text.redacted >= 1 and expl.text.boxes
    console = Console(record=True, width=200, file=io.StringIO())
    render(expl, console)
    out = console.export_text()
    assert "text found" in out and "redacted" in out
    x0, y0, x1, y1 = expl.text.boxes[0]
    assert f"({x0},{y0},{x1},{y1})" in out
    for token in (t for c in canaries for t in c.tokens if len(t) >= 4):
        assert token not in out


def test_cli_explain_runs_the_text_step_only_with_pixels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --pixels the CLI stays light (no OpenCV, no tesseract) and says the text step was not run."""
    from dicom_rules.cli import main

    photo, _ = card_photo(seed=5)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, "JPEG", quality=95)
    path = tmp_path / "card.dcm"
    ds = jpeg_to_dataset(buf.getvalue(), PhotoContext("PAT-EXPL", "Doe^Jane"))
    ds.save_as(path, enforce_file_format=True)
    assert main(["explain", str(path)]) == 0
    light = capsys.readouterr().out
    assert "text step not run here" in light and "text found" not in light
    assert main(["explain", str(path), "--pixels"]) == 0
    assert "text found" in capsys.readouterr().out
