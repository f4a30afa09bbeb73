# ruff: noqa: RUF003
"""Reference profiles of declared commodities, learned on tuning seeds (see docs/atr.md).

Written by ``nii bench atr --tune``; each feature is (mean, tolerance).
"""

from __future__ import annotations

FEATURE_NAMES: tuple[str, ...] = ("organic", "metal", "mean_a", "p90_a")
#: kg of cargo per unit of Σ A · cm² (1 / effective μ/ρ at the high energy).
MASS_SCALE: float = 35.0
MASS_SCALE_BY_COMMODITY: dict[str, float] = {
    "aluminium ingots": 23.893,
    "ceramic tiles": 23.863,
    "cigarettes": 18.848,
    "copper wire": 25.22,
    "electronics": 18.001,
    "frozen meat": 21.417,
    "fruit": 20.107,
    "glass bottles": 19.246,
    "machinery": 24.314,
    "paper": 21.774,
    "rice": 21.993,
    "scrap steel": 22.636,
    "textiles": 18.327,
    "tyres": 19.675,
}
#: Raw detector score at which a finding turns red, by category and declared commodity
#: ("*": any other); scores are divided by it so that 1.0 is red everywhere.
RED_AT: dict[str, dict[str, float]] = {
    "dense object": {
        "scrap steel": 6.581,
        "machinery": 14.511,
        "tyres": 11.524,
        "copper wire": 4.249,
        "glass bottles": 1.0,
    },
    "not empty": {"empty": 2.956},
    "gd mismatch": {
        "scrap steel": 1.0,
        "machinery": 1.0,
        "aluminium ingots": 1.0,
        "ceramic tiles": 1.0,
    },
    "high-Z object": {"copper wire": 4.629, "scrap steel": 1.524},
    "double floor": {"scrap steel": 4.55, "machinery": 2.1, "aluminium ingots": 2.45},
    "undeclared vehicle": {"machinery": 1.462},
    "impenetrable object": {"aluminium ingots": 5.069, "ceramic tiles": 5.741},
}
PROFILES: dict[str, dict[str, tuple[float, float]]] = {
    "aluminium ingots": {
        "organic": (0.074, 0.04),
        "metal": (0.1143, 0.04),
        "mean_a": (5.379, 0.2387),
        "p90_a": (10.9605, 0.25),
    },
    "ceramic tiles": {
        "organic": (0.0802, 0.04),
        "metal": (0.0953, 0.04),
        "mean_a": (5.3825, 0.1816),
        "p90_a": (10.0161, 0.25),
    },
    "cigarettes": {
        "organic": (0.8466, 0.04),
        "metal": (0.0136, 0.04),
        "mean_a": (2.4236, 0.15),
        "p90_a": (3.2525, 0.25),
    },
    "copper wire": {
        "organic": (0.0, 0.04),
        "metal": (0.5704, 0.04),
        "mean_a": (6.9346, 0.3128),
        "p90_a": (11.5119, 0.25),
    },
    "electronics": {
        "organic": (0.0032, 0.04),
        "metal": (0.0228, 0.04),
        "mean_a": (2.0594, 0.15),
        "p90_a": (2.7445, 0.25),
    },
    "frozen meat": {
        "organic": (0.9085, 0.04),
        "metal": (0.0175, 0.04),
        "mean_a": (4.6812, 0.15),
        "p90_a": (6.5989, 0.25),
    },
    "fruit": {
        "organic": (0.9009, 0.04),
        "metal": (0.022, 0.04),
        "mean_a": (3.8682, 0.15),
        "p90_a": (5.5784, 0.25),
    },
    "glass bottles": {
        "organic": (0.0109, 0.04),
        "metal": (0.0196, 0.04),
        "mean_a": (2.2537, 0.15),
        "p90_a": (3.0484, 0.25),
    },
    "machinery": {
        "organic": (0.0, 0.04),
        "metal": (0.7645, 0.04),
        "mean_a": (3.4928, 0.15),
        "p90_a": (10.322, 0.3156),
    },
    "paper": {
        "organic": (0.8745, 0.04),
        "metal": (0.028, 0.04),
        "mean_a": (4.3752, 0.1692),
        "p90_a": (6.728, 0.25),
    },
    "rice": {
        "organic": (0.8519, 0.04),
        "metal": (0.0277, 0.04),
        "mean_a": (4.4549, 0.15),
        "p90_a": (6.8244, 0.25),
    },
    "scrap steel": {
        "organic": (0.0, 0.04),
        "metal": (0.7656, 0.0531),
        "mean_a": (4.2431, 0.3614),
        "p90_a": (9.346, 1.1599),
    },
    "textiles": {
        "organic": (0.8031, 0.04),
        "metal": (0.0147, 0.04),
        "mean_a": (2.1721, 0.15),
        "p90_a": (2.8924, 0.25),
    },
    "tyres": {
        "organic": (0.7233, 0.04),
        "metal": (0.1124, 0.04),
        "mean_a": (4.4149, 0.15),
        "p90_a": (5.7143, 0.25),
    },
}
