"""Goods Declaration consistency: fill, mass, material mix and commodity against the GD.

Load mass comes from integrated attenuation: Σ A · pixel area / (μ/ρ) is the
mass the beam crossed, with μ/ρ calibrated on the simulator's known cargo
(``MASS_PER_A``).  The commodity check compares the image's material mix and
apparent density with the declared commodity's reference profile (learned on
tuning seeds, ``_profiles.PROFILES``) and says which commodity the image looks
like instead.
"""
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import math
from typing import Any

import numpy as np

from core.calibration import MaterialClass

from ._commodity import (
    WEIGHT_RED_SIGMA,
    WEIGHT_YELLOW_SIGMA,
    LoadFeatures,
    WeightCheck,
    check_commodity,
    check_weight,
)
from ._containers import ContainerModel
from ._declaration import GoodsDeclaration, parse_gd, resolve
from ._hs import HsExpectation
from ._model import AtrInputError, Category, Finding, Level, level_of
from ._profiles import FEATURE_NAMES, PROFILES
from .detectors import MU_RHO_HI, Scene

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
    """Image features of the load in reference-equivalent attenuation: fill, mix, levels.

    The profiles of ``_profiles.PROFILES`` are in these terms; the GD's physical
    figures come from :func:`load_features`.
    """
    occ = sc.occupied
    n = max(1, int(occ.sum()))
    mat = sc.material[occ]
    a_occ = sc.a[occ]
    fill = float(occ.mean()) if occ.size else 0.0
    return {
        "fill": fill,
        "organic": float(np.sum(mat == int(MaterialClass.ORGANIC))) / n,
        "inorganic": float(np.sum(mat == int(MaterialClass.INORGANIC))) / n,
        "metal": float(np.sum(mat == int(MaterialClass.METAL))) / n,
        "impenetrable": float(np.sum(mat == int(MaterialClass.IMPENETRABLE))) / n,
        "mean_a": float(a_occ.mean()) if a_occ.size else 0.0,
        "p90_a": float(np.percentile(a_occ, 90)) if a_occ.size else 0.0,
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


#: Inner width of an ISO dry van, mm (ISO 668 external 2438 mm less the side walls):
#: the depth of the load along the beam when it fills the width.
INNER_WIDTH_MM = 2352.0
#: Areal density of the empty container's two side walls seen across, g/cm², when the
#: image shows too little empty interior to measure it (2 × 1.6 mm corrugated steel).
WALL_RHO_DEFAULT = 3.0
#: Relative error of the mass estimate beyond the calibration's own fit error (the
#: material mix of each pixel, scatter, packing): with a typical 3.5 % calibration error
#: the total is the robust spread (7.4 %, 1.4826 × MAD) of image / declared mass over
#: the clean cross-scanner tuning scans of all four simulator models (seed 7200).
MASS_MODEL_ERROR = 0.065
#: Image mass / declared cargo mass, median over those scans: the container's own floor
#: (28 mm plywood on steel cross members, part of the tare) lies inside the interior.
MASS_BIAS = 1.06
#: ... and without a calibration of the scanner (the reference scanner's map is assumed).
MASS_MODEL_ERROR_UNCALIBRATED = 0.2
#: Share of the load's depth along the beam that is not goods (packages do not fill the
#: inner width): the bulk density's relative 1-σ.
BULK_DEPTH_ERROR = 0.2


#: The commodities the detectors' per-commodity thresholds (``_profiles.RED_AT``) were
#: tuned on, by the HS heading the simulator declares them under; other goods take
#: the thresholds for "any other" ("*").
PROFILE_BY_HEADING: dict[str, str] = {
    "6109": "textiles", "4802": "paper", "0805": "fruit", "0202": "frozen meat",
    "6907": "ceramic tiles", "7010": "glass bottles", "8471": "electronics",
    "8479": "machinery", "7204": "scrap steel", "7408": "copper wire", "2402": "cigarettes",
    "4011": "tyres", "1006": "rice", "7601": "aluminium ingots",
}  # fmt: skip
#: ... and by chapter where the whole chapter is that kind of goods.
PROFILE_BY_CHAPTER: dict[str, str] = {"84": "machinery", "85": "electronics"}


def finding_score(w: WeightCheck) -> float:
    """The weight check's score on the findings' scale: 0.5 at its yellow (2 σ), 1.0 at
    its red (3 σ), so that a finding's level says what its reason says ("consistent"
    under 2 σ: a 1.7 σ difference was a yellow finding that called itself consistent).
    """
    z = w.score * WEIGHT_RED_SIGMA
    if z < WEIGHT_YELLOW_SIGMA:
        return 0.5 * z / WEIGHT_YELLOW_SIGMA
    return 0.5 + 0.5 * (z - WEIGHT_YELLOW_SIGMA) / (WEIGHT_RED_SIGMA - WEIGHT_YELLOW_SIGMA)


def tuned_profile(decl: GoodsDeclaration | None) -> str:
    """The tuned commodity whose thresholds apply to the declared goods ("" for none)."""
    if decl is None:
        return ""
    if decl.declared_empty:
        return "empty"
    goods = resolve(decl)
    code = goods.heading or decl.hs_code
    if code[:4] in PROFILE_BY_HEADING:
        return PROFILE_BY_HEADING[code[:4]]
    if code[:2] in PROFILE_BY_CHAPTER:
        return PROFILE_BY_CHAPTER[code[:2]]
    return decl.commodity if decl.commodity in PROFILES else ""


def load_features(sc: Scene, calibration_error: float, calibrated: bool) -> LoadFeatures:
    """Physical features of the load on the scene's areal-density and Z_eff maps.

    ``calibration_error`` is the scanner calibration's relative error of areal
    density (leave-one-out, :mod:`core.scanner_cal`).
    """
    bl, bc = sc.frame.px_mm
    occ = sc.occupied
    rho = sc.rho if sc.rho is not None else sc.a / MU_RHO_HI
    empty = ~occ
    # the side walls: what the empty interior (air above the goods) reads
    wall = float(np.median(rho[empty])) if int(empty.sum()) >= 200 else WALL_RHO_DEFAULT
    wall = min(max(wall, 0.0), 2.0 * WALL_RHO_DEFAULT)
    net = np.clip(rho - wall, 0.0, None)
    px_cm2 = bl * bc / 100.0
    mass = float(net[occ].sum()) * px_cm2 / 1000.0 / MASS_BIAS
    n = int(occ.sum())
    rel = math.hypot(
        calibration_error,
        MASS_MODEL_ERROR if calibrated else MASS_MODEL_ERROR_UNCALIBRATED,
    )
    # the wall's own uncertainty (a quarter of it) over every cargo pixel
    wall_sigma = 0.25 * wall * n * px_cm2 / 1000.0
    mass_sigma = math.hypot(rel * mass, wall_sigma)
    mat = sc.material[occ]
    shares = {
        k: (float(np.sum(mat == int(k))) / n if n else 0.0)
        for k in (
            MaterialClass.ORGANIC,
            MaterialClass.INORGANIC,
            MaterialClass.METAL,
            MaterialClass.IMPENETRABLE,
        )
    }
    bulk = float(net[occ].mean()) / (INNER_WIDTH_MM / 10.0) if n else 0.0
    z = sc.zeff[occ]
    z = z[z > 0]
    q25, q50, q75 = (float(v) for v in np.percentile(z, [25, 50, 75])) if z.size else (0, 0, 0)
    return LoadFeatures(
        fill_fraction=float(occ.mean()) if occ.size else 0.0,
        bulk_density_g_cm3=bulk,
        bulk_density_sigma_g_cm3=math.hypot(BULK_DEPTH_ERROR, rel) * bulk,
        zeff_median=q50,
        zeff_iqr=max(0.0, q75 - q25),
        organic=shares[MaterialClass.ORGANIC],
        inorganic=shares[MaterialClass.INORGANIC],
        metal=shares[MaterialClass.METAL],
        impenetrable=shares[MaterialClass.IMPENETRABLE],
        mass_kg=mass,
        mass_sigma_kg=mass_sigma,
    )


def gd_consistency(
    sc: Scene,
    gd: dict[str, Any],
    model: ContainerModel,
    *,
    calibration_error: float = 0.0,
    calibrated: bool = True,
    load: LoadFeatures | None = None,
    learned: HsExpectation | None = None,
) -> tuple[dict[str, Any], list[Finding], bool]:
    """Compare the image with the GD; returns the checks, their findings and 'metal cargo'.

    The GD is parsed strictly (:func:`._declaration.parse_gd`) and its goods looked up
    by HS code (:mod:`._hs`); mass, bulk density and material mix come from the
    calibrated areal density and Z_eff (:func:`load_features`, or ``load`` when the
    caller has it).  ``learned`` is the site-learned expectation of the declared
    heading (``_library.ImageLibrary.expectation``), used instead of the HS table's row.

    Raises:
        AtrInputError: a misspelt, mistyped or impossible GD field.
    """
    feat = features(sc)
    if load is None:
        load = load_features(sc, calibration_error, calibrated)
    checks: dict[str, Any] = {
        "estimated_cargo_kg": round(load.mass_kg),
        "estimated_cargo_sigma_kg": round(load.mass_sigma_kg),
        "fill_fraction": round(load.fill_fraction, 3),
        "fill_volume_m3": round(load.fill_fraction * model.inner_volume_m3(), 1),
        "bulk_density_g_cm3": round(load.bulk_density_g_cm3, 3),
        "zeff_median": round(load.zeff_median, 1),
        "mean_attenuation": round(feat["mean_a"], 3),
        "p90_attenuation": round(feat["p90_a"], 3),
        "material_mix": {
            k: round(getattr(load, k), 3) for k in ("organic", "inorganic", "metal", "impenetrable")
        },
        "calibrated": calibrated,
    }
    findings: list[Finding] = []
    whole = (0, 0, sc.a.shape[0], sc.a.shape[1])
    decl = parse_gd(gd) if gd else None
    goods = resolve(decl) if decl is not None else None
    exp = goods.expectation if goods is not None else None
    prof_metal = exp is not None and set(exp.classes) == {MaterialClass.METAL}
    # metal cargo is what the image shows: declared metal that shows as glass, tiles or
    # tyres is a false declaration, and its goods are no packages hidden in metal
    # impenetrable pixels count as metal in the proportion the classified ones are metal:
    # a dense load of meat on a low-energy scanner stops the beam without being metal
    classified = feat["organic"] + feat["inorganic"] + feat["metal"]
    metal_share = feat["metal"] + feat["impenetrable"] * (
        feat["metal"] / classified if classified > 0.05 else 1.0
    )
    metal_cargo = metal_share > (METAL_SHARE_DECLARED if prof_metal else METAL_SHARE)
    if decl is None or goods is None:
        return checks, findings, metal_cargo
    checks["declared_commodity"] = "empty" if decl.declared_empty else decl.commodity
    checks["hs_code"] = decl.hs_code
    if decl.declared_empty:
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
                    f" (~{load.mass_kg / 1000:.1f} t)".replace("%%", "%"),
                    box,
                )
            )
        return checks, findings, metal_cargo
    _unc = "" if calibrated else " (scanner not calibrated: reference scanner assumed)"
    if decl.gross_weight_kg is not None and decl.gross_weight_kg < model.tare_kg:
        raise AtrInputError(
            f"the GD's gross weight {decl.gross_weight_kg:g} kg is less than the empty"
            f" {model.code} container's tare ({model.tare_kg:.0f} kg)",
            fix="give gross_weight_kg in kilograms, goods, packing and container together"
            " (tonnes × 1000)",
        )
    checks["goods"] = goods.label
    checks["goods_reason"] = goods.reason
    checks["goods_found_by"] = str(goods.found)
    if decl.gross_weight_kg is not None:
        cargo = max(0.0, float(decl.gross_weight_kg) - model.tare_kg)
        checks["declared_cargo_kg"] = round(cargo)
        checks["mass_ratio"] = round((load.mass_kg + 300.0) / (cargo + 300.0), 2)
        w = check_weight(
            float(decl.gross_weight_kg),
            model.tare_kg,
            load.mass_kg,
            load.mass_sigma_kg,
            model_error=0.0,  # load_features' σ holds the measured model error
        )
        checks["weight"] = w.reason
        score = finding_score(w)
        if w.image_gross_kg < decl.gross_weight_kg or not calibrated:
            # less than declared is no concealment; without the scanner's calibration the
            # mass is the reference scanner's reading: at most an assessment review
            score = min(score, 0.99)
        if level_of(score) != Level.GREEN:
            findings.append(sc.finding(Category.GD_MISMATCH, score, w.reason + _unc, whole))
    c = check_commodity(goods, load, learned)
    checks["commodity"] = c.reason
    checks["commodity_profile"] = learned.source if learned is not None and exp else "HS prior"
    checks["commodity_known"] = c.known
    if c.looks_like:
        checks["looks_like_hs"] = list(c.looks_like)
    score = c.score
    if not calibrated:
        # the reference scanner's map on another scanner's image: say so, never red
        score = min(score, 0.99)
    if level_of(score) != Level.GREEN:
        findings.append(sc.finding(Category.GD_MISMATCH, score, c.reason + _unc, whole))
    return checks, findings, metal_cargo
