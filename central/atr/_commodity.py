"""The image against the declaration in physical units: commodity and weight checks.

Pure functions of typed values.  :func:`check_commodity` compares what the
image measured of the load (:class:`LoadFeatures`: bulk density, effective
Z, class shares) with what the declared HS heading leads one to expect
(``_hs.HsExpectation``); :func:`check_weight` compares the declared gross
mass with the image's estimate.  Both give a level, a score (1.0 = the red
threshold, as everywhere in the ATR) and one line an officer can read.

Rules (why: a false alarm sends an honest container to a physical
examination, which costs more than a missed soft mismatch):

* red only when the image lies outside the expectation by more than its
  uncertainty: the bulk density outside the heading's range by more than
  2 σ, or a material class the heading does not expect making up more than
  :data:`CLASS_RED` of the classified load (misclassification noise is about
  :data:`CLASS_NOISE`);
* an effective Z outside the range only ever makes it yellow;
* an unknown commodity is yellow with that reason, never red;
* weight: red when the declared gross lies more than 3 σ from the estimate,
  σ including a model error of :data:`WEIGHT_MODEL_ERROR` of the estimate.
"""
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import math
from dataclasses import dataclass

from core.calibration import MaterialClass

from ._declaration import DeclaredGoods, Found
from ._hs import HS_TABLE, HsExpectation
from ._model import Level, level_of

__all__ = [
    "CLASS_NOISE",
    "CLASS_RED",
    "DENSITY_RED_SIGMA",
    "WEIGHT_MODEL_ERROR",
    "WEIGHT_RED_SIGMA",
    "CommodityCheck",
    "LoadFeatures",
    "WeightCheck",
    "check_commodity",
    "check_weight",
]

#: Share of the classified load in a class the heading does not expect that is still
#: noise: thin edges, packaging and overlaps (the simulator's tiles show ~8 % organic
#: and ~10 % metal, its aluminium ingots 7 % organic and 11 % metal; see _profiles.py).
CLASS_NOISE = 0.2
#: Share of unexpected classes from which the load is not what is declared.
CLASS_RED = 0.6
#: Density outside the heading's range by this many σ is red.
DENSITY_RED_SIGMA = 2.0
#: Floor of the bulk density's 1-σ, g/cm³: the measurement's σ can be optimistic.
DENSITY_SIGMA_FLOOR = 0.05
#: Below this fill fraction there is too little load to tell what it is.
MIN_FILL = 0.03
#: Above this share of impenetrable pixels the material cannot be told.
MAX_IMPENETRABLE = 0.5
#: Z_eff outside the range by this many (IQR/1.35 ≈ σ) is yellow at most.
ZEFF_YELLOW_SIGMA = 2.0
#: Relative model error of the image's mass estimate (1 σ), added to its own σ.
WEIGHT_MODEL_ERROR = 0.10
#: Declared gross off the estimate by this many σ is red.
WEIGHT_RED_SIGMA = 3.0
#: ... and by this many yellow.
WEIGHT_YELLOW_SIGMA = 2.0
#: Headings offered as "looks like".
LOOKS_LIKE_N = 3

_CLASSES = (MaterialClass.ORGANIC, MaterialClass.INORGANIC, MaterialClass.METAL)


@dataclass(frozen=True, slots=True)
class LoadFeatures:
    """Physical features of the load measured from the image.

    Attributes:
        fill_fraction: Occupied share of the container's inner volume, 0–1.
        bulk_density_g_cm3: Cargo mass / occupied volume, g/cm³.
        bulk_density_sigma_g_cm3: Its 1-σ uncertainty, g/cm³.
        zeff_median: Median effective Z over the occupied pixels.
        zeff_iqr: Interquartile range of the effective Z over them.
        organic: Share of occupied pixels classed organic, 0–1.
        inorganic: Share classed inorganic / light metal, 0–1.
        metal: Share classed metal, 0–1.
        impenetrable: Share too dense to class, 0–1.
        mass_kg: Estimated cargo mass (without the container), kg.
        mass_sigma_kg: Its 1-σ uncertainty, kg.

    Raises:
        ValueError: A share outside 0–1, or a negative density, mass or σ.
    """

    fill_fraction: float
    bulk_density_g_cm3: float
    bulk_density_sigma_g_cm3: float
    zeff_median: float
    zeff_iqr: float
    organic: float
    inorganic: float
    metal: float
    impenetrable: float
    mass_kg: float
    mass_sigma_kg: float

    def __post_init__(self) -> None:
        """Check the ranges (these come from code, so a bad one is a bug: ValueError)."""
        for name in ("fill_fraction", "organic", "inorganic", "metal", "impenetrable"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} = {v} is not a share in 0–1")
        for name in (
            "bulk_density_g_cm3",
            "bulk_density_sigma_g_cm3",
            "zeff_median",
            "zeff_iqr",
            "mass_kg",
            "mass_sigma_kg",
        ):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} = {v} must be finite and ≥ 0")

    def share(self, cls: MaterialClass) -> float:
        """Share of the *classified* load (organic + inorganic + metal) in one class."""
        total = self.organic + self.inorganic + self.metal
        if total <= 0.0:
            return 0.0
        v = {
            MaterialClass.ORGANIC: self.organic,
            MaterialClass.INORGANIC: self.inorganic,
            MaterialClass.METAL: self.metal,
        }.get(cls, 0.0)
        return v / total

    def dominant(self) -> MaterialClass:
        """The class with the largest share."""
        return max(_CLASSES, key=self.share)


