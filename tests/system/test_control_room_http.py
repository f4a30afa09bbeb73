"""The control room over HTTP, against real processes: simulators → edge → central → CIR,
and ``nii control-room serve`` reading it. Who may see and decide what is checked on the
server for every request; bad and malicious requests get a clean 4xx and change nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from central.control_room._decisions import canonical
from tests.system._cluster import Cluster, wait_until
from tests.system._control_room import PASSWORD, SITES, ControlRoom, running_room

pytestmark = pytest.mark.system


class Rms:
    """The Risk Management System's webhook receiver: a real HTTP server on loopback."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        rms = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                rms.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, object]]:
        return [e for _, body in self.posts for e in json.loads(body)["events"]]


WEBHOOK_SECRET = "a shared secret of the RMS and the control room, 32+"


@pytest.fixture(scope="module")
def rms() -> Iterator[Rms]:
    r = Rms()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory, rms: Rms) -> Iterator[ControlRoom]:
    base = tmp_path_factory.mktemp("control-room-http")
    (base / "risk-webhook.secret").write_text(WEBHOOK_SECRET + "\n")
    risk = (
        f'\n[risk_system]\ntokens = "risk-tokens"\n'
        f'webhook = "http://127.0.0.1:{rms.port}/nii/events"\n'
        'webhook_secret = "risk-webhook.secret"\n'
    )
    yield from running_room(
        base,
        "--source", "physics", "--scan-lines", "600", "--scans", "2", "--interval", "0.3",
        "--line-rate", "1500", "--seed", "48", sites=SITES + risk,
    )  # fmt: skip


def _complete(cluster: Cluster, scanner: str, nth: int = 0) -> int:
    """The ref of ``scanner``'s ``nth`` complete scan (0 while there is none)."""
    rows = cluster.sql(
        "SELECT ref FROM scans WHERE scanner = ? AND status = 'complete' ORDER BY ref", scanner
    )
    return int(rows[nth][0]) if len(rows) > nth else 0


