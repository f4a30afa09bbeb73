"""DICOS Threat Detection Report from an ATR verdict: content, link to the DX image, dciodvfy."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from central.products import dicos_dx
from central.products._tdr import ALGORITHM, DICOS_TDR, dicos_tdr, write_dicos_tdr
from core.errors import NiiError
from tests.unit._dicom3tools import dciodvfy


def _dx() -> Any:
    att = np.random.default_rng(0).random((96, 200)) * 9  # rows = channels, columns = lines
    md = {
        "scanner": {"id": "KHI-01", "vendor": "Sim", "model": "MB6", "serial": "0001"},
        "scan": {"id": 42, "line_pitch_mm": 5.0, "length_mm": 1000.0, "energies_mev": [6, 4]},
        "container": {"number": "MSKU1234565"},
        "detector": {"pitch_mm": 2.86},
    }
    return dicos_dx(att, md)


def _verdict(level: str = "red") -> dict[str, Any]:
    return {
        "ref": 7,
        "scanner": "KHI-01",
        "scan_id": 42,
        "verdict": level,
        "ms": 85.5,
        "findings": [
            {
                "level": "red",
                "category": "high-Z object",
                "reason": "Z_eff 62 block, 300 x 250 mm, in textiles",
                "bbox_px": [10, 20, 40, 60],
                "score": 1.7,
                "material": "metal",
                "zeff": 62.0,
            },
            {
                "level": "yellow",
                "category": "dense object",
                "reason": "denser than the cargo around it",
                "bbox_px": [120, 5, 150, 30],
                "score": 0.6,
                "material": "impenetrable",
                "zeff": 0.0,
            },
        ],
    }


def test_tdr_passesdciodvfy(tmp_path: Path) -> None:
    path = write_dicos_tdr(tmp_path / "tdr.dcm", _verdict(), _dx())
    lines = dciodvfy(path)
    errors = [ln for ln in lines if ln.startswith("Error")]
    # dicom3tools releases without NEMA IIC 1 IOD tables cannot check the TDR's modules, but
    # still check every value against its VR (a bad value adds "Error - Value invalid ...")
    assert errors in ([], ["Error - Information Object Not found"]), "\n".join(lines)
    bad = tmp_path / "bad.dcm"
    ds = pydicom.dcmread(path)
    with pytest.warns(UserWarning, match="Invalid value for VR CS"):
        ds.AlarmDecision = "Alarm?"
    ds.save_as(bad)
    assert any("Value invalid for this VR" in ln for ln in dciodvfy(bad)), "dciodvfy checks VRs"


def test_tdr_reports_each_finding_on_the_dx_image() -> None:
    dx = _dx()
    buf = io.BytesIO()
    dicos_tdr(_verdict(), dx).save_as(buf, enforce_file_format=True)
    tdr = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    assert tdr.SOPClassUID == DICOS_TDR and tdr.Modality == "TDR"
    # same object of inspection and study as the image, its own series
    assert tdr.StudyInstanceUID == dx.StudyInstanceUID and tdr.PatientID == "MSKU1234565"
    assert tdr.OOIType == "CARGO" and tdr.SeriesInstanceUID != dx.SeriesInstanceUID
    assert tdr.TDRType == "MACHINE" and list(tdr.ThreatDetectionAlgorithmAndVersion) == list(
        ALGORITHM
    )
    assert tdr.AlarmDecision == "ALARM" and tdr.AbortFlag == "SUCCESS"
    assert tdr.NumberOfTotalObjects == 2 and tdr.NumberOfAlarmObjects == 1
    assert tdr.TotalProcessingTime == pytest.approx(85.5)
    assert tdr.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == dx.SOPInstanceUID
    first, second = tdr.ThreatSequence
    assert (first.PotentialThreatObjectID, second.PotentialThreatObjectID) == (0, 1)
    rep = first.PTORepresentationSequence[0]
    assert rep.ReferencedInstanceSequence[0].ReferencedSOPClassUID == dx.SOPClassUID
    assert rep.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == dx.SOPInstanceUID
    roi = rep.ThreatROIVoxelSequence[0]
    assert list(roi.ThreatROIBase) == [10, 20, 0] and list(roi.ThreatROIExtents) == [30, 40, 1]
    assert list(rep.BoundingPolygon) == [10, 20, 0, 40, 60, 0]
    atd = first.ATDAssessmentSequence[0]
    assert atd.ATDAssessmentFlag == "THREAT" and atd.ThreatCategory == "ANOMALY"
    assert atd.ThreatCategoryDescription.startswith("high-Z object: Z_eff 62")
    assert atd.ATDAssessmentProbability == pytest.approx(0.85)
    assert atd.ZEffective == pytest.approx(62.0)
    atd2 = second.ATDAssessmentSequence[0]
    assert atd2.ATDAssessmentFlag == "UNKNOWN" and atd2.ATDAbilityAssessment == "SHIELD"


def test_tdr_alarm_decision_follows_the_verdict() -> None:
    dx = _dx()
    v = _verdict("yellow")
    v["findings"] = v["findings"][1:]
    assert dicos_tdr(v, dx).AlarmDecision == "UNKNOWN"
    green = {**_verdict("green"), "findings": []}
    tdr = dicos_tdr(green, dx)
    assert tdr.AlarmDecision == "CLEAR" and tdr.NumberOfTotalObjects == 0
    with pytest.raises(NiiError, match="no ATR verdict"):
        dicos_tdr({"ref": 3, "verdict": "none", "error": "scan is aborted"}, dx)
