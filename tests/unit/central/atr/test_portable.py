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


def _commission(tmp_path_factory: pytest.TempPathFactory, model: str) -> ScannerCalibration:
    """``model``'s calibration, fitted on its simulated commissioning scan."""
    d: Path = tmp_path_factory.mktemp("wedges") / model
    write_wedge_scan(d, model, 3)
    return fit(load_wedges(d))


def _clean_scan(
    model: str, seed: int, scan_id: int, commodity: str, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, tuple[float, float], dict[str, object]]:
    """A truthful load of ``commodity`` simulated on ``model`` (channels, lines = ``size``):
    attenuations, pixel size (mm) and GD."""
    s = PhysicsSource.for_model(model).simulate(
        seed, scan_id, *size, commodity=commodity, concealment="", lie=False
    )
    det = DetectorCalibration.from_lines(s.dark_hi, s.dark_lo, s.air_hi, s.air_lo)
    hi, lo = det.attenuation(s.img_hi, s.img_lo)
    return hi, lo, (s.truth["line_pitch_mm"], s.truth["channel_pitch_mm"]), s.gd


@pytest.fixture(scope="module")
def cal(tmp_path_factory: pytest.TempPathFactory) -> ScannerCalibration:
    return _commission(tmp_path_factory, MODEL)


def test_truthful_load_weighs_what_it_is_declared(cal: ScannerCalibration) -> None:
    hi, lo, px, gd = _clean_scan(MODEL, 51, 1, "paper", (650, 1600))
    with_cal = analyze(hi, lo, *px, gd, scanner=cal)
    assert with_cal.gd_checks["calibrated"] is True
    assert 0.85 < with_cal.gd_checks["mass_ratio"] < 1.15
    assert with_cal.verdict != "red", [f.reason for f in with_cal.findings]
    # uncalibrated: the reference scanner is assumed and the GD can at most be doubted
    without = analyze(hi, lo, *px, gd)
    assert without.gd_checks["calibrated"] is False
    assert all(f.level != "red" for f in without.findings if f.category == "gd mismatch")
    assert np.isfinite(without.gd_checks["estimated_cargo_kg"])


LOW_ENERGY = "l4-cdwo4-15"  # 4/2.5 MeV, 15 mm CdWO4, low dose: the least penetration


@pytest.fixture(scope="module")
def cal_low(tmp_path_factory: pytest.TempPathFactory) -> ScannerCalibration:
    return _commission(tmp_path_factory, LOW_ENERGY)


def test_beyond_a_scanners_range_is_opaque_not_organic(cal_low: ScannerCalibration) -> None:
    """Thick steel past a 4 MeV scanner's range: its last photons' ratio is noise, biased
    low by the detector's floor.  The material map calls it impenetrable, with no Z_eff,
    never organic: scrap steel was red as 'organic in metal cargo' before."""
    from central.atr._analyze import material_map
    from central.atr._physical import opaque_lo, to_physical
    from core.calibration import MaterialClass

    steel = next(c for c in cal_low.curves if c.name == "steel")
    lim = opaque_lo(cal_low, 9)
    assert lim >= cal_low.a_lo_max
    rng = np.random.default_rng(2)
    a_lo = np.full((60, 60), lim + 0.8, np.float32)
    # the noisy ratio of a nearly opaque pixel, well below steel's and plastic's
    r = steel.a_hi[-1] / steel.a_lo[-1] - 0.03 + rng.normal(0, 0.01, a_lo.shape)
    phys = to_physical((a_lo * r).astype(np.float32), a_lo, cal_low, 9)
    assert phys.opaque is not None and phys.opaque.all()
    mm = material_map(phys)
    assert (mm.material == int(MaterialClass.IMPENETRABLE)).all()
    assert (mm.zeff == 0).all()
    # within the scanner's range the same map reads steel as metal
    inside = np.full((60, 60), 3.0, np.float32)
    r_steel = float(np.interp(3.0, steel.a_lo, np.divide(steel.a_hi, steel.a_lo)))
    phys = to_physical(inside * r_steel, inside, cal_low, 9)
    assert phys.opaque is not None and not phys.opaque.any()
    assert np.mean(material_map(phys).material == int(MaterialClass.METAL)) > 0.9


def test_scrap_steel_on_a_4_mev_scanner_is_not_organic_in_metal(
    cal_low: ScannerCalibration,
) -> None:
    hi, lo, px, gd = _clean_scan(LOW_ENERGY, 17, 3, "scrap steel", (900, 2600))
    v = analyze(hi, lo, *px, gd, scanner=cal_low)
    organic = [f for f in v.findings if f.category == "organic in metal cargo"]
    assert all(f.level != "red" for f in organic), [f.reason for f in organic]
    assert not any(f.category == "high-Z object" for f in v.findings)


def test_a_load_opaque_only_to_a_short_range_scanner_is_yellow_not_red(
    cal_low: ScannerCalibration,
) -> None:
    """A 4 MeV scanner with a thin detector does not see through a pallet of frozen meat
    that the reference scanner sees through: the verdict says the image cannot clear those
    regions (yellow), and raises no impenetrable-object alarm for them."""
    from central.atr._physical import reach, reference, short_range

    assert short_range(cal_low, 9)
    assert not short_range(reference(), 9)
    assert reach(cal_low)[0] < reach(reference())[0]
    hi, lo, px, gd = _clean_scan(LOW_ENERGY, 5, 0, "frozen meat", (900, 2600))
    v = analyze(hi, lo, *px, gd, scanner=cal_low)
    imp = [f for f in v.findings if f.category == "impenetrable object"]
    assert imp, "the opaque pallets are said"
    assert all(f.level == "yellow" and "cannot clear" in f.reason for f in imp)
    assert v.verdict != "red", [f.reason for f in v.findings]
