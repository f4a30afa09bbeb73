"""Uptime records in the CIR's database, on both engines (decision 0017): the embedded
SQLite file and a real PostgreSQL server of our own.  Entries, acknowledgements,
commissioning and alerts behave the same; two aggregators on one database keep one
record; an older release's ``uptime.sqlite`` is moved in once."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from central import Cir
from central._sql import MIGRATIONS, Sql
from central._uptime import Sla, UptimeStore, UptimeTracker, import_legacy, period
from core.errors import ConfigError
from nii.__main__ import main

PKT = dt.timezone(dt.timedelta(hours=5))
NOW = time.time()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    return "" if request.param == "sqlite" else str(request.getfixturevalue("pg_database"))


def target(tmp_path: Path, database: str) -> str:
    return database or str(tmp_path / "cir.sqlite")


def beat(seqs: list[int], t0: float = NOW - 3600, log: str = "L1", state: str = "ready") -> Any:
    a = int(t0 * 1e9)
    return {
        "scanner": "scanner1",
        "log": log,
        "entries": [[s, "boot", int((s - 1) * 60e9), a, state, "mark"] for s in seqs],
    }


def test_entries_acks_and_commissioning(tmp_path: Path, database: str) -> None:
    store = UptimeStore(target(tmp_path, database))
    try:
        assert store.ingest(beat([1, 2, 3]))["seq"] == 3
        assert store.ingest(beat([5, 6]))["seq"] == 3  # 4 is missing: the ack waits for it
        assert store.ingest(beat([2, 3, 4]))["seq"] == 6  # resent ones are stored once
        assert [r[1] for r in store.rows("scanner1")] == [1, 2, 3, 4, 5, 6]
        assert store.rows("scanner1")[0] == (
            "L1",
            1,
            "boot",
            0,
            int((NOW - 3600) * 1e9),
            "ready",
            "mark",
        )
        assert store.scanners() == ["scanner1"]
        # the first entry heard commissions the scanner; an earlier one moves it back
        assert store.commissioned("scanner1") == pytest.approx(NOW - 3600)
        store.ingest(beat([1], t0=NOW - 7200, log="L0"))
        assert store.commissioned("scanner1") == pytest.approx(NOW - 7200)
        store.commission("scanner1", NOW - 86400)  # explicit wins, and stays
        store.ingest(beat([1], t0=NOW - 9000, log="L9"))
        assert store.commissioned("scanner1") == pytest.approx(NOW - 86400)
        store.commission("scanner7", NOW)
        assert store.scanners() == ["scanner1", "scanner7"]
        assert not store.alerted("scanner1", "2025-07")
        store.mark_alerted("scanner1", "2025-07")
        store.mark_alerted("scanner1", "2025-07")  # once is enough, twice is no error
        assert store.alerted("scanner1", "2025-07")
    finally:
        store.close()


def test_two_aggregators_keep_one_record(tmp_path: Path, database: str) -> None:
    """An edge that fails over to another aggregator carries on where the first left."""
    a = UptimeStore(target(tmp_path, database))
    b = UptimeStore(target(tmp_path, database))
    try:
        assert a.ingest(beat([1, 2]))["seq"] == 2
        assert b.ingest(beat([3]))["seq"] == 3  # b's first answer already counts a's entries
        assert a.ingest(beat([4]))["seq"] == 4
        assert [r[1] for r in b.rows("scanner1")] == [1, 2, 3, 4]
        # a late answer of the aggregator the edge left never moves the ack back
        b.db.execute("UPDATE uptime_logs SET acked_seq = 1")
        assert b.ingest(beat([2]))["seq"] == 4
        assert a.db.value("SELECT acked_seq FROM uptime_logs") == 4
    finally:
        a.close()
        b.close()


def test_failed_commit_keeps_the_ack(tmp_path: Path, database: str) -> None:
    store = UptimeStore(target(tmp_path, database))
    db = store.db
    try:
        assert store.ingest(beat([1, 2]))["seq"] == 2
        if db.postgres:
            db.execute(
                "CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'disk full (t)'; END $$"
            )
            db.execute(
                "CREATE TRIGGER fail BEFORE INSERT ON uptime_logs "
                "FOR EACH ROW EXECUTE FUNCTION fail()"
            )
        else:
            db.execute(
                "CREATE TRIGGER fail BEFORE INSERT ON uptime_logs "
                "BEGIN SELECT RAISE(ABORT, 'disk full (t)'); END"
            )
        with pytest.raises(Exception, match="disk full"):
            store.ingest(beat([3, 4]))
        assert not db.in_transaction()
        assert db.value("SELECT COUNT(*) AS n FROM uptime_entries") == 2  # rolled back
        assert store._acked[("scanner1", "L1")] == 2
        db.execute("DROP TRIGGER fail" + (" ON uptime_logs" if db.postgres else ""))
        assert store.ingest(beat([3, 4]))["seq"] == 4
    finally:
        store.close()


def test_tracker_on_the_cir(tmp_path: Path, database: str) -> None:
    """Central's side: the owner comes from the CIR's streams; refusals change nothing;
    the SLA projection alarms once per period."""
    cir = Cir(tmp_path, database=database)  # what central opens first
    cir.wsql.insert("streams", [{"scanner": "scanner1", "edge": "edge-a"}])
    cir.close()
    alarms: list[tuple[str, str]] = []
    now = [NOW]
    t = UptimeTracker(
        tmp_path,
        database=database,
        alarm=lambda sc, edge, kind, msg, **kw: alarms.append((kind, msg)),
        sla=Sla(tz=PKT),
        clock=lambda: now[0],
    )
    try:
        t.on_heartbeat(b"i", "edge-b", {"uptime": beat([1, 2])})
        assert t.reply(b"i") == {} and t.store.scanners() == []
        assert alarms[0][0] == "uptime_refused" and "bound to edge edge-a" in alarms[0][1]
        # three days: one ready, two in fault; the month's projection is under 98 %
        first = period("month", NOW, PKT).start + 60.0
        now[0] = first + 3 * 86400
        doc = beat(list(range(1, 3 * 1440 + 2)), t0=first)
        for e in doc["entries"][1441:]:
            e[4] = "fault"
        for i in range(0, len(doc["entries"]), 1000):
            t.on_heartbeat(
                b"i", "edge-a", {"uptime": {**doc, "entries": doc["entries"][i : i + 1000]}}
            )
        assert t.refused == 1 and t.reply(b"i")["uptime_ack"]["seq"] == 3 * 1440 + 1
        a = t.account("scanner1", period("month", now[0], PKT))
        assert a.availability == pytest.approx(1 / 3, abs=1e-3)
        low = t.check_projection()
        assert {x.period.label for x in low} == {
            period("month", now[0], PKT).label,
            period("fiscal", now[0], PKT).label,
        }
        assert t.check_projection() == []  # once per period, kept in the CIR
        assert [k for k, _ in alarms].count("sla_projection") == 2
    finally:
        t.close()


def write_legacy(path: Path, *, explicit: bool = True) -> None:
    """A central uptime store as releases before decision 0017 kept it."""
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE entries (
            scanner TEXT, log TEXT, seq INTEGER, boot TEXT, mono_ns INTEGER,
            anchor_ns INTEGER, state TEXT, cause TEXT, recv_ns INTEGER,
            PRIMARY KEY (scanner, log, seq));
        CREATE TABLE logs (scanner TEXT, log TEXT, acked_seq INTEGER, PRIMARY KEY (scanner, log));
        CREATE TABLE alerts (
            scanner TEXT, period TEXT, ts_ns INTEGER, PRIMARY KEY (scanner, period));
        CREATE TABLE commissioned (scanner TEXT PRIMARY KEY, at REAL, how TEXT, ts_ns INTEGER);
        """
    )
    a = int((NOW - 3600) * 1e9)
    con.executemany(
        "INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?)",
        [("scanner1", "L1", s, "b", int((s - 1) * 60e9), a, "ready", "", a) for s in (1, 2, 3)],
    )
    con.execute("INSERT INTO logs VALUES ('scanner1', 'L1', 3)")
    con.execute("INSERT INTO alerts VALUES ('scanner1', '2025-07', 1)")
    how = "explicit" if explicit else "first heartbeat"
    con.execute("INSERT INTO commissioned VALUES ('scanner1', ?, ?, 1)", [NOW - 86400, how])
    con.commit()
    con.close()