def test_officers_see_their_site_decide_with_marks_and_everything_is_audited(
    room: ControlRoom,
) -> None:
    c = room.cluster
    ref1 = wait_until(lambda: _complete(c, "scanner1"), 60, "a complete scan of scanner1")
    ref2 = wait_until(lambda: _complete(c, "scanner2"), 60, "a complete scan of scanner2")
    anon = room.client()
    assert anon.get("/api/queue").status_code == 401
    page = anon.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    bad = anon.post("/login", data={"name": "olga", "password": "wrong password!"})
    assert bad.headers["location"] == "/login?failed=1"
    # login CSRF: a login form posted from another site's page is refused
    login = {"name": "olga", "password": PASSWORD}
    foreign = anon.post("/login", data=login, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "nii_session" not in foreign.cookies
    hidden = anon.post(
        "/login", data=login, headers={"Origin": "null", "Sec-Fetch-Site": "cross-site"}
    )
    assert hidden.status_code == 403 and "nii_session" not in hidden.cookies
    same = anon.post("/login", data=login, headers={"Origin": room.url})
    assert same.status_code == 303 and same.headers["location"] == "/", same.text

    olga = room.client("olga")
    queue = olga.get("/api/queue").json()["scans"]
    assert queue and {s["scanner"] for s in queue} == {"scanner1"}
    assert all(s["site"] == "port-a" for s in queue)
    # another site's scan: not on the page, not by its URL, not its pixels
    assert olga.get(f"/api/scans/{ref2}").status_code == 404
    assert olga.get(f"/api/scans/{ref2}/strip?start=0").status_code == 404
    assert olga.get("/api/scans/999999").status_code == 404

    doc = olga.get(f"/api/scans/{ref1}").json()
    pic = doc["picture"]
    assert pic["lines"] == 600 and pic["channels"] > 0 and pic["calibrated"]
    assert pic["pixel_mm_from"] == "scan-start record"
    strip = olga.get(f"/api/scans/{ref1}/strip", params={"start": 0, "stop": 600})
    assert strip.status_code == 200 and strip.headers["x-columns"] == "0-600"
    img = cv2.imdecode(np.frombuffer(strip.content, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (pic["channels"], 600, 3)
    assert img.std() > 10, "the image is blank"
    assert olga.get(f"/api/scans/{ref1}/strip?start=600").status_code == 204
    for view in ("grey", "hipen", "edge"):
        assert olga.get(f"/api/scans/{ref1}/strip?start=0&stop=50&view={view}").status_code == 200

    # a decision: CSRF checked, a Red mandate cites a marked region, the record is signed
    no_csrf = olga.post(
        f"/api/scans/{ref1}/decisions", json={"verdict": "green"},
        headers={"X-CSRF-Token": ""},
    )  # fmt: skip
    assert no_csrf.status_code == 403
    red = olga.post(f"/api/scans/{ref1}/decisions", json={"verdict": "red", "reason": "x"})
    assert red.status_code == 409 and "mark" in red.json()["error"]
    mark = {"box_px": [100, 10, 180, 60], "category": "narcotics", "note": "dense block"}
    made = olga.post(
        f"/api/scans/{ref1}/decisions",
        json={"verdict": "red", "reason": "dense block behind the doors", "marks": [mark]},
    )
    assert made.status_code == 201, made.text
    d = made.json()
    assert d["kind"] == "local" and d["doc"]["mandate"] and d["doc"]["image_block"]
    pub = json.loads((c.base / "keys" / "control-room.sign.pub").read_text())
    assert pub["key_id"] == d["key_id"]
    Ed25519PublicKey.from_public_bytes(base64.b64decode(pub["sign_public"])).verify(
        base64.b64decode(d["signature"]), canonical(d["doc"])
    )
    # the officer may not decide on another site's scan; the auditor may not decide at all
    assert olga.post(f"/api/scans/{ref2}/decisions", json={"verdict": "green"}).status_code == 404
    aud = room.client("aud")
    assert aud.post(f"/api/scans/{ref1}/decisions", json={"verdict": "green"}).status_code == 403
    # the regional supervisor overrides; the officer can no longer change it
    sven = room.client("sven")
    over = sven.post(
        f"/api/scans/{ref1}/decisions",
        json={"verdict": "yellow", "reason": "send to assessment", "corrects": d["id"]},
    )
    assert over.status_code == 201 and over.json()["kind"] == "override", over.text
    again = olga.post(f"/api/scans/{ref1}/decisions", json={"verdict": "green"})
    assert again.status_code == 409 and "supervisor" in again.json()["error"]
    assert sven.get(f"/api/scans/{ref2}").status_code == 404  # another region
    history = olga.get(f"/api/scans/{ref1}").json()["decisions"]
    assert [h["kind"] for h in history] == ["local", "override"]
    assert history[1]["corrects"] == history[0]["id"]

    # the audit log: the views and the decisions, searchable by the auditor only
    assert olga.get("/api/audit").status_code == 403
    assert room.client("ana").get("/api/audit").status_code == 403
    log = aud.get("/api/audit", params={"ref": ref1}).json()["entries"]
    actions = {(e["name"], e["action"]) for e in log}
    assert {("olga", "view"), ("olga", "decision"), ("sven", "decision")} <= actions
    # the attempts on another site's scan answered 404, and the auditor sees them
    probes = aud.get("/api/audit", params={"ref": ref2, "action": "refused"}).json()["entries"]
    assert {e["name"] for e in probes} == {"olga", "sven"}, probes
    # an officer cannot pose as having another site's scan open
    oscar = room.client("oscar")
    with oscar.stream("GET", f"/api/events?viewing={ref1}") as stream:
        next(stream.iter_bytes())
        assert "oscar" not in olga.get(f"/api/scans/{ref1}").json()["viewers"]
    fails = aud.get("/api/audit", params={"action": "login_failed"}).json()["entries"]
    assert fails and "wrong password!" not in json.dumps(fails)

    # the same from a terminal: the stored ATR verdict and the decisions
    r = c.nii("cir", "verdict", "--config", str(c.central_toml), str(ref1))
    assert r.returncode == 0, r.stderr
    assert f"(ref {ref1})" in r.stdout and "ATR " in r.stdout, r.stdout
    assert "RED (Physical Examination Mandate) local by olga" in r.stdout, r.stdout
    assert "YELLOW override by sven (supervisor)" in r.stdout, r.stdout
    r = c.nii("cir", "verdict", "--config", str(c.central_toml), "99999")
    assert r.returncode == 2 and "no scan with ref 99999" in r.stderr
    # and the scan as the 16-bit TIFFs 'nii atr analyze' reads, with its GD
    r = c.nii("cir", "export", "--config", str(c.central_toml), str(ref1), "--tiff",
              "--out", "tiff1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    analyze = r.stdout.splitlines()[-1].removeprefix("analyse it: nii ").split()
    assert (c.base / "tiff1" / "gd.json").exists()
    r = c.nii(*analyze)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdict"] in ("green", "yellow", "red")


def test_bad_and_malicious_requests_get_a_clean_4xx_and_change_nothing(room: ControlRoom) -> None:
    c = room.cluster
    # the second scan: the other test decides on the first
    ref1 = wait_until(lambda: _complete(c, "scanner1", 1), 60, "a second scan of scanner1")
    olga = room.client("olga")
    url = f"/api/scans/{ref1}/decisions"
    cases = [
        olga.post(url, content=b"{not json", headers={"Content-Type": "application/json"}),
        olga.post(url, json={"verdict": "purple"}),
        olga.post(url, json={"verdict": "green", "reason": 5}),
        olga.post(url, json={"verdict": "green", "extra": 1}),
        olga.post(
            url,
            json={
                "verdict": "red",
                "marks": [{"box_px": [0, 0, 10**9, 5], "category": "narcotics"}],
            },
        ),
        olga.post(
            url,
            json={"verdict": "red", "marks": [{"box_px": [5, 5, 1, 1], "category": "narcotics"}]},
        ),
        olga.post(
            url,
            json={
                "verdict": "red",
                "marks": [{"box_px": [0, 0, 5, 5], "category": "'; DROP TABLE x;--"}],
            },
        ),
        olga.post(url, json={"verdict": "green", "corrects": 424242}),
        # PostgreSQL's text holds no NUL, and a signed decision must read the same anywhere
        olga.post(url, json={"verdict": "green", "reason": "a\u0000b"}),
        olga.post(url, json={"verdict": "green", "reason": "ok\u202eevil"}),  # reorders text
        olga.post(
            url,
            json={
                "verdict": "red",
                "marks": [{"box_px": [1, 1, 9, 9], "category": "weapon", "note": "x\u001by"}],
            },
        ),
        olga.get("/api/audit?name=%00"),
        olga.post(url, content=b"x" * 200_000, headers={"Content-Type": "application/json"}),
        olga.get(f"/api/scans/{ref1}/strip?start=-1"),
        olga.get(f"/api/scans/{ref1}/strip?start=abc"),
        olga.get(f"/api/scans/{ref1}/strip?start=0&view=../../etc/passwd"),
        olga.get(f"/api/scans/{ref1}/strip?start=0&w0=nan"),
        olga.get(f"/api/scans/{ref1}/strip?start=0&w0=5&w1=1"),
        olga.get("/api/scans/1%20OR%201=1"),
        olga.get("/api/scans/%C2%B2"),  # a superscript two: a digit to Python, not a ref
        olga.get("/api/scans/%D9%A1"),  # an Arabic-Indic one
        olga.post("/api/scans/%C2%B2/decisions", json={"verdict": "green"}),
        olga.get(f"/api/scans/{ref1}/strip?start=10&stop=5"),
        olga.get("/api/scans/-1"),
        olga.get("/api/scans/99999999999999999999999"),
        olga.get("/static/../_app.py"),
        olga.get("/static/%2e%2e/_app.py"),
        olga.get("/api/queue?limit=100000"),
        # the ATT endpoints: a scan that is no exit scan, a Scan A named by a bad pair
        olga.get(f"/api/scans/{ref1}/att"),
        olga.get(f"/api/scans/{ref1}/att/difference"),
        olga.get(f"/api/scans/{ref1}/strip?start=0&att=abc"),
        olga.get(f"/api/scans/{ref1}/strip?start=0&att=-7"),
        olga.get("/att/../../etc/passwd"),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text[:300])
        assert "Traceback" not in r.text
    assert olga.get(f"/api/scans/{ref1}").json()["decisions"] == []
    # two officers decide on the same undecided scan at once: the second is refused, so a
    # mandate is never replaced by someone who did not see it
    olga2 = room.client("olga")
    mark = {"box_px": [10, 10, 50, 50], "category": "weapon"}
    first = olga.post(url, json={"verdict": "red", "marks": [mark], "corrects": None})
    second = olga2.post(url, json={"verdict": "green", "corrects": None})
    assert first.status_code == 201 and second.status_code == 409, second.text
    assert "decided meanwhile" in second.json()["error"]
    assert [d["verdict"] for d in olga.get(f"/api/scans/{ref1}").json()["decisions"]] == ["red"]
    # another user's session token, a forged cookie, and a logged-out session
    forged = room.client()
    forged.cookies.set("nii_session", "forged-token")
    assert forged.get("/api/queue").status_code == 401
    out = room.client("olga")
    assert out.post("/logout").status_code == 200
    assert out.get("/api/queue").status_code == 401
    assert room.proc is not None and room.proc.poll() is None


def test_the_risk_system_sends_gds_and_hears_of_every_decision(room: ControlRoom, rms: Rms) -> None:
    """Runs after the tests above: their decisions reach the RMS, polled and pushed."""
    from core.iso6346 import check_digit

    c = room.cluster
    made = subprocess.run(
        [sys.executable, "-P", "-m", "nii", "risk", "token", "add", "rms-test",
         "--config", str(room.toml)],
        cwd=c.base, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.split()[0]
    api = room.client()
    api.headers["Authorization"] = f"Bearer {token}"
    ref = wait_until(lambda: _complete(c, "scanner1"), 60, "a complete scan of scanner1")
    gd_number = c.sql("SELECT gd_number FROM scans WHERE ref = ?", ref)[0][0]
    assert gd_number
    box = "MSKU000042" + str(check_digit("MSKU000042"))
    gd = {
        "gd_number": gd_number, "version": 1, "terminal": "port-a",
        "declarant": {"name": "A trader", "id": "1234567-8"},
        "containers": [{"number": box, "size_type": "20GP"}],
        "items": [{"hs_code": "6907.21", "description": "ceramic tiles",
                   "gross_weight_kg": 12000}],
        "selection": {"tier": "targeted", "channel": "red", "criteria": ["route"]},
        "att": False,
    }  # fmt: skip
    r = api.post("/api/risk/v1/gds", json={"declarations": [gd]})
    assert r.status_code in (200, 201), r.text
    assert api.post("/api/risk/v1/gds", json={"declarations": [{**gd, "x": 1}]}).status_code == 400
    assert room.client().get("/api/risk/v1/events").status_code == 401  # no token
    # the officer sees the RMS's selection beside the GD
    sel = room.client("olga").get(f"/api/scans/{ref}").json()["selection"]
    assert sel and sel["channel"] == "red" and sel["gd_number"] == gd_number, sel
    # every decision so far, polled from the start, each once
    decided = {int(i) for (i,) in c.sql("SELECT id FROM decisions")}
    assert decided, "the tests before this one decided nothing"
    polled: list[dict[str, object]] = []
    cursor = 0
    while True:
        page = api.get(f"/api/risk/v1/events?after={cursor}&limit=50").json()
        polled += page["events"]
        cursor = page["cursor"]
        if not page["more"]:
            break
    ids = [e["id"] for e in polled]
    assert len(ids) == len(set(ids))
    kinds = {str(e["type"]) for e in polled}
    assert {"atr.verdict", "decision"} <= kinds, kinds
    # and pushed to the webhook, signed with the shared secret, in order
    wait_until(
        lambda: {e["id"] for e in rms.events() if e["type"] == "decision"}
        >= {e["id"] for e in polled if e["type"] == "decision"},
        30, "the decisions at the RMS's webhook",
    )  # fmt: skip
    for headers, body in rms.posts:
        want = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-nii-signature"], want)
    pushed = [int(str(e["cursor"])) for e in rms.events()]
    assert pushed == sorted(pushed)


def _until_session_ends(chunks: Iterator[bytes], deadline_s: float) -> bytes:
    """Read an open event stream until the server says its session ended (or it closes)."""
    got = b""
    end = time.monotonic() + deadline_s
    for chunk in chunks:
        got += chunk
        if b"event: session" in got or time.monotonic() > end:
            break
    return got


def test_an_open_live_feed_ends_with_its_session(room: ControlRoom) -> None:
    """The event stream is checked against its session while open: a user logged out
    (elsewhere), or disabled by an administrator, gets no more of the live feed."""
    oscar = room.client("oscar")
    with oscar.stream("GET", "/api/events") as stream:
        assert stream.status_code == 200
        chunks = stream.iter_bytes()
        next(chunks)
        assert oscar.post("/logout").status_code in (200, 204, 303)
        t0 = time.monotonic()
        got = _until_session_ends(chunks, 20)
        assert b'event: session\ndata: {"ended": true}' in got, got[-500:]
        assert time.monotonic() - t0 < 10
    # an administrator disables a user: the stream that user has open ends too
    again = room.client("oscar")
    with again.stream("GET", "/api/events") as stream:
        chunks = stream.iter_bytes()
        next(chunks)
        r = room.cluster.nii("users", "disable", "oscar", "--config", str(room.toml))
        assert r.returncode == 0, r.stderr
        got = _until_session_ends(chunks, 20)
        assert b"event: session" in got, got[-500:]
    assert room.client().get("/api/events").status_code == 401


def test_a_stop_with_live_feeds_open_ends_them_at_once_and_cleanly(room: ControlRoom) -> None:
    """SIGTERM while pages follow the live feed: the streams are ended first, so the
    server stops at once, with no cancelled task's traceback in its log. (The module's
    last test: the control room is stopped.)"""
    olga = room.client("olga")
    assert room.proc is not None
    with olga.stream("GET", "/api/events") as stream:
        chunks = stream.iter_bytes()
        next(chunks)
        t0 = time.monotonic()
        room.proc.send_signal(signal.SIGTERM)
        # uvicorn raises the signal again once it has shut down
        assert room.proc.wait(15) in (0, -signal.SIGTERM)
        took = time.monotonic() - t0
    log = (room.cluster.logs / "control-room.log").read_text(errors="replace")
    # uvicorn logs it when an open stream held the stop for its whole 3 s graceful
    # timeout; the time itself only has to show no hang (a loaded machine exits slowly)
    assert "Traceback" not in log and "graceful shutdown exceeded" not in log, log[-3000:]
    assert took < 10, took
