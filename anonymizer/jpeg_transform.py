"""libjpeg-turbo's TurboJPEG API for the codec: blocks of a JPEG replaced in one lossless pass (its transform
with a coefficient filter), and frames decoded straight into numpy.

``tjTransform`` (no rotation, no markers copied) reads the source's DCT coefficients and writes them again in
libjpeg-turbo's own optimised code; its custom filter hands us each row of blocks of each component on the
way, and the touched blocks are overwritten there. This is the work of jpeglib's read_dct + write_dct (which
copy every coefficient through Python-visible buffers, ~0.13 s CPU on a 12 MP photo) at about half the cost.
The file is byte for byte the block-exact encoder's (tests/faces/test_jpeg_coefficients.py): jpeglib's writer
numbers the components 0, 1, 2 where the transform keeps the source's numbers, so those bytes are set after.
Decoding: ``tjDecompress2`` with libjpeg's default settings gives Pillow's pixels (the same decoder) without
Pillow's chunked copy into a bytes object (12 MP: ~20 ms CPU instead of ~50-80).
``libturbojpeg.so.0`` (Debian ``libturbojpeg0``) is loaded at first use; without it :func:`available` is
False and the caller takes another path.
"""

from __future__ import annotations

import ctypes
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from anonymizer.jpeg_coefficients import segments

LIBRARY = "libturbojpeg.so.0"
TJXOPT_COPYNONE = 64  # no APPn / COM markers in the output (the block-exact encoder drops them)
TJPF_RGB = 0  # decoded pixel format: R, G, B bytes


@dataclass(frozen=True)
class Patch:
    """Blocks of one component to replace: ``mask`` (rows, cols) of blocks from block (row, col) on, and
    their new coefficients ``values`` (rows, cols, 8, 8) int16, natural order."""

    row: int
    col: int
    mask: np.ndarray
    values: np.ndarray


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


_FILTER = ctypes.CFUNCTYPE(  # coefficients, array region, plane region, component, transform, transform*
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), _Region, _Region, ctypes.c_int, ctypes.c_int,
    ctypes.c_void_p,
)


class _Transform(ctypes.Structure):
    _fields_ = [("r", _Region), ("op", ctypes.c_int), ("options", ctypes.c_int), ("data", ctypes.c_void_p),
                ("customFilter", _FILTER)]


_lock = threading.Lock()
_loaded: list[ctypes.CDLL | None] = []


def _library() -> ctypes.CDLL | None:
    with _lock:
        if not _loaded:
            try:
                lib = ctypes.CDLL(LIBRARY)
                lib.tjInitTransform.restype = ctypes.c_void_p
                lib.tjTransform.argtypes = [
                    ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_int,
                    ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte)), ctypes.POINTER(ctypes.c_ulong),
                    ctypes.POINTER(_Transform), ctypes.c_int,
                ]
                lib.tjDestroy.argtypes = [ctypes.c_void_p]
                lib.tjInitDecompress.restype = ctypes.c_void_p
                lib.tjDecompress2.argtypes = [
                    ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_int,
                    ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                ]
                lib.tjFree.argtypes = [ctypes.POINTER(ctypes.c_ubyte)]
                _loaded.append(lib if _patches_show(lib) else None)
            except (OSError, AttributeError):
                _loaded.append(None)
        return _loaded[0]


