# ruff: noqa: RUF002
"""The commissioning scan: step wedges of known materials seen by one scanner model.

When a scanner is installed the site scans a test object of step wedges, so
that software can be calibrated to that scanner instead of to a model of it.
Here the test object is five wedges, each a row of blocks 250 mm long along
travel and 600 mm tall, centred on the vehicle's centre plane at the height of
the scanner's focal spot, with thicknesses along the beam from zero (an air
step) to nearly opaque: polyethylene, aluminium, copper, steel and lead.

Output, in the layout of the commissioning scans kept with the project's
shared independent samples (their README):

- ``high.tiff``, ``low.tiff``: uint16, flat-field calibrated transmission ×
  65535, rows = detector channels with the top at row 0 (the band of channels
  around the wedges, 150 mm of air above and below), columns = lines;
- ``wedges.json``: ``scanner``, ``pixel_mm`` [along travel, height],
  ``materials`` {name: {``density_g_cm3``, ``weight_fractions_by_Z``}},
  ``steps`` [{``material``, ``thickness_mm``, ``areal_density_g_cm2``,
  ``bbox_px`` [col0, row0, col1, row1]}].  A box is end-exclusive (numpy
  slices ``[row0:row1, col0:col1]``) and lies at least two pixels inside its
  block, clear of blur, afterglow and the fan's oblique edges, so reading it
  as inclusive stays inside too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ._attenuation import Material
from ._export import U16, ensure_folder, flat_field, to_u16, write_images
from ._geometry import Box, Fan, SceneObject
from ._materials import ALUMINIUM, COPPER, LEAD, POLYETHYLENE, STEEL
from ._models import ScannerModel, scanner_model
from ._source import PhysicsSource

#: The wedges: material and step thicknesses along the beam, mm (0 = an air step).
WEDGES: tuple[tuple[Material, tuple[float, ...]], ...] = (
    (POLYETHYLENE, (0, 50, 100, 200, 400, 600, 800, 1000, 1200)),
    (ALUMINIUM, (0, 20, 50, 100, 200, 300, 400, 500, 600)),
    (COPPER, (0, 10, 25, 50, 100, 150, 200, 250)),
    (STEEL, (0, 10, 25, 50, 100, 150, 200, 250, 300, 350, 400)),
    (LEAD, (0, 5, 10, 20, 40, 60, 80, 100, 150, 200)),
)
STEP_LENGTH_MM = 250.0
STEP_GAP_MM = 100.0
WEDGE_GAP_MM = 500.0
STEP_HEIGHT_MM = 600.0
LEAD_IN_MM = 1000.0
BAND_MARGIN_MM = 150.0
#: Pixels kept clear of each block's edges in ``bbox_px``.
INSET_PX = 2


def _layout(z0: float) -> tuple[list[SceneObject], list[dict[str, Any]], float]:
    """Blocks, their steps (material, thickness, y range) and the scene's length."""
    objs: list[SceneObject] = []
    steps: list[dict[str, Any]] = []
    y = LEAD_IN_MM
    z1 = z0 + STEP_HEIGHT_MM
    for mat, thicknesses in WEDGES:
        for t in thicknesses:
            if t > 0:
                objs.append(
                    Box(mat, mat.density, f"{mat.name} {t:g} mm", "cargo", True,
                        -t / 2, t / 2, y, y + STEP_LENGTH_MM, z0, z1)
                )  # fmt: skip
            steps.append({"material": mat, "thickness_mm": float(t), "y": (y, y + STEP_LENGTH_MM)})
            y += STEP_LENGTH_MM + STEP_GAP_MM
        y += WEDGE_GAP_MM - STEP_GAP_MM
    return objs, steps, y + LEAD_IN_MM


