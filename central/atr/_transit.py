"""Live ATT pairing (R12): each exit scan (Scan B) is linked to its entry scan (Scan A).

A scanner's ATT role, ``entry`` or ``exit``, comes with its scans: the edge
writes ``att_role`` into the scan-start record (``att_role`` per
``[[scanner]]`` in the edge configuration; else whatever the scanner's record
says).  When the live ATR worker has given a completed exit scan its verdict,
it looks in the CIR for Scan A and decides (``docs/decisions/0007-att-pairing.md``):

* **Scan A** is the latest complete ``entry`` scan of the same container number
  that reached central before Scan B.  An entry scan is Scan A of at most one
  exit scan: if the latest entry scan was already compared, Scan B is
  *unpaired* (a rescan at the exit never replaces a HOLD).
* **Seal**: a seal at the exit other than the seal at the entry, or no seal at
  the exit where there was one at the entry, is a Contravening Unit: **HOLD**,
  without looking at the images.  Without a seal recorded at the entry the
  seal is not checked (the document says so).
* **Same seal**: both scans are calibrated from their own dark and air lines,
  each with its own pixel size and its own scanner calibration (the
  ``scanner_calibration`` its scan-start record carries: mapped to the
  reference scanner's attenuation as ``nii atr compare --scanner-a/-b`` does),
  B is registered onto A and the SOP's four
  factors decide (``_att.compare``); any factor over its limit → **HOLD**, with
  the place of each difference in mm from A's front wall and floor.
* **No Scan A** (or no container number on B): *unpaired*, no HOLD, and an
  ``att_unpaired`` alarm: the officer decides, since a transit container that
  was not scanned at its entry cannot be cleared by comparison.
* Scans that cannot be compared (unreadable, container not found in one of
  them): *not compared*, an ``att_failed`` alarm with the reason.

The result is one document (``att_doc``), stored in the CIR's ``att`` table
together with its alarm in one transaction, then published as ``atr.att``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import NiiError

from ._live import MODEL, calibrated, live_calibration, missing_lines, pixel_size

if TYPE_CHECKING:
    from central._cir import Cir

    from ._store import AttStore

#: The two ATT roles a scanner can have.
ROLES = ("entry", "exit")
#: Results of an ATT document.
RELEASE, HOLD, UNPAIRED, NOT_COMPARED = "release", "hold", "unpaired", "not compared"
#: Alarm kinds the live ATT raises.
ALARM_HOLD, ALARM_UNPAIRED, ALARM_FAILED = "att_hold", "att_unpaired", "att_failed"

ReadArrays = Callable[[int], dict[str, np.ndarray]]


def _norm(value: Any) -> str:
    return str(value or "").strip().upper()


def start_record(row: dict[str, Any]) -> dict[str, Any]:
    """The scan-start record of a ``scans`` row ({} when there is none or it is not JSON)."""
    try:
        doc = json.loads(row.get("start_record") or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def att_role(row: dict[str, Any]) -> str | None:
    """The ATT role (``entry``/``exit``) the scan-start record gives the scan, or None."""
    role = str(start_record(row).get("att_role") or "").strip().lower()
    return role if role in ROLES else None


def find_scan_a(cir: Cir, row_b: dict[str, Any]) -> dict[str, Any] | None:
    """The latest complete entry scan of B's container that reached central before B."""
    container = _norm(row_b.get("container"))
    if not container:
        return None
    db = cir.sql
    found = db.value(
        "SELECT ref FROM scans WHERE status = 'complete' AND ref < ? "
        "AND upper(trim(container)) = ? "
        f"AND lower(trim({db.json_text('start_record', 'att_role')})) = 'entry' "
        "ORDER BY ref DESC LIMIT 1",
        [int(row_b["ref"]), container],
    )
    return None if found is None else cir.scan(int(found))


def _base(row_b: dict[str, Any], row_a: dict[str, Any] | None) -> dict[str, Any]:
    seal_b = _norm(start_record(row_b).get("seal")) or None
    doc: dict[str, Any] = {
        "ref_a": None,
        "ref_b": row_b["ref"],
        "container": _norm(row_b.get("container")),
        "scanner_a": None,
        "scan_id_a": None,
        "scanner_b": row_b["scanner"],
        "scan_id_b": row_b["scan_id"],
        "seal_a": None,
        "seal_b": seal_b,
        "model": MODEL,
        "finished_ns": row_b.get("finished_ns"),
        "factors": {},
        "differences": [],
        "notes": [],
    }
    if row_a is not None:
        doc.update(
            {
                "ref_a": row_a["ref"],
                "scanner_a": row_a["scanner"],
                "scan_id_a": row_a["scan_id"],
                "seal_a": _norm(start_record(row_a).get("seal")) or None,
            }
        )
    return doc


