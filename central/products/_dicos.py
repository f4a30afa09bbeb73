"""DICOS (NEMA IIC 1) Digital X-Ray image, For Presentation, written with pydicom.

DICOS reuses DICOM's DX modules with the patient replaced by the object of
inspection (OOI: here the container, its number in OOI ID, stored where DICOM
keeps the Patient ID) and adds its own attributes in group 4010 (OOI Type,
OOI Size, Scan Type).  SOP class: DICOS Digital X-Ray Image Storage - For
Presentation, 1.2.840.10008.5.1.4.1.1.501.2.1.

The pixel values are the attenuation image, 16 bit: value = A · 4096
(A = −ln T), so grey levels are linear in attenuation (Pixel Intensity
Relationship LOG); DX requires Rescale Slope 1, so the scale is stated in Image
Comments and in ``ATTENUATION_SCALE``.
"""
# ruff: noqa: RUF002

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

DICOS_DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.501.2.1"
DICOM_DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
ATTENUATION_SCALE = 4096.0
UID_ROOT = "1.2.826.0.1.3680043.10.1435."  # under pydicom's documented example root


def _text(value: Any, limit: int) -> str:
    return str(value if value is not None else "")[:limit]


def new_instance(sop_class_uid: str, when: dt.datetime) -> Dataset:
    """A dataset with its file meta and SOP common module filled: the part every DICOS
    object this package writes (DX image, TDR) shares."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = generate_uid(prefix=UID_ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(UID_ROOT + "1")
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = when.strftime("%H%M%S")
    return ds


def dicos_dx(
    attenuation: npt.ArrayLike,
    metadata: dict[str, Any],
    *,
    sop_class_uid: str = DICOS_DX_PRESENTATION,
    when: dt.datetime | None = None,
) -> Dataset:
    """A DICOS DX dataset of an attenuation image (rows = detector channels, columns = lines).

    ``metadata`` uses the UFF keys (``scanner``, ``scan``, ``container``,
    ``detector``); missing optional items become empty type-2 attributes.
    """
    a = np.asarray(attenuation, dtype=np.float64)
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"attenuation image must be 2-D, got shape {a.shape}")
    pixels = np.clip(np.rint(a * ATTENUATION_SCALE), 0, 65535).astype(np.uint16)
    scanner = metadata.get("scanner", {})
    scan = metadata.get("scan", {})
    container = metadata.get("container", {})
    detector = metadata.get("detector", {})
    when = when or dt.datetime.now(dt.UTC)
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds = new_instance(sop_class_uid, when)
    # object of inspection (DICOS) in the patient module's place
    ds.PatientName = _text(container.get("number"), 63) + "^"
    ds.PatientID = _text(container.get("number") or scan.get("id"), 64)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.OOIType = "CARGO"
    length_m = float(scan.get("length_mm", 0.0)) / 1000.0
    if length_m > 0:
        ds.OOISize = [length_m, 2.438, 2.591]
    # study and series
    ds.StudyInstanceUID = generate_uid(prefix=UID_ROOT)
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = _text(scan.get("id"), 16)
    ds.AccessionNumber = _text(metadata.get("gd", {}).get("number"), 16)
    ds.Modality = "DX"
    ds.SeriesInstanceUID = generate_uid(prefix=UID_ROOT)
    ds.SeriesNumber = 1
    ds.PresentationIntentType = "FOR PRESENTATION"
    # equipment
    ds.Manufacturer = _text(scanner.get("vendor"), 64)
    ds.ManufacturerModelName = _text(scanner.get("model"), 64)
    ds.DeviceSerialNumber = _text(scanner.get("serial"), 64)
    ds.StationName = _text(scanner.get("id"), 16)
    ds.SoftwareVersions = "nii-platform"
    # general image and acquisition
    ds.InstanceNumber = 1
    # rows run along travel (front of the vehicle first), columns run down towards the ground
    ds.PatientOrientation = ["A", "F"]
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDate, ds.AcquisitionTime = date, time
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageLaterality = "U"
    ds.AnatomicRegionSequence = Sequence()
    ds.AcquisitionContextSequence = Sequence()
    energies = scan.get("energies_mev") or metadata.get("source", {}).get("energies_mev") or []
    if energies:
        ds.KVP = float(max(energies)) * 1000.0
    # image pixel and DX image
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"  # high attenuation (large value) shown dark
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.ImageComments = f"pixel value = attenuation -ln(T) x {ATTENUATION_SCALE:g}"
    ds.PresentationLUTShape = "INVERSE"  # required with MONOCHROME1
    ds.WindowCenter = int(ATTENUATION_SCALE * 3)
    ds.WindowWidth = int(ATTENUATION_SCALE * 6)
    # DX detector
    ds.DetectorType = "SCINTILLATOR"
    pitch_ch = float(detector.get("pitch_mm", 1.0))
    pitch_line = float(scan.get("line_pitch_mm", pitch_ch))
    ds.ImagerPixelSpacing = [f"{pitch_ch:.6g}", f"{pitch_line:.6g}"]
    ds.PixelData = pixels.tobytes()
    return ds


def write_dicos_dx(path: str | Path, attenuation: npt.ArrayLike, metadata: dict[str, Any]) -> Path:
    """Write a DICOS DX file (DICOM Part 10 with its file meta information)."""
    out = Path(path)
    dicos_dx(attenuation, metadata).save_as(out, enforce_file_format=True)
    return out
