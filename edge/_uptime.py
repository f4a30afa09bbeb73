"""The scanner's state as the edge sees it, logged durably and replayed to central (R3).

States: ``ready``, ``scanning``, ``fault``, ``interlock``, ``maintenance``,
``offline``. They come from the driver (the scanner's STATUS reports and its
SCAN_START, SCAN_END and FAULT events), from the safety monitor (unsafe →
``interlock``), and from a maintenance flag file a technician creates
(``<state_dir>/<scanner>.maintenance``). No report from the scanner for
``status_timeout_s`` means ``offline``. While the serial control link is lost
(the channel's ``LINK_DOWN`` event, until ``LINK_UP``) the scanner is ``fault``
with the cause "control link down: …": nothing can be commanded, not even a
beam stop.

An entry is the state's record: the tracker's state moves only once the entry
is written. If the log cannot be written (disk full, I/O error) the tracker
keeps its old state, logs the cause once, and tries again on the next tick.

Every change, and a ``mark`` every ``mark_s`` while nothing changes, is appended
to a small SQLite log with a per-scanner sequence number and the edge's
**monotonic** clock. Each entry carries the boot's anchor (wall minus monotonic,
taken once when the process starts), so central places intervals on the
calendar without being misled by a wall-clock jump later in the boot, and can
tell "the edge was up and said so" from "nothing was heard". The heartbeat
carries the entries central has not yet acknowledged; central's heartbeat reply
acknowledges them, so entries written during a network partition reach central
afterwards and the partition is not counted as downtime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from drivers import ControlEvent

log = logging.getLogger("nii.edge.uptime")

STATES = ("ready", "scanning", "fault", "interlock", "maintenance", "offline")
AVAILABLE = frozenset({"ready", "scanning"})
MAX_ENTRIES_PER_HEARTBEAT = 200
KEEP_ACKED_S = 7 * 86400


class StateLog:
    """Durable, sequence-numbered state entries of every scanner of one edge."""

    def __init__(
        self,
        path: Path,
        *,
        mono_ns: Callable[[], int] = time.monotonic_ns,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.path = Path(path)
        self.mono_ns = mono_ns
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
                CREATE TABLE IF NOT EXISTS entries (
                    scanner TEXT, seq INTEGER, boot TEXT, mono_ns INTEGER, anchor_ns INTEGER,
                    state TEXT, cause TEXT, PRIMARY KEY (scanner, seq));
                CREATE TABLE IF NOT EXISTS acks (scanner TEXT PRIMARY KEY, seq INTEGER);
                """
            )
            row = self.db.execute("SELECT value FROM meta WHERE key = 'log'").fetchone()
            if row is None:
                self.log_id = os.urandom(8).hex()
                self.db.execute("INSERT INTO meta VALUES ('log', ?)", [self.log_id])
            else:
                self.log_id = str(row[0])
        except sqlite3.Error as exc:
            raise ConfigError(
                f"cannot open the scanner state log {self.path}: {exc}",
                fix="check state_dir: it must be writable, have free space, and the file "
                "must be an SQLite database (move a damaged one aside)",
            ) from exc
        self.boot = os.urandom(8).hex()
        self.anchor_ns = wall_ns() - mono_ns()  # taken once: later clock jumps do not move it

    def append(self, scanner: str, state: str, cause: str) -> int:
        """Append one entry now; returns its sequence number.

        Raises:
            sqlite3.Error: it could not be committed (nothing was written).
        """
        with self._transaction():
            row = self.db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM entries WHERE scanner = ?", [scanner]
            ).fetchone()
            seq = max(int(row[0]), self.acked(scanner)) + 1
            self.db.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                [scanner, seq, self.boot, self.mono_ns(), self.anchor_ns, state, cause],
            )
        return seq

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN … COMMIT; on failure ROLLBACK only what is still open, and re-raise.

        SQLite has already rolled back a COMMIT that failed (disk full); a second
        ROLLBACK would replace the real cause with "no transaction is active".
        """
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    log.error("state log: rollback failed too: %s", exc)
            raise

    def acked(self, scanner: str) -> int:
        row = self.db.execute("SELECT seq FROM acks WHERE scanner = ?", [scanner]).fetchone()
        return int(row[0]) if row else 0

    def pending(self, scanner: str, limit: int = MAX_ENTRIES_PER_HEARTBEAT) -> list[list[Any]]:
        """Unacknowledged entries: ``[seq, boot, mono_ns, anchor_ns, state, cause]``."""
        rows = self.db.execute(
            "SELECT seq, boot, mono_ns, anchor_ns, state, cause FROM entries "
            "WHERE scanner = ? AND seq > ? ORDER BY seq LIMIT ?",
            [scanner, self.acked(scanner), limit],
        ).fetchall()
        return [list(r) for r in rows]

    def ack(self, scanner: str, log_id: str, seq: int) -> None:
        """Central holds every entry up to ``seq`` of this log; prune old acknowledged ones."""
        if log_id != self.log_id or seq <= self.acked(scanner):
            return
        keep_from = self.mono_ns() - KEEP_ACKED_S * 10**9
        with self._transaction():
            self.db.execute("INSERT OR REPLACE INTO acks VALUES (?, ?)", [scanner, int(seq)])
            self.db.execute(
                "DELETE FROM entries WHERE scanner = ? AND seq <= ? AND boot = ? AND mono_ns < ?",
                [scanner, int(seq), self.boot, keep_from],
            )

    def close(self) -> None:
        self.db.close()


class ScannerStateTracker:
    """Derives one scanner's state, logs each change with its cause, counts available time.

    ``clock`` is monotonic seconds (injectable). ``available_s`` and
    ``observed_s`` are counters for the metrics (an SLA recording rule divides
    their rates).
    """

    def __init__(
        self,
        scanner: str,
        statelog: StateLog,
        *,
        clock: Callable[[], float] = time.monotonic,
        status_timeout_s: float = 5.0,
        mark_s: float = 60.0,
        maintenance_flag: Path | None = None,
    ) -> None:
        self.scanner = scanner
        self.log = statelog
        self.clock = clock
        self.status_timeout_s = status_timeout_s
        self.mark_s = mark_s
        self.maintenance_flag = maintenance_flag
        self.driver_state = "offline"
        self.driver_cause = "edge started; no status from the scanner yet"
        self.last_report = -1e18
        self.safe: bool | None = None  # None: no safety monitor
        self.control_down = ""  # why the serial control link is down ("" while up)
        self.write_error = ""  # why the last entry could not be written ("" when it was)
        self.safety_cause = ""
        self.maintenance = False
        self.state = ""
        self.cause = ""
        self.changed_at = clock()
        self._last_entry = clock()
        self._last_tick = clock()
        self.available_s = 0.0
        self.observed_s = 0.0
        self.seconds_in: dict[str, float] = dict.fromkeys(STATES, 0.0)
        self.acked_seq = statelog.acked(scanner)
        self._update()

    # -- inputs ----------------------------------------------------------------------------
    def on_event(self, ev: ControlEvent) -> None:
        """A report from the scanner's control link, or the link's loss and return.

        ``LINK_DOWN`` (fields: the reason) makes the scanner ``fault`` until
        ``LINK_UP``; neither counts as a report from the scanner.
        """
        f = ev.fields
        if ev.kind == "LINK_DOWN":
            self.control_down = " ".join(str(x) for x in f) or "lost"
            self._update()
            return
        if ev.kind == "LINK_UP":
            self.control_down = ""
            self._update()
            return
        self.last_report = self.clock()
        if ev.kind == "STATUS" and f:
            st = f[0].lower()
            faults = f[4] if len(f) > 4 and f[4] != "-" else ""
            mapped = {
                "idle": "ready",
                "armed": "ready",
                "scanning": "scanning",
                "fault": "fault",
                "interlock": "interlock",
            }.get(st, "fault")
            cause = f"scanner reports {st}" + (f" ({faults})" if faults else "")
            self._driver(mapped, cause)
        elif ev.kind == "SCAN_START":
            self._driver("scanning", f"scan {f[0] if f else '?'} started")
        elif ev.kind == "SCAN_END":
            status = f[2] if len(f) > 2 else ""
            self._driver("ready", f"scan {f[0] if f else '?'} ended {status}".strip())
        elif ev.kind == "FAULT":
            what = " ".join(f)
            self._driver("interlock" if f and f[0] == "INTERLOCK" else "fault", f"fault: {what}")

    def set_safe(self, safe: bool, causes: list[str]) -> None:
        """The site safety monitor's verdict (see ``edge._safety``)."""
        self.safe = safe
        self.safety_cause = "; ".join(causes)
        self._update()

    def _driver(self, state: str, cause: str) -> None:
        if state != self.driver_state or state != self.state:
            self.driver_state, self.driver_cause = state, cause
            self._update()

    # -- time ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Call about once a second: staleness, maintenance flag, marks, counters."""
        now = self.clock()
        dt = max(0.0, now - self._last_tick)
        self._last_tick = now
        self.observed_s += dt
        if self.state:  # "" until the first entry could be written
            self.seconds_in[self.state] += dt
        if self.state in AVAILABLE:
            self.available_s += dt
        if self.maintenance_flag is not None:
            self.maintenance = self.maintenance_flag.exists()
        if self.driver_state != "offline" and now - self.last_report > self.status_timeout_s:
            self.driver_state = "offline"
            self.driver_cause = f"no report from the scanner for {self.status_timeout_s:g} s"
        self._update()
        if now - self._last_entry >= self.mark_s:
            self._append(self.state, "mark")

    @property
    def scanning(self) -> bool:
        return self.state == "scanning"

    def _derive(self) -> tuple[str, str]:
        if self.maintenance:
            return "maintenance", "maintenance flag set by a technician"
        if self.control_down:
            return "fault", f"control link down: {self.control_down}"
        if self.driver_state in ("offline", "fault"):
            return self.driver_state, self.driver_cause
        if self.safe is False:
            return "interlock", f"site unsafe: {self.safety_cause}"
        return self.driver_state, self.driver_cause

    def _update(self) -> None:
        state, cause = self._derive()
        if state != self.state:
            if not self._append(state, cause):
                return  # not recorded: stay where the log is; the next tick tries again
            old = self.state or "(start)"
            self.state, self.cause = state, cause
            self.changed_at = self.clock()
            log.info("%s: state %s → %s: %s", self.scanner, old, state, cause)

    def _append(self, state: str, cause: str) -> bool:
        """Write one entry; False (logged once per failure streak) when it could not be."""
        try:
            self.log.append(self.scanner, state, cause)
        except (sqlite3.Error, OSError) as exc:
            if not self.write_error:
                log.error(
                    "%s: cannot record state %s in %s: %s; retrying every tick",
                    self.scanner,
                    state,
                    self.log.path,
                    exc,
                )
            self.write_error = str(exc)
            return False
        if self.write_error:
            log.info("%s: state log writable again", self.scanner)
            self.write_error = ""
        self._last_entry = self.clock()
        return True

    def stopping(self) -> None:
        """A clean stop: close this boot's record exactly (best effort)."""
        self._append("offline", "edge stopping")

    # -- heartbeat exchange ----------------------------------------------------------------
    def heartbeat_state(self) -> dict[str, Any]:
        """What the heartbeat carries: the state now and the entries not yet acknowledged."""
        return {
            "scanner_state": self.state,
            "state_cause": self.cause,
            "uptime": {
                "scanner": self.scanner,
                "log": self.log.log_id,
                "entries": self.log.pending(self.scanner),
            },
        }

    def on_central_heartbeat(self, state: dict[str, Any]) -> None:
        """Central's heartbeat reply: ``{"uptime_ack": {"log": …, "seq": …}}``."""
        ack = state.get("uptime_ack")
        if isinstance(ack, dict) and ack.get("scanner", self.scanner) == self.scanner:
            try:
                self.log.ack(self.scanner, str(ack["log"]), int(ack["seq"]))
                self.acked_seq = self.log.acked(self.scanner)
            except (KeyError, TypeError, ValueError, OverflowError):
                pass
            except sqlite3.Error as exc:  # not recorded: central's next reply acks again
                log.warning("%s: cannot record central's ack: %s", self.scanner, exc)


__all__ = ["AVAILABLE", "STATES", "ScannerStateTracker", "StateLog"]
