"""``nii atr calibrate``: a scanner's calibration from its commissioning step-wedge scan."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import NiiError
from core.scanner_cal import (
    CalibrationError,
    ScannerCalibration,
    check_scanner_name,
    fit,
    load_wedges,
)


def _cannot_write(out: Path, exc: OSError) -> CalibrationError:
    return CalibrationError(
        f"{out}: cannot write: {exc.strerror or exc}",
        fix="give --out a path in an existing folder, on a file system you can write to",
    )


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold ``out``'s write lock: ``flock`` on the sibling ``.NAME.lock``, removed after.

    Raises:
        CalibrationError: another run holds the lock, or the folder cannot be written
            (the message names ``out``, not the lock file).
    """
    lock = out.with_name(f".{out.name}.lock")
    busy = CalibrationError(
        f"{out}: another 'nii atr calibrate' is writing it now",
        fix="wait for it to finish and check what it wrote; one calibration per --out at a time",
    )
    try:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise _cannot_write(out, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise busy from exc
        # a run that just finished removes the lock file: ours must still be the one there
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise busy
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)


def _existing(out: Path) -> str:
    """What ``out`` holds now, in words (for the refusal to overwrite it)."""
    try:
        doc = json.loads(out.read_text())
        return f"the calibration of scanner {str(doc['scanner'])[:64]!r}"
    except (OSError, ValueError, TypeError, KeyError):
        return "a file that is not a calibration"


def write_calibration(cal: ScannerCalibration, out: Path, force: bool = False) -> str | None:
    """Write ``cal`` to ``out`` atomically, under ``out``'s lock (see :func:`_exclusive`).

    Args:
        cal: the calibration.
        out: the file to write.
        force: replace an existing ``out``.

    Returns:
        What was replaced, in words, or None when ``out`` did not exist.

    Raises:
        CalibrationError: ``out`` exists and ``force`` is false; another run is writing
            ``out``; the folder does not exist or cannot be written.
    """
    tmp = out.with_name(f".{out.name}.tmp")
    with _exclusive(out):
        replaced = _existing(out) if out.exists() else None
        if replaced is not None and not force:
            raise CalibrationError(
                f"{out} already exists ({replaced})",
                fix="give another --out, or --force to replace it (an edge configuration "
                "may name this file)",
            )
        try:
            tmp.write_text(json.dumps(cal.to_json(), indent=1) + "\n")
            os.replace(tmp, out)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise _cannot_write(out, exc) from exc
    return replaced


def summary(cal: ScannerCalibration) -> dict[str, Any]:
    """What an engineer checks after commissioning: materials, range, fit error."""
    out: dict[str, Any] = {
        "scanner": cal.scanner,
        "materials": {c.name: {"z_eff": round(c.z, 2), "steps": len(c.a_hi)} for c in cal.curves},
        "usable_a_high": round(cal.a_max, 2),
        "areal_density_error": f"{100 * cal.fit_error.get('areal_density_rel_rms', 0.0):.1f} %",
        "zeff_error": f"{100 * cal.fit_error.get('zeff_log_rms', 0.0):.0f} %",
    }
    if cal.fit_error.get("zeff_ambiguous_steps"):
        # the energies cannot tell these thin steps' material from another's: a fact of
        # the scanner's spectra that an engineer should know, not a failed fit
        out["zeff_ambiguous_below_a_high"] = round(cal.fit_error["zeff_ambiguous_below_a"], 2)
        out["zeff_ambiguous_steps"] = int(cal.fit_error["zeff_ambiguous_steps"])
    return out


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit and write one scanner's calibration; print its summary as JSON."""
    out = Path(args.out)
    if out.is_dir():
        raise NiiError(f"{out} is a folder", fix="give --out a file name, e.g. --out scanner.json")
    if out.exists() and not args.force:  # fail before the fit; checked again under the lock
        raise CalibrationError(
            f"{out} already exists ({_existing(out)})",
            fix="give another --out, or --force to replace it (an edge configuration may "
            "name this file)",
        )
    name = None
    if args.scanner_name is not None:
        name = check_scanner_name(args.scanner_name, "--scanner-name")
    scan = load_wedges(args.wedges)
    if name is not None:
        scan = dataclasses.replace(scan, scanner=name)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    cal = fit(scan, created=now)
    replaced = write_calibration(cal, out, force=args.force)
    doc: dict[str, Any] = {**summary(cal), "written": str(out)}
    if replaced is not None:
        doc["replaced"] = replaced
    print(json.dumps(doc, indent=2, ensure_ascii=False))
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
    c.add_argument(
        "--scanner-name",
        help="name to record instead of the one in wedges.json (1-64 printable characters)",
    )
    c.add_argument(
        "--force", action="store_true", help="replace --out if it exists (refused otherwise)"
    )
    c.set_defaults(func=cmd_calibrate)
