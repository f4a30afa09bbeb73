"""The enrolled edges by CurveZMQ key, kept in memory for the event loop.

Every message central receives, and every connection ZeroMQ's authentication
(ZAP) asks about, needs the sender's enrollment. Reading it from the CIR on the
event loop made the whole aggregator hang with its database: a PostgreSQL
server that stops answering (paused, its disk stalled) kept the loop inside one
query, so no heartbeat was answered and no ``storage`` alarm raised until the
server came back. So a thread of its own, on a connection of its own, reads the
``edges`` table every ``REFRESH_S`` and the event loop looks up the last copy it
read: a revocation takes effect within that time, and a database that hangs
leaves the last copy in use. A key not in the copy (an edge enrolled a moment
ago) is looked up by the caller itself (``Central.edge_row``, under its
connection's deadline) and remembered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from central._sql import Sql

__all__ = ["REFRESH_S", "EnrolledKeys"]

log = logging.getLogger("nii.central")

REFRESH_S = 1.0
"""How often the enrolled edges are read again (s): the longest an enrollment or a
revocation waits to take effect."""

MIN_GAP_S = 0.2
"""The shortest time between two reads when unknown keys ask for one (s)."""


class EnrolledKeys:
    """The ``edges`` rows by ``curve_public`` (z85), read by a thread of its own.

    Args:
        open_sql: Opens a connection to the CIR's database (one for the thread).
        refresh_s: Seconds between reads.

    Raises:
        ConfigError, StorageError: the first read (made at once, in the caller's
            thread) fails: the CIR cannot be read at all.
    """

    def __init__(self, open_sql: Callable[[], Sql], refresh_s: float = REFRESH_S) -> None:
        self._open = open_sql
        self.refresh_s = refresh_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        db = open_sql()
        try:
            self._rows = self._read(db)
        finally:
            db.close()
        self._thread = threading.Thread(target=self._run, name="nii-enrolled", daemon=True)
        self._thread.start()

    @staticmethod
    def _read(db: Sql) -> dict[str, dict[str, Any]]:
        return {str(r["curve_public"]): r for r in db.rows("SELECT * FROM edges")}

    def get(self, curve_z85: str) -> dict[str, Any] | None:
        """The edge enrolled with this key, revoked or not, as last read; None if none.
        An unknown key has the table read again soon (an edge enrolled a moment ago
        connects again and is let in)."""
        row = self._rows.get(curve_z85)
        if row is None:
            self._wake.set()
        return row

    def remember(self, row: dict[str, Any]) -> None:
        """An ``edges`` row read meanwhile (a key enrolled since the last read)."""
        self._rows = {**self._rows, str(row["curve_public"]): row}

    def _run(self) -> None:
        db: Sql | None = None
        failing = False
        while not self._stop.is_set():
            self._wake.wait(self.refresh_s)
            if self._stop.is_set():
                break
            self._wake.clear()
            try:
                if db is None:
                    db = self._open()
                self._rows = self._read(db)  # one reference swapped: no lock needed
                if failing:
                    log.info("the enrolled edges are read again")
                failing = False
            except Exception as exc:  # the last copy stays in use; tried again
                if not failing:
                    log.warning("cannot read the enrolled edges (the last copy is used): %s", exc)
                failing = True
                if db is not None:
                    try:
                        db.close()
                    except Exception:  # a connection already broken
                        log.debug("closing the enrolled edges' connection failed", exc_info=True)
                    db = None
            self._stop.wait(MIN_GAP_S)
        if db is not None:
            try:
                db.close()
            except Exception:
                log.debug("closing the enrolled edges' connection failed", exc_info=True)

    def close(self) -> None:
        """Stop the thread (not waited for long: it may be inside a hung read)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
