"""ATT transit comparison (R12): Scan B (exit) registered onto Scan A (entry), four SOP factors.

Registration: both scans' containers are located (front wall and doors), so B
is shifted and scaled along travel onto A (a different belt speed or scanner
changes the line pitch and the start).  Then the SOP's four factors, each with
its figure: volumetric consistency (filled fraction), density discrepancy
(integrated attenuation), structural integrity (the walls, floor and ends) and
object substitution/addition (regions that changed, with their coordinates).
Any factor over its limit declares the container a Contravening Unit and puts
it on HOLD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from ._image import OCCUPIED_A, Frame, bin_image, binning, check_pair, locate_container
from ._model import AtrInputError

F32 = npt.NDArray[np.float32]

#: Limits of the four factors (tuned on clean pairs of the tuning seeds).
LIMITS = {"volume": 0.05, "density": 0.01, "structure": 5.0, "objects": 0.02}


@dataclass(slots=True)
class AttResult:
    """Comparison of Scan A and Scan B: registration, factors, decision and differences."""

    hold: bool
    status: str
    registration: dict[str, float]
    factors: dict[str, dict[str, Any]]
    differences: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``nii atr compare`` prints)."""
        return {
            "status": self.status,
            "hold": self.hold,
            "registration": self.registration,
            "factors": self.factors,
            "differences": self.differences,
        }


def _prepare(
    a_hi: npt.ArrayLike,
    a_lo: npt.ArrayLike,
    line_mm: float,
    ch_mm: float,
    scan: str,
    energies: bool = True,
) -> tuple[F32, Frame]:
    """The binned high-energy image of one scan and its container; an error if there is none."""
    hi, _ = check_pair(a_hi, a_lo, energies=energies)
    fl, fc = binning(line_mm, ch_mm)
    b = bin_image(hi, fl, fc)
    fr = locate_container(b, fl, fc, line_mm, ch_mm)
    fr.require(scan)
    return b, fr


def _crop(img: F32, fr: Frame, height_mm: float) -> tuple[F32, int]:
    """The container from front wall to doors, ``height_mm`` up from its floor, (lines, rows).

    Returns the crop and the binned row of its top.
    """
    rows = max(2, round(height_mm / fr.px_mm[1]))
    top = max(0, fr.floor + 1 - rows)
    return np.ascontiguousarray(img[fr.front : fr.back + 1, top : fr.floor + 1]), top


#: Bounds of the map between two scanners' attenuations, A_a = gain x A_b ** power.  Dual-
#: energy linacs of 3-9 MV see the same steel with attenuations within a factor of about
#: 1.6 of each other (mass attenuation of iron: 0.041 cm²/g at 2 MeV, 0.031 at 6 MeV;
#: NIST XCOM); a wider gap is not another energy but another kind of image.
GAIN_RANGE = (0.4, 2.5)
POWER_RANGE = (0.6, 1.6)
#: Farthest a level's ratio may lie from the power-law trend and still be the scanners'
#: own curve (beam hardening bends it a little); farther, the level holds changed goods
#: and follows the trend instead.
CURVE_BAND = 0.15


@dataclass(frozen=True, slots=True)
class LevelMap:
    """A monotone map of scan B's attenuations onto scan A's levels.

    ``knots_b``, ``knots_a``: matched levels (ascending) of B and A; between them the map
    is linear, below the first it is proportional, above the last it follows the trend
    ``gain`` x A_b ** ``power``.
    """

    knots_b: tuple[float, ...]
    knots_a: tuple[float, ...]
    gain: float
    power: float

    def apply(self, b: F32) -> F32:
        """B's attenuations (any shape) on A's levels, same shape, float32."""
        kb, ka = np.asarray(self.knots_b), np.asarray(self.knots_a)
        out = np.interp(b, kb, ka)
        low = b < kb[0]
        out[low] = b[low] * (ka[0] / kb[0])
        high = b > kb[-1]
        out[high] = ka[-1] * (b[high] / kb[-1]) ** self.power
        return np.asarray(out, dtype=np.float32)


def _blur3(img: F32) -> F32:
    return np.asarray(cv2.blur(img, (3, 3)), dtype=np.float32)


