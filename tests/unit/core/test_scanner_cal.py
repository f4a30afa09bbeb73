"""The per-scanner calibration from a step-wedge scan: fit, inverse and forward maps, errors."""
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from core.scanner_cal import (
    CalibrationError,
    ScannerCalibration,
    effective_z,
    fit,
    load_wedges,
)

#: A made-up scanner: A_high = μ(Z)·ρt·(1 − h·ρt) (beam hardening), R = A_high/A_low rising
#: with Z and slowly with thickness. Not any real scanner: the test checks the mechanics.
MATERIALS = {
    "plastic": (0.95, {6: 0.857, 1: 0.143}, (50, 100, 200, 400, 800, 1200, 1600, 2000)),
    "aluminium": (2.7, {13: 1.0}, (20, 50, 100, 200, 300, 400, 600)),
    "steel": (7.85, {26: 0.98, 6: 0.02}, (10, 20, 40, 80, 120, 160, 200, 260)),
    "lead": (11.35, {82: 1.0}, (5, 10, 20, 40, 60, 80, 100, 130)),
}


def _model(rho: float, z: float) -> tuple[float, float]:
    mu = 0.040 + 0.00012 * z
    a_hi = mu * rho * (1.0 - 0.0006 * rho)
    r = 0.80 + 0.035 * math.log(z) + 0.00005 * rho
    return a_hi, a_hi / r


def write_wedges(d: Path, noise: float = 0.002, seed: int = 1, **change: Any) -> dict[str, Any]:
    """A synthetic commissioning scan folder; returns the wedges document written."""
    rng = np.random.default_rng(seed)
    steps = []
    col = 10
    mats: dict[str, Any] = {}
    hi = np.ones((120, 1600), dtype=np.float64)
    lo = np.ones_like(hi)
    for name, (dens, fr, thick) in MATERIALS.items():
        mats[name] = {
            "density_g_cm3": dens,
            "weight_fractions_by_Z": {str(k): v for k, v in fr.items()},
        }
        z = effective_z(fr)
        for t in (0, *thick):
            rho = dens * t / 10.0
            a_hi, a_lo = _model(rho, z)
            box = [col, 30, col + 16, 90]
            hi[30:90, col : col + 16] = math.exp(-a_hi)
            lo[30:90, col : col + 16] = math.exp(-a_lo)
            steps.append(
                {
                    "material": name,
                    "thickness_mm": t,
                    "areal_density_g_cm2": round(rho, 4),
                    "bbox_px": box,
                }
            )
            col += 24
    doc = {"scanner": "TEST-1", "pixel_mm": [5.0, 4.0], "materials": mats, "steps": steps}
    doc.update(change)
    d.mkdir(parents=True, exist_ok=True)
    (d / "wedges.json").write_text(json.dumps(doc))
    for name, tr in (("high", hi), ("low", lo)):
        noisy = tr * (1.0 + noise * rng.standard_normal(tr.shape) / np.sqrt(np.maximum(tr, 1e-4)))
        img = np.clip(np.rint(noisy * 65535.0), 0, 65535).astype(np.uint16)
        assert cv2.imwrite(str(d / f"{name}.tiff"), img)
    return doc


@pytest.fixture(scope="module")
def cal(tmp_path_factory: pytest.TempPathFactory) -> ScannerCalibration:
    d = tmp_path_factory.mktemp("wedges")
    write_wedges(d)
    return fit(load_wedges(d))


def test_effective_z_of_compounds() -> None:
    assert effective_z({26: 1.0}) == pytest.approx(26.0)
    # polyethylene: hydrogen's electrons pull the mean well below carbon's 6
    assert 4.5 < effective_z({6: 0.857, 1: 0.143}) < 5.0
    with pytest.raises(CalibrationError, match="Z=117"):
        effective_z({117: 1.0})


def test_fit_recovers_the_steps(cal: ScannerCalibration) -> None:
    assert [c.name for c in cal.curves] == ["plastic", "aluminium", "steel", "lead"]
    for c in cal.curves:
        d = cal.decompose(np.array([c.a_hi]), np.array([c.a_lo]))
        np.testing.assert_allclose(d.areal_density[0], c.areal_density, rtol=0.01)
        np.testing.assert_allclose(d.zeff[0], c.z, rtol=0.03)
    assert cal.fit_error["areal_density_rel_rms"] < 0.03


