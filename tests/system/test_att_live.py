"""Live ATT pairing end to end: entry and exit simulators → one edge → central → ``atr.att``.

Every part is a real ``nii`` process.  Two physics simulators with the same
seed scan the same containers: the entry one first (its scanner configured
``att_role = "entry"`` on the edge), then the exit one (``att_role = "exit"``,
another detector, another belt speed), which tampers with scan 2's cargo,
breaks scan 3's seal and scans a fourth container the entry never saw.
Central must release scan 1, put scans 2 (the four factors) and 3 (the seal)
on HOLD with an ``att_hold`` alarm on the feed and in the CIR, report scan 4
unpaired, and ``nii control-room tail`` and ``nii cir att`` must show it.

Seed 61 (unit tests use 42-52, tuning 100, the benchmark 7000; docs/atr.md):
768 channels x 1000 lines, 20 ft containers, release and HOLD with room on
both sides of the limits.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import zmq

from firmware_sim.physics._cargo import container_number
from tests.system._cluster import Cluster, start_tail, wait_until
from tests.system._control_room import SITES

pytestmark = pytest.mark.system

SEED = "61"
COMMON = (
    "--source",
    "physics",
    "--channels",
    "768",
    "--scan-lines",
    "1000",
    "--line-rate",
    "2500",
    "--interval",
    "0.3",
    "--seed",
    SEED,
)


def _collect(
    sub: zmq.Socket[bytes],
    topics: dict[bytes, list[Any]],
    done: Callable[[], bool],
    timeout: float,
    what: str,
) -> None:
    """Collect feed events by topic until ``done()``; fail after ``timeout`` s."""
    end = time.monotonic() + timeout
    while not done():
        left = end - time.monotonic()
        if left <= 0:
            got = {t.decode(): len(v) for t, v in topics.items()}
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {got}")
        if sub.poll(int(min(left, 0.5) * 1000)):
            topic, body = sub.recv_multipart()[:2]
            if topic in topics:
                topics[topic].append(json.loads(body))


def test_exit_scans_are_paired_compared_and_held_live(cluster: Cluster) -> None:
    cluster.start_central()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for t in (b"atr.att", b"alarm"):
        sub.setsockopt(zmq.SUBSCRIBE, t)
    sub.connect(cluster.feed)
    tail, tail_log = start_tail(cluster)
    topics: dict[bytes, list[Any]] = {b"atr.att": [], b"alarm": []}
    try:
        entry = cluster.start_sim(*COMMON, "--scans", "3", scanners=1, name="sim-entry")
        exit_ = cluster.start_sim(
            *COMMON,
            "--scans",
            "4",
            "--att-exit",
            "--detector-seed",
            "2",
            "--belt-speed",
            "1.1",
            "--tamper",
            "addition",
            "--tamper-scans",
            "2",
            "--break-seal",
            "3",
            scanners=1,
            name="sim-exit",
        )
        gate_a = {**entry[0], "id": "entry1", "settings": {"att_role": '"entry"'}}
        gate_b = {**exit_[0], "id": "exit1", "settings": {"att_role": '"exit"', "arm": "false"}}
        cluster.write_edge_config([gate_a, gate_b])
        cluster.start_edge()
        # the trucks reach the exit after the entry: arm the exit scanner once the entry's
        # three scans are in the CIR
        wait_until(
            lambda: (
                len(
                    cluster.sql(
                        "SELECT ref FROM scans WHERE scanner = 'entry1' AND status = 'complete'"
                    )
                )
                == 3
            ),
            40,
            "three complete entry scans",
        )
        assert cluster.sql("SELECT COUNT(*) FROM scans WHERE scanner = 'exit1'") == [(0,)]
        cluster.kill("edge", signal.SIGTERM)
        gate_b["settings"] = {"att_role": '"exit"'}
        cluster.write_edge_config([gate_a, gate_b])
        cluster.start_edge()
        _collect(
            sub,
            topics,
            lambda: (
                len(topics[b"atr.att"]) >= 4
                and sum(a["kind"].startswith("att_") for a in topics[b"alarm"]) >= 3
            ),
            60,
            "4 ATT results and their 3 alarms on the feed",
        )
        # the tail heard them too (a moment after this test's own socket, maybe)
        wait_until(lambda: tail_log.read_text().count(" ATT ") >= 4, 10,
                   "the control room's tail to print the 4 ATT results")  # fmt: skip
        # the edge restarted at once after a clean stop: its new process took the streams
        # over without being taken for a second process of the edge
        assert not cluster.alarms("duplicate_edge"), cluster.alarms("duplicate_edge")
    finally:
        sub.close(linger=0)
        ctx.term()
        tail.terminate()
        tail.wait(timeout=10)
    printed = tail_log.read_text()

    by_scan = {d["scan_id_b"]: d for d in topics[b"atr.att"]}
    assert sorted(by_scan) == [1, 2, 3, 4], by_scan
    refs = dict(cluster.sql("SELECT scan_id, ref FROM scans WHERE scanner = 'entry1'"))
    for sid in (1, 2, 3):
        d = by_scan[sid]
        assert d["container"] == container_number(sid) and d["ref_a"] == refs[sid], d
        assert (d["scanner_a"], d["scan_id_a"], d["scanner_b"]) == ("entry1", sid, "exit1")
        assert d["latency_s"] < 5.0, d
    clean, tampered, broken, lone = (by_scan[i] for i in (1, 2, 3, 4))
    assert clean["result"] == "release" and not clean["hold"], clean
    assert clean["seal_a"] == clean["seal_b"] and clean["seal"]["ok"]
    assert all(f["ok"] for f in clean["factors"].values()) and clean["factors"]
    # another belt speed: B has a longer line pitch and its container starts further along
    assert clean["pixel_mm_b"][0] == pytest.approx(1.1 * clean["pixel_mm_a"][0], rel=1e-3)
    assert clean["registration"]["shift_mm"] < -500
    assert tampered["result"] == "hold" and tampered["hold"], tampered
    assert tampered["status"] == "Contravening Unit: HOLD"
    assert tampered["seal_a"] == tampered["seal_b"]
    assert any(not f["ok"] for f in tampered["factors"].values())
    assert tampered["differences"] and all(len(x["bbox_mm"]) == 4 for x in tampered["differences"])
    assert broken["result"] == "hold" and broken["seal_a"] != broken["seal_b"], broken
    assert broken["factors"] == {} and "seal changed" in broken["reason"]
    assert lone["result"] == "unpaired" and lone["ref_a"] is None and not lone["hold"]
    assert lone["reason"] == f"no Scan A for container {container_number(4)}"

    # the alarms name the container, the factors over their limits and where B differs
    holds = {a["details"]["ref_b"]: a for a in topics[b"alarm"] if a["kind"] == "att_hold"}
    alarm = holds[tampered["ref_b"]]
    assert alarm["scanner"] == "exit1" and container_number(2) in alarm["message"]
    assert set(alarm["details"]["factors_over"]) == {
        k for k, f in tampered["factors"].items() if not f["ok"]
    }
    assert alarm["details"]["differences_mm"][0]["bbox_mm"] == tampered["differences"][0]["bbox_mm"]
    assert "mm from the front wall" in alarm["message"]
    assert "seal changed" in holds[broken["ref_b"]]["message"]

    # stored in the CIR, with the alarms, before they were published
    rows = cluster.sql("SELECT ref_b, ref_a, result, hold, doc FROM att ORDER BY ref_b")
    assert [(r[2], r[3]) for r in rows] == [
        ("release", 0),
        ("hold", 1),
        ("hold", 1),
        ("unpaired", 0),
    ]
    for r in rows:
        assert json.loads(r[4]) == next(d for d in topics[b"atr.att"] if d["ref_b"] == r[0])
    kinds = [k for k, _, _ in cluster.alarms()]
    assert kinds.count("att_hold") == 2 and kinds.count("att_unpaired") == 1

    lines = [ln for ln in printed.splitlines() if " ATT " in ln]
    held = f"ATT *** HOLD *** container {container_number(2)}"
    assert sum(held in ln for ln in lines) == 1, printed
    assert any(f"ATT release container {container_number(1)}" in ln for ln in lines), printed
    assert any(f"ATT UNPAIRED container {container_number(4)}" in ln for ln in lines), printed

    listed = cluster.nii("cir", "att", "--config", str(cluster.central_toml), "--json")
    assert listed.returncode == 0, listed.stderr
    assert [d["ref_b"] for d in json.loads(listed.stdout)] == [row[0] for row in reversed(rows)]
    table = cluster.nii("cir", "att", "--config", str(cluster.central_toml))
    assert table.returncode == 0, table.stderr
    assert "HOLD" in table.stdout and container_number(4) in table.stdout, table.stdout

    _control_room_holds_and_releases(cluster, tampered["ref_b"], tampered["ref_a"])


# the control room's two sites, with the entry and exit gates as their scanners
ATT_SITES = SITES.replace('"scanner1"', '"entry1"').replace('"scanner2"', '"exit1"')


def _control_room_holds_and_releases(cluster: Cluster, ref_b: int, ref_a: int) -> None:
    """The control room of the two gates: the HOLD shown, refused to the exit's officer,
    the ATT view drawn, and the HOLD released by a central analyst with a reason."""
    import cv2
    import numpy as np
    from playwright.sync_api import sync_playwright

    from tests.system._control_room import PASSWORD, start_control_room

    room = start_control_room(cluster, ATT_SITES)
    try:
        oscar, ana = room.client("oscar"), room.client("ana")
        scan = oscar.get(f"/api/scans/{ref_b}").json()
        assert scan["att"]["held"] and scan["att"]["ref_a"] == ref_a, scan["att"]
        url = f"/api/scans/{ref_b}/decisions"
        r = oscar.post(url, json={"verdict": "green", "reason": "looks the same to me"})
        assert r.status_code == 409 and "HOLD" in r.json()["error"], r.text
        # Scan A is another site's: the exit's officer sees it only as this pair's Scan A
        assert oscar.get(f"/api/scans/{ref_a}/strip?start=0").status_code == 404
        assert oscar.get(f"/api/scans/{ref_a}/strip?start=0&att={ref_b}").status_code == 200
        assert oscar.get(f"/api/scans/{ref_a}/strip?start=0&att={ref_a}").status_code == 404
        diff = oscar.get(f"/api/scans/{ref_b}/att/difference")
        assert diff.status_code == 200, diff.text
        png = cv2.imdecode(np.frombuffer(diff.content, np.uint8), cv2.IMREAD_COLOR)
        assert png is not None, "the difference map is not a PNG"
        img = np.asarray(png, dtype=int)
        b, g, red = img[..., 0], img[..., 1], img[..., 2]
        assert ((red - g > 80) | (b - g > 80)).sum() > 100, "no change drawn in the map"
        short = ana.post(url, json={"verdict": "green", "reason": "ok"})
        assert short.status_code == 409 and "reason" in short.json()["error"], short.text

        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True,
                args=["--no-sandbox", "--disable-gpu"],
            )  # fmt: skip
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1100})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(room.url + "/login")
                page.fill("#name", "ana")
                page.fill("#password", PASSWORD)
                page.click("#submit")
                page.wait_for_url(room.url + "/")
                page.goto(f"{room.url}/att/{ref_b}")
                wait_until(lambda: page.evaluate("!!(window.niiAtt && window.niiAtt.ready)"),
                           30, "the ATT view drawn")  # fmt: skip
                assert page.inner_text("#status") == "Contravening Unit: HOLD"
                assert page.locator("#factors tbody tr.bad").count() >= 1
                shot = cluster.base / "att-view.png"
                page.screenshot(path=str(shot), full_page=True)
                for side in ("a", "b", "diff"):
                    page.locator(f"#{side}").screenshot(path=str(cluster.base / f"{side}.png"))
                    pic = cv2.imread(str(cluster.base / f"{side}.png"))
                    assert pic is not None and pic.std() > 10, f"canvas {side} is blank"
                page.fill("#releasereason", "seal verified by hand; the addition is dunnage")
                page.click("#releasebutton")
                wait_until(lambda: page.inner_text("#status").startswith("HOLD released"),
                           15, "the HOLD released")  # fmt: skip
                assert not errors, errors
            finally:
                browser.close()
        rows = cluster.sql("SELECT verdict, kind, name FROM decisions WHERE ref = ?", ref_b)
        assert rows == [("green", "release", "ana")], rows
        assert oscar.get(f"/api/scans/{ref_b}").json()["att"]["held"] is False
    finally:
        room.close()
