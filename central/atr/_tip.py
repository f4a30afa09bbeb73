"""Threat Image Projection (R14): stored threat signatures projected into live scans.

A signature is a transmission patch (high and low energy) of a threat scanned
alone.  Inserting it multiplies the live transmissions (T = T_scene · T_threat,
Beer–Lambert: attenuations add), so the insert looks as it would had the
threat been in the cargo.  Every insert is recorded (where, which signature)
so the analyst's answer can be scored, the verdict is marked ``tip`` and the
projected image is never written to the CIR: the CIR keeps the raw lines.
"""
# ruff: noqa: RUF002

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Signature:
    """A stored threat: attenuation patches (lines, channels) at both energies and a label."""

    name: str
    a_hi: F32
    a_lo: F32


def _block(name: str, lines: int, chans: int, a: float, ratio: float) -> Signature:
    hi = np.full((lines, chans), a, dtype=np.float32)
    return Signature(name, hi, (hi / ratio).astype(np.float32))


def _pistol(line_mm: float, ch_mm: float) -> Signature:
    nl, nc = max(4, round(200 / line_mm)), max(4, round(130 / ch_mm))
    hi = np.zeros((nl, nc), dtype=np.float32)
    hi[:, : max(1, round(35 / ch_mm))] = 0.75
    g0, g1 = round(35 / line_mm), round(75 / line_mm)
    hi[g0:g1, :] = 0.75
    return Signature("firearm", hi, (hi / 0.882).astype(np.float32))


def library(line_mm: float, ch_mm: float) -> list[Signature]:
    """The built-in signatures at the given pixel size: a firearm, a lead block, narcotics."""
    return [
        _pistol(line_mm, ch_mm),
        _block("lead block", round(200 / line_mm), round(150 / ch_mm), 8.0, 0.93),
        _block("narcotics", round(600 / line_mm), round(400 / ch_mm), 3.0, 0.862),
    ]


class TipProjector:
    """Projects a random signature into a configured fraction of scans and records it."""

    def __init__(self, rate: float = 0.02, seed: int | None = None) -> None:
        self.rate = rate
        self._rng = np.random.default_rng(seed)
        self.records: list[dict[str, Any]] = []

    def maybe_project(
        self, scan: str, a_hi: F32, a_lo: F32, line_mm: float, ch_mm: float
    ) -> tuple[F32, F32, dict[str, Any] | None]:
        """With probability ``rate`` return projected copies and the record; else the inputs."""
        if self._rng.random() >= self.rate:
            return a_hi, a_lo, None
        sigs = library(line_mm, ch_mm)
        sig = sigs[int(self._rng.integers(len(sigs)))]
        lines, chans = a_hi.shape
        nl, nc = sig.a_hi.shape
        l0 = int(self._rng.integers(lines // 4, max(lines // 4 + 1, 3 * lines // 4 - nl)))
        c0 = int(self._rng.integers(chans // 4, max(chans // 4 + 1, 3 * chans // 4 - nc)))
        hi, lo, rec = project(a_hi, a_lo, sig, l0, c0)
        rec["scan"] = scan
        self.records.append(rec)
        return hi, lo, rec


def project(
    a_hi: F32, a_lo: F32, sig: Signature, l0: int, c0: int
) -> tuple[F32, F32, dict[str, Any]]:
    """Insert ``sig`` at (line l0, channel c0): transmissions multiply, attenuations add.

    Returns new arrays (the inputs, which may be the CIR's evidence, stay as they were).
    """
    hi = np.array(a_hi, dtype=np.float32, copy=True)
    lo = np.array(a_lo, dtype=np.float32, copy=True)
    nl = min(sig.a_hi.shape[0], hi.shape[0] - l0)
    nc = min(sig.a_hi.shape[1], hi.shape[1] - c0)
    hi[l0 : l0 + nl, c0 : c0 + nc] += sig.a_hi[:nl, :nc]
    lo[l0 : l0 + nl, c0 : c0 + nc] += sig.a_lo[:nl, :nc]
    np.minimum(hi, 11.5, out=hi)
    np.minimum(lo, 11.5, out=lo)
    rec = {"tip": True, "signature": sig.name, "bbox_px": [l0, c0, l0 + nl, c0 + nc]}
    return hi, lo, rec


def mark(verdict_doc: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Mark a verdict as holding a TIP insert, and its findings on the insert as TIP."""
    doc = dict(verdict_doc)
    doc["tip"] = [record]
    x0, y0, x1, y1 = record["bbox_px"]
    for f in doc.get("findings", []):
        b = f.get("bbox_px") or []
        if len(b) == 4 and b[0] < x1 and x0 < b[2] and b[1] < y1 and y0 < b[3]:
            f["tip"] = True
    doc["tip_marked"] = True
    return doc
