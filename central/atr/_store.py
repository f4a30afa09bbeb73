"""The ``verdicts`` table of the CIR: one row per scan the live ATR analysed.

The live ATR writes from its own worker thread, so it keeps its own SQLite
connection on the CIR file: WAL lets it write beside the aggregator's group
commits without either waiting long on the other.  Each verdict is one
explicit transaction in plain SQL (sqlite-utils' write helpers commit on their
own), so a verdict is either wholly in the CIR or not at all.  The full
verdict (findings, GD checks, notes) is kept as JSON beside the columns an
analyst filters on.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from core.errors import ConfigError

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


class VerdictStore:
    """Reads and writes the ``verdicts`` table of the CIR at ``path`` (``cir.sqlite``).

    One instance per thread that uses it: the connection may be opened in one
    thread and then used only in another (``check_same_thread`` is off for
    that hand-over), never from two at once.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.conn = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self._transaction([(SCHEMA, ())])
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the verdicts table in {self.path}: {exc}",
                fix="check state_dir: the CIR must be writable and have free space",
            ) from exc

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.conn.close()

    def _transaction(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run ``statements`` in one explicit transaction: all of them or none."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self.conn.execute(sql, args)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

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


__all__ = ["SCHEMA", "VerdictStore"]
