"""Encapsulated Pixel Data: split into frames, strip JPEG APPn/COM (JPEG 2000: COM) per frame, and
re-encapsulate only on change.

The Pixel Data bytes are read in place (no decode, no copy); a new value is built, in one copy, only when a
frame actually lost a segment.
"""

from __future__ import annotations

import struct

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from anonymizer.metadata.errors import UnsupportedPixelEncodingError
from anonymizer.metadata.j2k_markers import strip_j2k_parts
from anonymizer.metadata.jpeg_markers import strip_frame_parts

PIXEL_DATA = 0x7FE00010
EXTENDED_OFFSET_TABLE = 0x7FE00001
EXTENDED_OFFSET_TABLE_LENGTHS = 0x7FE00002
ITEM = b"\xfe\xff\x00\xe0"
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0"
# Transfer syntaxes whose frames are JPEG marker streams (baseline, extended, progressive, lossless, LS).
JPEG_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.55", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
})
# JPEG 2000 and High-Throughput JPEG 2000 codestreams.
J2K_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
})
SOI, SOC = b"\xff\xd8", b"\xff\x4f"


def fragments(value: bytes) -> tuple[bool, list[tuple[int, int]]]:
    """(has a non-empty basic offset table, [(start, stop)] of every fragment after it) — offsets in value."""
    spans: list[tuple[int, int]] = []
    pos, size = 0, len(value)
    while pos + 8 <= size:
        tag = value[pos:pos + 4]
        length = struct.unpack_from("<I", value, pos + 4)[0]
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM or pos + 8 + length > size:
            raise UnsupportedPixelEncodingError("encapsulated Pixel Data: malformed item")
        spans.append((pos + 8, pos + 8 + length))
        pos += 8 + length
    if not spans:
        raise UnsupportedPixelEncodingError("encapsulated Pixel Data: no basic offset table item")
    bot = spans.pop(0)
    return bot[1] > bot[0], spans


def frames(value: bytes, spans: list[tuple[int, int]], first: bytes = SOI) -> list[list[tuple[int, int]]]:
    """Group fragments into frames: a fragment that starts with SOI (JPEG 2000: SOC) starts a new frame."""
    grouped: list[list[tuple[int, int]]] = []
    for start, stop in spans:
        if value[start:start + 2] == first or not grouped:
            grouped.append([])
        grouped[-1].append((start, stop))
    return grouped


Parts = list[bytes | memoryview]


def _strip(value: bytes, frame: list[tuple[int, int]], fast: bool, j2k: bool) -> Parts | None:
    if len(frame) > 1:
        value = b"".join(memoryview(value)[a:b] for a, b in frame)
        frame = [(0, len(value))]
    start, stop = frame[0]
    return strip_j2k_parts(value, start, stop) if j2k else strip_frame_parts(value, start, stop, fast=fast)


def _encapsulate(frames_out: list[Parts], with_bot: bool) -> bytes:
    """One item per frame (plus a basic offset table when asked), joined in a single copy."""
    items: Parts = []
    offsets, offset = [], 0
    for parts in frames_out:
        size = sum(len(p) for p in parts)
        pad = size & 1
        offsets.append(offset)
        items += [ITEM, struct.pack("<I", size + pad), *parts, b"\x00" * pad]
        offset += 8 + size + pad
    bot = struct.pack(f"<{len(offsets)}I", *offsets) if with_bot else b""
    return b"".join([ITEM, struct.pack("<I", len(bot)), bot, *items])


def _sniff(value: bytes) -> bytes:
    """The first two bytes of the first fragment of encapsulated Pixel Data (b"" when not encapsulated)."""
    if value[:4] != ITEM or len(value) < 8:
        return b""
    first = 8 + struct.unpack_from("<I", value, 4)[0]
    return value[first + 8:first + 10] if value[first:first + 4] == ITEM else b""


def _codec(syntax: str, value: bytes) -> bytes:
    """SOI for JPEG-family frames, SOC for JPEG 2000, b"" for anything else (left untouched)."""
    if syntax in JPEG_SYNTAXES:
        return SOI
    if syntax in J2K_SYNTAXES:
        return SOC
    if not syntax:  # no file meta (e.g. straight from an association): sniff the first fragment
        head = _sniff(value)
        return head if head in (SOI, SOC) else b""
    return b""


def strip_jpeg_markers(ds: Dataset, fast: bool = True) -> bool:
    """Strip APP1–APP15/COM (JPEG) or COM (JPEG 2000) from every frame in place; True when bytes changed."""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    raw = ds.get_item(PIXEL_DATA)
    if raw is None or not isinstance(raw.value, bytes) or not raw.value:
        return False
    value = raw.value
    first = _codec(syntax, value)
    if not first:
        return False
    has_bot, spans = fragments(value)
    grouped = frames(value, spans, first)
    expected = int(ds.get("NumberOfFrames", 1) or 1)
    if len(grouped) != expected:
        raise UnsupportedPixelEncodingError("encapsulated Pixel Data: frame count does not match")
    stripped = [_strip(value, frame, fast, first == SOC) for frame in grouped]
    if all(s is None for s in stripped):
        return False
    view = memoryview(value)
    out: list[Parts] = [new if new is not None else [view[a:b] for a, b in frame]
                        for frame, new in zip(grouped, stripped, strict=True)]
    ds[PIXEL_DATA] = DataElement(PIXEL_DATA, "OB", _encapsulate(out, has_bot or expected > 1),
                                 is_undefined_length=True)
    for tag in (EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_TABLE_LENGTHS):
        if tag in ds:
            del ds[tag]  # offsets changed; the basic offset table above is rebuilt instead
    return True
