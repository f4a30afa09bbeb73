"""Heartbeat uptime entries are untrusted (kind 9): refused whole, alarmed, nothing changed."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from central import Cir
from central._uptime import UptimeStore, UptimeTracker, parse_uptime
from core.errors import ProtocolError

NOW = time.time()
FAIL = (
    "CREATE TRIGGER fail BEFORE INSERT ON uptime_logs "
    "BEGIN SELECT RAISE(ABORT, 'disk full (t)'); END"
)


def count(store: UptimeStore) -> int:
    return int(store.db.value("SELECT COUNT(*) AS n FROM uptime_entries"))


def good(n: int = 3, t0: float = NOW - 600) -> dict[str, Any]:
    a = int(t0 * 1e9)
    return {
        "scanner": "scanner1",
        "log": "L1",
        "entries": [[i + 1, "boot", int(i * 60e9), a, "ready", "mark"] for i in range(n)],
    }


def bad_entry(i: int, v: Any) -> dict[str, Any]:
    d = good()
    d["entries"][1][i] = v
    return d


BAD: dict[str, Any] = {
    "not an object": "uptime",
    "scanner a list": {**good(), "scanner": ["scanner1"]},
    "scanner empty": {**good(), "scanner": ""},
    "log a number": {**good(), "log": 7},
    "entries a string": {**good(), "entries": "[]"},
    "entry a dict": {**good(), "entries": [{"seq": 1}]},
    "entry too short": {**good(), "entries": [[1, "b", 0, 0, "ready"]]},
    "seq 1e400": bad_entry(0, float("inf")),
    "seq 2**70": bad_entry(0, 2**70),
    "seq a float": bad_entry(0, 2.0),
    "seq a bool": bad_entry(0, True),
    "seq zero": bad_entry(0, 0),
    "mono 2**70": bad_entry(2, 2**70),
    "mono negative": bad_entry(2, -1),
    "mono NaN": bad_entry(2, float("nan")),
    "anchor 1e400": bad_entry(3, float("inf")),
    "anchor a string": bad_entry(3, "1751310000000000000"),
    "state unknown": bad_entry(4, "sleeping"),
    "state a list": bad_entry(4, ["ready"]),
    "cause a number": bad_entry(5, 3),
    "boot null": bad_entry(1, None),
    "time 1970": {**good(), "entries": [[1, "b", 0, 0, "ready", ""]]},
    "time next year": good(1, NOW + 365 * 86400),
    "too many entries": good(1001),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_uptime_is_refused_with_an_alarm_and_changes_nothing(tmp_path: Path, name: str) -> None:
    alarms: list[tuple[str, str, str]] = []
    t = UptimeTracker(
        tmp_path, alarm=lambda sc, edge, kind, msg, **kw: alarms.append((edge, kind, msg))
    )
    t.on_heartbeat(b"i", "edge-a", {"uptime": good(2)})
    before = count(t.store)
    ack = t.reply(b"i")
    t.on_heartbeat(b"i", "edge-bad", {"uptime": BAD[name], "scanner_state": "ready"})
    assert count(t.store) == before
    assert t.reply(b"i") == ack  # the acknowledgement did not move
    assert [(e, k) for e, k, _ in alarms] == [("edge-bad", "uptime_refused")]
    assert "edge-bad" in alarms[0][2]
    t.close()


def test_parse_names_the_field() -> None:
    with pytest.raises(ProtocolError, match="entry 1 mono_ns is out of range"):
        parse_uptime(bad_entry(2, 2**70), NOW)
    with pytest.raises(ProtocolError, match="state 'sleeping' is not one of"):
        parse_uptime(bad_entry(4, "sleeping"), NOW)
    rep = parse_uptime(good(2), NOW)
    assert rep.scanner == "scanner1" and [e.seq for e in rep.entries] == [1, 2]


def test_state_not_an_object_and_one_alarm_a_minute(tmp_path: Path) -> None:
    now = [NOW]
    alarms: list[str] = []
    t = UptimeTracker(tmp_path, alarm=lambda *a, **kw: alarms.append(a[2]), clock=lambda: now[0])
    for _ in range(5):
        t.on_heartbeat(b"i", "edge-bad", "not a dict")
    assert alarms == ["uptime_refused"] and t.refused == 5
    now[0] += 61
    t.on_heartbeat(b"i", "edge-bad", {"uptime": 5})
    assert alarms == ["uptime_refused"] * 2
    t.close()


def test_heartbeat_without_uptime_is_fine(tmp_path: Path) -> None:
    alarms: list[str] = []
    t = UptimeTracker(tmp_path, alarm=lambda *a, **kw: alarms.append(a[2]))
    t.on_heartbeat(b"i", "edge-a", {"blocks": 3})
    assert alarms == [] and t.reply(b"i") == {}
    t.close()


def test_failed_commit_keeps_the_cause_and_the_ack(tmp_path: Path) -> None:
    """A write that fails mid-transaction: rolled back once, its cause raised, ack unmoved."""
    store = UptimeStore(tmp_path / "u.sqlite")
    assert store.ingest(good(2))["seq"] == 2
    store.db.execute(FAIL)
    with pytest.raises(sqlite3.IntegrityError, match="disk full"):
        store.ingest(good(4))
    assert not store.db.in_transaction()
    assert store._acked[("scanner1", "L1")] == 2  # in-memory state did not run ahead
    assert count(store) == 2
    store.db.execute("DROP TRIGGER fail")
    assert store.ingest(good(4))["seq"] == 4
    store.close()


def test_store_failure_is_refused_not_raised(tmp_path: Path) -> None:
    alarms: list[str] = []
    t = UptimeTracker(tmp_path, alarm=lambda *a, **kw: alarms.append(a[3]))
    t.on_heartbeat(b"i", "edge-a", {"uptime": good(2)})
    t.store.db.execute(FAIL)
    t.on_heartbeat(b"i", "edge-a", {"uptime": good(4)})  # must not raise into the loop
    assert t.reply(b"i") == {"uptime_ack": {"scanner": "scanner1", "log": "L1", "seq": 2}}
    assert len(alarms) == 1 and "could not be stored" in alarms[0] and "disk full" in alarms[0]
    t.close()


def test_uptime_for_a_scanner_of_another_edge_is_refused(tmp_path: Path) -> None:
    cir = Cir(tmp_path)  # the CIR's streams: scanner1 → edge-a
    cir.wsql.insert("streams", [{"scanner": "scanner1", "edge": "edge-a"}])
    cir.close()
    alarms: list[tuple[str, str]] = []
    t = UptimeTracker(tmp_path, alarm=lambda sc, edge, kind, msg, **kw: alarms.append((edge, msg)))
    t.on_heartbeat(b"i", "edge-b", {"uptime": good(2)})
    assert t.reply(b"i") == {} and t.store.scanners() == []
    assert alarms and alarms[0][0] == "edge-b" and "bound to edge edge-a" in alarms[0][1]
    t.on_heartbeat(b"i", "edge-a", {"uptime": good(2)})
    assert t.store.scanners() == ["scanner1"]
    t.close()
