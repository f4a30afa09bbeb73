"""Scanner uptime and the 98 % SLA (R3): central accounting per scanner and period.

Source of truth: each edge's own **state log** (``edge._uptime``), replayed to
central over the heartbeats and acknowledged, so a network partition or a
central restart costs nothing when the edge's record shows the scanner was up.
Each entry is placed on the calendar as ``anchor + monotonic`` of its edge boot
(anchor = wall - monotonic, taken once at the boot), which keeps durations
exact across wall-clock jumps at the edge or at central.

Timeline rules, per scanner:

* an entry's state lasts until the next entry of the same boot, but at most
  ``max_gap_s`` (the edge writes a mark every minute; a longer silence means the
  edge was not running, which is no evidence of uptime);
* the last entry of a boot ends there, except the newest boot's, which runs to
  *now* while it is recent (``live_grace_s``);
* a later boot overrides an earlier one where they overlap;
* time covered by no record is ``offline`` ("nothing heard").

Accounting: ``availability = available / (scheduled - agreed maintenance)``,
where available = ``ready`` + ``scanning``. Scheduled time is 24/7 unless the SLA
file gives daily hours; agreed maintenance windows come from the SLA file. A
``maintenance`` state outside an agreed window is downtime. Periods: a day, a
month, or a Pakistan fiscal year (1 July-30 June), in the SLA's time zone
(Asia/Karachi by default).

Commissioning: a scanner's accounting starts when it was commissioned: its
first state entry (the first heartbeat that carried one), or the time given to
``nii uptime commission --scanner X [--at TIME]``, kept in the store. Time
before it is not scheduled time of that scanner: a new installation does not
start its first month with weeks of "offline".

Alert: when the current period's projection (availability so far, the rate at
which the period is running) falls under the target, central raises an
``sla_projection`` alarm once per scanner and period; ``best_case`` (everything
left of the period available) under target means the breach is certain. A
projection means something only once enough of the period has been observed:
at least :data:`MIN_OBSERVED_S` (a day) or :data:`MIN_OBSERVED_SHARE` (5 %) of
the period's scheduled time, whichever is less. Before that the report says
"not enough data" and no SLA alarm is raised.

Input: the state entries come from an edge over the network and are checked
one by one (:func:`parse_uptime`) before anything is stored; a heartbeat with
one bad entry is refused whole, with an ``uptime_refused`` alarm naming the
edge, and changes nothing.

Storage: the ``uptime_*`` tables of the CIR's database (SQLite or PostgreSQL,
through ``central._sql``), so that several aggregators on one PostgreSQL keep one
record; a store an older release kept in ``state_dir/uptime.sqlite`` is moved in
once (decision 0017).
"""

from __future__ import annotations

import asyncio
import calendar
import csv
import datetime as dt
import logging
import shutil
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from central._cir import database_target
from central._sql import Sql, is_postgres_url, is_sql_error, migrate
from core.errors import ConfigError, NiiError, ProtocolError

log = logging.getLogger("nii.central.uptime")

STATES = ("ready", "scanning", "fault", "interlock", "maintenance", "offline")
AVAILABLE = frozenset({"ready", "scanning"})
UNHEARD = "nothing heard from the edge"
Window = tuple[float, float]

MIN_OBSERVED_S = 86400.0
"""A projection needs at least a day of observed scheduled time (s) ..."""
MIN_OBSERVED_SHARE = 0.05
"""... or this share of the period's scheduled time, whichever is less."""

MAX_ENTRIES = 1000
"""Most state entries one heartbeat may carry (an edge sends at most 200)."""
EARLIEST_S = 1577836800.0
"""2020-01-01T00:00Z: an entry placed before it comes from a clock that was never set."""
AHEAD_S = 3600.0
"""How far ahead of central's clock an entry may lie (s) before it is refused."""
_MAX_TEXT = 256
_MAX_CAUSE = 2000
_INT64 = 2**63 - 1


@dataclass(frozen=True)
class Entry:
    """One state entry of an edge's log, checked (see :func:`parse_uptime`).

    Attributes:
        seq: sequence number in the edge's log, 1 ≤ seq < 2**63.
        boot: the edge boot that wrote it (a short text).
        mono_ns: the edge's monotonic clock at the entry, ns, 0 ≤ mono_ns < 2**63.
        anchor_ns: that boot's wall-minus-monotonic anchor, ns.
        state: one of :data:`STATES`.
        cause: why, free text (at most 2000 characters).
    """

    seq: int
    boot: str
    mono_ns: int
    anchor_ns: int
    state: str
    cause: str

    @property
    def at(self) -> float:
        """Calendar time of the entry, epoch seconds."""
        return (self.anchor_ns + self.mono_ns) / 1e9


@dataclass(frozen=True)
class UptimeReport:
    """The ``uptime`` part of one heartbeat: a scanner, the edge log and its new entries."""

    scanner: str
    log: str
    entries: tuple[Entry, ...]


