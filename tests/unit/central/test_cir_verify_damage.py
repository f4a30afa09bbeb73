"""``nii cir verify`` on a CIR damaged below the rows it checks: emptied, cut to nothing,
a table dropped, a page overwritten, rows holding what no row should, a CIR key file
that is no key. Each is one clear failure (exit 1, or 2 for a CIR that is not there),
never a pass and never "this is a bug".
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import zmq

import central._reader
from central._reader import judge_orphans
from core.keys import CirKey
from core.seal import parse
from tests.unit.central._chain import committed_cir


def _cli_cir(tmp_path: Path) -> tuple[list[str], Path]:
    cir, r, _ = committed_cir(tmp_path / "cir")
    cir.close()
    CirKey(r.cir, *reversed(zmq.curve_keypair())).save(tmp_path / "keys")
    (tmp_path / "central.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "cir"\n')
    return ["--config", str(tmp_path / "central.toml")], tmp_path / "cir" / "cir.sqlite"


def _sql(db: Path, script: str) -> None:
    c = sqlite3.connect(db)
    c.executescript(script)
    c.commit()
    c.close()


def _checkpoint(db: Path) -> int:
    """Move the write-ahead log into ``db`` itself (so that its bytes are the whole
    database); returns its page size."""
    c = sqlite3.connect(db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = int(c.execute("PRAGMA page_size").fetchone()[0])
    c.close()
    return page


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    from nii.__main__ import main

    rc = main(list(argv))
    got = capsys.readouterr()
    assert "this is a bug" not in got.err and "Traceback" not in got.err, got.err
    return rc, got.out + got.err


def test_a_cir_emptied_of_its_rows_is_found_by_its_blobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, db = _cli_cir(tmp_path)
    assert _run(capsys, "cir", "verify", *cfg)[0] == 0
    _sql(db, "DELETE FROM blocks; DELETE FROM scans; DELETE FROM streams")
    rc, out = _run(capsys, "cir", "verify", *cfg)
    assert rc == 1, out
    assert "3 sealed block(s) of s1 (seq 0..2)" in out and "no chain of that scanner" in out
    assert "verification FAILED" in out and "index rows of committed blocks were deleted" in out
    # on a live CIR, blocks made in the last minutes may be a batch still committing
    monkeypatch.setattr(central._reader, "IN_FLIGHT_NS", 10**20)
    rc, out = _run(capsys, "cir", "verify", *cfg)
    assert rc == 0 and "3 blob(s)" in out and "still committing" in out


def test_a_block_row_deleted_under_the_head_is_named_by_its_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cir, r, _ = committed_cir(tmp_path / "cir")
    try:
        cir.wsql.execute("DELETE FROM blocks WHERE seq = 1")
        rep = judge_orphans(cir, cir.orphan_blobs())
        assert rep.cut_short == [] and len(rep.deleted) == 1
        assert "1 committed block(s) of s1 (seq 1)" in rep.deleted[0]
        assert "head is seq 2" in rep.deleted[0]
        # a sealed block beyond the head with no row: on its way in while it is young
        # (one batch at most), else the chain's last rows were deleted
        _, raw = r.data(1, [4])
        block = parse(raw)
        cir.blobs.put([(block.hash, raw)])
        monkeypatch.setattr(central._reader, "IN_FLIGHT_NS", 10**20)
        rep = judge_orphans(cir, cir.orphan_blobs())
        assert rep.cut_short == [block.hash.hex()] and len(rep.deleted) == 1
        monkeypatch.setattr(central._reader, "IN_FLIGHT_BLOCKS", 0)
        rep = judge_orphans(cir, cir.orphan_blobs())
        assert rep.cut_short == [] and len(rep.deleted) == 2
        assert "1 sealed block(s) of s1 (seq 3)" in rep.deleted[1]
        assert "its chain ends at seq 2" in rep.deleted[1]
        # a file that is no sealed block is named, and harms nothing
        cir.blobs.put([(b"\x07" * 32, b"not a block")])
        assert judge_orphans(cir, cir.orphan_blobs()).unsealed == ["07" * 32]
    finally:
        cir.close()


def test_a_cir_file_cut_to_nothing_is_refused_and_left_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, db = _cli_cir(tmp_path)
    _checkpoint(db)
    db.write_bytes(b"")
    for argv in (["verify"], ["scans"], ["verdict", "1"]):
        rc, out = _run(capsys, "cir", argv[0], *cfg, *argv[1:])
        assert rc == 2 and "is empty (0 bytes): it holds no CIR" in out, out
    assert db.stat().st_size == 0  # no schema written into what is evidence of a loss
    toml = db.parent.parent / "control-room.toml"
    toml.write_text('[control_room]\ncentral = "central.toml"\nsigning_key = "keys/cr.sign"\n')
    rc, out = _run(capsys, "users", "list", "--config", str(toml))
    assert rc == 2 and "is empty (0 bytes)" in out, out
    assert db.stat().st_size == 0


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        ("UPDATE blocks SET seq = 'x' WHERE seq = 1", "a block row whose seq is 'x'"),
        ("UPDATE blocks SET seq = 1.5 WHERE seq = 1", "a block row whose seq is 1.5"),
        ("UPDATE blocks SET hash = NULL WHERE seq = 1", "the index row names None"),
        ("UPDATE blocks SET hash = 'zz' WHERE seq = 1", "the index row names 'zz'"),
        ("DROP TABLE blocks", "table blocks is gone"),
        ("DROP TABLE streams", "table streams is gone"),
        ("DROP TABLE verdicts", "table verdicts is gone"),
        ("DROP TRIGGER decisions_no_delete", "trigger decisions_no_delete is gone"),
        (
            "CREATE TRIGGER eat AFTER INSERT ON blocks BEGIN DELETE FROM scans WHERE ref = 1; END",
            "trigger eat is no trigger of the CIR's schema",
        ),
    ],
)
def test_rows_and_tables_edited_below_the_chain_fail_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str, said: str
) -> None:
    cfg, db = _cli_cir(tmp_path)
    _sql(db, edit)
    rc, out = _run(capsys, "cir", "verify", *cfg)
    assert rc == 1 and said in out, out


def test_a_dropped_table_is_one_clear_error_for_every_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, db = _cli_cir(tmp_path)
    _sql(db, "DROP TABLE verdicts; DROP TABLE scans")
    for argv in (["verdict", "1"], ["scans"]):
        rc, out = _run(capsys, "cir", argv[0], *cfg, *argv[1:])
        assert rc == 1 and "cannot be read as a CIR: no such table" in out, out
        assert "fix: run 'nii cir verify'" in out


def test_a_page_overwritten_in_the_database_fails_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, db = _cli_cir(tmp_path)
    page = _checkpoint(db)
    raw = bytearray(db.read_bytes())
    assert len(raw) > 3 * page
    raw[2 * page : 3 * page] = b"\xa5" * page
    db.write_bytes(bytes(raw))
    rc, out = _run(capsys, "cir", "verify", *cfg)
    assert rc == 1 and "the database file is damaged" in out, out


@pytest.mark.parametrize("broken", ["empty", "garbage", "null", "directory"])
def test_a_cir_key_file_that_is_no_key_fails_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    cfg, db = _cli_cir(tmp_path)
    _sql(db, "UPDATE scans SET container = 'MSKU9999997'")  # what the key would have found
    key = tmp_path / "keys" / "cir.key"
    key.unlink()
    if broken == "directory":
        key.mkdir()
    else:
        key.write_text({"empty": "", "garbage": "\x00\x01{", "null": "null"}[broken])
    rc, out = _run(capsys, "cir", "verify", *cfg)
    assert rc == 1, out
    assert "scan rows not checked" in out and "which is not this CIR's key" in out
    assert "verification incomplete" in out


def test_a_missing_cir_key_leaves_the_scan_rows_unchecked_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An auditor's copy holds the public parts only: the chains are still evidence."""
    cfg, _ = _cli_cir(tmp_path)
    (tmp_path / "keys" / "cir.key").unlink()
    rc, out = _run(capsys, "cir", "verify", *cfg)
    assert rc == 0 and "scan rows not checked" in out and "(scan rows unchecked)" in out


