"""False wall and double floor detectors on small seeded cases.

Seeds 50 to 52 (tuning used seeds 100 to 102, the benchmark seed 7000; see docs/atr.md).
"""

from __future__ import annotations

import pytest

from central.atr import Category, Level, analyze
from tests.unit.test_atr import _localised, _scan


@pytest.mark.parametrize(
    ("kind", "commodity"), [("false wall", "textiles"), ("double floor", "ceramic tiles")]
)
def test_structural_concealment_is_red_and_located(kind: str, commodity: str) -> None:
    hi, lo, truth, gd = _scan(51, concealment=kind, commodity=commodity, lie=False)
    v = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd)
    assert v.verdict == Level.RED
    found = [f for f in v.findings if f.category == kind]
    assert found and found[0].level == Level.RED and found[0].reason
    assert _localised(v, truth)


def test_clean_load_has_no_structural_finding() -> None:
    hi, lo, truth, gd = _scan(52, commodity="textiles", lie=False)
    assert truth["concealment"] is None
    v = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd)
    assert not [f for f in v.findings if f.category in (Category.FALSE_WALL, Category.DOUBLE_FLOOR)]


def test_a_false_wall_before_dense_goods_is_told_by_its_plate() -> None:
    # fruit and frozen meat behind the compartment are as dense as the goods in it: the
    # contrast says little, the plate (2 m of steel end-on, under the roof) says it
    for seed, commodity in ((50, "fruit"), (51, "frozen meat"), (52, "fruit")):
        hi, lo, truth, gd = _scan(seed, concealment="false wall", commodity=commodity, lie=False)
        v = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd)
        walls = [f for f in v.findings if f.category == Category.FALSE_WALL]
        assert walls and walls[0].level == Level.RED and "plate" in walls[0].reason
        assert _localised(v, truth)
    clean = 0
    for seed in range(50, 60):
        hi, lo, truth, gd = _scan(seed, commodity="fruit", lie=False)
        if truth["concealment"] is not None:
            continue
        clean += 1
        v = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd)
        assert not [
            f for f in v.findings if f.category == Category.FALSE_WALL and f.level == Level.RED
        ]
    assert clean >= 5
