"""The ATT view (R12): Scan A and Scan B of a transit container, side by side and as a
difference map, with the SOP's four factors.

The live ATR compares each complete exit scan (Scan B) with its entry scan (Scan A)
and keeps the result in the CIR's ``att`` table (``central.atr._transit``). The
view shows that document as it was decided; the difference map is the comparison's
own (``central.atr._att.compare``: B registered onto A, its attenuation mapped onto
A's levels), computed again from the two scans as the CIR holds them, so that what
the officer sees is what the HOLD was decided on, on Scan A's pixels: each ATT
difference's ``bbox_px`` lands on the same place in Scan A and in the map.

Colours of the map: Scan A's attenuation in grey, faint; where B has more than A
(goods added) red, where it has less (goods removed) blue, full colour where the
change is over the comparison's threshold.
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from central._cir import Cir
from central._sql import Sql
from core.errors import NiiError
from core.seal import Opener

__all__ = ["att_for", "difference_png", "summary"]


def att_for(db: Sql, ref: int) -> dict[str, Any] | None:
    """The ATT document of the pair scan ``ref`` is in (as Scan B, else as Scan A)."""
    if "att" not in db.tables():
        return None
    for col in ("ref_b", "ref_a"):
        row = db.one(f"SELECT doc FROM att WHERE {col} = ? ORDER BY ref_b DESC LIMIT 1", [ref])
        if row is not None:
            doc = json.loads(row["doc"])
            return doc if isinstance(doc, dict) else None
    return None


def summary(doc: dict[str, Any] | None, ref: int, released: bool) -> dict[str, Any] | None:
    """What the viewer shows of scan ``ref``'s ATT: which side it is, the result, and
    whether a HOLD stands (``held``: on HOLD and not released by a central analyst)."""
    if doc is None:
        return None
    side = "B" if doc.get("ref_b") == ref else "A"
    return {
        "side": side,
        "ref_a": doc.get("ref_a"),
        "ref_b": doc.get("ref_b"),
        "container": doc.get("container"),
        "result": doc.get("result"),
        "status": doc.get("status"),
        "reason": doc.get("reason"),
        "hold": bool(doc.get("hold")),
        "held": bool(doc.get("hold")) and not released and side == "B",
        "released": released,
    }


def difference_png(cir: Cir, opener: Opener, doc: dict[str, Any]) -> bytes:
    """The difference map of an ATT pair as PNG, RGB, (Scan A's channels, its lines).

    Raises:
        NiiError: either scan cannot be read or compared now (the reason in words).
    """
    from central._reader import scan_arrays
    from central.atr._att import compare
    from central.atr._transit import scan_input

    ref_a, ref_b = doc.get("ref_a"), doc.get("ref_b")
    row_a = cir.scan(int(ref_a)) if ref_a is not None else None
    row_b = cir.scan(int(ref_b)) if ref_b is not None else None
    if row_a is None or row_b is None:
        raise NiiError(
            "this ATT pair has no Scan A to compare with",
            fix="see the ATT result: the exit scan was not paired",
        )

    def read(r: int) -> dict[str, np.ndarray]:
        return scan_arrays(cir, opener, r)

    a, cal_a = scan_input(row_a, read)
    b, cal_b = scan_input(row_b, read)
    res = compare(a, b, harmonised=bool(cal_a or cal_b))
    a_hi = np.asarray(a[0], np.float32)
    return _draw(a_hi, res.difference, res.binning)


def _draw(
    a_hi: npt.NDArray[np.float32],
    diff: npt.NDArray[np.float32] | None,
    binning: tuple[int, int],
) -> bytes:
    lines, channels = a_hi.shape
    full = np.zeros((lines, channels), np.float32)
    if diff is not None:
        fl, fc = binning
        up = np.repeat(np.repeat(diff, fl, axis=0), fc, axis=1)[:lines, :channels]
        full[: up.shape[0], : up.shape[1]] = up
    grey = 255.0 - np.clip(a_hi / 9.0, 0.0, 1.0) * 110.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    strength = np.clip((np.abs(full) - 0.4) / 0.6, 0.0, 1.0)[..., None]
    added = np.array([220.0, 30.0, 30.0]) * np.ones_like(rgb)
    removed = np.array([30.0, 80.0, 230.0]) * np.ones_like(rgb)
    colour = np.where((full > 0)[..., None], added, removed)
    rgb = rgb * (1.0 - strength) + colour * strength
    img = np.ascontiguousarray(np.transpose(rgb, (1, 0, 2)).astype(np.uint8))
    ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB
        raise NiiError("could not encode the difference map", fix="try again")
    return bytes(png)
