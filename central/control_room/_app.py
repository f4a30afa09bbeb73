"""The control room's web application (Starlette; served by uvicorn).

Every request but the login page and the static files needs a session cookie
(``nii_session``: HttpOnly, SameSite=Strict); every state-changing request also
needs the session's CSRF token in the ``X-CSRF-Token`` header. What a user may
see is checked here, on the server, for every request, images included: a scan
of a site the user's role does not cover answers 404, exactly as a scan that does
not exist, so its existence does not leak.

All reads and writes of the CIR and the accounts go through one worker thread
(``_Db``): SQLite and psycopg connections are not shared between threads, and
the requests of one control room are few.

Routes (JSON unless said):

* ``GET /login`` (page), ``POST /login`` (form), ``POST /logout``
* ``GET /`` the live queue (page), ``GET /scan/{ref}`` the viewer (page),
  ``GET /att/{ref}`` the ATT view of an exit scan (page)
* ``GET /api/me``: the user, role, sites, CSRF token
* ``GET /api/queue``: the newest scans the user may see, their ATR verdict and
  decision, waiting time, who has them open
* ``GET /api/scans/{ref}``: the scan, its picture's layout, ATR verdict and
  findings, GD, decisions, marks
* ``GET /api/scans/{ref}/strip?start=&stop=&view=&w0=&w1=&att=``: columns of the
  image as PNG (``X-Columns: START-STOP``, ``X-Lines: N``); 204 when there are no
  columns from ``start`` yet. ``att=REF_B``: scan ``ref`` is the Scan A of exit
  scan REF_B, which the user may see (the ATT view shows both scans)
* ``GET /api/scans/{ref}/att``: the ATT document of exit scan ``ref`` and both scans'
  layouts; ``GET /api/scans/{ref}/att/difference``: its difference map as PNG
* ``POST /api/scans/{ref}/decisions``: ``{"verdict", "reason", "marks": [{"box_px",
  "category", "note"}], "corrects"}``
* ``GET /api/events?viewing=REF``: server-sent events of the live feeds
* ``GET /api/audit?name=&action=&ref=&since=&until=``: the audit log (auditors,
  administrators)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import unquote_to_bytes

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from central._cir import Cir
from central._sql import is_temporary, temporary_error_types
from central.atr._store import VerdictStore
from central.control_room import _att_view, _risk
from central.control_room._accounts import Accounts, Session, User, article
from central.control_room._config import ControlRoomConfig, Site
from central.control_room._decisions import CATEGORIES, DecisionRefused, Decisions
from central.control_room._feed import FeedHub, Subscriber
from central.control_room._http import read_capped
from central.control_room._images import PictureCache, View
from central.control_room._planted import Planted
from central.control_room._tip import Projection, Tip, display_verdict
from core.errors import NiiError

log = logging.getLogger("nii.control_room")

__all__ = ["COOKIE", "ControlRoomApp", "make_app"]

COOKIE = "nii_session"
STATIC = Path(__file__).parent / "static"
#: the largest request body taken (a decision with its marks is a few kB)
MAX_BODY = 64 * 1024
#: how often the audit log records one user's views of one scan
VIEW_AUDIT_S = 600.0
#: how long after a scan's end its alarms are still its own (the ATR's, the ATT's), ns
ALARMS_AFTER_NS = 120 * 1_000_000_000
#: how often the decisions of other control rooms on the same CIR are looked for (s)
DECISIONS_EVERY_S = 1.0
#: how often an event stream with nothing else to send says how the feeds are (s)
FEED_STATE_S = 2.0
#: how often an open event stream checks that its session still stands, seconds
SESSION_CHECK_S = 2.0
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

T = TypeVar("T")


class _Db:
    """One thread for every database call of the application."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="control-room-db")

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


#: free text a user types: no control character but tab and line breaks (PostgreSQL's
#: text cannot hold NUL; a signed decision must read the same everywhere), and none of
#: the Unicode controls that reorder or hide what is shown (bidi overrides, isolates)
_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$"


class MarkIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    box_px: list[int] = Field(min_length=4, max_length=4)
    category: Literal[CATEGORIES]  # type: ignore[valid-type]
    note: str = Field(default="", max_length=500, pattern=_TEXT)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    verdict: Literal["green", "yellow", "red"]
    reason: str = Field(default="", max_length=2000, pattern=_TEXT)
    marks: list[MarkIn] = Field(default_factory=list, max_length=50)
    corrects: int | None = None


