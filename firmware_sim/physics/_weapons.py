# ruff: noqa: RUF002
"""Weapons hidden in cargo: pistols, sub-machine guns, rifles and shotguns.

Each class is a side-on silhouette made of parts (slide, barrel, receiver,
magazine, grip, stock), each part a polygon in the weapon's own frame with its
material and its effective solid thickness across the beam.  A draw picks the
class, the length within the class's range, the furniture (polymer or wood),
whether a long gun is taken apart, the rotation in the image plane and a
mirror, how many and how they are packed (loose among the goods, a bundle, a
carton of them), where they lie and what goods are wrapped round them.
Typical dimensions and densities, with their sources, are in
``docs/simulator-models.md`` ("Concealments").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np

from . import _materials as m
from ._attenuation import Material
from ._geometry import Box, Extrusion, SceneObject, polygon

Point = tuple[float, float]
Point4 = tuple[float, float, float, float]


class WeaponClass(StrEnum):
    """The classes of weapon drawn."""

    PISTOL = "pistol"
    SMG = "sub-machine gun"
    RIFLE = "rifle"
    SHOTGUN = "shotgun"


class Role(StrEnum):
    """What a part is made of: always steel, the frame (polymer or steel), or furniture."""

    STEEL = "steel"
    FRAME = "frame"  # polymer on most modern pistols, steel on older ones
    FURNITURE = "furniture"  # grip, handguard, stock: polymer or wood


class Component(StrEnum):
    """The groups a long gun comes apart into."""

    BARREL = "barrel"
    ACTION = "action"  # receiver, trigger group, grip, magazine
    STOCK = "stock"


class Packing(StrEnum):
    """How the weapons of one concealment lie: each reported alone, or as one group."""

    LOOSE = "loose"  # each one on its own among the goods: one finding each
    BUNDLE = "bundle"  # a few side by side, often wrapped in goods: one finding
    CARTON = "carton"  # a carton of identical weapons: one finding


#: Glass-filled polyamide 6 (30 % glass), the usual polymer of pistol frames and
#: stocks: 1.36 g/cm³ (BASF Ultramid B3EG6 data sheet).
NYLON = Material.from_formula("polyamide 6", {"C": 6, "H": 11, "N": 1, "O": 1}, 1.14, "organic")
POLYMER = Material.mixture("glass-filled polyamide", {NYLON: 0.7, m.GLASS: 0.3}, 1.36, "organic")
#: Walnut stocks and grips: about 0.64 g/cm³ dry (The Wood Database, "Black Walnut").
WOOD = Material.mixture("walnut", {m.CELLULOSE: 0.9, m.WATER: 0.1}, 0.64, "organic")


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a weapon's silhouette in its own frame.

    ``outline``: (u, v) vertices in mm, u along the weapon from the muzzle, v
    up from its lowest point; ``thickness_mm``: its effective solid thickness
    across the beam (hollow sections and bores taken out).
    """

    name: str
    role: Role
    thickness_mm: float
    component: Component
    outline: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class WeaponSpec:
    """A class of weapon: its overall length range (mm) and its parts at a reference size.

    ``compact_below_mm``: drawn shorter than this, the stock is left off (a
    machine pistol or a sub-machine gun with its stock removed).
    """

    cls: WeaponClass
    length_mm: tuple[float, float]
    parts: tuple[Part, ...]
    wood_share: float = 0.0
    steel_frame_share: float = 0.0
    compact_below_mm: float = 0.0


def _rect(u0: float, u1: float, v0: float, v1: float) -> tuple[Point, ...]:
    return ((u0, v0), (u1, v0), (u1, v1), (u0, v1))


S, F, W = Role.STEEL, Role.FRAME, Role.FURNITURE
B, A, K = Component.BARREL, Component.ACTION, Component.STOCK

