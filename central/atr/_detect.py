"""Concealment and anomaly detectors on the binned, localised attenuation image.

Each detector looks for what the container model (ISO dry van: front wall,
doors, floor, thin side walls) and the surrounding cargo do not explain:

* dense objects: attenuation well above the cargo around them (running
  medians along and across travel, over cargo pixels only), split by material
  and shape into dense object, high-Z object and firearm-like shape;
* organic packages in metal cargo: a low-Z blob in a load that is metal;
* false wall: a full-height dense line a little behind the front wall, with
  attenuating goods between;
* double floor: a dense flat layer on the floor under an empty band, over a
  metre or more;
* undeclared vehicle: wheel-sized rings standing on the floor at a
  wheelbase's distance.

Thresholds come from tuning on simulator seeds disjoint from the benchmark
(see docs/atr.md); scores are scaled so that 1.0 is the red threshold.
"""
# ruff: noqa: RUF003

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from core.calibration import MaterialClass

from ._image import OCCUPIED_A, Frame, occupied_median
from ._model import Finding, level_of

F32 = npt.NDArray[np.float32]

#: Mass attenuation of cargo at the high energy, cm²/g: turns −ln T into g/cm².
MU_RHO_HI = 0.0285

_MATERIAL = {
    int(MaterialClass.NONE): "none",
    int(MaterialClass.ORGANIC): "organic",
    int(MaterialClass.INORGANIC): "inorganic",
    int(MaterialClass.METAL): "metal",
    int(MaterialClass.IMPENETRABLE): "impenetrable",
}


@dataclass(slots=True)
class Scene:
    """The binned interior of the container and what every detector shares."""

    a: F32  # high-energy attenuation, binned, interior crop (lines, rows)
    material: npt.NDArray[np.uint8]
    zeff: F32
    frame: Frame
    l0: int  # interior crop origin in binned coordinates
    r0: int
    occupied: npt.NDArray[np.bool_]
    background: F32
    residual: F32
    gaps: tuple[F32, npt.NDArray[np.bool_]] | None = None  # see _line_offsets

    @classmethod
    def build(cls, a: F32, material: npt.NDArray[np.uint8], zeff: F32, frame: Frame) -> Scene:
        """Crop to the interior and estimate the cargo background around every pixel."""
        bl, bc = frame.px_mm
        l0 = frame.front + max(1, round(120.0 / bl))
        l1 = max(l0 + 8, frame.back - max(1, round(120.0 / bl)))
        r0 = frame.top
        r1 = max(r0 + 8, frame.floor + 1)
        ai = np.ascontiguousarray(a[l0:l1, r0:r1])
        occ = ai > OCCUPIED_A
        mh = occupied_median(ai, occ, max(3, round(600.0 / bl)), axis=0)
        mv = occupied_median(ai, occ, max(3, round(600.0 / bc)), axis=1)
        bg = np.maximum(mh, mv)
        res = ai - bg
        return cls(
            ai,
            np.ascontiguousarray(material[l0:l1, r0:r1]),
            np.ascontiguousarray(zeff[l0:l1, r0:r1]),
            frame,
            l0,
            r0,
            occ,
            bg,
            res,
        )

    def finding(
        self,
        category: str,
        score: float,
        reason: str,
        box: tuple[int, int, int, int],
        *,
        yellow: float = 0.5,
    ) -> Finding:
        """A finding for the interior box (l0, r0, l1, r1), measured on the image."""
        l0, r0, l1, r1 = box
        sub = self.a[l0:l1, r0:r1]
        mat = self.material[l0:l1, r0:r1]
        z = self.zeff[l0:l1, r0:r1]
        mean_a = float(sub.mean()) if sub.size else 0.0
        counts = np.bincount(mat.ravel(), minlength=5) if mat.size else np.zeros(5, int)
        counts[0] = 0
        material = _MATERIAL[int(counts.argmax())] if counts.sum() else "none"
        zz = z[z > 0]
        gl0, gr0, gl1, gr1 = l0 + self.l0, r0 + self.r0, l1 + self.l0, r1 + self.r0
        mm = self.frame.to_mm(gl0, gr0, gl1, gr1)
        return Finding(
            category=category,
            score=float(score),
            level=level_of(score, yellow),
            reason=reason,
            bbox_px=self.frame.to_px(gl0, gr0, gl1, gr1),
            bbox_mm=mm,
            size_mm=[mm[2] - mm[0], mm[3] - mm[1]],
            mean_attenuation=mean_a,
            mean_density_gcm2=mean_a / MU_RHO_HI,
            material=material,
            zeff=float(np.median(zz)) if zz.size else 0.0,
        )

    def metal_load(self) -> float:
        """Fraction of cargo pixels classified metal or impenetrable."""
        m = self.material[self.occupied]
        if m.size == 0:
            return 0.0
        return float(np.mean(m >= int(MaterialClass.METAL)))


