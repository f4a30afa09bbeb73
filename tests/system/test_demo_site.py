"""The demo starts a private Mosquitto on a free loopback port that takes MQTT clients."""

from __future__ import annotations

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