def test_between_materials_interpolates(cal: ScannerCalibration) -> None:
    # 30 g/cm² of Z = 20 matter lies between aluminium and steel
    a_hi, a_lo = _model(30.0, 20.0)
    d = cal.decompose(np.array([[a_hi]]), np.array([[a_lo]]))
    assert 17.0 < float(d.zeff[0, 0]) < 23.5
    assert float(d.areal_density[0, 0]) == pytest.approx(30.0, rel=0.05)


def test_forward_inverts_decompose(cal: ScannerCalibration) -> None:
    rho = np.array([[5.0, 20.0, 60.0, 120.0]], dtype=np.float32)
    z = np.array([[6.0, 13.0, 26.0, 60.0]], dtype=np.float32)
    hi, lo = cal.forward(rho, z)
    d = cal.decompose(hi, lo)
    np.testing.assert_allclose(d.areal_density, rho, rtol=0.02)
    np.testing.assert_allclose(d.zeff, z, rtol=0.05)


def test_too_dark_is_impenetrable(cal: ScannerCalibration) -> None:
    d = cal.decompose(np.array([[cal.a_max + 1.0]]), np.array([[cal.a_max + 1.3]]))
    assert bool(d.impenetrable[0, 0])


def test_json_round_trip(cal: ScannerCalibration, tmp_path: Path) -> None:
    p = tmp_path / "scanner.json"
    p.write_text(json.dumps(cal.to_json()))
    back = ScannerCalibration.load(p)
    assert back.scanner == "TEST-1"
    a = cal.decompose(np.array([[1.0, 3.0]]), np.array([[1.15, 3.4]]))
    b = back.decompose(np.array([[1.0, 3.0]]), np.array([[1.15, 3.4]]))
    np.testing.assert_allclose(a.areal_density, b.areal_density, rtol=1e-4)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[]", "not a JSON object"),
        ('{"format": "other/1"}', "format is 'other/1'"),
        (
            '{"format": "nii-scanner-calibration/1", "scanner": "x", "a_max": 5, "noise": {}}',
            "missing or malformed",
        ),
    ],
)
def test_bad_calibration_files(tmp_path: Path, doc: str, message: str) -> None:
    p = tmp_path / "s.json"
    p.write_text(doc)
    with pytest.raises(CalibrationError, match=message):
        ScannerCalibration.load(p)
    with pytest.raises(CalibrationError, match="cannot read"):
        ScannerCalibration.load(tmp_path / "absent.json")


def test_bad_wedge_folders(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="not a folder"):
        load_wedges(tmp_path / "absent")
    d = tmp_path / "w"
    doc = write_wedges(d)
    # a box outside the image
    doc["steps"][3]["bbox_px"] = [1590, 30, 1620, 90]
    (d / "wedges.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="outside the 1600"):
        load_wedges(d)
    # an areal density that is not density × thickness
    doc = write_wedges(d)
    doc["steps"][3]["areal_density_g_cm2"] = 99.0
    (d / "wedges.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="not density × thickness"):
        load_wedges(d)
    (d / "wedges.json").write_text("{")
    with pytest.raises(CalibrationError, match="not JSON"):
        load_wedges(d)
    write_wedges(d)
    (d / "low.tiff").unlink()
    with pytest.raises(CalibrationError, match="no such file"):
        load_wedges(d)


def test_steps_in_the_wrong_boxes_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "w"
    doc = write_wedges(d)
    # every steel step points at the same (air) box: no attenuation rises with thickness
    air = doc["steps"][0]["bbox_px"]
    for s in doc["steps"]:
        if s["material"] == "steel":
            s["bbox_px"] = air
    (d / "wedges.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="'steel': only"):
        fit(load_wedges(d))


def test_unflattened_air_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "w"
    write_wedges(d)
    img = np.asarray(cv2.imread(str(d / "high.tiff"), cv2.IMREAD_UNCHANGED), dtype=np.float64)
    cv2.imwrite(str(d / "high.tiff"), (img * 0.8).astype(np.uint16))
    with pytest.raises(CalibrationError, match="air step of plastic"):
        fit(load_wedges(d))


def test_nii_atr_calibrate_writes_a_loadable_file(tmp_path: Path) -> None:
    from nii.__main__ import main

    write_wedges(tmp_path / "w")
    out = tmp_path / "scanner.json"
    assert main(["atr", "calibrate", "--wedges", str(tmp_path / "w"), "--out", str(out)]) == 0
    assert ScannerCalibration.load(out).scanner == "TEST-1"
    assert main(["atr", "calibrate", "--wedges", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert main(["atr", "calibrate", "--wedges", str(tmp_path / "w"), "--out", str(tmp_path)]) == 2
