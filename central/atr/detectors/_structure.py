"""Structural concealment: a false wall behind the front wall, and double floors.

A false wall is a full-height dense line a little behind the front wall, with
attenuating goods between; a double floor a dense flat layer on the floor
under an empty band over a metre or more, or, under a full load, the gaps
between its packages filled at the floor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._model import Category, Finding
from ._base import SceneDetector
from ._scene import Scene, line_offsets


def false_wall(sc: Scene) -> list[Finding]:
    """A dense compartment right behind the front wall, much denser than the cargo behind it.

    A false wall hides goods between the front wall and a plate 0.3 to 0.6 m
    behind it.  The goods show: over the whole height the first lines of the
    interior are far denser than what follows (the cargo, or the gap the wall
    leaves); score: the contrast of the median height profile, front block
    against the 1.2 m behind it.  Where the load behind is as dense, the plate
    itself tells (:func:`_plate`); the stronger of the two scores stands.
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
    plate, p = _plate(sc)
    seen = f"attenuation {front:.1f} against {behind:.1f} behind it"
    if plate / FALSE_WALL_PLATE > score:
        # the wall itself: more telling than the contrast where goods are dense
        score, d = plate / FALSE_WALL_PLATE, p + 2
        seen = f"a plate +{plate:.1f} over the space either side of it under the roof"
    if plate < FALSE_WALL_PLATE_SEEN and behind < FALSE_WALL_EMPTY_BEHIND:
        # no sheet across the container and nothing behind the compartment: a load standing
        # at the front of an otherwise empty container (a part load) makes the same contrast
        score = min(score, FALSE_WALL_UNSEEN_SCORE)
        seen += ", no wall plate seen under the roof"
    depth = (d + sc.l0 - sc.frame.front) * bl
    why = f"compartment {depth:.0f} mm deep behind the front wall, {seen}: false wall"
    if score < 0.5:
        return []
    return [sc.finding(Category.FALSE_WALL, score, why, (0, 0, d, rows))]