@dataclass(frozen=True, slots=True)
class CommodityCheck:
    """The commodity check's answer.

    Attributes:
        level: "green", "yellow" or "red".
        score: 1.0 at the red threshold, 0.5 at yellow.
        reason: One line for the officer.
        known: Whether the declared goods were found in the HS table.
        looks_like: Codes of the other rows the image fits best, best first.
        density_sigmas: How far the density lies outside the range, in σ (0 inside).
        unexpected_share: Share of the classified load in classes not expected, 0–1.
    """

    level: Level
    score: float
    reason: str
    known: bool
    looks_like: tuple[str, ...] = ()
    density_sigmas: float = 0.0
    unexpected_share: float = 0.0


@dataclass(frozen=True, slots=True)
class WeightCheck:
    """The weight check's answer.

    Attributes:
        level: "green", "yellow" or "red".
        score: 1.0 at the red threshold (3 σ).
        reason: One line for the officer.
        image_gross_kg: The image's gross mass estimate (cargo + tare), kg.
        sigma_kg: Its 1-σ uncertainty including the model error, kg.
    """

    level: Level
    score: float
    reason: str
    image_gross_kg: float
    sigma_kg: float


@dataclass(frozen=True, slots=True)
class _Fit:
    density_sigmas: float
    unexpected: float
    zeff_sigmas: float
    score: float
    centre_distance: float


_WORD = {Level.GREEN: "consistent", Level.YELLOW: "doubtful", Level.RED: "inconsistent"}


#: Least share of the container's inner width a load fills across the beam: the image's
#: bulk density is the goods' packed density times that share, so heavy goods loaded one
#: pallet wide down the middle (tiles, ingots, paper reels: the weight limit is reached
#: long before the volume) read as little as about a third of their packed density.
WIDTH_FILL_MIN = 0.35


def _fit(exp: HsExpectation, load: LoadFeatures, width_fill: float = WIDTH_FILL_MIN) -> _Fit:
    lo, hi = exp.density_range
    lo *= width_fill
    d = load.bulk_density_g_cm3
    sigma = max(load.bulk_density_sigma_g_cm3, DENSITY_SIGMA_FLOOR)
    dens = max(lo - d, d - hi, 0.0) / sigma
    unexpected = sum(load.share(c) for c in _CLASSES if c not in exp.classes)
    if load.impenetrable > MAX_IMPENETRABLE:
        unexpected = 0.0  # the material cannot be told: no class evidence
    zlo, zhi = exp.zeff_range
    zsig = max(load.zeff_iqr / 1.35, 0.5)
    zs = max(zlo - load.zeff_median, load.zeff_median - zhi, 0.0) / zsig
    s_dens = dens / DENSITY_RED_SIGMA
    s_cls = max(0.0, unexpected - CLASS_NOISE) / (CLASS_RED - CLASS_NOISE)
    if load.share(load.dominant()) > 0 and load.dominant() in exp.classes:
        s_cls = min(s_cls, 0.99)  # red only when the dominant class is not expected
    s_z = min(0.99, 0.5 * zs / ZEFF_YELLOW_SIGMA)
    centre = math.sqrt(lo * hi)
    return _Fit(
        dens,
        unexpected,
        zs,
        max(s_dens, s_cls, s_z),
        abs(math.log(max(d, 1e-3) / centre)),
    )


def _looks_like(load: LoadFeatures, declared: str) -> tuple[str, ...]:
    fits = []
    for code, exp in HS_TABLE.items():
        if code == declared:
            continue
        f = _fit(exp, load)
        if f.score < 0.5:
            fits.append((f.score + f.centre_distance, code))
    return tuple(code for _, code in sorted(fits)[:LOOKS_LIKE_N])


def _shows(load: LoadFeatures) -> str:
    dom = load.dominant()
    return (
        f"{100 * load.share(dom):.0f} % {dom.name.lower()} at"
        f" {load.bulk_density_g_cm3:.1f} ± {load.bulk_density_sigma_g_cm3:.1f} g/cm³"
    )


