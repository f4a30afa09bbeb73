"""The scanner board and the RIAC statistics (issue 16) of a control room built in-process
on a real CIR (SQLite, and once more on a PostgreSQL server of our own): scans, ATR
verdicts, decisions through ``Decisions.decide``, TIP scores, the edge's state log
through the uptime store's own ingest, alarms and live-feed events; each account's
view through HTTP (Starlette's test client), figures checked against what was put in."""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from argon2 import PasswordHasher

from central._cir import Cir, database_target
from central._uptime import UptimeStore
from central.atr._store import VerdictStore
from central.control_room import _board
from central.control_room._accounts import Accounts
from central.control_room._app import ControlRoomApp, make_app
from central.control_room._config import ControlRoomConfig, Site
from central.control_room._decisions import Decisions
from central.control_room._feed import FeedHub
from central.control_room._images import PictureCache
from central.control_room._tip import Tip
from core.config import CentralConfig
from core.keys import CirKey, ServiceSignKey
from core.seal import Opener

PASSWORD = "correct horse battery"
S = 10**9
PKT = ZoneInfo("Asia/Karachi")
SITES = (
    Site("port-a", "north", ("scanner1",)),
    Site("port-b", "south", ("scanner2",)),
    Site("port-c", "north", ("scanner3",)),
)
USERS: dict[str, tuple[str, dict[str, Any]]] = {
    "olga": ("officer", {"sites": ["port-a"]}),
    "sven": ("supervisor", {"region": "north"}),
    "ana": ("analyst", {}),
    "aud": ("auditor", {}),
    "adm": ("admin", {}),
}


@dataclass
class Room:
    app: ControlRoomApp
    asgi: Any
    now: float  # the board's clock, epoch s
    clients: dict[str, httpx.AsyncClient]

    def anonymous(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.asgi),
                                 base_url="http://testserver")  # fmt: skip

    async def client(self, name: str) -> httpx.AsyncClient:
        """A client logged in as ``name`` (one per name, closed by the fixture)."""
        if name not in self.clients:
            c = self.clients[name] = self.anonymous()
            r = await c.post("/login", data={"name": name, "password": PASSWORD})
            assert r.status_code == 303 and r.headers["location"] == "/", r.text
        return self.clients[name]

    async def get(self, name: str, path: str, **params: Any) -> httpx.Response:
        return await (await self.client(name)).get(path, params=params)


@pytest_asyncio.fixture
async def room(built: Room) -> AsyncIterator[Room]:
    try:
        yield built
    finally:
        for c in built.clients.values():
            await c.aclose()