class ControlRoomApp:
    """The application's state: the CIR, accounts, decisions, pictures and the feeds."""

    def __init__(
        self,
        cfg: ControlRoomConfig,
        *,
        cir: Cir,
        accounts: Accounts,
        decisions: Decisions,
        verdicts: VerdictStore,
        pictures: PictureCache,
        hub: FeedHub,
        tip: Tip,
    ) -> None:
        self.cfg = cfg
        self.cir, self.accounts, self.decisions, self.verdicts = cir, accounts, decisions, verdicts
        self.pictures, self.hub, self.tip = pictures, hub, tip
        self.db = _Db()
        #: a demo's "what was planted" (None: a real control room)
        self.planted = Planted(cfg.demo_truth) if cfg.demo_truth is not None else None
        #: the Risk Management System's webhook (None: none configured; set by ``build``)
        self.webhook: Any = None
        #: the newest decision put on the browsers' feed (those of other control rooms on
        #: the same CIR are found by :meth:`decisions_since`)
        self.decision_seen: int | None = None
        self._published_here: set[int] = set()
        #: exit scan ref → its ATT difference map (PNG), the few last asked for
        self._differences: dict[int, bytes] = {}
        #: (user, scan ref) → when its view was last written to the audit log
        self._seen: dict[tuple[str, int], float] = {}

    # -- who may see what ------------------------------------------------------------
    def site(self, scanner: str) -> Site | None:
        return self.cfg.site_of(scanner)

    def visible_scanners(self, user: User) -> list[str] | None:
        """The scanners ``user`` may see; None: every scanner (also those no site lists)."""
        if user.role in ("analyst", "auditor", "admin"):
            return None
        return [sc for s in self.cfg.sites if user.can_see(s) for sc in s.scanners]

    def may_see(self, user: User, scanner: str) -> bool:
        return user.can_see(self.site(scanner))

    # -- sessions --------------------------------------------------------------------
    async def session(self, request: Request) -> Session | None:
        token = request.cookies.get(COOKIE, "")
        if not token or len(token) > 200:
            return None
        return await self.db(self.accounts.session, token)

    async def require(self, request: Request) -> Session:
        """The request's session; for a state-changing request, its CSRF token checked.

        Raises:
            HTTPException: 401 without a valid session, 403 with a missing or wrong token.
        """
        sess = await self.session(request)
        if sess is None:
            raise HTTPException(401, "not logged in, or the session expired: log in again")
        if request.method not in ("GET", "HEAD"):
            sent = request.headers.get("x-csrf-token", "")
            if not sent or not hmac.compare_digest(sent.encode(), sess.csrf.encode()):
                raise HTTPException(403, "missing or stale CSRF token: reload the page")
        return sess

    async def scan_row(
        self, user: User, ref: int, request: Request, *, via: int | None = None
    ) -> dict[str, Any]:
        """The ``scans`` row of ``ref`` if ``user`` may see it; with ``via``, also when
        ``ref`` is the Scan A of exit scan ``via`` and the user may see ``via``.

        Raises:
            HTTPException: 404 when there is no such scan or the user may not see it.
        """
        row = await self.db(self.cir.scan, ref)
        if row is not None and via is not None and not self.may_see(user, str(row["scanner"])):
            b = await self.db(self.cir.scan, via)
            doc = await self.db(_att_view.att_for, self.cir.sql, via) if b is not None else None
            pair = doc is not None and doc.get("ref_b") == via and doc.get("ref_a") == ref
            if b is not None and pair and self.may_see(user, str(b["scanner"])):
                return row
        if row is not None and not self.may_see(user, str(row["scanner"])):
            # the same answer as a missing scan, but the auditor sees the attempt
            await self.db(lambda: self.accounts.audit(
                user, "refused", ref=ref, detail="a scan of a site the account does not cover",
                client=_client(request)))  # fmt: skip
            row = None
        if row is None:
            raise HTTPException(404, f"no scan {ref} for you")
        return row

    def audit_view(self, user: User, ref: int, client: str) -> None:
        """Record a view of scan ``ref`` (at most once every VIEW_AUDIT_S per user)."""
        now = time.monotonic()
        key = (user.name, ref)
        if now - self._seen.get(key, -1e18) < VIEW_AUDIT_S:
            return
        self._seen[key] = now
        self.accounts.audit(user, "view", ref=ref, detail="image", client=client)

    # -- pages -----------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        return FileResponse(STATIC / "login.html", headers=_SECURITY_HEADERS)

    async def login(self, request: Request) -> Response:
        # a login form posted from another site (login CSRF: the victim's decisions would
        # be made under the attacker's account) is refused. Browsers say where a request
        # comes from in Sec-Fetch-Site, and in Origin (but "null" under this
        # application's no-referrer policy); a client that says neither is no browser
        origin = request.headers.get("origin", "null")
        fetch_site = request.headers.get("sec-fetch-site", "").lower()
        if fetch_site in ("cross-site", "same-site") or (
            origin != "null" and _host_of(origin) != request.headers.get("host", "").lower()
        ):
            raise HTTPException(403, "a login from another site's page is refused")
        body = await _body(request)
        try:
            form = dict(
                (k, v[0]) for k, v in _parse_form(body.decode("utf-8", errors="strict")).items()
            )
        except (UnicodeDecodeError, ValueError):
            raise HTTPException(400, "the login form could not be read") from None
        name, password = form.get("name", ""), form.get("password", "")
        if not (0 < len(name) <= 64 and 0 < len(password) <= 256):
            return RedirectResponse("/login?failed=1", status_code=303)
        sess = await self.db(lambda: self.accounts.login(name, password, client=_client(request)))
        if sess is None:
            return RedirectResponse("/login?failed=1", status_code=303)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(
            COOKIE,
            sess.token,
            max_age=int(self.cfg.session_s),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return resp

    async def logout(self, request: Request) -> Response:
        await self.require(request)
        token = request.cookies.get(COOKIE, "")
        await self.db(lambda: self.accounts.logout(token, client=_client(request)))
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE, path="/")
        return resp

    async def page(self, request: Request) -> Response:
        if await self.session(request) is None:
            return RedirectResponse("/login", status_code=303)
        if request.url.path.startswith("/att/"):
            name = "att.html"
        else:
            name = "viewer.html" if "ref" in request.path_params else "queue.html"
        return FileResponse(STATIC / name, headers=_SECURITY_HEADERS)

    # -- API -------------------------------------------------------------------------
    async def me(self, request: Request) -> Response:
        sess = await self.require(request)
        u = sess.user
        return _json(
            {
                "name": u.name,
                "role": u.role,
                "sites": list(u.sites),
                "region": u.region,
                "can_decide": u.can_decide,
                "csrf": sess.csrf,
                "categories": list(CATEGORIES),
                "session_s": self.cfg.session_s,
            }
        )

    async def queue(self, request: Request) -> Response:
        sess = await self.require(request)
        limit = _int_param(request, "limit", 100, 1, 500)
        scanners = self.visible_scanners(sess.user)

        user = sess.user

        def read() -> list[dict[str, Any]]:
            rows = self.cir.recent_scans(scanners, limit)
            refs = [int(r["ref"]) for r in rows]
            decided = self.decisions.latest(refs)
            scored = self.tip.scores_of(user.name, refs) if user.can_decide else set()
            out = []
            for r in rows:
                ref = int(r["ref"])
                v = self.verdicts.get(ref)
                if user.can_decide and ref not in scored:
                    v = display_verdict(v, self.judged_tip(r, v))
                site = self.site(str(r["scanner"]))
                out.append(
                    {
                        **r,
                        "site": site.name if site else None,
                        "atr": _atr_summary(v),
                        "decision": decided.get(int(r["ref"])),
                    }
                )
            return out

        rows = await self.db(read)
        now = time.time_ns()
        for r in rows:
            r["viewers"] = self.hub.viewers(int(r["ref"]))
            end = r["decision"]["created_ns"] if r["decision"] else now
            start = r.get("finished_ns") or r.get("started_ns") or now
            r["waiting_s"] = round(max(0, end - start) / 1e9, 1)
        return _json({"scans": rows})

    async def scan(self, request: Request) -> Response:
        sess = await self.require(request)
        ref = _ref(request)
        row = await self.scan_row(sess.user, ref, request)
        client = _client(request)

        user = sess.user

        def read() -> dict[str, Any]:
            self.audit_view(user, ref, client)
            verdict = self.verdicts.get(ref)
            with self.pictures.lock:
                pic = self.pictures.get(ref)
                info = pic.info() if pic is not None else None
                gd = pic.record.get("gd") if pic is not None else None
                if pic is not None:
                    self.start_tip(row, pic)
            decisions = self.decisions.for_ref(ref)
            shown = self.tip.shown_to(ref, user.name, user.can_decide)
            att = _att_view.att_for(self.cir.sql, ref)
            released = any(d["kind"] == "release" for d in decisions)
            # the alarms of the scan's scanner while it was scanned, and its verdict's after
            t0 = int(row.get("started_ns") or 0) - 1_000_000_000
            t1 = int(row.get("finished_ns") or time.time_ns()) + ALARMS_AFTER_NS
            alarms = self.cir.sql.rows(
                "SELECT ts_ns, kind, message FROM alarms WHERE scanner = ? AND ts_ns >= ? "
                "AND ts_ns <= ? ORDER BY ts_ns LIMIT 50",
                [row["scanner"], t0, t1],
            )
            return {
                "picture": info,
                "verdict": display_verdict(
                    verdict, self.judged_tip(row, verdict) if shown else None
                ),
                "decisions": decisions,
                "annotations": self.decisions.annotations(ref),
                "gd": gd if isinstance(gd, dict) else None,
                "att": _att_view.summary(att, ref, released),
                "tip": self.tip.score_of(ref, user.name),
                "alarms": alarms,
                "selection": _risk.selection_for(self.cir.sql, row),
                "planted": None if self.planted is None else self.planted.of(
                    str(row["scanner"]), int(row["scan_id"]), row.get("container")),
            }  # fmt: skip

        try:
            got = await self.db(read)
        except NiiError as exc:  # a block that does not verify: shown as such, not drawn
            got = {"picture": None, "error": exc.message}
        scan = {k: v for k, v in row.items() if k not in ("start_record", "end_record")}
        site = self.site(str(row["scanner"]))
        return _json({"scan": {**scan, "site": site.name if site else None}, **got,
                      "viewers": self.hub.viewers(ref)})  # fmt: skip

    async def strip(self, request: Request) -> Response:
        sess = await self.require(request)
        ref = _ref(request)
        via = _int_param(request, "att", -1, -1, 2**62)
        row = await self.scan_row(sess.user, ref, request, via=None if via < 0 else via)
        start = _int_param(request, "start", 0, 0, 10**7)
        stop = _int_param(request, "stop", 10**7, 1, 10**7)
        if stop <= start:
            raise HTTPException(400, f"stop {stop} is not after start {start}")
        try:
            view = View(
                request.query_params.get("view", "material"),
                _float_param(request, "w0", 0.0),
                _float_param(request, "w1", 9.0),
            )
        except NiiError as exc:
            raise HTTPException(400, exc.message) from None
        client = _client(request)
        user = sess.user

        def draw() -> tuple[bytes, int, int, str] | None:
            self.audit_view(user, ref, client)
            with self.pictures.lock:
                pic = self.pictures.get(ref)
                if pic is None or start >= pic.lines:
                    return None
                self.start_tip(row, pic)  # placed as the scan started; late if we were down
                tip = self.tip.shown_to(ref, user.name, user.can_decide)
                end = min(stop, pic.lines)
                commits = ",".join(f"{c}:{ns}" for c, ns in pic.commits_in(start, end)[-64:])
                return pic.strip_png(start, end, view, tip), end, pic.lines, commits

        try:
            got = await self.db(draw)
        except NiiError as exc:
            raise HTTPException(409, exc.message) from None
        if got is None:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        png, end, lines, commits = got
        # X-Commits: "END:COMMITTED_NS,…" of the blocks whose last line this strip
        # shows first (the viewer keeps them: the benchmark's commit-to-pixels time)
        return Response(
            png,
            media_type="image/png",
            headers={"X-Columns": f"{start}-{end}", "X-Lines": str(lines),
                     "X-Commits": commits, "Cache-Control": "no-store"},
        )  # fmt: skip

    async def decide(self, request: Request) -> Response:
        sess = await self.require(request)
        user = sess.user
        ref = _ref(request)
        row = await self.scan_row(user, ref, request)
        if not user.can_decide:
            await self.db(lambda: self.accounts.audit(
                user, "refused", ref=ref, detail="a decision by a role that does not decide",
                client=_client(request)))  # fmt: skip
            raise HTTPException(403, f"{article(user.role)} does not decide on scans")
        try:
            body = DecisionIn.model_validate_json(await _body(request))
        except ValidationError as exc:
            raise HTTPException(400, _validation_message(exc)) from None
        client = _client(request)

        def write() -> tuple[int, dict[str, Any]]:
            with self.pictures.lock:
                pic = self.pictures.get(ref)
                if pic is None:
                    raise HTTPException(404, f"no scan {ref} for you")
                lines, channels = pic.lines, pic.channels
                pixel_mm = (pic.line_mm, pic.channel_mm)
                head = pic.last_seq
            for m in body.marks:
                c0, r0, c1, r1 = m.box_px
                if not (0 <= c0 < c1 <= lines and 0 <= r0 < r1 <= channels):
                    raise HTTPException(
                        400, f"mark {m.box_px} is not inside the image ({lines} x {channels})"
                    )
            boxes = [list(m.box_px) for m in body.marks]
            tip = self.tip.get(ref)
            if tip is not None and self.tip.score_of(ref, user.name) is not None:
                # revealed to this user: its region is not in the scan, never a mark
                if any(tip.found_by(b) for b in boxes):
                    raise HTTPException(409, "the region marked is where a Threat Image "
                                        "Projection was shown: it is not in the scan; mark "
                                        "only what the real image shows")  # fmt: skip
                tip = None
            sealed = self.cir.block_hash(str(row["scanner"]), head) if head >= 0 else None
            image_block = sealed.hex() if sealed else ""
            atr = self.verdicts.get(ref)
            att = _att_view.att_for(self.cir.sql, ref)
            hold = att if att is not None and att.get("hold") and att.get("ref_b") == ref else None
            decision: dict[str, Any] = {
                "scan": row, "name": user.name, "role": user.role, "verdict": body.verdict,
                "reason": body.reason, "marks": [m.model_dump() for m in body.marks],
                "pixel_mm": pixel_mm, "image_block": image_block, "corrects": body.corrects,
                "atr_verdict": str(atr.get("verdict", "none")) if atr else "none", "hold": hold,
            }  # fmt: skip
            if tip is not None and any(tip.found_by(b) for b in boxes):
                # only a decision that would be taken finds it: one refused scores nothing
                self.decisions.decide(**decision, dry_run=True)
                score = self.tip.score(tip, user.name, user.role, boxes)
                self.accounts.audit(user, "tip", ref=ref, client=client,
                                    detail=f"found a projected {tip.signature}")  # fmt: skip
                # a TIP never becomes a decision, let alone a mandate
                return 200, {
                    "tip": {
                        **score,
                        "message": f"That was a Threat Image Projection (a {tip.signature}): "
                        "well spotted. It is gone from the image now; decide on the real scan.",
                    }
                }
            done = self.decisions.decide(**decision)
            self.accounts.audit(
                user, "decision", ref=ref, client=client,
                detail=f"{done['kind']} {body.verdict} (decision {done['id']})",
            )  # fmt: skip
            if tip is not None:  # the decision stands: the projection was missed
                score = self.tip.score(tip, user.name, user.role, boxes)
                self.accounts.audit(user, "tip", ref=ref, client=client,
                                    detail=f"missed a projected {tip.signature}")  # fmt: skip
                done["tip"] = {
                    **score,
                    "message": f"This scan also showed a Threat Image Projection (a "
                    f"{tip.signature}) that was not marked: it is shown now, and gone from the "
                    "image. Your decision on the real scan is recorded.",
                }
            return 201, done

        try:
            status, done = await self.db(write)
        except DecisionRefused as exc:
            why = f"{exc.message} ({exc.fix})"
            await self.db(lambda: self.accounts.audit(
                user, "refused", ref=ref, detail=f"decision {body.verdict}: {why}"[:500],
                client=client))  # fmt: skip
            raise HTTPException(409, why) from None
        if status != 201:
            return _json(done, status=status)
        self._published_here.add(int(done["id"]))
        if self.webhook is not None:
            self.webhook.wake.set()
        self.hub.publish(
            "decision",
            {"ref": ref, "scanner": row["scanner"], "id": done["id"], "kind": done["kind"],
             "verdict": body.verdict, "by": user.name},
        )  # fmt: skip
        return _json(done, status=201)

    def decisions_since(self) -> list[dict[str, Any]]:
        """The decisions recorded since the last call, by any control room on this CIR,
        as the feed's ``decision`` events (the first call only notes where they stand)."""
        db = self.decisions.db
        if self.decision_seen is None:
            self.decision_seen = int(db.value("SELECT COALESCE(MAX(id), 0) FROM decisions"))
            return []
        rows = db.rows(
            "SELECT d.id, d.ref, d.kind, d.verdict, d.name, s.scanner FROM decisions d "
            "JOIN scans s ON s.ref = d.ref WHERE d.id > ? ORDER BY d.id LIMIT 500",
            [self.decision_seen],
        )
        if rows:
            self.decision_seen = int(rows[-1]["id"])
        out = []
        for r in rows:
            if int(r["id"]) in self._published_here:  # put on the feed as it was made
                self._published_here.discard(int(r["id"]))
                continue
            out.append({"ref": int(r["ref"]), "scanner": r["scanner"], "id": int(r["id"]),
                        "kind": r["kind"], "verdict": r["verdict"], "by": r["name"]})  # fmt: skip
        return out

    # -- TIP and ATT -----------------------------------------------------------------
    def start_tip(self, row: dict[str, Any], pic: Any) -> Projection | None:
        """Place scan ``row``'s projection, if it is one to show, as it starts (call under
        the pictures' lock, on the database thread)."""
        ref, scanner = int(row["ref"]), str(row["scanner"])
        if not self.tip.chosen(ref, scanner):
            return None
        got = self.tip.get(ref)
        if got is not None:
            return got
        try:
            return self.tip.place(
                row, self.last_frame(scanner, ref), pic.channels, pic.line_mm, pic.channel_mm,
                drawn=pic.lines,
            )  # fmt: skip
        except Exception as exc:  # a projection that fails leaves the scan as it is
            log.warning("TIP: no projection in scan ref %s: %s", ref, exc)
            return None

    def last_frame(self, scanner: str, before: int) -> dict[str, Any] | None:
        """Where the container lay in ``scanner``'s latest scan before ``before`` whose
        verdict found one (a verdict's ``container_frame``)."""
        rows = self.cir.sql.rows(
            "SELECT doc FROM verdicts WHERE scanner = ? AND ref < ? ORDER BY ref DESC LIMIT 5",
            [scanner, before],
        )
        for r in rows:
            try:
                frame = json.loads(r["doc"]).get("container_frame")
            except (ValueError, AttributeError):
                continue
            if isinstance(frame, dict) and frame.get("found"):
                return frame
        return None

    def judged_tip(self, row: dict[str, Any], verdict: dict[str, Any] | None) -> Any:
        """Scan ``row``'s projection, with what the ATR says of it once the scan's verdict
        is in (made here the first time; on the database thread)."""
        ref = int(row["ref"])
        proj = self.tip.get(ref)
        if proj is None or proj.judged or verdict is None or verdict.get("error"):
            return proj
        with self.pictures.lock:
            pic = self.pictures.get(ref)
            if pic is None or pic.status != "complete":
                return proj
            a_hi, a_lo = pic.attenuation()
            try:
                self.tip.judge(proj, row, verdict, a_hi, a_lo)
            except Exception as exc:  # shown in the pixels only, as a threat the ATR missed
                log.warning("TIP: the ATR could not judge the projection in ref %s: %s", ref, exc)
                proj.judged = True
        return proj

    def scan_started(self, ref: int) -> None:
        """A scan started on the feed: place its projection before its lines are drawn."""
        row = self.cir.scan(ref)
        if row is None or not self.tip.chosen(ref, str(row["scanner"])):
            return
        with self.pictures.lock:
            pic = self.pictures.get(ref)
            if pic is not None:
                self.start_tip(row, pic)

    def verdict_came(self, ref: int) -> None:
        """A verdict reached the feed: what the ATR says of the projection, made before
        anyone asks for the verdict."""
        row = self.cir.scan(ref)
        if row is None:
            return
        if self.tip.get(ref) is not None:
            self.judged_tip(row, self.verdicts.get(ref))
        # the scanner's scan under way may wait for this verdict's container frame
        for later in self.cir.sql.rows(
            "SELECT ref FROM scans WHERE scanner = ? AND status = 'scanning' AND ref > ?",
            [row["scanner"], ref],
        ):
            self.scan_started(int(later["ref"]))

    async def att(self, request: Request) -> Response:
        sess = await self.require(request)
        ref = _ref(request)
        row_b = await self.scan_row(sess.user, ref, request)
        client = _client(request)

        def read() -> dict[str, Any]:
            doc = _att_view.att_for(self.cir.sql, ref)
            if doc is None or doc.get("ref_b") != ref:
                raise HTTPException(404, f"scan {ref} is not an ATT exit scan with a result")
            self.accounts.audit(sess.user, "view", ref=ref, detail="ATT", client=client)
            out: dict[str, Any] = {"att": doc, "scans": {}}
            released = any(d["kind"] == "release" for d in self.decisions.for_ref(ref))
            out["summary"] = _att_view.summary(doc, ref, released)
            for side, r in (("a", doc.get("ref_a")), ("b", ref)):
                if r is None:
                    continue
                srow = row_b if side == "b" else self.cir.scan(int(r))
                with self.pictures.lock:
                    pic = self.pictures.get(int(r))
                    info = pic.info() if pic is not None else None
                out["scans"][side] = {
                    "ref": int(r),
                    "scanner": srow["scanner"] if srow else None,
                    "scan_id": srow["scan_id"] if srow else None,
                    "picture": info,
                }
            return out

        return _json(await self.db(read))

    async def att_difference(self, request: Request) -> Response:
        sess = await self.require(request)
        ref = _ref(request)
        await self.scan_row(sess.user, ref, request)

        def draw() -> bytes:
            if ref in self._differences:
                return self._differences[ref]
            doc = _att_view.att_for(self.cir.sql, ref)
            if doc is None or doc.get("ref_b") != ref:
                raise HTTPException(404, f"scan {ref} is not an ATT exit scan with a result")
            with self.pictures.lock:  # one reader of the CIR's connection at a time
                png = _att_view.difference_png(self.cir, self.pictures.opener, doc)
            while len(self._differences) >= 8:
                self._differences.pop(next(iter(self._differences)))
            self._differences[ref] = png
            return png

        try:
            png = await self.db(draw)
        except NiiError as exc:
            raise HTTPException(409, exc.message) from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def events(self, request: Request) -> Response:
        sess = await self.require(request)
        user = sess.user
        viewing = request.query_params.get("viewing", "")
        ref = None
        if viewing.isascii() and viewing.isdigit() and len(viewing) < 19:
            ref = int(viewing)
            try:  # only a scan the user may see counts as open by them
                await self.scan_row(user, ref, request)
            except HTTPException:
                ref = None
        sub = Subscriber(
            visible=lambda scanner: self.may_see(user, scanner),
            viewing=ref,
            name=user.name,
            everything=self.visible_scanners(user) is None,
        )
        token = request.cookies.get(COOKIE, "")
        self.hub.subscribe(sub)

        async def stream() -> AsyncIterator[bytes]:
            checked = time.monotonic()
            try:
                yield b"retry: 1000\n\n"
                while True:
                    # the stream ends with its session: a user disabled, logged out,
                    # reset or timed out gets nothing more (the page goes to the login)
                    if time.monotonic() - checked >= SESSION_CHECK_S:
                        checked = time.monotonic()
                        try:
                            alive = await self.db(self.accounts.alive, token)
                        except Exception as exc:  # the page reconnects, and is checked
                            log.warning("event stream of %s ended: %s", user.name, exc)
                            return
                        if not alive:
                            yield b'event: session\ndata: {"ended": true}\n\n'
                            return
                    try:
                        item = await asyncio.wait_for(sub.queue.get(), FEED_STATE_S)
                    except TimeoutError:
                        # how long the aggregators have been silent (central's status comes
                        # every 2 s): the page says when the feed is lost, not "live"
                        yield f"event: feed\ndata: {json.dumps(self.hub.state())}\n\n".encode()
                        continue
                    if item is None:
                        return
                    topic, doc = item
                    data = json.dumps(doc, default=str)
                    yield f"event: {topic}\ndata: {data}\n\n".encode()
            finally:
                self.hub.unsubscribe(sub)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def audit(self, request: Request) -> Response:
        sess = await self.require(request)
        if sess.user.role not in ("auditor", "admin"):
            raise HTTPException(403, "only auditors and administrators read the audit log")
        q = request.query_params
        name = q.get("name") or None
        action = q.get("action") or None
        ref = _int_param(request, "ref", -1, -1, 2**62)
        since = _int_param(request, "since", -1, -1, 2**62)
        until = _int_param(request, "until", -1, -1, 2**62)

        def read() -> list[dict[str, Any]]:
            self.accounts.audit(sess.user, "audit_search", detail=str(dict(q))[:500],
                                client=_client(request))  # fmt: skip
            return self.accounts.audit_rows(
                name=name,
                action=action,
                ref=None if ref < 0 else ref,
                since_ns=None if since < 0 else since,
                until_ns=None if until < 0 else until,
            )

        return _json({"entries": await self.db(read)})

    def close(self) -> None:
        self.db.close()


