"""Statistics for the central RIAC (issue 16, R8, R9, R14): verdicts, HITs, agreement
between the ATR and the officers, TIP detection per analyst, decision times.

Routes: ``GET /stats`` (the page) and ``GET /api/stats?since=&until=&site=&period=``
(JSON).

Who sees them: central RIAC analysts, auditors and administrators every site (read
only: statistics change nothing), a regional supervisor the sites of the region. A
local officer gets 403: the figures compare officers and sites, which is the RIAC's
oversight, not the site's own work (the officer's queue shows that).

Parameters (all optional; any other is refused with 400, as is a malformed value):

* ``since``: the first day (``YYYY-MM-DD``) or instant (ISO 8601 date-time) counted;
  default 29 days before today, so that 30 days with today are shown;
* ``until``: the last day counted (a date: through its end) or the instant the count
  ends before (a date-time); default the end of today; at most :data:`MAX_DAYS` days
  after ``since``;
* both from :data:`FIRST_DAY` to :data:`LAST_DAY` (the CIR's times are ns since 1970
  in 64 bits, which end in April 2262): another is refused with a 400 that says so;
* ``site``: one site of the configuration the user may see (403 for another's);
  default every site the user sees;
* ``period``: ``day`` (default) or ``week`` (ISO weeks, Monday first).

Days and weeks are those of the SLA's time zone (``sla.toml`` beside the central
configuration; Asia/Karachi by default), as the uptime report's. A scan counts in
the period its scan started in.

Figures:

* **verdicts** per site and period: scans, the ATR's verdicts (``none``: no verdict:
  the ATR was off, failed or has not judged the scan yet) and the final decisions (the
  newest decision of each scan: a correction, an override or an adjudication replaces
  the decision it follows; ``undecided``: none yet);
* **HIT rate** per site: a HIT is a Physical Examination Mandate, a Red final
  decision. The results of the examinations are not in the CIR, so the rate is the
  share of decided scans that got a mandate (and the mandates per scan), not the
  share of mandates that found something;
* **agreement** between the ATR and the officers: the confusion matrix of ATR
  verdict against final decision, the share agreed and Cohen's kappa over the scans
  that have both;
* **TIP** per analyst: projections scored (``tip_scores``, by when they were scored),
  found, missed, the detection rate; a TIP is never a decision, so it is in no other
  figure;
* **decision times** per site: from the scan's end to its first decision, the
  median and the 90th percentile (nearest rank), in seconds.

All SQL is the subset both engines share (``central._sql``): buckets are integer
divisions of the ns timestamps into quarter hours (every time zone's offset is a
multiple of 15 minutes), placed in days and weeks here; percentiles are read with
``ORDER BY … LIMIT 1 OFFSET k`` in the database, so no request holds one row per scan.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from central._sql import Sql
from central.control_room._app import _SECURITY_HEADERS, STATIC, ControlRoomApp, _json
from central.control_room._board import sla_of
from central.control_room._config import Site

__all__ = [
    "BUCKET_NS",
    "MAX_DAYS",
    "ROLES",
    "Stats",
    "figures",
    "read",
    "routes",
]

#: The roles that see statistics (an officer does not: see the module docstring).
ROLES = frozenset({"supervisor", "analyst", "auditor", "admin"})
#: The grain scans are counted in, in the database (ns): a quarter hour.
BUCKET_NS = 900 * 10**9
#: The longest range one request covers (days).
MAX_DAYS = 400
#: The days shown without ``since`` (today included).
DEFAULT_DAYS = 30
PARAMS = frozenset({"since", "until", "site", "period"})
#: The days ``since`` and ``until`` may name (the CIR's ns since 1970 fit 64 bits to 2262).
FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(2261, 12, 31)
COLOURS = ("green", "yellow", "red")
ATR = (*COLOURS, "none")
FINAL = (*COLOURS, "undecided")
HIT_NOTE = (
    "A HIT is a Physical Examination Mandate (a Red final decision). The results of "
    "the examinations are not in the CIR: the HIT rate is the share of decided scans "
    "that got a mandate, not the share of mandates that found something."
)
UNASSIGNED = "(no site)"


# -- reading the CIR (on the database thread) ----------------------------------------------
def _where(scanners: Sequence[str] | None, negate: bool = False) -> tuple[str, list[Any]]:
    if scanners is None:
        return "", []
    marks = ", ".join("?" for _ in scanners)
    return f" AND s.scanner {'NOT IN' if negate else 'IN'} ({marks})", list(scanners)


def read(
    sql: Sql,
    groups: Mapping[str, tuple[Sequence[str] | None, bool]],
    since_ns: int,
    until_ns: int,
) -> dict[str, Any]:
    """What the statistics need of the CIR, for scans started in ``[since_ns, until_ns)``.

    Args:
        sql: a connection to the CIR's database (SQLite or PostgreSQL).
        groups: site name → (its scanners, whether the site is "every scanner but
            these"); the scanners of every group together are the scope. A group
            with scanners None is every scanner.
        since_ns: the start, ns since the epoch (inclusive).
        until_ns: the end (exclusive).

    Returns:
        ``{"buckets": [{"scanner", "q", "atr", "final", "n"}], "waits": {site: {"n",
        "median_ns", "p90_ns", "max_ns"}}, "tip": [{"name", "role", "projected",
        "hits"}]}``: ``q`` the quarter hour (``started_ns // BUCKET_NS``), ``atr`` and
        ``final`` the ATR's verdict and the final decision's (None: none).
    """
    out: dict[str, Any] = {"buckets": [], "waits": {}, "tip": []}
    everything = any(sc is None or neg for sc, neg in groups.values())
    scope = None if everything else sorted(
        {s for sc, neg in groups.values() if not neg for s in sc or ()}
    )  # fmt: skip
    if scope is not None and not scope:
        return out
    where, params = _where(scope)
    out["buckets"] = sql.rows(
        "SELECT scanner, q, atr, final, COUNT(*) AS n FROM (SELECT s.scanner AS scanner, "
        f"s.started_ns / {BUCKET_NS} AS q, v.verdict AS atr, (SELECT d.verdict FROM "
        "decisions d WHERE d.ref = s.ref ORDER BY d.id DESC LIMIT 1) AS final FROM scans s "
        f"LEFT JOIN verdicts v ON v.ref = s.ref WHERE s.started_ns >= ? AND s.started_ns < ?"
        f"{where}) x GROUP BY scanner, q, atr, final",
        [since_ns, until_ns, *params],
    )
    for site, (scanners, negate) in groups.items():
        if scanners is not None and not scanners and not negate:
            continue
        w, p = _where(scanners, negate)
        waits = (
            "WITH w AS (SELECT MIN(d.created_ns) - s.finished_ns AS wait_ns FROM scans s "
            "JOIN decisions d ON d.ref = s.ref WHERE s.started_ns >= ? AND s.started_ns < ? "
            f"AND s.finished_ns IS NOT NULL{w} GROUP BY s.ref, s.finished_ns) "
        )
        args = [since_ns, until_ns, *p]
        top = sql.one(waits + "SELECT COUNT(*) AS n, MAX(wait_ns) AS mx FROM w", args)
        n = int(top["n"]) if top else 0
        if not n:
            continue

        def rank(share: float, n: int = n, waits: str = waits, args: list[Any] = args) -> int:
            k = max(1, math.ceil(share * n))  # nearest rank, 1-based
            return int(sql.value(waits + "SELECT wait_ns FROM w ORDER BY wait_ns LIMIT 1 "
                                 "OFFSET ?", [*args, k - 1]))  # fmt: skip

        out["waits"][site] = {
            "n": n,
            "median_ns": rank(0.5),
            "p90_ns": rank(0.9),
            "max_ns": int(top["mx"]) if top else 0,
        }
    if "tip_scores" in sql.tables():
        join, tw = "", ""
        tp: list[Any] = []
        if scope is not None:
            join = " JOIN scans s ON s.ref = t.ref"
            tw, tp = _where(scope)
        out["tip"] = sql.rows(
            "SELECT t.name AS name, t.role AS role, COUNT(*) AS projected, SUM(t.hit) AS hits "
            f"FROM tip_scores t{join} WHERE t.scored_ns >= ? AND t.scored_ns < ?{tw} "
            "GROUP BY t.name, t.role ORDER BY t.name, t.role",
            [since_ns, until_ns, *tp],
        )
    return out


# -- the figures (pure) ----------------------------------------------------------------------
def _share(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def _label(q: int, period: str, tz: dt.tzinfo) -> tuple[str, dt.date]:
    """The day or ISO week quarter hour ``q`` lies in, in ``tz``: (label, first day)."""
    d = dt.datetime.fromtimestamp(q * BUCKET_NS / 1e9, tz).date()
    if period == "week":
        y, w, wd = d.isocalendar()
        return f"{y}-W{w:02d}", d - dt.timedelta(days=wd - 1)
    return d.isoformat(), d


def figures(
    raw: Mapping[str, Any],
    site_of: Callable[[str], str],
    *,
    period: str,
    tz: dt.tzinfo,
    order: Sequence[str] = (),
) -> dict[str, Any]:
    """The statistics from what :func:`read` returned.

    Args:
        raw: :func:`read`'s answer.
        site_of: a scanner's site name (:data:`UNASSIGNED` for one no site lists).
        period: ``day`` or ``week``.
        tz: the time zone days and weeks are in.
        order: the sites in the order to list them (others follow, sorted).

    Returns:
        ``{"verdicts", "hits", "agreement", "tip", "decision_times"}`` (see the module
        docstring; every rate a share from 0 to 1, None where nothing was counted).
    """
    rank = {s: i for i, s in enumerate(order)}

    def key(site: str) -> tuple[int, str]:
        return (rank.get(site, len(rank)), site)

    per: dict[tuple[str, str], dict[str, Any]] = {}
    sites: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(
        ("scans", "decided", "mandates", "undecided"), 0))  # fmt: skip
    matrix = {a: dict.fromkeys(FINAL, 0) for a in ATR}
    for r in raw["buckets"]:
        n = int(r["n"])
        atr = r["atr"] if r["atr"] in COLOURS else "none"
        final = r["final"] if r["final"] in COLOURS else "undecided"
        site = site_of(str(r["scanner"]))
        label, first = _label(int(r["q"]), period, tz)
        cell = per.get((site, label))
        if cell is None:
            cell = per[(site, label)] = {
                "site": site,
                "period": label,
                "first_day": first.isoformat(),
                "scans": 0,
                "atr": dict.fromkeys(ATR, 0),
                "final": dict.fromkeys(FINAL, 0),
            }
        cell["scans"] += n
        cell["atr"][atr] += n
        cell["final"][final] += n
        matrix[atr][final] += n
        s = sites[site]
        s["scans"] += n
        s["decided"] += 0 if final == "undecided" else n
        s["undecided"] += n if final == "undecided" else 0
        s["mandates"] += n if final == "red" else 0
    verdicts = sorted(per.values(), key=lambda c: (*key(c["site"]), c["first_day"]))
    hit_rows = []
    total = dict.fromkeys(("scans", "decided", "mandates"), 0)
    for site in sorted(sites, key=key):
        s = sites[site]
        for k in total:
            total[k] += s[k]
        hit_rows.append(
            {"site": site, "scans": s["scans"], "decided": s["decided"],
             "mandates": s["mandates"], "hit_rate": _share(s["mandates"], s["decided"]),
             "mandates_per_scan": _share(s["mandates"], s["scans"])}
        )  # fmt: skip
    # agreement over the scans with an ATR verdict and a decision, both a colour
    compared = sum(matrix[a][f] for a in COLOURS for f in COLOURS)
    agreed = sum(matrix[c][c] for c in COLOURS)
    kappa = None
    if compared:
        po = agreed / compared
        pe = sum(
            sum(matrix[c][f] for f in COLOURS) * sum(matrix[a][c] for a in COLOURS) for c in COLOURS
        ) / (compared * compared)
        kappa = round((po - pe) / (1 - pe), 6) if pe < 1 else None
    tip = []
    tip_total = {"projected": 0, "hits": 0}
    for r in raw["tip"]:
        projected, hits = int(r["projected"]), int(r["hits"] or 0)
        tip_total["projected"] += projected
        tip_total["hits"] += hits
        tip.append(
            {"name": r["name"], "role": r["role"], "projected": projected, "hits": hits,
             "missed": projected - hits, "rate": _share(hits, projected)}
        )  # fmt: skip
    times = []
    for site in sorted(set(raw["waits"]) | set(sites), key=key):
        w = raw["waits"].get(site)
        times.append(
            {
                "site": site,
                "decided": w["n"] if w else 0,
                "undecided": sites[site]["undecided"] if site in sites else 0,
                "median_s": round(max(0, w["median_ns"]) / 1e9, 1) if w else None,
                "p90_s": round(max(0, w["p90_ns"]) / 1e9, 1) if w else None,
                "max_s": round(max(0, w["max_ns"]) / 1e9, 1) if w else None,
            }
        )
    return {
        "verdicts": verdicts,
        "hits": {
            "note": HIT_NOTE,
            "sites": hit_rows,
            "total": {
                **total,
                "hit_rate": _share(total["mandates"], total["decided"]),
                "mandates_per_scan": _share(total["mandates"], total["scans"]),
            },
        },
        "agreement": {
            "atr": list(ATR),
            "final": list(FINAL),
            "matrix": [[matrix[a][f] for f in FINAL] for a in ATR],
            "compared": compared,
            "agreed": agreed,
            "rate": _share(agreed, compared),
            "kappa": kappa,
        },
        "tip": {
            "analysts": tip,
            "total": {**tip_total, "rate": _share(tip_total["hits"], tip_total["projected"])},
        },
        "decision_times": times,
    }


# -- the handlers ----------------------------------------------------------------------------
class Stats:
    """The statistics of one control room: the page and the API.

    Args:
        app: the control room.
        clock: the wall clock, epoch seconds (the default range ends today).

    Raises:
        ConfigError: ``sla.toml`` beside the central configuration is not valid.
    """

    def __init__(self, app: ControlRoomApp, clock: Callable[[], float] = time.time) -> None:
        self.app, self.clock = app, clock
        self.tz = sla_of(app.cfg).tz

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/stats", self.page, methods=["GET"]),
            Route("/api/stats", self.stats, methods=["GET"]),
        ]

    async def page(self, request: Request) -> Response:
        if await self.app.session(request) is None:
            return RedirectResponse("/login", status_code=303)
        return FileResponse(STATIC / "stats.html", headers=_SECURITY_HEADERS)

    def _instant(self, key: str, raw: str, *, end: bool) -> dt.datetime:
        """``raw`` as an aware date-time: a date is its midnight in the SLA's zone (with
        ``end``: the next midnight, so that the day is included).

        Raises:
            HTTPException: 400, not a date or date-time, or one outside :data:`FIRST_DAY`
                to :data:`LAST_DAY` (the message says the range).
        """
        bad = HTTPException(400, f"{key} must be a date (YYYY-MM-DD) or an ISO 8601 "
                                 f"date-time, got {raw[:40]!r}")  # fmt: skip
        if not raw.isascii() or len(raw) > 40:
            raise bad
        try:
            if len(raw) == 10:
                day = dt.date.fromisoformat(raw)
                t = dt.datetime.combine(day, dt.time(), self.tz)
            else:
                t = dt.datetime.fromisoformat(raw)
                t = t if t.tzinfo else t.replace(tzinfo=self.tz)
        except (ValueError, OverflowError):
            raise bad from None
        lo = dt.datetime.combine(FIRST_DAY, dt.time(), self.tz)
        hi = dt.datetime.combine(LAST_DAY + dt.timedelta(days=1), dt.time(), self.tz)
        try:
            inside = lo <= t < hi if len(raw) == 10 else lo <= t <= hi
        except OverflowError:  # an offset that moves year 1 or 9999 out of range
            inside = False
        if not inside:
            raise HTTPException(
                400, f"{key} must be from {FIRST_DAY} to {LAST_DAY} (the CIR's time range), "
                f"got {raw[:40]!r}",
            )  # fmt: skip
        return t + dt.timedelta(days=1) if end and len(raw) == 10 else t

    async def stats(self, request: Request) -> Response:
        """``GET /api/stats``: the statistics (see the module docstring).

        Returns:
            JSON ``{"since", "until" (ISO 8601), "since_ns", "until_ns", "period",
            "tz", "site", "sites" (those the user may choose), "verdicts", "hits",
            "agreement", "tip", "decision_times"}``.

        Raises:
            HTTPException: 401 without a session; 403 for an officer or a site the user
                may not see; 400 for an unknown parameter or a malformed value.
        """
        sess = await self.app.require(request)
        user = sess.user
        if user.role not in ROLES:
            raise HTTPException(
                403, "statistics are for the central RIAC, regional supervisors, auditors and "
                "administrators; the queue shows your sites' scans",
            )  # fmt: skip
        q = request.query_params
        unknown = sorted(set(q.keys()) - PARAMS)
        if unknown:
            raise HTTPException(400, f"unknown parameter {unknown[0][:40]!r}: use "
                                     + ", ".join(sorted(PARAMS)))  # fmt: skip
        if any(len(q.getlist(k)) > 1 for k in q):
            raise HTTPException(400, "give each parameter once")
        period = q.get("period") or "day"
        if period not in ("day", "week"):
            raise HTTPException(400, f"period must be day or week, got {period[:40]!r}")
        now = dt.datetime.fromtimestamp(self.clock(), self.tz)
        until = (
            self._instant("until", q["until"], end=True)
            if q.get("until")
            else dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), self.tz)
        )
        since = (
            self._instant("since", q["since"], end=False)
            if q.get("since")
            else dt.datetime.combine(until.date() - dt.timedelta(days=DEFAULT_DAYS), dt.time(),
                                     self.tz)
        )  # fmt: skip
        if until <= since:
            raise HTTPException(400, f"until ({until.isoformat()}) is not after since "
                                     f"({since.isoformat()})")  # fmt: skip
        if until - since > dt.timedelta(days=MAX_DAYS):
            raise HTTPException(400, f"at most {MAX_DAYS} days at a time")
        sites = [s for s in self.app.cfg.sites if user.can_see(s)]
        chosen: list[Site] = sites
        name = q.get("site") or ""
        if name:
            site = next((s for s in self.app.cfg.sites if s.name == name), None)
            if site is None:
                raise HTTPException(400, f"no site {name[:64]!r} in the configuration")
            if not user.can_see(site):
                raise HTTPException(403, f"site {name} is not one of yours")
            chosen = [site]
        groups: dict[str, tuple[Sequence[str] | None, bool]] = {
            s.name: (list(s.scanners), False) for s in chosen
        }
        if not name and self.app.visible_scanners(user) is None:
            # the central roles also see the scanners that no site lists
            listed = [sc for s in self.app.cfg.sites for sc in s.scanners]
            groups[UNASSIGNED] = (listed, True) if listed else (None, False)
        since_ns, until_ns = _ns(since), _ns(until)
        raw = await self.app.db(read, self.app.cir.sql, groups, since_ns, until_ns)

        def site_of(scanner: str) -> str:
            s = self.app.site(scanner)
            return s.name if s else UNASSIGNED

        doc = figures(raw, site_of, period=period, tz=self.tz, order=[s.name for s in sites])
        return _json(
            {
                "since": since.isoformat(),
                "until": until.isoformat(),
                "since_ns": since_ns,
                "until_ns": until_ns,
                "period": period,
                "tz": str(self.tz),
                "site": name or None,
                "sites": [s.name for s in sites],
                **doc,
            }
        )


def _ns(t: dt.datetime) -> int:
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def routes(app: ControlRoomApp, *, clock: Callable[[], float] = time.time) -> list[BaseRoute]:
    """The statistics' routes for ``app`` (``make_app`` calls it once).

    Raises:
        ConfigError: ``sla.toml`` beside the central configuration is not valid.
    """
    return Stats(app, clock).routes()