@pytest.fixture(params=["sqlite", "postgresql"])
def built(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    database = "" if request.param == "sqlite" else str(request.getfixturevalue("pg_database"))
    central = CentralConfig(
        path=tmp_path / "central.toml", listen="tcp://127.0.0.1:7600",
        feed="tcp://127.0.0.1:7601", state_dir=tmp_path / "cir", key=tmp_path / "cir.key",
        cir=database,
    )  # fmt: skip
    cfg = ControlRoomConfig(
        path=tmp_path / "control-room.toml", host="127.0.0.1", port=8080, central=central,
        feeds=(), session_s=1800.0, signing_key=tmp_path / "keys" / "cr.sign", sites=SITES,
    )  # fmt: skip
    target = database_target(central.state_dir, database)
    cir = Cir(central.state_dir, database=database)
    accounts = Accounts(
        target,
        known_sites=[s.name for s in SITES],
        known_regions=["north", "south"],
        hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )
    verdicts = VerdictStore(target)
    app = ControlRoomApp(
        cfg,
        cir=cir,
        accounts=accounts,
        decisions=Decisions(accounts.db, ServiceSignKey.load_or_make(cfg.signing_key)),
        verdicts=verdicts,
        pictures=PictureCache(cir, Opener(CirKey.generate().x25519_private)),
        hub=FeedHub([]),
        tip=Tip(accounts.db, b"k" * 32, cfg.tip_rate_of),
    )
    for name, (role, kw) in USERS.items():
        accounts.add(name, role, PASSWORD, **kw)
    now = float(int(time.time()))
    monkeypatch.setattr(_board, "routes", functools.partial(_board.routes, clock=lambda: now))
    try:
        yield Room(app, make_app(app, follow=False), now, {})
    finally:
        app.close()
        verdicts.close()
        accounts.close()
        cir.close()


# -- data -----------------------------------------------------------------------------------
REF = iter(range(1, 10_000))


def scan(room: Room, scanner: str, *, finished_ns: int | None, started_ns: int | None = None,
         status: str = "complete", atr: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Insert one scan (and its ATR verdict); its row."""
    ref = next(REF)
    started = started_ns if started_ns is not None else (finished_ns or time.time_ns()) - 20 * S
    row = {
        "ref": ref, "scanner": scanner, "scan_id": ref, "container": f"MSCU{ref:07d}",
        "status": status, "started_ns": started, "finished_ns": finished_ns,
        "lines_planned": 100, "lines_received": 100, "gaps": 0, "start_record": "{}",
    }  # fmt: skip
    sql = room.app.cir.wsql
    with sql.transaction():
        sql.insert("scans", [row])
    if atr is not None:
        room.app.verdicts.put({"ref": ref, "scanner": scanner, "scan_id": ref, "verdict": atr,
                               "findings": []})  # fmt: skip
    return row


def decide(room: Room, row: dict[str, Any], name: str, verdict: str) -> dict[str, Any]:
    role = USERS[name][0]
    last = room.app.decisions.latest([row["ref"]]).get(row["ref"])
    marks = (
        [{"box_px": [0, 0, 10, 10], "category": "weapon", "note": ""}] if verdict == "red" else []
    )
    return room.app.decisions.decide(
        scan=row, name=name, role=role, verdict=verdict, reason="test", marks=marks,
        pixel_mm=(5.0, 5.0), atr_verdict="none", image_block="",
        corrects=None if last is None else last["id"],
    )  # fmt: skip


def decided_after(
    room: Room, scanner: str, atr: str | None, wait_s: float, *verdicts: tuple[str, str]
) -> dict[str, Any]:
    """A scan that finished ``wait_s`` before its first decision (``verdicts``: (user,
    verdict) in order)."""
    row = scan(room, scanner, finished_ns=time.time_ns() - int(wait_s * S), atr=atr)
    for name, v in verdicts:
        decide(room, row, name, v)
    return row


def stats_data(room: Room) -> dict[str, dict[str, Any]]:
    r = {
        "r1": decided_after(room, "scanner1", "green", 60, ("olga", "green")),
        "r2": decided_after(room, "scanner1", "green", 120, ("olga", "green")),
        "r3": decided_after(room, "scanner1", "red", 30, ("olga", "red")),
        "r4": decided_after(room, "scanner1", "yellow", 600, ("olga", "green")),
        # the officer's release, overridden by the supervisor: the mandate is final
        "r5": decided_after(room, "scanner1", "red", 90, ("olga", "green"), ("sven", "red")),
        "r6": scan(room, "scanner1", finished_ns=time.time_ns() - 5 * S, atr="green"),
        "r7": decided_after(room, "scanner2", None, 45, ("ana", "yellow")),
        "r8": decided_after(room, "scanner2", "red", 300, ("ana", "green")),
        "r9": scan(room, "scanner3", finished_ns=None, status="scanning", atr="green"),
        "r10": decided_after(room, "scanner9", "yellow", 10, ("ana", "red")),
    }
    # long before the range asked for: counted nowhere
    old = time.time_ns() - 50 * 86400 * S
    r["old"] = scan(room, "scanner1", finished_ns=old, atr="red")
    decide(room, r["old"], "olga", "red")
    # TIP scores (another engineer's code writes them in the field)
    now = time.time_ns()
    tips = [("r1", "olga", 1), ("r2", "olga", 0), ("r3", "olga", 1), ("r7", "ana", 1),
            ("r8", "ana", 0), ("old", "olga", 0)]  # fmt: skip
    sql = room.app.cir.wsql
    with sql.transaction():
        sql.insert("tip_scores", [
            {"ref": r[k]["ref"], "name": n, "role": USERS[n][0], "hit": hit, "signature": "pistol",
             "scored_ns": now if k != "old" else old, "detail": "{}"}
            for k, n, hit in tips
        ])  # fmt: skip
    return r


# -- statistics -------------------------------------------------------------------------------
def _range() -> dict[str, str]:
    today = dt.datetime.now(PKT).date()
    return {"since": (today - dt.timedelta(days=1)).isoformat(), "until": today.isoformat()}


def _by_site(doc: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    return {r["site"]: r for r in doc[key]} if isinstance(doc[key], list) else {
        r["site"]: r for r in doc[key]["sites"]}  # fmt: skip


async def test_the_statistics_count_what_was_decided(room: Room) -> None:
    rows = stats_data(room)
    r = await room.get("ana", "/api/stats", **_range())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["sites"] == ["port-a", "port-b", "port-c"] and doc["tz"] == "Asia/Karachi"
    # verdicts per site and day: each scan in the day it started, in Karachi
    expect: dict[tuple[str, str], int] = {}
    site = {"scanner1": "port-a", "scanner2": "port-b", "scanner3": "port-c",
            "scanner9": "(no site)"}  # fmt: skip
    for k, row in rows.items():
        if k != "old":
            day = dt.datetime.fromtimestamp(row["started_ns"] / S, PKT).date().isoformat()
            expect[(site[row["scanner"]], day)] = expect.get((site[row["scanner"]], day), 0) + 1
    assert {(c["site"], c["period"]): c["scans"] for c in doc["verdicts"]} == expect

    def total(s: str, part: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in doc["verdicts"]:
            if c["site"] == s:
                for k, v in c[part].items():
                    out[k] = out.get(k, 0) + v
        return out

    assert total("port-a", "atr") == {"green": 3, "yellow": 1, "red": 2, "none": 0}
    assert total("port-a", "final") == {"green": 3, "yellow": 0, "red": 2, "undecided": 1}
    assert total("port-b", "atr") == {"green": 0, "yellow": 0, "red": 1, "none": 1}
    assert total("(no site)", "final")["red"] == 1
    # HITs: mandates (Red final decisions) per decided scan; no examination results
    hits = _by_site(doc, "hits")
    assert hits["port-a"] == {"site": "port-a", "scans": 6, "decided": 5, "mandates": 2,
                              "hit_rate": 0.4, "mandates_per_scan": round(2 / 6, 6)}  # fmt: skip
    assert hits["port-b"]["mandates"] == 0 and hits["port-c"]["decided"] == 0
    assert doc["hits"]["total"]["mandates"] == 3 and doc["hits"]["total"]["decided"] == 8
    assert "not in the CIR" in doc["hits"]["note"]
    # ATR against the final decision
    ag = doc["agreement"]
    m = {a: dict(zip(ag["final"], row, strict=True)) for a, row in zip(ag["atr"], ag["matrix"],
                                                                      strict=True)}  # fmt: skip
    assert m["green"] == {"green": 2, "yellow": 0, "red": 0, "undecided": 2}
    assert m["yellow"] == {"green": 1, "yellow": 0, "red": 1, "undecided": 0}
    assert m["red"] == {"green": 1, "yellow": 0, "red": 2, "undecided": 0}
    assert m["none"] == {"green": 0, "yellow": 1, "red": 0, "undecided": 0}
    assert (ag["compared"], ag["agreed"]) == (7, 4)
    assert ag["rate"] == round(4 / 7, 6) and ag["kappa"] == pytest.approx(11 / 32, abs=1e-6)
    # TIP per analyst, in the range
    tip = {t["name"]: t for t in doc["tip"]["analysts"]}
    assert tip["olga"] == {"name": "olga", "role": "officer", "projected": 3, "hits": 2,
                           "missed": 1, "rate": round(2 / 3, 6)}  # fmt: skip
    assert (tip["ana"]["projected"], tip["ana"]["hits"]) == (2, 1)
    # from the end of the scan to its first decision: nearest-rank median and p90
    times = _by_site(doc, "decision_times")
    a = times["port-a"]
    assert (a["decided"], a["undecided"]) == (5, 1)
    assert a["median_s"] == pytest.approx(90, abs=2) and a["p90_s"] == pytest.approx(600, abs=2)
    b = times["port-b"]
    assert b["median_s"] == pytest.approx(45, abs=2) and b["p90_s"] == pytest.approx(300, abs=2)
    assert times["port-c"]["decided"] == 0 and times["port-c"]["median_s"] is None
    assert times["(no site)"]["median_s"] == pytest.approx(10, abs=2)

    # by week: the same scans, in ISO weeks
    wk = (await room.get("ana", "/api/stats", period="week", **_range())).json()
    assert sum(c["scans"] for c in wk["verdicts"]) == 10
    assert all("-W" in c["period"] for c in wk["verdicts"])
    # one site only
    one = (await room.get("ana", "/api/stats", site="port-b", **_range())).json()
    assert {c["site"] for c in one["verdicts"]} == {"port-b"}
    assert [t["name"] for t in one["tip"]["analysts"]] == ["ana"]
    # the old scan, and its TIP score, count in their own range
    old = dt.datetime.fromtimestamp(rows["old"]["started_ns"] / S, PKT).date().isoformat()
    past = (await room.get("ana", "/api/stats", since=old, until=old)).json()
    assert past["hits"]["total"] == {"scans": 1, "decided": 1, "mandates": 1, "hit_rate": 1.0,
                                     "mandates_per_scan": 1.0}  # fmt: skip
    assert past["tip"]["total"] == {"projected": 1, "hits": 0, "rate": 0.0}


async def test_who_sees_which_statistics(room: Room) -> None:
    stats_data(room)
    rng = _range()
    # a regional supervisor: the region's sites only, never another region's
    sven = (await room.get("sven", "/api/stats", **rng)).json()
    assert sven["sites"] == ["port-a", "port-c"]
    assert {c["site"] for c in sven["verdicts"]} == {"port-a", "port-c"}
    assert sven["hits"]["total"]["scans"] == 7
    assert [t["name"] for t in sven["tip"]["analysts"]] == ["olga"]
    r = await room.get("sven", "/api/stats", site="port-b", **rng)
    assert r.status_code == 403 and "error" in r.json()
    # the central roles see every site, read-only ones too
    for name in ("ana", "aud", "adm"):
        doc = (await room.get(name, "/api/stats", **rng)).json()
        assert doc["hits"]["total"]["scans"] == 10, name
    # a local officer: none
    r = await room.get("olga", "/api/stats")
    assert r.status_code == 403 and "RIAC" in r.json()["error"]
    assert (await room.get("olga", "/stats")).status_code == 200  # the page says so itself
    # not logged in
    async with room.anonymous() as anon:
        assert (await anon.get("/api/stats")).status_code == 401
        assert (await anon.get("/stats")).headers["location"] == "/login"
        assert (await anon.get("/api/board")).status_code == 401


@pytest.mark.parametrize("built", ["sqlite"], indirect=True)  # no SQL reached
@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"since": "yesterday"}, "since must be a date"),
        ({"until": "2026-13-01"}, "until must be a date"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "not after"),
        ({"since": "2020-01-01", "until": "2026-01-01"}, "at most 400 days"),
        ({"period": "month"}, "period must be day or week"),
        ({"site": "port-z"}, "no site"),
        ({"site": "port-a' OR 1=1 --"}, "no site"),
        ({"sort": "name"}, "unknown parameter"),
        ({"since": "2026-11-01\x00"}, "control character"),  # refused at the door
        ({"since": "9" * 5000}, "since must be"),
        ({"since": "2026-01-01", "until": "9999-12-31"}, "until must be"),
    ],
)
async def test_bad_statistics_parameters_get_a_clean_400(
    room: Room, params: dict[str, str], says: str
) -> None:
    r = await room.get("ana", "/api/stats", **params)
    assert r.status_code == 400 and says in r.json()["error"], r.text


@pytest.mark.parametrize("built", ["sqlite"], indirect=True)
async def test_a_parameter_given_twice_gets_a_400(room: Room) -> None:
    r = await (await room.client("ana")).get("/api/stats?period=day&period=week")
    assert r.status_code == 400


# -- the board ------------------------------------------------------------------------------
def _entries(start: float, end: float, fault: tuple[float, float], step: float = 120.0
             ) -> list[tuple[float, str]]:  # fmt: skip
    """State-log times and states: ready every ``step`` s, faulty within ``fault``."""
    ts = {start + k * step for k in range(int((end - start) // step) + 1)} | set(fault)
    return [(t, "fault" if fault[0] <= t < fault[1] else "ready") for t in sorted(ts) if t <= end]


def ingest(room: Room, scanner: str, entries: list[tuple[float, str]], recv: float) -> None:
    """Send ``entries`` through the uptime store's own ingest, as heartbeats would."""
    store = UptimeStore(database_target(room.app.cir.dir, room.app.cir.database))
    anchor = 1_700_000_000 * S
    try:
        rows = [[i + 1, "boot-1", int(t * S) - anchor, anchor, state, "mark"]
                for i, (t, state) in enumerate(entries)]  # fmt: skip
        for k in range(0, len(rows), 1000):
            doc = {"scanner": scanner, "log": "log-1", "entries": rows[k : k + 1000]}
            store.ingest(doc, recv_ns=int(recv * S))
    finally:
        store.close()


def alarm(room: Room, scanner: str, kind: str, ts: float, **details: Any) -> None:
    sql = room.app.cir.wsql
    with sql.transaction():
        sql.insert("alarms", [{"ts_ns": int(ts * S), "scanner": scanner, "edge": "edge1",
                               "kind": kind, "message": f"{kind} on {scanner}",
                               "details": json.dumps(details)}])  # fmt: skip


async def board(room: Room, name: str) -> dict[str, dict[str, Any]]:
    r = await room.get(name, "/api/board")
    assert r.status_code == 200, r.text
    return {s["scanner"]: s for s in r.json()["scanners"]}


async def test_the_board_shows_state_safety_uptime_and_link(room: Room) -> None:
    now = room.now
    today = dt.datetime.fromtimestamp(now, PKT).date()

    def midnight(d: dt.date) -> float:
        return dt.datetime.combine(d, dt.time(), PKT).timestamp()

    d2, d1 = today - dt.timedelta(days=2), today - dt.timedelta(days=1)
    fault = (midnight(d1) + 10 * 3600, midnight(d1) + 11 * 3600)  # yesterday 10:00-11:00
    ingest(room, "scanner1", _entries(midnight(d2), now - 30, fault), recv=now)
    # scanner3 went quiet ten minutes ago, its site unsafe: a door open
    ingest(room, "scanner3", [(now - 3600, "ready"), (now - 660, "interlock")], recv=now - 600)
    alarm(room, "scanner3", "unsafe", now - 700, causes=["door 2 open"])
    # scanner1: a control link that came back, a spool alarm still open, one from long ago
    alarm(room, "scanner1", "control_link_down", now - 500)
    alarm(room, "scanner1", "control_link_up", now - 400)
    alarm(room, "scanner1", "spool_high", now - 300)
    alarm(room, "scanner1", "scanner_fault", now - 3 * 86400)
    alarm(room, "scanner1", "safety_clear", now - 7200)
    scan(room, "scanner9", finished_ns=int((now - 100) * S))

    b = await board(room, "ana")
    assert list(b) == ["scanner1", "scanner2", "scanner3", "scanner9"]
    s1 = b["scanner1"]
    assert (s1["site"], s1["region"], s1["state"], s1["state_source"]) == (
        "port-a", "north", "idle", "state log")  # fmt: skip
    assert s1["link"]["state"] == "live" and s1["link"]["limit_s"] == _board.LOG_SILENT_S
    assert s1["safety"]["safe"] is True
    assert s1["alarms"]["open"] == 1 and s1["alarms"]["latest"][0]["kind"] == "spool_high"
    assert s1["spool"] is None  # not on the feed (yet)
    # uptime against the SLA: yesterday's hour of fault, the other days whole
    up = s1["uptime"]
    daily = {d["day"]: d["availability"] for d in up["daily"]}
    assert len(daily) == _board.PLOT_DAYS and list(daily)[-1] == today.isoformat()
    assert daily[d2.isoformat()] == 1.0 and daily[today.isoformat()] == 1.0
    assert daily[d1.isoformat()] == pytest.approx(23 / 24, abs=1e-6)
    assert daily[(today - dt.timedelta(days=3)).isoformat()] is None  # not commissioned yet
    month_start = midnight(today.replace(day=1))
    base = now - max(month_start, midnight(d2))
    down = 3600 if fault[0] >= month_start else 0
    assert up["month"]["availability"] == pytest.approx((base - down) / base, abs=1e-5)
    assert up["month"]["period"] == today.strftime("%Y-%m")
    assert up["fiscal"]["period"].startswith("FY")
    assert up["fiscal"]["availability"] == pytest.approx(
        (now - midnight(d2) - 3600) / (now - midnight(d2)), abs=1e-5
    )
    assert up["fiscal"]["status"] in ("met", "at risk", "breach")
    assert up["fiscal"]["met"] is (up["fiscal"]["availability"] >= 0.98)
    # silent for ten minutes: offline, never "live", whatever it said last
    s3 = b["scanner3"]
    assert s3["link"]["state"] == "silent" and s3["link"]["silent_s"] == pytest.approx(600)
    assert s3["state"] == "offline" and "silent for 10 min" in s3["cause"]
    assert s3["reported"] == "interlock"
    assert s3["safety"]["safe"] is False and s3["safety"]["causes"] == ["door 2 open"]
    # never heard of
    assert b["scanner2"]["link"]["state"] == "never" and b["scanner2"]["state"] == "offline"
    assert b["scanner9"]["site"] is None
    assert "no uptime record" in b["scanner2"]["uptime"]["error"]  # not 0 %: nothing to account

    # the live feed: a scan starting on scanner2, central's status with heartbeats
    room.app.hub.publish("scan.started", {"scanner": "scanner2", "ref": 99, "scan_id": 1})
    room.app.hub.publish("central.status", {"name": "agg-1", "scanners": {
        "scanner1": {"state": "scanning", "cause": "SCAN_START", "heard_s": 0.5,
                     "spool_depth": 7, "spool_bytes": 7_000_000, "control_up": True,
                     "link_fault": None},
        "scanner3": {"state": "ready", "heard_s": "soon"},  # malformed: ignored
    }})  # fmt: skip
    b = await board(room, "ana")
    s1 = b["scanner1"]
    assert (s1["state"], s1["state_source"]) == ("scanning", "heartbeat")
    assert s1["spool"] == {"depth": 7, "bytes": 7_000_000, "control_up": True,
                           "link_fault": None}  # fmt: skip
    # its heartbeats come on the feed: silent after three status periods, not three marks
    assert s1["link"]["limit_s"] == _board.FEED_SILENT_S and s1["link"]["state"] == "live"
    s2 = b["scanner2"]
    assert s2["link"]["state"] == "live" and s2["link"]["source"] == "feed"
    assert s2["state"] == "unknown"
    assert b["scanner3"]["state"] == "offline"
    r = await room.get("ana", "/api/board")
    assert r.json()["central"] == {"agg-1": 0.0}


async def test_each_account_sees_only_its_scanners_on_the_board(room: Room) -> None:
    scan(room, "scanner9", finished_ns=time.time_ns())
    assert list(await board(room, "olga")) == ["scanner1"]
    assert list(await board(room, "sven")) == ["scanner1", "scanner3"]
    for name in ("ana", "aud", "adm"):
        assert list(await board(room, name)) == ["scanner1", "scanner2", "scanner3", "scanner9"]
    # another site's scanner heard on the feed stays another site's
    room.app.hub.publish("scan.started", {"scanner": "scanner2", "ref": 1, "scan_id": 1})
    assert list(await board(room, "olga")) == ["scanner1"]
    assert (await room.get("olga", "/api/board", scanner="scanner2")).status_code == 400
    page = await room.get("olga", "/board")
    assert page.status_code == 200 and "board.js" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_open_alarms_and_safety_rules() -> None:
    rows = [  # newest first
        {"id": 5, "ts_ns": 50, "kind": "safety_trip", "message": "trip",
         "details": json.dumps({"causes": ["dose 3 uSv/h"]})},
        {"id": 4, "ts_ns": 40, "kind": "safety_clear", "message": "clear", "details": "{}"},
        {"id": 3, "ts_ns": 30, "kind": "unsafe", "message": "u", "details": "not json"},
        {"id": 2, "ts_ns": 20, "kind": "beam_stop_failed", "message": "b", "details": "{}"},
        {"id": 1, "ts_ns": 10, "kind": "storage_full", "message": "s", "details": "{}"},
    ]  # fmt: skip
    assert [a["kind"] for a in _board.open_alarms(rows, 0)] == [
        "safety_trip", "beam_stop_failed", "storage_full"]  # fmt: skip
    assert [a["kind"] for a in _board.open_alarms(rows, 25)] == ["safety_trip"]
    s = _board.safety_of(rows, "ready", "")
    assert s == {"safe": False, "causes": ["dose 3 uSv/h"], "since_ns": 50, "message": "trip"}
    assert _board.safety_of(rows[1:], "ready", "")["safe"] is True
    # the state log says unsafe after the clear
    assert _board.safety_of(rows[1:], "interlock", "site unsafe: door")["safe"] is False
    assert _board.safety_of([], "ready", "")["safe"] is None


def test_the_feed_tap_keeps_what_the_board_needs() -> None:
    t = [100.0]
    seen = _board.FeedSeen(clock=lambda: t[0])
    seen.event("scan.block", {"scanner": "s1"})
    seen.event("alarm", {"scanner": "s2", "edge": "", "kind": "sla_projection"})  # central's
    seen.event("decision", {"scanner": "s3"})  # the control room's own
    seen.event("central.status", {"name": "a", "scanners": {"s4": {"heard_s": 3}, "s5": []}})
    assert seen.heard == {"s1": 100.0, "s4": 97.0}
    assert seen.central == {"a": 100.0}
    t[0] = 200.0
    seen.event("central.status", {"scanners": {"s4": {"heard_s": float("nan")}}})
    assert seen.heard["s4"] == 97.0 and "central" in seen.central
    # two aggregators: the one that heard the scanner last is believed
    seen.event(
        "central.status", {"name": "a", "scanners": {"s4": {"heard_s": 1, "state": "ready"}}}
    )
    seen.event(
        "central.status", {"name": "b", "scanners": {"s4": {"heard_s": 90, "state": "fault"}}}
    )
    assert seen.status["s4"] == (199.0, {"heard_s": 1, "state": "ready"})
