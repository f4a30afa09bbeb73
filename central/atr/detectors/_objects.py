"""Compact objects: blobs far above the cargo around them, and impenetrable regions.

Attenuation well above the cargo around it (the scene's running medians
along and across travel, over cargo pixels only), split by material into
dense object, high-Z object and (in metal cargo) organic in metal cargo; and
regions no X-ray gets through, of an object's size.
"""

from __future__ import annotations

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
    for k in range(1, n):
        # OpenCV's x runs along axis 1 (rows of the detector), y along axis 0 (lines)
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        x, y, w, h = cy, cx, ch, cw  # lines from x, w of them; rows from y, h of them
        if area < min_area:
            continue
        if _end_corner(sc, (x, y, x + w, y + h)):
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
    guns = firearm_shapes(sc)
    # one object, one finding: a blob that a handgun outline explains is that handgun
    out = [
        f
        for f in out
        if f.category != Category.DENSE_OBJECT or not any(same_object(f, g) for g in guns)
    ]
    return out + guns


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
