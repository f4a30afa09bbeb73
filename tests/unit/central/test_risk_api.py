"""The risk-system API (issue 16, item 5): the control room built in-process on a SQLite
CIR, driven over ASGI; its webhook POSTing to a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from central._cir import Cir, database_target
from central._sql import Sql
from central.atr._store import AttStore, VerdictStore
from central.control_room import _risk, _risk_webhook
from central.control_room._app import ControlRoomApp, make_app
from central.control_room._config import ControlRoomConfig
from central.control_room._decisions import Decisions, canonical
from central.control_room._serve import build
from core.errors import ConfigError
from core.keys import CirKey, ServiceSignKey

API = _risk.API
SECRET = "s" * 40
CONTAINERS = ("MSKU1234565", "CSQU3054383", "TGHU8765432")


def _valid(number: str) -> str:
    """``number`` with its check digit put right."""
    from core.iso6346 import check_digit

    return number[:10] + str(check_digit(number[:10]))


C1, C2, C3 = (_valid(c) for c in CONTAINERS)


def gd(number: str = "KAPE-HC-1234", version: Any = 1, **over: Any) -> dict[str, Any]:
    """A GD as the RMS sends it."""
    doc: dict[str, Any] = {
        "gd_number": number,
        "version": version,
        "declarant": {"name": "Indus Ceramics (Pvt) Ltd", "id": "1234567-8"},
        "terminal": "KICT",
        "containers": [{"number": C1, "size_type": "40HC", "seal": "SL-998877"}],
        "items": [
            {
                "hs_code": "6907.21",
                "description": "ceramic floor tiles",
                "gross_weight_kg": 24500,
                "net_weight_kg": 23800.5,
                "packages": 40,
                "origin": "CN",
            },
        ],
        "selection": {"tier": "targeted", "channel": "red", "criteria": ["weight deviation"]},
        "att": False,
    }
    doc.update(over)
    return doc


class Http:
    """A synchronous HTTP client of an ASGI application in this process (httpx over
    ASGI, on an event loop of its own in a thread)."""

    def __init__(self, asgi: Starlette) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        transport = httpx.ASGITransport(app=asgi, client=("127.0.0.1", 50000))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://control-room")

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        fut = asyncio.run_coroutine_threadsafe(self.client.request(method, url, **kw), self.loop)
        return fut.result(60)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Room:
    """A control room of the CIR in ``base``, its HTTP client, an RMS token."""

    base: Path
    cfg: ControlRoomConfig
    app: ControlRoomApp
    http: Http
    token: str
    target: str
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.http.get(API + path, headers=self.auth, **kw)

    def submit(self, *gds: dict[str, Any], **kw: Any) -> Any:
        return self.http.post(
            API + "/gds", json={"declarations": list(gds)}, headers=self.auth, **kw
        )

    def sql(self) -> Sql:
        """A connection of its own to the CIR (another process writing, as the ATR does)."""
        db = Sql(self.target)
        self.closers.append(db.close)
        return db

    def count(self, table: str) -> int:
        return int(self.sql().value(f"SELECT COUNT(*) AS n FROM {table}"))


def write_config(base: Path, *, risk: str | None = 'tokens = "risk-tokens"\n') -> Path:
    """central.toml, control-room.toml (one site, scanner1) and the keys, in ``base``."""
    if not (base / "keys" / "cir.key").exists():
        CirKey.generate().save(base / "keys")
    (base / "central.toml").write_text('[central]\nstate_dir = "state"\nkey = "keys/cir.key"\n')
    toml = base / "control-room.toml"
    text = (
        '[control_room]\nlisten = "127.0.0.1:8080"\ncentral = "central.toml"\n'
        'signing_key = "keys/control-room.sign"\n\n'
        '[[site]]\nname = "port-a"\nregion = "north"\nscanners = ["scanner1"]\n'
    )
    if risk is not None:
        text += "\n[risk_system]\n" + risk
    toml.write_text(text)
    return toml


def open_room(base: Path, **kw: Any) -> Room:
    """Build the control room of ``base`` (as ``nii control-room serve`` does) and start
    its ASGI application in-process; an RMS token named weboc."""
    cfg = ControlRoomConfig.load(write_config(base, **kw))
    Cir(cfg.central.state_dir).close()  # central made it: the control room only opens it
    app = build(cfg)
    http = Http(make_app(app, follow=False))
    token = _risk.TokenFile(cfg.risk.tokens).add("weboc") if cfg.risk else ""
    room = Room(base, cfg, app, http, token, database_target(cfg.central.state_dir))

    def close() -> None:
        http.close()
        app.close()
        app.accounts.close()
        app.verdicts.close()
        app.cir.close()

    room.closers.append(close)
    return room


def close_room(room: Room) -> None:
    for c in reversed(room.closers):
        c()


@pytest.fixture
def room(tmp_path: Path) -> Iterator[Room]:
    r = open_room(tmp_path)
    try:
        yield r
    finally:
        close_room(r)


# -- what the CIR holds: scans, verdicts, ATT results, decisions, as their writers write ------


def add_scan(
    db: Sql,
    ref: int,
    container: str,
    *,
    gd_number: str | None = None,
    started_ns: int | None = None,
    scanner: str = "scanner1",
) -> dict[str, Any]:
    """A complete scan's ``scans`` row (as the aggregator writes it at its end)."""
    started = time.time_ns() if started_ns is None else started_ns
    record = {"gd": {"gd_number": gd_number, "container_number": container}} if gd_number else {}
    row = {
        "ref": ref,
        "scanner": scanner,
        "scan_id": ref,
        "container": container,
        "status": "complete",
        "started_ns": started,
        "finished_ns": started + 10**9,
        "lines_planned": 100,
        "lines_received": 100,
        "gaps": 0,
        "start_record": json.dumps(record),
        "end_record": "{}",
        "gd_number": gd_number,
    }
    db.insert("scans", [row])
    return row


