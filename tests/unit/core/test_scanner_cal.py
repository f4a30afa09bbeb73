"""The per-scanner calibration from a step-wedge scan: fit, inverse and forward maps, errors."""
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from central.atr._calibrate import write_calibration
from core import scanner_cal
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


def _model(rho: float, z: float, r0: float = 0.80) -> tuple[float, float]:
    mu = 0.040 + 0.00012 * z
    a_hi = mu * rho * (1.0 - 0.0006 * rho)
    r = r0 + 0.035 * math.log(z) + 0.00005 * rho
    return a_hi, a_hi / r


def write_wedges(
    d: Path, noise: float = 0.002, seed: int = 1, r0: float = 0.80, **change: Any
) -> dict[str, Any]:
    """A synthetic commissioning scan folder; returns the wedges document written.

    ``r0`` sets the scanner's R = A_high / A_low (another scanner: another r0).
    """
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
            a_hi, a_lo = _model(rho, z, r0)
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


# --- nonsense commissioning scans and calibrations -----------------------------------


def _img(d: Path, name: str) -> npt.NDArray[np.float64]:
    return np.asarray(cv2.imread(str(d / f"{name}.tiff"), cv2.IMREAD_UNCHANGED), dtype=np.float64)


def test_swapped_identical_or_rescaled_energies_are_refused(tmp_path: Path) -> None:
    d = tmp_path / "w"
    write_wedges(d)
    hi, lo = (d / "high.tiff").read_bytes(), (d / "low.tiff").read_bytes()
    (d / "high.tiff").write_bytes(lo)
    (d / "low.tiff").write_bytes(hi)
    with pytest.raises(CalibrationError, match="low-energy image attenuates less") as e:
        fit(load_wedges(d))
    assert "exchange" in e.value.fix
    (d / "high.tiff").write_bytes(hi)
    (d / "low.tiff").write_bytes(hi)
    with pytest.raises(CalibrationError, match="same image"):
        fit(load_wedges(d))
    # low = high rescaled: R in range, but the noise is the high image's own
    t = _img(d, "high") / 65535.0
    cv2.imwrite(str(d / "low.tiff"), np.clip(np.rint(t**1.15 * 65535), 0, 65535).astype(np.uint16))
    with pytest.raises(CalibrationError, match="rescaled"):
        fit(load_wedges(d))
    # the same energy exported twice, each with its own noise: R ≈ 1
    write_wedges(d)
    t = _img(d, "low")
    noisy = t + np.random.default_rng(5).normal(0, 30, t.shape)
    cv2.imwrite(str(d / "high.tiff"), np.clip(noisy, 0, 65535).astype(np.uint16))
    with pytest.raises(CalibrationError, match="attenuate alike"):
        fit(load_wedges(d))


def test_a_fit_that_cannot_tell_materials_apart_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_wedges(tmp_path / "w")
    scan = load_wedges(tmp_path / "w")
    err = fit(scan).fit_error["zeff_log_rms"]
    assert 0.0 < err < scanner_cal.MAX_ZEFF_LOG_RMS
    monkeypatch.setattr(scanner_cal, "MAX_ZEFF_LOG_RMS", err / 2)
    with pytest.raises(CalibrationError, match="tell the test object's materials apart"):
        fit(scan)


