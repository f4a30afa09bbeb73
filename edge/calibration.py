"""Calibration at the edge: the shared implementation lives in :mod:`core.calibration`.

The edge calibrates what it shows locally and checks (dead channels, dark
drift); the central side uses the same code for ATR and stored products, so
both always agree on what a calibrated image is.
"""

from core.calibration import (
    A_LO_GRID,
    MATERIAL_COLOURS,
    REFERENCE_CURVES,
    CalibratedScan,
    DetectorCalibration,
    MaterialCalibration,
    MaterialClass,
    MaterialMap,
    box_smooth,
    calibrate_scan,
)

__all__ = [
    "A_LO_GRID",
    "MATERIAL_COLOURS",
    "REFERENCE_CURVES",
    "CalibratedScan",
    "DetectorCalibration",
    "MaterialCalibration",
    "MaterialClass",
    "MaterialMap",
    "box_smooth",
    "calibrate_scan",
]
