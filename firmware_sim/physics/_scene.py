# ruff: noqa: RUF002
"""Scenes: the vehicle, the ISO container, its cargo and what may be hidden in it.

Dimensions follow ISO 668 (external 20 ft: 6058 × 2438 × 2591 mm, 40 ft:
12192 mm long; high cube 2896 mm high) and the usual construction of a dry
van: 1.6 mm corrugated side walls, 2 mm corrugated roof and front wall,
28 mm plywood floor on steel cross members every ~300 mm, bottom and top side
rails, corner posts and castings, and a door end with two leaves, frame and
four locking bars.  Densities of packed goods are bulk figures (goods plus
packaging and air), so a carton of textiles is far lighter than cotton.

With scene variety (``build_scenario(..., variety=True)``) there are also 45 ft
high cubes (ISO 668: 13716 mm long, 2896 mm high) and the rare 20 ft high cube,
rigid trucks besides tractor-trailers, other deck heights and small changes of
wall thickness and corrugation; :data:`CONTAINERS` stays the original three so
that the original draws do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from . import _materials as m
from ._attenuation import Material
from ._geometry import Box, Extrusion, SceneObject, annulus

FloatArray = npt.NDArray[np.float64]

TRAILER_DECK_Z = 1250.0  # top of the trailer chassis: the container's underside


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """An ISO dry container: its outside length, width and height, mm."""

    code: str
    length: float
    width: float = 2438.0
    height: float = 2591.0
    tare_kg: float = 2200.0


CONTAINERS: dict[str, ContainerSpec] = {
    "20GP": ContainerSpec("20GP", 6058.0, tare_kg=2200.0),
    "40GP": ContainerSpec("40GP", 12192.0, tare_kg=3750.0),
    "40HC": ContainerSpec("40HC", 12192.0, height=2896.0, tare_kg=3900.0),
}

#: Every container the scenes know: :data:`CONTAINERS` plus those drawn only with variety.
#: Tares are typical figures of carriers' equipment tables (45 ft HC about 4.8 t).
ALL_CONTAINERS: dict[str, ContainerSpec] = {
    **CONTAINERS,
    "45HC": ContainerSpec("45HC", 13716.0, height=2896.0, tare_kg=4800.0),
    "20HC": ContainerSpec("20HC", 6058.0, height=2896.0, tare_kg=2350.0),
}
#: How often each container comes up in scenes with variety (20 ft high cubes are rare).
VARIETY_WEIGHTS: dict[str, float] = {
    "20GP": 0.3,
    "40GP": 0.22,
    "40HC": 0.3,
    "45HC": 0.13,
    "20HC": 0.05,
}


@dataclass(frozen=True, slots=True)
class Commodity:
    """A kind of cargo: its material, bulk density as packed, packing pattern and HS code."""

    name: str
    hs_code: str
    material: Material
    bulk_density: float  # g/cm³ of a loaded package, packaging and voids included
    pattern: str  # cartons, pallets, tyres, coils, bulk, machinery, bottles
    package: tuple[float, float, float]  # package size x, y, z in mm
    fill_height: float = 0.85  # fraction of the inner height loaded


COMMODITIES: dict[str, Commodity] = {
    c.name: c
    for c in (
        Commodity("textiles", "6109.10", m.CELLULOSE, 0.25, "cartons", (580, 400, 380)),
        Commodity("paper", "4802.56", m.CELLULOSE, 0.75, "pallets", (1100, 1000, 1100), 0.8),
        Commodity("fruit", "0805.10", m.WATER, 0.55, "pallets", (1100, 1000, 1900), 0.85),
        Commodity("frozen meat", "0202.30", m.SOFT_TISSUE, 0.70, "cartons", (560, 380, 180)),
        Commodity("ceramic tiles", "6907.21", m.CERAMIC, 1.25, "pallets", (1100, 1000, 700), 0.5),
        Commodity("glass bottles", "7010.90", m.GLASS, 0.35, "bottles", (400, 300, 300)),
        Commodity("electronics", "8471.30", m.ELECTRONICS, 0.30, "cartons", (600, 500, 450)),
        Commodity("machinery", "8479.89", m.STEEL, 0.9, "machinery", (1200, 1500, 1400), 0.7),
        Commodity("scrap steel", "7204.49", m.STEEL, 0.55, "bulk", (300, 300, 300), 0.55),
        Commodity("copper wire", "7408.11", m.COPPER_CABLE, 2.2, "coils", (900, 900, 900), 0.45),
        Commodity("cigarettes", "2402.20", m.TOBACCO, 0.30, "cartons", (560, 450, 280)),
        Commodity("tyres", "4011.20", m.RUBBER, 1.15, "tyres", (300, 1000, 1000), 0.95),
        Commodity("rice", "1006.30", m.CELLULOSE, 0.75, "pallets", (1100, 1000, 1300), 0.75),
        Commodity(
            "aluminium ingots", "7601.10", m.ALUMINIUM, 1.6, "pallets", (1000, 1000, 500), 0.4
        ),
    )
}


def corrugation(
    period: float, slope_factor: float, phase: float = 0.0
) -> Callable[[FloatArray], FloatArray]:
    """Path-length factor along y of a trapezoidal corrugated sheet seen face-on."""

    def profile(y: FloatArray) -> FloatArray:
        u = np.mod(y - phase, period) / period
        on_slope = ((u > 0.36) & (u < 0.5)) | (u > 0.86)
        return np.where(on_slope, slope_factor, 1.0)

    return profile


def container_structure(
    spec: ContainerSpec,
    y_front: float,
    deck_z: float = TRAILER_DECK_Z,
    *,
    wall_mm: float = 1.6,
    corrugation_period_mm: float = 278.0,
    corrugation_phase_mm: float = 0.0,
) -> list[SceneObject]:
    """The container's steel and wood, front end at ``y_front``, doors at the back.

    Args:
        spec: the container.
        y_front: where its front end is along the road, mm.
        deck_z: height of its underside (the vehicle's deck), mm.
        wall_mm: thickness of the corrugated side walls, mm.
        corrugation_period_mm: period of the side walls' corrugation along y, mm.
        corrugation_phase_mm: where along y the corrugation starts, mm.

    Returns:
        The structure's scene objects (``kind`` ``structure``).
    """
    w2 = spec.width / 2
    z0 = deck_z
    z1 = z0 + spec.height
    y1 = y_front + spec.length
    st = m.STEEL
    objs: list[SceneObject] = []

    def box(
        lbl: str,
        mat: Material,
        rho: float,
        x0: float,
        x1: float,
        ya: float,
        yb: float,
        za: float,
        zb: float,
        y_profile: Callable[[FloatArray], FloatArray] | None = None,
    ) -> None:
        objs.append(Box(mat, rho, lbl, "structure", False, x0, x1, ya, yb, za, zb, y_profile))

    prof = corrugation(corrugation_period_mm, 1.45, corrugation_phase_mm)
    # side walls (beam crosses both) and roof
    for xs in (-w2, w2 - wall_mm):
        box(
            "side wall",
            st,
            st.density,
            xs,
            xs + wall_mm,
            y_front,
            y1,
            z0 + 160,
            z1 - 100,
            y_profile=prof,
        )
    box("roof", st, st.density, -w2, w2, y_front, y1, z1 - 2.0, z1)
    # floor: plywood and the cross members under it
    box("floor", m.PLYWOOD, 0.7, -w2 + 40, w2 - 40, y_front + 100, y1 - 100, z0 + 132, z0 + 160)
    y = y_front + 250.0
    while y < y1 - 250:
        box("cross member", st, st.density, -w2 + 20, w2 - 20, y, y + 4.5, z0 + 10, z0 + 132)
        y += 300.0
    # rails: bottom and top side rails (hollow sections as smeared steel)
    for xs in (-w2, w2 - 60):
        box("bottom rail", st, st.density * 0.18, xs, xs + 60, y_front, y1, z0, z0 + 160)
        box("top rail", st, st.density * 0.25, xs, xs + 60, y_front, y1, z1 - 100, z1)
    # end frames: corner posts and castings at both ends
    for ya in (y_front, y1 - 160):
        for xs in (-w2, w2 - 160):
            box("corner post", st, st.density * 0.12, xs, xs + 160, ya, ya + 160, z0, z1)
            for zc in (z0, z1 - 118):
                box(
                    "corner casting",
                    st,
                    st.density * 0.45,
                    xs,
                    xs + 178,
                    ya,
                    ya + 160,
                    zc,
                    zc + 118,
                )
        box("end sill", st, st.density * 0.2, -w2, w2, ya, ya + 160, z0, z0 + 160)
        box("end header", st, st.density * 0.2, -w2, w2, ya, ya + 160, z1 - 150, z1)
    # front wall: 2 mm corrugated, corrugations 36 mm deep (smeared over its depth)
    box(
        "front wall", st, st.density * 2.0 * 1.3 / 36.0, -w2, w2, y_front + 40, y_front + 76, z0, z1
    )
    # doors: two 2 mm leaves with frames, four locking bars outside
    box("doors", st, st.density * 2.0 * 1.6 / 40.0, -w2, w2, y1 - 60, y1 - 20, z0 + 150, z1 - 150)
    for xb in (-900.0, -350.0, 350.0, 900.0):  # 27 mm tubes, smeared to a square section
        box("locking bar", st, st.density * 0.35, xb - 13, xb + 13, y1, y1 + 27, z0 + 100, z1 - 100)
    return objs


def _wheel(y: float, x_outer: float, dual: bool, label: str) -> list[SceneObject]:
    """A tyre (ring) and steel rim (disc) on each side of the vehicle, axle along x."""
    objs: list[SceneObject] = []
    width = 560.0 if dual else 300.0
    zc = 520.0
    for side in (-1, 1):
        xa = side * x_outer
        x0, x1 = (xa, xa + width) if side < 0 else (xa - width, xa)
        objs.append(
            Extrusion(
                m.RUBBER,
                1.15,
                label,
                "structure",
                False,
                x0,
                x1,
                y - 520,
                y + 520,
                0,
                1040,
                annulus(y, zc, 520, 290),
            )
        )
        objs.append(
            Extrusion(
                m.STEEL,
                7.85 * 0.08,
                "rim",
                "structure",
                False,
                x0,
                x1,
                y - 290,
                y + 290,
                zc - 290,
                zc + 290,
                annulus(y, zc, 290, 0),
            )
        )
    objs.append(
        Extrusion(
            m.STEEL,
            7.85,
            "axle",
            "structure",
            False,
            -x_outer + 100,
            x_outer - 100,
            y - 65,
            y + 65,
            zc - 65,
            zc + 65,
            annulus(y, zc, 65, 0),
        )
    )
    return objs


def truck(length_trailer: float, deck_z: float = TRAILER_DECK_Z) -> tuple[list[SceneObject], float]:
    """Tractor unit and skeletal trailer; returns the objects and the container's front y.

    ``deck_z`` is the top of the trailer's chassis rails (the container's underside), mm.
    """
    st = m.STEEL
    objs: list[SceneObject] = []

    def box(
        lbl: str,
        mat: Material,
        rho: float,
        x0: float,
        x1: float,
        ya: float,
        yb: float,
        za: float,
        zb: float,
    ) -> None:
        objs.append(Box(mat, rho, lbl, "structure", False, x0, x1, ya, yb, za, zb))

    # cab: thin steel shell, engine block, gearbox, fuel tank
    box("cab shell", st, st.density * 0.004, -1250, 1250, 300, 2300, 1300, 3800)
    box("engine block", st, st.density * 0.35, -450, 450, 500, 1500, 800, 1700)
    box("gearbox", st, st.density * 0.3, -250, 250, 1500, 2100, 900, 1300)
    box("fuel tank", m.POLYETHYLENE, 0.8, 700, 1250, 2300, 3200, 700, 1300)
    y_front = 3400.0
    total = y_front + length_trailer
    for xs in (-470.0, 400.0):  # longitudinal chassis rails, 70 mm of web and flange each
        box("chassis rail", st, st.density * 0.2, xs, xs + 70, 300, total, deck_z - 350, deck_z)
    objs += _wheel(1000.0, 1250.0, False, "front tyre")
    objs += _wheel(3900.0, 1250.0, True, "drive tyre")
    objs += _wheel(5250.0, 1250.0, True, "drive tyre")
    for k in range(3):
        objs += _wheel(total - 3600.0 + 1350.0 * k, 1250.0, True, "trailer tyre")
    return objs, y_front


def rigid_truck(length_body: float, deck_z: float) -> tuple[list[SceneObject], float]:
    """A rigid (straight) truck carrying a 20 ft container right behind its cab.

    Cab-over cab and engine in front, one frame from cab to tail, a front axle
    and a rear tandem; the deck (top of the frame) at ``deck_z`` mm.  Returns
    the objects and the container's front y.
    """
    st = m.STEEL
    objs: list[SceneObject] = []

    def box(lbl: str, mat: Material, rho: float, *xyz: float) -> None:
        x0, x1, ya, yb, za, zb = xyz
        objs.append(Box(mat, rho, lbl, "structure", False, x0, x1, ya, yb, za, zb))

    box("cab shell", st, st.density * 0.004, -1250, 1250, 300, 2200, 1200, 3600)
    box("engine block", st, st.density * 0.35, -450, 450, 600, 1500, 750, 1600)
    box("gearbox", st, st.density * 0.3, -250, 250, 1500, 2000, 850, 1250)
    box("fuel tank", m.POLYETHYLENE, 0.8, 700, 1250, 2400, 3100, 650, 1200)
    y_front = 2500.0
    total = y_front + length_body
    for xs in (-470.0, 400.0):
        box("chassis rail", st, st.density * 0.22, xs, xs + 70, 300, total, deck_z - 300, deck_z)
    objs += _wheel(1100.0, 1250.0, False, "front tyre")
    objs += _wheel(total - 2100.0, 1250.0, True, "drive tyre")
    objs += _wheel(total - 750.0, 1250.0, True, "drive tyre")
    return objs, y_front
