"""ATT transit comparison (R12): Scan B (exit) registered onto Scan A (entry), four SOP factors.

Registration: both scans' containers are located (front wall and doors), so B
is shifted and scaled along travel onto A (a different belt speed or scanner
changes the line pitch and the start).  Then the SOP's four factors, each with
its figure: volumetric consistency (filled fraction), density discrepancy
(integrated attenuation), structural integrity (the walls, floor and ends) and
object substitution/addition (regions that changed, with their coordinates).
Any factor over its limit declares the container a Contravening Unit and puts
it on HOLD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from ._image import OCCUPIED_A, Frame, bin_image, binning, check_pair, locate_container
from ._model import AtrInputError

F32 = npt.NDArray[np.float32]

#: Limits of the four factors (tuned on clean pairs of the tuning seeds).
LIMITS = {"volume": 0.05, "density": 0.01, "structure": 5.0, "objects": 0.02}


@dataclass(slots=True)
class AttResult:
    """Comparison of Scan A and Scan B: registration, factors, decision and differences."""

    hold: bool
    status: str
    registration: dict[str, float]
    factors: dict[str, dict[str, Any]]
    differences: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``nii atr compare`` prints)."""
        return {
            "status": self.status,
            "hold": self.hold,
            "registration": self.registration,
            "factors": self.factors,
            "differences": self.differences,
        }


def _prepare(
    a_hi: npt.ArrayLike, a_lo: npt.ArrayLike, line_mm: float, ch_mm: float
) -> tuple[F32, Frame]:
    hi, _ = check_pair(a_hi, a_lo)
    fl, fc = binning(line_mm, ch_mm)
    b = bin_image(hi, fl, fc)
    fr = locate_container(b, fl, fc, line_mm, ch_mm)
    return b, fr


def compare(
    a: tuple[npt.ArrayLike, npt.ArrayLike, float, float],
    b: tuple[npt.ArrayLike, npt.ArrayLike, float, float],
) -> AttResult:
    """Compare Scan A and Scan B, each (a_hi, a_lo, line_mm, channel_mm) of attenuations."""
    img_a, fa = _prepare(*a)
    img_b, fb = _prepare(*b)
    if not (fa.found and fb.found):
        raise AtrInputError(
            "the container's front wall and doors are not both visible in "
            + ("scan A" if not fa.found else "scan B"),
            fix="compare full scans of the container, not crops of its cargo",
        )
    if abs(fa.px_mm[1] - fb.px_mm[1]) > 0.2 * fa.px_mm[1]:
        raise AtrInputError(
            "the two scans have different channel pitches",
            fix="compare scans of one scanner model, or resample B to A's channel pitch first",
        )
    ia = img_a[fa.front : fa.back + 1, fa.top : fa.floor + 1]
    rows = ia.shape[1]
    ib = img_b[fb.front : fb.back + 1, fb.top : fb.top + rows]
    if ib.shape[1] < rows:
        ib = np.pad(ib, ((0, 0), (0, rows - ib.shape[1])), mode="edge")
    scale = ia.shape[0] / max(1, ib.shape[0])
    ib = np.asarray(cv2.resize(ib, (rows, ia.shape[0]), interpolation=cv2.INTER_AREA), np.float32)
    bl, bc = fa.px_mm
    reg = {
        "shift_mm": round((fa.front * bl) - (fb.front * fb.px_mm[0]), 1),
        "scale": round(scale * fa.px_mm[0] / fb.px_mm[0], 4),
        "length_a_mm": round(fa.length_mm()),
        "length_b_mm": round(fb.length_mm()),
    }
    # the interior for cargo factors, the rim (ends, floor band) for structure
    e = max(2, round(150.0 / bl))
    fband = max(2, round(250.0 / bc))
    ca, cb = ia[e:-e, : rows - fband], ib[e:-e, : rows - fband]
    occ_a, occ_b = ca > OCCUPIED_A, cb > OCCUPIED_A
    fill_a, fill_b = float(occ_a.mean()), float(occ_b.mean())
    vol = abs(fill_b - fill_a) / max(fill_a, 0.05)
    sum_a, sum_b = float(ca.sum()), float(cb.sum())
    dens = abs(sum_b - sum_a) / max(sum_a, 1.0)
    rim_a = np.concatenate([ia[:e].ravel(), ia[-e:].ravel(), ia[:, rows - fband :].ravel()])
    rim_b = np.concatenate([ib[:e].ravel(), ib[-e:].ravel(), ib[:, rows - fband :].ravel()])
    struct = float(np.percentile(np.abs(rim_b - rim_a), 99))
    sa = cv2.blur(ca, (5, 5))
    sb = cv2.blur(cb, (5, 5))
    diff = sb - sa
    thr = 0.6 + 0.12 * np.maximum(sa, sb)
    mask = np.asarray(
        cv2.morphologyEx(
            (np.abs(diff) > thr).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
        )
    )
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    diffs: list[dict[str, Any]] = []
    changed = 0.0
    min_area = 40000.0 / (bl * bc)
    for k in range(1, n):
        cx, cy, cw, ch, area = (int(v) for v in stats[k])
        if area < min_area:
            continue
        sel = lab[cy : cy + ch, cx : cx + cw] == k
        d = float(diff[cy : cy + ch, cx : cx + cw][sel].mean())
        changed += area
        l0 = fa.front + e + cy
        r0 = fa.top + cx
        mm = fa.to_mm(l0, r0, l0 + ch, r0 + cw)
        diffs.append(
            {
                "kind": "addition" if d > 0 else "removal",
                "bbox_mm": [round(v) for v in mm],
                "bbox_px": fa.to_px(l0, r0, l0 + ch, r0 + cw),
                "attenuation_change": round(d, 2),
                "area_m2": round(area * bl * bc / 1e6, 3),
            }
        )
    obj = changed / max(1.0, float(occ_a.sum() + occ_b.sum()) / 2.0)
    figures = {"volume": vol, "density": dens, "structure": struct, "objects": obj}
    what = {
        "volume": f"filled fraction A {fill_a:.3f}, B {fill_b:.3f}",
        "density": f"integrated attenuation changed by {100 * dens:.1f} %",
        "structure": f"walls, floor and ends differ by {struct:.2f} (99th percentile of |ΔA|)",
        "objects": f"{len(diffs)} region(s) changed, {100 * obj:.1f} % of the load",
    }
    factors = {
        k: {
            "figure": round(figures[k], 4),
            "limit": LIMITS[k],
            "ok": figures[k] <= LIMITS[k],
            "what": what[k],
        }
        for k in LIMITS
    }
    hold = any(not f["ok"] for f in factors.values())
    diffs.sort(key=lambda d: -d["area_m2"])
    return AttResult(
        hold=hold,
        status="Contravening Unit: HOLD" if hold else "consistent: release",
        registration=reg,
        factors=factors,
        differences=diffs,
    )