def _plate(sc: Scene) -> tuple[float, int]:
    """The strongest thin upright plate across the front 1.2 m, and its line.

    A false wall is a steel sheet from floor to roof across the whole width:
    seen end-on, 2 m of steel over a line or two.  Under the roof, where the
    goods hidden behind it stop short, it stands out from the space on both
    sides (+1 to +4 over two lines on most false walls of the tuning seeds;
    no clean load made more than +0.06: the end of a stack is dense on one
    side only).  Returns the median, over the top quarter of the rows, of the
    two lines' attenuation over twice the denser of the 3 lines either side.
    """
    bl = sc.frame.px_mm[0]
    lines, rows = sc.a.shape
    band = sc.a[:, : max(3, rows // 4)]
    best, at = 0.0, 0
    for k in range(max(3, round(150.0 / bl)), min(lines - 5, round(1200.0 / bl))):
        side = np.maximum(
            np.median(band[k - 3 : k], axis=0), np.median(band[k + 2 : k + 5], axis=0)
        )
        excess = float(np.median(band[k] + band[k + 1] - 2.0 * side))
        if excess > best:
            best, at = excess, k
    return best, at


#: Front-compartment contrast (median attenuation) that scores 1.0 before per-commodity scaling.
FALSE_WALL_CONTRAST = 2.5
#: Plate excess under the roof (two lines over the denser side) that scores 1.0.
FALSE_WALL_PLATE = 0.5
#: Least plate excess for the compartment's contrast alone to go red where the container
#: is empty behind it: the false walls of the tuning seeds show +1 to +4, clean loads
#: +0.06 at most; without it the contrast of a part load at the front of an otherwise
#: empty container is the same, so it stays yellow.
FALSE_WALL_PLATE_SEEN = 0.15
FALSE_WALL_UNSEEN_SCORE = 0.9
#: Median attenuation behind the compartment under which the container is empty there:
#: only then is a part load at the front told from a false wall by the plate alone (with
#: cargo behind, a compartment far denser than it is the false wall's own sign).
FALSE_WALL_EMPTY_BEHIND = 0.5


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
    # the band's densest THIN_MM, not its densest row: a fan whose source is at the floor's
    # height sees the plywood and cross members edge-on, a line or two far denser than the
    # reference's fan shows them, while goods under a false floor are 100-150 mm deep
    k_thin = max(1, round(FLOOR_THIN_MM / bc))
    peak = np.sort(sc.a[:, f - k_band : f], axis=1)[:, -min(k_thin + 1, k_band)]
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
    return [sc.finding(Category.DOUBLE_FLOOR, score, why, (i, f - k_band, j, rows))]


#: The container floor's peak attenuation under empty space when a scan has too little
#: empty floor to measure it (tuning seeds, 1536 channels).
FLOOR_PEAK_A = 1.85
#: Rows of the floor band skipped from the top of its profile: the floor seen edge-on.
FLOOR_THIN_MM = 20.0
#: The highest floor reference a scan may set itself (an empty floor never shows denser).
FLOOR_PEAK_MAX_A = 2.5


def double_floor_under_goods(sc: Scene) -> list[Finding]:
    """A false floor under a full load, told by the gaps between its packages.

    Goods stand on the floor and the air between two packages reaches down to
    it; over a false floor they stand on its plate, and under every gap lie
    the packages hidden there.  Each gap (a line far lighter than the goods
    around it, :func:`line_offsets`) is ``filled`` where the lowest 40 to
    140 mm above the floor, over the gap's own attenuation, exceed the same
    in the scan's other gaps (their lower quartile: the floor shows there too)
    by :data:`GAP_FILLED_A`, or where a narrow gap (:data:`GAP_NARROW_MM`) has
    lost its depth at the bottom (:func:`_gap_fill` in :data:`GAP_FILL_SHARE`:
    the 8 mm gaps of dense cartons fill part of a pixel, so their attenuation
    says little, but the share of their depth that is gone does not depend on
    it).  A load needs six gaps or more to have a reference.  Three or more
    filled gaps in a row (at least 80 % of the gaps between the first and the
    last), 1.2 m or more apart, are one double floor.  Score: the number of
    filled gaps over three.
    """
    bl = sc.frame.px_mm[0]
    rows = sc.a.shape[1]
    off, cargo = line_offsets(sc)
    b0, b1 = sc.row_above_floor(140.0), sc.row_above_floor(40.0)
    above = sc.row_above_floor(250.0)
    m0, m1 = sc.row_above_floor(OPEN_ABOVE_MM[1]), sc.row_above_floor(OPEN_ABOVE_MM[0])
    # [first line, last line, bottom over gap per line, just above the false floor per line]
    gaps: list[list[Any]] = []
    for line in np.flatnonzero(off < GAP_A):
        lv = int(line)
        own = float(np.median(sc.a[lv][cargo[lv]]))
        bottom = float(np.median(sc.a[lv, b0:b1])) - own
        mid = float(np.median(sc.a[lv, m0:m1])) - own
        if gaps and lv - gaps[-1][1] <= 2:
            gaps[-1][1] = lv
            gaps[-1][2].append(bottom)
            gaps[-1][3].append(mid)
        else:
            gaps.append([lv, lv, [bottom], [mid]])
    if len(gaps) < 6:
        return []
    # the floor itself shows in the bottom of every gap (how much depends on the fan's
    # angle there and on the gap's width): the scan's own gaps are the reference
    values = [float(np.median(g[2])) for g in gaps]
    ref = float(np.percentile(values, 25))
    # the same, free of the gap's width: the share of the gap's depth (against the lines
    # either side) that is gone at the bottom; 8 mm gaps of dense cartons fill only part
    # of a pixel, and their depth varies with where they fall in it
    fills = [_gap_fill(sc, g[0], g[1], (b0, b1), above) for g in gaps]
    lo_fill, hi_fill = GAP_FILL_SHARE
    narrow = max(1, round(GAP_NARROW_MM / bl))  # lines of a gap between two packages
    # over a false floor the gap is open again just above the plate; a lower stack of
    # packages (a "gap" only in its upper part) is filled from the floor up
    mids = [float(np.median(g[3])) for g in gaps]
    marks = [
        (
            g[0],
            g[1],
            (v > ref + GAP_FILLED_A and mv < ref + 0.5 * GAP_FILLED_A)
            or (g[1] - g[0] < narrow and lo_fill <= fl <= hi_fill),
        )
        for g, v, mv, fl in zip(gaps, values, mids, fills, strict=True)
    ]
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
    return [
        sc.finding(Category.DOUBLE_FLOOR, n / 3.0, why, (l0, sc.row_above_floor(150.0), l1, rows))
    ]


#: Attenuation by which the bottom of a gap between packages exceeds that of the scan's
#: other gaps where something lies under it.
GAP_FILLED_A = 1.0
#: Heights above the floor (mm) where a gap over a false floor is open again: above the
#: plate and the goods hidden under it (150 mm), below any package's top.
OPEN_ABOVE_MM = (220.0, 360.0)
#: A line this much lighter than the cargo in its scan (median residual) is a gap.
GAP_A = -0.8
#: Share of a gap's depth gone at its bottom that fills it: the gaps of carton loads lose
#: 0.3 of it to the floor, those over a false floor all of it (0.99 and more on the
#: tuning seeds), pallets on the floor 0.85 at most (tuning seeds, 90 % of gaps); more
#: than all of it is no gap ending but something else dense under the line.
GAP_FILL_SHARE = (0.9, 1.3)
#: Widest gap (mm along travel) told filled by that share: the air between two cartons
#: (8 to 30 mm), not the space between two coils, whose round sides fill its bottom.
GAP_NARROW_MM = 60.0


def _gap_fill(sc: Scene, first: int, last: int, bottom: tuple[int, int], above: int) -> float:
    """Share of a gap's depth that is gone at its bottom (1: the gap ends above the floor).

    The depth is the lighter of the lines just outside the gap minus its deepest line,
    row by row; its median over the cargo higher than ``above`` against its median over
    the ``bottom`` rows.  NaN where the gap is too shallow to tell.
    """
    lines = sc.a.shape[0]
    off, cargo = line_offsets(sc)
    lv = first + int(np.argmin(off[first : last + 1]))
    lo, hi = first - 2, last + 2
    if lo < 0 or hi >= lines:
        return float("nan")
    depth = np.minimum(sc.a[lo], sc.a[hi]) - sc.a[lv]
    rows = cargo[lv, :above]
    if rows.sum() < 5:
        return float("nan")
    mid = float(np.median(depth[:above][rows]))
    if mid < -GAP_A:  # shallower than a gap
        return float("nan")
    return 1.0 - float(np.median(depth[bottom[0] : bottom[1]])) / mid


#: A dense compartment behind the front wall, or the wall's plate itself.
FALSE_WALL = SceneDetector(
    "false wall", frozenset({Category.FALSE_WALL}), lambda sc, _: false_wall(sc)
)
#: A dense layer on the floor under a nearly empty band.
DOUBLE_FLOOR = SceneDetector(
    "double floor", frozenset({Category.DOUBLE_FLOOR}), lambda sc, _: double_floor(sc)
)
#: A false floor under a full load, told by the gaps between its packages.
DOUBLE_FLOOR_UNDER_GOODS = SceneDetector(
    "double floor under goods",
    frozenset({Category.DOUBLE_FLOOR}),
    lambda sc, _: double_floor_under_goods(sc),
)