def _count(v: Any) -> int | None:
    """A non-negative whole number an edge reported, or None (absent or not one)."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**62:
        return None
    return v


def _text_or_none(v: Any) -> str | None:
    return v[:_MAX_CAUSE] if isinstance(v, str) and v else None


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProtocolError(f"{what} is not an integer: {type(v).__name__}")
    if not lo <= v <= hi:
        raise ProtocolError(f"{what} is out of range")
    return v


def _text(v: Any, what: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(v, str):
        raise ProtocolError(f"{what} is not a string: {type(v).__name__}")
    if len(v) > limit or (not v and not empty):
        raise ProtocolError(f"{what} is empty or longer than {limit} characters")
    return v


def parse_uptime(doc: Any, now: float) -> UptimeReport:
    """Check a heartbeat's ``uptime`` document field by field.

    Args:
        doc: ``{"scanner": str, "log": str, "entries": [[seq, boot, mono_ns,
            anchor_ns, state, cause], ...]}`` as received (untrusted).
        now: central's wall clock, epoch seconds.

    Returns:
        The checked :class:`UptimeReport`.

    Raises:
        ProtocolError: naming the first field that does not fit: a wrong type,
            an integer out of range (1e400 and 2**70 are), an unknown state, too
            many entries, or an entry whose time lies before 2020 or more than
            an hour ahead of ``now``.
    """
    if not isinstance(doc, dict):
        raise ProtocolError(f"uptime is not an object: {type(doc).__name__}")
    scanner = _text(doc.get("scanner"), "uptime scanner", 64)
    log_id = _text(doc.get("log"), "uptime log", _MAX_TEXT)
    raw = doc.get("entries", [])
    if not isinstance(raw, list):
        raise ProtocolError(f"uptime entries is not a list: {type(raw).__name__}")
    if len(raw) > MAX_ENTRIES:
        raise ProtocolError(f"{len(raw)} uptime entries in one heartbeat (at most {MAX_ENTRIES})")
    out: list[Entry] = []
    for i, e in enumerate(raw):
        w = f"uptime entry {i}"
        if not isinstance(e, list | tuple) or len(e) != 6:
            raise ProtocolError(f"{w} is not a list of 6 fields")
        state = _text(e[4], f"{w} state", 32)
        if state not in STATES:
            raise ProtocolError(f"{w} state {state!r} is not one of {', '.join(STATES)}")
        entry = Entry(
            seq=_int(e[0], f"{w} seq", 1, _INT64),
            boot=_text(e[1], f"{w} boot", _MAX_TEXT),
            mono_ns=_int(e[2], f"{w} mono_ns", 0, _INT64),
            anchor_ns=_int(e[3], f"{w} anchor_ns", -_INT64, _INT64),
            state=state,
            cause=_text(e[5], f"{w} cause", _MAX_CAUSE, empty=True),
        )
        at = entry.at
        if not EARLIEST_S <= at <= now + AHEAD_S:
            raise ProtocolError(
                f"{w} time {at:.0f} is implausible (before 2020 or over "
                f"{AHEAD_S:.0f} s ahead of central's clock)"
            )
        out.append(entry)
    return UptimeReport(scanner, log_id, tuple(out))


# -- the store ------------------------------------------------------------------------------------
class UptimeStore:
    """Every state entry central has received, per scanner and edge log: the ``uptime_*``
    tables of the CIR's database (``central._sql``, schema step 5; decision 0017), so
    that every aggregator sharing a PostgreSQL CIR keeps one record.

    One connection: not shared between threads (open one store per thread).
    """

    #: seqs read at a time while the acknowledgement walks over stored entries
    _WALK = 1000

    def __init__(
        self,
        target: Path | str,
        *,
        create: bool = True,
        legacy: Path | None = None,
        deadline_s: float | None = None,
    ) -> None:
        """Open the uptime record in the CIR's database ``target``: the path of its SQLite
        file (made if missing, with ``create``) or a PostgreSQL URL; its schema is brought
        up to date.

        ``legacy``: a store of a release before decision 0017 (``state_dir/uptime.sqlite``),
        moved into these tables once (:func:`import_legacy`).

        Raises:
            ConfigError: ``create`` is false and there is no SQLite file at ``target``
                (a mistyped ``state_dir``), or the database cannot be opened, brought up to
                date, or ``legacy`` cannot be moved.
        """
        self.target = str(target)
        self.path: Path | None = None if is_postgres_url(self.target) else Path(target)
        if not create and self.path is not None and not self.path.exists():
            raise ConfigError(
                f"there is no uptime record in {self.path.parent} (no CIR database there)",
                fix="check state_dir in the central configuration (--config); central "
                "creates the record when it first runs",
            )
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = Sql(self.target, deadline_s=deadline_s)
        except (OSError, ConfigError) as exc:
            raise _cannot_open(self.target, exc) from exc
        try:
            try:
                migrate(self.db)
            except ConfigError as exc:
                raise _cannot_open(self.target, exc) from exc
            if legacy is not None:
                import_legacy(self.db, legacy)  # its errors name the old file and a fix
        except BaseException:
            self.db.close()
            raise
        self._acked: dict[tuple[str, str], int] = {}

    @property
    def location(self) -> str:
        """The database, for messages (a path, or a URL without its password)."""
        return self.db.location

    def close(self) -> None:
        self.db.close()

    def ingest(self, doc: Any, recv_ns: int | None = None) -> dict[str, Any]:
        """Store a heartbeat's ``uptime`` entries; returns the acknowledgement to send back.

        Args:
            doc: the heartbeat's ``uptime`` document, untrusted (see :func:`parse_uptime`).
            recv_ns: when it arrived, ns since the epoch (now).

        Returns:
            ``{"scanner", "log", "seq"}``: every entry up to ``seq`` of that log is stored.

        Raises:
            ProtocolError: the document does not fit; nothing was stored.
            Exception: the database's own error (``central._sql.is_sql_error``): the
                store could not commit; nothing was stored and the acknowledgement did
                not move.
        """
        recv_ns = recv_ns or time.time_ns()
        return self.ingest_report(parse_uptime(doc, recv_ns / 1e9), recv_ns)

    def ingest_report(self, rep: UptimeReport, recv_ns: int) -> dict[str, Any]:
        """:meth:`ingest` of a report already checked by :func:`parse_uptime`."""
        scanner, log_id = rep.scanner, rep.log
        rows = [
            {
                "scanner": scanner,
                "log": log_id,
                "seq": e.seq,
                "boot": e.boot,
                "mono_ns": e.mono_ns,
                "anchor_ns": e.anchor_ns,
                "state": e.state,
                "cause": e.cause,
                "recv_ns": recv_ns,
            }
            for e in rep.entries
        ]
        known = self._acked.get((scanner, log_id))
        if not rows and known is not None:
            # most heartbeats carry no new entries: answer without a transaction (and its
            # fsync) on the event loop
            return {"scanner": scanner, "log": log_id, "seq": known}
        db = self.db
        with db.transaction():
            db.insert("uptime_entries", rows, skip_existing=("scanner", "log", "seq"))
            r = db.value(
                "SELECT acked_seq FROM uptime_logs WHERE scanner = ? AND log = ?",
                [scanner, log_id],
            )
            acked = int(r) if r is not None else self._first_seq(scanner, log_id) - 1
            acked = self._walk(scanner, log_id, acked)
            # two aggregators may answer the same log during a fail-over: the
            # acknowledgement only moves forward
            db.execute(
                "INSERT INTO uptime_logs (scanner, log, acked_seq) VALUES (?, ?, ?) "
                "ON CONFLICT (scanner, log) DO UPDATE SET acked_seq = "
                + db.greatest("uptime_logs.acked_seq", "excluded.acked_seq"),
                [scanner, log_id, acked],
            )
            if rep.entries:  # the first entry ever heard commissions the scanner
                first = min(e.at for e in rep.entries)
                db.execute(
                    "INSERT INTO uptime_commissioned (scanner, at_s, how, ts_ns) "
                    "VALUES (?, ?, 'first heartbeat', ?) "
                    "ON CONFLICT (scanner) DO UPDATE SET at_s = "
                    + db.least("uptime_commissioned.at_s", "excluded.at_s")
                    + " WHERE uptime_commissioned.how = 'first heartbeat'",
                    [scanner, first, recv_ns],
                )
        self._acked[(scanner, log_id)] = acked  # only once it is committed
        return {"scanner": scanner, "log": log_id, "seq": acked}

    def _walk(self, scanner: str, log_id: str, acked: int) -> int:
        """The last seq of the unbroken run of stored entries after ``acked``."""
        while True:
            seqs = [
                int(r["seq"])
                for r in self.db.rows(
                    "SELECT seq FROM uptime_entries WHERE scanner = ? AND log = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    [scanner, log_id, acked, self._WALK],
                )
            ]
            for s in seqs:
                if s != acked + 1:
                    return acked
                acked = s
            if len(seqs) < self._WALK:
                return acked

    def commission(self, scanner: str, at: float) -> None:
        """Record that ``scanner`` was commissioned at ``at`` (epoch s): accounting starts there.

        An explicit commissioning replaces an earlier one and the one taken from
        the first heartbeat.
        """
        with self.db.transaction():
            self.db.upsert(
                "uptime_commissioned",
                [
                    {
                        "scanner": scanner,
                        "at_s": float(at),
                        "how": "explicit",
                        "ts_ns": time.time_ns(),
                    }
                ],
                ["scanner"],
            )

    def commissioned(self, scanner: str) -> float | None:
        """When ``scanner`` was commissioned (epoch s), or None if it never was.

        A record written before commissioning was recorded uses the scanner's
        first entry.
        """
        at = self.db.value("SELECT at_s FROM uptime_commissioned WHERE scanner = ?", [scanner])
        if at is not None:
            return float(at)
        t = self.db.value(
            "SELECT MIN(anchor_ns + mono_ns) AS t FROM uptime_entries WHERE scanner = ?",
            [scanner],
        )
        return None if t is None else int(t) / 1e9

    def _first_seq(self, scanner: str, log_id: str) -> int:
        r = self.db.value(
            "SELECT MIN(seq) AS s FROM uptime_entries WHERE scanner = ? AND log = ?",
            [scanner, log_id],
        )
        return int(r) if r is not None else 1

    def scanners(self) -> list[str]:
        """Every scanner heard of or commissioned, sorted."""
        # uptime_logs has a row for every scanner and log with entries: far fewer rows
        return [
            str(r["scanner"])
            for r in self.db.rows(
                "SELECT scanner FROM uptime_logs UNION SELECT scanner FROM uptime_commissioned "
                "ORDER BY 1"
            )
        ]

    def rows(self, scanner: str) -> list[tuple[Any, ...]]:
        """``(log, seq, boot, mono_ns, anchor_ns, state, cause)`` of one scanner."""
        return [
            tuple(r.values())
            for r in self.db.rows(
                "SELECT log, seq, boot, mono_ns, anchor_ns, state, cause FROM uptime_entries "
                "WHERE scanner = ? ORDER BY log, seq",
                [scanner],
            )
        ]

    def alerted(self, scanner: str, period: str) -> bool:
        return (
            self.db.one(
                "SELECT 1 AS x FROM uptime_alerts WHERE scanner = ? AND period = ?",
                [scanner, period],
            )
            is not None
        )

    def mark_alerted(self, scanner: str, period: str) -> None:
        with self.db.transaction():
            self.db.insert(
                "uptime_alerts",
                [{"scanner": scanner, "period": period, "ts_ns": time.time_ns()}],
                skip_existing=("scanner", "period"),
            )

    def bound_edge(self, scanner: str) -> str | None:
        """The edge ``scanner``'s stream in the CIR is bound to, or None (no stream yet)."""
        edge = self.db.value("SELECT edge FROM streams WHERE scanner = ?", [scanner])
        return None if edge is None else str(edge)

    def known_scanners(self) -> set[str]:
        """Every scanner the uptime record or the CIR's streams know of."""
        rows = self.db.rows("SELECT scanner FROM streams")
        return set(self.scanners()) | {str(r["scanner"]) for r in rows}


