# ruff: noqa: RUF002
"""Cargo loading, concealments and Goods Declarations for simulated scans.

Every random choice comes from one ``numpy.random.Generator`` so a scenario is
fixed by its seed.  Concealments are the ones the SOP asks analysts to find
(R7, R10, R11): false walls and double floors, high-density blocks, organic
packages inside metal cargo, high-Z blocks, firearm-like steel shapes and an
undeclared vehicle; each is reported in the ground truth with its box in mm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core import iso6346

from . import _materials as m
from ._attenuation import Material
from ._geometry import Box, Extrusion, SceneObject, annulus, polygon, shifted
from ._scene import COMMODITIES, TRAILER_DECK_Z, Commodity, ContainerSpec
from ._weapons import weapons

CONCEALMENTS = (
    "false wall",
    "double floor",
    "high-density block",
    "organic in metal",
    "high-Z block",
    "firearms",
    "vehicle",
)


@dataclass(frozen=True, slots=True)
class Interior:
    """The loadable space of a container, mm."""

    x0: float
    x1: float
    y0: float
    y1: float
    z0: float
    z1: float


def interior(spec: ContainerSpec, y_front: float, deck_z: float = TRAILER_DECK_Z) -> Interior:
    """Inner space: walls, floor and roof taken off the outside dimensions."""
    return Interior(
        -spec.width / 2 + 45,
        spec.width / 2 - 45,
        y_front + 80,
        y_front + spec.length - 70,
        deck_z + 160,
        deck_z + spec.height - 110,
    )


def _cargo_box(
    c: Commodity, rho: float, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float
) -> Box:
    return Box(c.material, rho, c.name, "cargo", False, x0, x1, y0, y1, z0, z1)


def load_cargo(
    c: Commodity, space: Interior, rng: np.random.Generator, load_fraction: float
) -> list[SceneObject]:
    """Fill the front ``load_fraction`` of the container with ``c`` in its packing pattern."""
    objs: list[SceneObject] = []
    px, py, pz = c.package
    y_end = space.y0 + (space.y1 - space.y0) * load_fraction
    z_top = space.z0 + (space.z1 - space.z0) * c.fill_height
    width = space.x1 - space.x0
    if c.pattern in ("cartons", "bottles"):
        gap = 30.0 if c.pattern == "bottles" else 8.0
        nx = max(1, int(width // px))
        xfill = nx * px / width
        y = space.y0
        while y + py <= y_end:
            z = space.z0
            top = z_top - rng.uniform(0, pz) if rng.random() < 0.3 else z_top
            while z + pz <= top:
                rho = c.bulk_density * xfill * rng.uniform(0.9, 1.1)
                objs.append(
                    _cargo_box(c, rho, space.x0, space.x1, y, y + py - gap, z, z + pz - gap)
                )
                z += pz
            y += py
    elif c.pattern == "pallets":
        y = space.y0
        while y + py <= y_end:
            z = space.z0
            while z + 150 + pz * 0.6 <= z_top:
                h = min(pz, z_top - z - 150)
                for xa in (space.x0 + 40, space.x0 + width / 2 + 20):
                    xb = xa + min(px, width / 2 - 60)
                    objs.append(
                        Box(
                            m.PLYWOOD,
                            0.18,
                            "pallet",
                            "cargo",
                            False,
                            xa,
                            xb,
                            y,
                            y + py - 40,
                            z,
                            z + 150,
                        )
                    )
                    rho = c.bulk_density * rng.uniform(0.92, 1.08)
                    objs.append(_cargo_box(c, rho, xa, xb, y, y + py - 40, z + 150, z + 150 + h))
                z += 150 + h
            y += py + 60
    elif c.pattern == "tyres":
        r_out, r_in = pz / 2, pz * 0.3
        y = space.y0 + r_out
        while y + r_out <= y_end:
            z = space.z0 + r_out
            while z + r_out <= z_top + 1:
                n_across = int(width // px)
                objs.append(
                    Extrusion(
                        c.material,
                        c.bulk_density * 0.5,
                        c.name,
                        "cargo",
                        False,
                        -n_across * px / 2,
                        n_across * px / 2,
                        y - r_out,
                        y + r_out,
                        z - r_out,
                        z + r_out,
                        annulus(y, z, r_out, r_in),
                    )
                )
                z += 2 * r_out
            y += py + 20
    elif c.pattern == "coils":
        r_out = pz / 2
        y = space.y0 + r_out
        while y + r_out <= y_end:
            z = space.z0 + r_out
            for xa in (space.x0 + 100, space.x0 + width / 2 + 100):
                objs.append(
                    Extrusion(
                        c.material,
                        c.bulk_density,
                        c.name,
                        "cargo",
                        False,
                        xa,
                        xa + px,
                        y - r_out,
                        y + r_out,
                        z - r_out,
                        z + r_out,
                        annulus(y, z, r_out, r_out * 0.35),
                    )
                )
            y += py + 300
    elif c.pattern == "bulk":
        for _ in range(int(60 * load_fraction * (space.y1 - space.y0) / 6000)):
            sx, sy, sz = rng.uniform(150, 900, 3)
            xa = rng.uniform(space.x0, space.x1 - sx)
            ya = rng.uniform(space.y0, y_end - sy)
            za = space.z0 + rng.uniform(0, max(1.0, (z_top - space.z0) * 0.8 - sz))
            rho = c.material.density * rng.uniform(0.03, 0.2)
            objs.append(_cargo_box(c, rho, xa, xa + sx, ya, ya + sy, za, za + sz))
    elif c.pattern == "machinery":
        y = space.y0 + 100
        while y + py <= y_end:
            h = rng.uniform(0.6, 1.0) * min(pz, z_top - space.z0)
            xa, xb = -px / 2, px / 2
            st = m.STEEL
            objs.append(
                Box(
                    st,
                    7.85 * 0.05,
                    "machine frame",
                    "cargo",
                    False,
                    xa,
                    xb,
                    y,
                    y + py,
                    space.z0,
                    space.z0 + h,
                )
            )
            objs.append(
                Box(
                    st,
                    7.85 * 0.25,
                    "machine base",
                    "cargo",
                    False,
                    xa,
                    xb,
                    y,
                    y + py,
                    space.z0,
                    space.z0 + 120,
                )
            )
            mz = space.z0 + 120 + rng.uniform(0, h / 3)
            objs.append(
                Box(
                    m.COPPER,
                    8.96 * 0.15,
                    "motor winding",
                    "cargo",
                    False,
                    -250,
                    250,
                    y + 200,
                    y + 600,
                    mz,
                    mz + 400,
                )
            )
            objs.append(
                Box(
                    st,
                    7.85 * 0.4,
                    "motor housing",
                    "cargo",
                    False,
                    -300,
                    300,
                    y + 150,
                    y + 650,
                    mz,
                    mz + 450,
                )
            )
            objs.append(
                Extrusion(
                    st,
                    7.85,
                    "shaft",
                    "cargo",
                    False,
                    -500,
                    500,
                    y + 650,
                    y + 1300,
                    mz + 175,
                    mz + 275,
                    polygon(
                        [
                            (y + 650, mz + 185),
                            (y + 1300, mz + 185),
                            (y + 1300, mz + 265),
                            (y + 650, mz + 265),
                        ]
                    ),
                )
            )
            y += py + rng.uniform(200, 600)
    else:  # pragma: no cover - the library only uses the patterns above
        raise ValueError(f"unknown packing pattern {c.pattern!r}")
    return objs


def _pistol(y: float, z: float, scale: float) -> list[tuple[float, float]]:
    pts = [(0, 0), (200, 0), (200, 35), (75, 35), (70, 130), (30, 130), (35, 35), (0, 35)]
    return [(y + scale * a, z + scale * (35 - b) + 95 * scale) for a, b in pts]


def conceal(
    kind: str,
    space: Interior,
    cargo: list[SceneObject],
    rng: np.random.Generator,
    *,
    variety: bool = False,
) -> list[SceneObject]:
    """Objects of one concealment of ``kind``, placed where it makes sense, with truth set.

    Without ``variety`` the draw is the original one, number for number.  With
    it, firearms are the weapons of :func:`~._weapons.weapons` (classes, sizes,
    parts, orientation, count, packing; one truth group per weapon or per
    packed group) and the other kinds vary in size, place and material
    (:func:`_varied`); see ``docs/simulator-models.md`` ("Concealments").

    Args:
        kind: one of :data:`CONCEALMENTS`.
        space: the container's loadable space, mm.
        cargo: the load (not used to place anything yet).
        rng: the scenario's generator.
        variety: draw the varied concealments.

    Returns:
        The concealment's objects (``kind`` ``concealment``).

    Raises:
        ValueError: ``kind`` is not one of :data:`CONCEALMENTS`.
    """
    if variety:
        if kind not in CONCEALMENTS:
            raise ValueError(f"unknown concealment {kind!r}; one of {', '.join(CONCEALMENTS)}")
        if kind == "firearms":
            return weapons(space, rng)[0]
        return _varied(kind, space, rng)
    y_mid = rng.uniform(space.y0 + 1500, space.y1 - 1500)
    z_mid = rng.uniform(space.z0 + 500, space.z0 + 1400)
    out: list[SceneObject] = []

    def add(obj: SceneObject, truth: bool = True) -> None:
        obj.kind = "concealment"
        obj.truth = truth
        out.append(obj)

    if kind == "false wall":
        y0 = space.y0 + 20
        depth = rng.uniform(300, 600)
        add(
            Box(
                m.STEEL,
                7.85,
                "false wall plate",
                "",
                False,
                space.x0,
                space.x1,
                y0 + depth,
                y0 + depth + 2,
                space.z0,
                space.z1,
            ),
            truth=False,
        )
        add(
            Box(
                m.COCAINE,
                0.8,
                "packages behind false wall",
                "",
                False,
                space.x0 + 100,
                space.x1 - 100,
                y0,
                y0 + depth - 20,
                space.z0 + 100,
                space.z1 - 300,
            )
        )
    elif kind == "double floor":
        y0 = rng.uniform(space.y0, space.y0 + 1000)
        y1 = min(space.y1, y0 + rng.uniform(2000, 4000))
        add(
            Box(
                m.STEEL,
                7.85,
                "false floor plate",
                "",
                False,
                space.x0,
                space.x1,
                y0,
                y1,
                space.z0 + 150,
                space.z0 + 153,
            ),
            truth=False,
        )
        add(
            Box(
                m.TOBACCO,
                0.45,
                "packages under false floor",
                "",
                False,
                space.x0 + 50,
                space.x1 - 50,
                y0 + 50,
                y1 - 50,
                space.z0,
                space.z0 + 140,
            )
        )
    elif kind == "high-density block":
        s = rng.uniform(250, 450)
        add(
            Box(
                m.STEEL,
                7.85,
                "steel block",
                "",
                False,
                -s / 2,
                s / 2,
                y_mid,
                y_mid + s,
                z_mid,
                z_mid + s,
            )
        )
    elif kind == "organic in metal":
        add(
            Box(
                m.COCAINE,
                1.0,
                "organic packages",
                "",
                False,
                -500,
                500,
                y_mid,
                y_mid + 600,
                space.z0 + 120,
                space.z0 + 520,
            )
        )
    elif kind == "high-Z block":
        mat = m.LEAD if rng.random() < 0.5 else m.GOLD
        add(
            Box(
                mat,
                mat.density,
                f"{mat.name} block",
                "",
                False,
                -100,
                100,
                y_mid,
                y_mid + 200,
                z_mid,
                z_mid + 150,
            )
        )
    elif kind == "firearms":
        for k in range(int(rng.integers(2, 5))):
            yk = y_mid + 300 * k
            pts = _pistol(yk, z_mid, 1.0)
            ys = [p[0] for p in pts]
            zs = [p[1] for p in pts]
            add(
                Extrusion(
                    m.STEEL,
                    7.85,
                    "firearm",
                    "",
                    False,
                    -15 + 40 * k,
                    15 + 40 * k,
                    min(ys),
                    max(ys),
                    min(zs),
                    max(zs),
                    polygon(pts),
                )
            )
    elif kind == "vehicle":
        y0 = rng.uniform(space.y0 + 200, space.y1 - 4600)
        zf = space.z0
        add(
            Box(
                m.STEEL,
                7.85 * 0.004,
                "vehicle",
                "",
                False,
                -850,
                850,
                y0,
                y0 + 4300,
                zf + 200,
                zf + 1450,
            )
        )
        add(
            Box(
                m.ALUMINIUM,
                2.7 * 0.35,
                "engine",
                "",
                False,
                -350,
                350,
                y0 + 200,
                y0 + 800,
                zf + 350,
                zf + 900,
            ),
            truth=False,
        )
        for yw in (y0 + 750, y0 + 3400):
            for xw in (-850.0, 650.0):
                add(
                    Extrusion(
                        m.RUBBER,
                        1.15,
                        "vehicle tyre",
                        "",
                        False,
                        xw,
                        xw + 200,
                        yw - 320,
                        yw + 320,
                        zf,
                        zf + 640,
                        annulus(yw, zf + 320, 320, 200),
                    ),
                    truth=False,
                )
        add(
            Box(
                m.POLYETHYLENE,
                0.1,
                "seats",
                "",
                False,
                -700,
                700,
                y0 + 1700,
                y0 + 3000,
                zf + 500,
                zf + 1100,
            ),
            truth=False,
        )
    else:
        raise ValueError(f"unknown concealment {kind!r}; one of {', '.join(CONCEALMENTS)}")
    return out


#: Dense blocks (``high-density block``): material, share of draws, side range (mm).
DENSE_BLOCKS: tuple[tuple[Material, float, tuple[float, float]], ...] = (
    (m.STEEL, 0.6, (50.0, 400.0)),
    (m.COPPER, 0.25, (50.0, 400.0)),
    (m.TIN, 0.15, (50.0, 300.0)),
)
#: High-Z blocks (``high-Z block``): lead, tungsten, depleted uranium, gold.
HIGH_Z_BLOCKS: tuple[tuple[Material, float, tuple[float, float]], ...] = (
    (m.LEAD, 0.4, (50.0, 400.0)),
    (m.TUNGSTEN, 0.2, (50.0, 250.0)),
    (m.URANIUM, 0.15, (50.0, 250.0)),
    (m.GOLD, 0.25, (50.0, 200.0)),
)
#: What is hidden behind false walls and under double floors: label, material, density range.
HIDDEN_GOODS: tuple[tuple[str, Material, tuple[float, float]], ...] = (
    ("drug packages", m.COCAINE, (0.6, 1.0)),
    ("tobacco", m.TOBACCO, (0.35, 0.6)),
    ("banknotes", m.CELLULOSE, (0.5, 0.9)),
)
#: Undeclared vehicles: kind, share of draws.
VEHICLES: tuple[tuple[str, float], ...] = (("car", 0.6), ("motorcycle", 0.25), ("quad", 0.15))


def _pick(rng: np.random.Generator, shares: list[float]) -> int:
    w = np.asarray(shares)
    return int(rng.choice(len(shares), p=w / w.sum()))


def _panel(rng: np.random.Generator) -> tuple[Material, float, float]:
    """A false panel: steel plate 2–6 mm or plywood 18–28 mm: (material, density, mm)."""
    if rng.random() < 0.6:
        return m.STEEL, 7.85, float(rng.uniform(2.0, 6.0))
    return m.PLYWOOD, 0.7, float(rng.uniform(18.0, 28.0))


def _varied(kind: str, space: Interior, rng: np.random.Generator) -> list[SceneObject]:
    """A concealment of ``kind`` (not firearms) drawn with variety of size, place and material."""
    out: list[SceneObject] = []

    def add(obj: SceneObject, truth: bool = True) -> None:
        obj.kind = "concealment"
        obj.truth = truth
        out.append(obj)

    def block(table: tuple[tuple[Material, float, tuple[float, float]], ...]) -> None:
        mat, _, (lo, hi) = table[_pick(rng, [t[1] for t in table])]
        sx, sy, sz = (float(v) for v in rng.uniform(lo, hi, 3))
        x0 = float(rng.uniform(space.x0, space.x1 - sx))
        y0 = float(rng.uniform(space.y0 + 200, space.y1 - 200 - sy))
        z0 = float(rng.uniform(space.z0, min(space.z1 - sz, space.z0 + 1800)))
        add(
            Box(
                mat,
                mat.density,
                f"{mat.name} block",
                "",
                False,
                x0,
                x0 + sx,
                y0,
                y0 + sy,
                z0,
                z0 + sz,
            )
        )

    def goods() -> tuple[str, Material, float]:
        label, mat, (lo, hi) = HIDDEN_GOODS[int(rng.integers(len(HIDDEN_GOODS)))]
        return label, mat, float(rng.uniform(lo, hi))

    if kind == "high-density block":
        block(DENSE_BLOCKS)
    elif kind == "high-Z block":
        block(HIGH_Z_BLOCKS)
    elif kind == "false wall":
        depth = float(rng.uniform(200, 900))
        mat, rho, t = _panel(rng)
        at_doors = bool(rng.random() < 0.3)
        y_wall = space.y1 - depth - t if at_doors else space.y0 + 20 + depth
        ya, yb = (y_wall + t + 20, space.y1 - 10) if at_doors else (space.y0 + 20, y_wall - 20)
        add(
            Box(
                mat,
                rho,
                "false wall panel",
                "",
                False,
                space.x0,
                space.x1,
                y_wall,
                y_wall + t,
                space.z0,
                space.z1,
            ),
            truth=False,
        )
        label, gm, grho = goods()
        top = space.z1 - float(rng.uniform(100, 600))
        add(
            Box(
                gm,
                grho,
                f"{label} behind false wall",
                "",
                False,
                space.x0 + 100,
                space.x1 - 100,
                ya,
                yb,
                space.z0 + 100,
                top,
            )
        )
    elif kind == "double floor":
        depth = float(rng.uniform(80, 250))
        mat, rho, t = _panel(rng)
        y0 = float(rng.uniform(space.y0, space.y0 + 0.5 * (space.y1 - space.y0) - 1500))
        y1 = min(space.y1, y0 + float(rng.uniform(1500, 5000)))
        add(
            Box(
                mat,
                rho,
                "false floor panel",
                "",
                False,
                space.x0,
                space.x1,
                y0,
                y1,
                space.z0 + depth,
                space.z0 + depth + t,
            ),
            truth=False,
        )
        label, gm, grho = goods()
        add(
            Box(
                gm,
                grho,
                f"{label} under false floor",
                "",
                False,
                space.x0 + 50,
                space.x1 - 50,
                y0 + 50,
                y1 - 50,
                space.z0,
                space.z0 + depth - 10,
            )
        )
    elif kind == "organic in metal":
        w, d, h = (
            float(rng.uniform(600, 1600)),
            float(rng.uniform(400, 1200)),
            float(rng.uniform(200, 700)),
        )
        x0 = float(rng.uniform(space.x0, space.x1 - w))
        y0 = float(rng.uniform(space.y0 + 200, space.y1 - 200 - d))
        z0 = space.z0 + (float(rng.uniform(0, 800)) if rng.random() < 0.4 else 0.0)
        label, gm, grho = goods()
        add(
            Box(
                gm,
                grho * float(rng.uniform(1.0, 1.3)),
                f"{label} in metal cargo",
                "",
                False,
                x0,
                x0 + w,
                y0,
                y0 + d,
                z0,
                z0 + h,
            )
        )
    else:  # vehicle
        add_vehicle(VEHICLES[_pick(rng, [v[1] for v in VEHICLES])][0], space, rng, add)
    return out


def add_vehicle(
    what: str, space: Interior, rng: np.random.Generator, add: Callable[[SceneObject, bool], None]
) -> None:
    """A car, motorcycle or quad of drawn size in ``space``, given to ``add(obj, truth)``.

    The truth object is the vehicle's whole box (smeared bodywork and frame);
    engine, wheels and seats are drawn inside it without truth.
    """
    if what == "car":
        length, width, height = (
            float(rng.uniform(a, b)) for a, b in ((3600, 4900), (1600, 1850), (1350, 1600))
        )
        r_tyre, tyre_w, shell = float(rng.uniform(290, 340)), 200.0, 7.85 * 0.004
    elif what == "motorcycle":
        length, width, height = (
            float(rng.uniform(a, b)) for a, b in ((1900, 2300), (700, 900), (1050, 1300))
        )
        r_tyre, tyre_w, shell = float(rng.uniform(280, 330)), 150.0, 7.85 * 0.008
    else:
        length, width, height = (
            float(rng.uniform(a, b)) for a, b in ((1750, 2100), (1050, 1250), (1050, 1250))
        )
        r_tyre, tyre_w, shell = float(rng.uniform(260, 300)), 230.0, 7.85 * 0.008
    length = min(length, space.y1 - space.y0 - 400)
    y0 = float(rng.uniform(space.y0 + 200, space.y1 - 200 - length))
    zf = space.z0
    xc = float(rng.uniform(space.x0 + width / 2, space.x1 - width / 2))
    add(
        Box(
            m.STEEL,
            shell,
            what,
            "",
            False,
            xc - width / 2,
            xc + width / 2,
            y0,
            y0 + length,
            zf,
            zf + height,
        ),
        True,
    )
    ew = min(700.0, width * 0.6)
    add(
        Box(
            m.ALUMINIUM,
            2.7 * 0.35,
            f"{what} engine",
            "",
            False,
            xc - ew / 2,
            xc + ew / 2,
            y0 + 0.1 * length,
            y0 + 0.3 * length,
            zf + 0.25 * height,
            zf + 0.6 * height,
        ),
        False,
    )
    wheel_ys = (y0 + r_tyre + 50, y0 + length - r_tyre - 50)
    sides = (
        (xc,)
        if what == "motorcycle"
        else (xc - width / 2 + tyre_w / 2, xc + width / 2 - tyre_w / 2)
    )
    for yw in wheel_ys:
        for xw in sides:
            add(
                Extrusion(
                    m.RUBBER,
                    1.15,
                    f"{what} tyre",
                    "",
                    False,
                    xw - tyre_w / 2,
                    xw + tyre_w / 2,
                    yw - r_tyre,
                    yw + r_tyre,
                    zf,
                    zf + 2 * r_tyre,
                    annulus(yw, zf + r_tyre, r_tyre, r_tyre * 0.62),
                ),
                False,
            )
    add(
        Box(
            m.POLYETHYLENE,
            0.1,
            f"{what} seat",
            "",
            False,
            xc - width * 0.4,
            xc + width * 0.4,
            y0 + 0.4 * length,
            y0 + 0.7 * length,
            zf + 0.4 * height,
            zf + 0.8 * height,
        ),
        False,
    )


def object_mass_kg(obj: SceneObject) -> float:
    """Mass of a scene object, kg (extrusions by sampling their outline)."""
    x0, x1, y0, y1, z0, z1 = obj.bounds()
    vol_cm3 = (x1 - x0) * (y1 - y0) * (z1 - z0) / 1000.0
    if isinstance(obj, Extrusion) and obj.inside is not None:
        yy, zz = np.meshgrid(np.linspace(y0, y1, 40), np.linspace(z0, z1, 40))
        vol_cm3 *= float(obj.inside(yy, zz).mean())
    return vol_cm3 * obj.density / 1000.0


@dataclass(slots=True)
class Scenario:
    """A scene plus what is known about it: ground truth and the Goods Declaration."""

    objects: list[SceneObject]
    length_mm: float
    container: ContainerSpec
    commodity: str | None
    concealment: str | None
    gd: dict[str, Any]
    gd_truthful: bool
    discrepancies: list[str] = field(default_factory=list)
    #: where the container's front end is along the road and its underside's height, mm
    y_front: float = 3400.0
    deck_z: float = TRAILER_DECK_Z
    #: what carries the container: ``trailer`` (tractor and trailer) or ``rigid`` truck
    vehicle: str = "trailer"
    #: mass of the cargo and anything hidden, kg (the true gross is tare plus this)
    cargo_kg: float = 0.0
    #: how the load was arranged (scenes with variety): placement, gaps, cut tiers
    load: dict[str, Any] = field(default_factory=dict)


def goods_declaration(
    rng: np.random.Generator,
    scan_id: int,
    spec: ContainerSpec,
    commodity: str | None,
    cargo_kg: float,
    packages: int,
    concealment: str | None,
    lie: bool,
) -> tuple[dict[str, Any], list[str]]:
    """A GD for the load; with ``lie`` it misstates the commodity or the weight."""
    discrepancies: list[str] = []
    declared = commodity or "empty"
    weight = spec.tare_kg + cargo_kg
    if lie and commodity is not None:
        if rng.random() < 0.5:
            others = [n for n in COMMODITIES if n != commodity]
            declared = str(rng.choice(others))
            discrepancies.append(f"declared {declared!r}, loaded {commodity!r}")
        else:
            weight *= rng.uniform(0.55, 0.8)
            discrepancies.append("gross weight understated")
    if concealment is not None:
        discrepancies.append(f"undeclared: {concealment}")
    hs = COMMODITIES[declared].hs_code if declared in COMMODITIES else ""
    gd = {
        "gd_number": f"KPPI-HC-{scan_id:08d}",
        "container_number": container_number(scan_id),
        "container_type": spec.code,
        "declared_commodity": declared,
        "hs_code": hs,
        "gross_weight_kg": round(weight, 1),
        "packages": packages,
        "seal": f"SL{int(rng.integers(1_000_000, 9_999_999))}",
    }
    return gd, discrepancies


def container_number(scan_id: int, owner: str = "MSKU") -> str:
    """The container number of scan ``scan_id``'s GD: ``owner`` (three letters and the
    category ``U``), the scan id as the six-digit serial (modulo 10⁶) and the ISO 6346
    check digit, so an RMS can declare it (``MSKU0000011`` for scan 1)."""
    first = f"{owner}{scan_id % 10**6:06d}"
    return f"{first}{iso6346.check_digit(first)}"


#: Where a partial load sits in the container (scenes with variety).
PLACEMENTS = ("front", "back", "middle")


def arrange_load(
    objs: list[SceneObject], space: Interior, rng: np.random.Generator
) -> tuple[list[SceneObject], dict[str, Any]]:
    """Vary a load as loaders do: pushed to the back or centred, gaps between rows, cut tiers.

    ``objs`` is a load from :func:`load_cargo` (at the front of ``space``).
    Rows are the packages that start at the same y.  Returns the rearranged
    objects and what was done (``placement``, ``gaps`` [y of each gap, mm],
    ``cut_rows``).
    """
    if not objs:
        return objs, {"placement": "none", "gaps": [], "cut_rows": 0}
    rows: dict[int, list[SceneObject]] = {}
    for o in objs:
        rows.setdefault(round(o.bounds()[2]), []).append(o)
    keys = sorted(rows)
    # mixed heights: some rows lose their upper packages (pallets of other heights)
    cut = 0
    if rng.random() < 0.5:
        for k in keys:
            if rng.random() < 0.35:
                z_cut = space.z0 + (space.z1 - space.z0) * rng.uniform(0.3, 0.8)
                kept = [o for o in rows[k] if o.bounds()[4] < z_cut]
                if kept and len(kept) < len(rows[k]):
                    rows[k] = kept
                    cut += 1
    # gaps between rows (dunnage left out, goods for another consignee taken off)
    gaps: list[float] = []
    out: list[SceneObject] = []
    dy = 0.0
    n_gaps = int(rng.integers(0, 3)) if len(keys) > 3 else 0
    gap_at = set(rng.choice(keys[1:], size=n_gaps, replace=False).tolist()) if n_gaps else set()
    for k in keys:
        if k in gap_at:
            g = float(rng.uniform(200.0, 800.0))
            gaps.append(k + dy)
            dy += g
        out += shifted(rows[k], dy) if dy else rows[k]
    end = max(o.bounds()[3] for o in out)
    if end > space.y1:  # the gaps pushed the last rows out of the container: leave them behind
        out = [o for o in out if o.bounds()[3] <= space.y1]
        end = max((o.bounds()[3] for o in out), default=space.y0)
    room = space.y1 - end
    placement = str(rng.choice(PLACEMENTS, p=[0.6, 0.25, 0.15]))
    move = {"front": 0.0, "back": room, "middle": room / 2}[placement]
    if move > 1.0:
        out = shifted(out, move)
        gaps = [g + move for g in gaps]
    return out, {"placement": placement, "gaps": [round(g, 1) for g in gaps], "cut_rows": cut}
