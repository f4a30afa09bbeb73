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


#: Officers' confirmations of verdicts (``nii atr confirm``).  Rows are never changed or
#: deleted (the triggers): a correction is a new row whose ``corrects`` names the row it
#: replaces.  ``heading``, ``load`` (JSON of ``LoadFeatures``) and ``descriptor`` (JSON
#: list, ``_library.describe``) are copied from the verdict when the officer confirmed it.
CONFIRMATIONS_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS confirmations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ref INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    atr_verdict TEXT NOT NULL,
    by TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    note TEXT NOT NULL,
    corrects INTEGER REFERENCES confirmations (id),
    heading TEXT NOT NULL,
    load TEXT,
    descriptor TEXT,
    profile_version INTEGER
)
""",
    "CREATE INDEX IF NOT EXISTS confirmations_ref ON confirmations (ref)",
    "CREATE TRIGGER IF NOT EXISTS confirmations_no_update BEFORE UPDATE ON confirmations "
    "BEGIN SELECT RAISE(ABORT, 'confirmations are history: add a correction'); END",
    "CREATE TRIGGER IF NOT EXISTS confirmations_no_delete BEFORE DELETE ON confirmations "
    "BEGIN SELECT RAISE(ABORT, 'confirmations are history: add a correction'); END",
)
_CONFIRM_COLUMNS = (
    "id",
    "ref",
    "verdict",
    "atr_verdict",
    "by",
    "created_ns",
    "note",
    "corrects",
    "heading",
    "load",
    "descriptor",
    "profile_version",
)
#: Learned profiles, one row per HS heading per version: each ``nii atr profiles learn``
#: writes a whole new version (also the headings below the minimum count, ``used`` 0).
PROFILES_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS profiles (
    version INTEGER NOT NULL,
    heading TEXT NOT NULL,
    n INTEGER NOT NULL,
    used INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (version, heading)
)
""",
)


class LibraryStore(_Store):
    """Reads and writes the ``confirmations`` and ``profiles`` tables of the CIR at ``path``.

    The scan and its verdict are looked up in the CIR's ``scans`` and ``verdicts``
    tables; rows are plain dicts (columns as named in the schemas, JSON columns decoded).
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, (SCHEMA, *CONFIRMATIONS_SCHEMA, *PROFILES_SCHEMA), "library")

    def has_scan(self, ref: int) -> bool:
        """Whether scan ``ref`` is in the CIR's ``scans`` table (False: no such table)."""
        if not _table(self.conn, "scans"):
            return False
        return self.conn.execute("SELECT 1 FROM scans WHERE ref = ?", (ref,)).fetchone() is not None

    def verdict(self, ref: int) -> dict[str, Any] | None:
        """The verdict document of scan ``ref``, or None."""
        return _first_doc(self.conn, "SELECT doc FROM verdicts WHERE ref = ?", (ref,))

    def add_confirmation(self, row: dict[str, Any]) -> int:
        """Append one confirmation (``id`` is assigned); returns its id."""
        cols = [c for c in _CONFIRM_COLUMNS if c != "id"]
        vals = tuple(
            json.dumps(row[c]) if c in ("load", "descriptor") and row.get(c) is not None
            else row.get(c)
            for c in cols
        )  # fmt: skip
        sql = f"INSERT INTO confirmations ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        self._transaction([(sql, vals)])
        got = self.conn.execute("SELECT max(id) FROM confirmations WHERE ref = ?", (row["ref"],))
        return int(got.fetchone()[0])

    def confirmations(self, ref: int | None = None) -> list[dict[str, Any]]:
        """Every confirmation (of scan ``ref`` only, when given), oldest first."""
        return confirmation_rows(self.conn, ref)

    def put_profiles(self, docs: list[dict[str, Any]], now_ns: int) -> int:
        """Write ``docs`` (each with ``heading``, ``n``, ``used``) as a new version; its number."""
        row = self.conn.execute("SELECT coalesce(max(version), 0) FROM profiles").fetchone()
        version = int(row[0]) + 1
        sql = (
            "INSERT INTO profiles (version, heading, n, used, created_ns, doc) "
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        self._transaction(
            [
                (
                    sql,
                    (
                        version,
                        d["heading"],
                        int(d["n"]),
                        int(bool(d["used"])),
                        now_ns,
                        json.dumps({**d, "version": version}),
                    ),
                )
                for d in docs
            ]
        )
        return version


def _table(conn: sqlite3.Connection, name: str) -> bool:
    q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(q, (name,)).fetchone() is not None


def confirmation_rows(conn: sqlite3.Connection, ref: int | None = None) -> list[dict[str, Any]]:
    """The ``confirmations`` rows, oldest first, JSON decoded; [] without the table.

    For readers too (the live ATR, ``nii atr analyze --cir``): creates nothing.
    """
    if not _table(conn, "confirmations"):
        return []
    where, args = ("WHERE ref = ?", (ref,)) if ref is not None else ("", ())
    cur = conn.execute(
        f"SELECT {', '.join(_CONFIRM_COLUMNS)} FROM confirmations {where} ORDER BY id", args
    )
    out = []
    for r in cur.fetchall():
        d = dict(zip(_CONFIRM_COLUMNS, r, strict=True))
        for c in ("load", "descriptor"):
            d[c] = json.loads(d[c]) if d[c] else None
        out.append(d)
    return out


def profile_docs(
    conn: sqlite3.Connection, version: int | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """The profiles of ``version`` (the latest when None) and its number; (0, []) for none.

    Creates nothing.
    """
    if not _table(conn, "profiles"):
        return 0, []
    if version is None:
        version = int(conn.execute("SELECT coalesce(max(version), 0) FROM profiles").fetchone()[0])
    rows = conn.execute(
        "SELECT doc FROM profiles WHERE version = ? ORDER BY heading", (version,)
    ).fetchall()
    return version, [json.loads(r[0]) for r in rows]


def library_state(conn: sqlite3.Connection) -> tuple[int, int]:
    """(latest confirmation id, latest profile version): what changes when the library does."""
    c = p = 0
    if _table(conn, "confirmations"):
        c = int(conn.execute("SELECT coalesce(max(id), 0) FROM confirmations").fetchone()[0])
    if _table(conn, "profiles"):
        p = int(conn.execute("SELECT coalesce(max(version), 0) FROM profiles").fetchone()[0])
    return c, p


__all__ = [
    "ATT_SCHEMA",
    "CONFIRMATIONS_SCHEMA",
    "PROFILES_SCHEMA",
    "SCHEMA",
    "AttStore",
    "LibraryStore",
    "VerdictStore",
    "att_docs",
    "confirmation_rows",
    "library_state",
    "profile_docs",
]
