"""The statistics page (``static/stats.js``) in a real browser, its API answered by the
test (Playwright's request routing: no control room, no CIR): under an error only the
error is shown, never empty tables."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.control_room._app import STATIC

CHROMIUM = "/usr/bin/chromium"
ORIGIN = "http://control-room.test"

EMPTY = {
    "since": "2026-11-01T00:00:00+05:00",
    "until": "2026-11-02T00:00:00+05:00",
    "since_ns": 0,
    "until_ns": 0,
    "period": "day",
    "tz": "Asia/Karachi",
    "site": None,
    "sites": ["port-a"],
    "verdicts": [],
    "hits": {
        "sites": [],
        "total": dict.fromkeys(("scans", "decided", "mandates"), 0)
        | dict.fromkeys(("hit_rate", "mandates_per_scan")),
        "note": "a note",
    },
    "agreement": {"atr": [], "final": [], "matrix": [], "compared": 0},
    "decision_times": [],
    "tip": {"analysts": [], "total": {"projected": 0, "hits": 0, "rate": None}},
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield b
        finally:
            b.close()


def _open(browser: Any, role: str, status: int, doc: dict[str, Any]) -> Any:
    """The statistics page for a user of ``role``, ``/api/stats`` answering ``doc``."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    def answer(route: Any) -> None:
        path = route.request.url.removeprefix(ORIGIN).split("?")[0]
        if path.startswith("/static/"):
            f = STATIC / path.removeprefix("/static/")
            kind = "text/javascript" if f.suffix == ".js" else "text/css"
            route.fulfill(status=200, body=f.read_bytes(), content_type=kind)
        elif path == "/stats":
            body = (STATIC / "stats.html").read_bytes()
            route.fulfill(status=200, body=body, content_type="text/html")
        elif path == "/api/me":
            me = {"name": "olga", "role": role, "csrf": "x"}
            route.fulfill(status=200, body=json.dumps(me), content_type="application/json")
        elif path == "/api/stats":
            route.fulfill(status=status, body=json.dumps(doc), content_type="application/json")
        else:
            route.fulfill(status=404, body="")

    page.route("**/*", answer)
    page.goto(ORIGIN + "/stats")
    page.wait_for_function("document.getElementById('error').hidden === false "
                           "|| window.niiStats.data !== null")  # fmt: skip
    assert errors == [], errors
    return page


def _shown(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => ({
            error: !document.getElementById("error").hidden,
            form: !document.getElementById("filters").hidden,
            range: !document.getElementById("range").hidden,
            sections: [...document.querySelectorAll("main section")]
                .map((s) => s.offsetParent !== null),
        })"""
        )
    )


def test_an_officer_sees_only_the_403_line(browser: Any) -> None:
    no = "statistics are for the central RIAC; the queue shows your sites' scans"
    page = _open(browser, "officer", 403, {"error": no})
    shown = _shown(page)
    assert page.text_content("#error") == no
    assert shown["error"] and not shown["form"] and not shown["range"]
    assert shown["sections"] and not any(shown["sections"]), shown
    page.close()


def test_a_bad_range_shows_its_error_and_the_form_but_no_tables(browser: Any) -> None:
    says = "until must be from 1970-01-01 to 2261-12-31 (the CIR's time range)"
    page = _open(browser, "analyst", 400, {"error": says})
    shown = _shown(page)
    assert page.text_content("#error") == says
    assert shown["error"] and shown["form"] and not shown["range"]
    assert not any(shown["sections"]), shown
    page.close()


def test_figures_are_shown_when_the_statistics_come(browser: Any) -> None:
    page = _open(browser, "analyst", 200, EMPTY)
    shown = _shown(page)
    assert not shown["error"] and shown["form"] and shown["range"]
    assert all(shown["sections"]) and len(shown["sections"]) == 6, shown
    page.close()