def _blobs(above: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """Pixels over a threshold as blobs: gaps between packages bridged, single pixels dropped.

    The gaps between packages (1 or 2 lines of air across the whole height)
    cut an object that straddles them in two; closing along travel joins them.
    """
    closed = cv2.morphologyEx(above.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 1), np.uint8))
    return np.asarray(cv2.morphologyEx(closed, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)))


def dense_objects(sc: Scene, metal_cargo: bool) -> list[Finding]:
    """Blobs far above the surrounding cargo: dense, high-Z, firearm-like, organic-in-metal."""
    bl, bc = sc.frame.px_mm
    thr = 0.35 + 0.09 * sc.background
    excess = sc.residual - thr
    mask = _blobs(excess > 0)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out: list[Finding] = []
    min_area = 4000.0 / (bl * bc)
    for k in range(1, n):
        # OpenCV's x runs along axis 1 (rows of the detector), y along axis 0 (lines)
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        x, y, w, h = cy, cx, ch, cw  # lines from x, w of them; rows from y, h of them
        if area < min_area:
            continue
        sel = lab[x : x + w, y : y + h] == k
        res = sc.residual[x : x + w, y : y + h][sel]
        exc = excess[x : x + w, y : y + h][sel]
        mean_res = float(res.mean())
        mean_exc = float(exc.mean())
        len_mm, hgt_mm = w * bl, h * bc
        area_mm2 = area * bl * bc
        # strength: how far above threshold, weighted by how much of it there is
        score = (mean_exc / 0.35) * min(1.0, np.sqrt(area_mm2 / 12000.0))
        z = sc.zeff[x : x + w, y : y + h][sel]
        mat = sc.material[x : x + w, y : y + h][sel]
        zmed = float(np.median(z[z > 0])) if np.any(z > 0) else 0.0
        imp = float(np.mean(mat == int(MaterialClass.IMPENETRABLE)))
        fill = area / float(w * h)
        if zmed >= 40.0:
            cat = "high-Z object"
            why = f"Z_eff {zmed:.0f} block {len_mm:.0f} x {hgt_mm:.0f} mm,"
            why += f" +{mean_res:.1f} above cargo"
        elif metal_cargo and mat.size and float(np.mean(mat == int(MaterialClass.ORGANIC))) > 0.4:
            cat = "organic in metal cargo"
            why = f"organic mass {len_mm:.0f} x {hgt_mm:.0f} mm inside metal cargo"
        elif max(len_mm, hgt_mm) <= 330.0 and fill < 0.75 and imp < 0.5:
            cat = "firearm-like shape"
            why = f"L-shaped steel outline {len_mm:.0f} x {hgt_mm:.0f} mm,"
            why += f" +{mean_res:.1f} above cargo"
        else:
            cat = "dense object"
            why = (
                f"{'impenetrable' if imp > 0.5 else 'dense'} object {len_mm:.0f} x {hgt_mm:.0f} mm,"
                f" +{mean_res:.1f} above the cargo around it"
            )
        out.append(sc.finding(cat, score, why, (x, y, x + w, y + h)))
    steel = _small_steel(sc, bl, bc)
    # one object, one finding: where both passes outline the same blob the stronger stays
    out = [f for f in out if not any(_same(f, g) and g.score > f.score for g in steel)]
    steel = [g for g in steel if not any(_same(f, g) and f.score >= g.score for f in out)]
    return out + steel


