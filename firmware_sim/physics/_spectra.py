# ruff: noqa: RUF002
"""Linac bremsstrahlung spectra and the detector's energy response.

Spectrum model (an assumption, documented here because no vendor publishes
theirs): the thick-target bremsstrahlung photon-number spectrum of Kramers
(H. A. Kramers, Phil. Mag. 46 (1923) 836), dN/dE ∝ (E₀ − E)/E for an electron
beam of endpoint energy E₀, hardened by the filtration every cargo linac has:
the rest of the tungsten target (2 mm W) and the beam window and collimator
(taken as 5 mm of steel).  Forward-peaked MeV spectra are somewhat harder than
Kramers' (Schiff's thin-target formula); the filtration makes up part of the
difference.  Mean energies come out near E₀/3, as published for 6 and 9 MeV
cargo linacs.

Detector model: an energy-integrating CdWO₄ scintillator 30 mm deep along the
beam.  The signal a photon of energy E adds is its deposited energy,
approximated as E·(1 − e^(−μ(E) t)) (all interacting energy stays in the
crystal; escape of annihilation photons and Compton-scattered photons is
ignored, which overestimates deposition at high E by a few percent).  Other
scanner models (:mod:`firmware_sim.physics._models`) change the filtration, the
scintillator (:class:`Scintillator`) and its depth; the same approximation holds.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import numpy.typing as npt

from ._attenuation import Material, mu_rho_element
from ._materials import CDWO4, CSI, STEEL

FloatArray = npt.NDArray[np.float64]

E_MIN_MEV = 0.15
N_ENERGIES = 240
TARGET_W_MM = 2.0
WINDOW_STEEL_MM = 5.0
DETECTOR_CDWO4_MM = 30.0


class Scintillator(StrEnum):
    """Detector crystal of a scanner's array (densities and sources in ``_materials``)."""

    CDWO4 = "CdWO4"
    CSI = "CsI(Tl)"


#: The material of each scintillator.
SCINTILLATORS: dict[Scintillator, Material] = {Scintillator.CDWO4: CDWO4, Scintillator.CSI: CSI}


def energy_grid(endpoint_mev: float, n: int = N_ENERGIES) -> FloatArray:
    """Log-spaced bin centres from 0.15 MeV up to just below the endpoint."""
    edges = np.geomspace(E_MIN_MEV, endpoint_mev, n + 1)
    return np.sqrt(edges[:-1] * edges[1:])


def energy_widths(endpoint_mev: float, n: int = N_ENERGIES) -> FloatArray:
    """Widths of the bins of :func:`energy_grid`."""
    edges = np.geomspace(E_MIN_MEV, endpoint_mev, n + 1)
    return np.diff(edges)


def bremsstrahlung(
    endpoint_mev: float,
    target_w_mm: float = TARGET_W_MM,
    window_steel_mm: float = WINDOW_STEEL_MM,
    n: int = N_ENERGIES,
) -> tuple[FloatArray, FloatArray]:
    """(energies MeV, photons per bin summing to 1) of a filtered Kramers spectrum."""
    e = energy_grid(endpoint_mev, n)
    de = energy_widths(endpoint_mev, n)
    dn = np.clip(endpoint_mev - e, 0.0, None) / e * de
    w = mu_rho_element("W", e) * 19.3 * target_w_mm / 10.0
    fe = STEEL.mu_rho(e) * STEEL.density * window_steel_mm / 10.0
    dn = dn * np.exp(-(w + fe))
    return e, dn / dn.sum()


def detector_response(
    energy_mev: npt.ArrayLike,
    depth_mm: float = DETECTOR_CDWO4_MM,
    scintillator: Scintillator = Scintillator.CDWO4,
) -> FloatArray:
    """Mean signal (MeV deposited) per incident photon of energy E in the scintillator.

    Args:
        energy_mev: photon energies, MeV, any shape (0.15–20 MeV, the XCOM table's range).
        depth_mm: crystal depth along the beam, mm.
        scintillator: the crystal.

    Returns:
        Deposited energy per incident photon, MeV, the shape of ``energy_mev``.
    """
    e = np.asarray(energy_mev, dtype=np.float64)
    mat = SCINTILLATORS[scintillator]
    mu = mat.mu_rho(e) * mat.density * depth_mm / 10.0
    return np.asarray(e * (1.0 - np.exp(-mu)), dtype=np.float64)


def mean_energy(
    endpoint_mev: float, target_w_mm: float = TARGET_W_MM, window_steel_mm: float = WINDOW_STEEL_MM
) -> float:
    """Photon-number mean energy of the filtered spectrum, MeV."""
    e, n = bremsstrahlung(endpoint_mev, target_w_mm, window_steel_mm)
    return float((e * n).sum())
