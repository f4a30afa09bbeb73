"""``nii bench control-room``: how fast the browser shows what the CIR commits.

Runs, as separate processes on real sockets: ``nii central`` (embedded CIR),
one ``nii sim`` serving N scanners (replayed images), edges, and ``nii
control-room serve``; a real browser (Debian's Chromium, driven by Playwright)
logs in and keeps the viewer on the scan being scanned by scanner1.

* **commit to pixels**: for every block of the viewed scan, the time from its
  ``committed_ns`` in the CIR to the moment the browser had drawn its columns on
  the canvas (the viewer records each draw and the server names the blocks each
  strip shows first, ``X-Commits``); p50 and p99 with 4 and with 40 scanners
  streaming (``commit_to_pixels_*``).
* **viewer ready**: from the navigation to a finished 40 ft scan (3000 lines) until
  its whole image is drawn (``viewer_ready_ms``, median of 5 loads).
* **tiles**: 256-column PNG strips of a finished scan per second, 4 clients over
  HTTP (``tiles_per_s``), against the same server's static-file rate in the same
  run as the ceiling (``tiles_ratio_to_static``).

Targets (issue 16): ``commit_to_pixels_p99_ms`` ≤ 1000 at 4 scanners,
``commit_to_pixels_p99_ms_40`` ≤ 2000 at 40, ``viewer_ready_ms`` ≤ 1500.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from central import Cir
from core.errors import ConfigError
from core.keys import CirKey, EdgeKey
from core.net import free_port

CHROMIUM = "/usr/bin/chromium"
USER, PASSWORD = "bench", "bench-password"
SCAN_LINES = 3000  # a 40 ft container


def register(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "control-room", help="commit-to-pixels latency, viewer load time, tile rate"
    )
    p.add_argument("--scanners", type=int, default=4, help="scanners of the first run (4)")
    p.add_argument("--many", type=int, default=40, help="scanners of the second run (40)")
    p.add_argument("--seconds", type=float, default=20.0, help="viewing time of each run")
    p.add_argument("--channels", type=int, default=1024)
    p.add_argument("--quick", action="store_true", help="small sizes (a test)")
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not Path(CHROMIUM).exists():
        raise ConfigError(
            f"{CHROMIUM} is missing: the benchmark measures in a real browser",
            fix="apt-get install chromium",
        )
    try:
        import playwright  # noqa: F401
    except ImportError:
        raise ConfigError(
            "Playwright is not installed", fix="install the development extras: make venv"
        ) from None
    if args.scanners < 1 or args.many < 1 or not 0 < args.seconds < 3600:
        raise ConfigError("--scanners, --many and --seconds must be positive",
                          fix="e.g. nii bench control-room --scanners 4 --many 40")  # fmt: skip
    q = args.quick
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="nii-bench-cr-"))
    try:
        few = _run(work / "few", args.scanners if not q else 2, 6.0 if q else args.seconds,
                   args.channels if not q else 256, detail=True)  # fmt: skip
        many = _run(work / "many", args.many if not q else 4, 6.0 if q else args.seconds,
                    args.channels if not q else 256, detail=False)  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)
    res = {
        "commit_to_pixels_p50_ms": few["p50_ms"],
        "commit_to_pixels_p99_ms": few["p99_ms"],
        "commit_to_pixels_p50_ms_40": many["p50_ms"],
        "commit_to_pixels_p99_ms_40": many["p99_ms"],
        "viewer_ready_ms": few["viewer_ready_ms"],
        "tiles_per_s": few["tiles_per_s"],
        "static_per_s": few["static_per_s"],
        "tiles_ratio_to_static": few["tiles_ratio_to_static"],
        "runs": {"few": few, "many": many},
        "targets": {
            "commit_to_pixels_p99_ms": 1000,
            "commit_to_pixels_p99_ms_40": 2000,
            "viewer_ready_ms": 1500,
        },
    }
    res["met"] = {k: (res[k] is not None and res[k] <= v) for k, v in res["targets"].items()}
    res["machine"] = f"{platform.machine()} {os.cpu_count()} cpu"
    res["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(res))
    return 0


def _nii(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "nii", *args]


def _wait(cond: Any, deadline_s: float, what: str, poll_s: float = 0.1) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(poll_s)
    raise RuntimeError(f"timed out waiting for {what}")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))], 1)


def _run(work: Path, scanners: int, seconds: float, channels: int, *,
         detail: bool) -> dict[str, Any]:  # fmt: skip
    """One cluster of ``scanners``; the viewer follows scanner1's scans for ``seconds``."""
    print(f"control room with {scanners} scanners …", file=sys.stderr, flush=True)
    work.mkdir(parents=True)
    keys = work / "keys"
    CirKey.generate().save(keys)
    listen, feed, http = free_port(), free_port(), free_port()
    (work / "central.toml").write_text(
        f'[central]\nlisten = "tcp://127.0.0.1:{listen}"\nfeed = "tcp://127.0.0.1:{feed}"\n'
        'state_dir = "cir"\nkey = "keys/cir.key"\npreview_hz = 10\natr = false\n'
    )
    n_edges = 1 if scanners <= 8 else 2
    edge_ids = [f"edge-{i}" for i in range(n_edges)]
    cir = Cir(work / "cir")
    for eid in edge_ids:
        k = EdgeKey.generate(eid)
        k.save(keys)
        cir.enroll(k.public)
    cir.close()
    (work / "control-room.toml").write_text(
        f'[control_room]\nlisten = "127.0.0.1:{http}"\ncentral = "central.toml"\n'
        'signing_key = "keys/control-room.sign"\n\n[[site]]\nname = "bench"\n'
        'region = "bench"\nscanners = ["scanner1"]\n'
    )
    r = subprocess.run(
        _nii("users", "add", USER, "--role", "analyst", "--config",
             str(work / "control-room.toml"), "--password-stdin"),
        input=PASSWORD + "\n", capture_output=True, text=True, cwd=work, timeout=60,
    )  # fmt: skip
    if r.returncode:
        raise RuntimeError(f"nii users add failed: {r.stderr}")
    procs: list[subprocess.Popen[bytes]] = []
    logs = work / "logs"
    logs.mkdir()

    def start(name: str, *a: str) -> subprocess.Popen[bytes]:
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        p = subprocess.Popen(_nii(*a), stdout=out, stderr=subprocess.STDOUT, cwd=work)
        procs.append(p)
        return p

    status = work / "sim" / "status.json"
    try:
        start("central", "central", "--config", "central.toml", "--log-level", "WARNING")
        start("sim", "sim", "--scanners", str(scanners), "--channels", str(channels),
              "--line-rate", "500", "--scan-lines", str(SCAN_LINES), "--interval", "0.5",
              "--replay", "2", "--buffer", "4", "--serial-dir", str(work / "sim"),
              "--status-file", str(status))  # fmt: skip
        _wait(status.exists, 120, "the simulators")
        st = json.loads(status.read_text())
        for i, eid in enumerate(edge_ids):
            lines = ["[edge]", f'id = "{eid}"', f'key = "keys/{eid}.key"',
                     'cir_public = "keys/cir.pub"', f'central = "tcp://127.0.0.1:{listen}"',
                     f'state_dir = "spool-{eid}"', ""]  # fmt: skip
            for s in st["scanners"][i::n_edges]:
                lines += ["[[scanner]]", f'id = "{s["name"]}"', f'serial = "{s["serial"]}"',
                          f'data = "{s["data_host"]}:{s["data_port"]}"', ""]  # fmt: skip
            (work / f"{eid}.toml").write_text("\n".join(lines))
            start(eid, "edge", "--config", f"{eid}.toml", "--log-level", "WARNING")
        start("control-room", "control-room", "serve", "--config", "control-room.toml")
        return _browse(work, f"http://127.0.0.1:{http}", seconds, detail)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _scans(work: Path, status: str) -> list[dict[str, Any]]:
    cir = Cir(work / "cir")
    try:
        return [s for s in cir.recent_scans(["scanner1"], 10) if s["status"] == status]
    finally:
        cir.close()


