"""Organic packages in metal cargo: a low-Z region in a load that is metal."""

from __future__ import annotations

import cv2
import numpy as np

from core.calibration import MaterialClass

from .._model import Category, Finding
from ._base import SceneDetector
from ._scene import Scene


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
    # a package behind or in front of metal: the mix reads inorganic, its Z_eff far
    # below the metal's (not on the floor, where the plywood under the metal mixes too)
    mixed = (
        (sc.material == int(MaterialClass.INORGANIC))
        & (sc.zeff > 0)
        & (sc.zeff < MIXED_MAX_ZEFF)
        & (sc.a > MIXED_MIN_A)
    )
    mixed[:, sc.row_above_floor(150.0) :] = False
    mask = cv2.morphologyEx(
        (org | mixed).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
    )
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
        out.append(sc.finding(Category.ORGANIC_IN_METAL, score, why, (x, y, x + w, y + h)))
    return out


#: Least attenuation, and least area (mm²), of an organic region that counts in metal cargo.
ORGANIC_MIN_A = 1.0
ORGANIC_MIN_MM2 = 5000.0
#: Organic matter seen through metal: inorganic pixels of Z_eff under this (steel,
#: copper: 25 and more) and attenuation over MIXED_MIN_A.  No truthful metal load of the
#: tuning seeds has any such region.
MIXED_MAX_ZEFF = 15.0
MIXED_MIN_A = 2.0


#: Organic regions in a metal load.
ORGANIC_IN_METAL = SceneDetector(
    "organic in metal",
    frozenset({Category.ORGANIC_IN_METAL}),
    lambda sc, cx: organic_in_metal(sc, cx.metal_cargo),
)