def test_a_locked_cir_says_so_not_that_the_disk_is_full(tmp_path: Path) -> None:
    from central._sql import sqlite_fix
    from nii.__main__ import _engine_error

    locked = sqlite3.OperationalError("database is locked")
    assert "another process holds the CIR's database locked" in sqlite_fix(locked)

    class _Cir:
        database = ""
        dir = tmp_path

    err: Any = _engine_error(_Cir(), locked)
    assert "is locked" in err.message and "free space" not in err.fix
    damaged = sqlite3.DatabaseError("database disk image is malformed")
    err = _engine_error(_Cir(), damaged)
    assert err.exit_code == 1 and "restore" in err.fix


def test_verify_changes_nothing_of_the_cir_it_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Evidence is checked as it is: no checkpoint of a pending write-ahead log, no
    schema step, no journal mode changed."""
    import hashlib
    import subprocess
    import sys

    cfg, db = _cli_cir(tmp_path)
    # a write left in the WAL, as by a central that was killed (no checkpoint on close)
    subprocess.run(
        [sys.executable, "-c",
         "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
         "c.execute('PRAGMA wal_autocheckpoint=0'); "
         "c.execute(\"INSERT INTO alarms (ts_ns, kind, scanner, message) "
         "VALUES (1, 'x', 's1', 'pending')\"); c.commit(); os._exit(0)", str(db)],
        check=True,
    )  # fmt: skip
    wal = db.with_name(db.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0

    def digest() -> tuple[str, ...]:
        return tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in (db, wal))

    before = digest()
    rc, out = _run(capsys, "cir", "verify", *cfg)
    assert rc == 0, out
    assert wal.exists() and digest() == before
    # nor is an older schema brought up to date by a check
    _sql(db, "PRAGMA user_version = 9")
    _run(capsys, "cir", "verify", *cfg)
    c = sqlite3.connect(db)
    assert c.execute("PRAGMA user_version").fetchone()[0] == 9
    c.close()
