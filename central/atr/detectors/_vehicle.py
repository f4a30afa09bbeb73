"""Undeclared vehicles: wheel-sized rings standing on the floor a wheelbase apart."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from .._model import Category, Finding
from ._base import SceneDetector
from ._scene import F32, Scene


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
        sc.a[:, max(0, sc.row_above_floor(1200.0)) : max(1, sc.row_above_floor(400.0))] < 1.0
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
    r0 = max(0, sc.row_above_floor(1500.0))
    why = f"wheel pair {(j - i) * bl:.0f} mm apart on the floor: vehicle"
    return [sc.finding(Category.UNDECLARED_VEHICLE, score, why, (l0, r0, l1, rows))]


#: Two wheel rings on the floor a wheelbase apart.
VEHICLE = SceneDetector(
    "vehicle", frozenset({Category.UNDECLARED_VEHICLE}), lambda sc, _: vehicle(sc)
)