def _result(doc: dict[str, Any], result: str, status: str, reason: str) -> dict[str, Any]:
    doc.update({"result": result, "hold": result == HOLD, "status": status, "reason": reason})
    return doc


def scan_input(row: dict[str, Any], read: ReadArrays) -> tuple[tuple[Any, Any, float, float], str]:
    """One scan as its live verdict read it: ((a_hi, a_lo, line_mm, channel_mm), sha256).

    The attenuations are those of the reference scanner when the scan-start
    record carries a usable scanner calibration (its SHA-256 is returned, else
    ""): the two energies are checked as measured (``check_pair``) and then
    mapped (``to_physical``), as ``nii atr compare --scanner-a/-b`` does.

    Raises:
        NiiError: the scan cannot be read or calibrated (AtrInputError included).
    """
    from ._physical import harmonise

    arrays = read(int(row["ref"]))
    missing = missing_lines(arrays)
    if missing is not None:
        raise NiiError(f"scan ref {row['ref']}: {missing[0]}", missing[1])
    a_hi, a_lo = calibrated(arrays)
    channels, lines = arrays["image_high"].shape
    start = start_record(row)
    line_mm, channel_mm, _ = pixel_size(start, channels, lines)
    scanner, sha, _ = live_calibration(start)
    return harmonise((a_hi, a_lo, line_mm, channel_mm), scanner), sha if scanner else ""


def _over(factors: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"{k}: {f['what']} (figure {f['figure']:g}, limit {f['limit']:g})"
        for k, f in factors.items()
        if not f.get("ok")
    ]


def att_doc(
    cir: Cir, store: AttStore, row_b: dict[str, Any], read: ReadArrays
) -> dict[str, Any] | None:
    """The ATT document of scan ``row_b``; None when it is not a complete exit scan.

    ``read(ref)`` returns a scan's arrays as ``central._reader.scan_arrays``
    does (the worker passes B's arrays it already read for the verdict).
    """
    from ._att import compare

    if att_role(row_b) != "exit" or row_b.get("status") != "complete":
        return None
    t0 = time.perf_counter()
    row_a = find_scan_a(cir, row_b)
    doc = _base(row_b, row_a)
    container = doc["container"]
    if not container:
        return _result(
            doc,
            UNPAIRED,
            "unpaired: no container number",
            "Scan B has no container number, so it cannot be linked to a Scan A",
        )
    if row_a is None:
        return _result(doc, UNPAIRED, "unpaired: no Scan A", f"no Scan A for container {container}")
    earlier = store.paired(int(row_a["ref"]))
    if earlier is not None and earlier.get("ref_b") != row_b["ref"]:
        doc = _base(row_b, None)  # A stays the Scan A of the exit scan it was compared with
        doc["paired_with"] = {k: earlier.get(k) for k in ("ref_a", "ref_b", "result", "status")}
        return _result(
            doc,
            UNPAIRED,
            "unpaired: Scan A already compared",
            f"the latest Scan A of container {container} (ref {row_a['ref']}) was already "
            f"compared with Scan B ref {earlier.get('ref_b')} ({earlier.get('result')})",
        )
    seal_a, seal_b = doc["seal_a"], doc["seal_b"]
    doc["seal"] = {"a": seal_a, "b": seal_b, "checked": seal_a is not None}
    if seal_a is not None and seal_a != seal_b:
        doc["seal"]["ok"] = False
        doc["ms"] = round((time.perf_counter() - t0) * 1000.0, 1)
        return _result(
            doc,
            HOLD,
            "Contravening Unit: HOLD",
            f"seal changed: {seal_a} at entry, {seal_b or 'none'} at exit",
        )
    doc["seal"]["ok"] = seal_a is not None
    if seal_a is None:
        doc["notes"].append("no seal recorded at the entry: the seal was not checked")
    try:
        a, cal_a = scan_input(row_a, read)
        b, cal_b = scan_input(row_b, read)
        # both energies were checked as measured: a mapped scan has no noise of its own
        res = compare(a, b, harmonised=bool(cal_a or cal_b))
    except NiiError as exc:  # AtrInputError included
        doc["error"], doc["fix"] = exc.message, exc.fix
        doc["ms"] = round((time.perf_counter() - t0) * 1000.0, 1)
        return _result(doc, NOT_COMPARED, "not compared", f"not compared: {exc.message}")
    if bool(cal_a) != bool(cal_b):
        doc["notes"].append(
            f"only scan {'A' if cal_a else 'B'} came with its scanner's calibration: the "
            "other is taken as the reference scanner's image"
        )
    d = res.to_dict()
    doc.update(
        {
            "factors": d["factors"],
            "registration": d["registration"],
            "differences": d["differences"],
            "pixel_mm_a": [round(a[2], 4), round(a[3], 4)],
            "pixel_mm_b": [round(b[2], 4), round(b[3], 4)],
            "scanner_calibration_a": cal_a or None,
            "scanner_calibration_b": cal_b or None,
            "ms": round((time.perf_counter() - t0) * 1000.0, 1),
        }
    )
    if res.hold:
        return _result(doc, HOLD, res.status, "; ".join(_over(d["factors"])))
    seal = f"seal {seal_a} intact; " if seal_a else ""
    return _result(
        doc, RELEASE, res.status, f"{seal}volume, density, structure and objects within limits"
    )


