# ruff: noqa: RUF002
"""The material library: elements and compounds the scenes are built from.

Compositions are textbook stoichiometry or, for mixtures such as soft tissue,
the ICRU-44 style element fractions rounded to the figures that matter at MeV
energies (where μ/ρ depends on Z/A and, through pair production, on Z²/A).
"""

from __future__ import annotations

from ._attenuation import Material

AIR = Material.from_mass_fractions("air", {"N": 0.755, "O": 0.232, "Ar": 0.013}, 0.0012, "none")
WATER = Material.from_formula("water", {"H": 2, "O": 1}, 1.0, "organic")
POLYETHYLENE = Material.from_formula("polyethylene", {"C": 2, "H": 4}, 0.94, "organic")
CELLULOSE = Material.from_formula("cellulose", {"C": 6, "H": 10, "O": 5}, 1.5, "organic")
SOFT_TISSUE = Material.from_mass_fractions(
    "soft tissue",
    {
        "H": 0.102,
        "C": 0.143,
        "N": 0.034,
        "O": 0.708,
        "Na": 0.002,
        "P": 0.003,
        "S": 0.003,
        "Cl": 0.002,
        "K": 0.003,
    },
    1.05,
    "organic",
)
RUBBER = Material.from_mass_fractions(
    "tyre rubber", {"C": 0.86, "H": 0.08, "S": 0.02, "Zn": 0.02, "O": 0.02}, 1.15, "organic"
)
COCAINE = Material.from_formula("cocaine", {"C": 17, "H": 21, "N": 1, "O": 4}, 1.2, "organic")
TOBACCO = Material.mixture("tobacco", {CELLULOSE: 0.85, WATER: 0.15}, 1.2, "organic")
PVC = Material.from_formula("pvc", {"C": 2, "H": 3, "Cl": 1}, 1.38, "organic")
SILICA = Material.from_formula("silica", {"Si": 1, "O": 2}, 2.2, "inorganic")
GLASS = Material.from_mass_fractions(
    "soda-lime glass",
    {"O": 0.46, "Si": 0.34, "Na": 0.10, "Ca": 0.07, "Mg": 0.02, "Al": 0.01},
    2.5,
    "inorganic",
)
CERAMIC = Material.from_mass_fractions(
    "ceramic tile",
    {"O": 0.48, "Si": 0.30, "Al": 0.12, "Ca": 0.04, "Fe": 0.03, "K": 0.03},
    2.3,
    "inorganic",
)
ALUMINIUM = Material.from_formula("aluminium", {"Al": 1}, 2.70, "inorganic")
STEEL = Material.from_mass_fractions("steel", {"Fe": 0.985, "C": 0.005, "Mn": 0.01}, 7.85, "metal")
COPPER = Material.from_formula("copper", {"Cu": 1}, 8.96, "metal")
TIN = Material.from_formula("tin", {"Sn": 1}, 7.29, "metal")
TUNGSTEN = Material.from_formula("tungsten", {"W": 1}, 19.3, "metal")
LEAD = Material.from_formula("lead", {"Pb": 1}, 11.35, "metal")
GOLD = Material.from_formula("gold", {"Au": 1}, 19.32, "metal")
URANIUM = Material.from_formula("uranium", {"U": 1}, 19.05, "metal")
CARBON = Material.from_formula("carbon", {"C": 1}, 2.0, "organic")
PLYWOOD = Material.mixture("plywood", {CELLULOSE: 0.9, WATER: 0.1}, 0.7, "organic")
# Scintillator densities: CdWO4 7.9 g/cm³ (crystal makers' data, e.g. Crylink "CdWO4
# scintillator" product data, scintillator-crylink.com); CsI(Tl) 4.51-4.53 g/cm³ (makers'
# data, e.g. PAM-XIAMEN "CsI scintillation crystal" properties table, powerwaywafer.com).
# The thallium dopant (~0.1 %) is left out of CsI.
CDWO4 = Material.from_formula("CdWO4", {"Cd": 1, "W": 1, "O": 4}, 7.9, "metal")
CSI = Material.from_formula("CsI", {"Cs": 1, "I": 1}, 4.51, "metal")
ELECTRONICS = Material.mixture(
    "electronics mix",
    {POLYETHYLENE: 0.45, GLASS: 0.2, ALUMINIUM: 0.15, COPPER: 0.12, STEEL: 0.08},
    1.8,
    "inorganic",
)
COPPER_CABLE = Material.mixture("copper cable", {COPPER: 0.75, PVC: 0.25}, 4.0, "metal")

LIBRARY: dict[str, Material] = {
    m.name: m
    for m in (
        AIR,
        WATER,
        POLYETHYLENE,
        CELLULOSE,
        SOFT_TISSUE,
        RUBBER,
        COCAINE,
        TOBACCO,
        PVC,
        SILICA,
        GLASS,
        CERAMIC,
        ALUMINIUM,
        STEEL,
        COPPER,
        TIN,
        TUNGSTEN,
        LEAD,
        GOLD,
        URANIUM,
        CARBON,
        PLYWOOD,
        CDWO4,
        ELECTRONICS,
        COPPER_CABLE,
    )
}
