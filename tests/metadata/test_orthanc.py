"""The de-identified output is a valid DICOM file that a real Orthanc accepts, indexes and renders."""

from __future__ import annotations

import urllib.request
from io import BytesIO
from typing import Any

import pydicom
import pytest
from pydicom import config

from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.plans import MetadataPlan
from tests.metadata.conftest import SECRET, PhotoCase, saved


def _strict_reread(data: bytes) -> pydicom.Dataset:
    previous = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    try:
        ds = pydicom.dcmread(BytesIO(data))
        for elem in ds.iterall():
            _ = elem.value  # every value must parse against its VR
        return ds
    finally:
        config.settings.reading_validation_mode = previous


@pytest.mark.integration
def test_orthanc_accepts_indexes_and_renders_deidentified_photos(
    orthanc: Any, plain_photo: PhotoCase, full_photo: PhotoCase, full_sc: PhotoCase
) -> None:
    server = orthanc()
    keys = KeyRing(SECRET)
    outputs = [
        saved(deidentify(plain_photo.fresh(), MetadataPlan(), keys, None)),
        saved(deidentify(plain_photo.fresh(), MetadataPlan(strict=True), keys, None)),
        saved(deidentify(full_photo.fresh(), MetadataPlan(), keys, None)),
        saved(deidentify(full_sc.fresh(), MetadataPlan(strict=True), keys, None)),
    ]
    for data in outputs:
        ds = _strict_reread(data)
        answer = server.rest("/instances", data, method="POST")
        assert answer["Status"] in ("Success", "AlreadyStored"), answer
        tags = server.instance_tags(answer["ID"])
        assert tags["PatientID"] == ds.PatientID and tags["SOPInstanceUID"] == ds.SOPInstanceUID
        assert tags["PatientIdentityRemoved"] == "YES"
        url = f"http://127.0.0.1:{server.http_port}/instances/{answer['ID']}/preview"
        with urllib.request.urlopen(url, timeout=60) as resp:  # Orthanc decodes the stripped JPEG
            assert resp.read()[:4] == b"\x89PNG"
    assert len(server.instances()) == 3  # the strict and the standard photo share keyed UIDs