def test_an_older_release_store_is_moved_in_once(tmp_path: Path, database: str) -> None:
    old = tmp_path / "uptime.sqlite"
    write_legacy(old)
    cir = Cir(tmp_path, database=database)
    cir.close()
    t = UptimeTracker(tmp_path, database=database)
    try:
        assert not old.exists() and (tmp_path / "uptime.sqlite.imported").exists()
        assert [r[1] for r in t.store.rows("scanner1")] == [1, 2, 3]
        assert t.store.alerted("scanner1", "2025-07")
        assert t.store.commissioned("scanner1") == pytest.approx(NOW - 86400)
        t.on_heartbeat(b"i", "edge-a", {"uptime": beat([4])})  # the ack carries on
        assert t.reply(b"i")["uptime_ack"]["seq"] == 4
    finally:
        t.close()
    # a crash between the commit and the rename: the same file again changes nothing
    write_legacy(old)
    db = Sql(target(tmp_path, database))
    try:
        assert import_legacy(db, old) > 0
        assert db.value("SELECT COUNT(*) AS n FROM uptime_entries") == 4
        assert db.value("SELECT acked_seq FROM uptime_logs") == 4
        assert import_legacy(db, old) == 0  # renamed: nothing left to read
    finally:
        db.close()


def test_an_old_store_that_does_not_fit_is_one_config_error(tmp_path: Path, database: str) -> None:
    old = tmp_path / "uptime.sqlite"
    write_legacy(old)
    con = sqlite3.connect(old)
    con.execute("UPDATE commissioned SET at = NULL")  # damaged: no time
    con.commit()
    con.close()
    with pytest.raises(ConfigError, match="cannot move the old uptime record") as e:
        UptimeStore(target(tmp_path, database), legacy=old)
    assert "move the file aside" in e.value.fix
    assert old.exists()  # kept where it was, nothing half moved
    store = UptimeStore(target(tmp_path, database))
    try:
        assert store.scanners() == []
    finally:
        store.close()


