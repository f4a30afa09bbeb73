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

When central's CIR holds another block at a sequence number than this spool (a
chain fork), the spool's unacknowledged blocks move to the ``quarantine`` table
of the same file (:meth:`Spool.fork_to`): kept as evidence, never sent, never
deleted by the edge, not counted against ``max_bytes``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import ConfigError, StorageError

_FIX_STORAGE = (
    "free space on the file system of state_dir (or give it a larger one) and check it "
    "for I/O errors; the edge resumes by itself once it can write again"
)
PROBE_FREE_BYTES = 4 * 1024 * 1024
"""Free space (bytes) the spool's file system needs before :meth:`Spool.probe` tries a
write: a few blocks of the largest size the edge seals (1024 lines x 2 x 1536 channels
x 2 B = 6 MB is the worst case; typical blocks are under 1 MB)."""


def free_bytes(path: Path) -> int:
    """Free space for an unprivileged writer on the file system holding ``path``.

    Args:
        path: a file or folder; its nearest existing parent is measured.

    Returns:
        Bytes available, or -1 if they cannot be read.
    """
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


@dataclass(frozen=True, slots=True)
class SpoolState:
    """What the spool holds durably (never ahead of what is on disk)."""

    head_seq: int
    """Last sealed block, -1 if none."""
    head_hash: bytes
    """Its hash (the genesis hash if none)."""
    link_next_seq: int
    """Next data-link packet to ask the scanner for."""
    acked_seq: int
    """Last block the CIR acknowledged."""
    link_session: str = ""
    """The scanner session ``link_next_seq`` belongs to ("" if not known)."""


