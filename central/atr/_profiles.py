# ruff: noqa: RUF003
"""Reference profiles of declared commodities, learned on tuning seeds (see docs/atr.md).

Written by ``nii bench atr --tune``; each feature is (mean, tolerance).
"""

from __future__ import annotations

FEATURE_NAMES: tuple[str, ...] = ("organic", "metal", "mean_a", "p90_a")
#: kg of cargo per unit of Σ A · cm² (1 / effective μ/ρ at the high energy).
MASS_SCALE: float = 35.0
MASS_SCALE_BY_COMMODITY: dict[str, float] = {
    "aluminium ingots": 24.087,
    "ceramic tiles": 23.813,
    "cigarettes": 18.761,
    "copper wire": 24.942,
    "electronics": 17.921,
    "frozen meat": 21.394,
    "fruit": 20.107,
    "glass bottles": 19.194,
    "machinery": 24.257,
    "paper": 21.877,
    "rice": 21.971,
    "scrap steel": 23.419,
    "textiles": 18.271,
    "tyres": 19.599,
}
#: Raw detector score at which a finding turns red, by category and declared commodity
#: ("*": any other); scores are divided by it so that 1.0 is red everywhere.
RED_AT: dict[str, dict[str, float]] = {
    "dense object": {
        "scrap steel": 6.232,
        "machinery": 12.332,
        "tyres": 12.308,
        "copper wire": 4.358,
    },
    "not empty": {"empty": 2.956},
    "high-Z object": {"copper wire": 4.568, "machinery": 5.716, "scrap steel": 3.963},
    "gd mismatch": {
        "aluminium ingots": 1.0,
        "machinery": 1.0,
        "copper wire": 1.154,
        "scrap steel": 2.202,
        "paper": 1.0,
    },
    "undeclared vehicle": {
        "frozen meat": 1.0,
        "aluminium ingots": 2.85,
        "paper": 2.225,
        "rice": 2.296,
        "scrap steel": 4.628,
        "machinery": 6.792,
        "ceramic tiles": 2.989,
        "tyres": 4.683,
        "copper wire": 7.797,
        "fruit": 1.823,
    },
    "firearm-like shape": {
        "scrap steel": 3.058,
        "machinery": 3.486,
        "tyres": 9.257,
        "glass bottles": 1.0,
    },
}
PROFILES: dict[str, dict[str, tuple[float, float]]] = {
    "aluminium ingots": {
        "organic": (0.0757, 0.04),
        "metal": (0.1081, 0.04),
        "mean_a": (5.4845, 0.1613),
        "p90_a": (10.9881, 0.25),
    },
    "ceramic tiles": {
        "organic": (0.0789, 0.04),
        "metal": (0.0981, 0.04),
        "mean_a": (5.3425, 0.1675),
        "p90_a": (10.0117, 0.25),
    },
    "cigarettes": {
        "organic": (0.8422, 0.04),
        "metal": (0.0151, 0.04),
        "mean_a": (2.4192, 0.15),
        "p90_a": (3.2528, 0.25),
    },
    "copper wire": {
        "organic": (0.0, 0.04),
        "metal": (0.5691, 0.04),
        "mean_a": (6.9213, 0.2891),
        "p90_a": (11.5132, 0.25),
    },
    "electronics": {
        "organic": (0.0031, 0.04),
        "metal": (0.0225, 0.04),
        "mean_a": (2.0615, 0.15),
        "p90_a": (2.7468, 0.25),
    },
    "frozen meat": {
        "organic": (0.9117, 0.04),
        "metal": (0.0166, 0.04),
        "mean_a": (4.7042, 0.15),
        "p90_a": (6.6099, 0.25),
    },
    "fruit": {
        "organic": (0.9007, 0.04),
        "metal": (0.0214, 0.04),
        "mean_a": (3.8779, 0.15),
        "p90_a": (5.5793, 0.25),
    },
    "glass bottles": {
        "organic": (0.0137, 0.04),
        "metal": (0.0204, 0.04),
        "mean_a": (2.2541, 0.15),
        "p90_a": (3.056, 0.25),
    },
    "machinery": {
        "organic": (0.0, 0.04),
        "metal": (0.7632, 0.04),
        "mean_a": (3.4617, 0.15),
        "p90_a": (10.2267, 0.2508),
    },
    "paper": {
        "organic": (0.8769, 0.04),
        "metal": (0.0272, 0.04),
        "mean_a": (4.3837, 0.15),
        "p90_a": (6.7584, 0.25),
    },
    "rice": {
        "organic": (0.854, 0.04),
        "metal": (0.0274, 0.04),
        "mean_a": (4.4624, 0.15),
        "p90_a": (6.8201, 0.25),
    },
    "scrap steel": {
        "organic": (0.0, 0.04),
        "metal": (0.7699, 0.0539),
        "mean_a": (4.2407, 0.3606),
        "p90_a": (9.3818, 1.1523),
    },
    "textiles": {
        "organic": (0.7976, 0.04),
        "metal": (0.017, 0.04),
        "mean_a": (2.165, 0.15),
        "p90_a": (2.8937, 0.25),
    },
    "tyres": {
        "organic": (0.7216, 0.04),
        "metal": (0.1122, 0.04),
        "mean_a": (4.4079, 0.1548),
        "p90_a": (5.7177, 0.25),
    },
}