@pytest.mark.parametrize(
    ("factor", "message"), [(0.1, "10× too small: thickness in cm"), (10.0, "10× too large")]
)
def test_areal_densities_in_the_wrong_unit_are_refused(
    tmp_path: Path, factor: float, message: str
) -> None:
    d = tmp_path / "w"
    doc = write_wedges(d)
    for s in doc["steps"]:
        s["thickness_mm"] *= factor
        s["areal_density_g_cm2"] = round(s["areal_density_g_cm2"] * factor, 5)
    (d / "wedges.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match=message):
        fit(load_wedges(d))


def _edit(doc: dict[str, Any], name: str, **values: Any) -> None:
    m = next(m for m in doc["materials"] if m["name"] == name)
    for k, v in values.items():
        m[k] = v(m) if callable(v) else v


def _swap_names(doc: dict[str, Any]) -> None:
    p = next(m for m in doc["materials"] if m["name"] == "plastic")
    lead = next(m for m in doc["materials"] if m["name"] == "lead")
    p["name"], lead["name"] = lead["name"], p["name"]
    p["z_eff"], lead["z_eff"] = lead["z_eff"], p["z_eff"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: _edit(d, "aluminium", z_eff=-13), r"z_eff -13 is outside \(1, 100\]"),
        (lambda d: _edit(d, "aluminium", z_eff=0.5), "outside"),
        (lambda d: _edit(d, "aluminium", z_eff="13"), "must be a number"),
        (
            lambda d: _edit(
                d, "steel", areal_density_g_cm2=lambda m: [-v for v in m["areal_density_g_cm2"]]
            ),
            "areal densities must be > 0",
        ),
        (
            lambda d: _edit(
                d, "steel", areal_density_g_cm2=lambda m: m["areal_density_g_cm2"][::-1]
            ),
            "rise step by step",
        ),
        (
            lambda d: _edit(
                d,
                "steel",
                a_high=lambda m: [10 * v for v in m["a_high"]],
                a_low=lambda m: [10 * v for v in m["a_low"]],
            ),
            "cm²/g",
        ),
        (lambda d: _edit(d, "steel", a_low=lambda m: m["a_high"]), "A_high / A_low"),
        (lambda d: _edit(d, "steel", a_low=lambda m: [2 * v for v in m["a_high"]]), "0.6"),
        (
            lambda d: _edit(
                d, "steel", a_high=lambda m: [*m["a_high"][:2], "2.07", *m["a_high"][3:]]
            ),
            "must be a number, got '2.07'",
        ),
        (lambda d: _edit(d, "steel", a_high=lambda m: [math.nan] * len(m["a_high"])), "finite"),
        (lambda d: d["noise"].update(high=[-1e-4, 1e-5]), "must be ≥ 0"),
        (lambda d: d["noise"].update(low=[0.0, math.inf]), "finite"),
        (lambda d: d["fit_error"].update(zeff_log_rms=-0.1), "must be ≥ 0"),
        (lambda d: d.update(a_max="7"), "must be a number"),
        (lambda d: d.update(scanner=""), "empty"),
        (lambda d: d.update(scanner="x" * 65), "more than 64"),
        (lambda d: d["source"].update(pixel_mm=[50, 40]), "source.pixel_mm"),
        (_swap_names, "reads lighter than"),
    ],
)
def test_hand_edited_calibrations_are_refused(
    cal: ScannerCalibration, change: Any, message: str
) -> None:
    doc = json.loads(json.dumps(cal.to_json()))
    change(doc)
    with pytest.raises(CalibrationError, match=message):
        ScannerCalibration.from_json(doc)


def test_channel_pitch_travels_with_the_calibration(cal: ScannerCalibration) -> None:
    assert cal.channel_mm == 4.0
    back = ScannerCalibration.from_json(json.loads(json.dumps(cal.to_json())))
    assert back.channel_mm == 4.0
    doc = cal.to_json()
    del doc["source"]
    assert ScannerCalibration.from_json(doc).channel_mm is None


def test_misfit_tells_another_scanners_image(tmp_path: Path, cal: ScannerCalibration) -> None:
    write_wedges(tmp_path / "b", r0=0.74)
    other = fit(load_wedges(tmp_path / "b"))
    rng = np.random.default_rng(7)
    rho = rng.uniform(5.0, 150.0, (150, 150)).astype(np.float32)
    z = rng.choice(np.array([5.0, 9.0, 13.0, 20.0, 26.0, 45.0, 82.0], dtype=np.float32), rho.shape)
    shares = {}
    for name, src in (("own", cal), ("other", other)):
        hi, lo = src.forward(rho, z)
        hi = hi + src.sigma_a(hi, "high") * rng.standard_normal(hi.shape).astype(np.float32)
        lo = lo + src.sigma_a(lo, "low") * rng.standard_normal(lo.shape).astype(np.float32)
        shares[name] = cal.misfit(hi, lo)
        assert src.misfit(hi, lo) < 0.01  # each scanner's own cargo fits its own calibration
    assert shares["own"] < 0.01
    assert shares["other"] > 0.3
    # no material information: nothing to judge, and no warning for zeros or NaN
    assert cal.misfit(np.array([0.1, 0.0, math.nan]), np.array([0.12, 0.0, 1.0])) == 0.0


