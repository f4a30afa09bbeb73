"""The ``verdicts`` and ``att`` tables of the CIR: what the live ATR concluded.

``verdicts`` has one row per scan the live ATR analysed, ``att`` one row per
exit scan (Scan B) of an ATT transit: its Scan A, the seals, HOLD or not and
the four factors (``central/atr/_transit.py``).

The live ATR writes from its own worker thread or process, so it keeps its own
connection to the CIR's database (``central._sql``: the SQLite file, WAL, or
PostgreSQL): it writes beside the aggregator's group commits without either
waiting long on the other.  Its verdicts and ATT results are stored with their
work item (``central._atr_queue``) through :func:`verdict_statement` and
:func:`att_statements`.  The tables are made by the CIR's schema steps (``central._sql.
MIGRATIONS``, step 3: an entry scan is Scan A of at most one exit scan, so a rescan
at the exit cannot replace a HOLD, decision 0007; confirmations are never changed
or deleted, a correction is a new row naming the one it replaces; each ``nii atr
profiles learn`` writes a whole new version of the profiles).  Each verdict and each ATT
result (with its HOLD alarm) is one explicit transaction in plain SQL
(sqlite-utils' write helpers commit on their own), so it is either wholly in
the CIR or not at all.  The full document is kept as JSON beside the columns
an analyst filters on.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from central._sql import Sql, is_storage_error, migrate
from core.errors import StorageError

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


def _free_bytes(folder: Path) -> int:
    """Free space for this process in ``folder``'s file system, bytes; -1 if unknown."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


class _Store:
    """One connection to the CIR's database (a SQLite file's path or a PostgreSQL URL),
    its schema brought up to date.

    One instance per thread that uses it: the connection may be opened in one thread
    and then used only in another, never from two at once.

    Raises:
        ConfigError: the database cannot be opened.
    """

    def __init__(self, target: Path | str) -> None:
        self.path = target
        self.db = Sql(target)
        try:
            migrate(self.db)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.db.close()

    def _transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``statements`` in one explicit transaction: all of them or none."""
        try:
            with self.db.transaction():
                for sql, args in statements:
                    self.db.execute(sql, args)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            free = _free_bytes(Path(self.path).parent)
            raise StorageError(
                f"cannot write to {self.path}: {exc} ({free} bytes free)",
                fix="free space on that file system; the next verdict is stored once "
                "it fits (this scan's can be made again with 'nii cir dicos')",
                path=str(self.path),
                free_bytes=free,
            ) from exc


class VerdictStore(_Store):
    """Reads and writes the ``verdicts`` table of the CIR at ``path`` (``cir.sqlite``)."""

    def __init__(self, target: Path | str) -> None:
        super().__init__(target)

    def put(self, doc: dict[str, Any]) -> None:
        """Record one verdict document (as published on the feed); replaces an older one."""
        sql, args = verdict_statement(doc)
        sql += f" DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in _COLUMNS[1:])}"
        self._transaction([(sql, args)])

    def get(self, ref: int) -> dict[str, Any] | None:
        """The verdict document of scan ``ref``, or None if it has none (yet)."""
        return _first_doc(self.db, "SELECT doc FROM verdicts WHERE ref = ?", (ref,))

    def rows(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest verdicts' columns (without the document), newest first."""
        return self.db.rows(
            f"SELECT {', '.join(_COLUMNS[:-1])} FROM verdicts ORDER BY ref DESC LIMIT ?",
            (limit,),
        )