def _browse(work: Path, url: str, seconds: float, detail: bool) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    _wait(lambda: _up(url), 60, "the control room")
    latencies: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(url + "/login")
            page.fill("#name", USER)
            page.fill("#password", PASSWORD)
            page.click("#submit")
            page.wait_for_url(url + "/")
            end = time.monotonic() + seconds
            viewed: set[int] = set()
            while time.monotonic() < end:
                open_ = [s for s in _scans(work, "scanning") if s["ref"] not in viewed]
                if not open_:
                    time.sleep(0.1)
                    continue
                ref = int(open_[0]["ref"])
                viewed.add(ref)
                page.goto(f"{url}/scan/{ref}")
                _wait(lambda: page.evaluate("window.niiViewer && window.niiViewer.info"),
                      30, "the viewer")  # fmt: skip
                # follow this scan until it is drawn whole (or the time is up)
                while time.monotonic() < end + 15:
                    done = page.evaluate(
                        "window.niiViewer.info.status !== 'scanning' && "
                        "window.niiViewer.columns >= window.niiViewer.info.lines"
                    )
                    if done:
                        break
                    time.sleep(0.2)
                draws = page.evaluate("window.niiViewer.draws")
                first = True
                for d in draws:
                    for _, ns in d["commits"]:
                        if first:  # the page load's first strip holds what came before it
                            continue
                        latencies.append(d["t"] - ns / 1e6)
                    first = False
            res: dict[str, Any] = {
                "scans_viewed": len(viewed),
                "blocks": len(latencies),
                "p50_ms": _pct(latencies, 0.5),
                "p99_ms": _pct(latencies, 0.99),
                "max_ms": _pct(latencies, 1.0),
            }
            if detail:
                done = _wait(lambda: _scans(work, "complete"), 60, "a finished scan")
                ref = int(done[0]["ref"])
                ready = []
                for _ in range(5):
                    t0 = time.monotonic()
                    page.goto(f"{url}/scan/{ref}")
                    _wait(lambda: page.evaluate(
                        "window.niiViewer && window.niiViewer.info && "
                        "window.niiViewer.columns >= window.niiViewer.info.lines"), 30,
                        "the whole scan drawn", poll_s=0.01)  # fmt: skip
                    ready.append((time.monotonic() - t0) * 1000)
                res["viewer_ready_ms"] = round(statistics.median(ready), 1)
                cookies = {c["name"]: c["value"] for c in page.context.cookies()}
                lines = int(page.evaluate("window.niiViewer.info.lines"))
                res["tiles_per_s"] = _rate(url, cookies, f"/api/scans/{ref}/strip", lines)
                res["static_per_s"] = _rate(url, cookies, "/static/app.css", 0)
                res["tiles_ratio_to_static"] = round(res["tiles_per_s"] / res["static_per_s"], 3)
        finally:
            browser.close()
    return res


def _up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/login", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _rate(url: str, cookies: dict[str, str], path: str, lines: int,
          clients: int = 4, seconds: float = 5.0) -> float:  # fmt: skip
    """Requests per second of ``path`` (strips of 256 columns when ``lines``) from
    ``clients`` threads for ``seconds``."""
    import httpx

    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(i: int) -> None:
        with httpx.Client(base_url=url, cookies=cookies, timeout=30) as c:
            n = 0
            while time.monotonic() < stop:
                if lines:
                    s = (n * 256 + i * 512) % max(1, lines - 256)
                    r = c.get(path, params={"start": s, "stop": s + 256})
                else:
                    r = c.get(path)
                r.raise_for_status()
                n += 1
            counts[i] = n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return round(sum(counts) / seconds, 1)