def _patches_show(lib: ctypes.CDLL) -> bool:
    """Once per process, before first use: a patch of each component's first block shows in the decoded
    pixels (that luma block brighter than the rest, both chroma planes moved). The encoder trusts the
    transform to carry the synthetic face into the file (verification looks at the pixels before encoding),
    so a libjpeg-turbo whose filter hook behaves otherwise must not be used: the caller then takes the
    coefficient path, which writes the same bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buffer, "JPEG", quality=90, subsampling=2)
    dc = np.zeros((1, 1, 8, 8), np.int16)
    dc[..., 0, 0] = 40  # raises the first luma block (8x8 pixels) and, 4:2:0, both chroma planes (16x16)
    first = Patch(0, 0, np.ones((1, 1), bool), dc)
    patched = _replace(lib, buffer.getvalue(), [first, first, first])
    rgb = _decode(lib, patched, 16, 16) if patched is not None else None
    if rgb is None:
        return False
    r, g, b = np.moveaxis(rgb.astype(np.float32), 2, 0)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    cb, cr = 0.564 * (b - luma), 0.713 * (r - luma)  # zero on the flat grey source
    rest = np.ones((16, 16), bool)
    rest[:8, :8] = False
    return bool(luma[:8, :8].mean() - luma[rest].mean() > 5 and cb.mean() > 5 and cr.mean() > 5)


def decode_rgb(data: bytes, height: int, width: int) -> np.ndarray | None:
    """(height, width, 3) uint8 RGB pixels of a JPEG by ``tjDecompress2`` (accurate integer IDCT, smooth
    chroma upsampling: libjpeg's defaults, as Pillow decodes); None when TurboJPEG is missing or refuses
    the file."""
    lib = _library()
    return None if lib is None else _decode(lib, data, height, width)


def _decode(lib: ctypes.CDLL, data: bytes, height: int, width: int) -> np.ndarray | None:
    out = np.empty((height, width, 3), np.uint8)
    handle = lib.tjInitDecompress()
    if not handle:
        return None
    try:
        status = lib.tjDecompress2(handle, data, len(data), out.ctypes.data, width, 0, height, TJPF_RGB, 0)
    finally:
        lib.tjDestroy(handle)
    return out if status == 0 else None


def available() -> bool:
    return _library() is not None


def replace_blocks(source: bytes, patches: Sequence[Patch | None]) -> bytes | None:
    """``source`` with each component's patch applied (None: that component unchanged), written as jpeglib's
    writer writes it (components numbered 0, 1, 2); None when TurboJPEG is missing or refuses the file."""
    lib = _library()
    data = None if lib is None else _replace(lib, source, patches)
    return None if data is None else _number_components(data)


def _replace(lib: ctypes.CDLL, source: bytes, patches: Sequence[Patch | None]) -> bytes | None:
    """``source`` with the patches applied, its component ids as they were; None when TurboJPEG refuses."""
    failed: list[BaseException] = []

    def apply(coeffs: object, array: _Region, _plane: _Region, component: int, _i: int, _t: object) -> int:
        try:
            patch = patches[component] if component < len(patches) else None
            y = array.y // 8
            if patch is not None and patch.row <= y < patch.row + patch.mask.shape[0]:
                row = np.ctypeslib.as_array(coeffs, shape=(array.w // 8, 8, 8))
                mask = patch.mask[y - patch.row]
                place = row[patch.col : patch.col + mask.shape[0]]
                place[mask] = patch.values[y - patch.row][mask]
            return 0
        except BaseException as exc:  # raised inside a C callback it would be lost: recorded, the call fails
            failed.append(exc)
            return -1

    callback = _FILTER(apply)
    transform = _Transform(_Region(0, 0, 0, 0), 0, TJXOPT_COPYNONE, None, callback)
    out, size = ctypes.POINTER(ctypes.c_ubyte)(), ctypes.c_ulong(0)
    handle = lib.tjInitTransform()
    if not handle:
        return None
    try:
        status = lib.tjTransform(handle, source, len(source), 1, ctypes.byref(out), ctypes.byref(size),
                                 ctypes.byref(transform), 0)
        data = ctypes.string_at(out, size.value) if status == 0 and out else None
    finally:
        if out:
            lib.tjFree(out)
        lib.tjDestroy(handle)
    return None if failed else data


def _number_components(data: bytes) -> bytes | None:
    """The frame's and the scan's component ids set to 0, 1, 2 (what jpeglib's writer writes); None when the
    file is not laid out as one baseline frame and one three-component scan before its data."""
    out = bytearray(data)
    found = {marker: (pos, body) for marker, pos, body in segments(data) if marker in (0xC0, 0xDA)}
    if set(found) != {0xC0, 0xDA}:
        return None
    (sof, frame), (sos, scan) = found[0xC0], found[0xDA]
    if len(frame) < 15 or frame[5] != 3 or len(scan) < 7 or scan[0] != 3:
        return None
    ids = {frame[6 + 3 * i]: i for i in range(3)}
    if len(ids) != 3 or any(scan[1 + 2 * i] not in ids for i in range(3)):
        return None
    for i in range(3):
        out[sof + 4 + 6 + 3 * i] = i
        out[sos + 4 + 1 + 2 * i] = ids[scan[1 + 2 * i]]
    return bytes(out)