def _cannot_open(target: str, exc: BaseException) -> ConfigError:
    # a ConfigError of central._sql names the database already (without its password);
    # an OSError comes from making the folder of a SQLite file: a path
    why = exc.message if isinstance(exc, ConfigError) else f"{target}: {exc}"
    return ConfigError(
        f"cannot open the uptime record: {why}",
        fix="check state_dir (it must exist, be writable and have free space), or cir in [central]",
    )


def import_legacy(db: Sql, path: Path) -> int:
    """Move a central uptime store of a release before decision 0017 (``path``, i.e.
    ``state_dir/uptime.sqlite``) into the CIR's ``uptime_*`` tables, once.

    Rows the CIR has already are kept (the import is idempotent: a crash between the
    commit and the rename only repeats it); an explicit commissioning in the old store
    replaces one taken from a first heartbeat.  After the commit the file is renamed to
    ``uptime.sqlite.imported`` (kept as a backup, never read again).  A file that is not
    central's store (an edge's state log has other tables) is left alone.

    Returns:
        How many rows were read from the old store (0: none there, or not central's).

    Raises:
        ConfigError: the old store cannot be read or renamed.
    """
    path = Path(path)
    if not path.exists():
        return 0
    try:
        old = Sql(path, read_only=True)
    except ConfigError:
        if not path.exists():  # moved by another process just now
            return 0
        raise
    try:
        have = old.tables()
        if not {"entries", "logs"} <= have:
            return 0
        entries = old.rows(
            "SELECT scanner, log, seq, boot, mono_ns, anchor_ns, state, cause, recv_ns FROM entries"
        )
        logs = old.rows("SELECT scanner, log, acked_seq FROM logs")
        alerts = old.rows("SELECT scanner, period, ts_ns FROM alerts") if "alerts" in have else []
        commissioned = (
            old.rows("SELECT scanner, at AS at_s, how, ts_ns FROM commissioned")
            if "commissioned" in have
            else []
        )
    except Exception as exc:
        if not is_sql_error(exc):
            raise
        raise ConfigError(
            f"cannot read the old uptime record {path}: {exc}",
            fix="check that the file is readable by this user (or move it aside: the "
            "uptime accounting then starts afresh)",
        ) from exc
    finally:
        old.close()
    try:
        with db.transaction():
            db.insert("uptime_entries", entries, skip_existing=("scanner", "log", "seq"))
            db.insert("uptime_logs", logs, skip_existing=("scanner", "log"))
            db.insert("uptime_alerts", alerts, skip_existing=("scanner", "period"))
            db.insert("uptime_commissioned", commissioned, skip_existing=("scanner",))
            for c in commissioned:
                if c["how"] == "explicit":
                    db.execute(
                        "UPDATE uptime_commissioned SET at_s = ?, how = 'explicit', ts_ns = ? "
                        "WHERE scanner = ? AND how = 'first heartbeat'",
                        [c["at_s"], c["ts_ns"], c["scanner"]],
                    )
    except Exception as exc:
        if not is_sql_error(exc):
            raise
        raise ConfigError(
            f"cannot move the old uptime record {path} into the CIR's database "
            f"{db.location}: {exc}",
            fix="the database must be writable and have free space; or move the file "
            "aside (the uptime accounting then starts afresh)",
        ) from exc
    done = path.with_name(path.name + ".imported")
    try:
        path.replace(done)
        for suffix in ("-wal", "-shm"):  # what SQLite keeps beside it goes with it
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.replace(done.with_name(done.name + suffix))
    except OSError as exc:
        raise ConfigError(
            f"moved the uptime record {path} into the CIR but cannot rename it: {exc}",
            fix=f"rename it to {done.name} by hand (it would be read again, harmlessly)",
        ) from exc
    n = len(entries) + len(logs) + len(alerts) + len(commissioned)
    log.info("uptime: moved %d rows of %s into the CIR's database %s", n, path, db.location)
    return n


