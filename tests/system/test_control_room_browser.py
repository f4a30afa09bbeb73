"""The control room in a real browser (Debian's Chromium driven by Playwright): log in,
watch a scan fill in live, see the ATR's boxes, mark a region and issue a mandate, and an
officer who cannot reach another site's scan, neither on the page nor by its image URL.
Screenshots go to the test's folder and are checked as images."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.system._cluster import wait_until
from tests.system._control_room import PASSWORD, ControlRoom, running_room

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
    # scanner1 scans slowly (a scan fills in over about 4 s); scanner2 is another site's.
    # Seed 64 hides something in each of scanner1's scans (a double floor, a false wall,
    # a dense block), so the ATR has findings to draw
    yield from running_room(
        tmp_path_factory.mktemp("control-room-browser"),
        "--source", "physics", "--scan-lines", "1200", "--scans", "3", "--interval", "2",
        "--line-rate", "300", "--seed", "64",
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
        return int(rows[0][0]) if rows and rows[0][1] < 600 else 0

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
