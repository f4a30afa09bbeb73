"""Reference profiles of declared commodities, learned on tuning seeds (see docs/atr.md).

Written by ``nii bench atr --tune``; each feature is (mean, tolerance).
"""

from __future__ import annotations

FEATURE_NAMES: tuple[str, ...] = ("organic", "metal", "mean_a", "p90_a")
#: Raw detector score at which a finding turns red, by category and declared commodity
#: ("*": any other); scores are divided by it so that 1.0 is red everywhere.
RED_AT: dict[str, dict[str, float]] = {
    "not empty": {"empty": 2.956},
    "gd mismatch": {
        "machinery": 1.04,
        "scrap steel": 1.0,
        "aluminium ingots": 1.0,
        "copper wire": 1.0,
        "electronics": 1.0,
        "ceramic tiles": 1.0,
    },
    "double floor": {"scrap steel": 4.55, "machinery": 2.1, "aluminium ingots": 2.45},
    "undeclared vehicle": {"machinery": 1.462},
    "impenetrable object": {"aluminium ingots": 5.069, "ceramic tiles": 5.744},
    "dense object": {
        "scrap steel": 13.162,
        "machinery": 29.023,
        "tyres": 20.141,
        "copper wire": 5.472,
        "glass bottles": 1.0,
    },
    "high-Z object": {"copper wire": 4.626, "scrap steel": 2.988},
    "firearm-like shape": {"scrap steel": 2.546},
}
PROFILES: dict[str, dict[str, tuple[float, float]]] = {
    "aluminium ingots": {
        "organic": (0.0759, 0.04),
        "metal": (0.1055, 0.04),
        "mean_a": (5.4857, 0.1713),
        "p90_a": (10.9964, 0.25),
    },
    "ceramic tiles": {
        "organic": (0.0805, 0.04),
        "metal": (0.0887, 0.04),
        "mean_a": (5.4403, 0.15),
        "p90_a": (9.9258, 0.25),
    },
    "cigarettes": {
        "organic": (0.8435, 0.04),
        "metal": (0.014, 0.04),
        "mean_a": (2.417, 0.15),
        "p90_a": (3.2531, 0.25),
    },
    "copper wire": {
        "organic": (0.0, 0.04),
        "metal": (0.568, 0.04),
        "mean_a": (6.9759, 0.2698),
        "p90_a": (11.5137, 0.25),
    },
    "electronics": {
        "organic": (0.003, 0.04),
        "metal": (0.021, 0.04),
        "mean_a": (2.0547, 0.15),
        "p90_a": (2.7407, 0.25),
    },
    "frozen meat": {
        "organic": (0.9107, 0.04),
        "metal": (0.0164, 0.04),
        "mean_a": (4.7038, 0.15),
        "p90_a": (6.6132, 0.25),
    },
    "fruit": {
        "organic": (0.907, 0.04),
        "metal": (0.0192, 0.04),
        "mean_a": (3.8849, 0.15),
        "p90_a": (5.5817, 0.25),
    },
    "glass bottles": {
        "organic": (0.0214, 0.04),
        "metal": (0.021, 0.04),
        "mean_a": (2.2552, 0.15),
        "p90_a": (3.0578, 0.25),
    },
    "machinery": {
        "organic": (0.0, 0.04),
        "metal": (0.7622, 0.04),
        "mean_a": (3.4803, 0.15),
        "p90_a": (10.2328, 0.3284),
    },
    "paper": {
        "organic": (0.8792, 0.04),
        "metal": (0.0251, 0.04),
        "mean_a": (4.4045, 0.1602),
        "p90_a": (6.7552, 0.25),
    },
    "rice": {
        "organic": (0.8603, 0.04),
        "metal": (0.0233, 0.04),
        "mean_a": (4.4744, 0.15),
        "p90_a": (6.8144, 0.25),
    },
    "scrap steel": {
        "organic": (0.0, 0.04),
        "metal": (0.7628, 0.0585),
        "mean_a": (4.2232, 0.4029),
        "p90_a": (9.3424, 1.2303),
    },
    "textiles": {
        "organic": (0.7994, 0.04),
        "metal": (0.0146, 0.04),
        "mean_a": (2.1667, 0.15),
        "p90_a": (2.8955, 0.25),
    },
    "tyres": {
        "organic": (0.7306, 0.04),
        "metal": (0.1035, 0.04),
        "mean_a": (4.4484, 0.1688),
        "p90_a": (5.7343, 0.25),
    },
}