class Spool:
    """Bounded SQLite spool of sealed blocks for one scanner.

    :attr:`state` changes only after the transaction that stores it committed;
    a write that fails leaves the spool, on disk and in memory, as it was, and
    raises :class:`~core.errors.StorageError`.
    """

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
                CREATE TABLE IF NOT EXISTS quarantine (
                    id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
                    size INTEGER NOT NULL, sealed BLOB NOT NULL,
                    at_ns INTEGER NOT NULL, reason TEXT NOT NULL);
                """
            )
            st = dict(self._db.execute("SELECT k, v FROM state").fetchall())
            row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blocks").fetchone()
            self.quarantined = int(
                self._db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
            )
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"cannot open the spool {self.path}: {exc}",
                fix="check that state_dir exists, is writable by the edge user and has free space",
            ) from exc
        self.state = SpoolState(
            head_seq=int(st.get("head_seq", -1)),
            head_hash=bytes(st.get("head_hash", genesis)),
            link_next_seq=int(st.get("link_next_seq", 0)),
            acked_seq=int(st.get("acked_seq", -1)),
            link_session=str(st.get("link_session", "")),
        )
        self.fresh = "head_seq" not in st
        self._meta = {k[5:]: str(v) for k, v in st.items() if str(k).startswith("meta.")}
        self.bytes_used, self.depth = int(row[0]), int(row[1])

    # -- state -------------------------------------------------------------------------
    @property
    def above_high_water(self) -> bool:
        """Whether the spool holds at least ``high_water`` x ``max_bytes``."""
        return self.bytes_used >= self.high_water_bytes

    @property
    def full(self) -> bool:
        """Whether the spool reached ``max_bytes``."""
        return self.bytes_used >= self.max_bytes

    def free_bytes(self) -> int:
        """Free space on the spool's file system in bytes (-1 if unknown)."""
        return free_bytes(self.path)

    def _put_state(self, s: SpoolState) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO state (k, v) VALUES (?, ?)",
            [
                ("head_seq", s.head_seq),
                ("head_hash", s.head_hash),
                ("link_next_seq", s.link_next_seq),
                ("acked_seq", s.acked_seq),
                ("link_session", s.link_session),
            ],
        )

    def _transaction(self, what: str, body: Callable[[], None]) -> None:
        """Run ``body`` in one transaction; on failure leave everything as it was.

        SQLite rolls a failed COMMIT back by itself (disk full, I/O error): a second
        ROLLBACK would raise "no transaction is active" and hide the cause, so it is
        issued only while a transaction is still open.

        Raises:
            StorageError: the transaction did not commit (``path``, ``free_bytes``).
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            body()
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            free = self.free_bytes()
            name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
            raise StorageError(
                f"cannot {what} in the spool {self.path} ({name}: {exc}); "
                f"{free if free >= 0 else 'unknown'} bytes free",
                fix=_FIX_STORAGE,
                path=str(self.path),
                free_bytes=free,
            ) from exc
        except BaseException:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    # -- writing -----------------------------------------------------------------------
    def append(
        self,
        seq: int,
        kind: int,
        sealed: bytes,
        block_hash: bytes,
        link_next_seq: int,
        link_session: str | None = None,
    ) -> None:
        """Store one sealed block with the new chain head and link position atomically.

        Args:
            seq: the block's sequence number; must be ``state.head_seq + 1``.
            kind: its ``core.seal.BlockKind`` as an int.
            sealed: the sealed block's bytes.
            block_hash: its hash (the new chain head).
            link_next_seq: the data-link packet to ask for after this block.
            link_session: the scanner session of ``link_next_seq`` (None: unchanged).

        Raises:
            AssertionError: ``seq`` is out of order (a bug of the caller).
            StorageError: the block could not be stored; nothing changed.
        """
        if seq != self.state.head_seq + 1:
            raise AssertionError(f"spool append out of order: {seq} after {self.state.head_seq}")
        new = replace(
            self.state,
            head_seq=seq,
            head_hash=block_hash,
            link_next_seq=link_next_seq,
            link_session=self.state.link_session if link_session is None else link_session,
        )

        def body() -> None:
            self._db.execute(
                "INSERT INTO blocks (seq, kind, size, sealed) VALUES (?, ?, ?, ?)",
                (seq, kind, len(sealed), sealed),
            )
            self._put_state(new)

        self._transaction(f"store block {seq}", body)
        self.state = new
        self.bytes_used += len(sealed)
        self.depth += 1

    def set_link(self, link_session: str, link_next_seq: int) -> None:
        """Persist a new data-link position without a block (a new scanner session).

        Raises:
            StorageError: it could not be stored; nothing changed.
        """
        new = replace(self.state, link_session=link_session, link_next_seq=link_next_seq)
        self._transaction("store the data-link position", lambda: self._put_state(new))
        self.state = new

    def ack(self, seq: int) -> int:
        """The CIR holds every block up to ``seq``: let them go.

        Returns:
            The number of blocks freed.

        Raises:
            StorageError: the release could not be stored; nothing changed (the
                blocks stay and are released by a later ACK or WELCOME).
        """
        if seq <= self.state.acked_seq:
            return 0
        seq = min(seq, self.state.head_seq)
        new = replace(self.state, acked_seq=seq)
        got: list[tuple[int, int]] = []

        def body() -> None:
            row = self._db.execute(
                "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blocks WHERE seq <= ?", (seq,)
            ).fetchone()
            got.append((int(row[0]), int(row[1])))
            self._db.execute("DELETE FROM blocks WHERE seq <= ?", (seq,))
            self._put_state(new)

        self._transaction(f"release blocks up to {seq}", body)
        self.state = new
        size, count = got[0]
        self.bytes_used -= size
        self.depth -= count
        return count

    def adopt(self, seq: int, block_hash: bytes, link_next_seq: int) -> None:
        """Take the CIR's chain head as ours (the CIR is ahead of this spool).

        Happens when the spool lost its last commits (power loss) after the CIR had
        them, or on a replaced edge box. Blocks at or below ``seq`` are dropped: the
        CIR has them.

        Raises:
            StorageError: it could not be stored; nothing changed.
        """
        new = SpoolState(seq, block_hash, max(link_next_seq, 0), seq, self.state.link_session)

        def body() -> None:
            self._db.execute("DELETE FROM blocks WHERE seq <= ?", (seq,))
            self._put_state(new)

        self._transaction("adopt the CIR's chain head", body)
        self.state = new
        row = self._db.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM blocks").fetchone()
        self.bytes_used, self.depth = int(row[0]), int(row[1])
        self.fresh = False

    def fork_to(self, seq: int, block_hash: bytes, link_next_seq: int, reason: str) -> list[int]:
        """Quarantine the unacknowledged blocks and take the CIR's chain head (a chain fork).

        The blocks after ``state.acked_seq`` move, in one transaction with the new
        state, to the ``quarantine`` table of this file, with the time and
        ``reason``: they are kept as evidence and never deleted by the edge.

        Args:
            seq: the CIR's last block for this scanner (-1 if none).
            block_hash: its hash (the genesis hash if none).
            link_next_seq: the CIR's data-link position (the next packet to read).
            reason: why, for whoever reads the quarantine.

        Returns:
            The sequence numbers quarantined, in order.

        Raises:
            StorageError: it could not be stored; nothing changed.
        """
        new = SpoolState(seq, block_hash, max(link_next_seq, 0), seq, self.state.link_session)
        moved: list[int] = []
        at = time.time_ns()

        def body() -> None:
            moved.extend(
                r[0]
                for r in self._db.execute(
                    "SELECT seq FROM blocks WHERE seq > ? ORDER BY seq", (self.state.acked_seq,)
                )
            )
            self._db.execute(
                "INSERT INTO quarantine (seq, kind, size, sealed, at_ns, reason) "
                "SELECT seq, kind, size, sealed, ?, ? FROM blocks WHERE seq > ? ORDER BY seq",
                (at, reason, self.state.acked_seq),
            )
            self._db.execute("DELETE FROM blocks")
            self._put_state(new)

        self._transaction("quarantine the forked blocks", body)
        self.state = new
        self.bytes_used, self.depth = 0, 0
        self.quarantined += len(moved)
        self.fresh = False
        return moved

    def meta(self, key: str) -> str:
        """A small persisted fact of this channel (e.g. the scanner's serial), or ""."""
        return self._meta.get(key, "")

    def set_meta(self, key: str, value: str) -> None:
        """Persist a small fact of this channel.

        Raises:
            StorageError: it could not be stored; nothing changed.
        """

        def body() -> None:
            self._db.execute(
                "INSERT OR REPLACE INTO state (k, v) VALUES (?, ?)", (f"meta.{key}", value)
            )

        self._transaction(f"store {key}", body)
        self._meta[key] = value

    def mark_started(self) -> None:
        """Persist the initial state so a fresh spool is no longer fresh.

        Raises:
            StorageError: it could not be stored.
        """
        s = self.state
        self._transaction("store the initial state", lambda: self._put_state(s))
        self.fresh = False

    def probe(self) -> bool:
        """Whether the spool can write again (enough free space and a test write).

        Returns:
            True when the file system has :data:`PROBE_FREE_BYTES` free and a
            transaction rewriting the current state committed.
        """
        free = self.free_bytes()
        if 0 <= free < PROBE_FREE_BYTES:
            return False
        s = self.state
        try:
            self._transaction("probe", lambda: self._put_state(s))
        except StorageError:
            return False
        return True

    # -- reading -----------------------------------------------------------------------
    def get(self, seq: int) -> bytes | None:
        """The sealed bytes of block ``seq``, or None if it is not (or no longer) spooled."""
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
        """Close the database (idempotent)."""
        self._db.close()
