"""Codec round trips: JPEG Baseline (YBR_FULL_422) and uncompressed RGB, single- and multi-frame."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from anonymizer import codec
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset, rgb_to_dataset


def _gradient(h: int = 96, w: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 2 % 256, y * 2 % 256, (x + y) % 256], -1).astype(np.uint8)


def _jpeg(image: np.ndarray, subsampling: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95, subsampling=subsampling)
    return buf.getvalue()


def _reread(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return dcmread(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize(("subsampling", "photometric"), [(1, "YBR_FULL_422"), (0, "YBR_FULL")])
def test_jpeg_round_trip_keeps_subsampling_and_marks_lossy(subsampling: int, photometric: str) -> None:
    image = _gradient()
    data = _jpeg(image, subsampling)
    ds = _reread(jpeg_to_dataset(data, PhotoContext("P1")))
    assert ds.PhotometricInterpretation == photometric
    frames = codec.decode(ds)
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.abs(frames[0].astype(int) - reference).mean() < 1.0
    assert codec.encode(ds, frames, quality=90) is True
    out = _reread(ds)
    assert out.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert out.PhotometricInterpretation == photometric
    assert codec.source_format(out).subsampling == subsampling
    assert out.LossyImageCompression == "01"
    assert list(out.LossyImageCompressionMethod) == ["ISO_10918_1", "ISO_10918_1"]
    assert float(out.LossyImageCompressionRatio) > 1.0
    assert np.abs(codec.decode(out)[0].astype(int) - image).mean() < 4.0


def test_uncompressed_rgb_stays_uncompressed_and_exact() -> None:
    image = _gradient()
    ds = _reread(rgb_to_dataset(image, PhotoContext("P1")))
    frames = codec.decode(ds)
    assert np.array_equal(frames[0], image)
    frames[0][10:20, 10:20] = 7
    assert codec.encode(ds, frames) is False
    out = _reread(ds)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert "LossyImageCompression" not in out
    assert np.array_equal(codec.decode(out)[0], frames[0])


def test_multiframe_uncompressed_round_trip() -> None:
    frames = [_gradient(), 255 - _gradient()]
    ds = rgb_to_dataset(np.concatenate(frames, axis=0), PhotoContext("P1"))
    ds.Rows, ds.NumberOfFrames = frames[0].shape[0], 2
    decoded = codec.decode(_reread(ds))
    assert len(decoded) == 2 and all(np.array_equal(a, b) for a, b in zip(decoded, frames, strict=True))
    codec.encode(ds, [f[::-1] for f in decoded])
    again = codec.decode(_reread(ds))
    assert np.array_equal(again[1], frames[1][::-1])


def test_undecodable_pixel_data_raises_codec_error() -> None:
    ds = rgb_to_dataset(_gradient(), PhotoContext("P1"))
    ds.PixelData = b"\x00" * 10
    with pytest.raises(codec.CodecError):
        codec.decode(ds)


def test_region_mask_for_a_roi_is_the_window_of_the_full_mask() -> None:
    """The pipeline masks ROIs, the evaluation masks whole photos: they must agree pixel for pixel."""
    from anonymizer.faces.regions import region_mask
    from anonymizer.plans import Region

    rng = np.random.default_rng(3)
    base = np.stack([np.linspace(300, 700, 68), np.linspace(300, 800, 68)], axis=1)
    regions = [Region.NOSE, Region.MOUTH, Region.EYES]
    for _ in range(20):
        lm = base + rng.normal(0, 40, (68, 2)) + rng.random() * 3
        full = region_mask(lm, regions, (1200, 1200))
        x0, y0 = (int(v) for v in rng.integers(0, 200, 2))
        window = region_mask(lm, regions, (1000, 1000), (x0, y0))
        assert np.array_equal(full[y0 : y0 + 1000, x0 : x0 + 1000], window)
