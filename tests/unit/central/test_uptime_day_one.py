"""Day one (kind 11): accounting starts at commissioning; no projection from too little data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from central._uptime import Sla, UptimeStore, UptimeTracker, format_table, period, report
from core.errors import ConfigError

PKT = dt.timezone(dt.timedelta(hours=5))
MONTH0 = dt.datetime(2025, 7, 1, tzinfo=PKT).timestamp()
H = 3600.0


def beat(t0: float, minutes: int, state: str = "ready", log: str = "L") -> dict[str, Any]:
    anchor = int(t0 * 1e9)
    return {
        "scanner": "scanner1",
        "log": log,
        "entries": [[i + 1, "b", int(i * 60e9), anchor, state, "mark"] for i in range(minutes + 1)],
    }


def tracker(tmp: Path, now: list[float], alarms: list[tuple[str, str]]) -> UptimeTracker:
    t = UptimeTracker(
        tmp,
        alarm=lambda scanner, edge, kind, message, **kw: alarms.append((kind, message)),
        sla=Sla(tz=PKT),
        clock=lambda: now[0],
    )
    return t


def test_new_installation_is_not_offline_before_its_first_heartbeat(tmp_path: Path) -> None:
    first = MONTH0 + 13 * 86400 + 10 * H  # installed on the 14th, 10:00
    now = [first + 60]
    alarms: list[tuple[str, str]] = []
    t = tracker(tmp_path, now, alarms)
    t.on_heartbeat(b"i", "edge-a", {"uptime": beat(first, 1)})
    assert t.store.commissioned("scanner1") == pytest.approx(first)
    a = t.account("scanner1", period("month", now[0], PKT))
    assert a.availability == pytest.approx(1.0)  # not 3.65 %: the 13 days before do not count
    assert a.since == pytest.approx(first)
    assert not a.enough_data
    assert t.check_projection() == [] and alarms == []
    table = format_table([a], t.sla)
    assert "not enough data" in table and "BREACH" not in table
    t.close()


def test_projection_after_a_day_of_data(tmp_path: Path) -> None:
    first = MONTH0 + 13 * 86400
    now = [first + 25 * H]
    alarms: list[tuple[str, str]] = []
    t = tracker(tmp_path, now, alarms)
    doc = beat(first, 22 * 60)  # 22 h ready, then 3 h fault: 88 %
    doc["entries"] += [
        [22 * 60 + 2 + i, "b", int((22 * 60 + 1 + i) * 60e9), int(first * 1e9), "fault", "F1"]
        for i in range(180)
    ]
    entries = doc["entries"]
    for i in range(0, len(entries), 200):  # as the edge sends them: 200 a heartbeat
        t.on_heartbeat(b"i", "edge-a", {"uptime": {**doc, "entries": entries[i : i + 200]}})
    assert t.refused == 0
    a = t.account("scanner1", period("month", now[0], PKT))
    assert a.enough_data and a.availability == pytest.approx(22 / 25, abs=2e-3)
    low = t.check_projection()
    assert {x.period.label for x in low} == {"2025-07", "FY2025-26"}
    assert [k for k, _ in alarms] == ["sla_projection", "sla_projection"]
    t.close()


def test_enough_data_rule_for_a_day_period(tmp_path: Path) -> None:
    day = MONTH0 + 3 * 86400
    store = UptimeStore(tmp_path / "u.sqlite")
    store.ingest(beat(day, 80), recv_ns=int((day + 81 * 60) * 1e9))
    accounts, _, _ = report(
        store, Sla(tz=PKT), spec="2025-07-04", out_dir=tmp_path, now=day + 70 * 60
    )
    assert not accounts[0].enough_data  # 70 min < 5 % of a day (72 min)
    accounts, _, _ = report(
        store, Sla(tz=PKT), spec="2025-07-04", out_dir=tmp_path, now=day + 80 * 60
    )
    assert accounts[0].enough_data
    store.close()


def test_explicit_commissioning_wins_and_is_kept(tmp_path: Path) -> None:
    first = MONTH0 + 10 * 86400
    store = UptimeStore(tmp_path / "u.sqlite")
    store.commission("scanner1", first - 2 * 86400)  # installed two days before the edge ran
    store.ingest(beat(first, 5))
    assert store.commissioned("scanner1") == pytest.approx(first - 2 * 86400)
    store.close()
    store = UptimeStore(tmp_path / "u.sqlite", create=False)
    assert store.commissioned("scanner1") == pytest.approx(first - 2 * 86400)
    sla = Sla(tz=PKT)
    accounts, _, _ = report(store, sla, spec="2025-07", out_dir=tmp_path, now=first + 300)
    assert accounts[0].by_state["offline"] == pytest.approx(2 * 86400)  # its choice, counted
    store.close()


def test_commissioned_scanner_without_entries_is_known(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path / "u.sqlite")
    store.commission("scanner9", MONTH0)
    assert store.scanners() == ["scanner9"]
    store.close()


def test_report_of_an_unknown_scanner_names_the_known_ones(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path / "u.sqlite")
    store.ingest(beat(MONTH0, 3))
    with pytest.raises(ConfigError) as e:
        report(store, Sla(tz=PKT), scanners=["scanner7"], out_dir=tmp_path, now=MONTH0 + H)
    assert "'scanner7'" in e.value.message and "known: scanner1" in e.value.message
    assert e.value.fix
    assert not list(tmp_path.glob("uptime-*"))  # nothing written
    store.close()


def test_store_not_created_where_none_is(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no uptime record"):
        UptimeStore(tmp_path / "nowhere" / "uptime.sqlite", create=False)
    assert not (tmp_path / "nowhere").exists()


def test_a_damaged_store_is_a_config_error(tmp_path: Path) -> None:
    from edge._uptime import StateLog

    bad = tmp_path / "uptime.sqlite"
    bad.write_bytes(b"not a database, " * 100)
    with pytest.raises(ConfigError, match="cannot open the uptime record"):
        UptimeStore(bad)
    with pytest.raises(ConfigError, match="cannot open the scanner state log") as e:
        StateLog(bad)
    assert e.value.fix


@pytest.mark.parametrize(
    "text",
    [
        'target = "98 %"',
        "target = 98",
        "timezone = 5",
        'timezone = "Mars/Olympus"',
        'hours = "6-22"',
        "maintenance = 3",
        '[[maintenance]]\nscanner = "s"\nstart = 2025-07-20T06:00:00\nend = 2025-07-20T02:00:00',
        "target = [",
    ],
)
def test_bad_sla_file_is_one_config_error(tmp_path: Path, text: str) -> None:
    f = tmp_path / "sla.toml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError) as e:
        Sla.load(f)
    assert str(f) in e.value.message and e.value.fix
