"""The ATR on another scanner model, read through that scanner's own calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from central.atr import analyze
from core.calibration import DetectorCalibration
from core.scanner_cal import ScannerCalibration, fit, load_wedges
from firmware_sim.physics import PhysicsSource
from firmware_sim.physics._wedges import write_wedge_scan

MODEL = "l9-cdwo4-40"  # 9/6 MeV, 40 mm CdWO4: not the reference scanner


@pytest.fixture(scope="module")
def cal(tmp_path_factory: pytest.TempPathFactory) -> ScannerCalibration:
    d: Path = tmp_path_factory.mktemp("wedges") / MODEL
    write_wedge_scan(d, MODEL, 3)
    return fit(load_wedges(d))


def test_truthful_load_weighs_what_it_is_declared(cal: ScannerCalibration) -> None:
    src = PhysicsSource.for_model(MODEL)
    s = src.simulate(51, 1, 650, 1600, commodity="paper", concealment="", lie=False)
    det = DetectorCalibration.from_lines(s.dark_hi, s.dark_lo, s.air_hi, s.air_lo)
    hi, lo = det.attenuation(s.img_hi, s.img_lo)
    px = (s.truth["line_pitch_mm"], s.truth["channel_pitch_mm"])
    with_cal = analyze(hi, lo, *px, s.gd, scanner=cal)
    assert with_cal.gd_checks["calibrated"] is True
    assert 0.85 < with_cal.gd_checks["mass_ratio"] < 1.15
    assert with_cal.verdict != "red", [f.reason for f in with_cal.findings]
    # uncalibrated: the reference scanner is assumed and the GD can at most be doubted
    without = analyze(hi, lo, *px, s.gd)
    assert without.gd_checks["calibrated"] is False
    assert all(f.level != "red" for f in without.findings if f.category == "gd mismatch")
    assert np.isfinite(without.gd_checks["estimated_cargo_kg"])
