# ruff: noqa: RUF003
"""Reference profiles of declared commodities, learned on tuning seeds (see docs/atr.md).

Written by ``nii bench atr --tune``; each feature is (mean, tolerance).
"""

from __future__ import annotations

FEATURE_NAMES: tuple[str, ...] = ("organic", "metal", "mean_a", "p90_a")
#: kg of cargo per unit of Σ A · cm² (1 / effective μ/ρ at the high energy).
MASS_SCALE: float = 35.0
PROFILES: dict[str, dict[str, tuple[float, float]]] = {}