# -- timeline -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    start: float  # epoch seconds
    end: float
    state: str
    cause: str = ""


def build_timeline(
    rows: Iterable[tuple[Any, ...]],
    *,
    now: float,
    max_gap_s: float = 180.0,
    live_grace_s: float = 180.0,
) -> list[Interval]:
    """The intervals one scanner's edge vouched for, in time order (gaps not filled)."""
    boots: dict[tuple[str, str], list[tuple[int, float, str, str]]] = defaultdict(list)
    for log_id, seq, boot, mono_ns, anchor_ns, state, cause in rows:
        boots[(log_id, boot)].append(
            (int(seq), (int(anchor_ns) + int(mono_ns)) / 1e9, str(state), str(cause))
        )
    ordered = sorted((sorted(v) for v in boots.values()), key=lambda es: es[0][1])
    out: list[Interval] = []
    for i, es in enumerate(ordered):
        limit = ordered[i + 1][0][1] if i + 1 < len(ordered) else float("inf")
        for j, (_, t, state, cause) in enumerate(es):
            if j + 1 < len(es):
                end = min(es[j + 1][1], t + max_gap_s)
            elif i + 1 == len(ordered) and 0 <= now - t <= live_grace_s:
                end = now
            else:
                end = t
            end = min(end, limit, now)
            if end > t:
                out.append(Interval(t, end, state, cause))
    return out


def fill(intervals: list[Interval], t0: float, t1: float) -> list[Interval]:
    """Clip to ``[t0, t1)``, fill what no record covers with ``offline``, merge neighbours."""
    out: list[Interval] = []
    cur = t0
    for iv in sorted(intervals, key=lambda x: x.start):
        s, e = max(iv.start, cur), min(iv.end, t1)
        if e <= s:
            continue
        if s > cur:
            out.append(Interval(cur, s, "offline", UNHEARD))
        out.append(Interval(s, e, iv.state, iv.cause))
        cur = e
    if cur < t1:
        out.append(Interval(cur, t1, "offline", UNHEARD))
    merged: list[Interval] = []
    for iv in out:
        last = merged[-1] if merged else None
        if (
            last
            and last.state == iv.state
            and last.end == iv.start
            and ((last.cause == UNHEARD) == (iv.cause == UNHEARD))
        ):
            merged[-1] = Interval(last.start, iv.end, iv.state, last.cause)
        else:
            merged.append(iv)
    return merged


