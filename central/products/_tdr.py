"""DICOS (NEMA IIC 1) Threat Detection Report from an ATR verdict, linked to its DX image.

A TDR is how a DICOS viewer or a vendor's workstation learns what an
automatic threat detector found: one Potential Threat Object (PTO) per
finding, each with its region on the referenced image and the detector's
assessment.  It lives in the DX image's study (same Study Instance UID and
object of inspection) in its own series, and every PTO references the DX
instance by SOP Class and Instance UID.  SOP class: DICOS Threat Detection
Report Storage, 1.2.840.10008.5.1.4.1.1.501.3.

Mapping from the ATR (docs/atr.md):

* verdict red → Alarm Decision ALARM, yellow (assessment review) → UNKNOWN,
  green → CLEAR; a scan without verdict gets no TDR;
* each finding → a PTO: red → ATD Assessment Flag THREAT, yellow → UNKNOWN;
  Threat Category ANOMALY (the ATR reports anomalies, not identified
  threats), the description is the finding's category and reason;
* region: Threat ROI Base / Extents and Bounding Polygon in the DX image's
  pixel coordinates (x = column = scan line, y = row = detector channel,
  z = 0), from the finding's ``bbox_px``;
* ATD Assessment Probability: the finding's score (1.0 = red threshold)
  halved and clipped to [0, 1], so 0.5 is the red threshold.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from central.products._dicos import UID_ROOT, dicos_dx, new_instance
from core.errors import NiiError

if TYPE_CHECKING:
    from central._cir import Cir
    from core.seal import Opener

DICOS_TDR = "1.2.840.10008.5.1.4.1.1.501.3"
#: Threat Detection Algorithm and Version of the reports this module writes.
ALGORITHM = ("nii-atr", "classical-1")

_ALARM = {"red": "ALARM", "yellow": "UNKNOWN", "green": "CLEAR"}
_FLAG = {"red": "THREAT", "yellow": "UNKNOWN", "green": "NO_THREAT"}

#: Attributes the TDR copies from its DX image: object of inspection, study, equipment.
_SHARED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "OOIType",
    "OOISize",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "Manufacturer",
    "ManufacturerModelName",
    "DeviceSerialNumber",
    "StationName",
)


def _pto(i: int, f: dict[str, Any], dx: Dataset) -> Dataset:
    """One Potential Threat Object: region on the DX image and the ATR's assessment."""
    x0, y0, x1, y1 = (float(v) for v in (f.get("bbox_px") or [0, 0, 0, 0]))
    x1, y1 = max(x1, x0 + 1.0), max(y1, y0 + 1.0)
    ref = Dataset()
    ref.ReferencedSOPClassUID = dx.SOPClassUID
    ref.ReferencedSOPInstanceUID = dx.SOPInstanceUID
    roi = Dataset()
    roi.ThreatROIBase = [x0, y0, 0.0]
    roi.ThreatROIExtents = [x1 - x0, y1 - y0, 1.0]
    rep = Dataset()
    rep.ReferencedInstanceSequence = Sequence([ref])
    rep.ThreatROIVoxelSequence = Sequence([roi])
    rep.BoundingPolygon = [x0, y0, 0.0, x1, y1, 0.0]
    rep.CenterOfPTO = [(x0 + x1) / 2, (y0 + y1) / 2, 0.0]
    level = str(f.get("level", "yellow"))
    atd = Dataset()
    atd.ThreatCategory = "ANOMALY"
    atd.ThreatCategoryDescription = f"{f.get('category', '')}: {f.get('reason', '')}"[:10240]
    atd.ATDAbilityAssessment = (
        "SHIELD" if f.get("material") == "impenetrable" else "NO_INTERFERENCE"
    )
    atd.ATDAssessmentFlag = _FLAG.get(level, "UNKNOWN")
    atd.ATDAssessmentProbability = float(np.clip(float(f.get("score", 0.0)) / 2.0, 0.0, 1.0))
    if float(f.get("zeff", 0.0) or 0.0) > 0:
        atd.ZEffective = float(f["zeff"])
    item = Dataset()
    item.PotentialThreatObjectID = i
    item.PTORepresentationSequence = Sequence([rep])
    item.ATDAssessmentSequence = Sequence([atd])
    return item


