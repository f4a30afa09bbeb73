# ruff: noqa: RUF003
"""Reference profiles of declared commodities, learned on tuning seeds (see docs/atr.md).

Written by ``nii bench atr --tune``; each feature is (mean, tolerance).
"""

from __future__ import annotations

FEATURE_NAMES: tuple[str, ...] = ("organic", "metal", "mean_a", "p90_a")
#: kg of cargo per unit of Σ A · cm² (1 / effective μ/ρ at the high energy).
MASS_SCALE: float = 35.0
MASS_SCALE_BY_COMMODITY: dict[str, float] = {
    "aluminium ingots": 24.14,
    "ceramic tiles": 24.234,
    "cigarettes": 18.632,
    "copper wire": 25.426,
    "electronics": 17.774,
    "frozen meat": 21.308,
    "fruit": 20.187,
    "glass bottles": 18.899,
    "machinery": 24.278,
    "paper": 21.911,
    "rice": 21.603,
    "scrap steel": 23.568,
    "textiles": 17.901,
    "tyres": 19.476,
}
#: Raw detector score at which a finding turns red, by category and declared commodity
#: ("*": any other); scores are divided by it so that 1.0 is red everywhere.
RED_AT: dict[str, dict[str, float]] = {
    "dense object": {
        "tyres": 12.308,
        "machinery": 11.277,
        "copper wire": 4.358,
        "scrap steel": 6.228,
    },
    "firearm-like shape": {"tyres": 10.896, "scrap steel": 2.3},
    "undeclared vehicle": {
        "tyres": 4.692,
        "empty": 1.0,
        "machinery": 6.407,
        "electronics": 1.0,
        "fruit": 1.878,
        "ceramic tiles": 2.802,
        "copper wire": 7.682,
        "rice": 2.33,
        "cigarettes": 1.81,
        "scrap steel": 4.633,
        "frozen meat": 2.951,
        "paper": 2.354,
        "glass bottles": 1.0,
        "textiles": 1.675,
        "aluminium ingots": 2.857,
    },
    "false wall": {"tyres": 4.318},
    "not empty": {"empty": 2.917},
    "high-Z object": {"machinery": 5.716, "scrap steel": 3.963, "copper wire": 3.867},
    "gd mismatch": {"copper wire": 1.154, "scrap steel": 2.202, "paper": 1.0},
}
PROFILES: dict[str, dict[str, tuple[float, float]]] = {
    "aluminium ingots": {
        "organic": (0.0801, 0.04),
        "metal": (0.1119, 0.04),
        "mean_a": (5.5111, 0.1804),
        "p90_a": (10.9474, 0.25),
    },
    "ceramic tiles": {
        "organic": (0.1, 0.04),
        "metal": (0.084, 0.04),
        "mean_a": (5.542, 0.15),
        "p90_a": (9.895, 0.25),
    },
    "cigarettes": {
        "organic": (0.8165, 0.04),
        "metal": (0.0155, 0.04),
        "mean_a": (2.4165, 0.15),
        "p90_a": (3.2505, 0.25),
    },
    "copper wire": {
        "organic": (0.0007, 0.04),
        "metal": (0.5533, 0.04),
        "mean_a": (7.15, 0.15),
        "p90_a": (11.513, 0.25),
    },
    "electronics": {
        "organic": (0.003, 0.04),
        "metal": (0.023, 0.04),
        "mean_a": (2.0515, 0.15),
        "p90_a": (2.744, 0.25),
    },
    "frozen meat": {
        "organic": (0.928, 0.04),
        "metal": (0.0055, 0.04),
        "mean_a": (4.8115, 0.15),
        "p90_a": (6.664, 0.25),
    },
    "fruit": {
        "organic": (0.8778, 0.04),
        "metal": (0.0235, 0.04),
        "mean_a": (3.88, 0.15),
        "p90_a": (5.5968, 0.25),
    },
    "glass bottles": {
        "organic": (0.001, 0.04),
        "metal": (0.029, 0.04),
        "mean_a": (2.257, 0.15),
        "p90_a": (3.069, 0.25),
    },
    "machinery": {
        "organic": (0.0006, 0.04),
        "metal": (0.7588, 0.04),
        "mean_a": (3.4722, 0.15),
        "p90_a": (10.1586, 0.4731),
    },
    "paper": {
        "organic": (0.889, 0.04),
        "metal": (0.02, 0.04),
        "mean_a": (4.402, 0.15),
        "p90_a": (6.695, 0.25),
    },
    "rice": {
        "organic": (0.817, 0.04),
        "metal": (0.0383, 0.04),
        "mean_a": (4.3197, 0.15),
        "p90_a": (6.7253, 0.25),
    },
    "scrap steel": {
        "organic": (0.001, 0.04),
        "metal": (0.783, 0.04),
        "mean_a": (4.394, 0.15),
        "p90_a": (9.462, 0.25),
    },
    "textiles": {
        "organic": (0.78, 0.04),
        "metal": (0.021, 0.04),
        "mean_a": (2.1465, 0.15),
        "p90_a": (2.892, 0.25),
    },
    "tyres": {
        "organic": (0.706, 0.0455),
        "metal": (0.1372, 0.04),
        "mean_a": (4.406, 0.2064),
        "p90_a": (5.7222, 0.25),
    },
}
