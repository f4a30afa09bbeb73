# ruff: noqa: RUF002
"""Mass attenuation coefficients μ/ρ(E) of elements and compounds.

Values come from the committed table ``data/mu_rho.npz`` (NIST XCOM on its own
energy grid, see :mod:`firmware_sim.physics.build_tables`) and are interpolated
log-log between grid energies, as XCOM itself recommends for smooth regions.
Compounds and mixtures add their elements by weight fraction (the mixture rule
μ/ρ = Σ wᵢ (μ/ρ)ᵢ, exact for photon attenuation when binding effects are
negligible, which they are at MeV energies).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

TABLE_PATH = Path(__file__).with_name("data") / "mu_rho.npz"

SYMBOLS: tuple[str, ...] = (
    "H",
    "He",
    "Li",
    "Be",
    "B",
    "C",
    "N",
    "O",
    "F",
    "Ne",
    "Na",
    "Mg",
    "Al",
    "Si",
    "P",
    "S",
    "Cl",
    "Ar",
    "K",
    "Ca",
    "Sc",
    "Ti",
    "V",
    "Cr",
    "Mn",
    "Fe",
    "Co",
    "Ni",
    "Cu",
    "Zn",
    "Ga",
    "Ge",
    "As",
    "Se",
    "Br",
    "Kr",
    "Rb",
    "Sr",
    "Y",
    "Zr",
    "Nb",
    "Mo",
    "Tc",
    "Ru",
    "Rh",
    "Pd",
    "Ag",
    "Cd",
    "In",
    "Sn",
    "Sb",
    "Te",
    "I",
    "Xe",
    "Cs",
    "Ba",
    "La",
    "Ce",
    "Pr",
    "Nd",
    "Pm",
    "Sm",
    "Eu",
    "Gd",
    "Tb",
    "Dy",
    "Ho",
    "Er",
    "Tm",
    "Yb",
    "Lu",
    "Hf",
    "Ta",
    "W",
    "Re",
    "Os",
    "Ir",
    "Pt",
    "Au",
    "Hg",
    "Tl",
    "Pb",
    "Bi",
    "Po",
    "At",
    "Rn",
    "Fr",
    "Ra",
    "Ac",
    "Th",
    "Pa",
    "U",
)


@dataclass(frozen=True, slots=True)
class XcomTable:
    """μ/ρ of the elements Z = 1..92 on XCOM's grid (MeV, cm²/g)."""

    energy_mev: FloatArray
    atomic_mass: FloatArray
    mu_rho: FloatArray
    source: str


@functools.cache
def xcom_table() -> XcomTable:
    """Load the committed XCOM table once."""
    with np.load(TABLE_PATH) as data:
        return XcomTable(
            energy_mev=np.array(data["energy_mev"], dtype=np.float64),
            atomic_mass=np.array(data["atomic_mass"], dtype=np.float64),
            mu_rho=np.array(data["mu_rho"], dtype=np.float64),
            source=str(data["source"]),
        )


def atomic_number(element: int | str) -> int:
    """Atomic number of ``element`` given as Z or chemical symbol."""
    if isinstance(element, int):
        z = element
    else:
        try:
            z = SYMBOLS.index(element) + 1
        except ValueError:
            raise ValueError(f"unknown element symbol {element!r}") from None
    if not 1 <= z <= len(SYMBOLS):
        raise ValueError(f"atomic number {z} outside 1..92")
    return z


def mu_rho_element(element: int | str, energy_mev: npt.ArrayLike) -> FloatArray:
    """μ/ρ in cm²/g of one element at ``energy_mev`` (0.15..20 MeV), log-log interpolated."""
    table = xcom_table()
    z = atomic_number(element)
    e = np.asarray(energy_mev, dtype=np.float64)
    lo, hi = table.energy_mev[0], table.energy_mev[-1]
    if np.any(e < lo * (1 - 1e-9)) or np.any(e > hi * (1 + 1e-9)):
        raise ValueError(f"energy outside the tabulated range {lo}..{hi} MeV")
    out = np.exp(np.interp(np.log(e), np.log(table.energy_mev), np.log(table.mu_rho[z - 1])))
    return np.asarray(out, dtype=np.float64)


def _formula_mass_fractions(formula: Mapping[str, float]) -> dict[int, float]:
    table = xcom_table()
    masses = {
        atomic_number(s): n * table.atomic_mass[atomic_number(s) - 1] for s, n in formula.items()
    }
    total = sum(masses.values())
    return {z: m / total for z, m in masses.items()}


@dataclass(frozen=True, slots=True)
class Material:
    """A compound or mixture: mass fractions by element, bulk density, display class.

    ``kind`` is the class an analyst expects to see on the material map:
    ``organic`` (Z_eff < 10), ``inorganic`` (10 ≤ Z_eff < 18) or ``metal``.
    """

    name: str
    fractions: Mapping[int, float]
    density: float  # g/cm³ of the solid material
    kind: str = "organic"
    zeff: float = field(default=0.0)

    @classmethod
    def from_formula(
        cls, name: str, formula: Mapping[str, float], density: float, kind: str
    ) -> Material:
        """Build from atom counts, e.g. ``{"C": 2, "H": 4}`` for polyethylene."""
        fr = _formula_mass_fractions(formula)
        return cls(name, fr, density, kind, _zeff(fr))

    @classmethod
    def from_mass_fractions(
        cls, name: str, fractions: Mapping[str, float], density: float, kind: str
    ) -> Material:
        """Build from element mass fractions (normalised here)."""
        total = sum(fractions.values())
        fr = {atomic_number(s): w / total for s, w in fractions.items()}
        return cls(name, fr, density, kind, _zeff(fr))

    @classmethod
    def mixture(
        cls, name: str, parts: Mapping[Material, float], density: float, kind: str
    ) -> Material:
        """Mix materials by weight fraction."""
        total = sum(parts.values())
        fr: dict[int, float] = {}
        for mat, w in parts.items():
            for z, f in mat.fractions.items():
                fr[z] = fr.get(z, 0.0) + f * w / total
        return cls(name, fr, density, kind, _zeff(fr))

    def mu_rho(self, energy_mev: npt.ArrayLike) -> FloatArray:
        """μ/ρ in cm²/g by the mixture rule."""
        e = np.asarray(energy_mev, dtype=np.float64)
        out = np.zeros(e.shape, dtype=np.float64)
        for z, w in self.fractions.items():
            out += w * mu_rho_element(z, e)
        return out

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Material) and other.name == self.name


def _zeff(fractions: Mapping[int, float]) -> float:
    """Electron-weighted effective Z with the customary exponent 2.94 (Spiers)."""
    table = xcom_table()
    electrons = {z: w * z / table.atomic_mass[z - 1] for z, w in fractions.items()}
    total = sum(electrons.values())
    return float(sum((e / total) * z**2.94 for z, e in electrons.items()) ** (1 / 2.94))
