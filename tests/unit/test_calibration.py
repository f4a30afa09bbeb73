"""Edge calibration: flat field, bad channels, attenuation, dual-energy material map."""

from __future__ import annotations

import numpy as np
import pytest

from edge.calibration import (
    DetectorCalibration,
    MaterialCalibration,
    MaterialClass,
    box_smooth,
    calibrate_scan,
)
from firmware_sim.physics import LIBRARY, Box, DetectorModel, PhysicsScan, PhysicsSource
from firmware_sim.physics._scene import CONTAINERS, container_structure

BLOCKS = {  # label: (material, thickness along the beam in mm, expected class)
    "organic": ("cellulose", 2000.0, MaterialClass.ORGANIC),
    "steel": ("steel", 150.0, MaterialClass.METAL),
    "lead": ("lead", 100.0, MaterialClass.METAL),
}


@pytest.fixture(scope="module")
def block_scan() -> PhysicsScan:
    """A 20 ft container with three large blocks inside, behind both side walls."""
    objs = container_structure(CONTAINERS["20GP"], 500.0)
    y = 1500.0
    for label, (name, thick, _) in BLOCKS.items():
        mat = LIBRARY[name]
        rho = 0.8 if name == "cellulose" else mat.density
        objs.append(
            Box(mat, rho, label, "cargo", True, -thick / 2, thick / 2, y, y + 1000, 1700, 2900)
        )
        y += 1400
    det = DetectorModel(dead_fraction=0.006, hot_fraction=0.004)
    src = PhysicsSource(detector=det, detector_seed=11)
    return src.simulate_objects(objs, 6500.0, 768, 650, np.random.default_rng(20240))


def test_bad_channels_found_and_filled(block_scan: PhysicsScan) -> None:
    cal = DetectorCalibration.from_lines(
        block_scan.dark_hi, block_scan.dark_lo, block_scan.air_hi, block_scan.air_lo
    )
    expected = set(block_scan.truth["dead_channels"]) | set(block_scan.truth["hot_channels"])
    assert expected and set(np.nonzero(cal.bad)[0]) == expected
    a_hi, a_lo = cal.attenuation(block_scan.img_hi, block_scan.img_lo)
    assert a_hi.dtype == np.float32 and a_hi.shape == block_scan.img_hi.shape
    assert np.all(np.isfinite(a_hi)) and np.all(np.isfinite(a_lo))
    # an empty stretch at the front of the scene reads as air, within noise
    assert abs(float(np.median(a_hi[:30, 100:600]))) < 0.01
    for c in expected:
        lo, hi = max(c - 1, 0), min(c + 1, a_hi.shape[1] - 1)
        assert np.allclose(a_hi[:, c], (a_hi[:, lo] + a_hi[:, hi]) / 2, atol=0.05)


def test_material_map_blocks_behind_container_wall(block_scan: PhysicsScan) -> None:
    cal = DetectorCalibration.from_lines(
        block_scan.dark_hi, block_scan.dark_lo, block_scan.air_hi, block_scan.air_lo
    )
    res = calibrate_scan(cal, block_scan.img_hi, block_scan.img_lo)
    sigma = MaterialCalibration.default().zeff_sigma(res.a_hi, res.a_lo, cal)
    for obj in block_scan.truth["objects"]:
        p = obj["pixels"]
        # the block's core: rays that cross its full thickness (the fan enters its top obliquely)
        dl = (p["line1"] - p["line0"]) // 5
        dc = (p["channel1"] - p["channel0"]) // 5
        sl = np.s_[p["line0"] + dl : p["line1"] - dl, p["channel0"] + dc : p["channel1"] - dc]
        classes = res.materials.material[sl]
        expected = BLOCKS[obj["label"]][2]
        assert float(np.mean(classes == expected)) >= 0.9, obj["label"]
        zs = np.nanmedian(sigma[sl])
        assert 0 < zs < 5, obj["label"]
    z = {o["label"]: o for o in block_scan.truth["objects"]}
    pz = z["lead"]["pixels"]
    lead_z = np.median(
        res.materials.zeff[pz["line0"] : pz["line1"], pz["channel0"] : pz["channel1"]]
    )
    assert lead_z > 50


def test_colours_and_thresholds() -> None:
    a_lo = np.full((4, 8), 0.05, dtype=np.float32)
    mm = MaterialCalibration.default().classify(a_lo, a_lo, smooth=None)
    assert np.all(mm.material == MaterialClass.NONE)
    rgb = mm.colours()
    assert rgb.shape == (4, 8, 3) and rgb.dtype == np.uint8
    deep = np.full((4, 8), 12.0, dtype=np.float32)
    assert np.all(MaterialCalibration.default().classify(deep, deep).material == 4)


def test_box_smooth_is_a_mean() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((20, 30)).astype(np.float32)
    s = box_smooth(a, 3, 5)
    assert s[10, 15] == pytest.approx(float(a[9:12, 13:18].mean()), rel=1e-5)
    assert s[0, 0] == pytest.approx(float(a[0:2, 0:3].mean()), rel=1e-5)


def test_fit_from_wedges_reproduces_default() -> None:
    d = MaterialCalibration.default()
    grid = np.asarray(d.a_lo_grid)
    samples = {z: (grid, grid * np.asarray(r)) for z, r in d.curves.items()}
    fitted = MaterialCalibration.fit(samples)
    for z in d.curves:
        np.testing.assert_allclose(fitted.curves[z], d.curves[z], rtol=1e-6)


def test_shape_mismatch_is_reported() -> None:
    cal = DetectorCalibration.from_levels(np.zeros((2, 4)), np.full((2, 4), 1000.0))
    with pytest.raises(ValueError, match="expected"):
        cal.attenuation(np.zeros((3, 5), np.uint16), np.zeros((3, 5), np.uint16))
