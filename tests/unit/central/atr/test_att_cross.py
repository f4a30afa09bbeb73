"""ATT across scanner models: untouched pairs released, tampered pairs held (seeds 67-69).

Scan A and Scan B of one container are simulated on two different scanner models
(another fan, energy, detector and speed) by ``export_case``; the scans are compared
as exported, their levels matched by ``level_map``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from central.atr._att import compare
from central.atr.cli import _scan_dir
from firmware_sim.physics._export import export_case


def _pair(tmp: Path, a: str, b: str, seed: int, tamper: str | None) -> tuple[Path, Path]:
    da, db = export_case(a, seed, 1, tmp, "att", pair_model=b, att_tamper=tamper)
    return da, db


def _load(d: Path) -> tuple[Any, Any, float, float]:
    px = json.loads((d / "case.json").read_text())["pixel_mm"]
    return _scan_dir(str(d), px)


@pytest.mark.parametrize(
    ("a", "b", "seed", "tamper"),
    [
        ("l6-cdwo4-30", "l9-cdwo4-40", 67, None),
        ("l9-cdwo4-40", "l6-csi-20", 68, None),
        ("l6-cdwo4-30", "l4-cdwo4-15", 69, "removal"),
        ("l6-csi-20", "l6-cdwo4-30", 67, "addition"),
    ],
)
def test_att_across_models(tmp_path: Path, a: str, b: str, seed: int, tamper: str | None) -> None:
    da, db = _pair(tmp_path, a, b, seed, tamper)
    res = compare(_load(da), _load(db))
    assert res.registration["across_scanners"]
    assert 0.92 <= res.registration["vertical_scale"] <= 1.08
    if tamper is None:
        assert not res.hold, res.factors
        assert not res.differences
    else:
        assert res.hold and res.differences, res.factors
        truth = json.loads((db / "case.json").read_text())["truth"]["findings"][0]
        assert truth["category"] == f"att_{tamper}"
