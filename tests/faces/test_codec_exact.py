"""Untouched pixels stay untouched in the file: block-exact JPEG Baseline (only changed MCUs are compressed
again, every other block keeps its DCT coefficients), and lossless inputs leave in a lossless syntax."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import jpeglib
import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEGBaseline8Bit, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from anonymizer import codec
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset, rgb_to_dataset

PATCH = (slice(40, 71), slice(50, 83))  # rows, cols of the "synthetic face"


def _photo(h: int = 128, w: int = 160) -> np.ndarray:
    """Smooth colour gradients plus grain: a JPEG of it has non-trivial coefficients in every block."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 60], -1)
    grain = np.random.default_rng(7).normal(0, 6, (h, w, 3))
    return np.clip(base + grain, 0, 255).astype(np.uint8)


def _reread(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return dcmread(io.BytesIO(buf.getvalue()))


def _dct(data: bytes, tmp: Path) -> jpeglib.DCTJPEG:
    path = tmp / "x.jpg"
    path.write_bytes(data)
    return jpeglib.read_dct(str(path))


def _fragment(ds: Dataset) -> bytes:
    return next(generate_frames(ds.PixelData, number_of_frames=1))


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_jpeg_blocks_outside_changed_mcus_keep_their_coefficients(subsampling: int, tmp_path: Path) -> None:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"  # an APP1 segment that must not travel on
    Image.fromarray(_photo()).save(buf, "JPEG", quality=92, subsampling=subsampling, exif=exif)
    source = buf.getvalue()
    ds = jpeg_to_dataset(source, PhotoContext("P1"))
    frame = codec.decode(ds)[0].copy()
    before = frame.copy()
    frame[PATCH] = 255 - frame[PATCH]
    assert codec.encode(ds, [frame]) is True
    out = _reread(ds)
    assert out.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    data = _fragment(out)
    assert b"Exif" not in data and b"CameraMaker" not in data

    old, new = _dct(source, tmp_path), _dct(data, tmp_path)
    assert np.array_equal(old.qt, new.qt)
    mcu_v, mcu_h = 8 * int(old.samp_factor[:, 0].max()), 8 * int(old.samp_factor[:, 1].max())
    mcu_rows = range(PATCH[0].start // mcu_v, (PATCH[0].stop - 1) // mcu_v + 1)
    mcu_cols = range(PATCH[1].start // mcu_h, (PATCH[1].stop - 1) // mcu_h + 1)
    for name, (v, h) in zip(("Y", "Cb", "Cr"), old.samp_factor, strict=True):
        a, b = getattr(old, name), getattr(new, name)
        same = (a == b).all(axis=(2, 3))
        touched = np.zeros_like(same)
        touched[mcu_rows.start * v : mcu_rows.stop * v, mcu_cols.start * h : mcu_cols.stop * h] = True
        assert same[~touched].all(), name  # every untouched block: bit-identical coefficients
        assert not same[touched].all(), name  # the changed ones were really re-encoded
    decoded = codec.decode(out)[0]
    # pixels one MCU away from the changed ones decode exactly as before (chroma upsampling may blend
    # across the boundary of a touched MCU, so its direct neighbours are not compared)
    far = np.ones(frame.shape[:2], bool)
    far[
        max(0, (mcu_rows.start - 1) * mcu_v) : (mcu_rows.stop + 1) * mcu_v,
        max(0, (mcu_cols.start - 1) * mcu_h) : (mcu_cols.stop + 1) * mcu_h,
    ] = False
    assert np.array_equal(decoded[far], before[far])
    assert np.abs(decoded[PATCH].astype(int) - frame[PATCH]).mean() < 4.0


def test_unchanged_jpeg_frame_keeps_every_coefficient(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "JPEG", quality=90, subsampling=1)
    ds = jpeg_to_dataset(buf.getvalue(), PhotoContext("P1"))
    codec.encode(ds, codec.decode(ds))
    old, new = _dct(buf.getvalue(), tmp_path), _dct(_fragment(_reread(ds)), tmp_path)
    assert all(np.array_equal(getattr(old, c), getattr(new, c)) for c in ("Y", "Cb", "Cr"))


def _lossless_source(syntax: str, tmp_path: Path) -> Dataset:
    ds = rgb_to_dataset(_photo(), PhotoContext("P1"))
    if syntax == JPEGLosslessSV1:  # pydicom has no encoder for it: DCMTK's, as a modality would send it
        if shutil.which("dcmcjpeg") is None:
            pytest.skip("DCMTK dcmcjpeg not installed")
        src, dst = tmp_path / "in.dcm", tmp_path / "out.dcm"
        ds.save_as(src, enforce_file_format=True)
        subprocess.run(["dcmcjpeg", "+e1", str(src), str(dst)], check=True, capture_output=True)
        return dcmread(dst)
    ds.compress(syntax, generate_instance_uid=False)
    return _reread(ds)


@pytest.mark.parametrize(
    ("syntax", "expected"),
    [(RLELossless, RLELossless), (JPEGLSLossless, JPEGLSLossless), (JPEGLosslessSV1, JPEGLSLossless)],
)
def test_lossless_input_leaves_lossless_and_exact(syntax: str, expected: str, tmp_path: Path) -> None:
    ds = _lossless_source(syntax, tmp_path)
    assert ds.file_meta.TransferSyntaxUID == syntax
    frame = codec.decode(ds)[0].copy()
    assert np.array_equal(frame, _photo())
    frame[PATCH] = 255 - frame[PATCH]
    assert codec.encode(ds, [frame]) is False
    out = _reread(ds)
    assert out.file_meta.TransferSyntaxUID == expected
    assert out.get("LossyImageCompression", "00") == "00"
    assert "LossyImageCompressionMethod" not in out
    assert np.array_equal(codec.decode(out)[0], frame)


def test_pixel_stage_output_without_the_old_pixel_data_is_still_block_exact(tmp_path: Path) -> None:
    """The pixel stage writes into a header copy without the source's Pixel Data (never deep-copied), so the
    encoder must take the source's JPEG blocks from the source dataset (else it silently re-encodes all)."""
    from anonymizer import pixel_stage
    from anonymizer.plans import PixelPlan

    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "JPEG", quality=92, subsampling=1)
    source = buf.getvalue()
    ds = jpeg_to_dataset(source, PhotoContext("P1"))
    frame = codec.decode(ds)[0].copy()
    frame[PATCH] = 255 - frame[PATCH]
    out, lossy = pixel_stage._write(ds, [frame], PixelPlan())
    assert lossy is True
    assert _fragment(ds).rstrip(b"\0") == source  # the input keeps its own Pixel Data (even-length pad)
    old, new = _dct(source, tmp_path), _dct(_fragment(_reread(out)), tmp_path)
    same = (old.Y == new.Y).all(axis=(2, 3))
    assert same.mean() > 0.8  # only the blocks under the patch were compressed again
    assert not same.all()


@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("patch", [PATCH, (slice(120, 125), slice(150, 155)), (slice(0, 3), slice(0, 2))])
def test_changed_blocks_equal_the_whole_frame_compressed(
    subsampling: int, patch: tuple[slice, slice], tmp_path: Path
) -> None:
    """Only the box around the changed MCUs is compressed again; its blocks must be exactly those of the
    whole frame compressed with the same tables (a 157 x 125 frame: partial MCUs at the right and bottom)."""
    buf = io.BytesIO()
    Image.fromarray(_photo(125, 157)).save(buf, "JPEG", quality=90, subsampling=subsampling)
    source = buf.getvalue()
    frame = np.asarray(Image.open(io.BytesIO(source)).convert("RGB")).copy()
    frame[patch] = 255 - frame[patch]
    out = codec.block_exact_jpeg(source, frame)
    assert out is not None
    src = _dct(source, tmp_path)
    whole = jpeglib.from_spatial(np.ascontiguousarray(frame))
    whole.samp_factor = src.samp_factor
    whole.write_spatial(str(tmp_path / "whole.jpg"), qt=src.qt, quant_tbl_no=src.quant_tbl_no)
    reference, new = jpeglib.read_dct(str(tmp_path / "whole.jpg")), _dct(out, tmp_path)
    changed = 0
    for name in ("Y", "Cb", "Cr"):
        a, b, r = getattr(src, name), getattr(new, name), getattr(reference, name)
        kept = (a == b).all(axis=(2, 3))
        assert np.array_equal(b[~kept], r[~kept]), name  # every re-encoded block as in the whole frame
        changed += int((~kept).sum())
    assert changed > 0


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_the_decoded_source_given_gives_the_same_file(subsampling: int) -> None:
    """The pixel stage hands the encoder the source as it decoded it (no second decode of a 12 MP photo):
    the file must be byte for byte the one made by decoding the source again, and an MCU changed against
    the given frame must be compressed again."""
    buf = io.BytesIO()
    Image.fromarray(_photo(125, 157)).save(buf, "JPEG", quality=90, subsampling=subsampling)
    source = buf.getvalue()
    ds = jpeg_to_dataset(source, PhotoContext("P1"))
    decoded = codec.decode(ds)[0]
    frame = decoded.copy()
    frame[PATCH] = 255 - frame[PATCH]
    out = codec.block_exact_jpeg(source, frame, decoded)
    assert out is not None and out == codec.block_exact_jpeg(source, frame)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out)))[:30], decoded[:30])
    assert codec.block_exact_jpeg(source, frame, decoded[:-16]) is None  # not this source's decode