#: The classes at their reference sizes (a 205 mm service pistol, a 650 mm
#: sub-machine gun with fixed stock, an 880 mm assault rifle, a 1000 mm pump
#: shotgun); lengths are scaled to the draw, heights with them.
WEAPONS: dict[WeaponClass, WeaponSpec] = {
    s.cls: s
    for s in (
        WeaponSpec(
            WeaponClass.PISTOL,
            (150.0, 250.0),
            (
                Part("slide", S, 20.0, A, _rect(0, 190, 100, 132)),
                Part(
                    "frame",
                    F,
                    14.0,
                    A,
                    (
                        (15, 100),
                        (195, 100),
                        (195, 86),
                        (100, 86),
                        (96, 62),
                        (58, 62),
                        (58, 70),
                        (88, 70),
                        (90, 86),
                        (15, 86),
                    ),
                ),
                Part("grip", F, 10.0, A, ((128, 86), (190, 86), (205, 0), (150, 0))),
                Part("magazine", S, 9.0, A, ((140, 84), (178, 84), (190, 4), (154, 4))),
            ),
            wood_share=0.0,
            steel_frame_share=0.35,
        ),
        WeaponSpec(
            WeaponClass.SMG,
            (300.0, 650.0),
            (
                Part("barrel", S, 16.0, B, _rect(0, 70, 168, 186)),
                Part("handguard", W, 14.0, B, _rect(60, 230, 150, 194)),
                Part("receiver", S, 10.0, A, _rect(50, 420, 160, 208)),
                Part("bolt", S, 18.0, A, _rect(250, 360, 168, 200)),
                Part("magazine", S, 10.0, A, ((235, 160), (272, 160), (256, 0), (220, 8))),
                Part(
                    "grip",
                    W,
                    16.0,
                    A,
                    (
                        (300, 160),
                        (400, 160),
                        (405, 150),
                        (398, 60),
                        (360, 60),
                        (352, 130),
                        (300, 140),
                    ),
                ),
                Part(
                    "stock",
                    W,
                    10.0,
                    K,
                    ((420, 206), (650, 212), (650, 100), (625, 100), (420, 168)),
                ),
            ),
            wood_share=0.1,
            compact_below_mm=450.0,
        ),
        WeaponSpec(
            WeaponClass.RIFLE,
            (800.0, 1200.0),
            (
                Part("barrel", S, 16.0, B, _rect(0, 430, 152, 170)),
                Part("front sight", S, 12.0, B, _rect(20, 45, 170, 200)),
                Part("handguard", W, 22.0, B, _rect(240, 430, 140, 190)),
                Part("receiver", S, 14.0, A, _rect(420, 660, 135, 195)),
                Part("magazine", S, 10.0, A, ((470, 135), (530, 135), (515, 0), (445, 12))),
                Part("grip", W, 18.0, A, ((585, 135), (625, 135), (640, 45), (605, 45))),
                Part(
                    "stock", W, 34.0, K, ((650, 195), (880, 180), (880, 40), (850, 40), (650, 140))
                ),
            ),
            wood_share=0.5,
        ),
        WeaponSpec(
            WeaponClass.SHOTGUN,
            (800.0, 1200.0),
            (
                Part("barrel", S, 6.0, B, _rect(0, 520, 160, 184)),
                Part("magazine tube", S, 4.0, B, _rect(120, 520, 138, 158)),
                Part("forend", W, 24.0, B, _rect(270, 430, 128, 166)),
                Part("receiver", S, 12.0, A, _rect(520, 720, 125, 190)),
                Part("trigger guard", S, 8.0, A, _rect(620, 690, 100, 125)),
                Part(
                    "stock",
                    W,
                    34.0,
                    K,
                    ((720, 190), (1000, 175), (1000, 40), (975, 40), (780, 110), (720, 125)),
                ),
            ),
            wood_share=0.6,
        ),
    )
}

#: How often each class comes up among loose or bundled weapons.
CLASS_WEIGHTS: dict[WeaponClass, float] = {
    WeaponClass.PISTOL: 0.45,
    WeaponClass.SMG: 0.25,
    WeaponClass.RIFLE: 0.2,
    WeaponClass.SHOTGUN: 0.1,
}
#: How often each packing comes up.
PACKING_WEIGHTS: dict[Packing, float] = {
    Packing.LOOSE: 0.5,
    Packing.BUNDLE: 0.3,
    Packing.CARTON: 0.2,
}


@dataclass(frozen=True, slots=True)
class Piece:
    """A part as drawn: material, density (g/cm³), thickness (mm) and (y, z) outline (mm)."""

    label: str
    material: Material
    density: float
    thickness_mm: float
    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Weapon:
    """A drawn weapon in its own frame (mm, origin anywhere): its class, label and pieces."""

    cls: WeaponClass
    label: str
    pieces: tuple[Piece, ...]

    def extent(self) -> tuple[float, float, float, float]:
        """(u0, u1, v0, v1), mm: the box round every piece's outline."""
        us = [p[0] for pc in self.pieces for p in pc.points]
        vs = [p[1] for pc in self.pieces for p in pc.points]
        return (min(us), max(us), min(vs), max(vs))

    def thickness_mm(self) -> float:
        """The thickest piece across the beam, mm."""
        return max(pc.thickness_mm for pc in self.pieces)

    def moved(self, du: float, dv: float) -> Weapon:
        """The same weapon shifted by (du, dv) mm."""
        return Weapon(
            self.cls,
            self.label,
            tuple(
                Piece(
                    pc.label,
                    pc.material,
                    pc.density,
                    pc.thickness_mm,
                    tuple((u + du, v + dv) for u, v in pc.points),
                )
                for pc in self.pieces
            ),
        )

    def turned(self, degrees: float, mirror: bool) -> Weapon:
        """Mirrored (muzzle the other way) if asked, then rotated about its box's centre."""
        u0, u1, v0, v1 = self.extent()
        cu, cv = (u0 + u1) / 2, (v0 + v1) / 2
        c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        pieces = []
        for pc in self.pieces:
            pts = []
            for u, v in pc.points:
                du, dv = (cu - u if mirror else u - cu), v - cv
                pts.append((cu + c * du - s * dv, cv + s * du + c * dv))
            pieces.append(Piece(pc.label, pc.material, pc.density, pc.thickness_mm, tuple(pts)))
        return Weapon(self.cls, self.label, tuple(pieces))