# -- SLA, schedule, periods -----------------------------------------------------------------------
@dataclass
class Sla:
    """The SLA's terms: target, time zone, daily scheduled hours, agreed maintenance."""

    target: float = 0.98
    tz: dt.tzinfo = field(default_factory=lambda: _zone("Asia/Karachi"))
    hours: tuple[int, int] | None = None  # minutes from midnight, [start, end)
    maintenance: list[tuple[str, float, float]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> Sla:
        """Read ``sla.toml`` (or the defaults: 98 %, 24/7, Asia/Karachi, no maintenance)."""
        if path is None:
            return cls()
        p = Path(path)
        try:
            doc = tomllib.loads(p.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"cannot read the SLA file {p}: {exc}", fix="check the path and its TOML syntax"
            ) from exc
        target = doc.get("target", 0.98)
        if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1:
            raise ConfigError(
                f"{p}: target = {target!r} is not a share of time",
                fix="write it as a number from 0 to 1, e.g. target = 0.98",
            )
        tz = doc.get("timezone", "Asia/Karachi")
        if not isinstance(tz, str):
            raise ConfigError(f"{p}: timezone = {tz!r} is not a name", fix='e.g. "Asia/Karachi"')
        try:
            zone = _zone(tz)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc.message}", fix=exc.fix) from None
        sla = cls(target=float(target), tz=zone)
        hours = doc.get("hours")
        if hours:
            try:
                a, b = str(hours).split("-")
                sla.hours = (_minutes(a), _minutes(b))
            except ValueError as exc:
                raise ConfigError(
                    f"{p}: hours = {hours!r} is not HH:MM-HH:MM",
                    fix='write e.g. hours = "06:00-22:00"',
                ) from exc
        windows = doc.get("maintenance", [])
        if not isinstance(windows, list):
            raise ConfigError(
                f"{p}: maintenance must be [[maintenance]] tables",
                fix="give each window as a [[maintenance]] table with scanner, start and end",
            )
        for m in windows:
            try:
                start, end = _epoch(m["start"], sla.tz), _epoch(m["end"], sla.tz)
                if end <= start:
                    raise ValueError("ends before it starts")
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"{p}: a [[maintenance]] window is malformed: {m!r}",
                    fix="give scanner, start and end as TOML date-times",
                ) from exc
            sla.maintenance.append((str(m.get("scanner", "*")), start, end))
        return sla

    def scheduled(self, t0: float, t1: float) -> list[Window]:
        if self.hours is None:
            return [(t0, t1)] if t1 > t0 else []
        out: list[Window] = []
        day = dt.datetime.fromtimestamp(t0, self.tz).date() - dt.timedelta(days=1)
        while True:
            midnight = dt.datetime.combine(day, dt.time(), self.tz).timestamp()
            if midnight >= t1:
                break
            a, b = midnight + self.hours[0] * 60, midnight + self.hours[1] * 60
            if min(b, t1) > max(a, t0):
                out.append((max(a, t0), min(b, t1)))
            day += dt.timedelta(days=1)
        return out

    def maintenance_for(self, scanner: str) -> list[Window]:
        return sorted((a, b) for s, a, b in self.maintenance if s in ("*", scanner))


def _zone(name: str) -> dt.tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Karachi":  # no tz database: PKT is UTC+5 without DST
            return dt.timezone(dt.timedelta(hours=5), "PKT")
        raise ConfigError(
            f"unknown time zone {name!r}", fix="use an IANA name, e.g. Asia/Karachi"
        ) from None


def _minutes(hhmm: str) -> int:
    h, m = hhmm.strip().split(":")
    v = int(h) * 60 + int(m)
    if not 0 <= v <= 24 * 60:
        raise ValueError(hhmm)
    return v


def _epoch(v: Any, tz: dt.tzinfo) -> float:
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=tz)).timestamp()
    if isinstance(v, str):
        d = dt.datetime.fromisoformat(v)
        return (d if d.tzinfo else d.replace(tzinfo=tz)).timestamp()
    raise ValueError(v)


@dataclass(frozen=True)
class Period:
    label: str
    start: float
    end: float


def fiscal_year_of(d: dt.date) -> int:
    """Pakistan's fiscal year runs 1 July-30 June; FY2025-26 starts on 1 July 2025."""
    return d.year if d.month >= 7 else d.year - 1


def period(spec: str, now: float, tz: dt.tzinfo) -> Period:
    """``day``, ``month``, ``fiscal``, ``YYYY-MM-DD``, ``YYYY-MM``, ``FY2025-26`` or ``FY2025``."""
    today = dt.datetime.fromtimestamp(now, tz).date()

    def ts(d: dt.date) -> float:
        return dt.datetime.combine(d, dt.time(), tz).timestamp()

    s = spec.strip()
    try:
        if s == "day":
            s = today.isoformat()
        elif s == "month":
            s = today.strftime("%Y-%m")
        elif s == "fiscal":
            s = f"FY{fiscal_year_of(today)}"
        if s.upper().startswith("FY"):
            y = int(s[2:].split("-")[0])
            return Period(
                f"FY{y}-{(y + 1) % 100:02d}", ts(dt.date(y, 7, 1)), ts(dt.date(y + 1, 7, 1))
            )
        if len(s) == 7:
            y, m = int(s[:4]), int(s[5:])
            last = calendar.monthrange(y, m)[1]
            return Period(s, ts(dt.date(y, m, 1)), ts(dt.date(y, m, last) + dt.timedelta(days=1)))
        d = dt.date.fromisoformat(s)
        return Period(s, ts(d), ts(d + dt.timedelta(days=1)))
    except ValueError as exc:
        raise ConfigError(
            f"--period {spec!r} is not a period",
            fix="use day, month, fiscal, 2025-07-14, 2025-07 or FY2025-26",
        ) from exc


def days_of(p: Period, tz: dt.tzinfo) -> list[Period]:
    out: list[Period] = []
    d = dt.datetime.fromtimestamp(p.start, tz).date()
    while True:
        q = period(d.isoformat(), p.start, tz)
        if q.start >= p.end:
            return out
        out.append(q)
        d += dt.timedelta(days=1)


