"""One scan of the CIR as a UFF-style package (R13): raw, calibration, calibrated, metadata.

The package carries the evidence (raw lines exactly as the scanner sent them,
decrypted from their sealed blocks) and the calibrated products computed from
them with the shared calibration (``core.calibration``), so a receiving
administration can both look at the image and re-derive it. Its metadata names
the sealed blocks it came from (first and last sequence number and hash), which
links the package back to the chain that ``nii cir verify`` checks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from central._cir import Cir
from central._reader import scan_arrays
from central.products._uff import UffPackage, write_uff
from core.calibration import DetectorCalibration, MaterialCalibration
from core.errors import NiiError
from core.seal import Opener


def _iso(ns: int | None) -> str | None:
    if not ns:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns / 1e9)) + f".{ns % 10**9:09d}Z"


def scanner_calibration(start: dict[str, Any]) -> dict[str, Any] | None:
    """The package's ``scanner_calibration``: the calibration the scan was taken with.

    ``{"sha256", "document"}`` from the scan-start record's ``scanner_calibration``
    (the edge's ``[[scanner]] calibration``), the document as it came, so the receiver
    can read the images in physical units (``ScannerCalibration.from_json``); None when
    the record carries none.
    """
    from core.scanner_cal import document_sha256

    doc = start.get("scanner_calibration")
    if not isinstance(doc, dict) or not doc:
        return None
    return {"sha256": document_sha256(doc), "document": doc}


def scan_package(cir: Cir, opener: Opener, ref: int) -> UffPackage:
    """Build the package of scan ``ref``; raises :class:`NiiError` if it has no image."""
    row = cir.scan(ref)
    if row is None:
        raise NiiError(f"no scan with ref {ref} in the CIR", fix="list scans with 'nii cir scans'")
    a = scan_arrays(cir, opener, ref)
    for need in ("image_high", "dark_high", "air_high"):
        if need not in a:
            raise NiiError(
                f"scan {ref} has no {need.split('_')[0]} lines in the CIR",
                fix="pick a finished scan with calibration lines from 'nii cir scans'",
            )
    raw_hi, raw_lo = a["image_high"].T.copy(), a["image_low"].T.copy()  # (lines, channels)
    dark_hi, dark_lo = a["dark_high"].T.copy(), a["dark_low"].T.copy()
    air_hi, air_lo = a["air_high"].T.copy(), a["air_low"].T.copy()
    det = DetectorCalibration.from_lines(dark_hi, dark_lo, air_hi, air_lo)
    att_hi, att_lo = det.attenuation(raw_hi, raw_lo)
    mm = MaterialCalibration.default().classify(att_hi, att_lo, (3, 5))
    start: dict[str, Any] = json.loads(row.get("start_record") or "{}")
    blocks = list(cir.scan_blocks(ref))
    lines, channels = raw_hi.shape
    line_rate = float(start.get("line_rate") or 0) or None
    metadata: dict[str, Any] = {
        "scanner": {"id": row["scanner"]},
        "scan": {
            "id": row["scan_id"],
            "cir_ref": ref,
            "start": _iso(row.get("started_ns")),
            "end": _iso(row.get("finished_ns")),
            "status": row["status"],
            "lines": lines,
            "lines_planned": row["lines_planned"],
            "line_rate_hz": line_rate,
        },
        "source": {
            "type": "linac",
            "energies_mev": [
                e / 1000.0 for e in start.get("energies_kev", []) if isinstance(e, int | float)
            ],
            "interlaced": True,
        },
        "detector": {"channels": channels},
        "container": {"number": row.get("container") or ""},
        "calibration": {
            "method": "dark offset and air flat-field per channel from the scan's own "
            "calibration lines; bad channels interpolated; A = -ln T",
            "bad_channels": [int(i) for i in np.flatnonzero(det.bad)],
            "material_calibration": "default",
        },
        "evidence": {
            "blocks": len(blocks),
            "first_seq": blocks[0]["seq"] if blocks else None,
            "last_seq": blocks[-1]["seq"] if blocks else None,
            "first_hash": blocks[0]["hash"] if blocks else None,
            "last_hash": blocks[-1]["hash"] if blocks else None,
        },
        "annotations": [],
    }
    cal = scanner_calibration(start)
    if cal is not None:
        metadata["scanner_calibration"] = cal
    return UffPackage(
        metadata=metadata,
        arrays={
            "raw_high": raw_hi,
            "raw_low": raw_lo,
            "dark_high": dark_hi,
            "dark_low": dark_lo,
            "air_high": air_hi,
            "air_low": air_lo,
            "attenuation_high": np.ascontiguousarray(att_hi, dtype=np.float32),
            "attenuation_low": np.ascontiguousarray(att_lo, dtype=np.float32),
            "material": np.ascontiguousarray(mm.material, dtype=np.uint8),
            "zeff": np.ascontiguousarray(mm.zeff, dtype=np.float32),
        },
    )


def export_uff(cir: Cir, opener: Opener, ref: int, out: str | Path) -> Path:
    """Write scan ``ref`` as a ``.uff`` package; returns its path."""
    path = Path(out)
    write_uff(scan_package(cir, opener, ref), path)
    return path


__all__ = ["export_uff", "scan_package", "scanner_calibration"]