def _rows(fan: Fan, t: float, z0: float, z1: float) -> tuple[int, int]:
    """Channels [c0, c1) whose whole pixel sees the block of thickness ``t`` (any ray in it)."""
    half = max(t, 1.0) / 2
    top = max(fan.channel_of(x, z1) for x in (-half, half))
    bottom = min(fan.channel_of(x, z0) for x in (-half, half))
    return math.ceil(top + 0.5), math.floor(bottom - 0.5) + 1


def _composition(mat: Material) -> dict[str, Any]:
    return {
        "density_g_cm3": mat.density,
        "weight_fractions_by_Z": {
            str(z): round(w, 5) for z, w in sorted(mat.fractions.items(), key=lambda kv: -kv[1])
        },
    }


def wedge_scan(
    model: str | ScannerModel | None = None, seed: int = 0, *, detector_seed: int = 1
) -> tuple[U16, U16, dict[str, Any]]:
    """Simulate ``model``'s commissioning scan of the step wedges.

    Args:
        model: the scanner model (name or model; None: the default model).
        seed: the noise seed.
        detector_seed: fixes the scanner's detector array (the unit's bad
            channels, gains, offsets), as in :meth:`PhysicsSource.for_model`.

    Returns:
        ``(high, low, wedges)``: two uint16 images (channels of the band, lines)
        and the ``wedges.json`` document.

    Raises:
        ConfigError: no model has that name.
    """
    m = scanner_model(model)
    z0 = m.source_height_mm - STEP_HEIGHT_MM / 2
    z1 = z0 + STEP_HEIGHT_MM
    objs, steps, length = _layout(z0)
    pitch = m.line_pitch_mm
    lines = math.ceil(length / pitch)
    src = PhysicsSource.for_model(m, detector_seed=detector_seed)
    scan = src.simulate_objects(
        objs, lines * pitch, m.channels, lines, np.random.default_rng([seed, 0x3ED6E])
    )
    t_hi, t_lo = flat_field(scan, src.channel_state(m.channels).status)
    fan = m.fan()
    band0 = max(0, math.floor(fan.channel_of(0.0, z1 + BAND_MARGIN_MM)))
    band1 = min(m.channels, math.ceil(fan.channel_of(0.0, z0 - BAND_MARGIN_MM)) + 1)
    hi = to_u16(t_hi[:, band0:band1])
    lo = to_u16(t_lo[:, band0:band1])
    out_steps = []
    for s in steps:
        r0, r1 = _rows(fan, s["thickness_mm"], z0, z1)
        y0, y1 = s["y"]
        c0, c1 = math.ceil(y0 / pitch), math.floor(y1 / pitch)
        mat: Material = s["material"]
        out_steps.append(
            {
                "material": mat.name,
                "thickness_mm": s["thickness_mm"],
                "areal_density_g_cm2": round(mat.density * s["thickness_mm"] / 10.0, 4),
                "bbox_px": [
                    c0 + INSET_PX,
                    r0 - band0 + INSET_PX,
                    c1 - INSET_PX,
                    r1 - band0 - INSET_PX,
                ],
            }
        )
    doc: dict[str, Any] = {
        "scanner": m.name,
        "pixel_mm": [pitch, m.channel_pitch_mm],
        "materials": {mat.name: _composition(mat) for mat, _ in WEDGES},
        "steps": out_steps,
    }
    return hi, lo, doc


def write_wedge_scan(
    out_dir: str | Path,
    model: str | ScannerModel | None = None,
    seed: int = 0,
    *,
    detector_seed: int = 1,
) -> Path:
    """Simulate the commissioning scan and write ``high.tiff``, ``low.tiff``, ``wedges.json``.

    Returns:
        ``out_dir`` as a path.

    Raises:
        ConfigError: no model has that name, or ``out_dir`` cannot be written.
    """
    folder = Path(out_dir)
    m = scanner_model(model)
    ensure_folder(folder)
    hi, lo, doc = wedge_scan(m, seed, detector_seed=detector_seed)
    write_images(folder, hi, lo, doc, "wedges.json")
    return folder
