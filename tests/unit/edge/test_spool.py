"""The spool never runs ahead of what is durable (disk full, I/O errors)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core.errors import StorageError
from core.seal import genesis_hash
from edge import Spool


def spool(tmp_path: Path, max_bytes: int = 1_000_000) -> Spool:
    return Spool(
        tmp_path / "s.sqlite", max_bytes=max_bytes, high_water=0.5, genesis=genesis_hash("s1")
    )


class FailingCommit:
    """A connection whose COMMIT fails as SQLite's does on a full disk.

    SQLite rolls the transaction back by itself when COMMIT cannot write: the
    stand-in does the same, then raises, so a second ROLLBACK would fail.
    """

    def __init__(self, db: sqlite3.Connection, error: str = "database or disk is full") -> None:
        self.db, self.error, self.fail = db, error, True

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self.fail:
            self.db.execute("ROLLBACK")
            raise sqlite3.OperationalError(self.error)
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_failed_commit_leaves_state_and_disk_as_they_were(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s.append(0, 1, b"a" * 100, b"h0" * 16, 10, "boot-a")
    before = s.state
    real = s._db
    s._db = FailingCommit(real)  # type: ignore[assignment]
    with pytest.raises(StorageError) as err:
        s.append(1, 1, b"b" * 100, b"h1" * 16, 20, "boot-a")
    assert "database or disk is full" in err.value.message
    assert err.value.path == str(s.path) and err.value.free_bytes > 0
    assert err.value.fix
    assert s.state == before and s.depth == 1 and s.bytes_used == 100
    assert not real.in_transaction
    # the same block goes in once the disk has room again
    s._db = real
    s.append(1, 1, b"b" * 100, b"h1" * 16, 20)
    s.close()
    s = spool(tmp_path)
    assert (s.state.head_seq, s.state.head_hash, s.state.link_next_seq) == (1, b"h1" * 16, 20)
    assert s.state.link_session == "boot-a"
    s.close()


def test_failed_release_keeps_blocks_and_acked_seq(tmp_path: Path) -> None:
    s = spool(tmp_path)
    for seq in range(3):
        s.append(seq, 1, b"x" * 10, bytes(32), seq + 1)
    real = s._db
    s._db = FailingCommit(real, "disk I/O error")  # type: ignore[assignment]
    with pytest.raises(StorageError):
        s.ack(1)
    assert s.state.acked_seq == -1 and s.depth == 3 and s.get(0) is not None
    s._db = real
    assert s.ack(1) == 2 and s.state.acked_seq == 1 and s.depth == 1
    s.close()


def test_full_database_refuses_the_insert_itself(tmp_path: Path) -> None:
    s = spool(tmp_path)
    s.append(0, 1, b"a", bytes(32), 1)
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count={pages}")
    before = s.state
    with pytest.raises(StorageError):
        s.append(1, 1, b"z" * 200_000, bytes(32), 2)
    assert s.state == before and s.get(1) is None
    assert not s.probe() or s.free_bytes() >= 0  # probing never raises
    s._db.execute("PRAGMA max_page_count=1073741823")
    s.append(1, 1, b"z" * 200_000, bytes(32), 2)
    assert s.state.head_seq == 1
    s.close()


def test_probe_needs_free_space_and_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = spool(tmp_path)
    assert s.probe()
    monkeypatch.setattr(s, "free_bytes", lambda: 1000)
    assert not s.probe()
    monkeypatch.setattr(s, "free_bytes", lambda: 10**9)
    real = s._db
    s._db = FailingCommit(real)  # type: ignore[assignment]
    assert not s.probe()
    s._db = real
    assert s.probe()
    s.close()


def test_link_session_is_persisted_with_the_position(tmp_path: Path) -> None:
    s = spool(tmp_path)
    assert s.state.link_session == ""
    s.append(0, 1, b"a", bytes(32), 7, "old")
    s.set_link("new", 0)
    s.close()
    s = spool(tmp_path)
    assert (s.state.link_session, s.state.link_next_seq, s.state.head_seq) == ("new", 0, 0)
    s.close()


def test_a_fork_quarantines_the_unacknowledged_blocks_and_takes_the_cirs_head(
    tmp_path: Path,
) -> None:
    sp = spool(tmp_path)
    for i in range(6):
        sp.append(i, 1, bytes([i]) * 100, bytes([i]) * 32, 10 * (i + 1), "sess")
    sp.ack(1)
    moved = sp.fork_to(3, b"\xaa" * 32, 25, reason="the CIR's block 3 differs")
    assert moved == [2, 3, 4, 5]
    st = sp.state
    assert (st.head_seq, st.head_hash, st.acked_seq, st.link_next_seq) == (3, b"\xaa" * 32, 3, 25)
    assert st.link_session == "sess"
    assert sp.depth == 0 and sp.bytes_used == 0 and sp.quarantined == 4
    assert sp.get(4) is None  # not sent again
    # kept as evidence, and still there after a restart; a second fork adds to it
    sp.append(4, 1, b"x" * 10, b"\x04" * 32, 30)
    assert sp.fork_to(3, b"\xaa" * 32, 25, reason="again") == [4]
    sp.close()
    sp = spool(tmp_path)
    assert sp.quarantined == 5 and sp.state.head_seq == 3 and not sp.fresh
    rows = sp._db.execute("SELECT seq, size, reason FROM quarantine ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [2, 3, 4, 5, 4] and rows[0][1] == 100
    assert rows[-1][2] == "again"
    sp.close()


def test_meta_is_persisted(tmp_path: Path) -> None:
    sp = spool(tmp_path)
    assert sp.meta("serial") == ""
    sp.set_meta("serial", "SIM0004-scanner1")
    sp.close()
    sp = spool(tmp_path)
    assert sp.meta("serial") == "SIM0004-scanner1" and sp.fresh
    sp.close()