def check_commodity(
    declared: DeclaredGoods, load: LoadFeatures, learned: HsExpectation | None = None
) -> CommodityCheck:
    """Compare the load the image shows with what the declared heading leads one to expect.

    Args:
        declared: The declared goods (``_declaration.resolve``).
        load: The load's features measured from the image.
        learned: The site's learned profile of the declared heading, blended with the
            prior (``_library.blended``), when the site has one: it replaces the HS
            table's row, and its density range is already in image terms (bulk density
            as this site's scans measure it), so :data:`WIDTH_FILL_MIN` is not applied
            to it.  None: the HS table's prior, unchanged.

    Returns:
        Level, score, reason and the headings the image looks like.  Unknown goods are
        yellow (never red); a container declared empty is green here (the not-empty
        check judges it); a load too small to judge is green.
    """
    if declared.found is Found.EMPTY:
        return CommodityCheck(
            Level.GREEN,
            0.0,
            "declared empty: no commodity to compare (the empty check applies)",
            False,
        )
    exp = declared.expectation
    width_fill = WIDTH_FILL_MIN
    if exp is not None and learned is not None:
        exp, width_fill = learned, 1.0
    if exp is None:
        like = _looks_like(load, "")
        hint = f"; looks like {', '.join(_describe(c) for c in like)}" if like else ""
        return CommodityCheck(
            Level.YELLOW,
            0.5,
            f"unknown commodity ({declared.reason}): the image cannot be checked against it{hint}",
            False,
            like,
        )
    site = " (site-learned profile)" if width_fill == 1.0 else ""
    expects = (
        f"declared {declared.label}: expects {exp.class_names()},"
        f" {exp.density_range[0]:.2g}–{exp.density_range[1]:.2g} g/cm³{site}"
    )
    if load.fill_fraction < MIN_FILL:
        return CommodityCheck(
            Level.GREEN,
            0.0,
            f"{expects}; image shows too little load to judge"
            f" ({100 * load.fill_fraction:.0f} % of the interior)",
            True,
        )
    fit = _fit(exp, load, width_fill)
    level = level_of(fit.score)
    why: list[str] = []
    lo = exp.density_range[0] * width_fill
    if fit.density_sigmas >= DENSITY_RED_SIGMA / 2:
        side = "below" if load.bulk_density_g_cm3 < lo else "above"
        why.append(f"density {fit.density_sigmas:.1f} σ {side} the range")
    if fit.unexpected > CLASS_NOISE + (CLASS_RED - CLASS_NOISE) / 2:
        why.append(f"{100 * fit.unexpected:.0f} % of the load in unexpected classes")
    if fit.zeff_sigmas >= ZEFF_YELLOW_SIGMA:
        why.append(
            f"Z_eff {load.zeff_median:.1f} outside {exp.zeff_range[0]:g}–{exp.zeff_range[1]:g}"
        )
    if load.impenetrable > MAX_IMPENETRABLE:
        why.append(f"{100 * load.impenetrable:.0f} % impenetrable: material not told")
    verdict = _WORD[level]
    like = _looks_like(load, exp.heading) if level != Level.GREEN else ()
    reason = f"{expects}; image shows {_shows(load)} — {verdict}"
    if why:
        reason += f" ({'; '.join(why)})"
    if like:
        reason += f"; looks like {', '.join(_describe(c) for c in like)}"
    return CommodityCheck(
        level, fit.score, reason, True, like, round(fit.density_sigmas, 2), round(fit.unexpected, 3)
    )


def _describe(code: str) -> str:
    return f"{code} {HS_TABLE[code].description}"


def check_weight(
    declared_gross_kg: float,
    tare_kg: float,
    mass_kg: float,
    mass_sigma_kg: float,
    model_error: float = WEIGHT_MODEL_ERROR,
) -> WeightCheck:
    """Compare the declared gross mass with the image's estimate.

    Args:
        declared_gross_kg: Gross mass on the GD (goods, packing and container), kg.
        tare_kg: The container's tare, kg.
        mass_kg: The image's estimate of the cargo mass, kg.
        mass_sigma_kg: Its 1-σ uncertainty, kg; ``model_error`` × mass is added in
            quadrature (0 when ``mass_sigma_kg`` already holds the model's error).
        model_error: Relative error of the mass model, default :data:`WEIGHT_MODEL_ERROR`.

    Returns:
        Level, score (1.0 at :data:`WEIGHT_RED_SIGMA` σ), the reason, the image's gross
        estimate and its σ.  Both directions count: more and less than declared.

    Raises:
        ValueError: A negative or non-finite input.
    """
    for name, v in (
        ("declared_gross_kg", declared_gross_kg),
        ("tare_kg", tare_kg),
        ("mass_kg", mass_kg),
        ("mass_sigma_kg", mass_sigma_kg),
    ):
        if not (math.isfinite(v) and v >= 0.0):
            raise ValueError(f"{name} = {v} must be finite and ≥ 0")
    gross = mass_kg + tare_kg
    sigma = math.hypot(mass_sigma_kg, model_error * mass_kg)
    sigma = max(sigma, 1.0)
    z = abs(declared_gross_kg - gross) / sigma
    score = z / WEIGHT_RED_SIGMA
    level = level_of(score, yellow=WEIGHT_YELLOW_SIGMA / WEIGHT_RED_SIGMA)
    verdict = _WORD[level]
    more = "more" if gross > declared_gross_kg else "less"
    detail = "" if level == Level.GREEN else f" ({z:.1f} σ {more} than declared)"
    reason = (
        f"declared {declared_gross_kg / 1000:.1f} t gross; image shows"
        f" {gross / 1000:.1f} ± {sigma / 1000:.1f} t — {verdict}{detail}"
    )
    return WeightCheck(level, score, reason, gross, sigma)
