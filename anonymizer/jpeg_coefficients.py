"""A JPEG's DCT coefficients read and written with one Huffman pass each (jpeglib's C functions, called
directly).

jpeglib's Python front end decodes a file's entropy-coded data more often than needed: ``read_dct`` first runs
its info reader, which decodes every scan to count them, and ``write_dct`` of a file read that way hands the
source to its writer, which decodes the source's coefficients again only to copy its critical parameters. On a
12 MP photo each of these passes costs 30-45 ms of CPU. Here the header is parsed in Python (the few fields
the block-exact encoder needs), the coefficients are read once into numpy buffers, and they are written
without a source file, after which the JFIF fields that jpeglib's writer copies from a source (version,
density) are set as it would have set them. The file is byte for byte the one ``read_dct`` + ``write_dct``
give (tests/faces/test_jpeg_coefficients.py); any source this module cannot vouch for gets None, and the
caller takes jpeglib's own path.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOF_BASELINE = (0xC0, 0xC1)  # Huffman, sequential (baseline and extended)
SOF_OTHER = frozenset({0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn carry no length
JCS_YCBCR = 3
DEFAULT_JFIF = (1, 1, 0, 1, 1)  # what libjpeg writes without a source: version 1.01, no unit, 1:1
# position in natural (row-major) order of each zigzag-ordered coefficient
ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,
    7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
    39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
])


@dataclass(frozen=True)
class Header:
    """What the block-exact encoder needs from a baseline YCbCr JPEG's markers before its first scan."""

    height: int
    width: int
    factors: tuple[tuple[int, int], ...]  # (v, h) sampling factors per component
    tables: tuple[int, ...]  # quantisation table number per component
    jfif: tuple[int, int, int, int, int] | None  # (major, minor, unit, x density, y density) of the last JFIF
    qt: np.ndarray  # (tables, 8, 8) uint16 quantisation tables 0.. the highest used, natural order

    def blocks(self, component: int) -> tuple[int, int]:
        """(height, width) in 8x8 blocks, as libjpeg sizes a component (jdinput.c)."""
        v, h = self.factors[component]
        vmax = max(f[0] for f in self.factors)
        hmax = max(f[1] for f in self.factors)
        return -(-self.height * v // (8 * vmax)), -(-self.width * h // (8 * hmax))


def segments(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(marker, offset of its 0xFF, body) of each marker segment from SOI up to and including SOS; stops
    early at anything malformed (the caller then sees no SOS)."""
    if data[:2] != b"\xff\xd8":
        return
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        body = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return
        yield marker, pos, body
        if marker == 0xDA:
            return
        pos += 2 + length


def header(data: bytes) -> Header | None:
    """The header of a sequential Huffman JPEG with three components that libjpeg reads as YCbCr; None for
    anything else (progressive, arithmetic, lossless, grey, CMYK, an Adobe marker, RGB component ids,
    a height set by a DNL marker, a truncated or malformed header)."""
    jfif, sof, tables = None, None, {}
    for marker, _, body in segments(data):
        if marker == 0xDA:  # start of scan: the header is complete
            return _finish(sof, jfif, tables)
        if marker in SOF_OTHER or marker == 0xEE:  # not sequential Huffman; or an Adobe (APP14) marker
            return None
        if marker in SOF_BASELINE:
            sof = body
        elif marker == 0xDB and not _quant_tables(body, tables):
            return None
        elif marker == 0xE0 and len(body) >= 14 and body[:5] == b"JFIF\x00":
            jfif = (body[5], body[6], body[7], *struct.unpack(">HH", body[8:12]))
    return None


def _quant_tables(body: bytes, tables: dict[int, np.ndarray]) -> bool:
    """Read a DQT segment's tables into ``tables`` (slot -> (8, 8) uint16, natural order, as libjpeg keeps
    them); False when malformed."""
    pos = 0
    while pos < len(body):
        precision, slot = body[pos] >> 4, body[pos] & 15
        width = 2 if precision else 1
        values = body[pos + 1 : pos + 1 + 64 * width]
        if precision > 1 or slot > 3 or len(values) != 64 * width:
            return False
        zigzag = np.frombuffer(values, ">u2" if width == 2 else np.uint8).astype(np.uint16)
        natural = np.empty(64, np.uint16)
        natural[ZIGZAG] = zigzag
        tables[slot] = natural.reshape(8, 8)
        pos += 1 + 64 * width
    return True


def _finish(
    sof: bytes | None, jfif: tuple[int, ...] | None, quant: dict[int, np.ndarray]
) -> Header | None:
    if sof is None or len(sof) < 6 or sof[0] != 8:
        return None
    height, width, count = struct.unpack(">HHB", sof[1:6])
    if count != 3 or len(sof) < 6 + 3 * count or height == 0 or width == 0:
        return None
    comps = [sof[6 + 3 * i : 9 + 3 * i] for i in range(count)]
    ids = tuple(c[0] for c in comps)
    factors = tuple((c[1] & 15, c[1] >> 4) for c in comps)
    tables = tuple(c[2] for c in comps)
    if ids == (82, 71, 66) or any(not (1 <= v <= 4 and 1 <= h <= 4) for v, h in factors):
        return None  # libjpeg reads R, G, B ids as RGB
    if jfif is not None and jfif[0] != 1:
        return None  # jpeglib's writer copies only a version 1 JFIF's version: not vouched for here
    if max(tables) > 1 or any(t not in quant for t in tables):
        return None  # jpeglib's writer fills table slots beyond libjpeg's two defaults differently
    qt = np.stack([quant.get(t, np.zeros((8, 8), np.uint16)) for t in range(max(tables) + 1)])
    return Header(height, width, factors, tables, jfif, qt)  # type: ignore[arg-type]


def _pointer(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)


def read(path: Path, head: Header) -> tuple[list[np.ndarray], np.ndarray]:
    """(Y, Cb, Cr coefficient planes (rows, cols, 8, 8) int16, quantisation tables (n, 8, 8) uint16) of the
    file at ``path``, whose header is ``head``; one Huffman pass (jpeglib's C reader, current version)."""
    from jpeglib._bind import CJpegLib

    planes = [np.empty((*head.blocks(i), 8, 8), np.int16) for i in range(3)]
    qt = np.zeros((4, 64), np.uint16)
    numbers = np.zeros(4, np.int16)
    status = CJpegLib.get().read_jpeg_dct(
        str(path).encode(), *(_pointer(p) for p in planes), None, _pointer(qt), _pointer(numbers)
    )
    if status == 0:
        raise OSError("reading DCT coefficients failed")
    if tuple(int(n) for n in numbers[:3]) != head.tables:
        raise OSError("quantisation table numbers differ from the header's")
    return planes, qt[: max(head.tables) + 1].reshape(-1, 8, 8)


def write(path: Path, head: Header, planes: list[np.ndarray], qt: np.ndarray) -> bytes:
    """The file jpeglib's ``write_dct`` writes for a DCTJPEG read from a source with ``head`` (no markers
    kept), with one Huffman pass: written without a source, then the JFIF fields patched to the source's."""
    from jpeglib._bind import CJpegLib

    ints = np.ascontiguousarray
    dims = ints([head.height, head.width], np.int32)
    blocks = ints([head.blocks(i) for i in range(3)], np.int32)
    factors = ints(head.factors, np.int32)
    tables = ints([*head.tables, -1], np.int16)
    planes = [ints(p, np.int16) for p in planes]
    qt16 = ints(qt.reshape(-1, 64), np.int16)
    overwrite, values = CJpegLib.flags_to_mask([])
    none = (ctypes.c_int32 * 0)()
    status = CJpegLib.get().write_jpeg_dct(
        None, str(path).encode(), *(_pointer(p) for p in planes), None, _pointer(dims), _pointer(blocks),
        _pointer(factors), JCS_YCBCR, 3, _pointer(qt16), ctypes.c_short(-1), _pointer(tables), 0, none, none,
        (ctypes.c_ubyte * 0)(), overwrite, values,
    )
    if status == 0:
        raise OSError("writing DCT coefficients failed")
    return _with_jfif(path.read_bytes(), head.jfif or DEFAULT_JFIF)


def _with_jfif(data: bytes, jfif: tuple[int, ...]) -> bytes:
    """``data`` with its leading JFIF APP0's version, unit and densities set to ``jfif``."""
    if data[2:4] != b"\xff\xe0" or data[6:11] != b"JFIF\x00":
        raise OSError("written file does not start with a JFIF marker")
    return data[:11] + struct.pack(">BBBHH", *jfif) + data[18:]
