"""PS3.15 header de-identification. Entry point: :func:`deidentify`."""

from __future__ import annotations

from pydicom.dataset import Dataset

from anonymizer.keys import KeyRing
from anonymizer.plans import MetadataPlan, PixelReport


def deidentify(ds: Dataset, plan: MetadataPlan, keys: KeyRing, pixel_report: PixelReport | None) -> Dataset:
    """Placeholder until the full Table E.1-1 lands: remaps the identifying core deterministically."""
    pseudonym = keys.patient_pseudonym(str(ds.get("PatientID", "")), str(ds.get("IssuerOfPatientID", "")))
    ds.PatientID = pseudonym
    ds.PatientName = pseudonym
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if keyword in ds:
            setattr(ds, keyword, keys.uid(str(getattr(ds, keyword))))
    if hasattr(ds, "file_meta") and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    return ds