# -- accounting -----------------------------------------------------------------------------------
def _intersect(a: list[Window], b: list[Window]) -> list[Window]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _subtract(a: list[Window], b: list[Window]) -> list[Window]:
    out: list[Window] = []
    for s, e in a:
        cur = s
        for bs, be in b:
            if be <= cur or bs >= e:
                continue
            if bs > cur:
                out.append((cur, bs))
            cur = max(cur, be)
        if cur < e:
            out.append((cur, e))
    return out


def _measure(ws: list[Window]) -> float:
    return sum(e - s for s, e in ws)


@dataclass
class Account:
    """One scanner's accounting over one period (up to ``until``)."""

    scanner: str
    period: Period
    until: float
    scheduled_s: float
    maintenance_s: float
    available_s: float
    observed_s: float
    by_state: dict[str, float]
    remaining_s: float  # scheduled, non-maintenance time left in the period after ``until``
    since: float | None = None  # commissioning, when inside the period (epoch s)

    @property
    def base_s(self) -> float:
        return self.scheduled_s - self.maintenance_s

    @property
    def enough_data(self) -> bool:
        """Whether a projection means something yet: at least a day, or 5 % of the
        period's scheduled time since commissioning, whichever is less, observed."""
        need = min(MIN_OBSERVED_S, MIN_OBSERVED_SHARE * (self.base_s + self.remaining_s))
        return self.base_s > 0 and self.base_s >= need

    @property
    def availability(self) -> float | None:
        return self.available_s / self.base_s if self.base_s > 0 else None

    @property
    def best_case(self) -> float | None:
        total = self.base_s + self.remaining_s
        return (self.available_s + self.remaining_s) / total if total > 0 else None


def account(
    scanner: str,
    timeline: list[Interval],
    sla: Sla,
    p: Period,
    now: float,
    *,
    since: float | None = None,
) -> Account:
    """Availability = available / (scheduled - agreed maintenance) over ``p`` up to ``now``.

    Args:
        scanner: the scanner's id.
        timeline: its intervals (:func:`build_timeline`).
        sla: the SLA terms.
        p: the period.
        now: epoch s; the account runs up to ``min(now, p.end)``.
        since: the scanner's commissioning (epoch s), or None: no time before it
            is scheduled time (a period wholly before it has no data).

    Returns:
        The :class:`Account`.
    """
    start = p.start if since is None else min(max(p.start, since), p.end)
    until = max(start, min(p.end, now))
    sched = sla.scheduled(start, until)
    maint = _intersect(sched, sla.maintenance_for(scanner))
    base = _subtract(sched, maint)
    by_state = dict.fromkeys(STATES, 0.0)
    unheard = 0.0
    for iv in fill(timeline, start, until):
        m = _measure(_intersect(base, [(iv.start, iv.end)]))
        by_state[iv.state] = by_state.get(iv.state, 0.0) + m
        if iv.cause == UNHEARD:
            unheard += m
    later = sla.scheduled(max(until, start), p.end)
    remaining = _measure(_subtract(later, _intersect(later, sla.maintenance_for(scanner))))
    avail = sum(v for k, v in by_state.items() if k in AVAILABLE)
    return Account(
        scanner,
        p,
        until,
        _measure(sched),
        _measure(maint),
        avail,
        _measure(base) - unheard,
        by_state,
        remaining,
        start if start > p.start else None,
    )


