"""Fixtures for the metadata tests: one rich photo per session (bytes), re-read fresh for every test."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from anonymizer.keys import KeyRing
from tests.conftest import face_photos
from tests.metadata.photos import Canaries, rich_photo, rich_sc

SECRET = b"metadata-tests-secret-0123456789"


@pytest.fixture(scope="session")
def keys() -> KeyRing:
    return KeyRing(SECRET)


class PhotoCase:
    """A rich photo as file bytes plus everything needed to judge the output."""

    def __init__(self, data: bytes, canaries: Canaries, originals: dict[int, object]) -> None:
        self.data, self.canaries, self.originals = data, canaries, originals

    def fresh(self) -> Dataset:
        return pydicom.dcmread(BytesIO(self.data))


def _case(tmp: Path, full_table: bool) -> PhotoCase:
    canaries = Canaries()
    ds, originals = rich_photo(face_photos(1)[0], tmp, canaries, full_table=full_table, unlisted_text=True)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return PhotoCase(buf.getvalue(), canaries, originals)


@pytest.fixture(scope="session")
def full_photo(tmp_path_factory: pytest.TempPathFactory) -> PhotoCase:
    """A VL Photographic Image with every Table E.1-1 attribute set, canaries in every text place."""
    return _case(tmp_path_factory.mktemp("full"), full_table=True)


@pytest.fixture(scope="session")
def full_sc() -> PhotoCase:
    """A Secondary Capture (uncompressed RGB) with every Table E.1-1 attribute set and canaries."""
    canaries = Canaries(prefix="QW")
    ds, originals = rich_sc(canaries)
    return PhotoCase(saved(ds), canaries, originals)


@pytest.fixture(scope="session")
def plain_photo(tmp_path_factory: pytest.TempPathFactory) -> PhotoCase:
    """A realistic VL Photographic Image (camera header, nested sequences, private tags, EXIF/XMP/COM)."""
    return _case(tmp_path_factory.mktemp("plain"), full_table=False)


def saved(ds: Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