def draw_weapon(
    cls: WeaponClass,
    rng: np.random.Generator,
    *,
    length_mm: float | None = None,
    disassembled: bool | None = None,
) -> Weapon:
    """One weapon of class ``cls`` at 0° (muzzle towards −u), in its own frame.

    Args:
        cls: the class.
        rng: the scenario's generator (length, height, furniture, frame, parts).
        length_mm: overall length; None draws it uniformly in the class's range.
        disassembled: long guns only: lay barrel, action and stock apart, one
            above the other; None draws it (half of the rifles and shotguns).

    Returns:
        The weapon; its pieces' (u, v) outlines are in mm.
    """
    spec = WEAPONS[cls]
    length = float(rng.uniform(*spec.length_mm)) if length_mm is None else length_mm
    stretch = float(rng.uniform(0.92, 1.08))  # height to length varies between models
    wood = bool(rng.random() < spec.wood_share)
    steel_frame = bool(rng.random() < spec.steel_frame_share)
    parts = spec.parts
    if spec.compact_below_mm and length < spec.compact_below_mm:
        parts = tuple(p for p in parts if p.component != Component.STOCK)
    long_gun = cls in (WeaponClass.RIFLE, WeaponClass.SHOTGUN)
    apart = (bool(rng.random() < 0.5) if disassembled is None else disassembled) and long_gun
    u_hi = max(u for p in parts for u, _ in p.outline)
    u_lo = min(u for p in parts for u, _ in p.outline)
    k = length / (u_hi - u_lo)
    label = f"{cls.value} (in parts)" if apart else cls.value
    pieces: dict[Component, list[Piece]] = {}
    for p in parts:
        if p.role == Role.STEEL or (p.role == Role.FRAME and steel_frame):
            mat, t = m.STEEL, p.thickness_mm * (0.7 if p.role == Role.FRAME else 1.0)
        elif p.role == Role.FURNITURE and wood:
            mat, t = WOOD, p.thickness_mm
        else:
            mat, t = POLYMER, p.thickness_mm
        pts = tuple(((u - u_lo) * k, v * k * stretch) for u, v in p.outline)
        pieces.setdefault(p.component, []).append(
            Piece(f"{cls.value} {p.name}", mat, mat.density, t, pts)
        )
    if not apart:
        return Weapon(cls, label, tuple(pc for grp in pieces.values() for pc in grp))
    out: list[Piece] = []
    v_next = 0.0
    for comp in (Component.STOCK, Component.ACTION, Component.BARREL):
        grp = pieces.get(comp, [])
        if not grp:
            continue
        part = Weapon(cls, label, tuple(grp))
        u0, _, v0, v1 = part.extent()
        out += part.moved(-u0 + float(rng.uniform(0, 60)), v_next - v0).pieces
        v_next += v1 - v0 + float(rng.uniform(15, 50))
    return Weapon(cls, label, tuple(out))


def _orientation(rng: np.random.Generator) -> tuple[float, bool]:
    """Mostly flat (0° or upside down), some standing (±90°), the rest at any angle."""
    r = rng.random()
    if r < 0.65:
        deg = float(rng.choice([0.0, 180.0], p=[0.75, 0.25])) + float(rng.uniform(-3, 3))
    elif r < 0.8:
        deg = float(rng.choice([90.0, -90.0])) + float(rng.uniform(-3, 3))
    else:
        deg = float(rng.uniform(-180.0, 180.0))
    return deg, bool(rng.random() < 0.5)


def _draw_class(rng: np.random.Generator) -> WeaponClass:
    classes = list(CLASS_WEIGHTS)
    w = np.asarray([CLASS_WEIGHTS[c] for c in classes])
    return classes[int(rng.choice(len(classes), p=w / w.sum()))]


