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
    verdict = {"verdict": "green", "findings": [], "container_frame": frame}
    # not complete, or no container found: no projection (never into the air)
    assert always.place({**SCAN, "status": "scanning"}, verdict, a_hi, a_lo, 5.0, 3.0) is None
    lost = {**verdict, "container_frame": {"found": False}}
    assert always.place(SCAN, lost, a_hi, a_lo, 5.0, 3.0) is None
    proj = always.place(SCAN, verdict, a_hi, a_lo, 5.0, 3.0)
    assert proj is not None
    c0, r0, c1, r1 = proj.box_px
    assert 100 < c0 < c1 < 1100 and 0 <= r0 < r1 < 650
    assert always.place(SCAN, verdict, a_hi, a_lo, 5.0, 3.0).box_px == proj.box_px  # type: ignore[union-attr]
    assert db.value("SELECT COUNT(*) FROM tip") == 1
    # the pixels: added inside the box only
    hi2, _ = proj.add_to(a_hi, a_lo, 0)
    inside = hi2[c0:c1, r0:r1] - a_hi[c0:c1, r0:r1]
    assert inside.max() > 0.5 and np.array_equal(hi2[:c0], a_hi[:c0])
    # what the user is shown: the projection's findings merged, the level raised
    shown = display_verdict(verdict, proj)
    if proj.findings:
        assert len(shown["findings"]) == len(proj.findings)
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
    again = always.score(proj, "olga", "officer", [])  # one score per user and scan
    assert again["hit"] is True
    assert always.shown_to(7, "olga", decides=True) is None
    rows = db.rows("SELECT name, hit FROM tip_scores ORDER BY id")
    assert [(r["name"], r["hit"]) for r in rows] == [("olga", 1), ("ana", 0)]
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