def _same(f: Finding, g: Finding) -> bool:
    """Whether two findings outline the same object (pixel boxes overlap by half or more)."""
    a, b = f.bbox_px, g.bbox_px
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return small > 0 and ix * iy >= 0.5 * small


def _small_steel(sc: Scene, bl: float, bc: float) -> list[Finding]:
    """Pistol-sized steel outlines in dense cargo, which the dense-object threshold misses.

    Steel adds its attenuation to whatever lies in the beam: a pistol adds
    about 0.8 whether it sits in textiles or paper.  The dense-object threshold
    grows with the cargo (0.35 + 0.09 A: 0.95 in paper at A = 6.6), so a pistol
    in dense cargo never reaches it.  Here a flatter threshold finds compact
    (100 to 330 mm both ways: not the thin bars of machinery), partly filled
    (L-shaped) blobs; their score is the mean excess over the cargo.
    """
    slope = 0.03 * sc.background
    res = _across_gaps(sc)
    core = _blobs(res > FIREARM_RESIDUAL + slope)
    # hysteresis: a pistol's thin grip and the blurred rim of its outline stay under the
    # core threshold; grow each core into the connected pixels above a lower one
    grown = _blobs(res > FIREARM_GROW + slope)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    seeded = np.zeros(n, bool)
    seeded[np.unique(lab[core > 0])] = True
    out: list[Finding] = []
    min_area = 4000.0 / (bl * bc)
    # outlines wholly within 200 mm of the floor are the floor's cross members and the
    # bottoms of packages over it, not pistols (the dense-object pass still sees steel there)
    floor_band = sc.a.shape[1] - round(200.0 / bc)
    for k in range(1, n):
        if not seeded[k]:
            continue
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        x, y, w, h = cy, cx, ch, cw
        len_mm, hgt_mm = w * bl, h * bc
        fill = area / float(w * h)
        if area < min_area or max(len_mm, hgt_mm) > 330.0 or min(len_mm, hgt_mm) < 100.0:
            continue
        if fill >= 0.75 or y >= floor_band:
            continue
        sel = lab[x : x + w, y : y + h] == k
        mean_res = float(res[x : x + w, y : y + h][sel].mean())
        score = mean_res / FIREARM_RESIDUAL_RED
        why = f"L-shaped steel outline {len_mm:.0f} x {hgt_mm:.0f} mm,"
        why += f" +{mean_res:.1f} above cargo"
        out.append(sc.finding("firearm-like shape", score, why, (x, y, x + w, y + h)))
    return out


def _across_gaps(sc: Scene) -> F32:
    """The residual with the gaps between packages filled in.

    The air between two packages runs the whole height of the load and shows
    far below the cargo's background (about -2 in dense goods); a pistol lying
    across it loses its middle there.  Each line's median residual over the
    cargo's height (above the floor) is that line's offset: taken off where it
    is negative, the gap reads as cargo and the steel over it reads as steel
    again.
    """
    off, cargo = _line_offsets(sc)
    lift = np.where(cargo, -np.minimum(off, 0.0)[:, None], 0.0)
    return np.asarray(sc.residual + lift, dtype=np.float32)


