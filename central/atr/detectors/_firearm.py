"""Firearm-like shapes: a handgun's outline fitted over the cargo around it."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numba
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
#: A rifle in side view, mm along travel and down from its top: the receiver 240 x 60 (the
#: solid part), the barrel 22 across running 360 beyond it near the receiver's top, and a
#: magazine 55-60 wide hanging 140 below the receiver's front, raked towards the muzzle.
#: The stock and grip (wood or polymer) add little and are left out.  Proportions of the
#: AK and AR-15 patterns as their makers give them: AKM 880 mm overall with a 415 mm
#: barrel, M16A2 1006 mm with a 508 mm barrel, M4 carbine 838 mm with a 368 mm barrel;
#: receivers about 240 mm long and 55-70 mm high, 30-round magazines 150-200 mm below
#: them; barrels 20-25 mm across at the muzzle.  A longer barrel runs on beyond the
#: outline's window.
RIFLE_OUTLINE_MM = (
    (0, 0),
    (240, 0),
    (240, 12),
    (600, 12),
    (600, 34),
    (240, 34),
    (240, 60),
    (215, 60),
    (245, 190),
    (190, 200),
    (160, 60),
    (0, 60),
)

#: The outlines fitted, each in four facings (as drawn, mirrored along travel, upside
#: down, both) and, those of :data:`STANDING`, turned a quarter (standing on its muzzle
#: or its butt).  The compact handgun is the handgun at 156 mm (subcompact pistols are
#: 150-170 mm long, e.g. the Glock 26's 165 mm; the simulator draws pistols 150-250 mm).
OUTLINES: dict[str, tuple[tuple[float, float], ...]] = {
    "handgun": HANDGUN_OUTLINE_MM,
    "compact handgun": tuple((0.78 * u, 0.78 * v) for u, v in HANDGUN_OUTLINE_MM),
    "machine pistol": MACHINE_PISTOL_OUTLINE_MM,
    "rifle": RIFLE_OUTLINE_MM,
}
#: The outlines also fitted standing.  Not the compact handgun: stood, its 27 mm slide
#: over a 120 mm grip is a row of bottles' necks and shoulders (on the tuning seeds the
#: only clean loads it fitted), while pistols stand in cartons and bundles of full-size
#: ones.
STANDING = frozenset({"handgun", "machine pistol"})

#: The solid part of each outline, mm along travel and down from its top: a pistol's slide
#: and barrel, a machine pistol's receiver and barrel.  The outline is fitted as drawn (all
#: of it one steel) and with the rest of it at :data:`FIREARM_POLYMER_GRIP` of the solid
#: part: a polymer-framed pistol, whose steel slide is over a faint grip.
SLIDES_MM: dict[str, tuple[float, float]] = {
    "handgun": (200.0, 35.0),
    "compact handgun": (156.0, 27.3),
    "machine pistol": (340.0, 45.0),
    "rifle": (240.0, 60.0),
}
#: The outlines fitted as long guns: all steel only (no polymer-frame weighting), scored
#: against :data:`LONG_GUN_AMPLITUDE` and counted only where their barrel and magazine
#: (what is not the receiver) are plainly there (:func:`_steel`): a receiver alone is a
#: block of steel.
LONG_GUNS = frozenset({"rifle"})
#: What a polymer-framed pistol's grip adds, as a share of its slide: the steel magazine
#: (9 mm) in 10 mm of glass-filled polyamide over a 20 mm slide, the magazine narrower than
#: the grip (the simulator's pistols, :mod:`firmware_sim.physics._weapons`, and the
#: Glock 17's 32 mm slide and 9 mm magazine body as its maker gives them).
FIREARM_POLYMER_GRIP = 0.35

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class _ShapeFilter:
    """Least-squares fit of an outline over a smooth background, as filters.

    Over a window (the outline's box and ``margin`` pixels round it) the image
    is modelled as a quadratic surface plus ``amplitude`` times a kernel: the
    outline's coverage with its grip weighted all steel or as a polymer
    frame's (``grips``, :data:`FIREARM_POLYMER_GRIP`), in four facings.  The
    surface's six monomials (1, y, x, y², x², xy) are separable filters
    (``moments``: a pair of 1-D kernels each); ``whiten`` turns their responses
    into those of an orthonormal basis of the same surfaces.  A kernel is the
    whole outline's coverage and its slide's mixed, so the fit filters the
    image with the whole outline (``outlines``, one per facing, the surfaces
    taken out so that the response is net of them) and with the slide: a
    rectangle, separable (``slides``: its 1-D kernels and its response on the
    six monomials' to take out; mirrored facings share one, ``slide_of``).
    ``energy`` is what is left of each kernel once the surfaces are taken out
    (weighting by weighting, facing by facing), ``parts`` each facing's slide's
    and grip's coverage over the window (for :func:`_two_part_fit`).
    """

    outlines: tuple[F32, ...]
    slides: tuple[tuple[F32, F32, F32], ...]
    slide_of: tuple[int, ...]
    grips: tuple[float, ...]
    energy: tuple[tuple[float, ...], ...]
    parts: tuple[tuple[F64, F64], ...]
    moments: tuple[tuple[F32, F32], ...]
    whiten: F32
    offset: tuple[int, int]  # response pixel → outline box origin (lines, rows)
    size: tuple[int, int]  # outline box (lines, rows)
    window: tuple[int, int]  # fit window (lines, rows)


def _coverage(
    outline: tuple[tuple[float, float], ...],
    bl: float,
    bc: float,
    mirror: bool,
    flip: bool = False,
    turn: bool = False,
    extent: tuple[float, float] | None = None,
) -> F32:
    """Fraction of each binned pixel the outline covers (rasterised 4 x finer).

    ``mirror`` reverses it along travel, ``flip`` turns it upside down, ``turn``
    stands it up (its length along the height); ``extent`` (mm, as drawn) is the
    box it is drawn, mirrored and flipped in (default: its own).
    """
    ss = 4
    pts = np.asarray(outline, dtype=np.float64)
    box = pts.max(axis=0) if extent is None else np.asarray(extent, dtype=np.float64)
    if turn:
        pts, box = pts[:, ::-1].copy(), box[::-1].copy()
    if mirror:
        pts[:, 0] = box[0] - pts[:, 0]
    if flip:
        pts[:, 1] = box[1] - pts[:, 1]
    nl = int(np.ceil(box[0] / bl)) + 1
    nr = int(np.ceil(box[1] / bc)) + 1
    img = np.zeros((nl * ss, nr * ss), np.uint8)
    # OpenCV points are (x, y) = (row, line) here
    xy = np.stack([pts[:, 1] / bc * ss, pts[:, 0] / bl * ss], axis=1)
    cv2.fillPoly(img, [np.round(xy).astype(np.int32)], 1)
    return np.asarray(img.reshape(nl, ss, nr, ss).mean(axis=(1, 3)), dtype=np.float32)


@functools.lru_cache(maxsize=32)
def _outline_filter(
    name: str, bl: float, bc: float, turn: bool = False, margin: int = 4
) -> _ShapeFilter:
    """The fit of outline ``name`` (:data:`OUTLINES`) in its four facings, laid or stood,
    all steel and with a polymer frame."""
    outline = tuple((float(u), float(v)) for u, v in OUTLINES[name])
    extent = (max(u for u, _ in outline), max(v for _, v in outline))
    sl, sh = SLIDES_MM[name]
    slide = ((0.0, 0.0), (sl, 0.0), (sl, sh), (0.0, sh))
    parts: list[tuple[F64, F64]] = []
    for m in (False, True):
        for f in (False, True):
            whole = _coverage(outline, bl, bc, m, f, turn, extent).astype(np.float64)
            solid = _coverage(slide, bl, bc, m, f, turn, extent).astype(np.float64)
            parts.append((np.pad(solid, margin), np.pad(whole - solid, margin)))
    nl, nr = parts[0][0].shape
    y = np.arange(nl, dtype=np.float64) - (nl - 1) / 2
    x = np.arange(nr, dtype=np.float64) - (nr - 1) / 2
    one_y, one_x = np.ones_like(y), np.ones_like(x)
    moments = ((one_y, one_x), (y, one_x), (one_y, x), (y * y, one_x), (one_y, x * x), (y, x))
    raw = np.stack([np.outer(u, v) for u, v in moments])
    gram = np.einsum("iab,jab->ij", raw, raw)
    whiten = np.linalg.inv(np.linalg.cholesky(gram))
    basis = np.einsum("ij,jab->iab", whiten, raw)  # orthonormal over the window

    def net(c: F64) -> F64:  # what the surfaces do not explain of a kernel
        return np.asarray(c - np.einsum("iab,i->ab", basis, np.einsum("iab,ab->i", basis, c)))

    slides: list[tuple[F32, F32, F32]] = []
    firsts: list[F64] = []
    slide_of: list[int] = []
    for solid, _ in parts:
        same = [i for i, other in enumerate(firsts) if np.array_equal(other, solid)]
        if not same:
            # a rectangle's coverage is the outer product of its two 1-D coverages
            uu, sv, vt = np.linalg.svd(solid)
            u, v = uu[:, 0] * sv[0], vt[0]
            on_moments = np.linalg.solve(gram, np.einsum("iab,ab->i", raw, solid))
            slides.append(
                (u.astype(np.float32), v.astype(np.float32), on_moments.astype(np.float32))
            )
            firsts.append(solid)
            same = [len(firsts) - 1]
        slide_of.append(same[0])
    grips = (1.0,) if name in LONG_GUNS else (1.0, FIREARM_POLYMER_GRIP)
    energy = tuple(
        tuple(float((net(sol + w * grip) ** 2).sum()) for sol, grip in parts) for w in grips
    )
    # filters anchor a kernel at its centre
    return _ShapeFilter(
        tuple(net(sol + grip).astype(np.float32) for sol, grip in parts),
        tuple(slides),
        tuple(slide_of),
        grips,
        energy,
        tuple(parts),
        tuple((u.astype(np.float32), v.astype(np.float32)) for u, v in moments),
        whiten.astype(np.float32),
        (margin - nl // 2, margin - nr // 2),
        (nl - 2 * margin, nr - 2 * margin),
        (nl, nr),
    )


def _spectrum(img: F32, shape: tuple[int, int]) -> F32:
    """The image's 2-D DFT (OpenCV's packed real form) zero-padded to ``shape``."""
    pad = np.zeros(shape, np.float32)
    pad[: img.shape[0], : img.shape[1]] = img
    return np.asarray(cv2.dft(pad), dtype=np.float32)


def _dft_shape(image: tuple[int, int], window: tuple[int, int]) -> tuple[int, int]:
    """A fast DFT size holding ``image`` and a ``window`` beyond it, on a coarse grid (64
    lines, 32 rows) so that scans of one container length share their outlines' spectra."""
    return (
        cv2.getOptimalDFTSize(-(-(image[0] + window[0]) // 64) * 64),
        cv2.getOptimalDFTSize(-(-(image[1] + window[1]) // 32) * 32),
    )


@functools.lru_cache(maxsize=12)
def _outline_spectra(
    name: str, bl: float, bc: float, turn: bool, shape: tuple[int, int]
) -> tuple[F32, ...]:
    """The DFTs of outline ``name``'s four net kernels (``_ShapeFilter.outlines``) at the
    padded ``shape``.  Each is 4 bytes a pixel of ``shape`` (about 1 MB for a 40 ft
    container); the cache holds the five outline fits of two such shapes."""
    flt = _outline_filter(name, bl, bc, turn)
    return tuple(_spectrum(k, shape) for k in flt.outlines)


def _correlate(spectrum: F32, kernel: F32, image: tuple[int, int], anchor: tuple[int, int]) -> F32:
    """What ``cv2.filter2D`` gives with a kernel anchored at ``anchor``, from the image's and
    the kernel's spectra (:func:`_spectrum`), where the kernel lies wholly in the image;
    elsewhere 0."""
    c = cv2.idft(
        cv2.mulSpectrums(spectrum, kernel, 0, conjB=True),
        flags=cv2.DFT_SCALE | cv2.DFT_REAL_OUTPUT,
    )
    out = np.zeros(image, np.float32)
    al, ar = anchor
    out[al:, ar:] = c[: image[0] - al, : image[1] - ar]
    return out


@numba.njit(cache=True, nogil=True)
def _integrals(img: F32) -> F64:  # pragma: no cover - compiled
    """Summed-area tables of the image times the window surfaces' monomials: a, a·y, a·x,
    a·y², a·x², a·y·x and a², (lines + 1, rows + 1, 7), double precision.

    y and x are pixels from the image's centre (lines, rows), which keeps the sums of the
    squares within 10¹² of a 40 ft container's, far from float64's 10¹⁶.
    """
    lines, rows = img.shape
    out = np.empty((lines + 1, rows + 1, 7))
    out[0, :, :] = 0.0
    out[:, 0, :] = 0.0
    cy, cx = lines / 2.0, rows / 2.0
    for li in range(lines):
        y = li - cy
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = 0.0  # this line's sums so far
        for ri in range(rows):
            x = ri - cx
            a = float(img[li, ri])
            ay, ax = a * y, a * x
            s0 += a
            s1 += ay
            s2 += ax
            s3 += ay * y
            s4 += ax * x
            s5 += ay * x
            s6 += a * a
            up, here = out[li, ri + 1], out[li + 1, ri + 1]
            here[0], here[1], here[2] = up[0] + s0, up[1] + s1, up[2] + s2
            here[3], here[4], here[5], here[6] = up[3] + s3, up[4] + s4, up[5] + s5, up[6] + s6
    return out


@numba.njit(cache=True, nogil=True)
def _fit_update(
    sums: F64,
    wholes: F32,
    slides: F32,
    on: F32,
    slide_of: npt.NDArray[np.int64],
    whiten: F32,
    grips: F64,
    energy: F64,
    window: tuple[int, int],
    valid: tuple[int, int, int, int],
    src: int,
    fit_min: float,
    amp_max: float,
    best: F32,
    which: npt.NDArray[np.int8],
    source: npt.NDArray[np.int8],
    fits: F32,
) -> None:  # pragma: no cover - compiled
    """One pass over the ``valid`` pixels (lines l0..l1, rows r0..r1) of one image's
    outline fit (see :func:`_shape_fit`).

    The window's six surface moments (1, y, x, y², x², xy about its centre, as
    ``_ShapeFilter.moments``) and its sum of squares come from the summed-area tables
    ``sums`` (:func:`_integrals`), the outline's responses from ``wholes`` (per facing)
    and ``slides`` (per slide, less their surfaces' part, ``on``).
    """
    nl, nr = window
    l0, l1, r0, r1 = valid
    lines = sums.shape[0] - 1
    rows = sums.shape[1] - 1
    facings = wholes.shape[0]
    n_slides = slides.shape[0]
    raw = np.empty(6)
    s = np.empty(7)
    net = np.empty(n_slides)
    for li in range(l0, l1):
        a0 = li - nl // 2
        a1 = a0 + nl
        dy = a0 + (nl - 1) / 2.0 - lines / 2.0  # the window's centre, from the image's
        for ri in range(r0, r1):
            b0 = ri - nr // 2
            b1 = b0 + nr
            dx = b0 + (nr - 1) / 2.0 - rows / 2.0
            for k in range(7):
                s[k] = sums[a1, b1, k] - sums[a0, b1, k] - sums[a1, b0, k] + sums[a0, b0, k]
            raw[0] = s[0]
            raw[1] = s[1] - dy * s[0]
            raw[2] = s[2] - dx * s[0]
            raw[3] = s[3] - 2.0 * dy * s[1] + dy * dy * s[0]
            raw[4] = s[4] - 2.0 * dx * s[2] + dx * dx * s[0]
            raw[5] = s[5] - dy * s[2] - dx * s[1] + dy * dx * s[0]
            rest = s[6]
            for i in range(6):
                c = 0.0
                for j in range(i + 1):  # the inverse of a Cholesky factor: lower triangular
                    c += whiten[i, j] * raw[j]
                rest -= c * c
            rest = max(rest, 1e-9)
            for q in range(n_slides):
                v = float(slides[q, li, ri])
                for m in range(6):
                    v -= on[q, m] * raw[m]
                net[q] = v
            for g in range(grips.shape[0]):
                w = grips[g]
                amp = 0.0
                kb = 0
                for f in range(facings):
                    p = float(wholes[f, li, ri])
                    if w != 1.0:
                        p = w * p + (1.0 - w) * net[slide_of[f]]
                    p /= energy[g, f]
                    if p > amp:
                        amp = p
                        kb = f
                fit = min(max(amp * amp * energy[g, kb] / rest, 0.0), 1.0)
                if fit >= fit_min and amp > best[g, li, ri] and amp <= amp_max:
                    best[g, li, ri] = amp
                    which[g, li, ri] = kb
                    source[g, li, ri] = src
                    fits[g, li, ri] = fit


def _shape_fit(
    img: F32,
    sums: F64,
    spectrum: F32,
    kernels: tuple[F32, ...],
    flt: _ShapeFilter,
    valid: tuple[int, int, int, int],
    src: int,
    maps: tuple[F32, npt.NDArray[np.int8], npt.NDArray[np.int8], F32],
    least_fit: float,
    most: float,
) -> None:
    """Fit the outline of ``flt`` at the ``valid`` pixels (lines l0..l1, rows r0..r1) of
    ``img`` and keep, per grip weighting (all steel, polymer frame), where it beats
    ``maps`` so far.

    ``sums`` are the image's summed-area tables (:func:`_integrals`), ``spectrum`` its
    DFT and ``kernels`` its outlines' (:func:`_spectrum`, :func:`_outline_spectra`): each
    worked out once for all outlines.  At every pixel: the outline's amplitude in its best
    facing (the added attenuation of its slide), that facing (0 to 3) and the share of
    the window's variance about its smooth background it explains (0 to 1).  ``maps``
    are (best amplitude, facing, image ``src``, share), each (grips, lines, rows),
    updated in place where the share is at least ``least_fit``, the amplitude at most
    ``most`` and above the best so far.

    The window sums are double precision; the outlines' responses single: they are
    about 10, far from float32's 10⁻⁷ relative error of the image's energy.
    """
    a = np.ascontiguousarray(img, dtype=np.float32)
    nl, nr = flt.window
    wholes = np.stack([_correlate(spectrum, k, a.shape, (nl // 2, nr // 2)) for k in kernels])
    slides = np.asarray(
        [
            cv2.sepFilter2D(a, cv2.CV_32F, v, u, borderType=cv2.BORDER_REPLICATE)
            for u, v, _ in flt.slides
        ],
        dtype=np.float32,
    )
    on = np.stack([o for _, _, o in flt.slides]).astype(np.float32)
    _fit_update(
        sums,
        wholes,
        slides,
        on,
        np.asarray(flt.slide_of, np.int64),
        flt.whiten,
        np.asarray(flt.grips, np.float64),
        np.asarray(flt.energy, np.float64),
        (nl, nr),
        valid,
        src,
        least_fit,
        most,
        *maps,
    )


def _two_part_fit(
    img: F32, flt: _ShapeFilter, kernel: int, li: int, ri: int
) -> tuple[float, float, float]:
    """The slide's and the grip's amplitudes in the window at response pixel (``li``,
    ``ri``), and the grip's standard error.

    The window is fitted again by least squares with the slide and the grip of
    facing ``kernel`` as two regressors beside the quadratic surface (one
    window: a few hundred pixels, eight unknowns).  A bar of steel fits a
    polymer-framed pistol's outline (a slide over a faint grip) nearly as well
    as the pistol, but with nothing in its grip; an all-steel outline's
    amplitude is an average over slide and grip, where a pistol's slide is the
    thicker steel.
    """
    nl, nr = flt.window
    l0, r0 = li - nl // 2, ri - nr // 2
    win = np.asarray(img[max(0, l0) : l0 + nl, max(0, r0) : r0 + nr], dtype=np.float64)
    if l0 < 0 or r0 < 0 or win.shape != (nl, nr):
        return 0.0, 0.0, 1.0
    solid, grip = flt.parts[kernel]
    cols = [np.outer(u, v).ravel() for u, v in flt.moments] + [solid.ravel(), grip.ravel()]
    x = np.stack(cols, axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(x, win.ravel(), rcond=None)
    dof = x.shape[0] - x.shape[1]
    resid = win.ravel() - x @ coef
    var = float(resid @ resid) / max(1, dof)
    cov = np.linalg.pinv(x.T @ x)
    s, g = float(coef[-2]), float(coef[-1])
    se = float(np.sqrt(max(var * cov[-1, -1], 1e-12)))
    return s, g, se


def _steel(
    amp: float, grip: float, slide: float, held: float, se: float, long_gun: bool = False
) -> float:
    """What a candidate outline says of the steel in it (its slide's added attenuation),
    0 where it is no firearm.

    ``amp`` is the outline's amplitude with its grip weighted ``grip`` (1: all
    steel), ``slide``, ``held`` and ``se`` the two-part fit's slide and grip
    amplitudes and the grip's standard error (:func:`_two_part_fit`).  All steel,
    the slide's amplitude counts where the grip is plainly there
    (:data:`FIREARM_STEEL_GRIP`); a polymer frame's outline counts only then
    (:data:`FIREARM_POLYMER_GRIP_MIN`) and with no more steel than two layers of
    such pistols (:data:`FIREARM_POLYMER_MAX`).  A long gun's outline (``long_gun``,
    :data:`LONG_GUNS`) counts only where its barrel and magazine are plainly there, and
    with no more steel than :data:`LONG_GUN_MAX_AMPLITUDE`.
    """
    if long_gun:
        share, t = FIREARM_STEEL_GRIP
        there = held >= share * slide and held >= t * se
        return max(amp, slide) if there and 0.0 < slide <= LONG_GUN_MAX_AMPLITUDE else 0.0
    if grip >= 1.0:
        share, t = FIREARM_STEEL_GRIP
        there = held >= share * slide and held >= t * se
        return max(amp, slide) if there and slide <= FIREARM_MAX_AMPLITUDE else amp
    share, t = FIREARM_POLYMER_GRIP_MIN
    there = held >= share * slide and held >= t * se
    return slide if there and 0.0 < slide <= FIREARM_POLYMER_MAX else 0.0


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
    floor's cross members).

    Each outline is fitted all steel and as a polymer frame's (its grip at
    :data:`FIREARM_POLYMER_GRIP` of its slide: only the slide and the magazine
    are steel), and each peak is fitted again with slide and grip apart
    (:func:`_two_part_fit`, :func:`_steel`): a pistol's slide is thicker steel
    than its grip, so the slide's amplitude is the steel where the grip is
    plainly there too; a slide alone is a bar, no pistol.  Score: that steel
    over :data:`FIREARM_AMPLITUDE`.
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
    # long guns are fitted on the images binned LONG_GUN_BIN x LONG_GUN_BIN: their outline
    # is three times a pistol's, and its window's filters at full size cost a second a scan
    nb = LONG_GUN_BIN
    ql, qr = sc.a.shape[0] // nb, sc.a.shape[1] // nb
    coarse = tuple(
        np.ascontiguousarray(img[: ql * nb, : qr * nb].reshape(ql, nb, qr, nb).mean(axis=(1, 3)))
        for img in images
    )
    floor = sc.row_above_floor(200.0)
    cands: list[tuple[float, float, float, float, int, int, str, tuple[int, int]]] = []
    # per resolution (the images, and binned for long guns): the outline fits, and the
    # images' DFTs and summed-area tables that they all share
    fine, binned = (1, images, bl, bc), (nb, coarse, bl * nb, bc * nb)
    filters = {
        (name, turn): _outline_filter(name, round(pl, 3), round(pc, 3), turn)
        for name in OUTLINES
        for _, _, pl, pc in [binned if name in LONG_GUNS else fine]
        for turn in ((False, True) if name in STANDING else (False,))
    }
    shared: dict[int, tuple[tuple[int, int], list[F32], list[F64]]] = {}
    for step, imgs, _, _ in (fine, binned):
        used = [f for (n, _), f in filters.items() if (n in LONG_GUNS) == (step == nb)]
        if not used:
            continue
        dft = _dft_shape(
            imgs[0].shape, (max(f.window[0] for f in used), max(f.window[1] for f in used))
        )
        shared[step] = (
            dft,
            [_spectrum(img, dft) for img in imgs],
            [_integrals(np.ascontiguousarray(img, dtype=np.float32)) for img in imgs],
        )
    for name in OUTLINES:
        long_gun = name in LONG_GUNS
        unit = LONG_GUN_AMPLITUDE if long_gun else FIREARM_AMPLITUDE
        most = LONG_GUN_MAX_AMPLITUDE if long_gun else FIREARM_MAX_AMPLITUDE
        least_fit = LONG_GUN_FIT if long_gun else FIREARM_FIT
        step, imgs, pl, pc = binned if long_gun else fine
        shape = imgs[0].shape
        dft, spectra, sums = shared[step]
        for turn in (False, True) if name in STANDING else (False,):
            flt = filters[name, turn]
            # per grip weighting (all steel, polymer frame): the best amplitude over the images
            g = len(flt.grips)
            maps = (
                np.zeros((g, *shape), np.float32),
                np.zeros((g, *shape), np.int8),
                np.zeros((g, *shape), np.int8),
                np.zeros((g, *shape), np.float32),
            )
            kernels = _outline_spectra(name, round(pl, 3), round(pc, 3), turn, dft)
            (ol, orr), (nl, nr) = flt.offset, flt.size
            # only where the whole window lies in the image and the outline ends above the
            # floor band
            wl, wr = flt.window
            valid = (wl // 2, shape[0] - wl + wl // 2, wr // 2, floor // step - nr - orr)
            for i, img in enumerate(imgs):
                _shape_fit(img, sums[i], spectra[i], kernels, flt, valid, i, maps, least_fit, most)
            for fam, (best, which, source, fits) in enumerate(zip(*maps, strict=True)):
                peak = best >= cv2.dilate(best, np.ones((nl, nr), np.uint8))
                for li, ri in np.argwhere(peak & (best >= 0.5 * unit)):
                    k, src = int(which[li, ri]), int(source[li, ri])
                    grip = flt.grips[fam]
                    slide, held, err = _two_part_fit(imgs[src], flt, k, int(li), int(ri))
                    steel = _steel(float(best[li, ri]), grip, slide, held, err, long_gun)
                    x, y = (int(li) + ol) * step, (int(ri) + orr) * step
                    if steel >= 0.5 * unit:
                        cands.append(
                            (steel / unit, steel, grip, float(fits[li, ri]), x, y, name,
                             (nl * step, nr * step))
                        )  # fmt: skip
    cands.sort(key=lambda c: -c[0])
    taken: list[tuple[int, int, int, int]] = []
    boxes: list[tuple[int, int, int, int]] = []
    out: list[Finding] = []
    for score, steel, grip, share, x, y, name, (nl, nr) in cands:
        box = (x, y, x + nl, y + nr)
        if any(x < t[2] and t[0] < x + nl and y < t[3] and t[1] < y + nr for t in taken):
            continue  # one weapon, one finding: the strongest outline on it
        taken.append(box)
        grown = _grown(sc, box, steel)
        if grown != box and any(_within(grown, g) for g in boxes):
            continue  # a part of a weapon or carton already found whole
        boxes.append(grown)
        why = f"{name} outline {nl * bl:.0f} x {nr * bc:.0f} mm"
        why += " (polymer frame)" if grip < 1.0 else ""
        part = "receiver" if name in LONG_GUNS else "slide"
        why += (
            f", {part} +{steel:.1f} over its surroundings (the shape explains {share:.0%} of them)"
        )
        out.append(sc.finding(Category.FIREARM, score, why, grown))
    return out


def _grown(sc: Scene, box: tuple[int, int, int, int], steel: float) -> tuple[int, int, int, int]:
    """The outline's box grown to the whole object it lies on.

    An outline fits a pistol's or a machine pistol's slide and grip; the
    weapon may be longer (a rifle's action, a sub-machine gun's receiver) or
    one of a carton or bundle.  The object is where the residual over the
    cargo (``Scene.residual``) is at least half the outline's steel, connected
    to the outline, within :data:`FIREARM_GROW_MM` of it; where that region
    reaches the edge of the search it is the cargo's own, and the box stays.
    """
    l0, r0, l1, r1 = box
    bl, bc = sc.frame.px_mm
    lines, rows = sc.residual.shape
    pl, pr = round(FIREARM_GROW_MM / bl), round(FIREARM_GROW_MM / bc)
    w0, v0, w1, v1 = max(0, l0 - pl), max(0, r0 - pr), min(lines, l1 + pl), min(rows, r1 + pr)
    solid = (sc.residual[w0:w1, v0:v1] >= 0.5 * steel).astype(np.uint8)
    n, lab = cv2.connectedComponents(solid, connectivity=8)
    core = np.bincount(lab[l0 - w0 : l1 - w0, r0 - v0 : r1 - v0].ravel(), minlength=n)
    core[0] = 0
    if n < 2 or core.max() == 0:
        return box
    ls, rs = np.nonzero(lab == int(core.argmax()))
    g0, h0, g1, h1 = int(ls.min()), int(rs.min()), int(ls.max()) + 1, int(rs.max()) + 1
    if g0 == 0 < w0 or h0 == 0 < v0 or (g1 == w1 - w0 < lines) or (h1 == v1 - v0 < rows):
        return box  # it runs on beyond the search: the cargo, not a weapon
    return (min(l0, w0 + g0), min(r0, v0 + h0), max(l1, w0 + g1), max(r1, v0 + h1))


def _within(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether box ``a`` lies mostly (over half its area) inside box ``b``."""
    il = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ir = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return il * ir > 0.5 * (a[2] - a[0]) * (a[3] - a[1])


#: How far (mm) round an outline the object it lies on is looked for: a rifle (up to
#: 1200 mm) or a carton of pistols (up to 3 x 270 mm) beyond a 200 mm outline.
FIREARM_GROW_MM = 800.0


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
#: Most a slide may add and still be a firearm's: two layers of pistols across the beam
#: (a carton's most, :mod:`firmware_sim.physics._weapons`) are about 40 mm of steel, +1.2
#: to +1.6; the edges of stacked ingots or plates fit an outline at +5 and more.
FIREARM_MAX_AMPLITUDE = 2.5
#: (share of the slide's amplitude, standard errors) the grip of a two-part fit
#: (:func:`_two_part_fit`) must reach for an all-steel outline to be scored by its slide:
#: on the tuning seed (7300) clean loads' candidate outlines had grips of -0.04 to 0.14 of
#: their slide at -1 to 3 standard errors (10th to 90th percentile), pistols' 0.1 to 0.4
#: at 2 to 9.
FIREARM_STEEL_GRIP = (0.3, 5.0)
#: The same for a polymer frame's outline, stricter: a slide over a faint grip is what
#: the edges of stacked bottles and cartons look like too, whose grips reached 7
#: standard errors on the tuning seeds.
FIREARM_POLYMER_GRIP_MIN = (0.15, 8.0)
#: Most steel a polymer-framed outline's slide may add: two layers of pistols with 20 mm
#: slides across the beam (a carton's most, :mod:`firmware_sim.physics._weapons`), +1.2.
FIREARM_POLYMER_MAX = 1.3
#: Outline amplitude that scores 1.0 for a long gun (:data:`LONG_GUNS`): a rifle's
#: receiver and barrel are a stamped or milled steel shell round the bolt and a tube of
#: 20-25 mm with a 5.5-8 mm bore, 10-15 mm of steel across the beam, +0.3 to +0.45.
LONG_GUN_AMPLITUDE = 0.3
#: Most a long gun's receiver may add: two rifles across the beam, about 30 mm of steel.
LONG_GUN_MAX_AMPLITUDE = 1.2
#: Least share of a window's variance a long gun's outline must explain: more than a
#: pistol's (:data:`FIREARM_FIT`), since its outline is mostly a receiver-sized block and a
#: thin bar, and the edge of a pallet of frozen meat beside a gap with a plank in it
#: fitted it at 0.51.
LONG_GUN_FIT = 0.55
#: Binning (both ways) of the images a long gun's outline is fitted on: at ~22 mm pixels
#: its 600 x 200 mm outline is still 27 x 9 pixels, and the filters cost a sixteenth.
LONG_GUN_BIN = 2
