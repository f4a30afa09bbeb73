"""Scanner calibrations on the central side: the CIR's ``scanner_calibrations`` table,
``nii cir calibration``, the live ATR reading each scan through its calibration (or
saying why not), and the UFF package's ``scanner_calibration``.

Simulated scan: physics simulator seed 48 (the live ATR's unit-test seed, docs/atr.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from central import Cir
from central._ingest import calibration_seen
from central.atr._live import ALARM_BAD_CALIBRATION, LiveAtr, live_calibration, verdict_doc
from central.products._export import scanner_calibration
from core.keys import CirKey
from core.scanner_cal import ScannerCalibration, document_sha256
from firmware_sim.physics import PhysicsSource

REFERENCE = Path(__file__).parents[3] / "central" / "atr" / "data" / "reference-scanner.json"
CAL = json.loads(REFERENCE.read_text())
OTHER = {**CAL, "source": {**CAL["source"], "created": "2027-01-01T00:00:00+00:00"}}
BROKEN = {**CAL, "a_max": "lots"}
CH, LINES = 768, 1500
#: the pixel size the scan-start record of the ``arrays`` scan gives (set by the fixture)
PX: dict[str, Any] = {}


def _row(ref: int, scanner: str = "gate1", record: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "ref": ref,
        "scanner": scanner,
        "scan_id": ref,
        "container": "MSKU1234565",
        "status": "complete",
        "started_ns": ref * 10**9,
        "finished_ns": ref * 10**9 + 1,
        "lines_planned": LINES,
        "lines_received": LINES,
        "calib_lines": 16,
        "lines_emitted": LINES,
        "blocks": 3,
        "first_seq": 0,
        "last_seq": 2,
        "gaps": 0,
        "start_record": json.dumps(record or {}),
        "end_record": "{}",
    }


def _commit(cir: Cir, ref: int, scanner: str, record: dict[str, Any]) -> None:
    seen = calibration_seen(scanner, ref, ref * 10**9, record)
    cir.commit([], {}, {ref: _row(ref, scanner, record)}, [], calibrations=[seen] if seen else [])


# -- the CIR table ---------------------------------------------------------------------------
def test_calibration_seen_only_for_a_json_object() -> None:
    assert calibration_seen("gate1", 1, 5, {}) is None
    assert calibration_seen("gate1", 1, 5, {"scanner_calibration": "cal.json"}) is None
    assert calibration_seen("gate1", 1, 5, {"scanner_calibration": {}}) is None
    seen = calibration_seen("gate1", 4, 5, {"scanner_calibration": CAL})
    assert seen is not None
    assert seen["sha256"] == document_sha256(CAL) and json.loads(seen["document"]) == CAL
    assert (seen["scanner"], seen["ref"], seen["seen_ns"]) == ("gate1", 4, 5)


def test_table_keeps_each_scanners_calibrations_current_first(tmp_path: Path) -> None:
    cir = Cir(tmp_path)
    try:
        _commit(cir, 1, "gate1", {"scanner_calibration": CAL})
        _commit(cir, 2, "gate1", {"scanner_calibration": CAL})
        _commit(cir, 3, "gate2", {})  # no calibration: no row
        _commit(cir, 4, "gate1", {"scanner_calibration": OTHER})  # re-commissioned
        rows = cir.calibrations("gate1")
        assert [r["sha256"] for r in rows] == [document_sha256(OTHER), document_sha256(CAL)]
        old = rows[1]
        assert (old["first_ref"], old["last_ref"], old["scans"]) == (1, 2, 2)
        assert (old["first_seen_ns"], old["last_seen_ns"]) == (10**9, 2 * 10**9)
        assert json.loads(old["document"]) == CAL
        assert cir.calibrations("gate2") == []
        assert cir.scanner_ids() == ["gate1", "gate2"]
        # the scan rows went in with them
        assert cir.scan(4) is not None and cir.scan(3) is not None
    finally:
        cir.close()


def test_nii_cir_calibration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nii.__main__ import main

    CirKey.generate().save(tmp_path / "keys")
    (tmp_path / "central.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "cir"\n')
    cir = Cir(tmp_path / "cir")
    try:
        _commit(cir, 1, "gate1", {"scanner_calibration": CAL})
        _commit(cir, 2, "gate1", {"scanner_calibration": OTHER})
        _commit(cir, 3, "gate2", {})
    finally:
        cir.close()
    cfg = ["--config", str(tmp_path / "central.toml")]
    assert main(["cir", "calibration", *cfg, "gate1"]) == 0
    assert json.loads(capsys.readouterr().out) == OTHER
    assert main(["cir", "calibration", *cfg, "gate1", "--all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and "(current)" in out[1] and "(current)" not in out[2]
    assert out[1].startswith(document_sha256(OTHER)[:16])
    assert out[2].startswith(document_sha256(CAL)[:16])
    assert main(["cir", "calibration", *cfg, "gate9"]) == 2
    err = capsys.readouterr().err
    assert "no scanner 'gate9'" in err and "gate1, gate2" in err and "fix:" in err
    assert main(["cir", "calibration", *cfg, "gate2"]) == 2
    err = capsys.readouterr().err
    assert "no scan of gate2 came with a scanner calibration" in err and "calibration =" in err


# -- the live ATR ----------------------------------------------------------------------------
def test_live_calibration_parses_once_and_explains_a_bad_one() -> None:
    assert live_calibration({}) == (None, "", "")
    cal, sha, err = live_calibration({"scanner_calibration": CAL})
    assert isinstance(cal, ScannerCalibration) and sha == document_sha256(CAL) and err == ""
    again, _, _ = live_calibration({"scanner_calibration": json.loads(json.dumps(CAL))})
    assert again is cal  # cached by its digest
    bad, sha, err = live_calibration({"scanner_calibration": BROKEN})
    assert bad is None and sha == document_sha256(BROKEN) and "malformed" in err
    none, sha, err = live_calibration({"scanner_calibration": "scanner.json"})
    assert none is None and sha == "" and "not a JSON object" in err


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    s = PhysicsSource().simulate(48, 1, CH, LINES, commodity="textiles", lie=False)
    PX["pixel_mm"] = [s.truth["line_pitch_mm"], s.truth["channel_pitch_mm"]]
    return {
        "image_high": s.img_hi.T.copy(),
        "image_low": s.img_lo.T.copy(),
        "dark_high": s.dark_hi.T.copy(),
        "dark_low": s.dark_lo.T.copy(),
        "air_high": s.air_hi.T.copy(),
        "air_low": s.air_lo.T.copy(),
    }


def test_verdict_reads_the_scan_through_its_calibration(arrays: dict[str, np.ndarray]) -> None:
    doc = verdict_doc(_row(7, record={**PX, "scanner_calibration": CAL}), arrays)
    assert doc["gd_checks"]["calibrated"] is True
    assert doc["scanner_calibration"] == {
        "sha256": document_sha256(CAL),
        "used": True,
        "scanner": CAL["scanner"],
    }
    assert not any("calibration" in n for n in doc["notes"])
    plain = verdict_doc(_row(7, record=PX), arrays)
    assert plain["gd_checks"]["calibrated"] is False and plain["scanner_calibration"] is None
    assert any("reference scanner is assumed" in n for n in plain["notes"])


def test_a_malformed_calibration_is_analysed_uncalibrated_and_said(
    arrays: dict[str, np.ndarray],
) -> None:
    doc = verdict_doc(_row(7, record={**PX, "scanner_calibration": BROKEN}), arrays)
    assert doc["verdict"] in ("green", "yellow", "red")
    assert doc["gd_checks"]["calibrated"] is False
    assert doc["scanner_calibration"]["used"] is False
    assert "malformed" in doc["scanner_calibration"]["error"]
    assert any("cannot be used" in n and "reference scanner" in n for n in doc["notes"])


def test_bad_calibration_alarm_once_per_scanner_and_document(tmp_path: Path) -> None:
    atr = LiveAtr(tmp_path, CirKey.generate().x25519_private, lambda *_: None, work=False)
    try:
        bad = {"sha256": "ab" * 32, "used": False, "error": "malformed"}
        alarms = [
            atr.bad_calibration_alarm({"ref": 1, "scanner": s, "scanner_calibration": bad})
            for s in ("gate1", "gate1", "gate2")
        ]
        ok = {"sha256": "cd" * 32, "used": True}
        assert (
            atr.bad_calibration_alarm({"ref": 2, "scanner": "gate1", "scanner_calibration": ok})
            is None
        )
    finally:
        atr.close()
    assert alarms[1] is None
    assert [(a[0], a[1]) for a in alarms if a is not None] == [
        ("gate1", ALARM_BAD_CALIBRATION),
        ("gate2", ALARM_BAD_CALIBRATION),
    ]
    assert alarms[0] is not None and "nii atr calibrate" in alarms[0][3]["fix"]


# -- the UFF package -------------------------------------------------------------------------
def test_uff_carries_the_calibration_the_scan_was_taken_with() -> None:
    assert scanner_calibration({}) is None
    assert scanner_calibration({"scanner_calibration": "x"}) is None
    assert scanner_calibration({"scanner_calibration": CAL}) == {
        "sha256": document_sha256(CAL),
        "document": CAL,
    }


# -- ATT pairing -----------------------------------------------------------------------------
def test_att_reads_each_scan_through_its_own_calibration(tmp_path: Path) -> None:
    from central.atr._store import AttStore
    from central.atr._transit import att_doc
    from firmware_sim.physics import ExitScan
    from tests.unit.test_att_pairing import CH as ATT_CH
    from tests.unit.test_att_pairing import LINES as ATT_LINES
    from tests.unit.test_att_pairing import SEED as ATT_SEED
    from tests.unit.test_att_pairing import _arrays, _px, _scan

    cir = Cir(tmp_path)
    store = AttStore(tmp_path / "cir.sqlite")
    try:
        a = PhysicsSource().simulate(ATT_SEED, 1, ATT_CH, ATT_LINES)
        b = PhysicsSource(detector_seed=2, exit=ExitScan()).simulate_exit(
            ATT_SEED, 1, ATT_CH, ATT_LINES
        )
        box, seal = str(a.gd["container_number"]), str(a.gd["seal"])
        images = {1: _arrays(a), 2: _arrays(b), 3: _arrays(a), 4: _arrays(b)}
        cal = {"scanner_calibration": CAL}
        _scan(cir, 1, "entry", box, seal, record={**_px(a), **cal})
        row_b = _scan(cir, 2, "exit", box, seal, record={**_px(b), **cal})
        both = att_doc(cir, store, row_b, images.__getitem__)
        assert both is not None and both["result"] == "release", both
        assert (
            both["scanner_calibration_a"] == both["scanner_calibration_b"] == document_sha256(CAL)
        )
        assert not any("calibration" in n for n in both["notes"])
        # only the exit scan commissioned: compared all the same, and said
        _scan(cir, 3, "entry", box + "X", seal, record=_px(a))
        row_d = _scan(cir, 4, "exit", box + "X", seal, record={**_px(b), **cal})
        mixed = att_doc(cir, store, row_d, images.__getitem__)
        assert mixed is not None and mixed["result"] == "release", mixed
        assert mixed["scanner_calibration_a"] is None
        assert any("only scan B came with its scanner's calibration" in n for n in mixed["notes"])
    finally:
        store.close()
        cir.close()
