"""Rule-file fixtures: a realistic VL Photographic header (no pixels decoded) and a temp rule folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"


def photo_dataset(**overrides: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(VL_PHOTO)
    ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.826.0.1.3680043.2.1143.1.3")
    ds.SOPClassUID = VL_PHOTO
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1143.1.3"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.2.1143.1.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1143.1.2"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-0042"
    ds.PatientAge = "034Y"
    ds.PatientSex = "F"
    ds.StudyDate = "20240131"
    ds.Modality = "XC"
    ds.StudyDescription = "Ortho records T0"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows = 3000
    ds.Columns = 4000
    ds.ReferringPhysicianName = "House^Gregory"
    code = Dataset()
    code.CodeValue = "399067008"
    code.CodingSchemeDesignator = "SCT"
    code.CodeMeaning = "Lateral"
    ds.ViewCodeSequence = Sequence([code])
    for key, value in overrides.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    return tmp_path
