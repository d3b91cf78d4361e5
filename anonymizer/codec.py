"""Pixel codec: DICOM pixel data ⇄ RGB frames.

Decodes JPEG Baseline (YBR_FULL_422 / YBR_FULL / RGB), uncompressed RGB / YBR_FULL / MONOCHROME, single- or
multi-frame, to (H, W, 3) uint8 RGB frames. Encodes back: compressed inputs become JPEG Baseline (Pillow, the
plan's quality, the source's chroma subsampling), encapsulated, with PhotometricInterpretation and the
Lossy Image Compression attributes updated; uncompressed inputs stay uncompressed (RGB).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_fragments, generate_frames
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

JPEG_METHOD = "ISO_10918_1"
_PIL_SUBSAMPLING = {(1, 1): 0, (2, 1): 1, (2, 2): 2}  # (h, v) luma sampling → Pillow subsampling code


class CodecError(ValueError):
    """Pixel data that cannot be decoded or encoded (the stage quarantines it)."""


@dataclass(frozen=True)
class PixelFormat:
    """What the encoder needs to know about the source."""

    compressed: bool
    monochrome: bool
    subsampling: int  # Pillow code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0


def number_of_frames(ds: Dataset) -> int:
    return int(getattr(ds, "NumberOfFrames", 1) or 1)


def _first_fragment(ds: Dataset) -> bytes | None:
    try:
        return next(generate_fragments(ds.PixelData))
    except Exception:
        return None


def source_format(ds: Dataset) -> PixelFormat:
    ts = ds.file_meta.TransferSyntaxUID
    pi = str(getattr(ds, "PhotometricInterpretation", ""))
    mono = pi.startswith("MONOCHROME")
    subsampling = 1 if pi == "YBR_FULL_422" else 0
    if ts.is_compressed:
        fragment = _first_fragment(ds)
        if fragment and fragment[:2] == b"\xff\xd8":
            subsampling = _jpeg_subsampling(fragment, subsampling)
    return PixelFormat(bool(ts.is_compressed), mono, subsampling)


def _jpeg_subsampling(data: bytes, default: int) -> int:
    try:
        from PIL import JpegImagePlugin

        with Image.open(io.BytesIO(data)) as im:
            code = JpegImagePlugin.get_sampling(im)
        return default if code < 0 else int(code)
    except Exception:
        return default


def _decode_jpeg_baseline(ds: Dataset) -> list[np.ndarray] | None:
    """Fast path: JPEG Baseline YBR frames decoded by Pillow (libjpeg's own colour conversion, in C).
    None when the dataset is anything else; pydicom's handlers are the reference path."""
    pi = str(getattr(ds, "PhotometricInterpretation", ""))
    if ds.file_meta.get("TransferSyntaxUID") != JPEGBaseline8Bit or pi not in ("YBR_FULL_422", "YBR_FULL"):
        return None
    try:
        frames = []
        for data in generate_frames(ds.PixelData, number_of_frames=number_of_frames(ds)):
            with Image.open(io.BytesIO(data)) as im:
                if im.mode != "RGB" or im.size != (ds.Columns, ds.Rows):
                    return None
                frames.append(np.asarray(im))
        return frames
    except Exception:
        return None


def decode(ds: Dataset) -> list[np.ndarray]:
    """All frames as (H, W, 3) uint8 RGB. Raises CodecError for anything else."""
    if "PixelData" not in ds:
        raise CodecError("no-pixel-data")
    if int(getattr(ds, "BitsAllocated", 8)) != 8:
        raise CodecError("unsupported-bit-depth")
    fast = _decode_jpeg_baseline(ds)
    if fast is not None:
        return fast
    try:
        arr = ds.pixel_array  # pydicom 3 converts YBR_* to RGB (as_rgb=True)
    except Exception as exc:
        raise CodecError(f"undecodable-pixel-data:{type(exc).__name__}") from None
    arr = np.asarray(arr)
    if number_of_frames(ds) == 1:
        arr = arr[None]
    if arr.ndim == 3:  # monochrome frames
        if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
            arr = 255 - arr
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise CodecError("unsupported-pixel-layout")
    return [np.ascontiguousarray(f, dtype=np.uint8) for f in arr]


def encode_jpeg(frame: np.ndarray, quality: int, subsampling: int) -> bytes:
    buf = io.BytesIO()
    mode = "L" if frame.ndim == 2 else "RGB"
    Image.fromarray(frame, mode=mode).save(
        buf, format="JPEG", quality=int(quality), subsampling=subsampling, optimize=False
    )
    return buf.getvalue()


def _append(ds: Dataset, keyword: str, value: str) -> None:
    old = getattr(ds, keyword, None)
    values = [] if old in (None, "") else [str(v) for v in (old if isinstance(old, MultiValue) else [old])]
    setattr(ds, keyword, [*values, value] if values else value)


def encode(
    ds: Dataset, frames: Sequence[np.ndarray], quality: int = 95, fmt: PixelFormat | None = None
) -> bool:
    """Write ``frames`` into ``ds`` (in place). Returns True when the pixels were lossy (re)compressed."""
    fmt = fmt or source_format(ds)
    h, w = frames[0].shape[:2]
    frames = [f[..., 0] if fmt.monochrome else f for f in frames]
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel = 1 if fmt.monochrome else 3
    if not fmt.monochrome:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if number_of_frames(ds) > 1 or len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    if not fmt.compressed:
        ds.PhotometricInterpretation = "MONOCHROME2" if fmt.monochrome else "RGB"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = b"".join(np.ascontiguousarray(f, np.uint8).tobytes() for f in frames)
        ds["PixelData"].VR = "OB"
        return False
    blobs = [encode_jpeg(f, quality, fmt.subsampling) for f in frames]
    if fmt.monochrome:
        ds.PhotometricInterpretation = "MONOCHROME2"
    else:
        ds.PhotometricInterpretation = "YBR_FULL" if fmt.subsampling == 0 else "YBR_FULL_422"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate(blobs)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    raw = sum(f.size for f in frames)
    ds.LossyImageCompression = "01"
    _append(ds, "LossyImageCompressionRatio", f"{raw / max(1, sum(len(b) for b in blobs)):.2f}"[:16])
    _append(ds, "LossyImageCompressionMethod", JPEG_METHOD)
    return True