@pytest.mark.parametrize(
    ("change", "message", "fix"),
    [
        (
            lambda d: d["steps"][3].update(materail=d["steps"][3].pop("material")),
            r"unknown field 'materail' in step 3 \(did you mean 'material'\?\)",
            "rename",
        ),
        (
            lambda d: d.update(stepz=d.pop("steps")),
            r"unknown field 'stepz' at the top level \(did you mean 'steps'\?\)",
            "rename",
        ),
        (
            lambda d: d["materials"]["steel"]["weight_fractions_by_Z"].update({"26": 0.5}),
            "sum to 0.52",
            "sum to 1",
        ),
        (lambda d: d.update(pixel_mm=[0.5, 0.4]), "pixel_mm.1. = 0.4 mm", "millimetres"),
        (lambda d: d["steps"][3].update(bbox_px=[50, 30, 40, 90]), "empty or reversed", "col1"),
        (lambda d: d["steps"][3].update(bbox_px=[50, 30, 50, 90]), "empty or reversed", "col1"),
        (
            lambda d: d.update(steps=[s for s in d["steps"] if s["material"] != "lead"]),
            "'lead' has no steps",
            "list lead's steps",
        ),
        (lambda d: d.update(scanner=" "), "'scanner' is empty", "--scanner-name"),
    ],
)
def test_wedges_mistakes_are_named(tmp_path: Path, change: Any, message: str, fix: str) -> None:
    d = tmp_path / "w"
    doc = write_wedges(d)
    change(doc)
    (d / "wedges.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match=message) as e:
        load_wedges(d)
    assert fix in e.value.fix


def test_calibrate_does_not_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    write_wedges(tmp_path / "w")
    out = tmp_path / "scanner.json"
    argv = ["atr", "calibrate", "--wedges", str(tmp_path / "w"), "--out", str(out)]
    out.write_text("{}")
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "{}"
    assert main([*argv, "--force"]) == 0
    assert '"replaced"' in capsys.readouterr().out
    assert ScannerCalibration.load(out).scanner == "TEST-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scanner.json", "w"]  # no lock left
    assert main([*argv, "--force", "--scanner-name", ""]) == 2
    assert "--scanner-name is empty" in capsys.readouterr().err
    assert main([*argv, "--force", "--scanner-name", "x" * 65]) == 2
    assert main([*argv, "--force", "--scanner-name", "gate\n2"]) == 2
    assert ScannerCalibration.load(out).scanner == "TEST-1"


def test_a_second_writer_of_one_out_is_refused(tmp_path: Path, cal: ScannerCalibration) -> None:
    out = tmp_path / "scanner.json"
    fd = os.open(tmp_path / ".scanner.json.lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another run holds the lock
        with pytest.raises(CalibrationError, match="another 'nii atr calibrate' is writing"):
            write_calibration(cal, out)
        assert not out.exists()
    finally:
        os.close(fd)
    assert write_calibration(cal, out) is None
    with pytest.raises(CalibrationError, match="already exists"):
        write_calibration(cal, out)
    assert write_calibration(cal, out, force=True) == "the calibration of scanner 'TEST-1'"


def test_a_read_only_target_is_named(
    tmp_path: Path, cal: ScannerCalibration, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "scanner.json"

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_text", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.raises(CalibrationError) as e:
        write_calibration(cal, out)
    assert e.value.message == f"{out}: cannot write: Read-only file system"


@pytest.mark.parametrize("model", ["l6-cdwo4-30", "l9-cdwo4-40", "l6-csi-20", "l4-cdwo4-15"])
def test_every_simulated_scanner_model_can_be_commissioned(tmp_path: Path, model: str) -> None:
    """Each model's wedge scan fits.  At 4/2.5 MeV thin lead reads as a light material (its
    photoelectric absorption of the soft low-energy beam puts its R below polyethylene's):
    those steps are reported as ambiguous, not counted as a failed fit."""
    from firmware_sim.physics._wedges import write_wedge_scan

    write_wedge_scan(tmp_path / "w", model, 11)
    cal = fit(load_wedges(tmp_path / "w"))
    err = cal.fit_error
    assert err["zeff_log_rms"] < scanner_cal.MAX_ZEFF_LOG_RMS / 2
    assert err["zeff_ambiguous_steps"] < err["zeff_steps"] / 3
    if model == "l4-cdwo4-15":
        assert err["zeff_ambiguous_steps"] >= 1
        lead = next(c for c in cal.curves if c.name == "lead")
        assert err["zeff_ambiguous_below_a"] < max(lead.a_hi)  # thick lead is still read as lead
