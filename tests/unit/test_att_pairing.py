"""Live ATT pairing (R12): where the role comes from, the pairing rules, the ``att`` table,
the alarm, the control-room line, ``nii cir att`` and the simulator's exit scanner.

Scans are rows of a real CIR (``central.Cir``); images, where a rule needs them,
come from the physics simulator at seed 61 (the system test's seed; unit tests
otherwise use 42-52, tuning 100, the benchmark 7000: docs/atr.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from central import Cir
from central._feed import format_event
from central._sql import Sql
from central.atr._live import LiveAtr
from central.atr._store import AttStore, att_docs
from central.atr._transit import att_alarm, att_doc, att_role, format_att
from core.config import EdgeConfig
from core.errors import ConfigError
from core.keys import CirKey
from edge import with_att_role
from firmware_sim.physics import ExitScan, PhysicsScan, PhysicsSource

CH, LINES, SEED = 768, 1000, 61


# -- where the role comes from ---------------------------------------------------------------
def _edge_toml(tmp_path: Path, scanner_extra: str) -> Path:
    p = tmp_path / "edge.toml"
    p.write_text(
        '[edge]\nid = "edge-a"\nkey = "k.key"\ncir_public = "c.pub"\n\n'
        f'[[scanner]]\nid = "gate1"\nserial = "/dev/null"\ndata = "127.0.0.1:7700"\n'
        f"{scanner_extra}"
    )
    return p


def test_att_role_in_the_edge_config(tmp_path: Path) -> None:
    assert EdgeConfig.load(_edge_toml(tmp_path, "")).scanners[0].att_role is None
    cfg = EdgeConfig.load(_edge_toml(tmp_path, 'att_role = "exit"\n'))
    assert cfg.scanners[0].att_role == "exit"
    for bad in ('"Exit"', '"transit"', "1"):
        with pytest.raises(ConfigError) as exc:
            EdgeConfig.load(_edge_toml(tmp_path, f"att_role = {bad}\n"))
        assert 'att_role: must be "entry" or "exit"' in exc.value.message
        assert "edge.toml" in exc.value.message and 'att_role = "entry"' in exc.value.fix


def test_edge_writes_the_role_into_the_scan_start_record() -> None:
    raw = json.dumps({"scan_id": 3, "container": "MSKU0000003", "att_role": "entry"}).encode()
    assert with_att_role(raw, None) is raw  # no role configured: the scanner's bytes, untouched
    doc = json.loads(with_att_role(raw, "exit"))
    assert doc["att_role"] == "exit" and doc["att_role_scanner"] == "entry"  # the edge wins
    assert doc["container"] == "MSKU0000003" and doc["scan_id"] == 3
    same = json.loads(with_att_role(raw, "entry"))
    assert same["att_role"] == "entry" and "att_role_scanner" not in same
    assert json.loads(with_att_role(b'{"scan_id": 1}', "entry"))["att_role"] == "entry"
    assert with_att_role(b"not json", "exit") == b"not json"
    assert with_att_role(b"[1, 2]", "exit") == b"[1, 2]"


def test_central_reads_the_role_from_the_record() -> None:
    assert att_role({"start_record": json.dumps({"att_role": "exit"})}) == "exit"
    assert att_role({"start_record": json.dumps({"att_role": " Entry "})}) == "entry"
    assert att_role({"start_record": json.dumps({"att_role": "transit"})}) is None
    assert att_role({"start_record": "{broken"}) is None
    assert att_role({"start_record": None}) is None


# -- pairing rules on a real CIR -------------------------------------------------------------
@pytest.fixture
def cir(tmp_path: Path) -> Iterator[Cir]:
    c = Cir(tmp_path)
    yield c
    c.close()


@pytest.fixture
def store(cir: Cir) -> Iterator[AttStore]:
    s = AttStore(cir.dir / "cir.sqlite")
    yield s
    s.close()


def _scan(
    cir: Cir, ref: int, role: str | None, container: str, seal: str | None, **kw: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {"container": container}
    if role:
        record["att_role"] = role
    if seal:
        record["seal"] = seal
    record.update(kw.pop("record", {}))
    row = {
        "ref": ref,
        "scanner": "entry1" if role == "entry" else "exit1",
        "scan_id": ref,
        "container": container,
        "status": kw.pop("status", "complete"),
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
        "start_record": json.dumps(record),
        "end_record": "{}",
    }
    cir.commit([], {}, {ref: row}, [])
    return row


def _no_images(ref: int) -> dict[str, np.ndarray]:
    raise AssertionError(f"the rule should not need the images (asked for ref {ref})")


def test_seal_mismatch_holds_without_the_images(cir: Cir, store: AttStore) -> None:
    _scan(cir, 1, "entry", "MSKU0000001", "SL1000001")
    b = _scan(cir, 2, "exit", "msku0000001 ", "SL1000002")
    doc = att_doc(cir, store, b, _no_images)
    assert doc is not None
    assert (doc["result"], doc["hold"], doc["status"]) == ("hold", True, "Contravening Unit: HOLD")
    assert (doc["ref_a"], doc["ref_b"], doc["container"]) == (1, 2, "MSKU0000001")
    assert doc["reason"] == "seal changed: SL1000001 at entry, SL1000002 at exit"
    assert doc["factors"] == {} and doc["seal"] == {
        "a": "SL1000001",
        "b": "SL1000002",
        "checked": True,
        "ok": False,
    }
    # a seal at the entry and none at the exit is a seal gone
    _scan(cir, 3, "entry", "MSKU0000003", "SL3")
    gone = att_doc(cir, store, _scan(cir, 4, "exit", "MSKU0000003", None), _no_images)
    assert gone is not None and gone["hold"] and "SL3 at entry, none at exit" in gone["reason"]
    kind, message, details = att_alarm(doc) or ("", "", {})
    assert kind == "att_hold" and "Contravening Unit MSKU0000001: HOLD: seal changed" in message
    assert details["seal_a"] == "SL1000001" and details["seal_b"] == "SL1000002"


def test_no_entry_scan_is_unpaired_not_held(cir: Cir, store: AttStore) -> None:
    _scan(cir, 1, "entry", "MSKU0000001", "SL1")  # another container
    _scan(cir, 2, None, "MSKU0000002", "SL2")  # a scan of it, but not at an ATT entry
    _scan(cir, 3, "entry", "MSKU0000002", "SL2", status="aborted")  # not complete
    b = _scan(cir, 4, "exit", "MSKU0000002", "SL2")
    _scan(cir, 5, "entry", "MSKU0000002", "SL2")  # after B reached central: not its Scan A
    doc = att_doc(cir, store, b, _no_images)
    assert doc is not None and doc["result"] == "unpaired" and not doc["hold"]
    assert doc["reason"] == "no Scan A for container MSKU0000002" and doc["ref_a"] is None
    kind, message, _ = att_alarm(doc) or ("", "", {})
    assert kind == "att_unpaired" and "MSKU0000002" in message
    nameless = att_doc(cir, store, _scan(cir, 6, "exit", "", "SL9"), _no_images)
    assert nameless is not None and nameless["result"] == "unpaired"
    assert "no container number" in nameless["reason"]


def test_only_complete_exit_scans_are_compared(cir: Cir, store: AttStore) -> None:
    a = _scan(cir, 1, "entry", "MSKU0000001", "SL1")
    assert att_doc(cir, store, a, _no_images) is None
    partial = _scan(cir, 2, "exit", "MSKU0000001", "SL1", status="incomplete")
    assert att_doc(cir, store, partial, _no_images) is None
    other = _scan(cir, 3, None, "MSKU0000001", "SL1")
    assert att_doc(cir, store, other, _no_images) is None


def test_an_entry_scan_is_paired_once(cir: Cir, store: AttStore) -> None:
    _scan(cir, 1, "entry", "MSKU0000001", "SL1")
    first = att_doc(cir, store, _scan(cir, 2, "exit", "MSKU0000001", "SL2"), _no_images)
    assert first is not None and first["hold"]
    store.put(first)
    assert store.paired(1) == first
    # a rescan at the exit does not get a second comparison that could replace the HOLD
    again = att_doc(cir, store, _scan(cir, 3, "exit", "MSKU0000001", "SL1"), _no_images)
    assert again is not None and again["result"] == "unpaired" and again["ref_a"] is None
    assert again["paired_with"] == {
        "ref_a": 1,
        "ref_b": 2,
        "result": "hold",
        "status": "Contravening Unit: HOLD",
    }
    assert "already compared with Scan B ref 2 (hold)" in again["reason"]
    store.put(again)
    # the table refuses a second pairing of one entry scan, whatever the caller does
    with pytest.raises(sqlite3.IntegrityError):
        store.put({**first, "ref_b": 4})
    assert store.get(2) == first and store.paired(1) == first
    # the same exit scan done again replaces its own result
    store.put({**first, "reason": "again"})
    assert store.get(2) == {**first, "reason": "again"}
    # a new entry scan of the container starts a new transit
    _scan(cir, 5, "entry", "MSKU0000001", "SL7")
    nxt = att_doc(cir, store, _scan(cir, 6, "exit", "MSKU0000001", "SL8"), _no_images)
    assert nxt is not None and nxt["ref_a"] == 5


def _arrays(s: PhysicsScan) -> dict[str, np.ndarray]:
    """A simulated scan as ``scan_arrays`` reads it back: (channels, lines) uint16."""
    return {
        "image_high": s.img_hi.T.copy(),
        "image_low": s.img_lo.T.copy(),
        "dark_high": s.dark_hi.T.copy(),
        "dark_low": s.dark_lo.T.copy(),
        "air_high": s.air_hi.T.copy(),
        "air_low": s.air_lo.T.copy(),
    }


def _px(s: PhysicsScan) -> dict[str, Any]:
    return {"pixel_mm": [s.truth["line_pitch_mm"], s.truth["channel_pitch_mm"]]}


def test_same_seal_compares_the_calibrated_images(cir: Cir, store: AttStore) -> None:
    images: dict[int, dict[str, np.ndarray]] = {}
    exit_src = PhysicsSource(
        detector_seed=2, exit=ExitScan(tamper="addition", tampered=frozenset({2}), belt_speed=1.1)
    )
    refs = {}
    truth: dict[str, Any] = {}
    for sid in (1, 2):
        a = PhysicsSource().simulate(SEED, sid, CH, LINES)
        b = exit_src.simulate_exit(SEED, sid, CH, LINES)
        assert a.gd == b.gd  # the same container, seal and declaration
        ra, rb = 2 * sid - 1, 2 * sid
        seal = str(a.gd["seal"])
        _scan(cir, ra, "entry", str(a.gd["container_number"]), seal, record=_px(a))
        refs[sid] = _scan(cir, rb, "exit", str(b.gd["container_number"]), seal, record=_px(b))
        images[ra], images[rb] = _arrays(a), _arrays(b)
        truth = {"a": a.truth, "b": b.truth}
    clean = att_doc(cir, store, refs[1], images.__getitem__)
    assert clean is not None and clean["result"] == "release" and not clean["hold"], clean
    assert set(clean["factors"]) == {"volume", "density", "structure", "objects"}
    assert clean["pixel_mm_b"][0] == pytest.approx(1.1 * clean["pixel_mm_a"][0], rel=1e-3)
    assert att_alarm(clean) is None
    held = att_doc(cir, store, refs[2], images.__getitem__)
    assert held is not None and held["result"] == "hold", held
    over = [k for k, f in held["factors"].items() if not f["ok"]]
    assert over and all(k in held["reason"] for k in over)
    kind, message, details = att_alarm(held) or ("", "", {})
    assert kind == "att_hold" and set(details["factors_over"]) == set(over)
    x0, y0, x1, y1 = details["differences_mm"][0]["bbox_mm"]
    assert f"at {x0}-{x1} mm from the front wall, {y0}-{y1} mm above the floor" in message
    # where the simulator added the object, in mm from A's front wall (3400 mm along the road,
    # B's road longer by the belt speed's extra length)
    extra = truth["b"]["length_mm"] - truth["a"]["length_mm"]
    c0, c1 = (y - extra - 3400.0 for y in truth["b"]["changed_y_mm"])
    assert x0 < c1 + 150 and x1 > c0 - 150, (held["differences"], c0, c1)
    # a scan the ATT cannot read is reported, not guessed
    broken = dict(images)
    broken[1] = {k: v for k, v in images[1].items() if not k.startswith("dark")}
    failed = att_doc(cir, store, refs[1], broken.__getitem__)
    assert failed is not None and failed["result"] == "not compared" and not failed["hold"]
    assert "dark or air" in failed["reason"] and failed["fix"]
    assert (att_alarm(failed) or ("",))[0] == "att_failed"


# -- the worker: stored with its alarm, then published ----------------------------------------
async def test_worker_stores_result_and_alarm_then_publishes(cir: Cir) -> None:
    _scan(cir, 1, "entry", "MSKU0000001", "SL1")
    _scan(cir, 2, "exit", "MSKU0000001", "SL2")
    got: list[tuple[bytes, dict[str, Any]]] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def publish(topic: bytes, doc: dict[str, Any]) -> None:
        assert asyncio.get_running_loop() is loop
        con = sqlite3.connect(cir.dir / "cir.sqlite")
        try:  # whoever sees it on the feed finds it in the CIR
            assert con.execute("SELECT result FROM att WHERE ref_b = 2").fetchall() == [("hold",)]
            kinds = con.execute("SELECT kind, scanner FROM alarms").fetchall()
            assert kinds == [("att_hold", "exit1")]
        finally:
            con.close()
        got.append((topic, doc))
        if len(got) == 2:
            done.set()

    live = LiveAtr(cir.dir, CirKey.generate().x25519_private, publish)
    try:
        assert await asyncio.to_thread(live.transit, 1, loop) is None  # an entry scan
        doc = await asyncio.to_thread(live.transit, 2, loop)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        live.close()
    assert doc is not None and live.att_results == 1
    assert [t for t, _ in got] == [b"atr.att", b"alarm"]
    assert got[0][1] == doc and doc["latency_s"] > 0
    alarm = got[1][1]
    assert alarm["kind"] == "att_hold" and alarm["details"]["ref_b"] == 2
    assert "Contravening Unit MSKU0000001: HOLD" in alarm["message"]


# -- what people see ---------------------------------------------------------------------------
def _doc(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "ref_a": 3,
        "ref_b": 9,
        "container": "MSKU0000002",
        "scanner_a": "entry1",
        "scan_id_a": 2,
        "scanner_b": "exit1",
        "scan_id_b": 2,
        "result": "hold",
        "hold": True,
        "reason": "density: integrated attenuation changed by 4.3 %",
        "differences": [{"kind": "addition", "bbox_mm": [1200, 300, 2700, 1500]}],
        "ms": 48.0,
        "latency_s": 0.21,
    }
    d.update(kw)
    return d


def test_control_room_line_for_att_results() -> None:
    hold = format_event(b"atr.att", _doc())
    assert "ATT *** HOLD *** container MSKU0000002" in hold
    assert "exit1 scan 2 (ref 9) against entry1 scan 2 (ref 3)" in hold
    assert "addition at 1.2-2.7 m" in hold and "0.21 s after scan end" in hold
    release = format_att(_doc(result="release", hold=False, reason="seal SL1 intact"))
    assert release.startswith("ATT release container MSKU0000002") and "HOLD" not in release
    lone = format_att(
        _doc(result="unpaired", hold=False, ref_a=None, reason="no Scan A for container X")
    )
    assert lone.startswith("ATT UNPAIRED") and "against" not in lone


def test_nii_cir_att_lists_results_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    key = CirKey.generate()
    key.save(tmp_path / "keys")
    (tmp_path / "central.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "cir"\n')
    args = ["cir", "att", "--config", str(tmp_path / "central.toml")]
    assert main(args) == 2  # no CIR: refused, and none made
    assert "there is no CIR" in capsys.readouterr().err and not (tmp_path / "cir").exists()
    Cir(tmp_path / "cir").close()
    assert main(args) == 0 and "no ATT results" in capsys.readouterr().out
    db = Sql(tmp_path / "cir" / "cir.sqlite", read_only=True)
    try:
        assert att_docs(db) == []
        assert db.value("SELECT count(*) AS n FROM att") == 0  # the command wrote nothing
    finally:
        db.close()
    s = AttStore(tmp_path / "cir" / "cir.sqlite")
    try:
        s.put(_doc(seal_a="SL1", seal_b="SL2", factors={}))
    finally:
        s.close()
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [_doc(seal_a="SL1", seal_b="SL2", factors={})]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "HOLD" in out and "MSKU0000002" in out and "SL2" in out


# -- the simulator's exit scanner -------------------------------------------------------------
def test_exit_simulator_scans_the_entry_containers() -> None:
    entry = PhysicsSource().scan(SEED, 3, 64, 48).record
    ex = PhysicsSource(detector_seed=2, exit=ExitScan(broken_seal=frozenset({3}), belt_speed=0.9))
    broken = ex.scan(SEED, 3, 64, 48).record
    intact = ex.scan(SEED, 4, 64, 48).record
    assert broken["container"] == entry["container"] == "MSKU0000032"  # ISO 6346 valid
    assert broken["gd"] == entry["gd"] and broken["seal"] != entry["seal"]
    assert intact["seal"] == PhysicsSource().scan(SEED, 4, 64, 48).record["seal"]
    assert broken["pixel_mm"][0] == pytest.approx(0.9 * entry["pixel_mm"][0])
    # what a tampered scan's truth says was done
    t = ex.simulate_exit(SEED, 3, 64, 48).truth
    assert t["att"] == "exit" and t["tamper"] is None and t["seal_broken"]
    tampered = PhysicsSource(exit=ExitScan(tamper="removal")).simulate_exit(SEED, 3, 64, 48)
    assert tampered.truth["tamper"] == "removal" and len(tampered.truth["changed_y_mm"]) == 2


def _sim_args(*extra: str) -> argparse.Namespace:
    from firmware_sim.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sim", *extra])


def test_sim_exit_options() -> None:
    import bench.atr
    import firmware_sim.cli as cli
    from firmware_sim import physics

    assert bench.atr._tamper is physics.tamper  # one tamper model for the bench and the sim
    assert cli.TAMPER_KINDS == physics.TAMPER_KINDS
    assert cli.BELT_SPEED_RANGE == physics.BELT_SPEED_RANGE
    configs = cli.build_configs(
        _sim_args(
            "--source",
            "physics",
            "--detector-seed",
            "2",
            "--tamper",
            "substitution",
            "--tamper-scans",
            "2, 5",
            "--break-seal",
            "3",
            "--belt-speed",
            "1.1",
        )
    )
    src = configs[0].source
    assert isinstance(src, PhysicsSource) and src.detector_seed == 2
    assert src.exit == ExitScan("substitution", frozenset({2, 5}), frozenset({3}), 1.1)
    assert src.exit.tampers(2) == "substitution" and src.exit.tampers(3) is None
    plain = cli.build_configs(_sim_args("--source", "physics", "--att-exit")).pop().source
    assert isinstance(plain, PhysicsSource) and plain.exit == ExitScan()
    for bad, words in (
        (("--tamper", "addition"), "need the physics image source"),
        (("--source", "physics", "--belt-speed", "2"), "--belt-speed 2.0 is out of range"),
        (("--source", "physics", "--tamper-scans", "2"), "not what was done"),
        (("--source", "physics", "--break-seal", "x"), "not a list of scan ids"),
    ):
        with pytest.raises(ConfigError, match=words) as exc:
            cli.build_configs(_sim_args(*bad))
        assert exc.value.fix
