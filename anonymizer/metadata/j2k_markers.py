"""Strip COM segments from JPEG 2000 codestreams (DICOM J2K / HTJ2K frames) without touching coded data.

A codestream is SOC, main-header marker segments, tile-parts (SOT, tile-part header segments, SOD, data) and
EOC. COM segments (free text such as software names, possibly operator notes) are dropped from the main and
tile-part headers; each tile-part's Psot length is corrected, and TLM (an optional index of tile-part
lengths that would no longer match) is dropped. Anything after EOC is dropped.
"""

from __future__ import annotations

import struct

from anonymizer.metadata.errors import UnsupportedPixelEncodingError

SOC, SOT, SOD, EOC, COM, TLM = 0xFF4F, 0xFF90, 0xFF93, 0xFFD9, 0xFF64, 0xFF55
DROPPED = frozenset({COM, TLM})
Parts = list[bytes | memoryview]


def _fail(what: str) -> UnsupportedPixelEncodingError:
    return UnsupportedPixelEncodingError(f"JPEG 2000 frame: {what}")


def _marker(buf: bytes, pos: int, stop: int) -> int:
    if pos + 2 > stop:
        raise _fail("truncated")
    value: int = struct.unpack_from(">H", buf, pos)[0]
    return value


def _segments(buf: bytes, pos: int, stop: int, end_marker: int, parts: Parts) -> tuple[int, int]:
    """Copy header segments from ``pos`` up to ``end_marker``; returns (its offset, bytes dropped)."""
    view, dropped = memoryview(buf), 0
    while True:
        marker = _marker(buf, pos, stop)
        if marker == end_marker:
            return pos, dropped
        if marker >> 8 != 0xFF or pos + 4 > stop:
            raise _fail("marker expected")
        end = pos + 2 + _marker(buf, pos + 2, stop)
        if end > stop:
            raise _fail("segment runs past the frame")
        if marker in DROPPED:
            dropped += end - pos
        else:
            parts.append(view[pos:end])
        pos = end


def _tile_part(buf: bytes, pos: int, stop: int, eoc: int, parts: Parts) -> tuple[int, bool]:
    """Copy one tile-part starting at SOT ``pos``; returns (offset after it, whether it changed)."""
    if pos + 12 > stop or _marker(buf, pos + 2, stop) != 10:
        raise _fail("bad SOT")
    psot: int = struct.unpack_from(">I", buf, pos + 6)[0]
    end = pos + psot if psot else eoc
    if end > eoc or end < pos + 14:
        raise _fail("tile-part length out of range")
    header: Parts = []
    sod, dropped = _segments(buf, pos + 12, end, SOD, header)
    new_psot = psot - dropped if psot else 0
    parts += [buf[pos:pos + 6], struct.pack(">I", new_psot), buf[pos + 10:pos + 12], *header,
              memoryview(buf)[sod:end]]
    return end, dropped > 0


def strip_j2k_parts(buf: bytes, start: int = 0, stop: int | None = None) -> Parts | None:
    """The pieces of ``buf[start:stop]`` without COM/TLM and trailing bytes; None when nothing changed."""
    stop = len(buf) if stop is None else stop
    if stop - start < 4 or _marker(buf, start, stop) != SOC:
        raise _fail("no SOC")
    eoc = buf.rfind(b"\xff\xd9", start, stop)
    if eoc < 0:
        raise _fail("no EOC")
    parts: Parts = [buf[start:start + 2]]
    pos, dropped = _segments(buf, start + 2, eoc, SOT, parts)
    changed = dropped > 0 or any(buf[eoc + 2:stop])
    while pos < eoc:
        pos, tile_changed = _tile_part(buf, pos, stop, eoc, parts)
        changed |= tile_changed
        if pos < eoc and _marker(buf, pos, stop) != SOT:
            raise _fail("SOT expected")
    parts.append(b"\xff\xd9")
    return parts if changed else None


def strip_j2k(buf: bytes) -> bytes | None:
    parts = strip_j2k_parts(buf)
    return None if parts is None else b"".join(parts)
