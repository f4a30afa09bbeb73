"""The image-quality test object (R4), in the spirit of ANSI N42.46 / IEC 62523.

Inside an empty 20 ft container, behind both side walls:

- a steel step wedge, steps 200–460 mm thick along the beam, each 300 mm long
  and 600 mm tall (penetration);
- line-pair groups: four 20 mm steel bars per group, bar width = gap width
  w = 2–10 mm, stacked vertically (resolution across detector channels);
- a 100 mm steel block with 1–6 mm steel plates on it (contrast sensitivity).

The layout, in image pixels, goes with the scan as ``truth["qa_layout"]`` so
the QA measurement needs no knowledge of the geometry.
"""
# ruff: noqa: RUF002

from __future__ import annotations

from typing import Any

import numpy as np

from ._detector import DetectorModel, SourceModel
from ._geometry import Box, Fan, Raster, SceneObject, pixel_box
from ._materials import STEEL
from ._scene import CONTAINERS, container_structure
from ._source import PhysicsScan, PhysicsSource

STEPS_MM = (200, 240, 280, 300, 320, 340, 360, 380, 400, 420, 440, 460)
BAR_WIDTHS_MM = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
PLATES_MM = (1.0, 2.0, 3.0, 4.0, 6.0)
CONTRAST_BASE_MM = 100.0
LENGTH_MM = 13000.0
Y_FRONT = 300.0


def _steel(label: str, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> Box:
    return Box(STEEL, STEEL.density, label, "cargo", True, x0, x1, y0, y1, z0, z1)


def phantom_objects() -> tuple[list[SceneObject], dict[str, Any]]:
    """Scene objects of the test object and its layout in mm."""
    objs = container_structure(CONTAINERS["40GP"], Y_FRONT)
    layout: dict[str, Any] = {"steps": [], "bars": [], "plates": []}
    y = Y_FRONT + 600.0
    for t in STEPS_MM:
        objs.append(_steel(f"step {t}", -t / 2, t / 2, y, y + 300, 1800, 2400))
        layout["steps"].append({"thickness_mm": t, "y": (y, y + 300), "z": (1800, 2400)})
        y += 300
    y += 400
    for w in BAR_WIDTHS_MM:
        z = 1900.0
        bars = []
        for _ in range(4):
            objs.append(_steel(f"bar {w}", -10, 10, y, y + 250, z, z + w))
            bars.append((z, z + w))
            z += 2 * w
        layout["bars"].append({"width_mm": w, "y": (y, y + 250), "bars_z": bars})
        y += 350
    y += 300
    base_y = (y, y + 300 * len(PLATES_MM) + 300)
    objs.append(
        _steel(
            "contrast base",
            -CONTRAST_BASE_MM / 2,
            CONTRAST_BASE_MM / 2,
            base_y[0],
            base_y[1],
            1800,
            2400,
        )
    )
    for k, p in enumerate(PLATES_MM):
        y0 = base_y[0] + 300 * (k + 1)
        x0 = CONTRAST_BASE_MM / 2
        objs.append(_steel(f"plate {p}", x0, x0 + p, y0, y0 + 200, 2000, 2200))
        layout["plates"].append({"thickness_mm": p, "y": (y0, y0 + 200), "z": (2000, 2200)})
    layout["contrast_base"] = {
        "thickness_mm": CONTRAST_BASE_MM,
        "y": (base_y[0], base_y[0] + 250),
        "z": (2000, 2200),
    }
    return objs, layout


def _px(
    fan: Fan, raster: Raster, y: tuple[float, float], z: tuple[float, float], x: float = 0.0
) -> dict[str, int]:
    box = Box(STEEL, 1.0, "", "cargo", False, x, x, y[0], y[1], z[0], z[1])
    l0, l1, c0, c1 = pixel_box(box, raster)
    return {"line0": l0, "line1": l1, "channel0": c0, "channel1": c1}


def qa_phantom_scan(
    source: SourceModel | None = None,
    detector: DetectorModel | None = None,
    *,
    seed: int = 0,
    channels: int = 1536,
    line_pitch_mm: float = 5.0,
    detector_seed: int = 1,
) -> PhysicsScan:
    """Simulate a scan of the test object; ``truth["qa_layout"]`` holds its ROIs in pixels."""
    src = PhysicsSource(
        source or SourceModel(), detector or DetectorModel(), detector_seed=detector_seed
    )
    objs, layout = phantom_objects()
    lines = int(LENGTH_MM / line_pitch_mm)
    scan = src.simulate_objects(
        objs, LENGTH_MM, channels, lines, np.random.default_rng(seed), oversample=4
    )
    fan = Fan(channels)
    ys = np.asarray((np.arange(lines) + 0.5) * line_pitch_mm, dtype=np.float64)
    raster = Raster(fan, ys, line_pitch_mm, 1)
    px: dict[str, Any] = {"steps": [], "bars": [], "plates": []}
    for s in layout["steps"]:
        px["steps"].append({"thickness_mm": s["thickness_mm"], **_px(fan, raster, s["y"], s["z"])})
    for g in layout["bars"]:
        roi = _px(fan, raster, g["y"], (g["bars_z"][0][0], g["bars_z"][-1][1]))
        bar_ch = [fan.channel_of(0.0, (a + b) / 2) for a, b in g["bars_z"]]
        gap_ch = [fan.channel_of(0.0, b + g["width_mm"] / 2) for _, b in g["bars_z"][:-1]]
        px["bars"].append(
            {"width_mm": g["width_mm"], **roi, "bar_channels": bar_ch, "gap_channels": gap_ch}
        )
    for p in layout["plates"]:
        px["plates"].append({"thickness_mm": p["thickness_mm"], **_px(fan, raster, p["y"], p["z"])})
    cb = layout["contrast_base"]
    px["contrast_base"] = {"thickness_mm": cb["thickness_mm"], **_px(fan, raster, cb["y"], cb["z"])}
    px["background"] = _px(fan, raster, (Y_FRONT + 200, Y_FRONT + 500), (1800, 2400))
    scan.truth["qa_layout"] = px
    scan.truth["objects"] = []
    return scan


def qa_simulation(
    source_output: float = 1.0, detector_noise_adu: float | None = None, seed: int = 0
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(dark, air, image, layout) of the high-energy channel, the shape ``nii qa`` expects."""
    det = DetectorModel()
    if detector_noise_adu is not None:
        det = DetectorModel(electronic_noise_adu=detector_noise_adu)
    scan = qa_phantom_scan(SourceModel(output=source_output), det, seed=seed)
    return scan.dark_hi, scan.air_hi, scan.img_hi, scan.truth["qa_layout"]
