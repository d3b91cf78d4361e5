"""Pixel codec: DICOM pixel data ⇄ RGB frames.

Decodes JPEG Baseline (YBR_FULL_422 / YBR_FULL / RGB), the lossless syntaxes pydicom's handlers read (RLE,
JPEG Lossless, JPEG-LS, JPEG 2000 lossless), uncompressed RGB / YBR_FULL / MONOCHROME, single- or multi-frame,
to (H, W, 3) uint8 RGB frames. Encodes back:
- JPEG Baseline inputs stay JPEG Baseline, block-exact: only the MCUs whose pixels changed are compressed
  again (with the source's quantisation tables and sampling); every other block keeps its DCT coefficients
  bit for bit, so background and the preserved region's inner blocks decode to the very same pixels. APPn
  and COM segments (EXIF, thumbnails) are not carried over. Full re-encoding (Pillow, the plan's quality) is
  the reference path, taken when a source JPEG cannot be read block-wise;
- lossless inputs stay lossless: their own syntax where pydicom has an encoder (RLE, JPEG-LS), else JPEG-LS
  lossless (JPEG Lossless, JPEG 2000 lossless), else RLE; ``LossyImageCompression`` keeps its value;
- other compressed inputs become JPEG Baseline; the Lossy Image Compression attributes are updated;
- uncompressed inputs stay uncompressed (RGB).
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_fragments, generate_frames
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from anonymizer import jpeg_coefficients, jpeg_transform
from anonymizer.jpeg_transform import Patch

log = logging.getLogger(__name__)

JPEG_METHOD = "ISO_10918_1"
# jpeglib's libjpeg-turbo build for the block-exact encoder: the same coefficients and bytes as its default
# (libjpeg 6b; tests/faces/test_codec_exact.py compares with it): 0.26 -> 0.22 s CPU on the 12 MP bench photo.
# jpeglib's version is process-wide: the lock keeps another thread's encode from switching it midway.
JPEG_LIB = "turbo210"
_jpeglib_lock = threading.Lock()
LOSSLESS_INPUTS = frozenset(
    {RLELossless, JPEGLSLossless, JPEGLossless, JPEGLosslessSV1, JPEG2000Lossless, HTJ2KLossless}
)
LOSSLESS_OUTPUTS = (JPEGLSLossless, RLELossless)  # in order of preference when the input's own has no encoder
_PIL_SUBSAMPLING = {(1, 1): 0, (2, 1): 1, (2, 2): 2}  # (h, v) luma sampling → Pillow subsampling code


class CodecError(ValueError):
    """Pixel data that cannot be decoded or encoded (the stage quarantines it)."""


@dataclass(frozen=True)
class PixelFormat:
    """What the encoder needs to know about the source."""

    compressed: bool
    monochrome: bool
    subsampling: int  # Pillow code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
    syntax: str = ""  # the source's transfer syntax UID


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
    return PixelFormat(bool(ts.is_compressed), mono, subsampling, str(ts))


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
            fast = _decode_turbo(data, ds.Rows, ds.Columns)
            if fast is not None:
                frames.append(fast)
                continue
            with Image.open(io.BytesIO(data)) as im:
                if im.mode != "RGB" or im.size != (ds.Columns, ds.Rows):
                    return None
                frames.append(np.asarray(im))
        return frames
    except Exception:
        return None


def _decode_turbo(data: bytes, rows: int, columns: int) -> np.ndarray | None:
    """One frame decoded by TurboJPEG straight into a read-only array: Pillow's pixels (the same libjpeg-turbo
    decoder and settings; tests/faces/test_jpeg_coefficients.py) without its chunked copy, ~3x faster on
    12 MP. None unless the frame is a sequential YCbCr JPEG of the dataset's size (Pillow decodes the
    rest)."""
    head = jpeg_coefficients.header(data)
    if head is None or (head.height, head.width) != (rows, columns):
        return None
    frame = jpeg_transform.decode_rgb(data, rows, columns)
    if frame is not None:
        frame.flags.writeable = False  # as Pillow's: the source, which the block-exact encoder compares with
    return frame


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


def _set_image_attributes(ds: Dataset, frames: Sequence[np.ndarray], fmt: PixelFormat) -> None:
    h, w = frames[0].shape[:2]
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel = 1 if fmt.monochrome else 3
    if not fmt.monochrome:
        ds.PlanarConfiguration = 0
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    if number_of_frames(ds) > 1 or len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PhotometricInterpretation = "MONOCHROME2" if fmt.monochrome else "RGB"


def lossless_syntax(source: str) -> UID | None:
    """The lossless transfer syntax an output of a lossless ``source`` is written in; None if not lossless."""
    if source not in LOSSLESS_INPUTS:
        return None
    from pydicom.pixels import get_encoder

    for uid in (UID(source), *LOSSLESS_OUTPUTS):
        try:
            if get_encoder(uid).is_available:
                return uid
        except NotImplementedError:
            continue
    raise CodecError("no-lossless-encoder")


def _encode_lossless(ds: Dataset, frames: Sequence[np.ndarray], syntax: UID) -> None:
    from pydicom.pixels import get_encoder

    encoder = get_encoder(syntax)
    options = {
        "rows": ds.Rows,
        "columns": ds.Columns,
        "samples_per_pixel": ds.SamplesPerPixel,
        "bits_allocated": 8,
        "bits_stored": 8,
        "pixel_representation": 0,
        "photometric_interpretation": ds.PhotometricInterpretation,
        "planar_configuration": 0,
        "number_of_frames": 1,
    }
    blobs = [encoder.encode(np.ascontiguousarray(f, np.uint8), **options) for f in frames]
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate(blobs)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True


def _frame_bytes(ds: Dataset) -> list[bytes]:
    return list(generate_frames(ds.PixelData, number_of_frames=number_of_frames(ds)))


def _mcu_mask(before: np.ndarray, after: np.ndarray, mcu: tuple[int, int]) -> np.ndarray:
    """(MCU rows, MCU cols) bool: the MCUs holding at least one pixel that differs between the two (H, W, C)
    uint8 frames. Maxima of the absolute difference over contiguous rows, then columns (several times faster
    than a boolean any() over the channel axis on 12 MP)."""
    import cv2  # here, not at import: `rules explain` without --pixels loads no OpenCV

    mh, mw = mcu
    h, w, c = before.shape
    if _words_fit(before, after, mcu):
        return _mcu_mask_words(before, after, mcu)
    diff = cv2.absdiff(before, after).reshape(h, w * c)
    padded = np.zeros((-(-h // mh) * mh, -(-w // mw) * mw * c), np.uint8)
    padded[:h, : w * c] = diff
    rows = padded.reshape(padded.shape[0] // mh, mh, padded.shape[1]).max(axis=1)
    return rows.reshape(rows.shape[0], padded.shape[1] // (mw * c), mw * c).max(axis=2) > 0


def _words_fit(before: np.ndarray, after: np.ndarray, mcu: tuple[int, int]) -> bool:
    """Whole MCUs, each MCU row of a row a whole number of 8-byte words, both frames contiguous."""
    mh, mw = mcu
    h, w, c = before.shape
    contiguous = before.flags.c_contiguous and after.flags.c_contiguous and after.shape == before.shape
    return contiguous and h % mh == 0 and w % mw == 0 and (mw * c) % 8 == 0


def _mcu_mask_words(before: np.ndarray, after: np.ndarray, mcu: tuple[int, int]) -> np.ndarray:
    """:func:`_mcu_mask` comparing 8-byte words, a row of an MCU being a whole number of them: the same
    mask, ~5x faster on 12 MP (~4 ms CPU instead of ~19)."""
    mh, mw = mcu
    h, w, c = before.shape
    words = mw * c // 8
    differ = before.reshape(h, w * c).view(np.uint64) != after.reshape(h, w * c).view(np.uint64)
    rows = differ.reshape(h // mh, mh, (w // mw) * words).any(axis=1)
    return rows.reshape(h // mh, w // mw, words).any(axis=2)


def block_exact_jpeg(source: bytes, frame: np.ndarray, before: np.ndarray | None = None) -> bytes | None:
    """``frame`` as a JPEG that shares every unchanged MCU's DCT coefficients with ``source``.

    ``before`` is ``source`` already decoded (``decode``'s frame, of which ``frame`` is an edited copy):
    given, the source is not decoded again (~0.08 s CPU on 12 MP). An MCU counts as changed when one of its
    pixels differs from ``before``. Changed MCUs are compressed with the source's quantisation tables and
    sampling factors; APPn/COM segments are dropped. None when the source cannot be handled block-wise
    (progressive, not YCbCr, or its decoded pixels differ in size from ``frame``)."""
    import jpeglib

    with _jpeglib_lock, jpeglib.version(JPEG_LIB if JPEG_LIB in jpeglib.version.versions() else "6b"):
        return _block_exact(source, frame, before)


def _block_exact(source: bytes, frame: np.ndarray, before: np.ndarray | None) -> bytes | None:
    if before is None:
        with Image.open(io.BytesIO(source)) as im:
            before = np.asarray(im) if im.mode == "RGB" else None
    if before is None or before.shape != frame.shape:
        return None
    with tempfile.TemporaryDirectory(prefix="vera-jpeg-") as tmp:
        src = Path(tmp, "source.jpg")
        src.write_bytes(source)
        head = jpeg_coefficients.header(source)
        if head is not None and (head.height, head.width) == frame.shape[:2]:
            return _block_exact_direct(source, src, head, frame, before)
        return _block_exact_jpeglib(src, frame, before)


def _block_exact_direct(
    source: bytes, src: Path, head: jpeg_coefficients.Header, frame: np.ndarray, before: np.ndarray
) -> bytes | None:
    """The bytes of :func:`_block_exact_jpeglib` with less work: the touched blocks replaced in one
    TurboJPEG transform (anonymizer/jpeg_transform.py), or, without libturbojpeg, with one Huffman pass over
    the source and one over the output (anonymizer/jpeg_coefficients.py)."""
    tables = np.asarray(head.tables)

    def fresh(box: np.ndarray, path: Path) -> list[np.ndarray]:
        if not _compress_box_pillow(box, path, head.factors, head.tables, head.qt):
            _compress_box(box, path, head.factors, head.qt, tables)
        box_head = jpeg_coefficients.header(path.read_bytes())
        if box_head is None:
            raise CodecError("fresh-box-unreadable")
        return jpeg_coefficients.read(path, box_head)[0]

    factors, dims = np.asarray(head.factors, int), [head.blocks(i) for i in range(3)]
    patches = _touched_patches(factors, dims, before, frame, fresh, src.with_name("fresh.jpg"))
    if patches is None:
        return None
    out = jpeg_transform.replace_blocks(source, patches)
    if out is not None:
        return out
    planes, qt = jpeg_coefficients.read(src, head)
    _apply_patches(planes, patches)
    return jpeg_coefficients.write(src.with_name("out.jpg"), head, planes, qt)


def _block_exact_jpeglib(src: Path, frame: np.ndarray, before: np.ndarray) -> bytes | None:
    """The reference path: jpeglib's own read_dct / write_dct."""
    import jpeglib

    out = src.with_name("out.jpg")
    jpeg = jpeglib.read_dct(str(src))
    if jpeg.progressive_mode or jpeg.num_components != 3 or jpeg.jpeg_color_space != jpeglib.JCS_YCbCr:
        return None
    if (jpeg.height, jpeg.width) != frame.shape[:2]:
        return None
    factors = np.asarray(jpeg.samp_factor, int)  # (components, 2): (v, h) per component

    def fresh(box: np.ndarray, path: Path) -> list[np.ndarray]:
        _compress_box(box, path, jpeg.samp_factor, jpeg.qt, jpeg.quant_tbl_no)
        new = jpeglib.read_dct(str(path))
        return [new.Y, new.Cb, new.Cr]

    planes = [jpeg.Y, jpeg.Cb, jpeg.Cr]
    dims = [p.shape[:2] for p in planes]
    patches = _touched_patches(factors, dims, before, frame, fresh, src.with_name("fresh.jpg"))
    if patches is None:
        return None
    _apply_patches(planes, patches)
    jpeg.markers = []
    jpeg.write_dct(str(out))
    return out.read_bytes()


def _compress_box(box: np.ndarray, path: Path, factors: object, qt: np.ndarray, tables: np.ndarray) -> None:
    """``box`` compressed by libjpeg with the source's sampling factors and quantisation tables."""
    import jpeglib

    fresh = jpeglib.from_spatial(box)
    fresh.samp_factor = factors
    fresh.write_spatial(str(path), qt=qt, quant_tbl_no=tables)


PILLOW_FACTORS = {((1, 1), (1, 1), (1, 1)): 0, ((1, 2), (1, 1), (1, 1)): 1, ((2, 2), (1, 1), (1, 1)): 2}


def _compress_box_pillow(
    box: np.ndarray, path: Path, factors: tuple[tuple[int, int], ...], tables: tuple[int, ...], qt: np.ndarray
) -> bool:
    """:func:`_compress_box` by Pillow's libjpeg-turbo (~7 ms CPU instead of ~22 for a 1.3 MP face box): the
    same colour conversion, chroma averaging, integer DCT and quantisation, so the same coefficients
    (tests/faces/test_jpeg_coefficients.py compares whole files with jpeglib's path). False where Pillow
    cannot say it: sampling other than 4:4:4 / 4:2:2 / 4:2:0, tables other than one for luma and one for
    both chroma components, or 16-bit tables (it clamps them to 255)."""
    subsampling = PILLOW_FACTORS.get(tuple(factors))
    if subsampling is None or tuple(tables) != (0, 1, 1) or len(qt) != 2 or int(qt.max()) > 255:
        return False
    tables = [[int(v) for v in table.reshape(64)] for table in qt]  # natural order, as Pillow takes them
    Image.fromarray(box).save(str(path), "JPEG", qtables=tables, subsampling=subsampling, optimize=False)
    return True


def _touched_patches(
    factors: np.ndarray,
    dims: Sequence[tuple[int, int]],
    before: np.ndarray,
    frame: np.ndarray,
    fresh: Callable[[np.ndarray, Path], list[np.ndarray]],
    fresh_path: Path,
) -> list[Patch | None] | None:
    """Per component (``dims``: its size in blocks), the coefficients of ``frame``'s touched MCUs; ``fresh``
    compresses a box of pixels and returns its planes. None when the box's planes came out too small."""
    vmax, hmax = factors[:, 0].max(), factors[:, 1].max()
    touched = _mcu_mask(before, frame, (8 * vmax, 8 * hmax))
    if not touched.any():
        return [None] * len(dims)
    # Only the MCU-aligned box around the touched MCUs is compressed: a block's coefficients depend on
    # its own MCU's pixels alone (plain 2:1 chroma averaging, edge padding only at the photo's edge),
    # so they equal those of the whole photo compressed, at a fraction of the cost.
    rows, cols = np.flatnonzero(touched.any(1)), np.flatnonzero(touched.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    mh, mw = 8 * vmax, 8 * hmax
    box = np.ascontiguousarray(frame[r0 * mh : r1 * mh, c0 * mw : c1 * mw])
    patches: list[Patch | None] = []
    for (height, width), replacement, (v, h) in zip(dims, fresh(box, fresh_path), factors, strict=True):
        blocks = np.kron(touched[r0:r1, c0:c1], np.ones((v, h), bool))
        blocks = blocks[: max(0, min(height, r1 * v) - r0 * v), : max(0, min(width, c1 * h) - c0 * h)]
        if replacement.shape[0] < blocks.shape[0] or replacement.shape[1] < blocks.shape[1]:
            return None
        values = replacement[: blocks.shape[0], : blocks.shape[1]]
        patches.append(Patch(int(r0 * v), int(c0 * h), blocks, values))
    return patches


def _apply_patches(planes: Sequence[np.ndarray], patches: Sequence[Patch | None]) -> None:
    """Each patch's blocks written into its coefficient plane (in place)."""
    for plane, patch in zip(planes, patches, strict=True):
        if patch is not None:
            rows, cols = patch.mask.shape
            region = plane[patch.row : patch.row + rows, patch.col : patch.col + cols]
            region[patch.mask] = patch.values[patch.mask]


def _encode_jpeg_frames(
    source: Dataset,
    frames: Sequence[np.ndarray],
    quality: int,
    fmt: PixelFormat,
    decoded: Sequence[np.ndarray] = (),
) -> list[bytes]:
    """Block-exact against the source's frames where it was JPEG Baseline in colour; Pillow otherwise.
    ``decoded``: the source's frames as ``decode`` returned them (saves decoding them again)."""
    sources: list[bytes] = []
    if fmt.syntax == JPEGBaseline8Bit and not fmt.monochrome:
        try:
            sources = _frame_bytes(source)
        except Exception:
            sources = []
    blobs = []
    for i, frame in enumerate(frames):
        blob = None
        if i < len(sources):
            try:
                blob = block_exact_jpeg(sources[i], frame, decoded[i] if i < len(decoded) else None)
            except Exception as exc:  # the reference path below is always correct, only less exact
                log.warning("block-exact JPEG failed", extra={"error": type(exc).__name__})
        if blob is None:
            if sources:
                log.info("JPEG frame fully re-encoded")
            blob = encode_jpeg(frame, quality, fmt.subsampling)
        blobs.append(blob)
    return blobs


def encode(
    ds: Dataset,
    frames: Sequence[np.ndarray],
    quality: int = 95,
    fmt: PixelFormat | None = None,
    source: Dataset | None = None,
    decoded: Sequence[np.ndarray] = (),
) -> bool:
    """Write ``frames`` into ``ds`` (in place). ``source`` holds the source's Pixel Data for block-exact JPEG
    (default: ``ds`` itself, whose PixelData must then still be the source's); ``decoded`` are its frames as
    ``decode(source)`` returned them, of which ``frames`` are edited copies (optional: saves a decode).
    Returns True when the pixels were lossy (re)compressed."""
    source = ds if source is None else source
    fmt = fmt or source_format(source)
    frames = [f[..., 0] if fmt.monochrome else f for f in frames]
    lossless = lossless_syntax(fmt.syntax) if fmt.compressed else None
    jpeg = fmt.compressed and lossless is None
    blobs = _encode_jpeg_frames(source, frames, quality, fmt, decoded) if jpeg else []
    _set_image_attributes(ds, frames, fmt)
    if not fmt.compressed:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = b"".join(np.ascontiguousarray(f, np.uint8).tobytes() for f in frames)
        ds["PixelData"].VR = "OB"
        return False
    if lossless is not None:
        _encode_lossless(ds, frames, lossless)
        return False
    if not fmt.monochrome:
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
