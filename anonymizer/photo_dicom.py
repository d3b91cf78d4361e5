"""Plain photos → VL Photographic Image DICOM, keeping JPEG bytes as they are (no re-encoding)."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, JpegImagePlugin
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

VL_PHOTOGRAPHIC = UID("1.2.840.10008.5.1.4.1.1.77.1.4")


@dataclass(frozen=True)
class PhotoContext:
    """Who and what the photos belong to; UIDs are shared by the photos of one import."""

    patient_id: str
    patient_name: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    study_date: str = ""  # YYYYMMDD; empty: today
    patient_sex: str = ""
    patient_age: str = ""  # e.g. "034Y"


def _base(ctx: PhotoContext, sop_instance_uid: str, number: int, transfer_syntax: UID) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VL_PHOTOGRAPHIC
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    today = ctx.study_date or dt.date.today().strftime("%Y%m%d")
    ds.SOPClassUID, ds.SOPInstanceUID = VL_PHOTOGRAPHIC, sop_instance_uid
    ds.PatientID, ds.PatientName = ctx.patient_id, ctx.patient_name or ctx.patient_id
    ds.PatientBirthDate, ds.PatientSex = "", ctx.patient_sex
    if ctx.patient_age:
        ds.PatientAge = ctx.patient_age
    ds.StudyInstanceUID = ctx.study_instance_uid or generate_uid()
    ds.SeriesInstanceUID = ctx.series_instance_uid or generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.ContentTime = "000000"
    ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "XC", 1, number
    ds.Manufacturer, ds.ImageType = "", ["ORIGINAL", "PRIMARY"]
    ds.Laterality, ds.PatientOrientation = "", ""
    ds.AcquisitionContextSequence = []
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    return ds


def jpeg_to_dataset(data: bytes, ctx: PhotoContext, number: int = 1) -> Dataset:
    """A VL Photographic Image with the JPEG stream encapsulated unchanged."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format != "JPEG" or im.mode not in ("RGB", "L"):
            raise ValueError("not a baseline 8-bit RGB or greyscale JPEG")
        width, height, mode = im.width, im.height, im.mode
        sampling = JpegImagePlugin.get_sampling(im)
    ds = _base(ctx, generate_uid(), number, JPEGBaseline8Bit)
    ds.Rows, ds.Columns = height, width
    if mode == "L":
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    else:
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.PhotometricInterpretation = "YBR_FULL" if sampling == 0 else "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def rgb_to_dataset(image: np.ndarray, ctx: PhotoContext, number: int = 1) -> Dataset:
    """A VL Photographic Image holding uncompressed RGB pixels (for PNGs and tests)."""
    ds = _base(ctx, generate_uid(), number, ExplicitVRLittleEndian)
    ds.Rows, ds.Columns = image.shape[:2]
    ds.SamplesPerPixel, ds.PlanarConfiguration, ds.PhotometricInterpretation = 3, 0, "RGB"
    ds.PixelData = np.ascontiguousarray(image, np.uint8).tobytes()
    ds["PixelData"].VR = "OB"
    return ds