def _where(diff: dict[str, Any]) -> str:
    x0, y0, x1, y1 = diff["bbox_mm"]
    return (
        f"{diff['kind']} at {x0:.0f}-{x1:.0f} mm from the front wall, "
        f"{y0:.0f}-{y1:.0f} mm above the floor"
    )


def att_alarm(doc: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """(kind, message, details) of the alarm an ATT document raises, or None (release)."""
    container = doc.get("container") or "?"
    details: dict[str, Any] = {
        k: doc.get(k) for k in ("container", "ref_a", "ref_b", "seal_a", "seal_b", "result")
    }
    if doc["result"] == HOLD:
        over = {k: f for k, f in doc.get("factors", {}).items() if not f.get("ok")}
        details["factors_over"] = {
            k: {"figure": f["figure"], "limit": f["limit"]} for k, f in over.items()
        }
        details["differences_mm"] = [
            {"kind": x["kind"], "bbox_mm": x["bbox_mm"]} for x in doc.get("differences", [])
        ]
        where = "; ".join(_where(x) for x in doc.get("differences", [])[:3])
        msg = f"Contravening Unit {container}: HOLD: {doc['reason']}"
        if where:
            msg += f"; difference: {where}"
        return ALARM_HOLD, msg, details
    if doc["result"] == UNPAIRED:
        return ALARM_UNPAIRED, f"ATT exit scan of {container} unpaired: {doc['reason']}", details
    if doc["result"] == NOT_COMPARED:
        return ALARM_FAILED, f"ATT of {container} {doc['reason']}", details
    return None


def format_att(doc: dict[str, Any]) -> str:
    """One control-room line for an ``atr.att`` event; a HOLD stands out."""
    result = str(doc.get("result", ""))
    label = {HOLD: "*** HOLD ***", RELEASE: "release", UNPAIRED: "UNPAIRED"}.get(
        result, result.upper()
    )
    b = f"{doc.get('scanner_b')} scan {doc.get('scan_id_b')} (ref {doc.get('ref_b')})"
    if doc.get("ref_a") is not None:
        pair = (
            f"{b} against {doc.get('scanner_a')} scan {doc.get('scan_id_a')} (ref {doc['ref_a']})"
        )
    else:
        pair = b
    line = f"ATT {label} container {doc.get('container') or '?'}: {pair}: {doc.get('reason')}"
    if result == HOLD and doc.get("differences"):
        line += "; " + "; ".join(
            f"{x['kind']} at {x['bbox_mm'][0] / 1000:.1f}-{x['bbox_mm'][2] / 1000:.1f} m"
            for x in doc["differences"][:3]
        )
    tail = []
    if "ms" in doc:
        tail.append(f"{doc['ms']:.0f} ms")
    if "latency_s" in doc:
        tail.append(f"{doc['latency_s']:.2f} s after scan end")
    return line + (f" [{', '.join(tail)}]" if tail else "")


__all__ = [
    "ALARM_FAILED",
    "ALARM_HOLD",
    "ALARM_UNPAIRED",
    "HOLD",
    "NOT_COMPARED",
    "RELEASE",
    "ROLES",
    "UNPAIRED",
    "att_alarm",
    "att_doc",
    "att_role",
    "find_scan_a",
    "format_att",
    "start_record",
]
