"""APP1–APP15/COM are stripped from encapsulated JPEG frames; pixels decode identically; fast == reference."""

from __future__ import annotations

import contextlib
import struct
from io import BytesIO

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import UID

from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.metadata.encapsulated import strip_jpeg_markers
from anonymizer.metadata.errors import UnsupportedPixelEncodingError
from anonymizer.metadata.jpeg_markers import strip_frame
from anonymizer.plans import MetadataPlan
from tests.conftest import face_photos
from tests.metadata.conftest import PhotoCase, saved
from tests.metadata.photos import Canaries, photo_jpeg


def markers(data: bytes) -> list[int]:
    """Marker codes of the header segments up to and including SOS."""
    pos, found = 2, []
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        found.append(marker)
        if marker == 0xDA:
            break
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return found


def pixels(data: bytes) -> np.ndarray:
    with Image.open(BytesIO(data)) as img:
        img.load()
        return np.asarray(img).copy()


def encoded(mode: str = "RGB", **save: object) -> bytes:
    with Image.open(face_photos(1)[0]) as img:
        small = img.convert(mode).resize((160, 120))
    buf = BytesIO()
    small.save(buf, "JPEG", quality=85, comment=b"QZCOMMENT", **save)
    return buf.getvalue()


def test_camera_jpeg_loses_every_app_segment_but_decodes_identically() -> None:
    canaries = Canaries()
    data = photo_jpeg(face_photos(1)[0], (200, 150), canaries)
    assert {0xE1, 0xE2, 0xED, 0xFE} <= set(markers(data))
    out = strip_frame(data)
    assert out is not None and not [c for c in canaries.made if c.encode() in out]
    assert not {m for m in markers(out) if 0xE1 <= m <= 0xEF or m == 0xFE}
    assert np.array_equal(pixels(out), pixels(data))


@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO")
@pytest.mark.parametrize("kind", ["baseline", "progressive", "cmyk_adobe", "trailer", "mpf_appended"])
def test_fast_path_equals_reference_path_and_pixels_are_unchanged(kind: str) -> None:
    if kind == "progressive":
        data = encoded(progressive=True)
    elif kind == "cmyk_adobe":
        data = encoded("CMYK")
        assert 0xEE in markers(data)  # Adobe APP14: its transform flag changes decoding
    else:
        data = encoded()
    if kind == "trailer":  # e.g. a phone's trailer block after EOI
        data += b"\x00QZTRAILER"
    if kind == "mpf_appended":  # multi-picture: APP2 MPF announces a second JPEG after the first EOI
        data = (
            data[:2]
            + b"\xff\xe2\x00\x08MPF\x00\x00\x00"
            + data[2:]
            + encoded().replace(b"QZCOMMENT", b"QZTRAILER")
        )
    fast, ref = strip_frame(data, fast=True), strip_frame(data, fast=False)
    assert fast == ref and fast is not None
    assert b"QZCOMMENT" not in fast and b"QZTRAILER" not in fast and fast.endswith(b"\xff\xd9")
    assert np.array_equal(pixels(fast), pixels(data))
    if kind == "cmyk_adobe":
        assert 0xEE in markers(fast)


def test_unannounced_appended_jpeg_needs_the_full_scan(plain_photo: PhotoCase) -> None:
    data = encoded() + encoded().replace(b"QZCOMMENT", b"QZTRAILER")
    fast, full = strip_frame(data, fast=True), strip_frame(data, fast=False)
    assert fast is not None and full is not None
    assert b"QZTRAILER" in fast  # documented residual risk of the header-only path
    assert b"QZTRAILER" not in full
    ds = plain_photo.fresh()
    ds.PixelData = encapsulate([data])
    out = deidentify(ds, MetadataPlan(jpeg_full_scan=True), KeyRing(b"k" * 32), None)
    assert b"QZTRAILER" not in out.PixelData and b"QZCOMMENT" not in out.PixelData


def test_clean_frame_is_left_alone_without_copy() -> None:
    data = strip_frame(encoded())
    assert data is not None and strip_frame(data) is None


def test_multiframe_with_offset_table_is_reencapsulated(plain_photo: PhotoCase) -> None:
    ds = plain_photo.fresh()
    canaries = Canaries(prefix="QY")
    frames = [photo_jpeg(face_photos(2)[i], (96, 64), canaries) for i in range(2)]
    ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=True)
    ds.NumberOfFrames, ds.Rows, ds.Columns = 2, 64, 96
    assert strip_jpeg_markers(ds)
    out = list(generate_frames(ds.PixelData, number_of_frames=2))
    assert not [c for c in canaries.made if c.encode() in ds.PixelData]
    for before, after in zip(frames, out, strict=True):
        assert np.array_equal(pixels(before), pixels(after))


def test_broken_jpeg_is_a_typed_error(plain_photo: PhotoCase) -> None:
    ds = plain_photo.fresh()
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xe1\x00"])
    with pytest.raises(UnsupportedPixelEncodingError):
        deidentify(ds, MetadataPlan(), KeyRing(b"k" * 32), None)


def test_deidentified_photo_decodes_to_the_same_pixels_through_pydicom(plain_photo: PhotoCase) -> None:
    before = plain_photo.fresh().pixel_array
    out = deidentify(plain_photo.fresh(), MetadataPlan(), KeyRing(b"k" * 32), None)
    assert len(out.PixelData) < len(plain_photo.fresh().PixelData)  # segments are gone
    assert np.array_equal(pydicom.dcmread(BytesIO(saved(out))).pixel_array, before)


def test_jpeg_without_file_meta_is_still_stripped(plain_photo: PhotoCase) -> None:
    ds = plain_photo.fresh()
    del ds.file_meta
    canaries = [c for c in plain_photo.canaries.made if c.encode() in ds.PixelData]
    assert canaries and strip_jpeg_markers(ds)
    assert not [c for c in canaries if c.encode() in ds.PixelData]


def test_corrupted_frames_give_a_typed_error_or_a_stream_never_a_crash() -> None:
    base = photo_jpeg(face_photos(1)[0], (64, 48), Canaries())
    rng = np.random.default_rng(7)
    for _ in range(1500):
        data = bytearray(base)
        for pos in rng.integers(0, min(len(data), 800), size=int(rng.integers(1, 5))):
            data[int(pos)] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            data = data[: int(rng.integers(0, len(data)))]
        for fast in (True, False):
            with contextlib.suppress(UnsupportedPixelEncodingError):  # anything else fails the test
                strip_frame(bytes(data), fast=fast)


@pytest.mark.parametrize("tiles", [None, (64, 48)])
def test_jpeg2000_frames_lose_their_comments_and_decode_identically(
    plain_photo: PhotoCase, tiles: tuple[int, int] | None
) -> None:
    with Image.open(face_photos(1)[0]) as img:
        small = img.convert("RGB").resize((128, 96))
    buf = BytesIO()
    tiling = {"tile_size": tiles} if tiles else {}
    small.save(buf, "JPEG2000", no_jp2=True, comment="QZJ2KCOMMENT", **tiling)
    frame = buf.getvalue()
    ds = plain_photo.fresh()
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.91")
    ds.PixelData = encapsulate([frame])
    out = deidentify(ds, MetadataPlan(), KeyRing(b"k" * 32), None)
    (stripped,) = list(generate_frames(out.PixelData, number_of_frames=1))
    assert b"QZJ2KCOMMENT" not in out.PixelData
    assert stripped.removesuffix(b"\x00").endswith(b"\xff\xd9")  # EOC, then at most the even-length pad
    assert np.array_equal(pixels(stripped), pixels(frame))
