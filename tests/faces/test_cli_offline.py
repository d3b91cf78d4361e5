"""`vera-gateway import-photos` and `anonymize` on files: faces anonymized, a no-face photo quarantined
(never written), headers de-identified."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from anonymizer import codec
from gateway.cli import main
from tests.faces.conftest import TEST_IDS, london


def test_import_then_anonymize_quarantines_the_photo_without_a_face(tmp_path: Path, bank_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    source = london(f"{TEST_IDS[1]}_08")
    (photos / "a.jpg").write_bytes(source.read_bytes())
    y, x = np.mgrid[0:200, 0:300]
    Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)).save(photos / "b.png")
    dicom = tmp_path / "dicom"
    args = [
        "import-photos",
        str(photos),
        str(dicom),
        "--patient-id",
        "MRN-778899",
        "--patient-name",
        "Doe^Jane",
    ]
    assert main(args) == 0
    imported = sorted(dicom.iterdir())
    assert len(imported) == 2
    assert dcmread(imported[0]).PixelData.find(source.read_bytes()[:64]) > 0  # JPEG kept byte for byte
    out = tmp_path / "out"
    code = main(
        [
            "--data-dir",
            str(tmp_path / "var"),
            "anonymize",
            str(dicom),
            str(out),
            "--donor-bank",
            str(bank_path),
        ]
    )
    assert code == 2  # not everything could be anonymized
    written = sorted(out.glob("*.dcm"))
    assert len(written) == 1
    ds = dcmread(written[0])
    assert "MRN-778899" not in str(ds.PatientID) and "Doe" not in str(ds.PatientName)
    original = np.asarray(Image.open(source).convert("RGB"))
    assert np.abs(codec.decode(ds)[0].astype(int) - original).mean() > 1.0


@pytest.fixture(autouse=True)
def _reset_pixel_settings() -> object:
    from anonymizer import pixel_stage

    yield
    pixel_stage.configure(pixel_stage.PixelSettings())