def _objects(
    wp: Weapon, xc: float, y: float, z: float, group: int, truth: bool = True
) -> list[SceneObject]:
    """Scene objects of ``wp`` with its box's lower left at (y, z) and centred on ``xc``.

    The first steel piece carries the truth and the box of the whole weapon.
    """
    u0, u1, v0, v1 = wp.extent()
    placed = wp.moved(y - u0, z - v0)
    out: list[SceneObject] = []
    steel_done = not truth
    for pc in placed.pieces:
        ys = [p[0] for p in pc.points]
        zs = [p[1] for p in pc.points]
        is_truth = not steel_done and pc.material == m.STEEL
        box = (y, y + u1 - u0, z, z + v1 - v0) if is_truth else (min(ys), max(ys), min(zs), max(zs))
        steel_done = steel_done or is_truth
        out.append(
            Extrusion(
                pc.material,
                pc.density,
                wp.label if is_truth else pc.label,
                "concealment",
                is_truth,
                xc - pc.thickness_mm / 2,
                xc + pc.thickness_mm / 2,
                *box,
                polygon(list(pc.points)),
                group=group,
            )
        )
    return out


class Space(Protocol):
    """Where the weapons may lie: the container's loadable space, mm (``Interior``)."""

    @property
    def x0(self) -> float: ...
    @property
    def x1(self) -> float: ...
    @property
    def y0(self) -> float: ...
    @property
    def y1(self) -> float: ...
    @property
    def z0(self) -> float: ...
    @property
    def z1(self) -> float: ...


#: Goods wrapped round a bundle or carton: (label, material, bulk density g/cm³).
COVER_GOODS: tuple[tuple[str, Material, float], ...] = (
    ("textiles round weapons", m.CELLULOSE, 0.25),
    ("paper round weapons", m.CELLULOSE, 0.6),
    ("machine parts round weapons", m.STEEL, 0.35),
    ("electronics round weapons", m.ELECTRONICS, 0.3),
)


def _place(
    w: float, h: float, t: float, space: Space, rng: np.random.Generator, taken: list[Point4]
) -> tuple[float, float, float]:
    """(x centre, y, z) for a w × h (y, z) box t thick, apart from the ``taken`` boxes if it can."""
    y, z = space.y0, space.z0
    for _ in range(60):
        y = float(rng.uniform(space.y0 + 50, max(space.y0 + 51, space.y1 - 50 - w)))
        z = float(rng.uniform(space.z0, max(space.z0 + 1, space.z1 - h)))
        if all(
            y + w + 100 < a or b + 100 < y or z + h + 100 < c or d + 100 < z for a, b, c, d in taken
        ):
            break
    xc = float(rng.uniform(space.x0 + t / 2 + 20, space.x1 - t / 2 - 20))
    taken.append((y, y + w, z, z + h))
    return xc, y, z


def _fits(wp: Weapon, space: Space, margin: float = 0.0) -> bool:
    """Whether ``wp`` (with ``margin`` mm round it) fits the space's length and height."""
    u0, u1, v0, v1 = wp.extent()
    return (
        u1 - u0 + margin < space.y1 - space.y0 - 200 and v1 - v0 + margin < space.z1 - space.z0 - 50
    )


