"""DIMSE command sets and P-DATA framing as bytes (PS3.7 §6.3.1, PS3.8 §9.3.5), without pynetdicom or pydicom.

A command set is always Implicit VR Little Endian, group 0000. The lean receive path
(:mod:`gateway.core.lean_scp`) parses C-STORE/C-ECHO requests and encodes their responses with it; the
Verification SCU (:mod:`gateway.core.verification`) encodes its C-ECHO-RQ and reads the response. Neither may
import pynetdicom for this: one must not pay its per-message Python, the other its import time.
"""

from __future__ import annotations

import struct

P_DATA_TF = 0x04
HEADER = struct.Struct(">BBL")  # PDU type, reserved, length
ELEMENT = struct.Struct("<HHL")  # Implicit VR LE: group, element, length
PDV = struct.Struct(">LBB")  # item length, context ID, message control header
C_STORE_RQ, C_STORE_RSP, C_ECHO_RQ, C_ECHO_RSP = 0x0001, 0x8001, 0x0030, 0x8030
NO_DATASET = 0x0101
VERIFICATION = "1.2.840.10008.1.1"


class MalformedCommand(ValueError):
    """A command set whose element framing does not add up (or is not group 0000)."""


def parse_command(data: bytes | bytearray) -> dict[int, bytes]:
    """Element number → value of a command set; MalformedCommand on bad framing."""
    out, off = {}, 0
    while off < len(data):
        if off + 8 > len(data):
            raise MalformedCommand("truncated element header")
        group, element, length = ELEMENT.unpack_from(data, off)
        off += 8
        if group != 0 or off + length > len(data):
            raise MalformedCommand("element outside group 0000 or past the end")
        out[element] = bytes(data[off : off + length])
        off += length
    return out


def command_us(command: dict[int, bytes], element: int) -> int | None:
    value = command.get(element)
    return struct.unpack("<H", value)[0] if value is not None and len(value) == 2 else None


def command_uid(command: dict[int, bytes], element: int) -> str:
    return command.get(element, b"").decode("latin-1").rstrip("\0 ")


def padded(value: bytes, pad: bytes) -> bytes:
    return value + pad if len(value) % 2 else value


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def command_bytes(elements: list[tuple[int, bytes]]) -> bytes:
    """A command set from (element, value) in ascending order, with its group length (PS3.7 §E.1)."""
    body = b"".join(ELEMENT.pack(0, element, len(value)) + value for element, value in elements)
    return ELEMENT.pack(0, 0, 4) + struct.pack("<L", len(body)) + body


def pdata(context_id: int, command: bytes) -> bytes:
    """One P-DATA-TF carrying ``command`` as a single, last command fragment."""
    pdv = PDV.pack(len(command) + 2, context_id, 0x03) + command
    return HEADER.pack(P_DATA_TF, 0, len(pdv)) + pdv


def command_fragments(body: bytes | bytearray) -> tuple[bytes, bool]:
    """The command fragments of one P-DATA-TF body, joined, and whether the last one is among them."""
    fragments, last, off = [], False, 0
    while off + PDV.size <= len(body):
        length, _, control = PDV.unpack_from(body, off)
        if control & 0x01:
            fragments.append(bytes(body[off + PDV.size : off + 4 + length]))
            last = last or bool(control & 0x02)
        off += 4 + length
    return b"".join(fragments), last