def add_verdict(target: str, ref: int, level: str = "red", findings: int = 1) -> None:
    store = VerdictStore(target)
    try:
        store.put(
            {
                "ref": ref,
                "scanner": "scanner1",
                "scan_id": ref,
                "verdict": level,
                "findings": [{"category": "dense object"}] * findings,
                "model": "portable",
            }
        )
    finally:
        store.close()


def add_hold(target: str, ref_a: int, ref_b: int, container: str) -> dict[str, Any]:
    doc = {
        "ref_a": ref_a,
        "ref_b": ref_b,
        "container": container,
        "seal_a": "SL-1",
        "seal_b": "SL-2",
        "result": "hold",
        "hold": True,
        "status": "compared",
        "reason": "the seal changed between entry and exit",
    }
    store = AttStore(target)
    try:
        store.put(doc)
    finally:
        store.close()
    return doc


def decide(
    decisions: Decisions,
    scan: dict[str, Any],
    role: str,
    verdict: str,
    *,
    corrects: int | None = None,
    hold: dict[str, Any] | None = None,
    reason: str = "",
) -> dict[str, Any]:
    marks = [{"box_px": [0, 0, 10, 10], "category": "weapon", "note": ""}]
    return decisions.decide(
        scan=scan,
        name={"officer": "olga", "supervisor": "sven", "analyst": "ana"}[role],
        role=role,
        verdict=verdict,
        reason=reason or f"{role} says {verdict}",
        marks=marks if verdict == "red" else [],
        pixel_mm=(5.0, 4.0),
        atr_verdict="red",
        image_block="ab" * 32,
        corrects=corrects,
        hold=hold,
    )


def deciders(room: Room) -> Decisions:
    """Another control room's decisions on the same CIR (its own connection and key)."""
    return Decisions(room.sql(), ServiceSignKey.load_or_make(room.base / "keys" / "other.sign"))


def poll_all(room: Room, after: int = 0, limit: int = 3) -> tuple[list[dict[str, Any]], int]:
    """Every event after ``after``, polling ``limit`` at a time as an RMS does."""
    got: list[dict[str, Any]] = []
    while True:
        r = room.get("/events", params={"after": after, "limit": limit})
        assert r.status_code == 200, r.text
        doc = r.json()
        got += doc["events"]
        assert doc["cursor"] == (doc["events"][-1]["cursor"] if doc["events"] else after)
        after = doc["cursor"]
        if not doc["more"]:
            return got, after


# -- submitting GDs ------------------------------------------------------------------------------


def test_a_gd_version_is_stored_once_and_an_amendment_is_a_new_row(room: Room) -> None:
    r = room.submit(gd())
    assert r.status_code == 200, r.text
    first = r.json()["results"]
    assert [(x["gd_number"], x["version"], x["status"]) for x in first] == [
        ("KAPE-HC-1234", 1, "stored")
    ]
    # the same version again (a retry): unchanged, with its first reception time
    again = room.submit(gd()).json()["results"]
    assert again == [{**first[0], "status": "unchanged"}]
    # the same version with other content is refused, and nothing of the batch is stored
    other = gd(selection={"tier": "high", "channel": "red", "criteria": []})
    r = room.submit(gd("KAPE-HC-9999"), other)
    assert r.status_code == 409 and "the next version: 2" in r.json()["error"]
    assert room.count("risk_gds") == 1
    # the amendment: a new row; the first version is kept as it was
    assert room.submit({**other, "version": 2}).json()["results"][0]["status"] == "stored"
    doc = room.get("/gds/KAPE-HC-1234").json()
    assert doc["current"] == 2
    assert [v["version"] for v in doc["versions"]] == [1, 2]
    assert doc["versions"][0]["declaration"]["selection"]["tier"] == "targeted"
    assert doc["versions"][1]["declaration"]["selection"]["tier"] == "high"
    assert doc["versions"][0]["client"] == "risk:weboc"
    # normalised as the ATR's GD model does: HS digits, the ISO size-type
    d = doc["versions"][0]["declaration"]
    assert d["items"][0]["hs_code"] == "690721" and d["containers"][0]["size_type"] == "45G1"
    # the database keeps them whatever a later bug would try
    db = room.sql()
    for sql in (
        "UPDATE risk_gds SET tier = 'none'",
        "DELETE FROM risk_gds",
        "DELETE FROM risk_gd_containers",
    ):
        with pytest.raises(Exception, match="kept as sent"):
            db.execute(sql)


BAD: list[tuple[str, Any, int, str]] = [
    ("a field the schema lacks", {"declarations": [gd(colour="red")]}, 400, "colour"),
    ("a wrong type", {"declarations": [gd(version="1")]}, 400, "version"),
    ("a bool for a number", {"declarations": [gd(version=True)]}, 400, "version"),
    (
        "a bad check digit",
        {"declarations": [gd(containers=[{"number": "MSKU1234560"}])]},
        400,
        "check digit should be 5",
    ),
    (
        "an HS chapter that does not exist",
        {"declarations": [gd(items=[{**gd()["items"][0], "hs_code": "7701.10"}])]},
        400,
        "chapter 77",
    ),
    (
        "net above gross",
        {"declarations": [gd(items=[{**gd()["items"][0], "net_weight_kg": 30000}])]},
        400,
        "net weight",
    ),
    (
        "too heavy for the containers",
        {"declarations": [gd(items=[gd()["items"][0]] * 3)]},
        400,
        "more than 1 container",
    ),
    (
        "a container twice",
        {"declarations": [gd(containers=[{"number": C1}, {"number": C1}])]},
        400,
        "named twice",
    ),
    (
        "SQL in the GD number",
        {"declarations": [gd("X'); DROP TABLE risk_gds;--")]},
        400,
        "gd_number",
    ),
    (
        "an unknown tier",
        {"declarations": [gd(selection={"tier": "max", "channel": "red"})]},
        400,
        "tier",
    ),
    ("control characters", {"declarations": [gd(declarant={"name": "a\x00b"})]}, 400, "name"),
    ("a bidi override", {"declarations": [gd(declarant={"name": "Evil\u202eCorp"})]}, 400, "name"),
    (
        "a blank declarant",
        {"declarations": [gd(declarant={"name": " \u00a0\u2003 "})]},
        400,
        "declarant.name: Value error, must not be blank",
    ),
    (
        "a blank description",
        {"declarations": [gd(items=[{**gd()["items"][0], "description": "   "}])]},
        400,
        "description: Value error, must not be blank",
    ),
    (
        "a blank criterion",
        {"declarations": [gd(selection={"tier": "high", "channel": "red", "criteria": [" "]})]},
        400,
        "not blank",
    ),
    ("a valid GD beside a bad one", {"declarations": [gd("KAPE-HC-1"), gd(att="yes")]}, 400, "att"),
    ("one version twice", {"declarations": [gd(), gd()]}, 400, "given twice"),
    ("no GDs", {"declarations": []}, 400, "declarations"),
    ("not an object", [gd()], 400, "should be an object"),
]


