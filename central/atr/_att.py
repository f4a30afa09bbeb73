"""ATT transit comparison (R12): Scan B (exit) registered onto Scan A (entry), four SOP factors.

Registration: both scans' containers are located (front wall and doors), so B
is shifted and scaled along travel onto A (a different belt speed or scanner
changes the line pitch and the start).  Then the SOP's four factors, each with
its figure: volumetric consistency (filled fraction), density discrepancy
(integrated attenuation), structural integrity (the walls, floor and ends) and
object substitution/addition (regions that changed, with their coordinates).
Any factor over its limit declares the container a Contravening Unit and puts
it on HOLD.  Across scanner models the fans differ (another parallax in height), so
B's heights are warped onto A's, B is compared with A within the parallax and changed
stretches are found from the attenuation integrated up each line (docs/atr.md).
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

#: Limits across two scanners (their fans differ): measured on untouched pairs of every
#: ordered pair of the simulator's models (docs/atr.md, "ATT across scanners").
CROSS_LIMITS = {"volume": 0.06, "density": 0.1, "structure": 6.5, "objects": 0.005}
#: Channel pitches within 2 % of each other are one scanner model's (the same fan).
SAME_PITCH = 0.02
#: Vertical tolerance across scanners, mm: how far apart the same edge of the load may
#: appear once the two images are registered.  An edge at height z is smeared over the
#: depth of the load (heights z_s + (z - z_s) x D / (D + x) across x = ±1.2 m, source at
#: distance D and height z_s); between the simulator's fans (D 4.0-5.0 m) the smears of
#: an edge 1.5 m above the source differ by up to ±120 mm.
PARALLAX_MM = 120.0
#: Higher up, the smears differ by up to this share of the height above the floor (a load
#: 2.5 m tall: its top edge's near side 400 mm higher on a 4 m fan than on a 5 m one).
PARALLAX_SHARE = 0.15
#: Across scanners a changed region must stand taller than this, mm: what is lower is an
#: edge of the load that one fan smears wider than the other (a band along the top or
#: bottom of the goods), not goods; the smallest change simulated is a 250 mm block.
MIN_CHANGE_HEIGHT_MM = 150.0
#: A changed band lower than BAND_MM along more than BAND_SHARE of the length is a height
#: the two fans show differently, not goods changed in a stretch (tampering simulated
#: changes at most 1.5 m of the 5.9-13.6 m).
BAND_MM = 500.0
BAND_SHARE = 0.5
#: Band under the top of the compared height that is not cargo across scanners, mm.
ROOF_BAND_MM = 300.0
#: Change of the attenuation integrated up a line (relative to A's, after the two scans'
#: ratio over the whole load) that marks the line as changed, and the shortest run of
#: such lines that is a change, mm along travel.
LINE_CHANGE = 0.2
LINE_RUN_MM = 400.0
#: A line is loaded where its integrated attenuation is at least this share of the median
#: line's, and at least :data:`LOADED_A_MM` (1 m of attenuation 0.3).
LOADED_SHARE = 0.3
LOADED_A_MM = 300.0


def _fan_artefact(height_mm: float, length_share: float) -> bool:
    """Whether a changed region is how two fans differ, not goods (across scanners only).

    Lower than :data:`MIN_CHANGE_HEIGHT_MM`: an edge band of the load.  A band lower than
    :data:`BAND_MM` along more than :data:`BAND_SHARE` of the length: a fixed height seen
    otherwise by the other fan (roof, rails), where goods are changed in a stretch.
    """
    return height_mm < MIN_CHANGE_HEIGHT_MM or (height_mm < BAND_MM and length_share > BAND_SHARE)


def _signed_excess_graded(a: F32, b: F32, h_mm: npt.NDArray[np.float64], bc: float) -> F32:
    """:func:`_signed_excess` with a tolerance per row (``h_mm``: each row's height).

    The tolerance is ``max(PARALLAX_MM, PARALLAX_SHARE x h)``, taken in steps of
    :data:`PARALLAX_MM`.
    """
    tol_mm = np.maximum(PARALLAX_MM, PARALLAX_SHARE * h_mm)
    steps = np.ceil(tol_mm / PARALLAX_MM - 1e-9).astype(int)
    out = np.zeros_like(b)
    for k in np.unique(steps):
        win = np.ones((3, 2 * max(1, round(k * PARALLAX_MM / bc)) + 1), np.uint8)
        sel = steps == k
        out[:, sel] = _signed_excess(a, b, win)[:, sel]
    return out


def _excess(a: F32, b: F32, tol: npt.NDArray[np.uint8]) -> F32:
    """How far ``b`` lies outside the range of ``a`` within the window ``tol`` (≥ 0)."""
    hi = cv2.dilate(a, tol)
    lo = cv2.erode(a, tol)
    return np.asarray(np.maximum(np.maximum(b - hi, lo - b), 0.0), np.float32)


def _signed_excess(a: F32, b: F32, tol: npt.NDArray[np.uint8]) -> F32:
    """``b`` above the highest of ``a`` within ``tol`` (> 0), below its lowest (< 0), else 0."""
    up = b - cv2.dilate(a, tol)
    down = b - cv2.erode(a, tol)
    return np.asarray(np.where(up > 0, up, np.where(down < 0, down, 0.0)), np.float32)


def _line_integrals(
    ca: F32, cb: F32, bl: float, bc: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, int]:
    """Attenuation integrated up each line (A·mm), smoothed along travel, of A and of B.

    B's is divided by the median ratio B/A over A's loaded lines (harmonisation and
    saturation leave a common factor); also returns the floor of a loaded line (A·mm)
    and the smoothing window (lines).
    """
    w = max(1, round(LINE_RUN_MM / bl))
    k = np.ones(w) / w
    la = np.convolve(ca.sum(axis=1) * bc, k, mode="same")
    lb = np.convolve(cb.sum(axis=1) * bc, k, mode="same")
    ref = float(np.median(la)) if la.size else 0.0
    floor = max(LOADED_SHARE * ref, LOADED_A_MM)
    loaded = la > floor
    g = float(np.median(lb[loaded] / la[loaded])) if int(loaded.sum()) >= w else 1.0
    return la, lb / (g if g > 0 else 1.0), floor, w


def _loaded_length(ca: F32, cb: F32, bl: float, bc: float) -> tuple[float, float]:
    """Share of the length along travel loaded in A and in B (:func:`_line_integrals`)."""
    la, lb, floor, _ = _line_integrals(ca, cb, bl, bc)
    return float(np.mean(la > floor)), float(np.mean(lb > floor))


def _line_changes(
    ca: F32, cb: F32, occ: npt.NDArray[np.bool_], bl: float, bc: float
) -> npt.NDArray[np.uint8]:
    """Mask (lines, rows) of the occupied rows of lines whose integrated attenuation changed.

    The integral up a line does not depend on how tall the fan shows the load, only on
    what the line crosses, so it is compared line by line (smoothed over
    :data:`LINE_RUN_MM` along travel) after dividing B's by the median ratio B/A of the
    loaded lines (harmonisation and saturation leave a common factor).
    """
    la, lb, floor, w = _line_integrals(ca, cb, bl, bc)
    dev = (lb - la) / np.maximum(la, floor)
    bad = np.abs(dev) > LINE_CHANGE
    # keep runs at least w lines long
    keep = np.zeros_like(bad)
    i = 0
    while i < bad.size:
        if bad[i]:
            j = i
            while j < bad.size and bad[j]:
                j += 1
            if j - i >= w:
                keep[i:j] = True
            i = j
        else:
            i += 1
    return np.asarray(keep[:, None] & occ, np.uint8)


@dataclass(slots=True)
class AttResult:
    """Comparison of Scan A and Scan B: registration, factors, decision and differences."""

    hold: bool
    status: str
    registration: dict[str, float]
    factors: dict[str, dict[str, Any]]
    differences: list[dict[str, Any]] = field(default_factory=list)
    #: the signed difference B - A over its threshold (|value| ≥ 1: changed), on Scan A's
    #: binned grid (lines, channels) with 0 outside the compared interior; its binning
    #: factors (lines, channels) map it onto A's full-resolution pixels.  Not in to_dict.
    difference: F32 | None = None
    binning: tuple[int, int] = (1, 1)

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


#: Trends that two scans harmonised to reference-equivalent attenuation leave between them
#: (untouched pairs across the simulator's models: gain 0.89-1.17, power 0.89-1.09); a
#: fit beyond them follows changed goods or pixels the parallax paired wrongly, and the
#: scans are compared as they are.
HARMONISED_GAIN = (0.8, 1.25)
HARMONISED_POWER = (0.85, 1.15)
#: The map of two scans already in the same units.
IDENTITY = LevelMap((0.05, 1.0), (0.05, 1.0), 1.0, 1.0)


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


#: Vertical magnifications of B's image onto A's that the warp searches: the fan's source
#: distance and height differ from scanner to scanner (3.5-6 m, 0.8-1.5 m), so the same
#: cargo at the same height appears up to a fifth taller or lower on one than on another.
SCALE_RANGE = (0.92, 1.08)
#: Farthest the warp moves B's heights, mm: where the floor is read differs by the
#: parallax of the end walls' bottom edge (about 100 mm between the models simulated).
OFFSET_MM = 150.0


@dataclass(frozen=True, slots=True)
class VerticalWarp:
    """Heights above the floor in A (mm) as ``scale`` x B's height + ``offset_mm``.

    ``misfit``: 1 - the correlation of the two row profiles after the warp (0: same).
    """

    scale: float
    offset_mm: float
    misfit: float

    def b_height(self, h_a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """B's height (mm above its floor) of the points at A's heights ``h_a`` (mm)."""
        return (h_a - self.offset_mm) / self.scale


def _warp_scores(
    pa: npt.NDArray[np.float64],
    ha: npt.NDArray[np.float64],
    pb: npt.NDArray[np.float64],
    hb: npt.NDArray[np.float64],
    scales: npt.NDArray[np.float64],
    offsets: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Correlation of A's profile with B's warped by each (scale, offset), (scales, offsets)."""
    order = np.argsort(hb)
    hbs, pbs = hb[order], pb[order]
    hq = (ha[None, None, :] - offsets[None, :, None]) / scales[:, None, None]
    inside = (hq >= hbs[0]) & (hq <= hbs[-1])
    q = np.interp(hq, hbs, pbs)
    w = inside.astype(np.float64)
    n = np.maximum(w.sum(axis=2), 1.0)
    ma = (w * pa).sum(axis=2) / n
    mq = (w * q).sum(axis=2) / n
    da, dq = w * (pa - ma[..., None]), w * (q - mq[..., None])
    cov = (da * dq).sum(axis=2)
    den = np.sqrt((da * da).sum(axis=2) * (dq * dq).sum(axis=2))
    r = np.where(den > 0, cov / np.where(den > 0, den, 1.0), -1.0)
    # a warp that leaves most of A's rows without B is no fit
    return np.asarray(np.where(n >= 0.8 * ha.size, r, -1.0), np.float64)


#: Gaussian sigma the row profiles are smoothed with before the fit, mm: an edge of the load
#: is a ramp as wide as its parallax (a few hundred mm, wider on a scanner whose source is
#: nearer), so edges are matched by their middles, not their feet.
PROFILE_SMOOTH_MM = 120.0


def _smooth(p: npt.NDArray[np.float64], sigma: float) -> npt.NDArray[np.float64]:
    """``p`` smoothed with a Gaussian of ``sigma`` samples (edges replicated)."""
    r = max(1, round(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / max(sigma, 1e-6)) ** 2)
    k /= k.sum()
    return np.asarray(np.convolve(np.pad(p, r, mode="edge"), k, mode="valid"), np.float64)


def fit_vertical(
    pa: npt.ArrayLike, ha: npt.ArrayLike, pb: npt.ArrayLike, hb: npt.ArrayLike
) -> VerticalWarp:
    """The warp of B's heights onto A's that best matches their row profiles.

    ``pa``, ``pb``: a value per row of each image (e.g. the median attenuation of the row
    along travel, which a change in one stretch of the load does not move); ``ha``,
    ``hb``: each row's height above its container's floor, mm.  The scale is searched in
    :data:`SCALE_RANGE`, the offset within ±:data:`OFFSET_MM`, coarse then fine, for the
    highest correlation.  Two identical profiles give scale 1, offset 0.
    """
    h1 = np.asarray(ha, np.float64)
    h2 = np.asarray(hb, np.float64)
    a = _smooth(np.asarray(pa, np.float64), PROFILE_SMOOTH_MM / abs(h1[0] - h1[1]))
    b = _smooth(np.asarray(pb, np.float64), PROFILE_SMOOTH_MM / abs(h2[0] - h2[1]))
    k = np.arange(round((SCALE_RANGE[0] - 1) * 100), round((SCALE_RANGE[1] - 1) * 100) + 1)
    scales = 1.0 + k / 100.0
    offsets = np.arange(-OFFSET_MM, OFFSET_MM + 1.0, 10.0)
    r = _warp_scores(a, h1, b, h2, scales, offsets)
    i, j = np.unravel_index(int(np.argmax(r)), r.shape)
    s0, t0 = float(scales[i]), float(offsets[j])
    fine_s = s0 + np.arange(-5, 6) / 1000.0
    fine_t = t0 + np.arange(-5.0, 6.0) * 2.0
    r2 = _warp_scores(a, h1, b, h2, fine_s, fine_t)
    i, j = np.unravel_index(int(np.argmax(r2)), r2.shape)
    return VerticalWarp(float(fine_s[i]), float(fine_t[j]), float(1.0 - r2[i, j]))


def _resample_rows(img: F32, rows: npt.NDArray[np.float64]) -> F32:
    """``img`` (lines, rows) sampled at fractional ``rows`` (linear; clamped at the edges)."""
    n = img.shape[1]
    r = np.clip(rows, 0.0, n - 1.0)
    r0 = np.floor(r).astype(np.intp)
    r1 = np.minimum(r0 + 1, n - 1)
    f = (r - r0).astype(np.float32)
    return np.ascontiguousarray(img[:, r0] * (1.0 - f) + img[:, r1] * f, dtype=np.float32)


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
    A's levels (:func:`level_map`) before the four factors are computed.  Across scanners
    (``harmonised``, or channel pitches more than :data:`SAME_PITCH` apart) the fans differ:
    B's heights are warped onto A's (:func:`fit_vertical`), B is compared with A within
    the parallax, changed stretches are found from the line integrals and
    :data:`CROSS_LIMITS` apply (``docs/atr.md``, "ATT across scanners").

    Raises:
        AtrInputError: a scan is unusable or shows no container (with the reason), or
            the two scans' levels cannot be matched.
    """
    if np.shape(a[0]) == np.shape(b[0]) and np.array_equal(a[0], b[0]):
        raise AtrInputError(
            "Scan A and Scan B are the same image: two scans of a container never are"
            " (each has its own noise)",
            fix="give the entry scan as Scan A and the exit scan as Scan B",
        )
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
    lines, rows = ia.shape
    # B along travel onto A's lines (front wall to doors), every row of B kept for the warp
    b_lines = np.ascontiguousarray(img_b[fb.front : fb.back + 1])
    ib_full = np.asarray(
        cv2.resize(b_lines, (b_lines.shape[1], lines), interpolation=cv2.INTER_AREA), np.float32
    )
    scale = lines / max(1, b_lines.shape[0])
    e = max(2, round(150.0 / fa.px_mm[0]))
    h_a = np.asarray(
        (fa.floor - (top_a + np.arange(rows))) * fa.px_mm[1], np.float64
    )  # mm above A's floor, per row
    cross = harmonised or abs(fa.channel_mm / fb.channel_mm - 1.0) > SAME_PITCH
    warp = (
        fit_vertical(
            np.median(ia[e:-e], axis=0),
            h_a,
            np.median(ib_full[e:-e], axis=0),
            (fb.floor - np.arange(ib_full.shape[1])) * fb.px_mm[1],
        )
        if cross
        else VerticalWarp(1.0, 0.0, 0.0)  # one fan: heights above the floor agree
    )
    b_rows = fb.floor - warp.b_height(h_a) / fb.px_mm[1]
    ib = _resample_rows(ib_full, b_rows)
    try:
        lm = level_map(_blur3(ia), _blur3(ib))
    except AtrInputError:
        if not harmonised:
            raise
        # both scans are already in reference-equivalent attenuation: a trend outside the
        # scanners' bounds is the changed goods (a stretch emptied), not the scanners
        lm = IDENTITY
    if harmonised and not (
        HARMONISED_GAIN[0] <= lm.gain <= HARMONISED_GAIN[1]
        and HARMONISED_POWER[0] <= lm.power <= HARMONISED_POWER[1]
    ):
        lm = IDENTITY  # farther from identity than two harmonised scans ever are
    ib = lm.apply(ib)
    ceiling = min(float(ia.max()), float(ib.max()))  # a saturated scanner sees no further
    ia, ib = np.minimum(ia, ceiling), np.minimum(ib, ceiling)
    bl, bc = fa.px_mm
    limits = CROSS_LIMITS if cross else LIMITS
    reg = {
        "shift_mm": round((fa.front * bl) - (fb.front * fb.px_mm[0]), 1),
        "scale": round(scale * fa.px_mm[0] / fb.px_mm[0], 4),
        "length_a_mm": round(fa.length_mm()),
        "length_b_mm": round(fb.length_mm()),
        "level_gain": round(lm.gain, 4),
        "level_power": round(lm.power, 4),
        "vertical_scale": round(warp.scale, 4),
        "vertical_offset_mm": round(warp.offset_mm, 1),
        "vertical_misfit": round(warp.misfit, 4),
        "across_scanners": cross,
    }
    # the interior for cargo factors, the rim (ends, floor band) for structure
    fband = max(2, round(250.0 / bc))
    # across scanners the roof band is left to structure: the top of the crop is where one
    # fan may end (the roof cut off) while the other shows the roof's edge-on sheets
    tband = min(rows - fband - 2, round(ROOF_BAND_MM / bc)) if cross else 0
    ca, cb = ia[e:-e, tband : rows - fband], ib[e:-e, tband : rows - fband]
    occ_a, occ_b = ca > OCCUPIED_A, cb > OCCUPIED_A
    sum_a, sum_b = float(ca.sum()), float(cb.sum())
    dens = abs(sum_b - sum_a) / max(sum_a, 1.0)
    # the ends are one or two lines of steel: which share of a pixel they fill differs from
    # scan to scan, so the rim is compared over three lines along travel
    ra = np.asarray(cv2.blur(ia, (1, 3)), np.float32)
    rb = np.asarray(cv2.blur(ib, (1, 3)), np.float32)
    sa = np.asarray(cv2.blur(ca, (5, 5)), np.float32)
    sb = np.asarray(cv2.blur(cb, (5, 5)), np.float32)
    if cross:
        # another fan: heights agree only to the parallax, so B is compared with the
        # highest and lowest of A within that tolerance (docs/atr.md, "ATT across scanners")
        tol = np.ones((3, 2 * max(1, round(PARALLAX_MM / bc)) + 1), np.uint8)
        ex_rim = _excess(ra, rb, tol)
        rim = np.concatenate(
            [ex_rim[:e].ravel(), ex_rim[-e:].ravel(), ex_rim[:, rows - fband :].ravel()]
        )
        struct = float(np.percentile(rim, 99))
        # the smear of an edge grows with its height above the source: the tolerance too
        h_c = h_a[tband : rows - fband]
        diff = _signed_excess_graded(sa, sb, h_c, bc)
        fill_a, fill_b = _loaded_length(ca, cb, bl, bc)
    else:
        rim_a = np.concatenate([ra[:e].ravel(), ra[-e:].ravel(), ra[:, rows - fband :].ravel()])
        rim_b = np.concatenate([rb[:e].ravel(), rb[-e:].ravel(), rb[:, rows - fband :].ravel()])
        struct = float(np.percentile(np.abs(rim_b - rim_a), 99))
        diff = sb - sa
        fill_a, fill_b = float(occ_a.mean()), float(occ_b.mean())
    vol = abs(fill_b - fill_a) / max(fill_a, 0.05)
    thr = 0.6 + 0.12 * np.maximum(sa, sb)
    mask = np.asarray(
        cv2.morphologyEx(
            (np.abs(diff) > thr).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
        ),
        np.uint8,
    )
    if cross:
        mask |= _line_changes(ca, cb, occ_a | occ_b, bl, bc)
    dmap = np.zeros(img_a.shape, np.float32)  # the viewer's difference map, on A's grid
    l_at, r_at = fa.front + e, top_a + tband
    dmap[l_at : l_at + diff.shape[0], r_at : r_at + diff.shape[1]] = diff / thr
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    diffs: list[dict[str, Any]] = []
    changed = 0.0
    min_area = 40000.0 / (bl * bc)
    for k in range(1, n):
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        if area < min_area or (cross and _fan_artefact(cw * bc, ch / max(1, ca.shape[0]))):
            continue
        sel = lab[cy : cy + ch, cx : cx + cw] == k
        d = float((cb - ca)[cy : cy + ch, cx : cx + cw][sel].mean())
        changed += area
        l0 = fa.front + e + cy
        r0 = top_a + tband + cx
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
        "volume": f"{'loaded length' if cross else 'filled fraction'} A {fill_a:.3f}, "
        f"B {fill_b:.3f}",
        "density": f"integrated attenuation changed by {100 * dens:.1f} %",
        "structure": f"walls, floor and ends differ by {struct:.2f} (99th percentile of |ΔA|)",
        "objects": f"{len(diffs)} region(s) changed, {100 * obj:.1f} % of the load",
    }
    factors = {
        k: {
            "figure": round(figures[k], 4),
            "limit": limits[k],
            "ok": figures[k] <= limits[k],
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
        difference=dmap,
        binning=(fa.fl, fa.fc),
    )
