"""The CIR's metadata on both engines: the embedded SQLite file and a real PostgreSQL
server of our own (``nii._local_servers``).  The same chain commits once, reads back
verified and bit-identical, and a tampered row is found, whichever holds it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest

from central._cir import Cir, LeaseLost
from central._ingest import Ingest, Work
from central._reader import scan_arrays, verify_stream
from central._sql import MIGRATIONS, Sql, migrate, schema_version
from core.errors import ConfigError
from core.messages import BlockMsg
from core.seal import Opener
from tests.unit.central._chain import IDENT, SCANNER, committed_cir


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    return "" if request.param == "sqlite" else str(request.getfixturevalue("pg_database"))


def test_a_chain_commits_once_and_reads_back_verified(tmp_path: Path, database: str) -> None:
    cir, r, hashes = committed_cir(tmp_path / "cir", database=database)
    try:
        assert schema_version(cir.sql) == max(m.version for m in MIGRATIONS)
        assert verify_stream(cir, SCANNER).ok
        arrays = scan_arrays(cir, Opener(r.cir), 1)
        assert list(arrays["line_no"]) == [0, 1, 2, 3]
        assert [cir.block_hash(SCANNER, i) for i in range(3)] == hashes
        (scan,) = cir.scans()
        assert (scan["ref"], scan["status"], scan["lines_received"]) == (1, "complete", 4)
        st = cir.stream(SCANNER)
        assert st is not None and st.last_seq == 2
        assert cir.next_scan_ref() == 2 and cir.scanner_ids() == [SCANNER]
        # the same block again: the database itself refuses a second (scanner, seq)
        ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
        seq, raw = r.data(1, [4])
        work = Work()
        ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
        cir.commit(work.staged, ingest.streams, {k: ingest.scans[k] for k in work.scans}, [])
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            cir.commit(work.staged, ingest.streams, {}, [])
        assert len(list(cir.stream_blocks(SCANNER))) == 4
        cir.wsql.execute("UPDATE blocks SET scan_id = 9 WHERE scanner = ? AND seq = 1", [SCANNER])
        assert any("scan_id 9" in p for p in verify_stream(cir, SCANNER).problems)
    finally:
        cir.close()


def test_a_reopened_cir_keeps_its_schema_and_rows(tmp_path: Path, database: str) -> None:
    cir, _, hashes = committed_cir(tmp_path / "cir", database=database)
    cir.close()
    again = Cir(tmp_path / "cir", create=False, database=database)
    try:
        assert migrate(again.wsql) == []  # nothing left to apply
        assert again.block_hash(SCANNER, 2) == hashes[2]
    finally:
        again.close()


def test_a_database_newer_than_the_program_is_refused(tmp_path: Path, database: str) -> None:
    target = database or str(tmp_path / "cir.sqlite")
    db = Sql(target)
    try:
        migrate(db)
        if db.postgres:
            db.execute("INSERT INTO schema_version (version, what, applied_ns) VALUES (99, 'x', 0)")
        else:
            db.execute("PRAGMA user_version = 99")
        with pytest.raises(ConfigError, match="schema version 99"):
            migrate(db)
    finally:
        db.close()


def test_an_unreachable_database_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot reach the CIR's database") as err:
        Cir(tmp_path / "cir", database="postgresql://nii:secret@127.0.0.1:1/nii")
    assert "secret" not in err.value.message and err.value.fix


def _until(fn: Any, deadline_s: float = 10.0) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = fn()
        if got is not None:
            return got
        time.sleep(0.02)
    raise AssertionError("condition not met before the deadline")


def _stop_mid_pipeline(cir: Cir, statement: bytes) -> None:
    """Leave ``cir``'s writer session inside a transaction, in the middle of a pipeline
    that ran ``statement`` (for SCANNER) and is never finished: as a process stopped
    there (SIGSTOP) leaves it. The server waits for the rest; its locks stay."""
    pg = cir.wsql.conn.pgconn
    pg.send_query(b"BEGIN")
    while pg.get_result() is not None:
        pass
    pg.enter_pipeline_mode()
    pg.send_query_params(statement, [SCANNER.encode()])
    pg.flush()


def _two_aggregators(tmp_path: Path, database: str) -> tuple[Cir, Cir]:
    """Aggregators agg-a (its CIR holding one scan) and agg-b on one CIR, their writer
    sessions named as central names them."""
    a, _, _ = committed_cir(tmp_path / "cir", database=database)
    b = Cir(tmp_path / "cir", database=database)
    a.name_writer("agg-a#boot1")
    b.name_writer("agg-b#boot1")
    return a, b


def test_a_holder_stopped_mid_pipeline_is_ended_by_the_taker_of_its_expired_lease(
    tmp_path: Path, pg_database: str
) -> None:
    """A process stopped in the middle of a pipeline (psycopg's executemany) holds the
    rows it locked for good: the server waits for the rest of the pipeline, so its
    idle-in-transaction timeout never starts. Once its lease has expired, the taker
    ends that session and takes the lease; while the lease is live it only waits."""
    a, b = _two_aggregators(tmp_path, pg_database)
    try:
        tok_a = a.acquire_lease(SCANNER, "agg-a#boot1", 3.0)
        assert tok_a is not None
        # A locks its lease row as a commit does, inside a pipeline it never finishes
        _stop_mid_pipeline(a, b"SELECT token FROM stream_leases WHERE scanner = $1 FOR UPDATE")
        # the lease is live: B waits (a bounded wait), and ends nothing
        t0 = time.monotonic()
        assert b.acquire_lease(SCANNER, "agg-b#boot1", 5.0) is None
        assert time.monotonic() - t0 < 10
        assert b.wsql.value(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = ?",
            ["nii boot1 agg-a"],
        )
        # expired: B ends A's stuck session and takes the lease with a new token
        tok_b = _until(lambda: b.acquire_lease(SCANNER, "agg-b#boot1", 5.0), 20.0)
        assert tok_b == tok_a + 1
        assert not b.wsql.value(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = ?",
            ["nii boot1 agg-a"],
        )
    finally:
        b.close()
        with contextlib.suppress(Exception):
            a.close()


def test_a_takeover_ends_the_old_holders_session_stuck_on_other_rows(
    tmp_path: Path, pg_database: str
) -> None:
    """The old holder stopped mid-pipeline after writing its stream's row, not its
    lease row: the take succeeds at once, and then ends the stuck session, else the
    new holder's first commit would wait on that row for good."""
    a, b = _two_aggregators(tmp_path, pg_database)
    try:
        tok_a = a.acquire_lease(SCANNER, "agg-a#boot1", 2.5)
        _stop_mid_pipeline(a, b"UPDATE streams SET updated_ns = updated_ns WHERE scanner = $1")
        tok_b = _until(lambda: b.acquire_lease(SCANNER, "agg-b#boot1", 5.0), 20.0)
        assert tok_a is not None and tok_b == tok_a + 1
        with b.wsql.transaction():  # the stream's row is free for the new holder
            b.wsql.execute("SET LOCAL lock_timeout = 3000")
            b.wsql.execute(
                "UPDATE streams SET updated_ns = updated_ns WHERE scanner = ?", [SCANNER]
            )
        # a holder's healthy, idle session is left alone
        c = Cir(tmp_path / "cir", database=pg_database)
        c.name_writer("agg-c#boot1")
        try:
            tok_c = _until(lambda: c.acquire_lease(SCANNER, "agg-c#boot1", 5.0), 20.0)
            assert tok_c == tok_b + 1 and b.wsql.value("SELECT 1 AS one") == 1
        finally:
            c.close()
    finally:
        b.close()
        with contextlib.suppress(Exception):
            a.close()


def test_a_paused_aggregator_whose_lease_was_taken_over_cannot_commit(
    tmp_path: Path, database: str
) -> None:
    """Two aggregators on one CIR (two connections each, as two processes have): A holds
    scanner s1's lease, stops renewing (SIGSTOP, a network cut), B takes the lease over
    once it expired; A's next batch commits nothing, B's commits."""
    a, r, _ = committed_cir(tmp_path / "cir", database=database)
    b = Cir(tmp_path / "cir", database=database)
    try:
        tok_a = a.acquire_lease(SCANNER, "host-a/1", 0.3)
        assert tok_a is not None
        assert b.acquire_lease(SCANNER, "host-b/1", 0.3) is None  # A's lease is live
        assert a.acquire_lease(SCANNER, "host-a/1", 0.3) == tok_a  # renewing keeps the token
        assert a.renew_leases({SCANNER: ("host-a/1", tok_a)}, 0.3) == []
        # A is paused: B takes over once A's lease ran out, with a new token
        tok_b = _until(lambda: b.acquire_lease(SCANNER, "host-b/1", 5.0))
        assert tok_b == tok_a + 1
        ingest = Ingest(a, Opener(r.cir).open, r._alarm)
        seq, raw = r.data(1, [4])
        work = Work()
        ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
        before = len(list(a.stream_blocks(SCANNER)))
        with pytest.raises(LeaseLost, match="no longer this aggregator's") as err:
            a.commit(work.staged, ingest.streams, {}, [], leases={SCANNER: ("host-a/1", tok_a)})
        assert err.value.scanners == [SCANNER]
        assert len(list(b.stream_blocks(SCANNER))) == before
        assert a.renew_leases({SCANNER: ("host-a/1", tok_a)}, 5.0) == [SCANNER]
        b.commit(work.staged, ingest.streams, {}, [], leases={SCANNER: ("host-b/1", tok_b)})
        assert len(list(b.stream_blocks(SCANNER))) == before + 1
        # a clean shutdown gives the lease up at once
        assert b.release_lease(SCANNER, "host-b/1", tok_b)
        assert not b.release_lease(SCANNER, "host-b/1", tok_b - 1)  # not its token
        assert a.acquire_lease(SCANNER, "host-a/1", 5.0) == tok_b + 1
        assert a.release_lease(SCANNER, "host-a/1", tok_b + 1)
        # a restarted aggregator (same name, new boot) succeeds its dead predecessor at
        # once, with a new token; another name still waits for the lease to expire
        assert a.acquire_lease(SCANNER, "agg-a#boot1", 5.0) == tok_b + 2
        assert b.acquire_lease(SCANNER, "agg-b#boot1", 5.0) is None
        assert a.acquire_lease(SCANNER, "agg-a#boot2", 5.0) == tok_b + 3
    finally:
        b.close()
        a.close()


def test_the_live_atrs_tables_hold_on_both_engines(tmp_path: Path, database: str) -> None:
    """Verdicts, ATT results (an entry scan pairs once), officers' confirmations (history:
    never changed) and learned profiles, through the stores the live ATR and the commands
    use."""
    from central.atr._library import load_library
    from central.atr._store import AttStore, LibraryStore, VerdictStore, att_docs, profile_docs

    cir, _, _ = committed_cir(tmp_path / "cir", database=database)
    target = cir.sql.target
    try:
        v = VerdictStore(target)
        v.put({"ref": 1, "scanner": SCANNER, "verdict": "green", "findings": []})
        v.put({"ref": 1, "scanner": SCANNER, "verdict": "red", "findings": [{}]})  # replaces
        assert v.get(1)["verdict"] == "red" and v.get(2) is None  # type: ignore[index]
        assert [(r["ref"], r["findings"]) for r in v.rows()] == [(1, 1)]
        v.close()
        a = AttStore(target)
        doc = {"ref_b": 5, "ref_a": 1, "result": "consistent: release", "hold": False}
        a.put(doc, alarm=cir.alarm_row(SCANNER, "e", "att_hold", "held"))
        assert a.paired(1)["ref_b"] == 5  # type: ignore[index]
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            a.put({**doc, "ref_b": 6})  # entry scan 1 is Scan A of exit scan 5 already
        assert [d["ref_b"] for d in att_docs(cir.sql)] == [5]
        assert [x["kind"] for x in cir.alarm_rows()] == ["att_hold"]
        a.close()
        lib = LibraryStore(target)
        assert lib.has_scan(1) and not lib.has_scan(99)
        row = {"ref": 1, "verdict": "green", "atr_verdict": "red", "by": "ana",
               "created_ns": 1, "note": "", "corrects": None, "heading": "6907"}  # fmt: skip
        first = lib.add_confirmation(row)
        second = lib.add_confirmation({**row, "verdict": "red", "corrects": first})
        assert second > first
        assert [c["by"] for c in lib.confirmations(1)] == ["ana", "ana"]
        with pytest.raises(Exception, match="history"):
            lib.db.execute("UPDATE confirmations SET verdict = 'green'")
        with pytest.raises(Exception, match="history"):
            lib.db.execute("DELETE FROM confirmations")
        assert len(load_library(target).confirmed) == 0  # no confirmation with a descriptor
        assert lib.put_profiles([{"heading": "6907", "n": 3, "used": False}], 5) == 1
        assert lib.put_profiles([{"heading": "6907", "n": 4, "used": False}], 6) == 2
        assert profile_docs(lib.db) == (
            2,
            [{"heading": "6907", "n": 4, "used": False, "version": 2}],
        )
        lib.close()
    finally:
        cir.close()


def test_a_database_that_restarts_is_a_storage_error_then_commits_again(tmp_path: Path) -> None:
    """PostgreSQL stopped under a running CIR (a restart, a fail-over): a commit raises
    StorageError (central alarms and retries the same batch), and once the server is back
    on its address the same CIR commits again, on fresh connections."""
    import tempfile

    from core.errors import StorageError
    from nii._local_servers import start_postgres

    base = Path(tempfile.mkdtemp(prefix="nii-test-pg-restart-"))
    server = start_postgres(base)
    cir = None
    try:
        cir, r, _ = committed_cir(tmp_path / "cir", database=server.url)
        ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
        seq, raw = r.data(1, [4])
        work = Work()
        ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
        server.stop()
        scans = {k: ingest.scans[k] for k in work.scans}  # as central passes them
        with pytest.raises(StorageError, match="cannot write the CIR's database") as err:
            cir.commit(work.staged, ingest.streams, scans, [])
        assert err.value.fix and "nii@127.0.0.1" in err.value.path
        server = start_postgres(base, port=server.extra["port"])
        cir.commit(work.staged, ingest.streams, scans, [])
        assert len(list(cir.stream_blocks(SCANNER))) == 4 and verify_stream(cir, SCANNER).ok
    finally:
        if cir is not None:
            cir.close()
        server.stop()
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def test_a_cir_that_cannot_take_its_schema_is_one_clear_error(tmp_path: Path) -> None:
    """A CIR that cannot be written (here opened read-only; a read-only copy or a full
    disk alike) gets one ConfigError naming it when its schema is brought up, never a
    traceback."""
    import sqlite3 as sq

    path = tmp_path / "cir.sqlite"
    c = sq.connect(path)  # a database at schema version 0 (not an empty file: refused)
    c.execute("CREATE TABLE unrelated (x)")
    c.close()
    db = Sql(path, read_only=True)
    try:
        with pytest.raises(ConfigError, match="to schema version 1") as err:
            migrate(db)
        assert str(path) in err.value.message and err.value.fix
    finally:
        db.close()


def test_audit_queries_find_scans_by_gd_container_and_site_period(
    tmp_path: Path, database: str
) -> None:
    from bench.cir import SITE_SCANNERS, YEAR_START_NS, fill_scans

    cir = Cir(tmp_path / "cir", database=database)
    try:
        fill_scans(cir.wsql, 4000, sites=2)
        (row,) = cir.find_scans(gd_number="GD-000000123")
        assert (row["ref"], row["scanner"]) == (123, "site1-1")  # 123 mod 2, 123 div 2 mod 4
        assert {r["container"] for r in cir.find_scans(container=row["container"])} == {
            row["container"]
        }
        day = 86_400 * 10**9
        week = cir.find_scans(
            scanners=[f"site0-{k}" for k in range(SITE_SCANNERS)],
            since_ns=YEAR_START_NS + 10 * day,
            until_ns=YEAR_START_NS + 17 * day,
        )
        assert week and all(r["scanner"].startswith("site0-") for r in week)
        assert [r["started_ns"] for r in week] == sorted(r["started_ns"] for r in week)
        assert cir.find_scans(scanners=[]) == []
        with pytest.raises(ValueError):
            cir.find_scans()
    finally:
        cir.close()


def test_schema_step_7_takes_gd_numbers_from_the_scans_already_there(
    tmp_path: Path, database: str
) -> None:
    import json

    db = Sql(database or tmp_path / "cir.sqlite")
    try:
        migrate(db, [m for m in MIGRATIONS if m.version < 7])
        records = [
            {"gd": {"gd_number": "KAPE-HC-1"}},
            {"gd": {"gd_number": 7}},  # not a string: not taken
            {"gd": "KAPE-HC-2"},  # no object: nothing to take
        ]
        for ref, rec in enumerate(records, 1):
            db.execute(
                "INSERT INTO scans (ref, scanner, start_record) VALUES (?, 's', ?)",
                [ref, json.dumps(rec)],
            )
        db.execute("INSERT INTO scans (ref, scanner, start_record) VALUES (4, 's', 'NaN{')")
        assert 7 in migrate(db)
        got = {r["ref"]: r["gd_number"] for r in db.rows("SELECT ref, gd_number FROM scans")}
        assert got == {1: "KAPE-HC-1", 2: None, 3: None, 4: None}
    finally:
        db.close()


def test_the_ingest_takes_the_gd_number_of_a_start_record() -> None:
    from central._scanbook import gd_number

    assert gd_number({"gd": {"gd_number": "KAPE-HC-1"}}) == "KAPE-HC-1"
    assert gd_number({"gd": {"gd_number": "x" * 300}}) == "x" * 256
    assert gd_number({"gd": {"gd_number": 7}}) is None
    assert gd_number({"gd": "KAPE"}) is None and gd_number({}) is None


def test_a_session_stopped_inside_a_transaction_is_ended_by_the_server(pg_database: str) -> None:
    """An aggregator stopped mid-transaction (SIGSTOP, a frozen VM) must not hold its row
    locks for good: every connection asks the server to end such a session."""
    from central._sql import IDLE_IN_TRANSACTION_MS, Sql

    db = Sql(pg_database)
    try:
        got = db.value("SELECT current_setting('idle_in_transaction_session_timeout') AS v")
        assert got == f"{IDLE_IN_TRANSACTION_MS // 1000}s"
    finally:
        db.close()