def _line_offsets(sc: Scene) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Each line's median residual over the cargo above the floor, and that cargo's mask.

    The floor and its cross members (the lowest 150 mm) are left out: they are
    no gap.  Lines without cargo get 0.  Worked out once per scene.
    """
    if sc.gaps is not None:
        return sc.gaps
    cargo = sc.background > OCCUPIED_A
    cargo[:, cargo.shape[1] - max(1, round(150.0 / sc.frame.px_mm[1])) :] = False
    lines = np.where(cargo, sc.residual, np.nan)
    ok = cargo.any(axis=1)
    off = np.zeros(sc.residual.shape[0], np.float32)
    off[ok] = np.nanmedian(lines[ok], axis=1)
    sc.gaps = (off, cargo)
    return sc.gaps


#: Residual over the cargo that a pistol-sized outline must exceed (plus 0.03 per unit of
#: cargo attenuation), and the mean residual that scores 1.0 before per-commodity scaling.
FIREARM_RESIDUAL = 0.5
#: Residual down to which a pistol-sized core is grown (plus the same 0.03 per unit).
FIREARM_GROW = 0.3
FIREARM_RESIDUAL_RED = 0.5


def organic_in_metal(sc: Scene, metal_cargo: bool) -> list[Finding]:
    """Organic packages among metal goods: regions the dual-energy map calls organic.

    A package of drugs or tobacco in machinery, scrap or copper adds no more
    attenuation than the metal around it, and where it fills a gap the cargo
    background follows it, so the dense-object pass does not see it.  Its
    material does show: metal loads have no organic region of any size (none
    in the clean metal scans of the tuning seeds), so each organic region of
    a package's size with real thickness (A > 1) is one.  Score: the square
    root of its area over 0.01 m² (a 100 mm square scores 1.0).
    """
    if not metal_cargo:
        return []
    bl, bc = sc.frame.px_mm
    org = (sc.material == int(MaterialClass.ORGANIC)) & (sc.a > ORGANIC_MIN_A)
    mask = cv2.morphologyEx(org.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(np.asarray(mask), connectivity=8)
    out: list[Finding] = []
    for k in range(1, n):
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        x, y, w, h = cy, cx, ch, cw
        area_mm2 = area * bl * bc
        if area_mm2 < ORGANIC_MIN_MM2:
            continue
        score = float(np.sqrt(area_mm2 / 10000.0))
        why = f"organic mass {w * bl:.0f} x {h * bc:.0f} mm inside metal cargo"
        out.append(sc.finding("organic in metal cargo", score, why, (x, y, x + w, y + h)))
    return out


#: Least attenuation, and least area (mm²), of an organic region that counts in metal cargo.
ORGANIC_MIN_A = 1.0
ORGANIC_MIN_MM2 = 5000.0


def false_wall(sc: Scene) -> list[Finding]:
    """A dense compartment right behind the front wall, much denser than the cargo behind it.

    A false wall hides goods between the front wall and a plate 0.3 to 0.6 m
    behind it; the thin plate itself hardly shows, the goods behind it do: over
    the whole height the first lines of the interior are far denser than what
    follows (the cargo, or the gap the wall leaves).  Score: the contrast of the
    median height profile, front block against the 1.2 m behind it.
    """
    bl = sc.frame.px_mm[0]
    lines, rows = sc.a.shape
    behind_n = max(4, round(1200.0 / bl))
    d_lo, d_hi = max(3, round(200.0 / bl)), round(900.0 / bl)
    if lines < d_hi + behind_n + 4:
        return []
    prof = np.median(sc.a[:, rows // 10 : rows - rows // 10], axis=1)
    contrasts = []
    for d in range(d_lo, d_hi + 1):
        front = float(np.median(prof[1:d]))
        behind = float(np.median(prof[d + 2 : d + 2 + behind_n]))
        contrasts.append((front - behind, d, front, behind))
    best = max(c[0] for c in contrasts)
    if best <= 0:
        return []
    # the compartment's depth: the deepest cut that keeps nearly all of the contrast
    best, d, front, behind = max((c for c in contrasts if c[0] >= 0.9 * best), key=lambda c: c[1])
    score = best / FALSE_WALL_CONTRAST
    if score < 0.5:
        return []
    depth = (d + sc.l0 - sc.frame.front) * bl
    why = f"compartment {depth:.0f} mm deep behind the front wall, attenuation {front:.1f}"
    why += f" against {behind:.1f} behind it: false wall"
    return [sc.finding("false wall", score, why, (0, 0, d, rows))]


#: Front-compartment contrast (median attenuation) that scores 1.0 before per-commodity scaling.
FALSE_WALL_CONTRAST = 2.5


def double_floor(sc: Scene) -> list[Finding]:
    """A dense layer on the floor under a nearly empty band, over 1.2 m or more.

    The goods under a false floor lie in the bottom 150 mm; the fan's
    perspective spreads them (and the plate over them) over the lowest 300 mm
    of the image, where they show far denser than the container's own floor
    elsewhere in the same scan (``F0``, the floor seen under empty space), and
    the goods that stood there are gone.
    """
    bl, bc = sc.frame.px_mm
    lines, rows = sc.a.shape
    f = rows  # end of the crop: the floor row is its last
    k_band = max(3, round(300.0 / bc))
    k_c0, k_c1 = round(400.0 / bc), round(900.0 / bc)
    if rows <= k_c1 + 1:
        return []
    peak = sc.a[:, f - k_band : f].max(axis=1)
    above = np.median(sc.a[:, f - k_c1 : f - k_c0], axis=1)
    empty = above < 0.4
    # the floor seen under empty space; capped, as a long double floor under removed goods
    # is empty space too and must not become its own reference
    floor0 = FLOOR_PEAK_A
    if empty.sum() >= max(5, lines // 20):
        floor0 = min(FLOOR_PEAK_MAX_A, float(np.median(peak[empty])))
    sig = np.minimum(peak - floor0 - 1.5, 1.2 - above)
    good = sig > 0
    min_len = max(2, round(1200.0 / bl))
    best = None
    i = 0
    while i < good.size:
        if good[i]:
            j = i
            while j < good.size and good[j]:
                j += 1
            if j - i >= min_len and (best is None or j - i > best[1] - best[0]):
                best = (i, j)
            i = j
        else:
            i += 1
    if best is None:
        return []
    i, j = best
    strength = float(np.median(sig[i:j]))
    score = min(3.0, 0.8 + strength / 1.5) * min(1.0, (j - i) * bl / 1500.0)
    why = f"dense layer {float(np.median(peak[i:j])):.1f} on the floor (floor alone"
    why += f" {floor0:.1f}) under an empty band over {(j - i) * bl:.0f} mm: double floor"
    return [sc.finding("double floor", score, why, (i, f - k_band, j, rows))]


#: The container floor's peak attenuation under empty space when a scan has too little
#: empty floor to measure it (tuning seeds, 1536 channels).
FLOOR_PEAK_A = 1.85
#: The highest floor reference a scan may set itself (an empty floor never shows denser).
FLOOR_PEAK_MAX_A = 2.5


def double_floor_under_goods(sc: Scene) -> list[Finding]:
    """A false floor under a full load, told by the gaps between its packages.

    Goods stand on the floor and the air between two packages reaches down to
    it; over a false floor they stand on its plate, and under every gap lie
    the packages hidden there.  Each gap (a line far lighter than the goods
    around it, :func:`_line_offsets`) is ``filled`` where the lowest 40 to
    140 mm above the floor, over the gap's own attenuation, exceed the same
    in the scan's other gaps (their lower quartile: the floor shows there too)
    by :data:`GAP_FILLED_A`.  A load needs six gaps or more to have a
    reference.  Three or more filled gaps in a row (at least 80 %
    of the gaps between the first and the last), 1.2 m or more apart, are one
    double floor.  Score: the number of filled gaps over three.
    """
    bl, bc = sc.frame.px_mm
    rows = sc.a.shape[1]
    off, cargo = _line_offsets(sc)
    b0, b1 = rows - round(140.0 / bc), rows - round(40.0 / bc)
    gaps: list[list[Any]] = []  # [first line, last line, bottom over gap per line] of each gap
    for line in np.flatnonzero(off < -0.8):
        lv = int(line)
        bottom = float(np.median(sc.a[lv, b0:b1])) - float(np.median(sc.a[lv][cargo[lv]]))
        if gaps and lv - gaps[-1][1] <= 2:
            gaps[-1][1] = lv
            gaps[-1][2].append(bottom)
        else:
            gaps.append([lv, lv, [bottom]])
    if len(gaps) < 6:
        return []
    # the floor itself shows in the bottom of every gap (how much depends on the fan's
    # angle there and on the gap's width): the scan's own gaps are the reference
    values = [float(np.median(g[2])) for g in gaps]
    ref = float(np.percentile(values, 25))
    marks = [(g[0], g[1], v > ref + GAP_FILLED_A) for g, v in zip(gaps, values, strict=True)]
    best: tuple[float, int, int, int] | None = None
    for i, (first, _, f_i) in enumerate(marks):
        if not f_i:
            continue
        n = 0
        for j in range(i, len(marks)):
            n += marks[j][2]
            span = (marks[j][1] - first) * bl
            run = marks[j][2] and n >= 3 and n >= 0.8 * (j - i + 1) and span >= 1200.0
            if run and (best is None or span > best[0]):
                best = (span, n, first, marks[j][1])
    if best is None:
        return []
    span, n, first, last = best
    # the hidden packages reach half a package beyond the outer filled gaps
    pad = round(0.5 * (last - first) / max(1, n - 1))
    l0, l1 = max(0, first - pad), min(sc.a.shape[0], last + pad + 1)
    why = f"{n} gaps between packages filled at the floor over {span:.0f} mm:"
    why += " goods standing on a false floor"
    return [sc.finding("double floor", n / 3.0, why, (l0, rows - round(150.0 / bc), l1, rows))]


#: Attenuation by which the bottom of a gap between packages exceeds that of the scan's
#: other gaps where something lies under it.
GAP_FILLED_A = 1.0


def _ring_kernel(r_out: float, r_in: float, bl: float, bc: float) -> F32:
    ro_l, ro_c = r_out / bl, r_out / bc
    hw, hh = int(ro_l) + 2, int(ro_c) + 2
    yy, xx = np.mgrid[-hw : hw + 1, -hh : hh + 1].astype(np.float32)
    rr = np.sqrt((yy * bl) ** 2 + (xx * bc) ** 2)
    k = np.where((rr <= r_out) & (rr >= r_in), 1.0, 0.0) - np.where(rr < r_in * 0.8, 1.0, 0.0)
    k -= k.mean()
    return (k / np.abs(k).sum()).astype(np.float32)


#: A tyre ring's attenuation over its hub (tuning seeds: wheels 0.68 to 1.44, the gaps
#: between stacked goods, coils and edges of blocks 2 and more, or below 0.5).
WHEEL_RING_OVER_HUB = (0.5, 1.8)
#: Least attenuation by which a wheel's ring must exceed its hub in all but its two
#: weakest eighths, and the ground just outside it: a ring all round, darker than what
#: surrounds it (wheels 0.45 and more on the tuning seeds; gaps and block edges fail one
#: side).  Also the wheel quality that scores 1.0.
WHEEL_RING_MIN = 0.4
#: Ring-response peaks (at least 400 mm apart) checked as wheels.
WHEEL_CANDIDATES = 16


@dataclass(slots=True)
class _Stencil:
    """Pixel masks of a wheel's hub, tyre ring (in eighths) and surroundings."""

    hl: int
    hr: int
    hub: npt.NDArray[np.bool_]
    ring: npt.NDArray[np.bool_]
    eighths: list[npt.NDArray[np.bool_]]
    outer: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, bl: float, bc: float) -> _Stencil:
        hl, hr = int(460.0 / bl) + 1, int(460.0 / bc) + 1
        yy, xx = np.mgrid[-hl : hl + 1, -hr : hr + 1]
        dy, dx = yy * bl, xx * bc
        d = np.sqrt(dy**2 + dx**2)
        ang = np.arctan2(dx, dy)
        ring = (d >= 200.0) & (d <= 320.0)
        eighths = []
        for s in range(8):
            a0 = -np.pi + np.pi * s / 4
            eighths.append(ring & (ang >= a0) & (ang < a0 + np.pi / 4))
        return cls(hl, hr, d < 120.0, ring, eighths, (d >= 360.0) & (d <= 460.0))

    def quality(self, padded: F32, line: int, row: int) -> float:
        """How much (line, row) looks like the centre of a tyre; 0 where it does not.

        ``padded``: the image padded with NaN by (hl, hr) on each side.
        """
        win = padded[line : line + 2 * self.hl + 1, row : row + 2 * self.hr + 1]
        hub = win[self.hub]
        hub = hub[np.isfinite(hub)]
        ring = win[self.ring]
        if hub.size == 0 or not np.isfinite(ring).any():
            return 0.0
        h = float(hub.mean())
        over = float(np.nanmean(ring)) - h
        if not WHEEL_RING_OVER_HUB[0] <= over <= WHEEL_RING_OVER_HUB[1]:
            return 0.0
        parts = sorted(
            float(np.nanmean(v)) - h if np.isfinite(v).any() else -1.0
            for v in (win[e] for e in self.eighths)
        )
        outer = win[self.outer]
        around = over + h - float(np.nanmean(outer)) if np.isfinite(outer).any() else over
        return max(0.0, min(parts[2], around))