# -- helpers ---------------------------------------------------------------------------
def _json(doc: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(doc, default=str),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _ref(request: Request) -> int:
    raw = str(request.path_params.get("ref", ""))
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise HTTPException(404, "no such scan")
    return int(raw)


def _int_param(request: Request, key: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise HTTPException(400, f"{key} must be a whole number, got {raw[:40]!r}") from None
    if not lo <= v <= hi:
        raise HTTPException(400, f"{key} {v} is out of range ({lo} to {hi})")
    return v


def _float_param(request: Request, key: str, default: float) -> float:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        v = float(raw)
    except ValueError:
        raise HTTPException(400, f"{key} must be a number, got {raw[:40]!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise HTTPException(400, f"{key} must be a finite number")
    return v


async def _body(request: Request) -> bytes:
    """The request body, refused (413) above MAX_BODY whatever Content-Length says."""
    body = await read_capped(request, MAX_BODY)
    if body is None:
        raise HTTPException(413, f"the request body is larger than {MAX_BODY} bytes")
    return body


def _parse_form(text: str) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=10)


def _host_of(origin: str) -> str:
    """The ``host[:port]`` of an Origin header (``null`` and junk: "")."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    return rest.split("/")[0] if sep and scheme in ("http", "https") else ""


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(x) for x in e.get("loc", ())) or "body"
        msg = (
            "holds a control character (only tabs and line breaks may be typed; no bidi override)"
            if e.get("type") == "string_pattern_mismatch"
            else e.get("msg")
        )
        parts.append(f"{where}: {msg}")
    return "the request does not fit: " + "; ".join(parts)


def _atr_summary(v: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "verdict": v.get("verdict"),
        "findings": len(v.get("findings") or []),
        "error": v.get("error"),
    }


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 401 and not request.url.path.startswith("/api/"):
        return RedirectResponse("/login", status_code=303)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                        headers={"Cache-Control": "no-store"})  # fmt: skip


async def _nii_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NiiError)
    return JSONResponse({"error": exc.message, "fix": exc.fix}, status_code=400)


async def _server_error(request: Request, exc: Exception) -> Response:
    if is_temporary(exc):
        log.warning("%s %s: the CIR cannot be used now: %s", request.method,
                    request.url.path, exc)  # fmt: skip
        # the CIR's database or its disk, not the request: nothing was recorded; say so
        return JSONResponse(
            {"error": "the CIR cannot be read or written just now (its database or disk); "
                      "nothing was recorded", "fix": "try again in a minute; the "
                      "administrator sees the cause in the control room's log"},
            status_code=503, headers={"Retry-After": "30", "Cache-Control": "no-store"},
        )  # fmt: skip
    log.error("%s %s failed: %s: %s", request.method, request.url.path,
              type(exc).__name__, exc)  # fmt: skip
    return PlainTextResponse("internal error; it is logged", status_code=500)


def exception_handlers() -> dict[Any, Any]:
    """How the application answers what a route raises (Starlette's handlers)."""
    return {
        HTTPException: _http_error,
        NiiError: _nii_error,
        # the CIR's database or disk failing: answered 503 where the connection stays
        # usable (the catch-all below also has uvicorn log a traceback and drop it)
        **{kind: _server_error for kind in temporary_error_types()},
        Exception: _server_error,
    }


def end_streams(app: ControlRoomApp) -> None:
    """End every open event stream (a stop of the server: the pages reconnect)."""
    for sub in list(app.hub.subscribers):
        with contextlib.suppress(asyncio.QueueFull):
            sub.queue.put_nowait(None)


def make_app(app: ControlRoomApp, *, follow: bool = True) -> Starlette:
    """The Starlette application of ``app``; with ``follow`` it follows the live feeds
    while it runs."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()

        def on_verdict(ref: int) -> None:
            if app.webhook is not None:
                app.webhook.wake.set()
            fut = asyncio.ensure_future(app.db(app.verdict_came, ref))
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())

        def on_started(ref: int) -> None:
            fut = asyncio.ensure_future(app.db(app.scan_started, ref))
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())

        app.hub.on_verdict, app.hub.on_started = on_verdict, on_started

        async def decisions() -> None:
            # decisions taken in another control room on the same CIR reach these browsers
            # too (the ones taken here were put on the feed as they were made)
            while not stop.is_set():
                try:
                    for doc in await app.db(app.decisions_since):
                        app.hub.publish("decision", doc)
                except Exception as exc:  # the CIR away for a while: the next round tries
                    log.warning("decisions of other control rooms not read: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), DECISIONS_EVERY_S)

        tasks = [asyncio.create_task(decisions())]
        if app.webhook is not None:  # the RMS is told of verdicts, decisions and HOLDs
            tasks.append(asyncio.create_task(app.webhook.run(stop)))
        if follow:
            tasks.append(asyncio.create_task(app.hub.follow(stop)))
        try:
            yield
        finally:
            stop.set()
            end_streams(app)
            for task in tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)

    routes = [
        Route("/login", app.login_page, methods=["GET"]),
        Route("/login", app.login, methods=["POST"]),
        Route("/logout", app.logout, methods=["POST"]),
        Route("/", app.page, methods=["GET"]),
        Route("/scan/{ref}", app.page, methods=["GET"]),
        Route("/att/{ref}", app.page, methods=["GET"]),
        Route("/api/me", app.me, methods=["GET"]),
        Route("/api/queue", app.queue, methods=["GET"]),
        Route("/api/scans/{ref}", app.scan, methods=["GET"]),
        Route("/api/scans/{ref}/strip", app.strip, methods=["GET"]),
        Route("/api/scans/{ref}/decisions", app.decide, methods=["POST"]),
        Route("/api/scans/{ref}/att", app.att, methods=["GET"]),
        Route("/api/scans/{ref}/att/difference", app.att_difference, methods=["GET"]),
        Route("/api/events", app.events, methods=["GET"]),
        Route("/api/audit", app.audit, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    # the pages and APIs that live in modules of their own add their routes here
    from central.control_room import _board, _stats

    for module in (_board, _risk, _stats):
        routes[-1:-1] = module.routes(app)
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
        middleware=[Middleware(RefuseControlCharacters)],
    )


#: C0 controls and DEL: no path or query of this application holds one, PostgreSQL's
#: text cannot hold NUL, and a log or audit line must not be split or hidden by one
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RefuseControlCharacters:
    """ASGI middleware: a request whose path or query string, percent-decoded, holds a
    control character (``%00``, ``%0A`` …) is answered 400 before any route sees it, on
    either CIR backend alike (PostgreSQL refuses NUL in text; SQLite would store it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = str(scope.get("path", ""))
            query = unquote_to_bytes(bytes(scope.get("query_string", b"")).replace(b"+", b" "))
            if _CONTROL.search(path) or _CONTROL.search(query.decode("latin-1")):
                response = JSONResponse(
                    {"error": "the request's path or query holds a control character"},
                    status_code=400,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
