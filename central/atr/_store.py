"""The ``verdicts`` and ``att`` tables of the CIR: what the live ATR concluded.

``verdicts`` has one row per scan the live ATR analysed, ``att`` one row per
exit scan (Scan B) of an ATT transit: its Scan A, the seals, HOLD or not and
the four factors (``central/atr/_transit.py``).

The live ATR writes from its own worker thread, so it keeps its own SQLite
connections on the CIR file: WAL lets it write beside the aggregator's group
commits without either waiting long on the other.  Each verdict and each ATT
result (with its HOLD alarm) is one explicit transaction in plain SQL
(sqlite-utils' write helpers commit on their own), so it is either wholly in
the CIR or not at all.  The full document is kept as JSON beside the columns
an analyst filters on.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from core.errors import ConfigError, StorageError

#: The table, created on first use; ``ref`` is the scan's ref in ``scans``.
SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    ref INTEGER PRIMARY KEY,
    scanner TEXT NOT NULL,
    scan_id INTEGER,
    container TEXT,
    verdict TEXT NOT NULL,
    findings INTEGER NOT NULL,
    model TEXT NOT NULL,
    gd_used INTEGER NOT NULL,
    atr_ms REAL,
    latency_s REAL,
    created_ns INTEGER NOT NULL,
    doc TEXT NOT NULL
)
"""

_COLUMNS = (
    "ref",
    "scanner",
    "scan_id",
    "container",
    "verdict",
    "findings",
    "model",
    "gd_used",
    "atr_ms",
    "latency_s",
    "created_ns",
    "doc",
)