# -- central's live side --------------------------------------------------------------------------
class UptimeTracker:
    """Central's end of the state-log exchange, plus the SLA projection alert."""

    def __init__(
        self,
        state_dir: Path,
        *,
        database: str = "",
        alarm: Callable[..., None] | None = None,
        sla: Sla | None = None,
        clock: Callable[[], float] = time.time,
        owner: Callable[[str], str | None] | None = None,
        deadline_s: float | None = None,
    ) -> None:
        """Central's uptime side, its store in the CIR's database (:class:`UptimeStore`).

        Args:
            state_dir: central's state directory (the CIR's); a store an older release
                left there (``uptime.sqlite``) is moved into the CIR (:func:`import_legacy`).
            database: the CIR's PostgreSQL URL (``cir`` in ``[central]``); empty: the
                SQLite file ``state_dir/cir.sqlite``.
            alarm: ``alarm(scanner, edge, kind, message, **details)``.
            sla: the SLA terms (the defaults if None).
            clock: wall clock, epoch s (injectable).
            owner: the edge a scanner is bound to, or None if it is bound to none
                yet; by default read from the CIR's streams. An edge's uptime entries
                for a scanner bound to another edge are refused.
            deadline_s: the longest a statement may wait on PostgreSQL (central's event
                loop stores on this connection; ``central._sql.Sql``).

        Raises:
            ConfigError: the store cannot be opened (see :class:`UptimeStore`).
        """
        self.store = UptimeStore(
            database_target(Path(state_dir), database),
            legacy=Path(state_dir) / "uptime.sqlite",
            deadline_s=deadline_s,
        )
        self.owner = owner or self.store.bound_edge
        self.alarm = alarm
        self.sla = sla or Sla()
        self.clock = clock
        self.live: dict[str, dict[str, Any]] = {}
        self._acks: dict[bytes, dict[str, Any]] = {}
        self._refused: dict[str, float] = {}  # edge → when its last refusal was alarmed
        self.refused = 0  # heartbeats refused (bad uptime document or store failure)

    #: At most one ``uptime_refused`` alarm per edge in this many seconds (each is logged).
    ALARM_EVERY_S = 60.0

    def close(self) -> None:
        self.store.close()

    def on_heartbeat(self, ident: bytes, edge_id: str, state: Any) -> None:
        """Store what a scanner channel's heartbeat carries; remember the ack for the reply.

        Never raises: a heartbeat whose ``uptime`` does not fit (see
        :func:`parse_uptime`) or that the store cannot commit is refused whole,
        logged and alarmed (``uptime_refused``, naming the edge); nothing is
        stored, the acknowledgement stays where it was and the edge sends the
        entries again.
        """
        try:
            if not isinstance(state, dict):
                raise ProtocolError(f"heartbeat state is not an object: {type(state).__name__}")
            up = state.get("uptime")
            if up is None:
                return
            now_ns = int(self.clock() * 1e9)
            rep = parse_uptime(up, now_ns / 1e9)
            bound = self.owner(rep.scanner)
            if bound is not None and bound != edge_id:
                raise ProtocolError(f"scanner {rep.scanner} is bound to edge {bound}")
            ack = self.store.ingest_report(rep, now_ns)
        except Exception as exc:
            if not (isinstance(exc, NiiError | OSError) or is_sql_error(exc)):
                raise
            self._refuse(edge_id, exc)
            return
        sstate, cause = state.get("scanner_state", ""), state.get("state_cause", "")
        self._acks[ident] = ack
        self.live[ack["scanner"]] = {
            "edge": edge_id,
            "state": sstate if isinstance(sstate, str) and sstate in STATES else "",
            "cause": cause[:_MAX_CAUSE] if isinstance(cause, str) else "",
            "heard": self.clock(),
            # what the edge says of its channel, for the control room's scanner board
            **{k: _count(state.get(k)) for k in ("spool_depth", "spool_bytes")},
            "control_up": up_ if isinstance(up_ := state.get("control_up"), bool) else None,
            "link_fault": _text_or_none(state.get("link_fault")),
        }

    def board(self) -> dict[str, dict[str, Any]]:
        """Each scanner heard by heartbeat: its state, cause, spool and links, and
        ``heard_s`` (seconds since its last heartbeat), for ``central.status``."""
        now = self.clock()
        return {
            sid: {
                **{k: v for k, v in st.items() if k != "heard"},
                "heard_s": round(max(0.0, now - st["heard"]), 1),
            }
            for sid, st in self.live.items()
        }

    def _refuse(self, edge_id: str, exc: BaseException) -> None:
        self.refused += 1
        why = str(exc) if isinstance(exc, NiiError) else f"{type(exc).__name__}: {exc}"
        what = "refused" if isinstance(exc, NiiError) else "could not be stored"
        msg = f"uptime entries from edge {edge_id} {what}: {why}"
        log.warning("%s", msg)
        now = self.clock()
        if now - self._refused.get(edge_id, -1e18) < self.ALARM_EVERY_S:
            return
        self._refused[edge_id] = now
        if self.alarm is not None:
            try:
                # a bad document is the edge's doing; a store that cannot write is not
                if what == "refused":
                    self.alarm("", edge_id, "uptime_refused", msg)
                else:  # like every "storage" alarm: what failed and what is free there
                    free = -1  # unknown: a database server's disk
                    if self.store.path is not None:
                        folder = self.store.path.parent
                        free = shutil.disk_usage(folder).free if folder.exists() else 0
                    self.alarm(
                        "", edge_id, "storage", msg, path=self.store.location, free_bytes=free
                    )
            except Exception as alarm_exc:  # the alarm path must not stop the receive loop
                log.error("uptime: alarm failed: %s", alarm_exc)

    def reply(self, ident: bytes) -> dict[str, Any]:
        """Extra fields for the heartbeat reply to ``ident``."""
        ack = self._acks.get(ident)
        return {"uptime_ack": ack} if ack else {}

    def timeline(self, scanner: str, now: float | None = None) -> list[Interval]:
        return build_timeline(self.store.rows(scanner), now=self.clock() if now is None else now)

    def account(self, scanner: str, p: Period, now: float | None = None) -> Account:
        """``scanner``'s account over ``p`` up to ``now``, from its commissioning on."""
        now = self.clock() if now is None else now
        since = self.store.commissioned(scanner)
        return account(scanner, self.timeline(scanner, now), self.sla, p, now, since=since)

    def check_projection(self, now: float | None = None) -> list[Account]:
        """Alarm once per scanner and period whose projection is under the target.

        A period not yet observed long enough (:attr:`Account.enough_data`) is skipped.
        """
        now = self.clock() if now is None else now
        low = []
        for scanner in self.store.scanners():
            for spec in ("month", "fiscal"):
                p = period(spec, now, self.sla.tz)
                a = self.account(scanner, p, now)
                av = a.availability
                if (
                    av is None
                    or not a.enough_data
                    or av >= self.sla.target
                    or self.store.alerted(scanner, p.label)
                ):
                    continue
                low.append(a)
                self.store.mark_alerted(scanner, p.label)
                best = a.best_case or 0.0
                msg = (
                    f"{scanner} availability in {p.label} is {av:.2%}, projected under the "
                    f"{self.sla.target:.0%} SLA"
                    + (
                        f"; breach certain (best case {best:.2%})"
                        if best < self.sla.target
                        else f"; best case {best:.2%}"
                    )
                )
                log.warning("%s", msg)
                if self.alarm is not None:
                    self.alarm(
                        scanner,
                        "",
                        "sla_projection",
                        msg,
                        period=p.label,
                        availability=round(av, 6),
                        best_case=round(best, 6),
                    )
        return low

    async def watch(self, every_s: float = 60.0) -> None:
        """Check the projection every ``every_s`` (a task of the aggregator)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                self.check_projection()
            except Exception as exc:  # an accounting bug must not stop the aggregator
                log.error("uptime projection check failed: %s", exc)


# -- report ---------------------------------------------------------------------------------------
COLOURS = {
    "ready": "#2e7d32",
    "scanning": "#66bb6a",
    "fault": "#c62828",
    "interlock": "#ef6c00",
    "maintenance": "#1565c0",
    "offline": "#757575",
}


def report(
    store: UptimeStore,
    sla: Sla,
    *,
    spec: str = "month",
    scanners: list[str] | None = None,
    out_dir: Path = Path("."),
    now: float | None = None,
) -> tuple[list[Account], Path, Path]:
    """Accounts per scanner for the period; writes a daily CSV and a PNG timeline.

    Raises:
        ConfigError: a scanner in ``scanners`` was never heard of nor commissioned
            (the message names the known ones), or ``spec`` is not a period.
    """
    now = time.time() if now is None else now
    p = period(spec, now, sla.tz)
    known = store.scanners()
    unknown = [s for s in scanners or [] if s not in known]
    if unknown:
        raise ConfigError(
            f"no uptime record of scanner {', '.join(map(repr, unknown))}; known: "
            + (", ".join(known) or "none yet"),
            fix="pass --scanner with one of the known ids"
            if known
            else "start the edge so its heartbeats reach central, or "
            "'nii uptime commission --scanner ID'",
        )
    names = scanners or known
    tls = {s: build_timeline(store.rows(s), now=now) for s in names}
    since = {s: store.commissioned(s) for s in names}
    accounts = [account(s, tls[s], sla, p, now, since=since[s]) for s in names]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"uptime-{p.label}.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "scanner",
                "period",
                "scheduled_h",
                "maintenance_h",
                "available_h",
                "availability",
                *[f"{s}_h" for s in STATES],
                "observed_h",
            ]
        )
        for s in names:
            rows = [
                account(s, tls[s], sla, d, now, since=since[s])
                for d in days_of(p, sla.tz)
                if d.start < now
            ]
            for a in [*rows, next(x for x in accounts if x.scanner == s)]:
                av = a.availability
                w.writerow(
                    [
                        s,
                        a.period.label,
                        f"{a.scheduled_s / 3600:.4f}",
                        f"{a.maintenance_s / 3600:.4f}",
                        f"{a.available_s / 3600:.4f}",
                        "" if av is None else f"{av:.6f}",
                        *[f"{a.by_state[k] / 3600:.4f}" for k in STATES],
                        f"{a.observed_s / 3600:.4f}",
                    ]
                )
    png_path = out_dir / f"uptime-{p.label}.png"
    plot(tls, accounts, sla, p, min(now, p.end), png_path)
    return accounts, csv_path, png_path


def plot(
    tls: dict[str, list[Interval]],
    accounts: list[Account],
    sla: Sla,
    p: Period,
    until: float,
    path: Path,
) -> None:
    """A timeline per scanner: one coloured bar per state, agreed maintenance hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    def num(t: float) -> float:
        return float(mdates.date2num(dt.datetime.fromtimestamp(t, sla.tz)))

    names = list(tls)
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.7 * max(1, len(names))), dpi=110)
    for row, s in enumerate(names):
        y = len(names) - 1 - row
        acc0 = next(x for x in accounts if x.scanner == s)
        t0 = acc0.since if acc0.since is not None else p.start  # nothing before commissioning
        for iv in fill(tls[s], t0, max(t0, until)):
            ax.broken_barh(
                [(num(iv.start), num(iv.end) - num(iv.start))],
                (y - 0.35, 0.7),
                facecolors=COLOURS.get(iv.state, "#000000"),
                linewidth=0,
            )
        for a, b in sla.maintenance_for(s):
            if b > p.start and a < p.end:
                ax.broken_barh(
                    [(num(max(a, p.start)), num(min(b, p.end)) - num(max(a, p.start)))],
                    (y - 0.45, 0.9),
                    facecolors="none",
                    edgecolors="#0d47a1",
                    hatch="///",
                    linewidth=0.8,
                )
    labels = []
    for s in names:
        acc = next(x for x in accounts if x.scanner == s)
        av = acc.availability
        labels.append(f"{s}\n{'—' if av is None else f'{av:.2%}'}")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(list(reversed(labels)))
    ax.set_xlim(num(p.start), num(p.end))
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.xaxis_date(sla.tz)
    ax.xaxis.set_major_formatter(mdates.AutoDateFormatter(ax.xaxis.get_major_locator(), tz=sla.tz))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(
        f"Scanner availability, {p.label} (target {sla.target:.0%}; hatched: agreed maintenance)"
    )
    ax.legend(
        handles=[Patch(color=c, label=k) for k, c in COLOURS.items()]
        + [Patch(facecolor="none", edgecolor="#0d47a1", hatch="///", label="agreed maintenance")],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        ncol=7,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_table(accounts: list[Account], sla: Sla) -> str:
    """The report as a text table."""
    head = (
        f"{'scanner':<12} {'period':<10} {'sched h':>8} {'maint h':>7} {'avail h':>8} "
        f"{'availab.':>8} {'fault h':>7} {'intlk h':>7} {'offl h':>7} {'best':>7}  status"
    )
    out = [head]
    for a in accounts:
        av, best = a.availability, a.best_case
        if av is not None and not a.enough_data:
            best = None  # a projection from too little data says nothing
        status = (
            "no data"
            if av is None
            else f"not enough data ({a.base_s / 3600:.1f} h observed)"
            if not a.enough_data
            else "OK"
            if av >= sla.target
            else "BREACH"
            if (best or 0) < sla.target
            else "AT RISK"
        )
        out.append(
            f"{a.scanner:<12} {a.period.label:<10} {a.scheduled_s / 3600:>8.2f} "
            f"{a.maintenance_s / 3600:>7.2f} {a.available_s / 3600:>8.2f} "
            f"{'—' if av is None else f'{av:.2%}':>8} {a.by_state['fault'] / 3600:>7.2f} "
            f"{a.by_state['interlock'] / 3600:>7.2f} {a.by_state['offline'] / 3600:>7.2f} "
            f"{'—' if best is None else f'{best:.2%}':>7}  {status}"
        )
    return "\n".join(out)


__all__ = [
    "AVAILABLE",
    "STATES",
    "Account",
    "Entry",
    "Interval",
    "Period",
    "Sla",
    "UptimeReport",
    "UptimeStore",
    "UptimeTracker",
    "account",
    "build_timeline",
    "fill",
    "fiscal_year_of",
    "format_table",
    "import_legacy",
    "parse_uptime",
    "period",
    "report",
]
