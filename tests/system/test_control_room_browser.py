"""The control room in a real browser (Debian's Chromium driven by Playwright): log in,
watch a scan fill in live, see the ATR's boxes, mark a region and issue a mandate, and an
officer who cannot reach another site's scan, neither on the page nor by its image URL.
Screenshots go to the test's folder and are checked as images."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.system._cluster import wait_until
from tests.system._control_room import PASSWORD, SITES, ControlRoom, running_room

pytestmark = pytest.mark.system

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlRoom]:
    # scanner1 scans slowly (a scan fills in over about 4 s); scanner2 is another site's,
    # where every scan is shown with a projected threat (TIP). Seed 64 hides something in
    # each of scanner1's scans (a double floor, a false wall, a dense block), so the ATR
    # has findings to draw
    sites = SITES.replace('scanners = ["scanner2"]', 'scanners = ["scanner2"]\ntip_rate = 1.0')
    assert sites != SITES
    yield from running_room(
        tmp_path_factory.mktemp("control-room-browser"),
        "--source", "physics", "--scan-lines", "1200", "--scans", "3", "--interval", "2",
        "--line-rate", "300", "--seed", "64", sites=sites,
    )  # fmt: skip


def _login(page: Any, room: ControlRoom, name: str) -> None:
    page.goto(room.url + "/")
    assert page.url.endswith("/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(room.url + "/")


def _not_blank(png: Path, what: str) -> np.ndarray:
    img = cv2.imread(str(png))
    assert img is not None and img.std() > 10, f"{what} is blank"
    return img


def test_an_officer_watches_a_scan_fill_in_and_issues_a_mandate(
    room: ControlRoom, browser: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    c = room.cluster
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, room, "olga")
    page.wait_for_selector("#queue tbody tr.scan", timeout=30_000)
    page.screenshot(path=str(shots / "queue.png"))
    _not_blank(shots / "queue.png", "the queue page")

    # a scan of scanner1 still being scanned: its viewer fills in as lines are committed
    def open_scan() -> int:
        rows = c.sql(
            "SELECT ref, lines_received FROM scans WHERE scanner = 'scanner1' "
            "AND status = 'scanning' ORDER BY ref DESC"
        )
        # early: the page may take a second to load on a busy machine, and the scan
        # must still be filling in when it does (a run opened one at 600 lines and
        # saw it first at 997 of 1200)
        return int(rows[0][0]) if rows and rows[0][1] < 200 else 0

    ref = wait_until(open_scan, 60, "an open scan of scanner1 early in its lines")
    page.goto(f"{room.url}/scan/{ref}")
    seen: list[int] = []

    def filled() -> bool:
        n = int(page.evaluate("window.niiViewer ? window.niiViewer.columns : 0"))
        if not seen or n != seen[-1]:
            seen.append(n)
        return n >= 1200

    wait_until(filled, 60, "the viewer to show the whole scan", poll=0.1)
    assert len([n for n in seen if 0 < n < 1200]) >= 3, f"not filled in live: {seen}"
    # each block's commit time comes with the strip that first shows it (the benchmark's
    # commit-to-pixels time): drawn within seconds of its commit, never before it
    draws = page.evaluate("window.niiViewer.draws")
    lag = [d["t"] - ns / 1e6 for d in draws[1:] for _, ns in d["commits"]]
    assert lag and all(0 < x < 10_000 for x in lag), lag
    page.screenshot(path=str(shots / "viewer.png"))
    frame = page.locator("#frame")
    frame.screenshot(path=str(shots / "image.png"))
    img = _not_blank(shots / "image.png", "the image area")
    # the scan is drawn in the image area (not only the page around it)
    assert (img.mean(axis=2) < 200).mean() > 0.05, "the image area shows almost no scan"

    # the ATR's verdict arrives; its findings are drawn as boxes over the image
    wait_until(lambda: page.evaluate("!!(window.niiViewer.verdict)"), 30, "the ATR verdict")
    findings = page.evaluate("(window.niiViewer.verdict.findings || []).length")
    assert findings > 0, page.evaluate("window.niiViewer.verdict")
    if findings:
        page.locator("#showfindings").uncheck()
        frame.screenshot(path=str(shots / "no-boxes.png"))
        page.locator("#showfindings").check()
        frame.screenshot(path=str(shots / "boxes.png"))
        a = _not_blank(shots / "boxes.png", "the image with boxes").astype(int)
        b = _not_blank(shots / "no-boxes.png", "the image without boxes").astype(int)
        assert np.abs(a - b).sum(axis=2).astype(bool).sum() > 50, "no finding box drawn"

    # mark a region with the mouse, then a Red decision: a mandate citing it
    box = frame.bounding_box()
    x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3
    page.select_option("#category", "narcotics")
    page.fill("#marknote", "dense block")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 80, y + 60, steps=5)
    page.mouse.up()
    assert page.locator("#marks li").count() == 1
    page.fill("#reason", "dense block behind the doors")
    page.click("#red")
    page.wait_for_selector("#history .v-red", timeout=15_000)
    page.screenshot(path=str(shots / "mandate.png"))
    rows = c.sql("SELECT verdict, kind, name FROM decisions WHERE ref = ?", ref)
    assert rows == [("red", "local", "olga")], rows
    assert c.sql("SELECT COUNT(*) FROM annotations WHERE ref = ?", ref)[0][0] == 1

    # another site's scan: refused on the page and at its image URL, inside the browser
    other = wait_until(
        lambda: (c.sql("SELECT ref FROM scans WHERE scanner = 'scanner2'") or [(0,)])[0][0],
        60, "a scan of scanner2",
    )  # fmt: skip
    page.goto(f"{room.url}/scan/{other}")
    page.wait_for_selector("#error:not([hidden])", timeout=10_000)
    assert page.evaluate("window.niiViewer.columns") == 0
    resp = page.request.get(f"{room.url}/api/scans/{other}/strip?start=0")
    assert resp.status == 404
    assert not errors, errors
    if request.config.getoption("verbose") > 1:
        print(f"screenshots in {shots}")


def test_an_auditor_sees_no_decision_form(room: ControlRoom, browser: Any) -> None:
    c = room.cluster
    ref = wait_until(
        lambda: (c.sql("SELECT ref FROM scans WHERE scanner = 'scanner1'") or [(0,)])[0][0],
        60, "a scan of scanner1",
    )  # fmt: skip
    page = browser.new_page()
    _login(page, room, "aud")
    page.goto(f"{room.url}/scan/{ref}")
    wait_until(
        lambda: page.evaluate("!!(window.niiViewer && window.niiViewer.info)"), 30, "the viewer"
    )
    assert page.locator("#decideform").is_hidden()
    csrf = page.evaluate("fetch('/api/me').then(r => r.json()).then(d => d.csrf)")
    status = page.evaluate(
        """([ref, csrf]) => fetch(`/api/scans/${ref}/decisions`, {method: 'POST',
             headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
             body: JSON.stringify({verdict: 'green'})}).then(r => r.status)""",
        [ref, csrf],
    )
    assert status == 403
    assert shutil.which("chromium") or Path(CHROMIUM).exists()


def _png(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a PNG"
    return np.asarray(img, dtype=int)


def _screen(page: Any, box_px: list[int]) -> tuple[float, float, float, float]:
    """Where image pixels [col0, row0, col1, row1] are on the page, as x0, y0, x1, y1."""
    v = page.evaluate(
        "(({zoom, tx, ty, info}) => ({zoom, tx, ty, lx: info.line_mm, cy: info.channel_mm}))"
        "(window.niiViewer)"
    )
    f = page.locator("#frame").bounding_box()
    sx, sy = v["zoom"] * v["lx"], v["zoom"] * v["cy"]
    c0, r0, c1, r1 = box_px
    return (f["x"] + c0 * sx + v["tx"], f["y"] + r0 * sy + v["ty"],
            f["x"] + c1 * sx + v["tx"], f["y"] + r1 * sy + v["ty"])  # fmt: skip


def _open_whole(page: Any, room: ControlRoom, ref: int) -> None:
    page.goto(f"{room.url}/scan/{ref}")
    wait_until(
        lambda: page.evaluate(
            "!!(window.niiViewer && window.niiViewer.verdict && window.niiViewer.info && "
            "window.niiViewer.info.status === 'complete' && "
            "window.niiViewer.columns >= window.niiViewer.info.lines)"
        ),
        30, f"scan {ref} drawn whole with its verdict",
    )  # fmt: skip


def test_a_projected_threat_is_shown_marked_scored_and_never_a_mandate(
    room: ControlRoom, browser: Any, tmp_path: Path
) -> None:
    c = room.cluster

    def tipped() -> list[tuple[int, list[int], str]]:
        rows = c.sql(
            "SELECT t.ref, t.box_px, t.signature FROM tip t JOIN scans s ON s.ref = t.ref "
            "WHERE s.scanner = 'scanner2' ORDER BY t.ref"
        )
        return [(int(r), json.loads(b), str(sig)) for r, b, sig in rows] if len(rows) >= 2 else []

    (ref, box, signature), (ref2, _, _) = wait_until(
        tipped, 90, "two scans of scanner2 with a projection"
    )[:2]
    oscar, aud = room.client("oscar"), room.client("aud")
    # the one who decides sees the threat in the pixels from the first strip that holds
    # them, while the truck is still in the scanner; the auditor sees the evidence
    q = f"/api/scans/{ref}/strip?start={box[0]}&stop={box[2]}"
    first = wait_until(
        lambda: (r := oscar.get(q)).status_code == 200
        and int(r.headers["X-Columns"].split("-")[1]) >= box[2]
        and r,
        60, "the projection's columns drawn",
    )  # fmt: skip
    wait_until(lambda: oscar.get(f"/api/scans/{ref}").json()["verdict"], 60, "the verdict")
    shown, real = oscar.get(q), aud.get(q)
    # nothing changes when the scan is complete and judged (a change would tell)
    assert shown.content == first.content
    assert shown.status_code == real.status_code == 200
    a, b = (_png(r.content) for r in (shown, real))
    rows = slice(box[1], box[3])
    changed = np.abs(a[rows] - b[rows]).sum(axis=2) > 6
    assert changed.mean() > 0.2, "the projection is not in the image"
    # outside it (beyond the material map's 3 x 5 smoothing) the image is the scan's own
    above = slice(0, max(0, box[1] - 4))
    assert np.abs(a[above] - b[above]).max() == 0, "the image changed outside it"
    # nothing the officer's browser gets says which threat is projected
    seen = oscar.get(f"/api/scans/{ref}").text + oscar.get("/api/queue").text
    assert '"tip": null' in seen and "signature" not in seen

    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, room, "oscar")
    _open_whole(page, room, ref)
    x0, y0, x1, y1 = _screen(page, box)
    page.select_option("#category", "weapon")
    page.mouse.move(x0 - 4, y0 - 4)
    page.mouse.down()
    page.mouse.move(x1 + 4, y1 + 4, steps=5)
    page.mouse.up()
    page.fill("#reason", "an object shaped like a weapon")
    page.click("#red")
    page.wait_for_selector("#tipmessage:not([hidden])", timeout=15_000)
    assert "Threat Image Projection" in page.inner_text("#tipmessage")
    page.screenshot(path=str(tmp_path / "tip-found.png"))
    _not_blank(tmp_path / "tip-found.png", "the page after a TIP was found")
    # scored as found; no decision, no mandate, no annotation: nothing for a dataset export
    assert c.sql("SELECT name, hit, signature FROM tip_scores WHERE ref = ?", ref) == [
        ("oscar", 1, signature)
    ]
    assert c.sql("SELECT COUNT(*) FROM decisions WHERE ref = ?", ref) == [(0,)]
    assert c.sql("SELECT COUNT(*) FROM annotations WHERE ref = ?", ref) == [(0,)]
    # from now on the officer sees the real scan, and decides on it
    assert oscar.get(q).content == aud.get(q).content
    wait_until(lambda: page.evaluate("window.niiViewer.tip && window.niiViewer.tip.hit"), 10,
               "the revealed projection")  # fmt: skip
    # the revealed projection is never a mark: marking it again is refused
    on_it = {"verdict": "red", "reason": "x", "marks": [{"box_px": box, "category": "weapon"}]}
    again = oscar.post(f"/api/scans/{ref}/decisions", json=on_it)
    assert again.status_code == 409 and "Projection" in again.json()["error"], again.text
    page.fill("#reason", "nothing else in the load")
    page.click("#green")
    page.wait_for_selector("#history .v-green", timeout=15_000)
    assert c.sql("SELECT verdict, kind, name FROM decisions WHERE ref = ?", ref) == [
        ("green", "local", "oscar")
    ]
    # an analyst who releases the other projected scan without marking it missed it:
    # the decision on the real scan stands, the miss is scored
    ana = room.client("ana")
    # release waits for the whole image: the second scan may still be in the scanner
    wait_until(
        lambda: c.sql("SELECT status FROM scans WHERE ref = ? AND status != 'scanning'", ref2),
        90, "the second projected scan to end",
    )  # fmt: skip
    r = ana.post(f"/api/scans/{ref2}/decisions", json={"verdict": "green", "reason": "clean"})
    assert r.status_code == 201 and r.json()["tip"]["hit"] is False, r.text
    assert c.sql("SELECT name, hit FROM tip_scores WHERE ref = ?", ref2) == [("ana", 0)]
    assert not errors, errors


def test_a_supervisor_overrides_and_an_analyst_adjudicates(room: ControlRoom, browser: Any) -> None:
    c = room.cluster
    ref = wait_until(
        lambda: next((r for (r,) in c.sql(
            "SELECT ref FROM scans WHERE scanner = 'scanner1' AND status = 'complete' "
            "AND ref NOT IN (SELECT ref FROM decisions) ORDER BY ref")), 0),
        90, "an undecided complete scan of scanner1",
    )  # fmt: skip
    olga = room.client("olga")
    r = olga.post(f"/api/scans/{ref}/decisions", json={"verdict": "green", "reason": "ok"})
    assert r.status_code == 201, r.text
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    _login(page, room, "sven")
    _open_whole(page, room, ref)
    x0, y0, x1, y1 = _screen(page, [100, 100, 300, 300])
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    page.fill("#reason", "regional risk profile: examine")
    page.click("#red")
    wait_until(
        lambda: page.locator("#history > div").count() == 2, 15, "the override in the history"
    )
    assert "override by sven" in page.inner_text("#history")
    # the local officer cannot change it back; the central RIAC can
    last = r.json()["id"] + 1
    back = olga.post(f"/api/scans/{ref}/decisions", json={"verdict": "green", "corrects": last})
    assert back.status_code == 409 and "supervisor" in back.json()["error"], back.text
    ana = room.client("ana")
    body = {"verdict": "yellow", "reason": "documents first", "corrects": last}
    adj = ana.post(f"/api/scans/{ref}/decisions", json=body)
    assert adj.status_code == 201 and adj.json()["kind"] == "adjudication", adj.text
    sven = room.client("sven")
    again = sven.post(f"/api/scans/{ref}/decisions",
                      json={"verdict": "green", "corrects": adj.json()["id"]})  # fmt: skip
    assert again.status_code == 409
    assert [k for (k,) in c.sql("SELECT kind FROM decisions WHERE ref = ? ORDER BY id", ref)] == [
        "local", "override", "adjudication"
    ]  # fmt: skip


def test_an_expired_session_goes_back_to_the_login(room: ControlRoom, browser: Any) -> None:
    page = browser.new_page()
    _login(page, room, "olga")
    assert page.evaluate("fetch('/api/queue').then(r => r.status)") == 200
    con = sqlite3.connect(room.cluster.base / "cir" / "cir.sqlite", timeout=10)
    with con:  # the session's time is up (as 30 minutes without a request leave it)
        con.execute("UPDATE sessions SET expires_ns = 1 WHERE name = 'olga'")
    con.close()
    assert page.evaluate("fetch('/api/queue').then(r => r.status)") == 401
    # the open page goes back on its own: the feed says the session ended, or the
    # next poll is refused (a goto here would race that navigation and be aborted)
    page.wait_for_url(room.url + "/login", timeout=30_000)
    cookies = page.context.cookies()
    assert cookies, "the expired session's cookie is gone: nothing left to refuse"
    again = browser.new_page()  # the same cookie, opened afresh
    again.context.add_cookies(cookies)
    again.goto(room.url + "/")
    assert again.url.endswith("/login")


def test_the_scanner_board_and_the_statistics(
    room: ControlRoom, browser: Any, tmp_path: Path
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, room, "ana")
    page.click("#nav a[href='/board']")
    page.wait_for_url(room.url + "/board")

    def board() -> Any:
        return page.evaluate("window.niiBoard && window.niiBoard.data")

    def live() -> bool:
        data = board()
        return bool(data) and all(
            s["link"]["state"] == "live"
            and s["uptime"]
            and s["uptime"]["daily"][-1]["availability"]
            for s in data["scanners"]
        )

    wait_until(live, 30, "both scanners live on the board, with today's uptime")
    assert [s["scanner"] for s in board()["scanners"]] == ["scanner1", "scanner2"]
    # the edges' heartbeats reach the board through central's status: spool and links
    wait_until(
        lambda: all(s["spool"] and s["spool"]["depth"] is not None for s in board()["scanners"]),
        15, "the spool depths from the edges' heartbeats",
    )  # fmt: skip
    page.wait_for_timeout(200)  # the plots are drawn on the next animation frame
    page.screenshot(path=str(tmp_path / "board.png"))
    _not_blank(tmp_path / "board.png", "the board")
    canvas = page.locator("article.card[data-scanner='scanner1'] canvas.uptime")
    canvas.screenshot(path=str(tmp_path / "uptime.png"))
    shot = cv2.imread(str(tmp_path / "uptime.png"))
    assert shot is not None
    b, g, r = (shot[..., k].astype(int) for k in range(3))
    amber = (r > 200) & (g > 140) & (g < 210) & (b < 80)  # the 98 % line
    bars = ((g > 100) & (r < 80)) | ((r > 170) & (g < 80))  # green or red days
    assert amber.sum() > 20 and bars.sum() > 20, "the uptime plot is blank"
    # an officer's board has her site's scanner only
    other = browser.new_page()
    _login(other, room, "olga")
    other.goto(room.url + "/board")
    other.wait_for_selector("article.card")
    assert other.locator("article.card").evaluate_all("cs => cs.map(c => c.dataset.scanner)") == [
        "scanner1"
    ]
    assert other.locator("#nav a[href='/stats']").count() == 0
    # the statistics: the decisions the tests above made are counted
    page.click("#nav a[href='/stats']")
    wait_until(lambda: page.evaluate("!!(window.niiStats && window.niiStats.data)"), 15,
               "the statistics")  # fmt: skip
    stats = page.evaluate("window.niiStats.data")
    decided = room.cluster.sql("SELECT COUNT(DISTINCT ref) FROM decisions")[0][0]
    assert stats["hits"]["total"]["decided"] == decided and stats["hits"]["total"]["scans"] >= 1
    page.screenshot(path=str(tmp_path / "stats.png"), full_page=True)
    _not_blank(tmp_path / "stats.png", "the statistics")
    assert page.locator("#hits tbody tr").count() >= 2
    assert not errors, errors