def level_map(a: F32, b: F32) -> LevelMap:
    """The map of B's attenuations onto A's, from matched pixels of two registered images.

    ``a`` and ``b`` are attenuations of the same place (same shape) seen by two scanners;
    pixels where either is near air (< 0.05) or near its image's maximum (saturation) are
    left out.  B's pixels fall into 16 quantile bins; each bin's median B and median A are
    one matched level.  A power law through the levels is the trend; a level whose ratio
    lies more than :data:`CURVE_BAND` from it holds changed goods (a region that changed
    moves the bins its pixels fill) and takes the trend's value.  Identical images give
    the identity.

    Raises:
        AtrInputError: too few pixels to fit, or a trend outside :data:`GAIN_RANGE` /
            :data:`POWER_RANGE` (the two images are not of the same kind).
    """
    ok = (a > 0.05) & (b > 0.05) & (a < 0.98 * float(a.max())) & (b < 0.98 * float(b.max()))
    if int(ok.sum()) < 200:
        raise AtrInputError(
            "too few pixels inside the containers to match the two scanners' attenuation levels",
            fix="compare full scans of a loaded container, or of the same scanner",
        )
    x = np.log(b[ok].astype(np.float64))
    y = np.log(a[ok].astype(np.float64))
    edges = np.quantile(x, np.linspace(0.0, 1.0, 17))
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 15)
    mx_l, my_l = [], []
    for k in range(16):
        sel = which == k
        if int(sel.sum()) >= 10:
            mx_l.append(float(np.median(x[sel])))
            my_l.append(float(np.median(y[sel])))
    mx, my = np.asarray(mx_l), np.asarray(my_l)
    keep = np.ones(mx.size, dtype=bool)
    power, c = 1.0, float(np.median(my - mx))
    for _ in range(2):  # fit, leave out the levels off the trend, fit again
        if np.ptp(mx[keep]) >= 0.05 and int(keep.sum()) >= 2:
            pw, cc = np.polyfit(mx[keep], my[keep], 1)
            power, c = float(pw), float(cc)
        else:
            power, c = 1.0, float(np.median(my[keep] - mx[keep]))
        keep = np.abs(my - (c + power * mx)) <= np.log1p(CURVE_BAND)
        if not keep.any():
            break
    gain = float(np.exp(c))
    if not (GAIN_RANGE[0] <= gain <= GAIN_RANGE[1] and POWER_RANGE[0] <= power <= POWER_RANGE[1]):
        raise AtrInputError(
            f"the two scans' attenuation levels cannot be matched (A_a = {gain:.2f} x "
            f"A_b^{power:.2f}): they are not two dual-energy transmission scans of one container",
            fix="give both scans as T x 65535 16-bit exports, calibrated on their own air",
        )
    ly = np.where(keep, my, c + power * mx)
    kb, ka = np.exp(mx), np.maximum.accumulate(np.exp(ly))
    uniq = np.concatenate([[True], np.diff(kb) > 1e-6])
    return LevelMap(tuple(kb[uniq].tolist()), tuple(ka[uniq].tolist()), gain, power)


