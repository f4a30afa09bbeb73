"""ATT transit (R12) in the simulator: the exit scanner sees the containers the entry scanner saw.

Scenarios are drawn from ``np.random.default_rng([seed, scan_id])``, so an exit
simulator run with the entry simulator's seed scans the same truck, container,
cargo, Goods Declaration, container number and seal.  What differs is what
differs at a real exit: another detector array, another belt speed (so another
line pitch and another start along the road), fresh noise, and, when asked,
cargo tampered with in transit (:func:`tamper`) or a seal that was broken and
replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._cargo import Scenario, conceal, interior
from ._geometry import Box, SceneObject, shifted

#: The kinds of change :func:`tamper` makes.
TAMPER_KINDS = ("addition", "removal", "substitution")
#: Belt speeds of the exit scanner (relative to the entry) the scene still fits in.
BELT_SPEED_RANGE = (0.85, 1.15)


def tamper(
    objs: list[Any], sc: Scenario, how: str, rng: np.random.Generator
) -> tuple[list[Any], list[float]]:
    """Scan B's objects: one change of ``how`` kind; returns them and the y range changed.

    ``addition``: a high-density block or an organic package hidden among the
    goods; ``removal``: 1.5 m of cargo taken out; ``substitution``: 1.5 m of
    cargo swapped for goods 1.8 times as dense.
    """
    space = interior(sc.container, sc.y_front, sc.deck_z)
    cargo = [o for o in objs if o.kind == "cargo"]
    if how == "addition" or not cargo:
        extra = conceal(
            "high-density block" if rng.random() < 0.5 else "organic in metal", space, cargo, rng
        )
        b = extra[0].bounds()
        return objs + extra, [b[2], b[3]]
    ys = sorted({round(o.bounds()[2]) for o in cargo})
    y0 = float(ys[int(rng.integers(len(ys)))])
    y1 = y0 + 1500.0
    sel = [o for o in cargo if y0 <= o.bounds()[2] < y1]
    rest = [o for o in objs if o not in sel]
    if how == "removal":
        return rest, [y0, y1]
    swapped = []
    for o in sel:
        if isinstance(o, Box):
            x0, x1, ya, yb, z0, z1 = o.bounds()
            swapped.append(
                Box(o.material, o.density * 1.8, o.label, "cargo", False, x0, x1, ya, yb, z0, z1)
            )
        else:
            swapped.append(o)
    return rest + swapped, [y0, y1]


def shift(objs: list[SceneObject], dy: float) -> list[SceneObject]:
    """The same objects ``dy`` mm further along the road (outlines and profiles follow)."""
    return shifted(objs, dy)


@dataclass(frozen=True, slots=True)
class ExitScan:
    """How an exit scanner sees the entry scanner's containers.

    ``tamper``: the kind of change (one of :data:`TAMPER_KINDS`) made to the
    cargo of the scans in ``tampered`` (None: every scan); ``broken_seal``:
    scan ids whose seal was broken and replaced (the gate reads another seal
    number); ``belt_speed``: the exit truck's speed relative to the entry's
    (the same number of lines covers that much more road, the container starts
    further along).
    """

    tamper: str | None = None
    tampered: frozenset[int] | None = None
    broken_seal: frozenset[int] = frozenset()
    belt_speed: float = 1.0

    def tampers(self, scan_id: int) -> str | None:
        """The change made to scan ``scan_id``'s cargo, if any."""
        if self.tamper is None:
            return None
        return self.tamper if self.tampered is None or scan_id in self.tampered else None

    def exit_scene(
        self, sc: Scenario, scan_id: int, rng: np.random.Generator
    ) -> tuple[list[SceneObject], float, dict[str, Any]]:
        """Objects and road length of scan ``scan_id`` at the exit, and what was changed."""
        objs = list(sc.objects)
        how = self.tampers(scan_id)
        changed: list[float] = []
        if how is not None:
            objs, changed = tamper(objs, sc, how, rng)
        length = sc.length_mm * self.belt_speed
        dy = length - sc.length_mm  # the margin behind the doors stays, the road ahead changes
        if dy:
            objs = shift(objs, dy)
            changed = [y + dy for y in changed]
        truth = {
            "att": "exit",
            "tamper": how,
            "changed_y_mm": [round(y, 1) for y in changed],
            "belt_speed": self.belt_speed,
            "seal_broken": scan_id in self.broken_seal,
        }
        return objs, length, truth


def replaced_seal(seal: str, scan_id: int) -> str:
    """The number of the seal put on after ``seal`` was broken (never the same number)."""
    digits = "".join(ch for ch in seal if ch.isdigit()) or "0"
    n = int(digits) + 1 + scan_id % 1000
    return f"SL{n if n < 10_000_000 else n - 9_000_000}"


__all__ = ["BELT_SPEED_RANGE", "TAMPER_KINDS", "ExitScan", "replaced_seal", "shift", "tamper"]