def _is_full(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the disk is full or failing."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
        return True
    text = str(exc).lower()
    return "full" in text or "disk i/o" in text


def _free_bytes(folder: Path) -> int:
    """Free space for this process in ``folder``'s file system, bytes; -1 if unknown."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


class _Store:
    """One SQLite connection on the CIR file, with the tables of ``schema`` created.

    One instance per thread that uses it: the connection may be opened in one
    thread and then used only in another (``check_same_thread`` is off for
    that hand-over), never from two at once.
    """

    def __init__(self, path: Path, schema: tuple[str, ...], what: str) -> None:
        self.path = Path(path)
        try:
            self.conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self._transaction([(sql, ()) for sql in schema])
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the {what} table in {self.path}: {exc}",
                fix="check state_dir: the CIR must be writable and have free space",
            ) from exc

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.conn.close()

    def _transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``statements`` in one explicit transaction: all of them or none."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for sql, args in statements:
                self.conn.execute(sql, args)
            self.conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite may have rolled back a failed COMMIT itself: a second ROLLBACK would
            # raise "no transaction is active" and hide the cause.
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError) and _is_full(exc):
                free = _free_bytes(self.path.parent)
                raise StorageError(
                    f"cannot write to {self.path}: {exc} ({free} bytes free)",
                    fix="free space on that file system; the next verdict is stored once "
                    "it fits (this scan's can be made again with 'nii cir dicos')",
                    path=str(self.path),
                    free_bytes=free,
                ) from exc
            raise


class VerdictStore(_Store):
    """Reads and writes the ``verdicts`` table of the CIR at ``path`` (``cir.sqlite``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, (SCHEMA,), "verdicts")

    def put(self, doc: dict[str, Any]) -> None:
        """Record one verdict document (as published on the feed); replaces an older one."""
        row = {
            "ref": int(doc["ref"]),
            "scanner": str(doc.get("scanner", "")),
            "scan_id": doc.get("scan_id"),
            "container": str(doc.get("container", "")),
            "verdict": str(doc.get("verdict", "none")),
            "findings": len(doc.get("findings", [])),
            "model": str(doc.get("model", "")),
            "gd_used": int(bool(doc.get("gd_used"))),
            "atr_ms": doc.get("ms"),
            "latency_s": doc.get("latency_s"),
            "created_ns": time.time_ns(),
            "doc": json.dumps(doc, default=str),
        }
        sql = (
            f"INSERT OR REPLACE INTO verdicts ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
        )
        self._transaction([(sql, tuple(row[c] for c in _COLUMNS))])

    def get(self, ref: int) -> dict[str, Any] | None:
        """The verdict document of scan ``ref``, or None if it has none (yet)."""
        row = self.conn.execute("SELECT doc FROM verdicts WHERE ref = ?", (ref,)).fetchone()
        if row is None:
            return None
        doc: dict[str, Any] = json.loads(row[0])
        return doc

    def rows(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest verdicts' columns (without the document), newest first."""
        cur = self.conn.execute(
            f"SELECT {', '.join(_COLUMNS[:-1])} FROM verdicts ORDER BY ref DESC LIMIT ?",
            (limit,),
        )
        return [dict(zip(_COLUMNS[:-1], r, strict=True)) for r in cur.fetchall()]


#: One row per exit scan the live ATT looked at; an entry scan is Scan A of at most one of
#: them (the unique index), so a rescan at the exit cannot replace a HOLD (decision 0007).
ATT_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS att (
    ref_b INTEGER PRIMARY KEY,
    ref_a INTEGER,
    container TEXT,
    seal_a TEXT,
    seal_b TEXT,
    result TEXT NOT NULL,
    hold INTEGER NOT NULL,
    factors TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    doc TEXT NOT NULL
)
""",
    "CREATE UNIQUE INDEX IF NOT EXISTS att_ref_a ON att (ref_a)",
    "CREATE INDEX IF NOT EXISTS att_container ON att (container)",
)

_ATT_COLUMNS = (
    "ref_b",
    "ref_a",
    "container",
    "seal_a",
    "seal_b",
    "result",
    "hold",
    "factors",
    "created_ns",
    "doc",
)
_ALARM_COLUMNS = ("ts_ns", "scanner", "edge", "kind", "message", "details")


class AttStore(_Store):
    """Reads and writes the ``att`` table of the CIR at ``path`` (``cir.sqlite``).

    The CIR's ``alarms`` table must exist (central creates it): a HOLD's alarm
    is written in the same transaction as the ATT result.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, ATT_SCHEMA, "att")

    def put(self, doc: dict[str, Any], alarm: dict[str, Any] | None = None) -> None:
        """Record one ATT document and, if given, its alarm row, in one transaction."""
        row = {
            "ref_b": int(doc["ref_b"]),
            "ref_a": doc.get("ref_a"),
            "container": str(doc.get("container", "")),
            "seal_a": doc.get("seal_a"),
            "seal_b": doc.get("seal_b"),
            "result": str(doc["result"]),
            "hold": int(bool(doc.get("hold"))),
            "factors": json.dumps(doc.get("factors", {}), default=str),
            "created_ns": time.time_ns(),
            "doc": json.dumps(doc, default=str),
        }
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                # a second result for one exit scan replaces the first; an entry scan already
                # paired with another exit scan is refused (IntegrityError), never replaced
                f"INSERT INTO att ({', '.join(_ATT_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in _ATT_COLUMNS)}) ON CONFLICT (ref_b) DO UPDATE "
                f"SET {', '.join(f'{c} = excluded.{c}' for c in _ATT_COLUMNS[1:])}",
                tuple(row[c] for c in _ATT_COLUMNS),
            )
        ]
        if alarm is not None:
            statements.append(
                (
                    f"INSERT INTO alarms ({', '.join(_ALARM_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in _ALARM_COLUMNS)})",
                    tuple(alarm.get(c) for c in _ALARM_COLUMNS),
                )
            )
        self._transaction(statements)

    def paired(self, ref_a: int) -> dict[str, Any] | None:
        """The ATT document in which entry scan ``ref_a`` is Scan A, if it was paired."""
        return _first_doc(self.conn, "SELECT doc FROM att WHERE ref_a = ?", (ref_a,))

    def get(self, ref_b: int) -> dict[str, Any] | None:
        """The ATT document of exit scan ``ref_b``, or None."""
        return _first_doc(self.conn, "SELECT doc FROM att WHERE ref_b = ?", (ref_b,))


def _first_doc(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
    row = conn.execute(sql, args).fetchone()
    if row is None:
        return None
    doc: dict[str, Any] = json.loads(row[0])
    return doc


def att_docs(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """The latest ATT documents, newest exit scan first; [] when the table does not exist.

    For read-only commands (``nii cir att``): creates nothing.
    """
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'att'"
    ).fetchone()
    if not exists:
        return []
    rows = conn.execute("SELECT doc FROM att ORDER BY ref_b DESC LIMIT ?", (limit,)).fetchall()
    return [json.loads(r[0]) for r in rows]


__all__ = ["ATT_SCHEMA", "SCHEMA", "AttStore", "VerdictStore", "att_docs"]
