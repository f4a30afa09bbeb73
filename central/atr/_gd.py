"""Goods Declaration consistency: fill, mass, material mix and commodity against the GD.

Load mass comes from integrated attenuation: Σ A · pixel area / (μ/ρ) is the
mass the beam crossed, with μ/ρ calibrated on the simulator's known cargo
(``MASS_PER_A``).  The commodity check compares the image's material mix and
apparent density with the declared commodity's reference profile (learned on
tuning seeds, ``_profiles.PROFILES``) and says which commodity the image looks
like instead.
"""
# ruff: noqa: RUF002

from __future__ import annotations

from typing import Any

import numpy as np

from core.calibration import MaterialClass

from ._containers import ContainerModel
from ._model import Category, Finding, Level, level_of
from ._profiles import FEATURE_NAMES, MASS_SCALE, MASS_SCALE_BY_COMMODITY, PROFILES
from .detectors import Scene

#: Declared commodities whose load is metal (the host of "organic in metal cargo").
METAL_COMMODITIES = frozenset({"machinery", "scrap steel", "copper wire"})
#: Attenuation of the empty container's walls, subtracted before integrating.
WALL_BASE_A = 0.12
#: Share of the load that is metal or impenetrable from which it is metal cargo (declared
#: metal: METAL_SHARE_DECLARED; metal loads on the tuning seeds show 0.45 and more, the
#: false declarations of metal 0.37 and less).
METAL_SHARE = 0.5
METAL_SHARE_DECLARED = 0.42
#: Declared empty but more than this fraction of the interior holds something.
EMPTY_FILL = 0.02
#: Fill fraction from which a container declared empty holds a load (empty ones show
#: 0.08 to 0.15 on the tuning seeds, loaded ones 0.24 and more).
LOADED_FILL = 0.2


def features(sc: Scene) -> dict[str, float]:
    """Image features of the load: fill, material mix, apparent density, mass."""
    bl, bc = sc.frame.px_mm
    occ = sc.occupied
    n = max(1, int(occ.sum()))
    mat = sc.material[occ]
    a_occ = sc.a[occ]
    mass_sum = float(np.clip(sc.a - WALL_BASE_A, 0.0, None).sum()) * bl * bc / 100.0
    fill = float(occ.mean()) if occ.size else 0.0
    return {
        "fill": fill,
        "organic": float(np.sum(mat == int(MaterialClass.ORGANIC))) / n,
        "inorganic": float(np.sum(mat == int(MaterialClass.INORGANIC))) / n,
        "metal": float(np.sum(mat == int(MaterialClass.METAL))) / n,
        "impenetrable": float(np.sum(mat == int(MaterialClass.IMPENETRABLE))) / n,
        "mean_a": float(a_occ.mean()) if a_occ.size else 0.0,
        "p90_a": float(np.percentile(a_occ, 90)) if a_occ.size else 0.0,
        "mass_kg": mass_sum * MASS_SCALE / 1000.0,
        "mass_index": mass_sum,
    }


def _commodity_distance(feat: dict[str, float], name: str) -> float:
    prof = PROFILES.get(name)
    if prof is None:
        return 0.0
    d = 0.0
    for k in FEATURE_NAMES:
        mu, sd = prof[k]
        d = max(d, abs(feat[k] - mu) / sd)
    return d


def gd_consistency(
    sc: Scene, gd: dict[str, Any], model: ContainerModel
) -> tuple[dict[str, Any], list[Finding], bool]:
    """Compare the image with the GD; returns the checks, their findings and 'metal cargo'."""
    feat = features(sc)
    declared = str(gd.get("declared_commodity", "") or "")
    if declared in MASS_SCALE_BY_COMMODITY:
        feat["mass_kg"] *= MASS_SCALE_BY_COMMODITY[declared] / MASS_SCALE
    checks: dict[str, Any] = {
        "estimated_cargo_kg": round(feat["mass_kg"]),
        "fill_fraction": round(feat["fill"], 3),
        "fill_volume_m3": round(feat["fill"] * model.inner_volume_m3(), 1),
        "mean_attenuation": round(feat["mean_a"], 3),
        "p90_attenuation": round(feat["p90_a"], 3),
        "material_mix": {
            k: round(feat[k], 3) for k in ("organic", "inorganic", "metal", "impenetrable")
        },
    }
    findings: list[Finding] = []
    whole = (0, 0, sc.a.shape[0], sc.a.shape[1])
    prof_metal = declared in METAL_COMMODITIES
    # metal cargo is what the image shows: declared metal that shows as glass, tiles or
    # tyres is a false declaration, and its goods are no packages hidden in metal
    metal_share = feat["metal"] + feat["impenetrable"]
    metal_cargo = metal_share > (METAL_SHARE_DECLARED if prof_metal else METAL_SHARE)
    if not gd:
        return checks, findings, metal_cargo
    checks["declared_commodity"] = declared
    if declared == "empty":
        score = feat["fill"] / (EMPTY_FILL * 1.5)
        checks["empty_verified"] = score < 0.5
        if feat["fill"] >= LOADED_FILL:
            # a load, not a few things left behind: its objects are judged as in the
            # commodity it looks like (a dense part of machinery is no concealment)
            checks["looks_like"] = min(PROFILES, key=lambda c: _commodity_distance(feat, c))
        if level_of(score) != Level.GREEN:
            occ = np.nonzero(sc.occupied.any(axis=1))[0]
            box = (int(occ[0]), 0, int(occ[-1]) + 1, sc.a.shape[1]) if occ.size else whole
            findings.append(
                sc.finding(
                    Category.NOT_EMPTY,
                    score,
                    f"declared empty, {100 * feat['fill']:.0f} %% of the interior holds goods"
                    f" (~{feat['mass_kg'] / 1000:.1f} t)".replace("%%", "%"),
                    box,
                )
            )
        return checks, findings, metal_cargo
    gross = gd.get("gross_weight_kg")
    if isinstance(gross, (int, float)) and gross > 0:
        cargo = max(0.0, float(gross) - model.tare_kg)
        checks["declared_cargo_kg"] = round(cargo)
        ratio = (feat["mass_kg"] + 300.0) / (cargo + 300.0)
        checks["mass_ratio"] = round(ratio, 2)
        score = (ratio - 1.0) / 0.22
        if level_of(score) != Level.GREEN:
            findings.append(
                sc.finding(
                    Category.GD_MISMATCH,
                    score,
                    f"declared {float(gross) / 1000:.1f} t gross, image shows"
                    f" {(feat['mass_kg'] + model.tare_kg) / 1000:.1f} t",
                    whole,
                )
            )
    if declared in PROFILES:
        dist = _commodity_distance(feat, declared)
        checks["commodity_distance"] = round(dist, 2)
        best = min(PROFILES, key=lambda c: _commodity_distance(feat, c))
        checks["looks_like"] = best
        score = dist / 4.0
        if level_of(score) != Level.GREEN:
            mix = max(("organic", "inorganic", "metal"), key=lambda k: feat[k])
            findings.append(
                sc.finding(
                    Category.GD_MISMATCH,
                    score,
                    f"declared {declared}, image shows {100 * feat[mix]:.0f} % {mix}"
                    f" at mean attenuation {feat['mean_a']:.1f} (looks like {best})",
                    whole,
                )
            )
    return checks, findings, metal_cargo
