"""The scanner board (issue 16, R3, R5): each scanner's state, safety, uptime, spool, link.

Routes: ``GET /board`` (the page) and ``GET /api/board`` (JSON). Every role sees the
board, each only the scanners of the sites it may see (:meth:`ControlRoomApp.
visible_scanners`, checked here on the server): an officer those of the account's
sites, a supervisor the region's, the central roles every scanner, also those that
no ``[[site]]`` lists.

Where each figure comes from:

* **state** (``scanning``, ``idle``, ``fault``, ``interlock``, ``maintenance``,
  ``offline``; ``unknown``: heard of, but no state reported): the edge's own state
  log as the CIR holds it (``uptime_entries``, the newest acknowledged entry of each
  log: ``ready`` is shown as ``idle``), or fresher, the scanner's heartbeat state when
  the aggregators publish it in ``central.status`` (below); ``scanning`` also while
  the CIR's newest scan of the scanner is open and the scanner is heard. A scanner
  not heard for longer than its silence limit is ``offline`` whatever it said last:
  never shown as live.
* **link**: when central last heard of the scanner: a scan event on the live feed,
  its stream's last commit in the CIR, its newest state-log entry (the edge writes
  one every minute even when nothing changes, ``edge._uptime``), or its heartbeat in
  ``central.status``. Silent for more than :data:`LOG_SILENT_S` (three missed marks:
  ``central._uptime``'s own gap limit), or :data:`FEED_SILENT_S` (three status
  periods) once its heartbeats come on the feed, it is ``silent``.
* **safety**: the newest of the edge's ``unsafe``, ``safety_trip`` and
  ``safety_clear`` alarms (their ``causes``: the open interlocks, a dose over its
  limit), and the ``interlock`` state of the state log.
* **uptime** against the SLA (R3): ``central._uptime``'s accounting over the same
  records as ``nii uptime``, with the SLA of ``sla.toml`` beside the central
  configuration (98 % by default): this month, this fiscal year, and each of the
  last :data:`PLOT_DAYS` days (recomputed at most every :data:`UPTIME_CACHE_S`).
* **spool**: the edge's spool depth (blocks sealed and not yet acknowledged) and
  control link, as its heartbeat reports them. Central carries them to the control
  room only in ``central.status`` as ``"scanners": {ID: {"state", "cause", "heard_s",
  "spool_depth", "spool_bytes", "control_up", "link_fault"}}`` (``heard_s``: seconds
  since that aggregator's last heartbeat from the scanner); where the aggregators do
  not publish it the board says "not reported".
* **open alarms**: the scanner's alarms of the last :data:`OPEN_ALARM_S` that no
  later alarm ended (``control_link_up`` ends ``control_link_down``, ``safety_clear``
  ends ``unsafe`` and ``safety_trip``, ...).
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from central._cir import database_target
from central._uptime import (
    Account,
    Interval,
    Period,
    Sla,
    UptimeStore,
    account,
    build_timeline,
    period,
)
from central.control_room._app import _SECURITY_HEADERS, STATIC, ControlRoomApp, _json
from central.control_room._config import ControlRoomConfig
from central.control_room._feed import Subscriber
from core.errors import ConfigError

__all__ = [
    "FEED_SILENT_S",
    "LOG_SILENT_S",
    "OPEN_ALARM_S",
    "PLOT_DAYS",
    "Board",
    "FeedSeen",
    "open_alarms",
    "routes",
    "safety_of",
    "sla_of",
    "uptime_of",
]

#: The board's names of the edge's states (``edge._uptime.STATES``).
SHOWN = {
    "ready": "idle",
    "scanning": "scanning",
    "fault": "fault",
    "interlock": "interlock",
    "maintenance": "maintenance",
    "offline": "offline",
}
#: How often an aggregator publishes ``central.status`` (s): ``central._aggregator``.
STATUS_PERIOD_S = 2.0
#: A scanner whose heartbeats come on the feed is silent after three status periods (s).
FEED_SILENT_S = 3 * STATUS_PERIOD_S
#: Otherwise after three missed state-log marks (the edge writes one every 60 s): the
#: gap after which ``central._uptime.build_timeline`` stops believing an entry (s).
LOG_SILENT_S = 180.0
#: An alarm no later alarm ended stays open this long (s).
OPEN_ALARM_S = 24 * 3600.0
#: The newest alarms read for the board (bounds the work of one request).
ALARMS_READ = 2000
#: Uptime accounts are recomputed at most this often per scanner (s): they read the
#: scanner's whole state log (``central._metrics`` caches its own for 30 s).
UPTIME_CACHE_S = 60.0
#: Days of daily uptime in the plot, today included.
PLOT_DAYS = 31
#: The alarms that end others (an alarm of a key kind ends the open ones of its values).
ENDS = {
    "safety_clear": ("unsafe", "safety_trip"),
    "beam_stopped": ("beam_stop_failed",),
    "beam_stop_moot": ("beam_stop_failed",),
    "control_link_up": ("control_link_down",),
    "storage_ok": ("storage_full", "storage"),
}
SAFETY = ("unsafe", "safety_trip", "safety_clear")
#: Feed topics that show the scanner's edge got through to central.
_HEARD_TOPICS = frozenset({"scan.started", "scan.block", "scan.finished"})


def sla_of(cfg: ControlRoomConfig) -> Sla:
    """The SLA terms central accounts against: ``sla.toml`` beside the central
    configuration (the defaults, 98 % in Asia/Karachi, without one).

    Raises:
        ConfigError: the file is there but not a valid SLA (``Sla.load``).
    """
    path = cfg.central.path.parent / "sla.toml"
    return Sla.load(path if path.exists() else None)


# -- what the live feed says -----------------------------------------------------------
@dataclass
class FeedSeen:
    """What the board keeps of the live feed: when each scanner was last heard of and
    its heartbeat state if central publishes it. Pure: fed by :meth:`event`, clock
    injected (epoch seconds)."""

    clock: Callable[[], float] = time.time
    #: scanner → when central last heard of it (epoch s)
    heard: dict[str, float] = field(default_factory=dict)
    #: scanner → (when it came, its state in ``central.status``)
    status: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    #: aggregator name → when its last ``central.status`` came (epoch s)
    central: dict[str, float] = field(default_factory=dict)

    def event(self, topic: str, doc: Mapping[str, Any]) -> None:
        """One feed event (as the hub hands it on); anything malformed is ignored."""
        now = self.clock()
        if topic == "central.status":
            self.central[str(doc.get("name") or "central")[:64]] = now
            scanners = doc.get("scanners")
            if not isinstance(scanners, dict):
                return
            for sid, st in list(scanners.items())[:10_000]:
                if not (isinstance(sid, str) and isinstance(st, dict)):
                    continue
                ago = st.get("heard_s")
                if isinstance(ago, bool) or not isinstance(ago, int | float) or not ago >= 0:
                    continue
                heard = now - min(float(ago), 1e9)
                # several aggregators: the one that heard the scanner last knows best
                if heard >= self.status.get(sid, (-math.inf, {}))[0]:
                    self.status[sid] = (heard, dict(st))
                self._heard(sid, heard)
            return
        scanner = doc.get("scanner")
        if not isinstance(scanner, str) or not scanner:
            return
        # an edge's own alarm names its edge; central's alarms about a scanner do not
        if topic in _HEARD_TOPICS or (topic == "alarm" and doc.get("edge")):
            self._heard(scanner, now)

    def _heard(self, scanner: str, at: float) -> None:
        if at > self.heard.get(scanner, 0.0):
            self.heard[scanner] = at


class _Tap(asyncio.Queue[tuple[str, dict[str, Any]] | None]):
    """A hub subscriber's queue that never fills: each event goes to a :class:`FeedSeen`
    as it is published, and nothing waits in it."""

    def __init__(self, seen: FeedSeen) -> None:
        super().__init__()
        self.seen = seen

    def put_nowait(self, item: tuple[str, dict[str, Any]] | None) -> None:
        if item is not None:
            self.seen.event(*item)


# -- pure parts: alarms, safety, uptime -------------------------------------------------
def open_alarms(rows: Iterable[Mapping[str, Any]], since_ns: int) -> list[dict[str, Any]]:
    """The alarms of ``rows`` (one scanner's, newest first) still open: raised at or
    after ``since_ns`` and not ended by a later alarm (:data:`ENDS`). Alarms that end
    others are never open themselves.

    Returns:
        ``{"id", "ts_ns", "kind", "message"}`` of each, newest first.
    """
    ended: set[str] = set()
    out = []
    for r in rows:
        kind = str(r.get("kind") or "")
        if kind in ENDS:
            ended.update(ENDS[kind])
            continue
        if kind in ended or int(r.get("ts_ns") or 0) < since_ns:
            continue
        out.append(
            {"id": r.get("id"), "ts_ns": r.get("ts_ns"), "kind": kind,
             "message": str(r.get("message") or "")}
        )  # fmt: skip
    return out


def safety_of(rows: Iterable[Mapping[str, Any]], state: str, cause: str) -> dict[str, Any]:
    """The scanner's radiation safety as its edge reports it (R5).

    Args:
        rows: the scanner's alarms, newest first (``kind``, ``ts_ns``, ``message``,
            ``details`` as JSON text or a dict).
        state: the edge's newest state (``edge._uptime.STATES``; "" unknown).
        cause: its cause.

    Returns:
        ``{"safe": True | False | None, "causes": [str], "since_ns": int | None,
        "message": str}``: None when the edge reported nothing about safety (no safety
        monitor, or nothing in the alarms read).
    """
    for r in rows:
        kind = r.get("kind")
        if kind not in SAFETY:
            continue
        if kind == "safety_clear":
            if state == "interlock":  # the state log says unsafe again since
                break
            return {"safe": True, "causes": [], "since_ns": r.get("ts_ns"),
                    "message": str(r.get("message") or "")}  # fmt: skip
        details = r.get("details")
        if isinstance(details, str):
            try:
                details = json.loads(details)
            except ValueError:
                details = {}
        causes = details.get("causes") if isinstance(details, dict) else None
        return {
            "safe": False,
            "causes": [str(c) for c in causes][:20] if isinstance(causes, list) else [],
            "since_ns": r.get("ts_ns"),
            "message": str(r.get("message") or ""),
        }
    if state == "interlock":
        return {"safe": False, "causes": [cause], "since_ns": None, "message": cause}
    return {"safe": None, "causes": [], "since_ns": None, "message": "no safety report"}


def _figure(a: Account, sla: Sla) -> dict[str, Any]:
    """One period's account as the board shows it: the figure and whether it meets
    the SLA (``format_table``'s statuses: no data, not enough data, met, at risk,
    breach)."""
    av, best = a.availability, a.best_case
    if av is None:
        status = "no data"
    elif not a.enough_data:
        status = "not enough data"
    elif av >= sla.target:
        status = "met"
    elif (best or 0.0) < sla.target:
        status = "breach"
    else:
        status = "at risk"
    return {
        "period": a.period.label,
        "availability": None if av is None else round(av, 6),
        "best_case": None if best is None or not a.enough_data else round(best, 6),
        "met": None if av is None or not a.enough_data else av >= sla.target,
        "status": status,
        "observed_h": round(a.observed_s / 3600, 3),
        "by_state_h": {k: round(v / 3600, 3) for k, v in a.by_state.items()},
    }


def _slice(tl: Sequence[Interval], starts: Sequence[float], p: Period) -> list[Interval]:
    """The intervals of a time-ordered timeline that may overlap ``p``."""
    lo = max(0, bisect.bisect_right(starts, p.start) - 1)
    return list(tl[lo : bisect.bisect_left(starts, p.end)])


def uptime_of(
    scanner: str,
    rows: Iterable[tuple[Any, ...]],
    commissioned: float | None,
    sla: Sla,
    now: float,
    days: int = PLOT_DAYS,
) -> dict[str, Any]:
    """A scanner's availability against the SLA (R3), as ``nii uptime`` accounts it.

    Args:
        scanner: its id.
        rows: its state-log entries (``UptimeStore.rows``).
        commissioned: when its accounting starts (``UptimeStore.commissioned``), epoch s.
        sla: the SLA terms.
        now: epoch s.
        days: how many days the daily figures cover, today (so far) the last.

    Returns:
        ``{"month": FIGURE, "fiscal": FIGURE, "daily": [{"day": "YYYY-MM-DD",
        "availability": share or None}]}``; a FIGURE is ``{"period", "availability"
        (0 to 1, None: no scheduled time observed), "best_case", "met" (None: not
        enough data), "status", "observed_h", "by_state_h"}``.
    """
    tl = build_timeline(rows, now=now)
    starts = [iv.start for iv in tl]
    out: dict[str, Any] = {}
    for spec in ("month", "fiscal"):
        p = period(spec, now, sla.tz)
        out[spec] = _figure(account(scanner, tl, sla, p, now, since=commissioned), sla)
    today = dt.datetime.fromtimestamp(now, sla.tz).date()
    daily = []
    for k in range(days - 1, -1, -1):
        d = period((today - dt.timedelta(days=k)).isoformat(), now, sla.tz)
        a = account(scanner, _slice(tl, starts, d), sla, d, now, since=commissioned)
        av = a.availability
        daily.append({"day": d.label, "availability": None if av is None else round(av, 6)})
    out["daily"] = daily
    return out


# -- the board -------------------------------------------------------------------------
class Board:
    """The board of one control room: its feed tap, its uptime cache, its handlers.

    Args:
        app: the control room.
        clock: the wall clock, epoch seconds (tests inject their own).

    Raises:
        ConfigError: ``sla.toml`` beside the central configuration is not valid.
    """

    def __init__(self, app: ControlRoomApp, clock: Callable[[], float] = time.time) -> None:
        self.app, self.clock = app, clock
        self.sla = sla_of(app.cfg)
        self.seen = FeedSeen(clock)
        self.sub = Subscriber(visible=lambda _: True, name="", everything=True,
                              queue=_Tap(self.seen))  # fmt: skip
        app.hub.subscribe(self.sub)
        #: scanner → (when computed, its uptime document)
        self._uptime: dict[str, tuple[float, dict[str, Any]]] = {}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/board", self.page, methods=["GET"]),
            Route("/api/board", self.board, methods=["GET"]),
        ]

    async def page(self, request: Request) -> Response:
        if await self.app.session(request) is None:
            return RedirectResponse("/login", status_code=303)
        return FileResponse(STATIC / "board.html", headers=_SECURITY_HEADERS)

    async def board(self, request: Request) -> Response:
        """``GET /api/board``: the board of the scanners the user may see.

        Returns:
            JSON ``{"now_ns", "sla": {"target", "tz"}, "central": {NAME: silent_s},
            "feed": {"silent_s", "feeds"}, "scanners": [SCANNER]}``, a SCANNER being
            ``{"scanner", "site", "region", "edge", "state", "cause", "safety",
            "link": {"state": "live" | "silent" | "never", "last_heard_ns",
            "silent_s", "limit_s", "source"}, "spool": {"depth", "bytes",
            "control_up", "link_fault"} (None: not reported), "scan", "alarms":
            {"open", "latest"}, "uptime"}`` (see the module docstring).

        Raises:
            HTTPException: 401 without a session; 400 with a query parameter.
        """
        sess = await self.app.require(request)
        if request.query_params:
            raise HTTPException(400, "the board takes no query parameters")
        visible = self.app.visible_scanners(sess.user)
        now = self.clock()
        facts = await self.app.db(self._read, visible, sorted(self.seen.heard))
        scanners: list[str] = facts["scanners"]
        stale = [s for s in scanners if now - self._uptime.get(s, (-1e18, {}))[0] >= UPTIME_CACHE_S]
        if stale:
            for sid, doc in (await self.app.db(self._read_uptime, stale, now)).items():
                self._uptime[sid] = (now, doc)
        return _json(
            {
                "now_ns": int(now * 1e9),
                "sla": {"target": self.sla.target, "tz": str(self.sla.tz)},
                "central": {k: round(now - v, 1) for k, v in sorted(self.seen.central.items())},
                "feed": self.app.hub.state(),
                "scanners": [self._scanner(s, facts, now) for s in scanners],
            }
        )

    # -- on the database thread --------------------------------------------------------
    def _read(self, visible: list[str] | None, on_feed: list[str]) -> dict[str, Any]:
        """What the CIR says of the scanners ``visible`` (None: every one it or the feed
        knows; ``on_feed`` those heard of on the feed)."""
        sql = self.app.cir.sql
        tables = sql.tables()
        if visible is None:
            known = {sc for s in self.app.cfg.sites for sc in s.scanners}
            known |= set(self.app.cir.scanner_ids()) | set(on_feed)
            if "uptime_logs" in tables:
                known |= {str(r["scanner"]) for r in sql.rows(
                    "SELECT scanner FROM uptime_logs UNION SELECT scanner FROM "
                    "uptime_commissioned")}  # fmt: skip
            scanners = sorted(known)
        else:
            scanners = list(dict.fromkeys(visible))
        out: dict[str, Any] = {"scanners": scanners, "entry": {}, "stream": {}, "scan": {},
                               "alarms": {}}  # fmt: skip
        if not scanners:
            return out
        marks = ", ".join("?" for _ in scanners)
        if "uptime_logs" in tables:
            # each log's newest acknowledged entry (primary-key lookups)
            for r in sql.rows(
                "SELECT e.scanner, e.state, e.cause, e.anchor_ns + e.mono_ns AS at_ns, "
                "e.recv_ns FROM uptime_logs l JOIN uptime_entries e ON e.scanner = l.scanner "
                f"AND e.log = l.log AND e.seq = l.acked_seq WHERE l.scanner IN ({marks})",
                scanners,
            ):
                have = out["entry"].get(r["scanner"])
                if have is None or int(r["at_ns"]) > int(have["at_ns"]):
                    out["entry"][r["scanner"]] = r
        for r in sql.rows(
            f"SELECT scanner, edge, updated_ns FROM streams WHERE scanner IN ({marks})", scanners
        ):
            out["stream"][r["scanner"]] = r
        for s in scanners:
            row = sql.one(
                "SELECT ref, scan_id, container, status, started_ns, finished_ns, "
                "lines_received, lines_planned FROM scans WHERE scanner = ? "
                "ORDER BY started_ns DESC LIMIT 1",
                [s],
            )
            if row is not None:
                out["scan"][s] = row
        for r in sql.rows(
            "SELECT id, ts_ns, scanner, kind, message, details FROM alarms "
            f"WHERE scanner IN ({marks}) ORDER BY id DESC LIMIT ?",
            [*scanners, ALARMS_READ],
        ):
            out["alarms"].setdefault(r["scanner"], []).append(r)
        return out

    def _read_uptime(self, scanners: list[str], now: float) -> dict[str, dict[str, Any]]:
        """The uptime documents of ``scanners`` from the CIR's uptime record."""
        cir = self.app.cir
        try:
            store = UptimeStore(database_target(cir.dir, cir.database), create=False)
        except ConfigError as exc:
            return {s: {"error": exc.message} for s in scanners}
        try:
            out = {}
            for s in scanners:
                since = store.commissioned(s)
                # never commissioned nor heard of: no scheduled time to account yet
                out[s] = (
                    {"error": "no uptime record: no state report from its edge yet"}
                    if since is None
                    else uptime_of(s, store.rows(s), since, self.sla, now)
                )
            return out
        finally:
            store.close()

    # -- one scanner ---------------------------------------------------------------------
    def _scanner(self, sid: str, facts: dict[str, Any], now: float) -> dict[str, Any]:
        site = self.app.site(sid)
        entry = facts["entry"].get(sid)
        stream = facts["stream"].get(sid)
        scan = facts["scan"].get(sid)
        alarms = facts["alarms"].get(sid, [])
        status = self.seen.status.get(sid)
        # when central last heard of it, and from what
        heard: list[tuple[float, str]] = []
        if entry is not None:
            heard.append((int(entry["recv_ns"]) / 1e9, "state log"))
        if stream is not None and stream.get("updated_ns"):
            heard.append((int(stream["updated_ns"]) / 1e9, "data"))
        if sid in self.seen.heard:
            heard.append((self.seen.heard[sid], "feed"))
        if status is not None:
            heard.append((status[0], "heartbeat"))
        limit = FEED_SILENT_S if status is not None else LOG_SILENT_S
        last, source = max(heard) if heard else (None, None)
        silent = None if last is None else max(0.0, now - last)
        link = {
            "state": "never" if last is None else "silent" if (silent or 0) > limit else "live",
            "last_heard_ns": None if last is None else int(last * 1e9),
            "silent_s": None if silent is None else round(silent, 1),
            "limit_s": limit,
            "source": source,
        }
        # the state: the freshest report, unless silent
        raw, cause, from_ = "", "", "none"
        if entry is not None:
            raw, cause, from_ = str(entry["state"]), str(entry["cause"]), "state log"
        # the heartbeat's state is the newer when it was heard after the entry was written
        if status is not None and (entry is None or status[0] >= int(entry["at_ns"]) / 1e9):
            st = status[1]
            if isinstance(st.get("state"), str) and st["state"] in SHOWN:
                raw, cause, from_ = st["state"], str(st.get("cause") or "")[:500], "heartbeat"
        state = SHOWN.get(raw, "unknown")
        if state == "unknown":
            cause = "no state report from the edge in the CIR"
        open_scan = scan is not None and scan.get("status") == "scanning"
        if link["state"] != "live":
            state = "offline"
            cause = (
                "never heard of by central"
                if last is None
                else f"silent for {_duration(silent or 0.0)} (last heard {_clock(last, self.sla)})"
            )
        elif state in ("idle", "unknown") and open_scan:
            state, cause = "scanning", f"scan {scan['scan_id']} in progress"
        spool = None
        if status is not None:
            st = status[1]
            spool = {
                "depth": _int_or_none(st.get("spool_depth")),
                "bytes": _int_or_none(st.get("spool_bytes")),
                "control_up": st.get("control_up") if isinstance(st.get("control_up"), bool)
                else None,
                "link_fault": str(st["link_fault"])[:200] if st.get("link_fault") else None,
            }  # fmt: skip
        opened = open_alarms(alarms, int((now - OPEN_ALARM_S) * 1e9))
        return {
            "scanner": sid,
            "site": site.name if site else None,
            "region": site.region if site else None,
            "edge": stream.get("edge") if stream else None,
            "state": state,
            "reported": raw or None,
            "cause": cause,
            "state_source": from_,
            "safety": safety_of(alarms, raw, cause),
            "link": link,
            "spool": spool,
            "scan": scan,
            "alarms": {"open": len(opened), "latest": opened[:5]},
            "uptime": self._uptime.get(sid, (0.0, None))[1],
        }


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.0f} h"
    return f"{math.floor(s / 86400)} days"


def _clock(t: float, sla: Sla) -> str:
    return dt.datetime.fromtimestamp(t, sla.tz).isoformat(sep=" ", timespec="seconds")


def routes(app: ControlRoomApp, *, clock: Callable[[], float] = time.time) -> list[BaseRoute]:
    """The board's routes for ``app`` (``make_app`` calls it once).

    Raises:
        ConfigError: ``sla.toml`` beside the central configuration is not valid.
    """
    return Board(app, clock).routes()