def test_an_edge_state_log_is_left_alone(tmp_path: Path) -> None:
    from edge._uptime import StateLog

    StateLog(tmp_path / "uptime.sqlite").close()  # an edge and central sharing a folder
    db = Sql(tmp_path / "cir.sqlite")
    try:
        assert import_legacy(db, tmp_path / "uptime.sqlite") == 0
        assert (tmp_path / "uptime.sqlite").exists()
    finally:
        db.close()


def test_cli_commission_and_report(
    tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``nii uptime`` reads the CIR that ``[central]`` names, SQLite or PostgreSQL."""
    conf = tmp_path / "central.toml"
    conf.write_text(
        '[central]\nstate_dir = "cir"\nkey = "keys/cir.key"\n'
        + (f'cir = "{database}"\n' if database else "")
    )
    cir = Cir(tmp_path / "cir", database=database)
    cir.wsql.insert("streams", [{"scanner": "scanner1", "edge": "edge-a"}])
    cir.close()
    write_legacy(tmp_path / "cir" / "uptime.sqlite", explicit=False)
    args = ["uptime", "commission", "--config", str(conf), "--scanner"]
    assert main([*args, "ghost"]) == 2
    assert "is known to this CIR" in capsys.readouterr().err
    assert main([*args, "scanner1", "--at", "2025-07-01T00:00"]) == 0
    assert "scanner scanner1 commissioned at 2025-07-01T00:00:00" in capsys.readouterr().out
    out = tmp_path / "rep"
    assert main(["uptime", "report", "--config", str(conf), "--out", str(out)]) == 0
    assert "scanner1" in capsys.readouterr().out
    assert list(out.glob("uptime-*.csv")) and list(out.glob("uptime-*.png"))
    db = Sql(database or tmp_path / "cir" / "cir.sqlite")
    try:  # the old store's rows came in before the commissioning replaced its own
        assert db.value("SELECT COUNT(*) AS n FROM uptime_entries") == 3
        assert db.value("SELECT how FROM uptime_commissioned") == "explicit"
    finally:
        db.close()


def test_schema_steps_are_one_sequence() -> None:
    """A gap would let a database skip a step that comes later (migrate applies only
    versions above the one it has)."""
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
