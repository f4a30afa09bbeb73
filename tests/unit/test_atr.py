"""ATR: detectors on small seeded cases, verdict logic, ATT HOLD, TIP marking, bad input.

Seeds 42 to 60 only (tuning used seed 100, the benchmark seed 7000).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from central.atr import AtrInputError, Category, Finding, Level, Verdict, analyze
from central.atr._att import compare
from central.atr._physical import reference
from central.atr._tip import TipProjector, library, mark, project
from central.atr.cli import load_transmission
from core.calibration import DetectorCalibration
from firmware_sim.physics import PhysicsSource

CH, LINES = 768, 1500


def _scan(seed: int, **kw: Any) -> tuple[np.ndarray, np.ndarray, dict[str, Any], Any]:
    s = PhysicsSource().simulate(seed, 1, CH, LINES, **kw)
    cal = DetectorCalibration.from_lines(s.dark_hi, s.dark_lo, s.air_hi, s.air_lo)
    hi, lo = cal.attenuation(s.img_hi, s.img_lo)
    return hi, lo, s.truth, s.gd


def _iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / u if u else 0.0


def _localised(v: Verdict, truth: dict[str, Any]) -> bool:
    boxes = [
        [o["pixels"][k] for k in ("line0", "channel0", "line1", "channel1")]
        for o in truth["objects"]
        if o["kind"] == "concealment"
    ]
    return any(_iou(f.bbox_px, b) >= 0.3 for f in v.findings for b in boxes)


def test_high_z_block_is_red_and_located() -> None:
    hi, lo, truth, gd = _scan(42, concealment="high-Z block", commodity="textiles", lie=False)
    v = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd)
    assert v.verdict == Level.RED
    assert _localised(v, truth)
    f = v.findings[0]
    assert f.bbox_mm[2] > f.bbox_mm[0] and f.size_mm[0] > 0 and f.reason


def test_vehicle_is_found() -> None:
    hi, lo, truth, gd = _scan(
        43, concealment="vehicle", container="40GP", commodity="textiles", lie=False
    )
    v = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd)
    assert any(f.category == Category.UNDECLARED_VEHICLE for f in v.findings)


def test_declared_empty_but_loaded_is_red() -> None:
    hi, lo, truth, gd = _scan(44, empty=False, commodity="paper", lie=False)
    gd.update(declared_commodity="empty", hs_code="")
    v = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd)
    assert v.verdict == Level.RED
    assert any(f.category in (Category.NOT_EMPTY, Category.GD_MISMATCH) for f in v.findings)


def test_declared_empty_scrap_is_not_empty_and_its_pieces_are_judged_as_scrap() -> None:
    # scrap steel declared empty: one red "not empty", and the scrap's dense pieces are
    # judged as they would be in declared scrap, not as dense objects in an empty box
    hi, lo, truth, gd = _scan(47, empty=False, commodity="scrap steel", lie=False)
    as_scrap = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd)
    gd.update(declared_commodity="empty", hs_code="")
    v = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd)
    assert v.verdict == Level.RED and v.gd_checks["looks_like"] == "scrap steel"
    assert [f.level for f in v.findings if f.category == Category.NOT_EMPTY] == [Level.RED]
    rest = [(f.category, f.level) for f in v.findings if f.category != Category.NOT_EMPTY]
    assert rest == [(f.category, f.level) for f in as_scrap.findings]


def test_understated_weight_is_flagged() -> None:
    hi, lo, truth, gd = _scan(45, commodity="ceramic tiles", lie=False)
    gd["gross_weight_kg"] = gd["gross_weight_kg"] * 0.5
    ref = reference()  # the simulator's default scanner is the reference scanner
    v = analyze(hi, lo, truth["line_pitch_mm"], truth["channel_pitch_mm"], gd, scanner=ref)
    assert any(f.category == Category.GD_MISMATCH and f.level == Level.RED for f in v.findings)
    assert v.gd_checks["mass_ratio"] > 1.3


def test_verdict_is_worst_finding() -> None:
    y = Finding(Category.DENSE_OBJECT, 0.7, Level.YELLOW, "a")
    r = Finding(Category.FALSE_WALL, 2.0, Level.RED, "b")
    assert Verdict.of([]).verdict == Level.GREEN
    assert Verdict.of([y]).verdict == Level.YELLOW
    v = Verdict.of([y, r])
    assert v.verdict == Level.RED and v.findings[0] is r
    assert v.to_dict()["findings"][0]["category"] == "false wall"


def test_att_tampering_holds_and_clean_pair_releases() -> None:
    hi, lo, truth, _ = _scan(
        46, commodity="textiles", concealment=None, lie=False, container="20GP"
    )
    px = (truth["line_pitch_mm"], truth["channel_pitch_mm"])
    rng = np.random.default_rng(2)  # Scan B of the untouched container: its own noise
    noise = rng.normal(0.0, 0.004, (2, *hi.shape)).astype(np.float32)
    same = compare((hi, lo, *px), (hi + noise[0], lo + noise[1], *px))
    assert not same.hold
    b_hi, b_lo = hi.copy(), lo.copy()
    n = hi.shape[0]
    b_hi[n // 2 : n // 2 + 60, 300:420] += 3.0
    b_lo[n // 2 : n // 2 + 60, 300:420] += 3.4
    res = compare((hi, lo, *px), (b_hi, b_lo, *px))
    assert res.hold and res.status.startswith("Contravening Unit")
    assert res.differences and res.differences[0]["kind"] == "addition"
    x0, _, x1, _ = res.differences[0]["bbox_px"]
    assert x0 <= n // 2 + 60 and x1 >= n // 2


def test_tip_is_multiplicative_recorded_and_marked() -> None:
    a = np.full((200, 150), 1.0, np.float32)
    sig = library(10.0, 5.0)[1]
    hi, _, rec = project(a, a, sig, 50, 40)
    assert a.max() == 1.0  # the evidence is untouched
    assert np.isclose(hi[55, 45], 1.0 + sig.a_hi[5, 5])  # T multiplies: A adds
    doc = mark({"verdict": "red", "findings": [{"bbox_px": [52, 42, 60, 50]}]}, rec)
    assert doc["tip_marked"] and doc["tip"][0]["tip"] and doc["findings"][0]["tip"]
    tp = TipProjector(rate=1.0, seed=1)
    _, _, rec2 = tp.maybe_project("s1", a, a, 10.0, 5.0)
    assert rec2 is not None and tp.records == [rec2]
    assert TipProjector(rate=0.0).maybe_project("s", a, a, 1.0, 1.0)[2] is None


@pytest.mark.parametrize(
    ("hi", "lo", "words"),
    [
        (np.zeros((100, 100)), np.zeros((100, 90)), "differ in size"),
        (np.full((100, 100), np.nan), np.zeros((100, 100)), "NaN"),
        (np.zeros((100, 100)), np.zeros((100, 100)), "no data"),
        (np.zeros((10, 10)), np.zeros((10, 10)), "too small"),
    ],
)
def test_garbage_input_is_one_clear_error(hi: np.ndarray, lo: np.ndarray, words: str) -> None:
    with pytest.raises(AtrInputError, match=words) as exc:
        analyze(hi, lo, 5.0, 3.0)
    assert exc.value.fix


def test_eight_bit_and_all_zero_images_are_refused(tmp_path: Path) -> None:
    import cv2

    p8 = tmp_path / "a.png"
    cv2.imwrite(str(p8), np.full((80, 80), 7, np.uint8))
    with pytest.raises(AtrInputError, match="16-bit"):
        load_transmission(p8)
    p0 = tmp_path / "z.png"
    cv2.imwrite(str(p0), np.zeros((80, 80), np.uint16))
    with pytest.raises(AtrInputError, match="zero"):
        load_transmission(p0)
    with pytest.raises(AtrInputError, match="pixel size"):
        analyze(np.ones((100, 100)), np.ones((100, 100)), 0.0, 3.0)
    # enough pixels, but pixels of half a millimetre: 50 mm of image is no container
    with pytest.raises(AtrInputError, match="too little to hold a container"):
        analyze(np.ones((100, 100)), np.ones((100, 100)), 0.5, 0.5)
    # a unit slip (metres or microns for millimetres) is named, never an internal crash
    for px in ((1000.0, 1000.0), (1e20, 5.0), (1e308, 1e308), (5.5, 0.01)):
        with pytest.raises(AtrInputError, match="no container scanner images at that scale"):
            analyze(np.ones((300, 200)), np.ones((300, 200)), *px)


def test_cli_analyze_prints_verdict_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import cv2

    from nii.__main__ import main

    hi, lo, truth, _ = _scan(47, concealment="high-density block", commodity="textiles", lie=False)
    for name, a in (("high", hi), ("low", lo)):
        cv2.imwrite(
            str(tmp_path / f"{name}.tiff"),
            np.clip(np.exp(-a) * 65535, 0, 65535).astype(np.uint16).T,
        )
    rc = main(
        [
            "atr",
            "analyze",
            "--high",
            str(tmp_path / "high.tiff"),
            "--low",
            str(tmp_path / "low.tiff"),
            "--pixel-mm",
            str(truth["line_pitch_mm"]),
            str(truth["channel_pitch_mm"]),
            "--compact",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["verdict"] in ("green", "yellow", "red")
    assert all(
        {"bbox_mm", "bbox_px", "category", "material", "score", "reason"} <= set(f)
        for f in doc["findings"]
    )
