"""``nii atr calibrate``: a scanner's calibration from its commissioning step-wedge scan."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from core.errors import NiiError
from core.scanner_cal import CalibrationError, ScannerCalibration, fit, load_wedges


def write_calibration(cal: ScannerCalibration, out: Path) -> None:
    """Write ``cal`` to ``out`` atomically (a reader never sees half a file).

    Raises:
        CalibrationError: the folder does not exist or cannot be written.
    """
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(json.dumps(cal.to_json(), indent=1) + "\n")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CalibrationError(
            f"{out}: cannot write: {exc.strerror or exc}",
            fix="give --out a path in an existing folder you can write to",
        ) from exc


def summary(cal: ScannerCalibration) -> dict[str, Any]:
    """What an engineer checks after commissioning: materials, range, fit error."""
    return {
        "scanner": cal.scanner,
        "materials": {c.name: {"z_eff": round(c.z, 2), "steps": len(c.a_hi)} for c in cal.curves},
        "usable_a_high": round(cal.a_max, 2),
        "areal_density_error": f"{100 * cal.fit_error.get('areal_density_rel_rms', 0.0):.1f} %",
        "zeff_error": f"{100 * cal.fit_error.get('zeff_log_rms', 0.0):.0f} %",
    }


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit and write one scanner's calibration; print its summary as JSON."""
    out = Path(args.out)
    if out.is_dir():
        raise NiiError(f"{out} is a folder", fix="give --out a file name, e.g. --out scanner.json")
    scan = load_wedges(args.wedges)
    if args.scanner_name:
        scan = dataclasses.replace(scan, scanner=args.scanner_name)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    cal = fit(scan, created=now)
    write_calibration(cal, out)
    print(json.dumps({**summary(cal), "written": str(out)}, indent=2, ensure_ascii=False))
    return 0


def add_parser(sub: Any) -> None:
    """Add ``calibrate`` to ``nii atr``'s sub-commands."""
    c = sub.add_parser(
        "calibrate",
        help="fit a scanner's calibration from its commissioning step-wedge scan",
        description="Reads DIR/wedges.json, DIR/high.tiff and DIR/low.tiff (the test object's "
        "steps: material, thickness, areal density, box) and writes the scanner's map from "
        "(A_high, A_low) to areal density and effective Z, for 'nii atr analyze --scanner'.",
    )
    c.add_argument("--wedges", required=True, metavar="DIR", help="commissioning scan folder")
    c.add_argument("--out", required=True, metavar="FILE", help="calibration to write (JSON)")
    c.add_argument("--scanner-name", help="name to record instead of the one in wedges.json")
    c.set_defaults(func=cmd_calibrate)
