"""The control room's ATT HOLD rule, Threat Image Projection and a demo's "what was planted"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from central._sql import Sql, migrate
from central.control_room._decisions import DecisionRefused, Decisions
from central.control_room._planted import Planted
from central.control_room._tip import HIT_COVER, Tip, display_verdict, load_secret
from core.errors import ConfigError
from core.keys import ServiceSignKey

SCAN = {"ref": 7, "scanner": "exit1", "scan_id": 3, "container": "MSKU0000002",
        "gd_number": "GD1", "status": "complete"}  # fmt: skip
HOLD = {"ref_a": 2, "ref_b": 7, "hold": True, "status": "Contravening Unit: HOLD",
        "reason": "density: integrated attenuation changed by 4.3 %"}  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> Any:
    d = Sql(tmp_path / "cir.sqlite")
    migrate(d)
    yield d
    d.close()


def _decide(dec: Decisions, role: str, verdict: str, reason: str = "", corrects: Any = None,
            marks: Any = ()) -> dict[str, Any]:  # fmt: skip
    return dec.decide(
        scan=SCAN, name=f"a-{role}", role=role, verdict=verdict, reason=reason,
        marks=list(marks), pixel_mm=(5.0, 3.0), atr_verdict="green", image_block="ab",
        corrects=corrects, hold=HOLD,
    )  # fmt: skip


def test_a_hold_is_released_only_by_an_analyst_with_a_reason(db: Sql, tmp_path: Path) -> None:
    dec = Decisions(db, ServiceSignKey.load_or_make(tmp_path / "k.sign"))
    for role in ("officer", "supervisor"):
        with pytest.raises(DecisionRefused, match=r"on HOLD.*only a central RIAC analyst"):
            _decide(dec, role, "green", "looks fine to me")
        with pytest.raises(DecisionRefused, match="on HOLD"):
            _decide(dec, role, "yellow", "documents")
    assert db.value("SELECT COUNT(*) FROM decisions") == 0
    # an examination may be ordered by the officer while the HOLD stands
    mark = {"box_px": [1, 1, 9, 9], "category": "undeclared goods"}
    red = _decide(dec, "officer", "red", "examine", marks=[mark])
    assert red["kind"] == "local" and red["doc"]["hold"]["held"] is True
    with pytest.raises(DecisionRefused, match="gives its reason"):
        _decide(dec, "analyst", "green", "ok", corrects=red["id"])
    done = _decide(dec, "analyst", "green", "seal checked by hand; dunnage", corrects=red["id"])
    assert done["kind"] == "release" and done["doc"]["hold"]["held"] is True
    # released: the next analyst decision is an ordinary adjudication
    again = _decide(dec, "analyst", "yellow", "documents", corrects=done["id"])
    assert again["kind"] == "adjudication" and again["doc"]["hold"]["held"] is False


def _scan_arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    hi = (0.4 + 0.02 * rng.standard_normal((1200, 700))).astype(np.float32)
    return hi, (hi / 0.9).astype(np.float32)


def test_tip_chooses_places_once_and_scores(db: Sql, tmp_path: Path) -> None:
    secret = load_secret(tmp_path / "keys" / "room.sign.tip")
    assert load_secret(tmp_path / "keys" / "room.sign.tip") == secret  # kept, not remade
    assert (tmp_path / "keys" / "room.sign.tip").stat().st_mode & 0o777 == 0o600
    never = Tip(db, secret, lambda scanner: 0.0)
    always = Tip(db, secret, lambda scanner: 1.0 if scanner == "exit1" else 0.0)
    assert not never.chosen(7, "exit1") and always.chosen(7, "exit1")
    assert not always.chosen(7, "other")
    half = Tip(db, secret, lambda scanner: 0.5)
    share = np.mean([half.chosen(r, "x") for r in range(2000)])
    assert 0.45 < share < 0.55, share  # the HMAC spreads the choice evenly

    a_hi, a_lo = _scan_arrays()
    frame = {"found": True, "front_px": 100, "back_px": 1100, "floor_px": 650}
    # placed as the scan starts, from where the scanner's last container lay; without
    # one, none (never into the air)
    start = {**SCAN, "status": "scanning"}
    assert always.place(start, None, 700, 5.0, 3.0) is None
    assert always.place(start, {"found": False}, 700, 5.0, 3.0) is None
    proj = always.place(start, frame, 700, 5.0, 3.0)
    assert proj is not None and not proj.judged
    c0, r0, c1, r1 = proj.box_px
    assert 100 + 250 <= c0 < c1 <= 1100 - 250  # the middle half of the container
    assert 650 - 10 <= r1 < 650  # resting on the floor
    assert always.place(start, frame, 700, 5.0, 3.0).box_px == proj.box_px  # type: ignore[union-attr]
    assert db.value("SELECT COUNT(*) FROM tip") == 1
    # the pixels: added inside the box only
    a_hi[:c0, :5] = 14.0  # beyond the scanner's range: a projection never touches it
    hi2, _ = proj.add_to(a_hi, a_lo, 0)
    inside = hi2[c0:c1, r0:r1] - a_hi[c0:c1, r0:r1]
    assert inside.max() > 0.5 and np.array_equal(hi2[:c0], a_hi[:c0])
    outside = np.ones(hi2.shape, bool)
    outside[c0:c1, r0:r1] = False
    assert np.array_equal(hi2[outside], a_hi[outside])
    # once the verdict is in, what the ATR says of it, merged in the ATR's own order
    verdict = {"verdict": "yellow", "findings": [
        {"level": "yellow", "score": 0.7, "bbox_px": [5, 5, 9, 9]}]}  # fmt: skip
    always.judge(proj, SCAN, verdict, a_hi, a_lo)
    assert proj.judged
    proj.findings = [{"level": "red", "score": 1.2, "bbox_px": [c0, r0, c1, r1]}]
    shown = display_verdict(verdict, proj)
    assert [f["level"] for f in shown["findings"]] == ["red", "yellow"]
    assert shown["verdict"] == "red" and verdict["verdict"] == "yellow"
    assert display_verdict(verdict, None) is verdict
    # scoring: a mark over the box is a hit, shown to nobody afterwards
    assert always.shown_to(7, "olga", decides=True) is not None
    assert always.shown_to(7, "aud", decides=False) is None
    w, h = c1 - c0, r1 - r0
    small = [c0, r0, c0 + max(1, int(w * 0.3)), r0 + max(1, int(h * 0.3))]
    assert proj.covered_by(small) < HIT_COVER
    hit = always.score(proj, "olga", "officer", [[c0 - 2, r0 - 2, c1 + 2, r1 + 2]])
    assert hit["hit"] is True and hit["signature"] == proj.signature
    miss = always.score(proj, "ana", "analyst", [small])
    assert miss["hit"] is False
    # a mark over the whole image covers it but finds nothing
    huge = always.score(proj, "sven", "supervisor", [[0, 0, 1200, 700]])
    assert huge["hit"] is False and "far larger" in huge["detail"]
    again = always.score(proj, "olga", "officer", [])  # one score per user and scan
    assert again["hit"] is True
    assert always.shown_to(7, "olga", decides=True) is None
    rows = db.rows("SELECT name, hit FROM tip_scores ORDER BY id")
    assert [(r["name"], r["hit"]) for r in rows] == [("olga", 1), ("ana", 0), ("sven", 0)]
    for sql in ("UPDATE tip_scores SET hit = 1", "DELETE FROM tip", "UPDATE tip SET ref = 9"):
        with pytest.raises(Exception, match=r"kept as placed|append-only"):
            db.execute(sql)


def test_a_bad_tip_secret_is_one_error(tmp_path: Path) -> None:
    bad = tmp_path / "room.sign.tip"
    bad.write_text("not hex\n")
    with pytest.raises(ConfigError, match="not 64 hexadecimal digits"):
        load_secret(bad)


def test_planted_follows_the_truth_log(tmp_path: Path) -> None:
    log = tmp_path / "truth.jsonl"
    p = Planted(log)
    assert p.of("scanner1", 1, "MSKU1") is None  # no log yet
    first = {"scanner": "scanner1", "scan_id": 1, "container": "MSKU1", "objects": []}
    log.write_text(json.dumps(first) + "\nnot json\n" + '{"scanner": "scanner1", "sc')
    assert p.of("scanner1", 1, "MSKU1") == first
    with open(log, "a") as f:  # the half-written line is read once whole
        f.write('an_id": 2, "container": "MSKU2", "objects": [1]}\n')
        # a restarted simulator counts from 1 again, with another container
        f.write(json.dumps({**first, "container": "MSKU9", "objects": [2]}) + "\n")
    assert p.of("scanner1", 2, "MSKU2") == {
        "scanner": "scanner1", "scan_id": 2, "container": "MSKU2", "objects": [1]}  # fmt: skip
    assert p.of("scanner1", 1, "MSKU9")["objects"] == [2]  # type: ignore[index]
    assert p.of("scanner1", 1, "MSKU1") == first
    assert p.of("scanner1", 1, "OTHER") is None


def test_a_cir_that_cannot_be_written_is_503_not_a_bug() -> None:
    import asyncio
    import errno
    import sqlite3

    from starlette.requests import Request

    from central.control_room._app import _server_error

    req = Request({"type": "http", "method": "POST", "path": "/api/scans/1/decisions",
                   "headers": [], "query_string": b""})  # fmt: skip
    for exc in (
        sqlite3.OperationalError("database or disk is full"),
        sqlite3.OperationalError("database is locked"),
        OSError(errno.ENOSPC, "No space left on device"),
    ):
        resp = asyncio.run(_server_error(req, exc))
        assert resp.status_code == 503 and resp.headers["retry-after"] == "30"
        assert b"nothing was recorded" in resp.body and b"Traceback" not in resp.body
    bug = asyncio.run(_server_error(req, KeyError("x")))
    assert bug.status_code == 500 and b"KeyError" not in bug.body


def test_a_failing_cir_is_answered_on_a_connection_that_stays_usable() -> None:
    import asyncio
    import sqlite3

    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Route

    from central.control_room._app import exception_handlers

    async def full(request: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")

    app = Starlette(routes=[Route("/x", full)], exception_handlers=exception_handlers())

    async def ask() -> httpx.Response:
        # raise_app_exceptions: an exception that escaped to the server (which logs a
        # traceback and drops the connection) would be raised here
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/x")

    r = asyncio.run(ask())
    assert r.status_code == 503 and "nothing was recorded" in r.json()["error"]


def test_release_waits_for_the_whole_scan_and_a_change_gives_its_reason(
    db: Sql, tmp_path: Path
) -> None:
    dec = Decisions(db, ServiceSignKey.load_or_make(tmp_path / "k.sign"))
    live = {**SCAN, "status": "scanning"}

    def decide(scan: dict[str, Any], name: str, verdict: str, reason: str = "",
               corrects: Any = None, marks: Any = ()) -> dict[str, Any]:  # fmt: skip
        return dec.decide(
            scan=scan, name=name, role="officer", verdict=verdict, reason=reason,
            marks=list(marks), pixel_mm=(5.0, 3.0), atr_verdict="none", image_block="",
            corrects=corrects,
        )  # fmt: skip

    for verdict in ("green", "yellow"):
        with pytest.raises(DecisionRefused, match="still being scanned"):
            decide(live, "olga", verdict)
    mark = {"box_px": [1, 1, 9, 9], "category": "weapon"}
    red = decide(live, "olga", "red", "a pistol in the first metre", marks=[mark])
    # another officer turning the mandate green: only with a reason
    with pytest.raises(DecisionRefused, match="gives its reason"):
        decide(SCAN, "otto", "green", "  ", corrects=red["id"])
    own = decide(SCAN, "olga", "yellow", corrects=red["id"])  # one's own: no reason needed
    assert decide(SCAN, "otto", "green", "examined: toys", corrects=own["id"])["kind"] == "local"


def test_a_late_projection_goes_only_where_nothing_was_shown(db: Sql, tmp_path: Path) -> None:
    tip = Tip(db, load_secret(tmp_path / "t.tip"), lambda scanner: 1.0)
    frame = {"found": True, "front_px": 100, "back_px": 1100, "floor_px": 650}
    start = {**SCAN, "status": "scanning"}
    # every line up to the container's end already read: too late for this scan
    assert tip.place(start, frame, 700, 5.0, 3.0, drawn=1100) is None
    assert db.value("SELECT COUNT(*) FROM tip") == 0
    proj = tip.place(start, frame, 700, 5.0, 3.0, drawn=200)
    assert proj is not None and proj.box_px[0] >= 200 + 16


def test_a_dry_run_checks_everything_and_writes_nothing(db: Sql, tmp_path: Path) -> None:
    dec = Decisions(db, ServiceSignKey.load_or_make(tmp_path / "k.sign"))
    args: dict[str, Any] = dict(
        scan=SCAN, name="olga", role="officer", verdict="green", reason="", marks=[],
        pixel_mm=(5.0, 3.0), atr_verdict="none", image_block="",
    )  # fmt: skip
    with pytest.raises(DecisionRefused, match="decided meanwhile"):
        dec.decide(**args, corrects=999, dry_run=True)
    assert dec.decide(**args, dry_run=True) == {"kind": "local"}
    assert db.value("SELECT COUNT(*) FROM decisions") == 0
    first = dec.decide(**args)
    # a reason of invisible characters says nothing
    with pytest.raises(DecisionRefused, match="gives its reason"):
        dec.decide(**{**args, "name": "otto", "reason": "\u200b \u200b"}, corrects=first["id"])
