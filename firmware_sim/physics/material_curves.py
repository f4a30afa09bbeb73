"""Measure the dual-energy reference curves of the edge classifier on the simulator.

A real scanner is calibrated with step wedges of known materials; this script
does the same on simulated scans (seeds 9001.., kept apart from the tests) and
prints, for each reference material, the ratio R = A_high / A_low against A_low
on a fixed grid.  The printed table is the default material calibration in
``core/calibration.py``.  Run: ``python -m firmware_sim.physics.material_curves``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._geometry import Box, SceneObject
from ._materials import LIBRARY
from ._source import PhysicsSource

#: (material name, the effective Z the classifier reports for it)
REFERENCES: tuple[tuple[str, float], ...] = (
    ("polyethylene", 5.5),
    ("water", 7.4),
    ("aluminium", 13.0),
    ("steel", 26.0),
    ("tin", 50.0),
    ("lead", 82.0),
)
A_LO_GRID = np.round(np.linspace(0.2, 10.0, 50), 3)
STEPS = 48
SEED = 9001


def wedge_curve(
    name: str, src: PhysicsSource, seed: int, channels: int = 256
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(A_low, A_high) measured on a step wedge of ``name``, one value per step."""
    mat = LIBRARY[name]
    a_target_max = 11.0
    # areal density that gives A_low ≈ 11, from a thin-step estimate
    mu_guess = {"polyethylene": 0.045, "water": 0.045}.get(name, 0.04)
    top = a_target_max / mu_guess
    areal = np.geomspace(2.0, top, STEPS)
    step_len = 100.0
    objs: list[SceneObject] = []
    for k, a in enumerate(areal):
        thick = a / mat.density * 10.0  # mm
        objs.append(
            Box(
                mat,
                mat.density,
                name,
                "cargo",
                False,
                -thick / 2,
                thick / 2,
                500 + k * step_len,
                500 + (k + 1) * step_len,
                1500.0,
                3500.0,
            )
        )
    length = 1000 + STEPS * step_len
    lines = int(length / 5)
    scan = src.simulate_objects(objs, length, channels, lines, np.random.default_rng(seed))
    good = np.ones(channels, dtype=bool)
    good[scan.truth["dead_channels"] + scan.truth["hot_channels"]] = False
    out = []
    for img, dark, air in (
        (scan.img_lo, scan.dark_lo, scan.air_lo),
        (scan.img_hi, scan.dark_hi, scan.air_hi),
    ):
        d = dark.mean(axis=0)
        f = np.maximum(air.mean(axis=0) - d, 1.0)
        vals = []
        for k in range(STEPS):
            l0 = int((500 + k * step_len + 25) / 5)
            l1 = int((500 + (k + 1) * step_len - 25) / 5)
            rows = (img[l0:l1, :].astype(np.float64) - d) / f
            sel = rows[:, channels // 3 : 2 * channels // 3][
                :, good[channels // 3 : 2 * channels // 3]
            ]
            vals.append(-np.log(max(float(sel.mean()), 1e-9)))
        out.append(np.asarray(vals))
    return out[0], out[1]


def main() -> None:
    """Print the reference curves as a Python literal."""
    src = PhysicsSource(detector_seed=SEED)
    print("A_LO_GRID =", [float(v) for v in A_LO_GRID])
    print("REFERENCE_CURVES = {")
    for i, (name, z) in enumerate(REFERENCES):
        a_lo, a_hi = wedge_curve(name, src, SEED + i)
        r = np.interp(A_LO_GRID, a_lo, a_hi / a_lo)
        print(f"    {z}: {[round(float(v), 5) for v in r]},  # {name}")
    print("}")


if __name__ == "__main__":
    main()