def compare(
    a: tuple[npt.ArrayLike, npt.ArrayLike, float, float],
    b: tuple[npt.ArrayLike, npt.ArrayLike, float, float],
    *,
    harmonised: bool = False,
) -> AttResult:
    """Compare Scan A and Scan B, each (a_hi, a_lo, line_mm, channel_mm) of attenuations.

    ``harmonised``: both scans were checked as exported and then mapped through their
    scanners' calibrations to reference-equivalent attenuation (``_physical``), which
    leaves no noise of its own in the low-energy image: the two-energies check is skipped.

    The scans may come from different scanners at different speeds: each is binned from
    its own pixel size, both containers are cropped from front wall to doors and the same
    height up from the floor, B is resampled onto A's grid and its attenuation mapped onto
    A's levels (:func:`level_map`) before the four factors are computed.

    Raises:
        AtrInputError: a scan is unusable or shows no container (with the reason), or
            the two scans' levels cannot be matched.
    """
    img_a, fa = _prepare(*a, scan="scan A", energies=not harmonised)
    img_b, fb = _prepare(*b, scan="scan B", energies=not harmonised)
    if fa.size != fb.size:
        raise AtrInputError(
            f"scan A shows a {fa.size} container ({fa.length_mm():.0f} mm), "
            f"scan B a {fb.size} one ({fb.length_mm():.0f} mm): not the same container",
            fix="check the pixel sizes of both scans (--pixel-mm-a, --pixel-mm-b) and that "
            "Scan B is the exit scan of Scan A's container",
        )
    height = min((fa.floor - fa.top) * fa.px_mm[1], (fb.floor - fb.top) * fb.px_mm[1])
    ia, top_a = _crop(img_a, fa, height)
    rows = ia.shape[1]
    ib0, _ = _crop(img_b, fb, height)
    ib = np.asarray(cv2.resize(ib0, (rows, ia.shape[0]), interpolation=cv2.INTER_AREA), np.float32)
    scale = ia.shape[0] / max(1, ib0.shape[0])
    lm = level_map(
        np.asarray(cv2.blur(ia, (3, 3)), np.float32), np.asarray(cv2.blur(ib, (3, 3)), np.float32)
    )
    ib = lm.apply(ib)
    ceiling = min(float(ia.max()), float(ib.max()))  # a saturated scanner sees no further
    ia, ib = np.minimum(ia, ceiling), np.minimum(ib, ceiling)
    bl, bc = fa.px_mm
    reg = {
        "shift_mm": round((fa.front * bl) - (fb.front * fb.px_mm[0]), 1),
        "scale": round(scale * fa.px_mm[0] / fb.px_mm[0], 4),
        "length_a_mm": round(fa.length_mm()),
        "length_b_mm": round(fb.length_mm()),
        "level_gain": round(lm.gain, 4),
        "level_power": round(lm.power, 4),
    }
    # the interior for cargo factors, the rim (ends, floor band) for structure
    e = max(2, round(150.0 / bl))
    fband = max(2, round(250.0 / bc))
    ca, cb = ia[e:-e, : rows - fband], ib[e:-e, : rows - fband]
    occ_a, occ_b = ca > OCCUPIED_A, cb > OCCUPIED_A
    fill_a, fill_b = float(occ_a.mean()), float(occ_b.mean())
    vol = abs(fill_b - fill_a) / max(fill_a, 0.05)
    sum_a, sum_b = float(ca.sum()), float(cb.sum())
    dens = abs(sum_b - sum_a) / max(sum_a, 1.0)
    # the ends are one or two lines of steel: which share of a pixel they fill differs from
    # scan to scan, so the rim is compared over three lines along travel
    ra, rb = cv2.blur(ia, (1, 3)), cv2.blur(ib, (1, 3))
    rim_a = np.concatenate([ra[:e].ravel(), ra[-e:].ravel(), ra[:, rows - fband :].ravel()])
    rim_b = np.concatenate([rb[:e].ravel(), rb[-e:].ravel(), rb[:, rows - fband :].ravel()])
    struct = float(np.percentile(np.abs(rim_b - rim_a), 99))
    sa = cv2.blur(ca, (5, 5))
    sb = cv2.blur(cb, (5, 5))
    diff = sb - sa
    thr = 0.6 + 0.12 * np.maximum(sa, sb)
    mask = np.asarray(
        cv2.morphologyEx(
            (np.abs(diff) > thr).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
        )
    )
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    diffs: list[dict[str, Any]] = []
    changed = 0.0
    min_area = 40000.0 / (bl * bc)
    for k in range(1, n):
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        sel = lab[cy : cy + ch, cx : cx + cw] == k
        d = float(diff[cy : cy + ch, cx : cx + cw][sel].mean())
        changed += area
        l0 = fa.front + e + cy
        r0 = top_a + cx
        mm = fa.to_mm(l0, r0, l0 + ch, r0 + cw)
        diffs.append(
            {
                "kind": "addition" if d > 0 else "removal",
                "bbox_mm": [round(v) for v in mm],
                "bbox_px": fa.to_px(l0, r0, l0 + ch, r0 + cw),
                "attenuation_change": round(d, 2),
                "area_m2": round(area * bl * bc / 1e6, 3),
            }
        )
    obj = changed / max(1.0, float(occ_a.sum() + occ_b.sum()) / 2.0)
    figures = {"volume": vol, "density": dens, "structure": struct, "objects": obj}
    what = {
        "volume": f"filled fraction A {fill_a:.3f}, B {fill_b:.3f}",
        "density": f"integrated attenuation changed by {100 * dens:.1f} %",
        "structure": f"walls, floor and ends differ by {struct:.2f} (99th percentile of |ΔA|)",
        "objects": f"{len(diffs)} region(s) changed, {100 * obj:.1f} % of the load",
    }
    factors = {
        k: {
            "figure": round(figures[k], 4),
            "limit": LIMITS[k],
            "ok": figures[k] <= LIMITS[k],
            "what": what[k],
        }
        for k in LIMITS
    }
    hold = any(not f["ok"] for f in factors.values())
    diffs.sort(key=lambda d: -d["area_m2"])
    return AttResult(
        hold=hold,
        status="Contravening Unit: HOLD" if hold else "consistent: release",
        registration=reg,
        factors=factors,
        differences=diffs,
    )
