# ruff: noqa: RUF002, RUF003
"""Spectrum-weighted transmission, made fast by a three-material basis.

Exact physics is T = ∫S(E)D(E)e^(−Σμ(E)t)dE / ∫S(E)D(E)dE along each ray.  At
0.15–9 MeV every material's μ/ρ(E) is, within a fraction of a percent for
everything but the heaviest elements, a non-negative combination of the μ/ρ of
carbon, iron and lead (Compton, pair and photoelectric terms scale differently
with Z, and three basis curves span them).  So each ray is reduced to three
basis areal densities (g/cm²) and T is read from a precomputed 3-D table of
A = −ln T per source spectrum, interpolated trilinearly on square-root spaced
axes (fine near zero, where thin objects need it).  The table is exact at its
nodes; the fit error per material is kept in :attr:`BasisFit.max_rel_error`.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._attenuation import Material
from ._materials import CARBON, LEAD, STEEL
from ._spectra import (
    DETECTOR_CDWO4_MM,
    TARGET_W_MM,
    WINDOW_STEEL_MM,
    Scintillator,
    bremsstrahlung,
    detector_response,
)

FloatArray = npt.NDArray[np.float64]

BASIS: tuple[Material, Material, Material] = (CARBON, STEEL, LEAD)
#: Upper ends of the basis axes, g/cm² (beyond them nothing is left to measure).
BASIS_MAX = np.array([900.0, 700.0, 450.0])
GRID_N = 48
A_MAX = 25.0


@dataclass(frozen=True, slots=True)
class BasisFit:
    """Non-negative basis coefficients of one material and the fit's worst relative error."""

    coefficients: tuple[float, float, float]
    max_rel_error: float


def _fit_energies() -> tuple[FloatArray, FloatArray]:
    e = np.geomspace(0.2, 9.0, 120)
    w = np.zeros_like(e)
    for endpoint in (4.0, 6.0, 9.0):
        es, n = bremsstrahlung(endpoint)
        sig = n * detector_response(es)
        w += np.interp(e, es, sig / sig.max(), left=0.0, right=0.0)
    w = w / w.max() + 0.05  # keep the high-energy tail in the fit
    return e, w


@functools.lru_cache(maxsize=256)
def basis_fit(material: Material) -> BasisFit:
    """Fit μ/ρ(E) of ``material`` as a non-negative sum of the basis μ/ρ (weighted least squares).

    With three basis curves the non-negative solution is found by trying every
    subset of them and keeping the best feasible one.
    """
    e, w = _fit_energies()
    m = np.stack([b.mu_rho(e) for b in BASIS], axis=1)
    y = material.mu_rho(e)
    sw = np.sqrt(w) / y  # relative error weighting
    best: tuple[float, FloatArray] | None = None
    for k in (1, 2, 3):
        for subset in itertools.combinations(range(3), k):
            cols = list(subset)
            sol, *_ = np.linalg.lstsq(m[:, cols] * sw[:, None], y * sw, rcond=None)
            if np.any(sol < 0):
                continue
            coef = np.zeros(3)
            coef[cols] = sol
            resid = float(np.sum(((m @ coef - y) * sw) ** 2))
            if best is None or resid < best[0]:
                best = (resid, coef)
    assert best is not None  # a single basis column always gives a non-negative fit
    coef = best[1]
    rel = np.abs(m @ coef - y) / y
    return BasisFit((float(coef[0]), float(coef[1]), float(coef[2])), float(rel.max()))


def grid_axis(i: int) -> FloatArray:
    """Node positions (g/cm²) of basis axis ``i``: square-root spacing from 0 to the maximum."""
    u = np.linspace(0.0, 1.0, GRID_N)
    return np.asarray(BASIS_MAX[i] * u * u, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Beam:
    """What fixes a detector-weighted spectrum: the linac, its filtration and the detector.

    ``Beam(6.0)`` is the original scanner's high energy (2 mm W target, 5 mm
    steel window, 30 mm CdWO₄); a bare endpoint anywhere a beam is asked for
    means that.
    """

    endpoint_mev: float
    target_w_mm: float = TARGET_W_MM
    window_steel_mm: float = WINDOW_STEEL_MM
    scintillator: Scintillator = Scintillator.CDWO4
    depth_mm: float = DETECTOR_CDWO4_MM


def as_beam(beam: float | Beam) -> Beam:
    """``beam`` itself, or the original scanner's beam of that endpoint (MeV)."""
    return beam if isinstance(beam, Beam) else Beam(float(beam))


@dataclass(frozen=True, slots=True)
class Spectrum:
    """One source spectrum as the detector sees it: energies and normalised signal weights."""

    endpoint_mev: float
    energy_mev: FloatArray
    weight: FloatArray  # photons × deposited energy per bin, sums to 1
    beam: Beam | None = None


def spectrum(beam: float | Beam) -> Spectrum:
    """The detector-weighted spectrum S(E)·D(E) of a beam (or the default beam of an endpoint)."""
    return _spectrum(as_beam(beam))


@functools.cache
def _spectrum(beam: Beam) -> Spectrum:
    e, n = bremsstrahlung(beam.endpoint_mev, beam.target_w_mm, beam.window_steel_mm)
    w = n * detector_response(e, beam.depth_mm, beam.scintillator)
    return Spectrum(beam.endpoint_mev, e, w / w.sum(), beam)


def transmission_exact(beam: float | Beam, layers: list[tuple[Material, float]]) -> float:
    """T for a stack of (material, areal density g/cm²) layers, by direct integration."""
    s = spectrum(beam)
    mu = np.zeros_like(s.energy_mev)
    for mat, areal in layers:
        mu += mat.mu_rho(s.energy_mev) * areal
    return float(np.sum(s.weight * np.exp(-mu)))


def attenuation_table(beam: float | Beam) -> npt.NDArray[np.float32]:
    """A = −ln T on the basis grid (GRID_N³, float32) for one beam (cached per beam)."""
    return _attenuation_table(as_beam(beam))


@functools.cache
def _attenuation_table(beam: Beam) -> npt.NDArray[np.float32]:
    s = spectrum(beam)
    factors = [np.exp(-np.outer(grid_axis(i), BASIS[i].mu_rho(s.energy_mev))) for i in range(3)]
    t = np.einsum("e,ie,je,ke->ijk", s.weight, *factors, optimize=True)
    a = -np.log(np.maximum(t, np.exp(-A_MAX)))
    return np.ascontiguousarray(a, dtype=np.float32)


def attenuation_lookup(beam: float | Beam, basis_areal: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """A = −ln T from the table for basis areal densities of shape (3, ...); numpy reference."""
    b = np.asarray(basis_areal, dtype=np.float64)
    table = attenuation_table(beam)
    idx = []
    frac = []
    for i in range(3):
        u = np.sqrt(np.clip(b[i], 0.0, BASIS_MAX[i]) / BASIS_MAX[i]) * (GRID_N - 1)
        i0 = np.minimum(u.astype(np.int64), GRID_N - 2)
        idx.append(i0)
        frac.append(u - i0)
    out = np.zeros(b.shape[1:], dtype=np.float64)
    for di, dj, dk in itertools.product((0, 1), repeat=3):
        w = (
            (frac[0] if di else 1 - frac[0])
            * (frac[1] if dj else 1 - frac[1])
            * (frac[2] if dk else 1 - frac[2])
        )
        out += w * table[idx[0] + di, idx[1] + dj, idx[2] + dk]
    return out.astype(np.float32)