@pytest.mark.parametrize(("what", "body", "status", "says"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clean_4xx_and_changes_nothing(
    room: Room, what: str, body: Any, status: int, says: str
) -> None:
    r = room.http.post(API + "/gds", json=body, headers=room.auth)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert says in r.json()["error"], r.json()
    assert room.count("risk_gds") == room.count("risk_gd_containers") == 0


def test_bodies_that_are_not_json_or_too_big_are_refused(room: Room) -> None:
    post = room.http.post
    url = API + "/gds"
    r = post(url, content=b"{not json", headers={**room.auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and "json" in r.json()["error"].lower()
    r = post(url, content=b"declarations=1", headers={**room.auth, "Content-Type": "text/plain"})
    assert r.status_code == 415
    huge = json.dumps({"declarations": [gd()] * 2500}).encode()
    assert len(huge) > _risk.MAX_BODY
    r = post(url, content=huge, headers={**room.auth, "Content-Type": "application/json"})
    assert r.status_code == 413

    async def stream() -> Any:  # no Content-Length: counted as it comes
        for _ in range(20):
            yield b" " * 65536

    r = post(url, content=stream(), headers={**room.auth, "Content-Type": "application/json"})
    assert r.status_code == 413
    r = room.get("/events", params={"after": "-1"})
    assert r.status_code == 400 and "after" in r.json()["error"]
    r = room.get("/events?after=1&after=2")
    assert r.status_code == 400 and "twice" in r.json()["error"]
    r = room.get("/events", params={"cursor": "1"})
    assert r.status_code == 400 and "cursor" in r.json()["error"]
    assert room.get("/gds/..%2F..%2Fetc").status_code in (400, 404)
    assert room.get("/scans").status_code == 400
    assert room.count("risk_gds") == 0


def test_every_operation_refuses_an_unknown_or_repeated_query_parameter(room: Room) -> None:
    """The docs' rule, for every operation: 400, naming the parameter, and nothing changed."""
    stored = room.submit(gd()).json()["results"][0]
    cases = [
        ("POST", "/gds?x=1", "'x'"),
        ("POST", "/gds?version=2", "'version'"),  # a body field is no query parameter
        ("GET", "/gds/KAPE-HC-1234?x=1", "'x'"),
        ("GET", "/events?after=0&x", "'x'"),
        ("GET", "/scans?gd=KAPE-HC-1234&x=1", "'x'"),
        ("GET", "/scans?gd=KAPE-HC-1234&limit=1&limit=2", "twice"),
        ("GET", "/events?limit=1&limit=1", "twice"),
        ("GET", "/openapi.json?x=1", "'x'"),
    ]
    for method, path, says in cases:
        kw: dict[str, Any] = {"headers": room.auth}
        if method == "POST":
            kw["json"] = {"declarations": [gd(version=2)]}
        r = room.http.request(method, API + path, **kw)
        assert r.status_code == 400 and says in r.json()["error"], (path, r.text)
        assert r.headers["cache-control"] == "no-store"
    assert room.count("risk_gds") == 1  # the POSTs stored nothing
    assert room.get("/gds/KAPE-HC-1234").json()["current"] == stored["version"] == 1


@pytest.mark.parametrize(
    "query",
    ["after=%201", "after=1%20", "after=%2B1", "after=1.0", "limit=1_0", "limit=%EF%BC%91",
     "after=0x1", "after=", "after=00000000000000000001"],
)  # fmt: skip
def test_integer_query_parameters_are_plain_ascii_digits(room: Room, query: str) -> None:
    r = room.get(f"/events?{query}")
    assert r.status_code == 400, r.text
    assert "plain digits 0-9" in r.json()["error"], r.json()
    r = room.get(f"/scans?gd=KAPE-HC-1234&{query.replace('after', 'limit')}")
    assert r.status_code == 400 and "plain digits" in r.json()["error"], r.text
    assert room.get("/events?after=0&limit=7").status_code == 200


def test_a_version_that_skips_one_is_refused_with_the_next_expected(room: Room) -> None:
    """Customs amendments are numbered one after another: a gap is an amendment lost."""
    r = room.submit(gd(version=5))
    assert r.status_code == 409, r.text
    assert "next one is version 1" in r.json()["error"] and "holds no version" in r.json()["error"]
    assert room.submit(gd()).status_code == 200
    r = room.submit(gd("KAPE-HC-2"), gd(version=3))
    assert r.status_code == 409 and "version 3 skips a version" in r.json()["error"], r.text
    assert "next one is version 2 (the CIR holds versions 1 to 1)" in r.json()["error"]
    assert room.count("risk_gds") == 1  # KAPE-HC-2 was not stored either
    # the versions in between in the same submission, in any order: all stored
    r = room.submit(gd(version=3), gd(version=2), gd("KAPE-HC-2"))
    assert [x["status"] for x in r.json()["results"]] == ["stored"] * 3, r.text
    assert [v["version"] for v in room.get("/gds/KAPE-HC-1234").json()["versions"]] == [1, 2, 3]
    # an old version again is still a harmless retry
    assert room.submit(gd(version=2)).json()["results"][0]["status"] == "unchanged"


def test_text_is_stored_stripped_and_national_hs_chapters_are_taken(room: Room) -> None:
    """HS chapters 98 and 99 are left to national use by the HS Convention (Pakistan's
    tariff uses both); the ATR's GD model takes them, so the API does too."""
    item = {**gd()["items"][0], "hs_code": "9801.0000", "description": "  personal effects "}
    doc = gd(declarant={"name": "  Indus Ceramics  "}, items=[item, {**item, "hs_code": "9901"}])
    assert room.submit(doc).status_code == 200
    d = room.get("/gds/KAPE-HC-1234").json()["versions"][0]["declaration"]
    assert d["declarant"]["name"] == "Indus Ceramics"
    assert [(i["hs_code"], i["description"]) for i in d["items"]] == [
        ("98010000", "personal effects"),
        ("9901", "personal effects"),
    ]
    # the same GD with other spacing is the same document: a retry, not a conflict
    again = gd(
        declarant={"name": "Indus Ceramics"},
        items=[
            {**item, "description": "personal effects"},
            {**item, "hs_code": "9901", "description": "personal effects"},
        ],
    )
    assert room.submit(again).json()["results"][0]["status"] == "unchanged"


# -- tokens and the audit log ---------------------------------------------------------------------


def test_only_a_known_token_gets_in_and_every_call_is_audited(room: Room) -> None:
    http = room.http
    r = http.get(API + "/events")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = http.get(API + "/events", headers={"Authorization": "Basic d2Vib2M6eA=="})
    assert r.status_code == 401
    r = http.get(API + "/events", headers={"Authorization": f"Bearer {room.token}x"})
    assert r.status_code == 401 and "unknown" in r.json()["error"]
    assert room.get("/events").status_code == 200
    assert room.submit(gd()).status_code == 200
    assert room.get("/gds/NO-SUCH-GD").status_code == 404
    # a second client; then the first is revoked, and refused from its next request
    tokens = _risk.TokenFile(room.cfg.risk.tokens)  # type: ignore[union-attr]
    second = tokens.add("backup-rms")
    assert tokens.revoke("weboc") == 1
    assert room.get("/events").status_code == 401
    ok = http.get(API + "/events", headers={"Authorization": f"Bearer {second}"})
    assert ok.status_code == 200
    # the token file keeps no token, only hashes
    text = Path(tokens.path).read_text()
    assert second not in text and hashlib.sha256(second.encode()).hexdigest() in text
    rows = room.app.accounts.audit_rows(limit=100)
    seen = {(r["name"], r["action"]) for r in rows}
    assert ("risk:weboc", "risk_events") in seen
    assert ("risk:weboc", "risk_gds") in seen
    assert ("risk:weboc", "risk_refused") in seen  # the unknown GD
    assert ("risk:(unknown token)", "risk_refused") in seen
    assert ("risk:backup-rms", "risk_events") in seen
    assert all(r["role"] == "risk" for r in rows if r["name"].startswith("risk:"))


def test_calls_without_a_valid_token_are_audited_a_few_a_minute_and_counted(
    room: Room, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone who reaches the port can be refused: the append-only audit log takes a
    few such refusals a minute per client, and one row counting the rest; what they
    sent is written out, never stored raw (a NUL, a bidi override)."""
    now = [1000.0]
    monkeypatch.setattr(_risk, "_clock", lambda: now[0])
    monkeypatch.setattr(_risk, "UNKNOWN_AUDIT_PER_MIN", 3)
    before = len(room.app.accounts.audit_rows(limit=10_000))
    for i in range(5):
        headers = {} if i % 2 else {"Authorization": "Bearer nope"}
        assert room.http.get(API + "/gds/AB\u202eCD", headers=headers).status_code == 401
    rows = room.app.accounts.audit_rows(limit=10_000)[
        : len(room.app.accounts.audit_rows(limit=10_000)) - before
    ]
    assert len(rows) == 3, rows
    assert {r["name"] for r in rows} == {"risk:(no token)", "risk:(unknown token)"}
    assert all("\u202e" not in r["detail"] and "\\u202e" in r["detail"] for r in rows), rows
    now[0] += 61  # the next minute: the two left out are counted in one row
    assert room.http.get(API + "/events").status_code == 401
    rows = room.app.accounts.audit_rows(limit=10_000)
    assert any("2 more refusal(s)" in r["detail"] for r in rows[:2]), rows[:2]
    # a control character anywhere in a path or query: 400 before any route, nothing kept
    for url in (API + "/gds/AB%00CD", "/api/audit?name=%00", "/api/scans/1%0a"):
        r = room.http.get(url, headers=room.auth)
        assert r.status_code == 400 and "control character" in r.json()["error"], url


def test_a_missing_token_file_is_a_503_logged_once(
    room: Room, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = Path(room.cfg.risk.tokens)  # type: ignore[union-attr]
    tokens.rename(tokens.with_name("moved"))
    caplog.set_level("WARNING", logger="nii.control_room.risk")
    for _ in range(3):
        r = room.get("/events")
        assert r.status_code == 503 and "no token file" in r.json()["error"], r.text
        assert str(tokens) not in r.text  # the path is for the control room's log
    logged = [r.getMessage() for r in caplog.records if "refuses every call" in r.getMessage()]
    assert len(logged) == 1 and str(tokens) in logged[0] and "nii risk token add" in logged[0]
    # a client without a token still learns nothing but 401
    assert room.http.get(API + "/events").status_code == 401
    tokens.with_name("moved").rename(tokens)
    assert room.get("/events").status_code == 200
    assert any("readable again" in r.getMessage() for r in caplog.records)
    # a bad line: 503 again, logged once more (a new state)
    with tokens.open("a") as f:
        f.write("bad line\n")
    assert room.get("/events").status_code == 503 and room.get("/events").status_code == 503
    logged = [r.getMessage() for r in caplog.records if "refuses every call" in r.getMessage()]
    assert len(logged) == 2 and "SHA256HEX" in logged[1]


def test_without_a_risk_system_table_the_api_is_off(tmp_path: Path) -> None:
    room = open_room(tmp_path, risk=None)
    try:
        r = room.http.get(API + "/events", headers={"Authorization": "Bearer x"})
        assert r.status_code == 404 and "[risk_system]" in r.json()["error"]
        assert room.http.get(API + "/openapi.json").status_code == 200
    finally:
        close_room(room)


def test_a_bad_risk_system_table_is_a_clear_config_error(tmp_path: Path) -> None:
    for risk, says in [
        ('webhook = "http://rms.example.org/x"\nwebhook_secret = "s"\n', "unencrypted"),
        ('webhook = "https://user:pw@rms.example.org/x"\nwebhook_secret = "s"\n', "password"),
        ('webhook = "https://rms.example.org/x"\n', "webhook_secret: missing"),
        ('webhook_secret = "s"\n', "no webhook"),
        ('tokens = "t"\ncolour = 1\n', "colour"),
        ('webhook = "ftp://rms.example.org/"\nwebhook_secret = "s"\n', "http(s)"),
    ]:
        with pytest.raises(ConfigError, match=r"\[risk_system\]") as e:
            ControlRoomConfig.load(write_config(tmp_path, risk=risk))
        assert says in e.value.message, e.value.message
        assert e.value.fix


def test_the_token_file_refuses_bad_lines_and_names(tmp_path: Path) -> None:
    f = _risk.TokenFile(tmp_path / "tokens")
    assert f.names() == []  # nii risk token list: no token yet
    with pytest.raises(ConfigError, match="does not exist: no token is valid") as e:
        f.check("anything")  # the API: a setup mistake (503), not a revoked token (401)
    assert "nii risk token add" in e.value.fix
    with pytest.raises(ConfigError, match="not a token name"):
        f.add("Weboc RMS")
    token = f.add("weboc")
    assert token.startswith(_risk.TOKEN_PREFIX) and f.check(token) == "weboc"
    assert (tmp_path / "tokens").stat().st_mode & 0o777 == 0o600
    with (tmp_path / "tokens").open("a") as out:
        out.write("weboc not-a-hash\n")
    with pytest.raises(ConfigError, match=":2: not a 'NAME SHA256HEX' line"):
        f.check(token)


def test_nii_risk_token_add_list_revoke(tmp_path: Path, capsys: Any) -> None:
    from nii.__main__ import main

    toml = write_config(tmp_path)
    assert main(["risk", "token", "add", "weboc", "--config", str(toml)]) == 0
    token = capsys.readouterr().out.splitlines()[0]
    cfg = ControlRoomConfig.load(toml)
    assert cfg.risk is not None and _risk.TokenFile(cfg.risk.tokens).check(token) == "weboc"
    assert main(["risk", "token", "list", "--config", str(toml)]) == 0
    assert capsys.readouterr().out.split() == ["weboc"]
    assert main(["risk", "token", "revoke", "weboc", "--config", str(toml)]) == 0
    assert _risk.TokenFile(cfg.risk.tokens).check(token) is None
    capsys.readouterr()
    assert main(["risk", "token", "revoke", "weboc", "--config", str(toml)]) != 0
    assert "nii risk token list" in capsys.readouterr().err
    off = write_config(tmp_path, risk=None)
    assert main(["risk", "token", "add", "weboc", "--config", str(off)]) != 0
    assert "[risk_system]" in capsys.readouterr().err


# -- events --------------------------------------------------------------------------------------


def test_polling_from_the_last_cursor_loses_nothing_and_repeats_nothing(room: Room) -> None:
    db = room.sql()
    a = add_scan(db, 1, C1, gd_number="KAPE-HC-1234")
    b = add_scan(db, 2, C1, gd_number="KAPE-HC-1234")
    add_verdict(room.target, 1, "green", 0)
    add_verdict(room.target, 2, "red", 2)
    hold = add_hold(room.target, 1, 2, C1)
    other = deciders(room)
    local = decide(other, b, "officer", "red")  # a mandate
    first, cursor = poll_all(room)
    assert [e["type"] for e in first] == [
        "atr.verdict",
        "atr.verdict",
        "att.hold",
        "decision",
    ]
    assert first[2]["att"]["reason"] == "the seal changed between entry and exit"
    mandate = first[3]["decision"]
    assert mandate["mandate"] and mandate["kind"] == "local" and mandate["by"] == "olga"
    assert first[3]["gd_number"] == "KAPE-HC-1234" and first[3]["container"] == C1
    # the signed document travels with its signature: the RMS can check it
    key = ServiceSignKey.load_or_make(room.base / "keys" / "other.sign")
    key.sign_private.public_key().verify(
        __import__("base64").b64decode(mandate["signature"]), canonical(mandate["doc"])
    )
    assert first[1]["verdict"] == {"verdict": "red", "findings": 2, "model": None}
    # polled again from its last cursor: nothing new
    again, same = poll_all(room, cursor)
    assert again == [] and same == cursor
    # later: an override, a re-analysis, the HOLD's release by a central analyst
    over = decide(other, b, "supervisor", "red", corrects=local["id"])
    add_verdict(room.target, 2, "yellow", 1)
    decide(
        other,
        b,
        "analyst",
        "green",
        corrects=over["id"],
        hold=hold,
        reason="seal change explained by the exit customs station",
    )
    later, end = poll_all(room, cursor)
    assert [e["type"] for e in later] == ["decision", "atr.verdict", "att.released"]
    assert later[0]["decision"]["kind"] == "override"
    assert later[2]["decision"]["kind"] == "release" and not later[2]["decision"]["mandate"]
    # one list, from the start, in any page size: the same events, each once, in order
    for limit in (1, 2, 1000):
        whole, top = poll_all(room, 0, limit)
        assert whole == first + later and top == end
    ids = [e["id"] for e in first + later]
    assert len(set(ids)) == len(ids)
    cursors = [e["cursor"] for e in first + later]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    # a cursor this CIR never gave out
    r = room.get("/events", params={"after": end + 1})
    assert r.status_code == 409 and "after=0" in r.json()["error"]
    # the outbox is evidence too
    with pytest.raises(Exception, match="append-only"):
        db.execute("DELETE FROM risk_events")
    assert a["ref"] == 1


def test_events_written_while_the_rms_polls_each_arrive_once(room: Room) -> None:
    """Writers in other threads (the ATR, other control rooms) while the RMS polls."""
    n = 40
    setup = room.sql()
    scans = [add_scan(setup, ref, C2) for ref in range(1, n + 1)]
    errors: list[BaseException] = []

    def verdicts() -> None:
        try:
            for s in scans:
                add_verdict(room.target, s["ref"], "yellow")
        except BaseException as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    def decisions() -> None:
        try:
            other = deciders(room)
            for s in scans:
                decide(other, s, "officer", "green")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    writers = [threading.Thread(target=verdicts), threading.Thread(target=decisions)]
    for w in writers:
        w.start()
    got: list[dict[str, Any]] = []
    cursor = 0
    deadline = time.monotonic() + 30
    while len(got) < 2 * n:
        assert time.monotonic() < deadline, f"{len(got)} of {2 * n} events"
        page, cursor = poll_all(room, cursor, limit=7)
        got += page
        if not page and all(not w.is_alive() for w in writers) and len(got) < 2 * n:
            assert not errors, errors
    for w in writers:
        w.join(10)
    assert not errors, errors
    ids = [e["id"] for e in got]
    assert len(ids) == len(set(ids)) == 2 * n
    assert sorted(e["ref"] for e in got if e["type"] == "decision") == list(range(1, n + 1))
    assert [e["cursor"] for e in got] == sorted(e["cursor"] for e in got)


# -- lookups and the viewer's selection ---------------------------------------------------------


def test_what_the_cir_holds_for_a_gd_and_a_container(room: Room) -> None:
    t0 = time.time_ns()
    assert room.submit(gd(containers=[{"number": C1}, {"number": C2}], att=True)).status_code == 200
    db = room.sql()
    entry = add_scan(db, 1, C1, gd_number="KAPE-HC-1234", started_ns=t0)
    exit_ = add_scan(db, 2, C1, gd_number="KAPE-HC-1234", started_ns=t0 + 10**12)
    # a scan of the GD's second container, whose record carries no GD number
    add_scan(db, 3, C2, started_ns=t0 + 10**9)
    # the same container months later, on another GD that was never sent
    add_scan(db, 4, C2, started_ns=t0 + 90 * 86400 * 10**9)
    add_verdict(room.target, 2, "red")
    hold = add_hold(room.target, 1, 2, C1)
    decide(deciders(room), exit_, "officer", "red")
    doc = room.get("/gds/KAPE-HC-1234").json()
    assert [s["ref"] for s in doc["scans"]] == [1, 2, 3]
    b = doc["scans"][1]
    assert b["atr"]["verdict"] == "red" and b["decision"]["mandate"]
    assert b["att"]["hold"] and b["att"]["held"] and b["att"]["ref_a"] == 1
    assert b["site"] == "port-a"
    assert b["selection"] == {
        "gd_number": "KAPE-HC-1234",
        "version": 1,
        "tier": "targeted",
        "channel": "red",
        "att": True,
        "scan_required": True,
        "received_ns": b["selection"]["received_ns"],
        "matched_by": "gd_number",
        "container_listed": True,
    }
    assert doc["scans"][2]["selection"]["matched_by"] == "container"
    # by container: both scans of C2, the later one with no selection
    scans = room.get("/scans", params={"container": C2}).json()["scans"]
    assert [(s["ref"], s["selection"] is not None) for s in scans] == [(3, True), (4, False)]
    by_gd = room.get("/scans", params={"gd": "KAPE-HC-1234"}).json()["scans"]
    assert [s["ref"] for s in by_gd] == [1, 2]
    # once released by a central analyst the HOLD no longer stands
    last = room.app.decisions.for_ref(2)[-1]["id"]
    decide(
        deciders(room),
        exit_,
        "analyst",
        "green",
        corrects=last,
        hold=hold,
        reason="seal change explained by the exit customs station",
    )
    b = room.get("/scans", params={"gd": "KAPE-HC-1234"}).json()["scans"][1]
    assert b["att"]["hold"] and not b["att"]["held"] and b["decision"]["kind"] == "release"
    # the viewer's function, on any connection to the CIR
    assert _risk.selection_for(db, entry)["tier"] == "targeted"  # type: ignore[index]
    assert _risk.selection_for(db, {"gd_number": None, "container": "XXXU0000000"}) is None
    assert doc["scans"][2]["selection"]["container_listed"] is True
    # a scan that carries the GD's number but whose container the GD does not list: the
    # GD's selection, flagged, so that the viewer warns the officer
    other = add_scan(db, 5, C3, gd_number="KAPE-HC-1234", started_ns=t0)
    sel = _risk.selection_for(db, other)
    assert sel is not None and sel["matched_by"] == "gd_number"
    assert sel["container_listed"] is False
    looked = room.get("/scans", params={"container": C3}).json()["scans"][0]["selection"]
    assert looked["container_listed"] is False
    # written as the gate reads it (lower case, a dash): still the listed container
    spaced = {**entry, "container": C1[:4].lower() + "-" + C1[4:]}
    assert _risk.selection_for(db, spaced)["container_listed"] is True  # type: ignore[index]
    no_box = _risk.selection_for(db, {"gd_number": "KAPE-HC-1234", "container": None})
    assert no_box is not None and no_box["container_listed"] is None
    assert room.get("/gds/KAPE-HC-0000").status_code == 404
    assert room.get("/scans", params={"container": "MSKU12345"}).status_code == 400
    assert entry["ref"] == 1


# -- the OpenAPI document ---------------------------------------------------------------------


def test_the_openapi_document_is_served_and_names_every_operation(room: Room) -> None:
    spec = room.http.get(API + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    ops = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert ops == {
        ("POST", API + "/gds"),
        ("GET", API + "/gds/{gd_number}"),
        ("GET", API + "/events"),
        ("GET", API + "/scans"),
        ("GET", API + "/openapi.json"),
    }
    gd_schema = spec["components"]["schemas"]["GdIn"]
    assert gd_schema["additionalProperties"] is False
    assert spec["components"]["schemas"]["ContainerIn"]["properties"]["number"]["pattern"]


# -- the webhook ---------------------------------------------------------------------------------


class Receiver:
    """The RMS's webhook: a real HTTP server on loopback that checks each signature; it
    answers 503 to the first ``fail`` POSTs."""

    def __init__(self, secret: bytes, fail: int = 0) -> None:
        self.secret, self.fail = secret, fail
        self.posts: list[dict[str, Any]] = []
        self.refused = 0
        self.cond = threading.Condition()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                good = hmac.compare_digest(
                    self.headers.get("X-NII-Signature", ""),
                    "sha256=" + hmac.new(me.secret, body, hashlib.sha256).hexdigest(),
                )
                with me.cond:
                    if not good:
                        status = 401
                    elif me.fail > 0:
                        me.fail -= 1
                        me.refused += 1
                        status = 503
                    else:
                        me.posts.append(json.loads(body))
                        status = 204
                    me.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/nii/events"

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for p in self.posts for e in p["events"]]

    def wait_for(self, n: int, timeout: float = 20.0) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.events) >= n, timeout)
        assert ok, f"{len(self.events)} of {n} events delivered"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hooked_room(base: Path, url: str) -> Room:
    (base / "keys").mkdir(exist_ok=True)
    (base / "keys" / "risk-webhook.secret").write_text(SECRET + "\n")
    return open_room(
        base,
        risk=f'tokens = "risk-tokens"\nwebhook = "{url}"\n'
        'webhook_secret = "keys/risk-webhook.secret"\n',
    )


async def _deliver(room: Room, until: Callable[[], None], **kw: Any) -> _risk_webhook.Webhook:
    """Run the room's webhook (quick retries) until ``until`` returns, then stop it."""
    hook = _risk_webhook.webhook_of(room.app)
    assert hook is not None
    hook.backoff_s, hook.poll_s = 0.02, 0.02
    for k, v in kw.items():
        setattr(hook, k, v)
    stop = asyncio.Event()
    task = asyncio.create_task(hook.run(stop))
    try:
        await asyncio.to_thread(until)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    return hook


async def test_the_webhook_retries_a_failing_receiver_and_resumes_after_a_restart(
    tmp_path: Path,
) -> None:
    rms = Receiver(SECRET.encode(), fail=2)
    room = hooked_room(tmp_path, rms.url)
    try:
        db = room.sql()
        scans = [add_scan(db, ref, C3, gd_number="KAPE-HC-77") for ref in (1, 2, 3)]
        for s in scans:
            add_verdict(room.target, s["ref"], "yellow")
        hook = await _deliver(room, lambda: rms.wait_for(3), batch=2)
        assert rms.refused == 2  # the first batch failed twice, then went through
        assert [e["ref"] for e in rms.events] == [1, 2, 3]
        assert [len(p["events"]) for p in rms.posts] == [2, 1]
        state = db.one("SELECT * FROM risk_webhook WHERE name = 'default'")
        assert state is not None and state["attempts"] == 0 and "503" in state["error"]
        assert state["delivered"] == rms.events[-1]["cursor"] == hook.delivered()
    finally:
        close_room(room)
    # while the control room is down, officers decide (another control room)
    room = open_room(tmp_path, risk=None)
    try:
        other = deciders(room)
        for s in scans:
            decide(other, s, "officer", "green")
    finally:
        close_room(room)
    # restarted: the webhook goes on from the cursor the CIR kept
    room = hooked_room(tmp_path, rms.url)
    try:
        await _deliver(room, lambda: rms.wait_for(6))
        ids = [e["id"] for e in rms.events]
        assert len(ids) == len(set(ids)) == 6
        assert [e["type"] for e in rms.events[3:]] == ["decision"] * 3
        cursors = [e["cursor"] for e in rms.events]
        assert cursors == sorted(cursors)
        polled, _ = poll_all(room)
        assert polled == rms.events  # the webhook and polling say the same, alike
    finally:
        close_room(room)
        rms.close()


async def test_a_webhook_secret_must_be_long_enough(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    room = hooked_room(tmp_path, "http://127.0.0.1:9/x")
    try:
        (tmp_path / "keys" / "risk-webhook.secret").write_text("short\n")
        with pytest.raises(ConfigError, match="5 characters"):
            _risk_webhook.webhook_of(room.app)
    finally:
        close_room(room)


# -- schemathesis: every operation of the OpenAPI document, generated input, no 5xx ------------


def test_schemathesis_finds_no_server_error_in_any_operation(room: Room) -> None:
    import schemathesis
    from hypothesis import HealthCheck, assume, given, settings
    from schemathesis import GenerationMode
    from schemathesis.core.result import Ok
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    # something for the lookups and the events to find
    assert room.submit(gd(containers=[{"number": C1}, {"number": C2}])).status_code == 200
    scan = add_scan(room.sql(), 1, C1, gd_number="KAPE-HC-1234")
    add_verdict(room.target, 1, "red")
    decide(deciders(room), scan, "officer", "red")
    schema = schemathesis.openapi.from_asgi(API + "/openapi.json", make_app(room.app, follow=False))
    loaded = list(schema.get_all_operations())
    operations = [op.ok() for op in loaded if isinstance(op, Ok)]
    assert len(operations) == len(loaded)
    # every operation but the document itself (schemathesis leaves that one out)
    assert {op.label for op in operations} == {
        f"POST {API}/gds",
        f"GET {API}/gds/{{gd_number}}",
        f"GET {API}/events",
        f"GET {API}/scans",
    }
    statuses: dict[str, set[int]] = {}

    def fuzz(
        op: Any, strategy: Any, examples: int, mode: Any = GenerationMode.POSITIVE, **checks: Any
    ) -> None:
        @given(case=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            # a negative case whose only fault is a query parameter given as an empty
            # list is sent without it: a valid request, rightly answered 200
            assume(not any(v == [] for v in (case.query or {}).values()))
            # the case's headers with the valid token, unless its fault is having none
            headers = room.auth if "Authorization" in (case.headers or {}) else {}
            if mode == GenerationMode.POSITIVE:
                headers = room.auth
            resp = case.call_and_validate(headers=headers, **checks)
            statuses.setdefault(op.label, set()).add(resp.status_code)

        run()

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # every check but "schema-valid data is accepted": a GD may fit the JSON Schema
            # and still be refused (400) by rules a schema cannot say: the ISO 6346 check
            # digit, HS chapters that exist, weights that add up
            fuzz(op, op.as_strategy(generation_mode=mode), 20, mode,
                 excluded_checks=[positive_data_acceptance])  # fmt: skip
    # and each operation with what it finds, every check on (its answers fit the schema)
    known: dict[str, dict[str, Any]] = {
        f"POST {API}/gds": {"body": {"declarations": [gd("KAPE-HC-2"), gd(version=2)]}},
        f"GET {API}/gds/{{gd_number}}": {"path_parameters": {"gd_number": "KAPE-HC-1234"}},
        f"GET {API}/events": {"query": {"after": 0}},
        f"GET {API}/scans": {"query": {"container": C1}},
    }
    for op in operations:
        fuzz(op, op.as_strategy(**known[op.label]), 3)
    assert all(code < 500 for codes in statuses.values() for code in codes), statuses
    assert all({200, 400} <= codes for codes in statuses.values()), statuses


# -- PostgreSQL: the outbox's ids in commit order ----------------------------------------------


def test_on_postgresql_an_event_committed_later_never_gets_an_earlier_cursor(
    pg_database: str, tmp_path: Path
) -> None:
    """Two writers: the first holds its transaction open; the second's event must not be
    seen (and passed by a poller's cursor) before the first's, which commits first."""
    from central._sql import migrate
    from central.atr._store import verdict_statement

    atr, room2, reader = Sql(pg_database), Sql(pg_database), Sql(pg_database)
    try:
        migrate(atr)
        other = Decisions(room2, ServiceSignKey.load_or_make(tmp_path / "k"))
        scan = {"ref": 2, "scanner": "scanner1", "scan_id": 2, "container": C1, "gd_number": None}
        done = threading.Event()

        def second() -> None:
            decide(other, scan, "officer", "green")
            done.set()

        with atr.transaction():
            sql, args = verdict_statement(
                {"ref": 1, "scanner": "scanner1", "verdict": "red", "findings": []}
            )
            atr.execute(sql + " DO NOTHING", args)
            t = threading.Thread(target=second)
            t.start()
            # the decision either waits for the outbox's lock or (were there none) is in
            _wait_until(
                lambda: (
                    done.is_set()
                    or reader.value(
                        "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' "
                        "AND NOT granted"
                    )
                ),
                "the decision to be written or to wait",
            )
            # a poll now must not show the decision: its cursor would pass the verdict's
            assert events_of(reader) == [] and not done.is_set()
        t.join(10)
        assert done.is_set()
        got = events_of(reader)
        assert [e["type"] for e in got] == ["atr.verdict", "decision"]
        assert got[0]["cursor"] < got[1]["cursor"]
    finally:
        for db in (atr, room2, reader):
            db.close()


def events_of(db: Sql) -> list[dict[str, Any]]:
    return _risk.events_after(db, 0, 100)[0]


def _wait_until(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_the_control_room_opens_centrals_cir_and_makes_none(tmp_path: Path) -> None:
    """A state_dir mistyped, or a CIR file cut to nothing, is said to be: the control
    room never fills it with a new, empty CIR that would read as "no scans yet"."""
    cfg = ControlRoomConfig.load(write_config(tmp_path))
    with pytest.raises(ConfigError, match="there is no CIR in"):
        build(cfg)
    assert not cfg.central.state_dir.exists()
    cfg.central.state_dir.mkdir()
    (cfg.central.state_dir / "cir.sqlite").write_bytes(b"")
    with pytest.raises(ConfigError, match="is empty \\(0 bytes\\)"):
        build(cfg)
    with pytest.raises(ConfigError, match="is empty \\(0 bytes\\)"):
        Cir(cfg.central.state_dir)  # nor does central make one anew in it
    assert (cfg.central.state_dir / "cir.sqlite").stat().st_size == 0
