"""Realistic photo DICOM builders with a canary in every text-bearing place (shared by tests and bench).

``photo_jpeg`` re-encodes a ../shared face photo to a JPEG with EXIF (APP1), XMP (APP1), ICC (APP2), IPTC
(APP13), a JFIF thumbnail-free APP0 and a COM segment, each holding canaries. ``rich_photo`` wraps it as a VL
Photographic Image (or Secondary Capture) with nested sequences, private tags, overlay text and every
attribute of Table E.1-1 filled with a value valid for its VR. ``Canaries`` remembers every canary it made.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from anonymizer.metadata.table import load_table
from tests.conftest import Patient, Study, make_small_sc, make_vl_photo

PRIVATE_CREATOR = "ACME Photo 1.0"
SAFE_CREATOR = "VERA SAFE"


@dataclass
class Canaries:
    """Unique, searchable canary strings (uppercase letters and digits, valid in every text VR)."""

    prefix: str = "QZ"
    made: list[str] = field(default_factory=list)

    def new(self, width: int = 16) -> str:
        value = f"{self.prefix}{len(self.made):04d}XK"[:width]
        self.made.append(value)
        return value


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def photo_jpeg(
    source: Path, size: tuple[int, int], canaries: Canaries, quality: int = 90, noise: float = 0.0
) -> bytes:
    """A 4:2:2 JPEG of ``source`` resized to ``size`` with identifying APPn/COM segments inserted.

    ``noise`` adds seeded Gaussian sensor noise (sigma in grey levels) so upscaled photos compress like
    camera files (about 6 MB at 12 MP) instead of like smooth interpolation.
    """
    with Image.open(source) as img:
        rgb = img.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    if noise > 0:
        pixels = np.asarray(rgb).astype(np.float32)
        pixels += (
            np.random.default_rng(len(canaries.made)).normal(0.0, noise, pixels.shape).astype(np.float32)
        )
        rgb = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x013B] = canaries.new()  # Artist
    exif[0x010F] = canaries.new()  # Make
    exif[0x0132] = "2019:03:05 10:11:12"  # DateTime
    exif[0x8298] = canaries.new()  # Copyright
    buf = BytesIO()
    comment = canaries.new().encode()
    rgb.save(buf, "JPEG", quality=quality, subsampling=1, exif=exif.tobytes(), comment=comment)
    data = buf.getvalue()
    extra = (
        _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>" + canaries.new().encode() + b"</x>")
        + _segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + canaries.new().encode())
        + _segment(0xED, b"Photoshop 3.0\x00" + canaries.new().encode())
        + _segment(0xFE, canaries.new().encode())
    )
    return data[:2] + extra + data[2:]


def _text_value(vr: str, canaries: Canaries) -> object:
    width = {"AE": 16, "CS": 16, "SH": 16, "AS": 4}.get(vr, 16)
    if vr == "AS":
        return "042Y"
    if vr == "PN":
        return f"{canaries.new()}^{canaries.new()}"
    if vr == "UR":
        return f"http://example.org/{canaries.new()}"
    return canaries.new(width)


def value_for(vr: str, canaries: Canaries, uid_counter: list[int]) -> object:
    """A value valid for ``vr``; text carries a fresh canary, UIDs are unique and local."""
    if vr in ("AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"):
        return _text_value(vr, canaries)
    if vr == "UI":
        uid_counter[0] += 1
        return f"1.2.826.0.1.3680043.10.999.{uid_counter[0]}"
    simple: dict[str, object] = {
        "DA": "20190305",
        "DT": "20190305101112",
        "TM": "101112",
        "DS": "1.5",
        "IS": "7",
        "FL": 1.0,
        "FD": 1.0,
        "US": 1,
        "SS": 1,
        "UL": 1,
        "SL": 1,
        "SV": 1,
        "UV": 1,
        "AT": 0x00100010,
    }
    if vr in simple:
        return simple[vr]
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return canaries.new().encode()
    raise ValueError(vr)


def nested_item(canaries: Canaries, uid_counter: list[int], depth: int = 2) -> Dataset:
    """An item with identifying text, UIDs, a date, a private block and (depth > 0) a nested sequence."""
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"
    item.ReferencedSOPInstanceUID = str(value_for("UI", canaries, uid_counter))
    item.PersonName = _text_value("PN", canaries)
    item.InstitutionName = canaries.new()
    item.ContentDate = "20190306"
    item.TextValue = canaries.new()
    block = item.private_block(0x0029, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", canaries.new())
    if depth > 0:
        item.ContentSequence = Sequence([nested_item(canaries, uid_counter, depth - 1)])
    return item


def table_tags() -> list[tuple[int, str]]:
    """(tag, VR) of every plain Table E.1-1 row that can live in a stored dataset."""
    out = []
    for row in load_table().rows:
        if len(row.tag) != 8 or not all(c in "0123456789abcdef" for c in row.tag):
            continue
        tag = int(row.tag, 16)
        if tag >> 16 in (0x0000, 0x0002) or tag == 0x7FE00010:
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:
            continue
        out.append((tag, vr))
    return out


def fill_table(ds: Dataset, canaries: Canaries, uid_counter: list[int]) -> dict[int, object]:
    """Set every Table E.1-1 attribute that the photo does not have yet; returns the originals."""
    originals: dict[int, object] = {}
    for tag, vr in table_tags():
        if tag in ds:
            originals[tag] = ds[tag].value
            continue
        value = (
            Sequence([nested_item(canaries, uid_counter, 1)])
            if vr == "SQ"
            else value_for(vr, canaries, uid_counter)
        )
        ds.add_new(tag, vr, value)
        originals[tag] = value
    return originals


# Public attributes Table E.1-1 does not list, one per text VR (AE and AS have none unlisted). Standard mode
# keeps the short coded/text ones, removes LT/ST/UT/UC/PN; strict mode removes them all.
UNLISTED_TEXT = {
    "SyntheticData": "CS",
    "Manufacturer": "LO",
    "ExtendedCodeMeaning": "LT",
    "CodingSchemeURL": "UR",
    "CodingSchemeExternalID": "ST",
    "LongCodeValue": "UC",
    "PrivateDataElementDescription": "UT",
    "StageName": "SH",
    "SecondaryReviewerName": "PN",
}
UNLISTED_KEPT_IN_STANDARD_MODE = ("SyntheticData", "Manufacturer", "CodingSchemeURL", "StageName")


def add_unlisted_text(ds: Dataset, canaries: Canaries) -> None:
    for keyword, vr in UNLISTED_TEXT.items():
        setattr(ds, keyword, _text_value(vr, canaries))


def standard_mode_survivors(ds: Dataset, canaries: Canaries) -> set[str]:
    """Canaries that standard mode keeps on purpose: those in unlisted short text."""
    values = " ".join(str(ds.get(k, "")) for k in UNLISTED_KEPT_IN_STANDARD_MODE)
    return {c for c in canaries.made if c in values}


def add_private_and_overlays(ds: Dataset, canaries: Canaries) -> None:
    block = ds.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", canaries.new())
    block.add_new(0x02, "UT", canaries.new())
    safe = ds.private_block(0x0013, SAFE_CREATOR, create=True)
    safe.add_new(0x10, "US", 3)
    safe.add_new(0x11, "LO", canaries.new())
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60000022, "LO", canaries.new())  # Overlay Description
    ds.add_new(0x60001500, "LO", canaries.new())  # Overlay Label
    ds.add_new(0x60004000, "LT", canaries.new())  # Overlay Comments
    ds.add_new(0x60003000, "OW", b"\x01\x00" * 4)


def rich_photo(
    source: Path,
    tmp: Path,
    canaries: Canaries,
    size: tuple[int, int] = (320, 240),
    full_table: bool = True,
    unlisted_text: bool = False,
) -> tuple[Dataset, dict[int, object]]:
    """VL Photographic Image with canaries everywhere; returns the dataset and the original table values.

    ``unlisted_text`` adds one unlisted attribute per text VR (:data:`UNLISTED_TEXT`); without it the only
    unlisted text is Manufacturer (tests/rules relies on that).
    """
    jpeg = tmp / f"{source.stem}_{size[0]}.jpg"
    jpeg.write_bytes(photo_jpeg(source, size, canaries))
    patient = Patient(patient_id=canaries.new(), name=f"{canaries.new()}^{canaries.new()}", issuer="HOSP-A")
    ds = make_vl_photo(jpeg, patient, Study(accession=canaries.new(), description=canaries.new()))
    uid_counter = [0]
    ds.StudyID = canaries.new()
    ds.ReferencedImageSequence = Sequence([nested_item(canaries, uid_counter)])
    ds.SourceImageSequence = Sequence([nested_item(canaries, uid_counter)])
    ds.AnatomicRegionSequence = Sequence([nested_item(canaries, uid_counter)])
    if unlisted_text:
        add_unlisted_text(ds, canaries)
    else:
        ds.Manufacturer = canaries.new()
    ds.ImageComments = canaries.new()
    add_private_and_overlays(ds, canaries)
    originals = fill_table(ds, canaries, uid_counter) if full_table else {}
    return ds, originals


def rich_sc(canaries: Canaries) -> tuple[Dataset, dict[int, object]]:
    """Uncompressed RGB Secondary Capture with the same canaries everywhere (no JPEG)."""
    patient = Patient(patient_id=canaries.new(), name=f"{canaries.new()}^{canaries.new()}", issuer="HOSP-B")
    ds = make_small_sc(patient, Study(accession=canaries.new(), description=canaries.new()), side=64)
    uid_counter = [0]
    ds.StudyID = canaries.new()
    ds.SourceImageSequence = Sequence([nested_item(canaries, uid_counter)])
    add_unlisted_text(ds, canaries)
    add_private_and_overlays(ds, canaries)
    return ds, fill_table(ds, canaries, uid_counter)