def vehicle(sc: Scene) -> list[Finding]:
    """Two wheel rings on the floor a wheelbase apart (an undeclared car or van)."""
    bl, bc = sc.frame.px_mm
    rows = sc.a.shape[1]
    band = max(1, round(900.0 / bc))
    sub = np.ascontiguousarray(sc.a[:, max(0, rows - band) :])
    if sub.shape[0] < 20:
        return []
    k = _ring_kernel(320.0, 200.0, bl, bc)
    resp = cv2.filter2D(sub, cv2.CV_32F, k, borderType=cv2.BORDER_REPLICATE)
    col = resp.max(axis=1)
    at = resp.argmax(axis=1)
    wb_lo, wb_hi = round(2300.0 / bl), round(3000.0 / bl)
    # candidate wheels: the strongest ring responses, each checked for a tyre (a ring of
    # rubber's attenuation all round a light hub, darker than its surroundings: gaps between
    # stacked goods, coils and the edges of blocks are not), then the best pair of them a
    # wheelbase apart
    wheels: list[tuple[int, float]] = []
    gap = max(1, round(400.0 / bl))
    peaks: list[int] = []
    for i in np.argsort(col)[::-1]:
        li = int(i)
        if len(peaks) == WHEEL_CANDIDATES or col[li] <= 0:
            break
        if any(abs(li - w) < gap for w in peaks):
            continue
        peaks.append(li)
    st = _Stencil.of(bl, bc)
    padded = np.pad(sub, ((st.hl, st.hl), (st.hr, st.hr)), constant_values=np.nan)
    step = max(1, round(20.0 / bc))
    for li in peaks:
        # the tyres on the two sides of the car sit a little apart in height (the fan's
        # perspective): look round the response's peak for the best centre
        peak = int(at[li])
        q = max(
            st.quality(padded, li, rr)
            for rr in range(max(0, peak - 3 * step), min(sub.shape[1], peak + 3 * step + 1), step)
        )
        wheels.append((li, q))
    # a car's body is nearly empty between its wheels, 0.4 to 1.2 m above the floor, where
    # cargo is not: of two pairs the one with the emptier span wins
    light = np.asarray(
        sc.a[:, max(0, rows - round(1200.0 / bc)) : max(1, rows - round(400.0 / bc))] < 1.0
    ).mean(axis=1)
    best, rank, pair = 0.0, 0.0, (0, 0)
    for a, va in wheels:
        for b, vb in wheels:
            if wb_lo <= b - a <= wb_hi:
                v = min(va, vb)
                r = v * (0.3 + float(light[a:b].mean()))
                if r > rank:
                    best, rank, pair = v, r, (a, b)
    i, j = pair
    score = best / WHEEL_RING_MIN
    if score < 0.5:
        return []
    l0 = max(0, i - round(750.0 / bl))
    l1 = min(sc.a.shape[0], j + round(900.0 / bl))
    r0 = max(0, rows - round(1500.0 / bc))
    why = f"wheel pair {(j - i) * bl:.0f} mm apart on the floor: vehicle"
    return [sc.finding("undeclared vehicle", score, why, (l0, r0, l1, rows))]
