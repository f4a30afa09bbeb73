"""Firearm-like shapes: a handgun's outline fitted over the cargo around it."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from .._model import Category, Finding
from ._scene import F32, Scene, line_offsets

#: A handgun in side view, mm along travel and down from its top: slide and barrel
#: 200 x 35, grip 40 wide and 95 long, raked back.  Matched both ways round.
HANDGUN_OUTLINE_MM = (
    (0, 0),
    (200, 0),
    (200, 35),
    (75, 35),
    (70, 130),
    (30, 130),
    (35, 35),
    (0, 35),
)


#: A machine pistol or compact sub-machine gun in side view, mm along travel and down
#: from its top: receiver and barrel 340 x 45, a magazine 35 wide hanging 150 below it in
#: front of a raked grip 40 wide and 100 long (the proportions of the Uzi, MP5K and
#: Skorpion class: overall 270-470 mm long, 200-260 mm high with the magazine, as their
#: makers' data give them).
MACHINE_PISTOL_OUTLINE_MM = (
    (0, 0),
    (340, 0),
    (340, 45),
    (265, 45),
    (270, 145),
    (230, 145),
    (225, 45),
    (185, 45),
    (185, 195),
    (150, 195),
    (150, 45),
    (0, 45),
)
#: The outlines fitted, each in four facings (as drawn, mirrored along travel, upside
#: down, both) and turned a quarter (standing on its muzzle or its butt).
OUTLINES: dict[str, tuple[tuple[int, int], ...]] = {
    "handgun": HANDGUN_OUTLINE_MM,
    "machine pistol": MACHINE_PISTOL_OUTLINE_MM,
}

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class _ShapeFilter:
    """Least-squares fit of an outline over a smooth background, as filters.

    Over a window (the outline's box and ``margin`` pixels round it) the image
    is modelled as a quadratic surface plus ``amplitude`` times the outline's
    coverage.  The surface's six monomials (1, y, x, y², x², xy) are separable
    filters (``moments``: a pair of 1-D kernels each); ``whiten`` turns their
    responses into those of an orthonormal basis of the same surfaces.
    ``outlines`` are the coverage kernels (one per facing), ``overlap`` their
    products with the orthonormal basis and ``energy`` what is left of an
    outline once the surface is taken out of it.
    """

    outlines: tuple[F64, ...]
    overlap: tuple[F64, ...]
    moments: tuple[tuple[F64, F64], ...]
    whiten: F64
    energy: float
    offset: tuple[int, int]  # response pixel → outline box origin (lines, rows)
    size: tuple[int, int]  # outline box (lines, rows)


def _coverage(
    outline: tuple[tuple[int, int], ...],
    bl: float,
    bc: float,
    mirror: bool,
    flip: bool = False,
    turn: bool = False,
) -> F32:
    """Fraction of each binned pixel the outline covers (rasterised 4 x finer).

    ``mirror`` reverses it along travel, ``flip`` turns it upside down, ``turn``
    stands it up (its length along the height).
    """
    ss = 4
    pts = np.asarray(outline, dtype=np.float64)
    if turn:
        pts = pts[:, ::-1].copy()
    if mirror:
        pts[:, 0] = pts[:, 0].max() - pts[:, 0]
    if flip:
        pts[:, 1] = pts[:, 1].max() - pts[:, 1]
    nl = int(np.ceil(pts[:, 0].max() / bl)) + 1
    nr = int(np.ceil(pts[:, 1].max() / bc)) + 1
    img = np.zeros((nl * ss, nr * ss), np.uint8)
    # OpenCV points are (x, y) = (row, line) here
    xy = np.stack([pts[:, 1] / bc * ss, pts[:, 0] / bl * ss], axis=1)
    cv2.fillPoly(img, [np.round(xy).astype(np.int32)], 1)
    return np.asarray(img.reshape(nl, ss, nr, ss).mean(axis=(1, 3)), dtype=np.float32)


@functools.lru_cache(maxsize=32)
def _outline_filter(
    name: str, bl: float, bc: float, turn: bool = False, margin: int = 4
) -> _ShapeFilter:
    """The fit of outline ``name`` (:data:`OUTLINES`) in its four facings, laid or stood."""
    covs = [
        np.pad(_coverage(OUTLINES[name], bl, bc, m, f, turn).astype(np.float64), margin)
        for m in (False, True)
        for f in (False, True)
    ]
    nl, nr = covs[0].shape
    y = np.arange(nl, dtype=np.float64) - (nl - 1) / 2
    x = np.arange(nr, dtype=np.float64) - (nr - 1) / 2
    one_y, one_x = np.ones_like(y), np.ones_like(x)
    moments = ((one_y, one_x), (y, one_x), (one_y, x), (y * y, one_x), (one_y, x * x), (y, x))
    raw = np.stack([np.outer(u, v) for u, v in moments])
    gram = np.einsum("iab,jab->ij", raw, raw)
    whiten = np.linalg.inv(np.linalg.cholesky(gram))
    basis = np.einsum("ij,jab->iab", whiten, raw)  # orthonormal over the window
    overlap = [np.einsum("iab,ab->i", basis, c) for c in covs]
    # the same in every facing: the window and its surfaces are symmetric
    energy = float((covs[0] ** 2).sum() - (overlap[0] ** 2).sum())
    # filters anchor a kernel at its centre
    return _ShapeFilter(
        tuple(covs),
        tuple(overlap),
        moments,
        whiten,
        energy,
        (margin - nl // 2, margin - nr // 2),
        (nl - 2 * margin, nr - 2 * margin),
    )


def _shape_fit(img: F32, flt: _ShapeFilter) -> tuple[F32, F32]:
    """Amplitude of the outline at every pixel (the better facing) and the share of the
    window's variance about its smooth background that the outline explains (0 to 1).

    Single precision: the window sums (about 10⁴) and the variance an outline explains
    (about 10) are far apart from float32's 10⁻⁷ relative error.
    """
    a = np.ascontiguousarray(img, dtype=np.float32)
    border = cv2.BORDER_REPLICATE
    raw = np.stack(
        [
            cv2.sepFilter2D(a, cv2.CV_32F, v.astype(np.float32), u.astype(np.float32),
                            borderType=border)
            for u, v in flt.moments
        ]
    )  # fmt: skip
    k = raw.shape[0]
    whiten = flt.whiten.astype(np.float32)
    coef = (whiten @ raw.reshape(k, -1)).reshape(raw.shape)  # on the orthonormal surfaces
    nl, nr = flt.outlines[0].shape
    rest = cv2.boxFilter(a * a, cv2.CV_32F, (nr, nl), normalize=False, borderType=border)
    rest -= np.einsum("iab,iab->ab", coef, coef)
    flat = coef.reshape(k, -1)
    amp = np.max(
        [
            cv2.filter2D(a, cv2.CV_32F, c.astype(np.float32), borderType=border)
            - (o.astype(np.float32) @ flat).reshape(a.shape)
            for c, o in zip(flt.outlines, flt.overlap, strict=True)
        ],
        axis=0,
    )
    amp /= np.float32(flt.energy)
    fit = np.clip(amp * amp * np.float32(flt.energy) / np.maximum(rest, 1e-9), 0.0, 1.0)
    return amp, fit


def firearm_shapes(sc: Scene) -> list[Finding]:
    """Firearm outlines: steel in a pistol's or machine pistol's shape over the cargo around it.

    Each outline of :data:`OUTLINES` is fitted in four facings, lying and standing.

    A pistol (about 30 mm of steel: +0.8 to +1.0 of attenuation) adds the same
    whether it lies in textiles or in paper, but in dense or uneven cargo a
    blob threshold either misses it or finds every edge of every package.
    Here the outline itself is fitted at every pixel over a smooth (quadratic)
    background: its amplitude says how much steel, and the share of the
    window's variance it explains says whether the shape is really there
    (package edges, coils and gaps explain little of it; on the tuning seeds
    no clean scan had a fit of :data:`FIREARM_FIT` anywhere, while most
    pistols fit at 0.8 to 0.95).  The fit runs on the image, on the image
    with its gaps between packages filled (a barrel across a gap) and on its
    white top-hat (:data:`FIREARM_TOPHAT_MM`: a pistol in a tyre's hole or
    beside a copper coil, whose edges no quadratic follows), both facings.
    Outlines wholly in the lowest 200 mm are left to the dense pass (the
    floor's cross members).  Score: the amplitude over :data:`FIREARM_AMPLITUDE`.
    """
    bl, bc = sc.frame.px_mm
    off, cargo = line_offsets(sc)
    lift = np.where(cargo, -np.minimum(off, 0.0)[:, None], 0.0)
    # the white top-hat keeps what is thinner than a pistol's surroundings: a pistol in a
    # tyre's hole or beside a coil, where the quadratic background cannot follow the edges
    se = cv2.getStructuringElement(
        cv2.MORPH_RECT, (_odd(FIREARM_TOPHAT_MM / bc), _odd(FIREARM_TOPHAT_MM / bl))
    )
    tophat = np.asarray(cv2.morphologyEx(sc.a, cv2.MORPH_TOPHAT, se), dtype=np.float32)
    images = (sc.a, np.asarray(sc.a + lift, dtype=np.float32), tophat)
    lines = sc.a.shape[0]
    floor = sc.row_above_floor(200.0)
    cands: list[tuple[float, float, int, int, str, _ShapeFilter]] = []
    for name in OUTLINES:
        for turn in (False, True):
            flt = _outline_filter(name, round(bl, 3), round(bc, 3), turn)
            best = np.zeros(sc.a.shape, np.float32)
            fits = np.zeros(sc.a.shape, np.float32)
            for img in images:
                amp, fit = _shape_fit(img, flt)
                take = (fit >= FIREARM_FIT) & (amp > best)
                best[take] = amp[take]
                fits[take] = fit[take]
            (ol, orr), (nl, nr) = flt.offset, flt.size
            # only where the whole window lies in the image and the outline ends above the
            # floor band
            wl, wr = flt.outlines[0].shape
            valid = np.zeros_like(best, dtype=bool)
            valid[wl // 2 : lines - wl + wl // 2, wr // 2 : floor - nr - orr] = True
            best[~valid] = 0.0
            peak = best >= cv2.dilate(best, np.ones((nl, nr), np.uint8))
            for li, ri in np.argwhere(peak & (best >= 0.5 * FIREARM_AMPLITUDE)):
                cands.append(
                    (float(best[li, ri]), float(fits[li, ri]), int(li) + ol, int(ri) + orr,
                     name, flt)
                )  # fmt: skip
    cands.sort(key=lambda c: -c[0])
    taken: list[tuple[int, int, int, int]] = []
    out: list[Finding] = []
    for steel, share, x, y, name, flt in cands:
        nl, nr = flt.size
        box = (x, y, x + nl, y + nr)
        if any(x < t[2] and t[0] < x + nl and y < t[3] and t[1] < y + nr for t in taken):
            continue  # one weapon, one finding: the strongest outline on it
        taken.append(box)
        why = f"{name} outline {nl * bl:.0f} x {nr * bc:.0f} mm, +{steel:.1f} over its"
        why += f" surroundings (the shape explains {share:.0%} of them)"
        out.append(sc.finding(Category.FIREARM, steel / FIREARM_AMPLITUDE, why, box))
    return out


#: Structuring element (mm, square) of the top-hat the outline is also fitted on: wider
#: than any part of a pistol (grip 40 mm, slide 35 mm), so that what it keeps of a pistol
#: is all of it, while a tyre ring or a coil beside it goes.
FIREARM_TOPHAT_MM = 100.0


def _odd(px: float) -> int:
    """The odd pixel count nearest ``px`` (at least 3): a kernel with a centre."""
    return max(3, 2 * round((px - 1) / 2) + 1)


#: Least share of a window's variance the handgun outline must explain to count.
FIREARM_FIT = 0.5
#: Outline amplitude (added attenuation) that scores 1.0 before per-commodity scaling:
#: about 17 mm of steel; a pistol is 0.8 to 1.0.
FIREARM_AMPLITUDE = 0.5
