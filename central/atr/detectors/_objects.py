"""Compact objects: blobs far above the cargo around them, and impenetrable regions.

Attenuation well above the cargo around it (the scene's running medians
along and across travel, over cargo pixels only), split by material into
dense object, high-Z object and (in metal cargo) organic in metal cargo; and
regions no X-ray gets through, of an object's size.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from core.calibration import MaterialClass

from .._image import OCCUPIED_A
from .._model import Category, Finding
from ._base import SceneDetector
from ._firearm import (
    firearm_shapes,
)
from ._scene import Scene, same_object


def _blobs(above: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """Pixels over a threshold as blobs: gaps between packages bridged, single pixels dropped.

    The gaps between packages (1 or 2 lines of air across the whole height)
    cut an object that straddles them in two; closing along travel joins them.
    """
    closed = cv2.morphologyEx(above.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 1), np.uint8))
    return np.asarray(cv2.morphologyEx(closed, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)))


def dense_objects(sc: Scene, metal_cargo: bool) -> list[Finding]:
    """Blobs far above the surrounding cargo (dense, high-Z, organic-in-metal) and handguns."""
    bl, bc = sc.frame.px_mm
    thr = 0.35 + 0.09 * sc.background
    excess = sc.residual - thr
    mask = _blobs(excess > 0)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out: list[Finding] = []
    min_area = 4000.0 / (bl * bc)
    floor_band = sc.row_above_floor(FLOOR_BAND_MM)
    for k in range(1, n):
        # OpenCV's x runs along axis 1 (rows of the detector), y along axis 0 (lines)
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        x, y, w, h = cy, cx, ch, cw  # lines from x, w of them; rows from y, h of them
        if area < min_area:
            continue
        if _end_corner(sc, (x, y, x + w, y + h)) or y >= floor_band:
            continue
        sel = lab[x : x + w, y : y + h] == k
        res = sc.residual[x : x + w, y : y + h][sel]
        exc = excess[x : x + w, y : y + h][sel]
        mean_res = float(res.mean())
        mean_exc = float(exc.mean())
        len_mm, hgt_mm = w * bl, h * bc
        area_mm2 = area * bl * bc
        # strength: how far above threshold, weighted by how much of it there is (up to a
        # block's size: the bottoms of copper coils on the floor are as far above their
        # surroundings as a steel block in the air above them, but a quarter of its size)
        score = (mean_exc / 0.35) * min(DENSE_AREA_CAP, np.sqrt(area_mm2 / DENSE_AREA_MM2))
        z = sc.zeff[x : x + w, y : y + h][sel]
        mat = sc.material[x : x + w, y : y + h][sel]
        zmed = float(np.median(z[z > 0])) if np.any(z > 0) else 0.0
        imp = float(np.mean(mat == int(MaterialClass.IMPENETRABLE)))
        # on another scanner than the reference, Z_eff read on a few rim pixels of a blob
        # that is opaque to it is the noise of the beam's last photons, not the material
        known = 1.0
        if sc.opaque is not None:
            opq = sc.opaque[x : x + w, y : y + h][sel]
            known = float(np.sum(z > 0)) / max(1, int(np.sum(z > 0)) + int(np.sum(opq)))
        if zmed >= 40.0 and known >= HIGH_Z_KNOWN_SHARE:
            cat = Category.HIGH_Z_OBJECT
            why = f"Z_eff {zmed:.0f} block {len_mm:.0f} x {hgt_mm:.0f} mm,"
            why += f" +{mean_res:.1f} above cargo"
        elif metal_cargo and mat.size and float(np.mean(mat == int(MaterialClass.ORGANIC))) > 0.4:
            cat = Category.ORGANIC_IN_METAL
            why = f"organic mass {len_mm:.0f} x {hgt_mm:.0f} mm inside metal cargo"
        else:
            cat = Category.DENSE_OBJECT
            why = (
                f"{'impenetrable' if imp > 0.5 else 'dense'} object {len_mm:.0f} x {hgt_mm:.0f} mm,"
                f" +{mean_res:.1f} above the cargo around it"
            )
        out.append(sc.finding(cat, score, why, _outline(sc, lab, k, mean_res, (x, y, w, h))))
    out = _with_uniform_cargo(sc, out, metal_cargo)
    guns = firearm_shapes(sc)
    # one object, one finding: a blob that a handgun outline explains is that handgun
    out = [
        f
        for f in out
        if f.category != Category.DENSE_OBJECT
        or f.basis == "texture"  # weighed against the outline on scaled scores
        or not any(same_object(f, g) for g in guns)
    ]
    return out + guns


def _category(
    sc: Scene, sel_box: tuple[int, int, int, int], sel: npt.NDArray[np.bool_], metal_cargo: bool
) -> tuple[Category, float, float]:
    """A blob's category by its material: high-Z object, organic in metal cargo or dense
    object; with its median Z_eff and its impenetrable share."""
    x, y, w, h = sel_box
    z = sc.zeff[x : x + w, y : y + h][sel]
    mat = sc.material[x : x + w, y : y + h][sel]
    zmed = float(np.median(z[z > 0])) if np.any(z > 0) else 0.0
    imp = float(np.mean(mat == int(MaterialClass.IMPENETRABLE))) if mat.size else 0.0
    known = 1.0
    if sc.opaque is not None:
        opq = sc.opaque[x : x + w, y : y + h][sel]
        known = float(np.sum(z > 0)) / max(1, int(np.sum(z > 0)) + int(np.sum(opq)))
    if zmed >= 40.0 and known >= HIGH_Z_KNOWN_SHARE:
        return Category.HIGH_Z_OBJECT, zmed, imp
    if metal_cargo and mat.size and float(np.mean(mat == int(MaterialClass.ORGANIC))) > 0.4:
        return Category.ORGANIC_IN_METAL, zmed, imp
    return Category.DENSE_OBJECT, zmed, imp


def uniform_cargo_objects(sc: Scene, metal_cargo: bool) -> list[Finding]:
    """Compact objects that stand out of uniform cargo by many times its texture.

    The absolute threshold of :func:`dense_objects` (+0.35, more over denser cargo)
    is set by the most varied loads: a steel part of 20-40 mm, a handgun's or a
    tool's thickness, adds +0.5 to +1.0 and is lost over a dense load.  Goods in
    cartons, pallets of one commodity, are uniform to a few hundredths wherever the
    scanner sees through them, so that such an object stands out of them by tens of
    times their texture, on any scanner: the contrast is measured against the
    spread of the cargo around it, not against a level fixed on one scanner.

    A candidate is a blob at least :data:`UNIFORM_MIN_CONTRAST` over the cargo
    around it (the scene's running medians), of an object's size
    (:data:`UNIFORM_MAX_MM`), off the floor and the container's ends, inside
    cargo (its background at least :data:`UNIFORM_MIN_BACKGROUND`) that the scanner
    sees through (no impenetrable or opaque pixels in it).  Its texture is the
    robust spread (interquartile range / 1.349) of the residual over the cargo
    pixels of a ring :data:`UNIFORM_RING_MM` wide round it, at least
    :data:`UNIFORM_TEXTURE_FLOOR`, and needs :data:`UNIFORM_RING_SHARE` of the ring
    to be such cargo.  Score: (median contrast / texture) / :data:`UNIFORM_Z_RED`.
    """
    bl, bc = sc.frame.px_mm
    res = sc.residual
    cand = _blobs(res > UNIFORM_MIN_CONTRAST)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    gl, gc = max(2, round(UNIFORM_RING_MM / bl)), max(2, round(UNIFORM_RING_MM / bc))
    floor = sc.row_above_floor(UNIFORM_FLOOR_MM)
    band = sc.row_above_floor(FLOOR_BAND_MM)
    bad = sc.material == int(MaterialClass.IMPENETRABLE)
    if sc.opaque is not None:
        bad = bad | sc.opaque
    usable = sc.occupied & ~bad & (cand == 0)
    lines = res.shape[0]
    found: list[tuple[tuple[int, int, int, int], float, Category, str]] = []
    for k in range(1, n):
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        x, y, w, h = cy, cx, ch, cw
        if area * bl * bc < UNIFORM_MIN_MM2 or w * bl > UNIFORM_MAX_MM[0]:
            continue
        if h * bc > UNIFORM_MAX_MM[1] or y + h > floor or y >= band or x <= 1 or x + w >= lines - 1:
            continue
        sel = lab[x : x + w, y : y + h] == k
        if float(np.mean(bad[x : x + w, y : y + h][sel])) > UNIFORM_BAD_SHARE:
            continue
        if float(np.median(sc.background[x : x + w, y : y + h][sel])) < UNIFORM_MIN_BACKGROUND:
            continue
        l0, r0 = max(0, x - gl), max(0, y - gc)
        l1, r1 = min(lines, x + w + gl), min(res.shape[1], y + h + gc)
        ring = usable[l0:l1, r0:r1]
        ring_px = ring.size - int(np.sum(lab[l0:l1, r0:r1] == k))
        vals = res[l0:l1, r0:r1][ring]
        if ring_px <= 0 or vals.size < UNIFORM_RING_SHARE * ring_px:
            continue
        q1, q3 = np.percentile(vals, [25.0, 75.0])
        texture = max(UNIFORM_TEXTURE_FLOOR, float(q3 - q1) / 1.349)
        contrast = float(np.median(res[x : x + w, y : y + h][sel]))
        ratio = contrast / texture
        cat, zmed, _ = _category(sc, (x, y, w, h), sel, metal_cargo)
        what = {Category.HIGH_Z_OBJECT: f"Z_eff {zmed:.0f} object"}.get(cat, "dense object")
        why = f"+{contrast:.1f} above uniform cargo ({ratio:.0f} times its texture)"
        found.append((_outline(sc, lab, k, contrast, (x, y, w, h)), ratio, cat, f"{what}|{why}"))
    out: list[Finding] = []
    for box, ratio, cat, text in _join_across_gaps(found, round(UNIFORM_JOIN_MM / bl)):
        what, why = text.split("|", 1)
        size = f"{(box[2] - box[0]) * bl:.0f} x {(box[3] - box[1]) * bc:.0f} mm"
        f = sc.finding(cat, ratio / UNIFORM_Z_RED, f"{what} {size}, {why}", box)
        f.basis = "texture"
        out.append(f)
    return out


def _join_across_gaps(
    found: list[tuple[tuple[int, int, int, int], float, Category, str]], gap: int
) -> list[tuple[tuple[int, int, int, int], float, Category, str]]:
    """Parts of one object cut by the air between two cartons or pallets, joined.

    Two parts join when they face each other along travel at most ``gap`` lines apart
    and share at least half the height of the lower one (a barrel across the gap
    between two pallets); the joined part keeps the stronger one's score and words.
    """
    parts = sorted(found, key=lambda f: f[0][0])
    joined = True
    while joined:
        joined = False
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                a, b = parts[i][0], parts[j][0]
                apart = max(a[0], b[0]) - min(a[2], b[2])
                shared = min(a[3], b[3]) - max(a[1], b[1])
                if apart > gap or shared < 0.5 * min(a[3] - a[1], b[3] - b[1]):
                    continue
                strong = parts[i] if parts[i][1] >= parts[j][1] else parts[j]
                box = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                parts[i] = (box, strong[1], strong[2], strong[3])
                del parts[j]
                joined = True
                break
            if joined:
                break
    return parts


def _with_uniform_cargo(sc: Scene, found: list[Finding], metal_cargo: bool) -> list[Finding]:
    """``found`` and the objects standing out of uniform cargo; where both passes outline
    one object both stay until their scores are scaled by the declared commodity
    (:func:`one_per_object`), since each pass has its own thresholds."""
    return found + uniform_cargo_objects(sc, metal_cargo)


def one_per_object(findings: list[Finding]) -> list[Finding]:
    """One finding per object of the two dense-object passes, on scaled scores.

    A uniform-cargo finding (``basis`` "texture") and the fixed-level findings of
    the same category, or firearm outlines, on the same object (one outlining the
    other, or lying inside it: the fixed level often finds only parts of it) are one
    object: the stronger side stays.
    """
    drop: set[int] = set()
    for i, u in enumerate(findings):
        if u.basis != "texture" or i in drop:
            continue
        same = [
            j
            for j, f in enumerate(findings)
            if j != i
            and j not in drop
            and f.basis != "texture"
            and f.category in (u.category, Category.FIREARM)
            and (same_object(f, u) or _inside_box(f, u))
        ]
        if not same:
            continue
        if all(findings[j].score < u.score for j in same):
            drop.update(same)
        else:
            drop.add(i)
    return [f for k, f in enumerate(findings) if k not in drop]


def _inside_box(f: Finding, g: Finding) -> bool:
    """Whether either finding's pixel box lies wholly inside the other's."""
    a, b = f.bbox_px, g.bbox_px

    def within(p: list[int], q: list[int]) -> bool:
        return p[0] >= q[0] and p[1] >= q[1] and p[2] <= q[2] and p[3] <= q[3]

    return within(a, b) or within(b, a)


#: Least contrast over the cargo around for the uniform-cargo pass: about 18 g/cm²
#: (+0.5 / MU_RHO_HI), 22 mm of steel.
UNIFORM_MIN_CONTRAST = 0.5
#: Least blob area, mm² (as the dense-object pass), and the largest object, mm along
#: travel and high: a long gun lying, a package of them; a pallet is no object.
UNIFORM_MIN_MM2 = 4000.0
UNIFORM_MAX_MM = (1000.0, 700.0)
#: A blob reaching into the lowest this many mm stands on the floor (or is it, its cross
#: members, a chassis under it) and is left to the dense-object pass, as is one wholly in
#: the floor band (:data:`FLOOR_BAND_MM`); a handgun on a pallet's base (about 150 mm)
#: is judged.
UNIFORM_FLOOR_MM = 50.0
#: Least median cargo background under a blob: an object inside goods, not in air
#: (which the dense-object pass measures against nothing).
UNIFORM_MIN_BACKGROUND = 0.3
#: Most share of a blob's pixels that are impenetrable or beyond the scanner's range.
UNIFORM_BAD_SHARE = 0.2
#: Ring round the blob its texture is measured on, mm, and the least share of it that
#: must be cargo the scanner sees through (an object at a load's edge is not judged).
UNIFORM_RING_MM = 300.0
UNIFORM_RING_SHARE = 0.5
#: Parts of an object at most this far apart along travel are one (the air between two
#: cartons or pallets, 20-60 mm), mm.
UNIFORM_JOIN_MM = 60.0
#: Texture never taken as less than this (a scanner's noise after binning).
UNIFORM_TEXTURE_FLOOR = 0.02
#: Contrast / texture that scores 1.0 (red), before per-commodity scaling.
UNIFORM_Z_RED = 25.0
#: Per declared commodity ("*": any other), the score at which a uniform-cargo finding is
#: red.  The dense-object pass's per-commodity thresholds (``_profiles.RED_AT``) scale a
#: score against one fixed level and are learned for that; this score is already against
#: the load's own texture, and on the clean tuning scans of seed 7200 (the cross-scanner
#: benchmark's, every scanner model) no commodity reached it but tyres (44 times) and
#: scrap (7 times).  Tyres are left out: their steel beads and belts are compact steel
#: in uniform rubber by construction (the evaluation seed's reached 67 times), the
#: goods the pass's premise excludes; the dense, impenetrable and firearm passes keep
#: watching them.
UNIFORM_RED_AT: dict[str, float] = {"tyres": math.inf}


#: A blob wholly in the lowest this many mm of the interior is the floor's business, not
#: an object's: the plywood, the cross members under it and what carries the container
#: (a chassis's gooseneck, its beams) show there through the fan's perspective by tens of
#: mm, more on a scanner whose source stands lower, and a layer hidden in the floor is
#: what the double-floor detectors look for.  An object standing on the floor reaches
#: above it.
FLOOR_BAND_MM = 100.0


#: Least share of a blob's pixels whose Z_eff is known, among those it is known on or that
#: are opaque to the scanner that took the scan (another than the reference), for its
#: median Z_eff to call it a high-Z object.
HIGH_Z_KNOWN_SHARE = 0.25


#: Height of a container's end frame at the floor: corner castings (118 mm, ISO 1161) on
#: the bottom end rail, with the floor's cross members, mm.
END_CORNER_MM = 350.0


def _end_corner(sc: Scene, box: tuple[int, int, int, int]) -> bool:
    """Whether a blob is the container's own bottom corner at either end.

    A blob that touches the first or last line of the interior and lies wholly in
    its lowest :data:`END_CORNER_MM` is the end frame's bottom (corner castings and
    end rail) showing past the front wall or the doors: it does so wherever the
    scanner smears the ends along travel (afterglow of a slow detector, a wall
    between two lines).
    """
    l0, r0, l1, _ = box
    at_end = l0 <= 1 or l1 >= sc.a.shape[0] - 1
    return at_end and r0 >= sc.row_above_floor(END_CORNER_MM)


def _outline(
    sc: Scene,
    labels: npt.NDArray[np.generic],
    label: int,
    contrast: float,
    box: tuple[int, int, int, int],
) -> tuple[int, int, int, int]:
    """The object's outline: where it stands at least half its contrast above the cargo.

    The blob is what stands above the detection threshold, the object's core; its
    blurred edges (the fan's penumbra, the detector's crosstalk, the binning) stand
    above half its contrast, as an object's edge does in any blurred image.  The
    outline grows from the blob into those pixels, at most half the blob's size
    each way.
    """
    x, y, w, h = box
    gx, gy = max(1, w // 2), max(1, h // 2)
    l0, r0 = max(0, x - gx), max(0, y - gy)
    l1, r1 = min(sc.a.shape[0], x + w + gx), min(sc.a.shape[1], y + h + gy)
    blob = labels[l0:l1, r0:r1] == label
    half = ((sc.residual[l0:l1, r0:r1] > 0.5 * contrast) | blob).astype(np.uint8)
    _, lab, stats, _ = cv2.connectedComponentsWithStats(half, connectivity=8)
    seed = lab[blob]
    if seed.size == 0:
        return (x, y, x + w, y + h)
    k = int(np.bincount(seed[seed > 0]).argmax()) if np.any(seed > 0) else 0
    if k == 0:
        return (x, y, x + w, y + h)
    cx, cy, cw, ch, _ = (int(v) for v in stats[k])
    return (l0 + cy, r0 + cx, l0 + cy + ch, r0 + cx + cw)


#: Excess area (mm²) that counts once in a dense object's score, and the most it counts:
#: up to a 220 mm square, twice a 110 mm one.
DENSE_AREA_MM2 = 12000.0
DENSE_AREA_CAP = 2.0


def impenetrable_objects(sc: Scene, metal_cargo: bool) -> list[Finding]:
    """Regions no X-ray gets through, of an object's size, above the floor.

    Tyres, foodstuffs, paper, textiles and most other goods never stop the
    beam (no clean load of those on the tuning seeds had any impenetrable
    region), while 250 mm of steel or lead does whatever lies around it; the
    dense-object pass measures excess over the cargo around, which a block
    among tyre rings does not stand out by.  Metal, tile and ingot loads are
    often impenetrable themselves: in metal cargo only a block standing free
    counts (:func:`_stands_free`), and the per-commodity thresholds learned on
    clean loads keep tiles and ingots quiet.  Score: the square root of the
    area over :data:`IMPENETRABLE_MM2`.

    A scanner that sees less far than the reference (``sc.opaque``: a 4 MeV linac
    with a thin detector stops in a pallet of frozen meat) cannot say whether what
    stopped it would have stopped the reference too, so such regions are said for
    what they are, never red: the image does not clear them (score at most
    :data:`OPAQUE_SCORE`).
    """
    bl, bc = sc.frame.px_mm
    floor = sc.row_above_floor(200.0)
    imp = sc.material == int(MaterialClass.IMPENETRABLE)
    out: list[Finding] = []
    if sc.opaque is not None:
        short = imp & sc.opaque
        imp &= ~sc.opaque
        for box, area_mm2 in _regions(short, floor, bl * bc):
            x, y, x1, y1 = box
            why = (
                f"{(x1 - x) * bl:.0f} x {(y1 - y) * bc:.0f} mm that this scanner does not see "
                "through (the reference scanner would): the image cannot clear it"
            )
            score = min(OPAQUE_SCORE, float(np.sqrt(area_mm2 / IMPENETRABLE_MM2)))
            out.append(sc.finding(Category.IMPENETRABLE_OBJECT, score, why, box))
    for box, area_mm2 in _regions(imp, floor, bl * bc):
        if metal_cargo and not _stands_free(sc, box, floor):
            continue
        x, y, x1, y1 = box
        why = f"impenetrable object {(x1 - x) * bl:.0f} x {(y1 - y) * bc:.0f} mm: nothing seen"
        why += " through it"
        score = float(np.sqrt(area_mm2 / IMPENETRABLE_MM2))
        out.append(sc.finding(Category.IMPENETRABLE_OBJECT, score, why, box))
    return out


def _regions(
    mask: npt.NDArray[np.bool_], floor: int, px_mm2: float
) -> list[tuple[tuple[int, int, int, int], float]]:
    """Boxes (lines, rows, end-exclusive) and areas (mm²) of ``mask``'s regions above
    ``floor`` of at least half :data:`IMPENETRABLE_MM2`, after a 3 x 3 opening."""
    m = mask.astype(np.uint8)
    m[:, floor:] = 0  # the floor and its cross members
    opened = np.asarray(cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)), np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    out = []
    for k in range(1, n):
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        if area * px_mm2 >= 0.5 * IMPENETRABLE_MM2:
            out.append(((cy, cx, cy + ch, cx + cw), area * px_mm2))
    return out


#: Highest score of a region only a shorter-range scanner than the reference cannot see
#: through: yellow at most, for the officer to judge, since nothing says it is suspect.
OPAQUE_SCORE = 0.9


#: Impenetrable area (mm²) that scores 1.0 before per-commodity scaling: a 120 mm square.
IMPENETRABLE_MM2 = 15000.0
#: In metal cargo an impenetrable region counts only standing free: at least this share
#: of the :data:`ISOLATED_SIDE_MM` before and after it along travel empty (tuning seeds:
#: no clean machinery, scrap or copper load had a region over 0.3, most blocks 0.5 to 0.9).
ISOLATED_EMPTY = 0.45
ISOLATED_SIDE_MM = 100.0
#: ... and is a block, at least this thick both ways (a machine's shaft, left standing
#: where the goods round it were taken out for a false floor, is 80 mm).
ISOLATED_MIN_MM = 100.0


def _stands_free(sc: Scene, box: tuple[int, int, int, int], floor: int) -> bool:
    """Whether an impenetrable region stands free in metal cargo: a block off the floor
    band, with empty space before and after it along travel over most of its height.

    Metal goods stop the beam themselves (coils on the floor, the cores of machines in
    their housings, pieces of scrap among others); a block put among them has air beside
    it.  Only the sides count: the fan's perspective spreads an object's top and bottom
    (its depth across the container) over many rows, never its sides.
    """
    l0, r0, l1, r1 = box
    bl, bc = sc.frame.px_mm
    side = max(1, round(ISOLATED_SIDE_MM / bl))
    if r1 >= floor - 1 or min((l1 - l0) * bl, (r1 - r0) * bc) < ISOLATED_MIN_MM:
        return False
    sides = np.concatenate(
        [sc.a[max(0, l0 - side) : l0, r0:r1].ravel(), sc.a[l1 : l1 + side, r0:r1].ravel()]
    )
    return sides.size > 0 and float(np.mean(sides < OCCUPIED_A)) >= ISOLATED_EMPTY


#: Compact objects over the cargo around them; handgun outlines are fitted in the same pass
#: (:func:`firearm_shapes`), so that a blob a handgun explains is reported once, as it.
DENSE_OBJECTS = SceneDetector(
    "dense objects",
    frozenset(
        {
            Category.DENSE_OBJECT,
            Category.HIGH_Z_OBJECT,
            Category.ORGANIC_IN_METAL,
            Category.FIREARM,
        }
    ),
    lambda sc, cx: dense_objects(sc, cx.metal_cargo),
)
#: Regions no X-ray gets through, of an object's size.
IMPENETRABLE_OBJECTS = SceneDetector(
    "impenetrable objects",
    frozenset({Category.IMPENETRABLE_OBJECT}),
    lambda sc, cx: impenetrable_objects(sc, cx.metal_cargo),
)
