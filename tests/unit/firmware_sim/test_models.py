# ruff: noqa: RUF002
"""Scanner models: each simulates, the original stays as it was, the models differ measurably."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.errors import ConfigError
from firmware_sim.physics import (
    DEFAULT_MODEL,
    LIBRARY,
    SCANNER_MODELS,
    Beam,
    Box,
    DetectorModel,
    Fan,
    PhysicsSource,
    Scintillator,
    SourceModel,
    basis_fit,
    scanner_model,
    spectrum,
    transmission_exact,
)
from firmware_sim.physics._transmission import BASIS, attenuation_lookup, attenuation_table


def test_registry_has_four_distinct_models_the_original_first() -> None:
    models = list(SCANNER_MODELS.values())
    assert len(models) >= 4 and models[0] is DEFAULT_MODEL
    assert len({(m.endpoint_hi_mev, m.endpoint_lo_mev) for m in models}) >= 4
    assert {m.scintillator for m in models} == set(Scintillator)
    assert len({round(m.channel_pitch_mm, 3) for m in models}) == len(models)
    assert len({m.speed_m_s for m in models}) == len(models)
    assert len({m.depth_mm for m in models}) == len(models)


def test_the_default_model_is_the_original_scanner() -> None:
    assert DEFAULT_MODEL.source_model() == SourceModel()
    assert DEFAULT_MODEL.detector_model() == DetectorModel()
    assert DEFAULT_MODEL.fan() == Fan(1536)
    assert not DEFAULT_MODEL.variety
    assert spectrum(6.0) is spectrum(Beam(6.0))
    assert attenuation_table(4.0) is attenuation_table(DEFAULT_MODEL.beams()[1])
    a = PhysicsSource().simulate(4, 2, 96, 60)
    b = PhysicsSource.for_model(DEFAULT_MODEL.name).simulate(4, 2, 96, 60)
    for x, y in ((a.img_hi, b.img_hi), (a.img_lo, b.img_lo), (a.air_hi, b.air_hi)):
        np.testing.assert_array_equal(x, y)
    assert a.gd == b.gd and a.truth["objects"] == b.truth["objects"]


@pytest.mark.parametrize("name", list(SCANNER_MODELS))
def test_each_model_simulates(name: str) -> None:
    src = PhysicsSource.for_model(name, detector_seed=3)
    scan = src.simulate(2, 5, 64, 40)
    assert scan.img_hi.shape == scan.img_lo.shape == (40, 64)
    assert scan.img_hi.dtype == np.uint16
    assert scan.truth["scanner_model"] == name
    assert scan.truth["channel_pitch_mm"] == pytest.approx(
        SCANNER_MODELS[name].channel_pitch_mm * SCANNER_MODELS[name].channels / 64
    )
    good = scan.truth["dead_channels"] + scan.truth["hot_channels"]
    ok = np.setdiff1d(np.arange(64), good)
    assert np.all(scan.air_hi[:, ok].mean(0) > scan.dark_hi[:, ok].mean(0) + 20000)
    assert np.all(scan.air_hi[:, ok].max(0) < 65535)  # air leaves the ADC headroom


def test_unknown_model_is_a_config_error_listing_the_known() -> None:
    with pytest.raises(ConfigError) as err:
        PhysicsSource.for_model("no-such-scanner")
    assert all(name in err.value.fix for name in SCANNER_MODELS)


def test_spectra_follow_endpoint_filtration_and_detector() -> None:
    mean = {n: [float((s.energy_mev * s.weight).sum()) for s in m.spectra()] for n, m in
            SCANNER_MODELS.items()}  # fmt: skip
    assert mean["l9-cdwo4-40"][0] > mean["l6-cdwo4-30"][0] > mean["l4-cdwo4-15"][0]
    for hi, lo in mean.values():
        assert hi > lo
    # a thinner crystal stops fewer hard photons: a softer detected spectrum, same linac
    thin = spectrum(Beam(6.0, depth_mm=10.0))
    thick = spectrum(Beam(6.0, depth_mm=40.0))
    assert (thin.energy_mev * thin.weight).sum() < (thick.energy_mev * thick.weight).sum()
    # more filtration hardens the beam
    soft = spectrum(Beam(6.0, window_steel_mm=0.0))
    assert (soft.energy_mev * soft.weight).sum() < mean["l6-cdwo4-30"][0]


def _fit_error(material: str, beam: Beam, areal: float) -> float:
    """Relative error in A = −ln T of the three-material basis fit, spectrum-weighted."""
    s = spectrum(beam)
    mat = LIBRARY[material]
    mu_fit = np.asarray(basis_fit(mat).coefficients) @ np.stack(
        [b.mu_rho(s.energy_mev) for b in BASIS]
    )
    exact = -np.log(transmission_exact(beam, [(mat, areal)]))
    fit = -np.log(float(np.sum(s.weight * np.exp(-mu_fit * areal))))
    return abs(fit - exact) / exact


def test_basis_fit_holds_over_every_models_spectra() -> None:
    """The basis fit (made on 4–9 MeV CdWO₄ spectra) stays valid from 2.5 to 9 MeV.

    Measured (2026-11-30): wedge materials at most 1.6 % in A (copper, 9 MeV; 0.8 %
    on the original scanner); any library material at most 5.5 % (tin, 9 MeV;
    3.0 % on the original scanner, uranium).
    """
    worst = 0.0
    for m in SCANNER_MODELS.values():
        for beam in m.beams():
            for name in ("polyethylene", "water", "aluminium", "copper", "steel", "lead"):
                for mm in (20.0, 100.0, 300.0):
                    worst = max(worst, _fit_error(name, beam, LIBRARY[name].density * mm / 10))
            # the whole table lookup, too, on a mid-range thickness
            steel = LIBRARY["steel"]
            areal = steel.density * 15.0
            b = np.asarray(basis_fit(steel).coefficients)[:, None] * areal
            exact = -np.log(transmission_exact(beam, [(steel, areal)]))
            assert float(attenuation_lookup(beam, b)[0]) == pytest.approx(exact, rel=0.01)
    assert worst < 0.02
    everything = max(
        _fit_error(name, beam, areal)
        for m in SCANNER_MODELS.values()
        for beam in m.beams()
        for name in LIBRARY
        if name != "air"
        for areal in (5.0, 50.0, 150.0)
    )
    assert everything < 0.06


def test_dual_energy_ratio_differs_between_models_beyond_noise() -> None:
    """A_high/A_low of 100 mm steel, 9/6 against 4/2.5 MeV, from simulated counts."""
    steel = LIBRARY["steel"]
    ratios = {}
    for name in ("l9-cdwo4-40", "l4-cdwo4-15"):
        m = dataclasses.replace(SCANNER_MODELS[name], dead_fraction=0.0, hot_fraction=0.0)
        src = PhysicsSource.for_model(m)
        block = Box(steel, steel.density, "block", "cargo", False, -50, 50, 0, 4000, 0, 6000)
        scan = src.simulate_objects([block], 4000.0, 48, 40, np.random.default_rng(1))
        a = []
        for img, dark, air in ((scan.img_hi, scan.dark_hi, scan.air_hi),
                               (scan.img_lo, scan.dark_lo, scan.air_lo)):  # fmt: skip
            d = dark.mean(0)
            t = (img[5:-5, 4:-4] - d[4:-4]) / (air.mean(0) - d)[4:-4]
            a.append(-np.log(t))
        r = a[0] / a[1]  # per pixel
        ratios[name] = (float(r.mean()), float(r.std() / np.sqrt(r.size)))
    (r9, e9), (r4, e4) = ratios["l9-cdwo4-40"], ratios["l4-cdwo4-15"]
    assert abs(r9 - r4) > 10 * (e9 + e4)
    assert r9 > r4  # a harder pair of spectra separates less


def test_scanner_model_accepts_a_model_and_none() -> None:
    m = SCANNER_MODELS["l6-csi-20"]
    assert scanner_model(m) is m and scanner_model(None) is DEFAULT_MODEL
    assert m.line_pitch_mm == pytest.approx(m.speed_m_s * 1000 / m.line_rate_hz)
    assert m.fan(100).pitch_mm() == pytest.approx(m.channel_pitch_mm * m.channels / 100)