def weapons(space: Space, rng: np.random.Generator) -> tuple[list[SceneObject], dict[str, object]]:
    """Weapons hidden in ``space``: class, size, parts, orientation, count, packing, cover.

    Loose weapons (1–6, any classes) each make their own group (one finding
    each); a bundle (2–6 of one class, side by side) or a carton (6–24
    pistols or compact sub-machine guns in rows and layers) is one group.
    Every object has ``kind`` ``concealment``; each weapon's first steel piece
    is its truth object with the weapon's whole box.

    Returns:
        The scene objects and a summary (``packing``, ``classes``, ``count``).
    """
    packs = list(PACKING_WEIGHTS)
    pw = np.asarray([PACKING_WEIGHTS[p] for p in packs])
    packing = packs[int(rng.choice(len(packs), p=pw / pw.sum()))]
    out: list[SceneObject] = []
    taken: list[Point4] = []
    classes: list[str] = []
    if packing == Packing.LOOSE:
        for g in range(1, int(rng.integers(1, 7)) + 1):
            wp = draw_weapon(_draw_class(rng), rng)
            turned = wp.turned(*_orientation(rng))
            wp = turned if _fits(turned, space) else wp
            u0, u1, v0, v1 = wp.extent()
            xc, y, z = _place(u1 - u0, v1 - v0, wp.thickness_mm(), space, rng, taken)
            out += _objects(wp, xc, y, z, g)
            classes.append(wp.label)
        return out, {"packing": packing.value, "classes": classes, "count": len(classes)}
    # a bundle or a carton: (weapon, offset across the beam) side by side, one above the other
    stack: list[tuple[Weapon, float]] = []
    layers = 1
    if packing == Packing.BUNDLE:
        cls = _draw_class(rng)
        first = draw_weapon(cls, rng)
        length = first.extent()[1] - first.extent()[0]
        items = [first] + [
            draw_weapon(cls, rng, length_mm=length * float(rng.uniform(0.97, 1.03)))
            for _ in range(int(rng.integers(1, 6)))
        ]
        v = 0.0
        for wp in items:
            wp = wp.turned(0.0, bool(rng.random() < 0.5))
            u0, _, v0, v1 = wp.extent()
            stack.append((wp.moved(-u0, v - v0), 0.0))
            v += v1 - v0 + float(rng.uniform(5, 40))
    else:
        cls = WeaponClass.PISTOL if rng.random() < 0.7 else WeaponClass.SMG
        lo, hi = WEAPONS[cls].length_mm
        hi = WEAPONS[cls].compact_below_mm or hi
        base = draw_weapon(cls, rng, length_mm=float(rng.uniform(lo, hi)))
        u0, u1, v0, v1 = base.extent()
        ny, nz, layers = int(rng.integers(1, 4)), int(rng.integers(2, 5)), int(rng.integers(1, 3))
        thick = base.thickness_mm() + 10.0
        for layer in range(layers):
            for iy in range(ny):
                for iz in range(nz):
                    wp = base.turned(0.0, (iz + layer) % 2 == 1)
                    du = -u0 + iy * (u1 - u0 + 20.0)
                    dv = -v0 + iz * (v1 - v0 + 15.0) + layer * 8.0
                    stack.append((wp.moved(du, dv), (layer - (layers - 1) / 2) * thick))
    # the group turned as one about its centre, kept inside the space
    deg, mirror = _orientation(rng)
    if packing == Packing.CARTON:
        deg, mirror = float(rng.choice([0.0, 90.0], p=[0.8, 0.2])), False

    def _whole() -> Weapon:
        return Weapon(stack[0][0].cls, "", tuple(pc for wp, _ in stack for pc in wp.pieces))

    while len(stack) > 1 and not _fits(_whole(), space, 80.0):
        stack.pop()  # a pile too high for this container: fewer of them
    whole = _whole()
    if not _fits(whole.turned(deg, mirror), space, 80.0):
        deg, mirror = 0.0, False
    cu0, cu1, cv0, cv1 = whole.extent()
    cu, cv = (cu0 + cu1) / 2, (cv0 + cv1) / 2
    g_u0, g_u1, g_v0, g_v1 = whole.turned(deg, mirror).extent()
    gw, gh = g_u1 - g_u0, g_v1 - g_v0
    t = (whole.thickness_mm() + 10.0) * layers
    xc, y, z = _place(gw + 80, gh + 80, t + 80, space, rng, taken)
    y, z = y + 40, z + 40
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    for wp, x_off in stack:
        pieces = []
        for pc in wp.pieces:
            pts = []
            for pu, pv in pc.points:
                du, dv = (cu - pu if mirror else pu - cu), pv - cv
                pts.append((cu + c * du - s * dv - g_u0 + y, cv + s * du + c * dv - g_v0 + z))
            pieces.append(Piece(pc.label, pc.material, pc.density, pc.thickness_mm, tuple(pts)))
        placed = Weapon(wp.cls, wp.label, tuple(pieces))
        pu0, _, pv0, _ = placed.extent()
        out += _objects(placed, xc + x_off, pu0, pv0, 1)
        classes.append(wp.label)
    if packing == Packing.CARTON:
        out.append(
            Box(
                m.CELLULOSE,
                0.08,
                "weapons carton",
                "concealment",
                False,
                xc - t / 2 - 15,
                xc + t / 2 + 15,
                y - 20,
                y + gw + 20,
                z - 20,
                z + gh + 20,
                group=1,
            )
        )
    if rng.random() < 0.4:  # goods wrapped round them
        label, mat, rho = COVER_GOODS[int(rng.integers(len(COVER_GOODS)))]
        out.append(
            Box(
                mat,
                rho,
                label,
                "concealment",
                False,
                xc - t / 2 - 40,
                xc + t / 2 + 40,
                y - 40,
                y + gw + 40,
                z - 40,
                z + gh + 40,
                group=1,
            )
        )
    return out, {"packing": packing.value, "classes": classes, "count": len(classes)}