def verdict_statement(doc: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The SQL that stores one verdict document, ending ``ON CONFLICT (ref)``: add ``DO
    NOTHING`` (the first verdict of a scan stays: the live ATR's work queue) or an
    update."""
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
        f"INSERT INTO verdicts ({', '.join(_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in _COLUMNS)}) ON CONFLICT (ref)"
    )
    return sql, tuple(row[c] for c in _COLUMNS)


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

    def __init__(self, target: Path | str) -> None:
        super().__init__(target)

    def put(self, doc: dict[str, Any], alarm: dict[str, Any] | None = None) -> None:
        """Record one ATT document and, if given, its alarm row, in one transaction."""
        self._transaction(att_statements(doc, alarm))

    def paired(self, ref_a: int) -> dict[str, Any] | None:
        """The ATT document in which entry scan ``ref_a`` is Scan A, if it was paired."""
        return _first_doc(self.db, "SELECT doc FROM att WHERE ref_a = ?", (ref_a,))

    def get(self, ref_b: int) -> dict[str, Any] | None:
        """The ATT document of exit scan ``ref_b``, or None."""
        return _first_doc(self.db, "SELECT doc FROM att WHERE ref_b = ?", (ref_b,))


def att_statements(
    doc: dict[str, Any], alarm: dict[str, Any] | None = None
) -> list[tuple[str, tuple[Any, ...]]]:
    """The SQL that stores one ATT document and, if given, its alarm row (to run in one
    transaction)."""
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
    return statements


def _first_doc(db: Sql, sql: str, args: tuple[Any, ...]) -> dict[str, Any] | None:
    text = db.value(sql, args)
    if text is None:
        return None
    doc: dict[str, Any] = json.loads(text)
    return doc


def att_docs(db: Sql, limit: int = 50) -> list[dict[str, Any]]:
    """The latest ATT documents, newest exit scan first; [] when the table does not exist.

    For read-only commands (``nii cir att``): creates nothing.
    """
    if "att" not in db.tables():
        return []
    rows = db.rows("SELECT doc FROM att ORDER BY ref_b DESC LIMIT ?", (limit,))
    return [json.loads(r["doc"]) for r in rows]


#: Officers' confirmations of verdicts (``nii atr confirm``).  Rows are never changed or
#: deleted (the triggers): a correction is a new row whose ``corrects`` names the row it
#: replaces.  ``heading``, ``load`` (JSON of ``LoadFeatures``) and ``descriptor`` (JSON
#: list, ``_library.describe``) are copied from the verdict when the officer confirmed it.
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


class LibraryStore(_Store):
    """Reads and writes the ``confirmations`` and ``profiles`` tables of the CIR at ``path``.

    The scan and its verdict are looked up in the CIR's ``scans`` and ``verdicts``
    tables; rows are plain dicts (columns as named in the schemas, JSON columns decoded).
    """

    def __init__(self, target: Path | str) -> None:
        super().__init__(target)

    def has_scan(self, ref: int) -> bool:
        """Whether scan ``ref`` is in the CIR's ``scans`` table."""
        return self.db.one("SELECT 1 AS x FROM scans WHERE ref = ?", (ref,)) is not None

    def verdict(self, ref: int) -> dict[str, Any] | None:
        """The verdict document of scan ``ref``, or None."""
        return _first_doc(self.db, "SELECT doc FROM verdicts WHERE ref = ?", (ref,))

    def add_confirmation(self, row: dict[str, Any]) -> int:
        """Append one confirmation (``id`` is assigned); returns its id."""
        cols = [c for c in _CONFIRM_COLUMNS if c != "id"]
        vals = tuple(
            json.dumps(row[c]) if c in ("load", "descriptor") and row.get(c) is not None
            else row.get(c)
            for c in cols
        )  # fmt: skip
        sql = (
            f"INSERT INTO confirmations ({', '.join(_quoted(cols))}) "
            f"VALUES ({', '.join('?' * len(cols))}) RETURNING id"
        )
        with self.db.transaction():
            return int(self.db.value(sql, vals))

    def confirmations(self, ref: int | None = None) -> list[dict[str, Any]]:
        """Every confirmation (of scan ``ref`` only, when given), oldest first."""
        return confirmation_rows(self.db, ref)

    def put_profiles(self, docs: list[dict[str, Any]], now_ns: int) -> int:
        """Write ``docs`` (each with ``heading``, ``n``, ``used``) as a new version; its number."""
        version = int(self.db.value("SELECT coalesce(max(version), 0) AS v FROM profiles")) + 1
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


def _quoted(cols: list[str] | tuple[str, ...]) -> list[str]:
    """Column names for SQL: ``by`` is a keyword of PostgreSQL's, quoted on both engines."""
    return [f'"{c}"' if c == "by" else c for c in cols]


def confirmation_rows(db: Sql, ref: int | None = None) -> list[dict[str, Any]]:
    """The ``confirmations`` rows, oldest first, JSON decoded; [] without the table.

    For readers too (the live ATR, ``nii atr analyze --cir``): creates nothing.
    """
    if "confirmations" not in db.tables():
        return []
    where, args = ("WHERE ref = ?", (ref,)) if ref is not None else ("", ())
    rows = db.rows(
        f"SELECT {', '.join(_quoted(_CONFIRM_COLUMNS))} FROM confirmations {where} ORDER BY id",
        args,
    )
    out = []
    for d in rows:
        for c in ("load", "descriptor"):
            d[c] = json.loads(d[c]) if d[c] else None
        out.append(d)
    return out


def profile_docs(db: Sql, version: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """The profiles of ``version`` (the latest when None) and its number; (0, []) for none.

    Creates nothing.
    """
    if "profiles" not in db.tables():
        return 0, []
    if version is None:
        version = int(db.value("SELECT coalesce(max(version), 0) AS v FROM profiles"))
    rows = db.rows("SELECT doc FROM profiles WHERE version = ? ORDER BY heading", (version,))
    return version, [json.loads(r["doc"]) for r in rows]


def library_state(db: Sql) -> tuple[int, int]:
    """(latest confirmation id, latest profile version): what changes when the library does."""
    c = p = 0
    tables = db.tables()
    if "confirmations" in tables:
        c = int(db.value("SELECT coalesce(max(id), 0) AS c FROM confirmations"))
    if "profiles" in tables:
        p = int(db.value("SELECT coalesce(max(version), 0) AS p FROM profiles"))
    return c, p


__all__ = [
    "AttStore",
    "LibraryStore",
    "VerdictStore",
    "att_docs",
    "att_statements",
    "confirmation_rows",
    "library_state",
    "profile_docs",
    "verdict_statement",
]
