"""The demo starts a private Mosquitto on a free loopback port that takes MQTT clients."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nii._demo_site import mosquitto_exe, start_broker

pytestmark = pytest.mark.system


def test_demo_starts_its_own_mosquitto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if mosquitto_exe() is None:
        pytest.fail("mosquitto is not installed: 'apt-get install mosquitto' (.ci/run does)")
    monkeypatch.setenv("NII_DEMO_BROKER", "mosquitto")
    b = start_broker(tmp_path)
    try:
        assert b.kind == "mosquitto" and b.port is not None
        conf = (tmp_path / "mosquitto.conf").read_text()
        assert conf == f"listener {b.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        # a real MQTT round trip through it, retained
        probe = (
            "import asyncio, aiomqtt, sys\n"
            "async def main():\n"
            f"    async with aiomqtt.Client('127.0.0.1', {b.port}) as c:\n"
            "        await c.publish('nii/t', b'x', retain=True, qos=1)\n"
            f"    async with aiomqtt.Client('127.0.0.1', {b.port}) as c:\n"
            "        await c.subscribe('nii/t')\n"
            "        async with asyncio.timeout(5):\n"
            "            async for m in c.messages:\n"
            "                print(m.payload.decode(), m.retain); return\n"
            "asyncio.run(main())\n"
        )
        r = subprocess.run(
            [sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=20
        )
        assert r.stdout.strip() == "x True", r.stderr
    finally:
        for p in b.procs:
            p.terminate()
            p.wait(timeout=10)


def test_second_demo_in_one_folder_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    from core.locks import hold

    base = tmp_path / "demo"
    base.mkdir()
    (base / "central.toml").write_text("# the running demo's\n")
    with hold(base, "a demo", name="demo"):  # as the running demo holds it
        r = subprocess.run(
            [sys.executable, "-P", "-m", "nii", "demo", "--dir", str(base), "--seconds", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith(f"error: a demo already runs on {base}: process {os.getpid()}")
    assert "fix: " in r.stderr and "Traceback" not in r.stderr
    assert (base / "central.toml").read_text() == "# the running demo's\n"
    assert sorted(p.name for p in base.iterdir()) == ["central.toml", "demo.lock"]


def test_demo_banner_commands_run_as_printed() -> None:
    import shlex

    from nii._demo import nii_command

    cmd = nii_command()
    r = subprocess.run([*shlex.split(cmd), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("nii "), (cmd, r.stderr)


def test_ctrl_c_of_the_demo_leaves_a_clean_edge_log(tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the demo at once (one process group): the edge
    stops without ERROR lines, tracebacks or unretrieved exceptions in its log."""
    import signal

    from tests.system._cluster import wait_until

    base = tmp_path / "demo"
    out = tmp_path / "demo.out"
    with open(out, "wb") as f:
        p = subprocess.Popen(
            [sys.executable, "-P", "-m", "nii", "demo", "--dir", str(base)],
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's job
        )
    try:
        started = "SCAN STARTED  scanner"
        wait_until(lambda: out.read_text().count(started) >= 2, 90, "both scanners' scans")
        _demo_officer_sees_what_was_planted(out)
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert p.wait(timeout=60) == 0, out.read_text()[-3000:]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    edge = (base / "logs" / "edge.log").read_text()
    for bad in (" ERROR ", "Traceback", "never retrieved"):
        assert bad not in edge, edge[-4000:]
    assert "demo stopped" in out.read_text()


def _demo_officer_sees_what_was_planted(out: Path) -> None:
    """The banner's control room and officer account work, and a scan with its verdict
    comes with the simulator's truth, for a person to judge the ATR by."""
    import re

    import httpx

    from nii._demo import DEMO_USERS
    from tests.system._cluster import wait_until

    url = re.search(r"control room: +(http://\S+)", out.read_text())
    assert url, out.read_text()[-2000:]
    name = "officer"
    with httpx.Client(base_url=url.group(1).rstrip("/"), timeout=30) as c:
        r = c.post("/login", data={"name": name, "password": DEMO_USERS[name][1]})
        assert r.status_code == 303 and r.headers["location"] == "/", r.text

        def judged() -> dict[str, object] | None:
            for s in c.get("/api/queue").json()["scans"]:
                if s["atr"] and s["status"] == "complete":
                    doc: dict[str, object] = c.get(f"/api/scans/{s['ref']}").json()
                    return doc
            return None

        doc = wait_until(judged, 90, "a demo scan with its verdict")
    planted = doc["planted"]
    assert isinstance(planted, dict) and "concealment" in planted and "objects" in planted, doc
    assert isinstance(doc["verdict"], dict) and doc["verdict"].get("verdict"), doc["verdict"]
