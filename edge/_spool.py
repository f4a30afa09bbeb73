"""The durable spool of one scanner at the edge (SQLite, WAL).

Every sealed block goes into the spool before it is sent, in one transaction
with the chain head and the data-link position it reached, so after any crash
the edge knows exactly which block comes next and which data-link packet to
ask the scanner for. A block leaves the spool only when the central aggregator
has acknowledged it as committed to the CIR.

The spool is bounded (``max_bytes``). Its full-policy, in order:

1. at ``high_water`` x ``max_bytes``: an alarm, and new scans are refused
   (the scanner is disarmed); the scan in progress goes on;
2. at ``max_bytes``: the edge stops reading the data link; the scanner's replay
   buffer holds the lines, and the edge resumes from the exact packet when the
   spool drains. What the scanner can no longer replay is recorded as a GAP
   block and alarmed. Nothing already in the spool is ever dropped or changed.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError


@dataclass
class SpoolState:
    head_seq: int  # last sealed block, -1 if none
    head_hash: bytes  # its hash (the genesis hash if none)
    link_next_seq: int  # next data-link packet to ask the scanner for
    acked_seq: int  # last block the CIR acknowledged


class Spool:
    """Bounded SQLite spool of sealed blocks for one scanner."""

    def __init__(self, path: Path, *, max_bytes: int, high_water: float, genesis: bytes) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.high_water_bytes = int(max_bytes * high_water)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # 16 KiB pages: short overflow chains for blocks of tens to hundreds of kB, while
            # the B-tree and state pages rewritten by every commit stay small (measured best
            # of 4, 16 and 64 KiB)
            # (takes effect only when the file is created)
            self._db.execute("PRAGMA page_size=16384")
            self._db.execute("PRAGMA journal_mode=WAL")
            # Debian builds SQLite with SECURE_DELETE: every released block would be written
            # a second time as zeros. The spool holds only cipher text: nothing to scrub.
            self._db.execute("PRAGMA secure_delete=OFF")
            # NORMAL in WAL mode: a commit survives a crash of the process; on power loss
            # the last commits may roll back together with the link position stored in the
            # same transaction, so the edge re-asks the scanner's replay buffer for them.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS blocks (
                    seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL,
                    size INTEGER NOT NULL, sealed BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS state (k TEXT PRIMARY KEY, v);
                """
            )
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the spool {self.path}: {exc}",
                fix="check that state_dir exists, is writable by the edge user and has free space",
            ) from exc
        st = dict(self._db.execute("SELECT k, v FROM state").fetchall())
        self.state = SpoolState(
            head_seq=int(st.get("head_seq", -1)),
            head_hash=bytes(st.get("head_hash", genesis)),
            link_next_seq=int(st.get("link_next_seq", 0)),
            acked_seq=int(st.get("acked_seq", -1)),
        )
        self.fresh = "head_seq" not in st
        row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blocks").fetchone()
        self.bytes_used, self.depth = int(row[0]), int(row[1])

    # -- state -------------------------------------------------------------------------
    @property
    def above_high_water(self) -> bool:
        return self.bytes_used >= self.high_water_bytes

    @property
    def full(self) -> bool:
        return self.bytes_used >= self.max_bytes

    def _put_state(self) -> None:
        s = self.state
        self._db.executemany(
            "INSERT OR REPLACE INTO state (k, v) VALUES (?, ?)",
            [
                ("head_seq", s.head_seq),
                ("head_hash", s.head_hash),
                ("link_next_seq", s.link_next_seq),
                ("acked_seq", s.acked_seq),
            ],
        )

    # -- writing -----------------------------------------------------------------------
    def append(
        self, seq: int, kind: int, sealed: bytes, block_hash: bytes, link_next_seq: int
    ) -> None:
        """Store one sealed block and the new chain head atomically."""
        if seq != self.state.head_seq + 1:
            raise AssertionError(f"spool append out of order: {seq} after {self.state.head_seq}")
        self._db.execute("BEGIN")
        try:
            self._db.execute(
                "INSERT INTO blocks (seq, kind, size, sealed) VALUES (?, ?, ?, ?)",
                (seq, kind, len(sealed), sealed),
            )
            self.state.head_seq = seq
            self.state.head_hash = block_hash
            self.state.link_next_seq = link_next_seq
            self._put_state()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._reload_state()
            raise
        self.bytes_used += len(sealed)
        self.depth += 1

    def ack(self, seq: int) -> int:
        """The CIR holds every block up to ``seq``: let them go. Returns blocks freed."""
        if seq <= self.state.acked_seq:
            return 0
        seq = min(seq, self.state.head_seq)
        self._db.execute("BEGIN")
        row = self._db.execute(
            "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blocks WHERE seq <= ?", (seq,)
        ).fetchone()
        self._db.execute("DELETE FROM blocks WHERE seq <= ?", (seq,))
        self.state.acked_seq = seq
        self._put_state()
        self._db.execute("COMMIT")
        self.bytes_used -= int(row[0])
        self.depth -= int(row[1])
        return int(row[1])

    def adopt(self, seq: int, block_hash: bytes, link_next_seq: int) -> None:
        """Take the CIR's chain head as ours (the CIR is ahead of this spool).

        Happens when the spool lost its last commits (power loss) after the CIR had
        them, or on a replaced edge box. Blocks at or below ``seq`` are dropped: the
        CIR has them.
        """
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM blocks WHERE seq <= ?", (seq,))
        self.state = SpoolState(seq, block_hash, max(link_next_seq, 0), seq)
        self._put_state()
        self._db.execute("COMMIT")
        row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blocks").fetchone()
        self.bytes_used, self.depth = int(row[0]), int(row[1])
        self.fresh = False

    def mark_started(self) -> None:
        """Persist the initial state so a fresh spool is no longer fresh."""
        self._db.execute("BEGIN")
        self._put_state()
        self._db.execute("COMMIT")
        self.fresh = False

    def _reload_state(self) -> None:
        st = dict(self._db.execute("SELECT k, v FROM state").fetchall())
        if st:
            self.state = SpoolState(
                int(st["head_seq"]),
                bytes(st["head_hash"]),
                int(st["link_next_seq"]),
                int(st["acked_seq"]),
            )

    # -- reading -----------------------------------------------------------------------
    def get(self, seq: int) -> bytes | None:
        row = self._db.execute("SELECT sealed FROM blocks WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def hash_at(self, seq: int) -> bytes | None:
        """Hash of a spooled block (recomputed from its sealed bytes)."""
        raw = self.get(seq)
        if raw is None:
            return None
        from core.seal import parse  # local: parse is only needed on this rare path

        return parse(raw).hash

    def close(self) -> None:
        self._db.close()
