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
        "scrap steel": 1.0,
        "machinery": 1.0,
        "aluminium ingots": 1.0,
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
}
PROFILES: dict[str, dict[str, tuple[float, float]]] = {
    "aluminium ingots": {
        "organic": (0.0742, 0.04),
        "metal": (0.1133, 0.04),
        "mean_a": (5.3938, 0.2331),
        "p90_a": (10.9617, 0.25),
    },
    "ceramic tiles": {
        "organic": (0.0797, 0.04),
        "metal": (0.0964, 0.04),
        "mean_a": (5.3651, 0.1836),
        "p90_a": (10.0223, 0.25),
    },
    "cigarettes": {
        "organic": (0.8458, 0.04),
        "metal": (0.0138, 0.04),
        "mean_a": (2.4233, 0.15),
        "p90_a": (3.2525, 0.25),
    },
    "copper wire": {
        "organic": (0.0, 0.04),
        "metal": (0.5701, 0.04),
        "mean_a": (6.9274, 0.3107),
        "p90_a": (11.5121, 0.25),
    },
    "electronics": {
        "organic": (0.0032, 0.04),
        "metal": (0.0226, 0.04),
        "mean_a": (2.0614, 0.15),
        "p90_a": (2.7464, 0.25),
    },
    "frozen meat": {
        "organic": (0.9101, 0.04),
        "metal": (0.0169, 0.04),
        "mean_a": (4.6877, 0.15),
        "p90_a": (6.6003, 0.25),
    },
    "fruit": {
        "organic": (0.8998, 0.04),
        "metal": (0.0219, 0.04),
        "mean_a": (3.8703, 0.15),
        "p90_a": (5.5781, 0.25),
    },
    "glass bottles": {
        "organic": (0.0106, 0.04),
        "metal": (0.0195, 0.04),
        "mean_a": (2.2536, 0.15),
        "p90_a": (3.0499, 0.25),
    },
    "machinery": {
        "organic": (0.0, 0.04),
        "metal": (0.7642, 0.04),
        "mean_a": (3.4822, 0.15),
        "p90_a": (10.3006, 0.2832),
    },
    "paper": {
        "organic": (0.8748, 0.04),
        "metal": (0.0278, 0.04),
        "mean_a": (4.3722, 0.1629),
        "p90_a": (6.7323, 0.25),
    },
    "rice": {
        "organic": (0.8511, 0.04),
        "metal": (0.0281, 0.04),
        "mean_a": (4.4544, 0.15),
        "p90_a": (6.8251, 0.25),
    },
    "scrap steel": {
        "organic": (0.0, 0.04),
        "metal": (0.7674, 0.0522),
        "mean_a": (4.2485, 0.3514),
        "p90_a": (9.3591, 1.141),
    },
    "textiles": {
        "organic": (0.8021, 0.04),
        "metal": (0.0152, 0.04),
        "mean_a": (2.1703, 0.15),
        "p90_a": (2.8923, 0.25),
    },
    "tyres": {
        "organic": (0.7214, 0.04),
        "metal": (0.1137, 0.04),
        "mean_a": (4.4048, 0.15),
        "p90_a": (5.7109, 0.25),
    },
}
