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


def _shape_fit(img: F32, flt: _ShapeFilter) -> list[tuple[F32, npt.NDArray[np.int8], F32]]:
    """Per grip weighting (all steel, polymer frame): at every pixel the outline's
    amplitude in its best facing (the added attenuation of its slide), that facing
    (0 to 3) and the share of the window's variance about its smooth background it
    explains (0 to 1).

    Single precision: the window sums (about 10⁴) and the variance an outline explains
    (about 10) are far apart from float32's 10⁻⁷ relative error.
    """
    a = np.ascontiguousarray(img, dtype=np.float32)
    border = cv2.BORDER_REPLICATE
    nl, nr = flt.window
    raw = np.stack(
        [cv2.sepFilter2D(a, cv2.CV_32F, v, u, borderType=border) for u, v in flt.moments]
    )
    k = raw.shape[0]
    flat = raw.reshape(k, -1)
    coef = (flt.whiten @ flat).reshape(raw.shape)  # on the orthonormal surfaces
    rest = cv2.boxFilter(a * a, cv2.CV_32F, (nr, nl), normalize=False, borderType=border)
    rest -= np.einsum("iab,iab->ab", coef, coef)
    np.maximum(rest, np.float32(1e-9), out=rest)
    wholes = [cv2.filter2D(a, cv2.CV_32F, c, borderType=border) for c in flt.outlines]
    slides = []
    for u, v, on in flt.slides:
        ps = cv2.sepFilter2D(a, cv2.CV_32F, v, u, borderType=border)
        for c, r in zip(on, raw, strict=True):  # the surfaces' part of it taken out
            cv2.scaleAdd(r, -float(c), ps, dst=ps)
        slides.append(ps)
    out = []
    for w, energies in zip(flt.grips, flt.energy, strict=True):
        amp = np.zeros(a.shape, np.float32)
        which = np.zeros(a.shape, np.int8)
        for i, (pw, e) in enumerate(zip(wholes, energies, strict=True)):
            # the kernel is the slide plus w times the grip: w x whole + (1 - w) x slide
            p = (
                pw
                if w == 1.0
                else np.float32(w) * pw + np.float32(1.0 - w) * slides[flt.slide_of[i]]
            )
            p = p * np.float32(1.0 / e)
            which = np.where(p > amp, np.int8(i), which)
            np.maximum(amp, p, out=amp)
        explained = amp * amp * np.asarray(energies, np.float32)[which]
        out.append((amp, which, np.clip(explained / rest, 0.0, 1.0)))
    return out


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
    for name in OUTLINES:
        long_gun = name in LONG_GUNS
        unit = LONG_GUN_AMPLITUDE if long_gun else FIREARM_AMPLITUDE
        most = LONG_GUN_MAX_AMPLITUDE if long_gun else FIREARM_MAX_AMPLITUDE
        step, imgs = (nb, coarse) if long_gun else (1, images)
        shape = imgs[0].shape
        for turn in (False, True) if name in STANDING else (False,):
            flt = _outline_filter(name, round(bl * step, 3), round(bc * step, 3), turn)
            # per grip weighting (all steel, polymer frame): the best amplitude over the images
            maps = [
                (np.zeros(shape, np.float32), np.zeros(shape, np.int8),
                 np.zeros(shape, np.int8), np.zeros(shape, np.float32))
                for _ in flt.grips
            ]  # fmt: skip
            for i, img in enumerate(imgs):
                for (best, which, source, fits), (amp, kernel, fit) in zip(
                    maps, _shape_fit(img, flt), strict=True
                ):
                    take = (fit >= FIREARM_FIT) & (amp > best) & (amp <= most)
                    np.copyto(best, amp, where=take)
                    np.copyto(which, kernel, where=take)
                    np.copyto(source, np.int8(i), where=take)
                    np.copyto(fits, fit, where=take)
            (ol, orr), (nl, nr) = flt.offset, flt.size
            # only where the whole window lies in the image and the outline ends above the
            # floor band
            wl, wr = flt.window
            valid = np.zeros(shape, dtype=bool)
            valid[wl // 2 : shape[0] - wl + wl // 2, wr // 2 : floor // step - nr - orr] = True
            for fam, (best, which, source, fits) in enumerate(maps):
                best[~valid] = 0.0
                peak = best >= cv2.dilate(best, np.ones((nl, nr), np.uint8))
                for li, ri in np.argwhere(peak & (best >= 0.5 * unit)):
                    k, src = int(which[li, ri]), int(source[li, ri])
                    grip = flt.grips[fam]
                    slide, held, err = _two_part_fit(imgs[src], flt, k, int(li), int(ri))
                    steel = _steel(float(best[li, ri]), grip, slide, held, err, long_gun)
                    if steel >= 0.5 * unit:
                        cands.append(
                            (steel / unit, steel, grip, float(fits[li, ri]),
                             (int(li) + ol) * step, (int(ri) + orr) * step, name,
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
#: Binning (both ways) of the images a long gun's outline is fitted on: at ~22 mm pixels
#: its 600 x 200 mm outline is still 27 x 9 pixels, and the filters cost a sixteenth.
LONG_GUN_BIN = 2