def dicos_tdr(verdict: dict[str, Any], dx: Dataset, *, when: dt.datetime | None = None) -> Dataset:
    """The TDR of an ATR ``verdict`` (the live feed's document) on the DX image ``dx``.

    Raises :class:`NiiError` for a scan without verdict (``verdict`` "none"):
    there is nothing a detector decided to report.
    """
    level = str(verdict.get("verdict", "none"))
    if level not in _ALARM:
        raise NiiError(
            f"scan {verdict.get('ref')} has no ATR verdict ({verdict.get('error') or level})",
            fix="a TDR needs a verdict: analyse a complete scan first",
        )
    findings = [f for f in verdict.get("findings", []) if f.get("level") in ("red", "yellow")]
    when = when or dt.datetime.now(dt.UTC)
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds = new_instance(DICOS_TDR, when)
    for kw in _SHARED:  # same object of inspection and study as the image it reports on
        if kw in dx:
            setattr(ds, kw, dx[kw].value)
    ds.Modality = "TDR"
    ds.SeriesInstanceUID = generate_uid(prefix=UID_ROOT)
    ds.SeriesNumber = 2
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SoftwareVersions = list(ALGORITHM)
    ds.DICOSVersion = "V02A"
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.TDRType = "MACHINE"
    ds.ThreatDetectionAlgorithmAndVersion = list(ALGORITHM)
    ds.AlarmDecision = _ALARM[level]
    ds.AlarmDecisionTime = when.strftime("%Y%m%d%H%M%S")
    ds.AbortFlag = "SUCCESS"
    ds.NumberOfTotalObjects = len(findings)
    ds.NumberOfAlarmObjects = sum(1 for f in findings if f.get("level") == "red")
    ds.TotalProcessingTime = float(verdict.get("ms", 0.0) or 0.0)
    ref = Dataset()
    ref.ReferencedSOPClassUID = dx.SOPClassUID
    ref.ReferencedSOPInstanceUID = dx.SOPInstanceUID
    ds.ReferencedInstanceSequence = Sequence([ref])
    ds.ThreatSequence = Sequence([_pto(i, f, dx) for i, f in enumerate(findings)])
    return ds


def write_dicos_tdr(path: str | Path, verdict: dict[str, Any], dx: Dataset) -> Path:
    """Write the TDR of ``verdict`` on ``dx`` as a DICOM Part 10 file."""
    out = Path(path)
    dicos_tdr(verdict, dx).save_as(out, enforce_file_format=True)
    return out


def export_dicos(cir: Cir, opener: Opener, ref: int, out_dir: str | Path) -> list[Path]:
    """Write scan ``ref`` as a DICOS DX image and, if it has a verdict, its TDR.

    The verdict is the one the live ATR stored in the CIR; a scan from before
    the live ATR is analysed now.  Files: ``<ref>-dx.dcm``, ``<ref>-tdr.dcm``.
    """
    import json

    from central._reader import scan_arrays
    from central.atr._live import pixel_size, verdict_doc
    from central.atr._store import VerdictStore
    from core.calibration import DetectorCalibration

    row = cir.scan(ref)
    if row is None:
        raise NiiError(f"no scan with ref {ref} in the CIR", fix="list scans with 'nii cir scans'")
    arrays = scan_arrays(cir, opener, ref)
    if "image_high" not in arrays or "dark_high" not in arrays or "air_high" not in arrays:
        raise NiiError(
            f"scan {ref} has no image or calibration lines in the CIR",
            fix="pick a finished scan from 'nii cir scans'",
        )
    store = VerdictStore(cir.sql.target)
    try:
        verdict = store.get(ref)
    finally:
        store.close()
    if verdict is None:
        verdict = verdict_doc(row, arrays)
    cal = DetectorCalibration.from_lines(
        arrays["dark_high"].T, arrays["dark_low"].T, arrays["air_high"].T, arrays["air_low"].T
    )
    a_hi, _ = cal.attenuation(arrays["image_high"].T, arrays["image_low"].T)
    start = json.loads(row.get("start_record") or "{}")
    channels, lines = arrays["image_high"].shape
    line_mm, channel_mm, _ = pixel_size(start, channels, lines)
    energies = [e / 1000.0 for e in start.get("energies_kev", []) if isinstance(e, (int, float))]
    metadata = {
        "scanner": {"id": row["scanner"]},
        "scan": {
            "id": row["scan_id"],
            "line_pitch_mm": line_mm,
            "length_mm": lines * line_mm,
            "energies_mev": energies,
        },
        "container": {"number": row.get("container") or ""},
        "detector": {"channels": channels, "pitch_mm": channel_mm},
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dx = dicos_dx(a_hi.T, metadata)  # rows = channels, columns = lines, as bbox_px counts them
    paths = [out / f"{ref}-dx.dcm"]
    dx.save_as(paths[0], enforce_file_format=True)
    if verdict.get("verdict") in _ALARM:
        paths.append(write_dicos_tdr(out / f"{ref}-tdr.dcm", verdict, dx))
    return paths


__all__ = ["ALGORITHM", "DICOS_TDR", "dicos_tdr", "export_dicos", "write_dicos_tdr"]