def test_the_pixel_stage_passes_its_decode_to_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    from anonymizer import pixel_stage
    from anonymizer.plans import PixelPlan

    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "JPEG", quality=92, subsampling=1)
    ds = jpeg_to_dataset(buf.getvalue(), PhotoContext("P1"))
    decoded = codec.decode(ds)
    seen: list[np.ndarray | None] = []
    real = codec.block_exact_jpeg

    def spy(source: bytes, frame: np.ndarray, before: np.ndarray | None = None) -> bytes | None:
        seen.append(before)
        return real(source, frame, before)

    monkeypatch.setattr(codec, "block_exact_jpeg", spy)
    frame = decoded[0].copy()
    frame[PATCH] = 0
    pixel_stage._write(ds, [frame], PixelPlan(), decoded)
    assert len(seen) == 1 and seen[0] is decoded[0]


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_the_turbo_build_writes_the_same_bytes_as_libjpeg_6b(
    subsampling: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block-exact encoder runs on jpeglib's libjpeg-turbo build for speed; its file must equal the
    default build's byte for byte (coefficients of the changed MCUs, Huffman coding, markers)."""
    buf = io.BytesIO()
    Image.fromarray(_photo(256, 320)).save(buf, "JPEG", quality=95, subsampling=subsampling)
    before = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    frame = before.copy()
    frame[60:190, 70:230] = np.random.default_rng(3).integers(0, 256, (130, 160, 3), dtype=np.uint8)
    assert codec.JPEG_LIB in jpeglib.version.versions()
    fast = codec.block_exact_jpeg(buf.getvalue(), frame, before)
    assert jpeglib.version.get() == "6b"  # the default build is back after the encode
    monkeypatch.setattr(codec, "JPEG_LIB", "6b")
    assert fast is not None and fast == codec.block_exact_jpeg(buf.getvalue(), frame, before)
