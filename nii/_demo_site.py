"""Site telemetry for ``nii demo``: a private MQTT broker, simulated sensors, a safety drill.

The demo must run on a laptop without a system broker. It starts, in this order
of preference:

1. **Mosquitto** (``/usr/sbin/mosquitto`` or ``mosquitto`` on ``PATH``) on a free
   loopback port with a generated config (``listener PORT 127.0.0.1``,
   ``allow_anonymous true``, ``persistence false``), the same way the system
   tests do;
2. else **amqtt**, an MQTT broker in pure Python (``pip install amqtt``; 0.12
   works on Python 3.11), when it is importable;
3. else nothing: the demo runs without site telemetry and says so, because an
   edge with interlocks configured and no broker would (rightly) never arm.

``NII_DEMO_BROKER=mosquitto|amqtt|none`` forces one choice (to try the others).

With a broker, ``nii site-sim`` publishes every scanner's interlocks and
dosimeter, the edge gets ``[edge.mqtt]`` and the sensor names, and a **drill**
opens ``door-a`` of scanner1 for a few seconds during the demo: the live feed
shows the ``safety_trip`` alarm, the aborted scan, and scanning resuming once
the door is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import NiiError
from core.net import free_port

#: Sensor names ``nii site-sim`` publishes for each scanner (firmware_sim.site defaults).
INTERLOCKS = ("plc", "door-a", "gate", "curtain-a", "estop-1")
DOSIMETERS = ("zone-a",)


@dataclass
class SiteBroker:
    """The demo's broker: its port (None when there is none), its process and a note."""

    port: int | None
    kind: str  # mosquitto | amqtt | none
    note: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def mosquitto_exe() -> str | None:
    """The Mosquitto broker binary, if installed."""
    if Path("/usr/sbin/mosquitto").exists():
        return "/usr/sbin/mosquitto"
    return shutil.which("mosquitto")


def _accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _wait_accepting(port: int, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    """Wait until the broker takes connections; a broker that fails is not left running."""
    try:
        _poll_accepting(port, proc, log, deadline_s)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise


def _poll_accepting(port: int, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while not _accepting(port):
        if proc.poll() is not None:
            raise NiiError(
                f"the demo's MQTT broker exited with status {proc.returncode}",
                fix=f"read {log}",
            )
        if time.monotonic() > end:
            raise NiiError(
                f"the demo's MQTT broker did not accept connections in {deadline_s:.0f} s",
                fix=f"read {log}",
            )
        time.sleep(0.05)


_AMQTT = """\
import asyncio, json, sys
from amqtt.broker import Broker

async def main() -> None:
    broker = Broker(json.loads(sys.argv[1]))
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    await broker.shutdown()

asyncio.run(main())
"""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM when the demo process dies, however it dies."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def detached() -> dict[str, Any]:
    """``Popen`` options for a demo process: its own session, so the terminal's Ctrl-C
    reaches only the demo, which then stops the parts in order (the edge first, while
    the scanners and the broker it watches still run); it ends with the demo too."""
    return {"start_new_session": True, "preexec_fn": _die_with_parent}


def start_broker(base: Path) -> SiteBroker:
    """Start Mosquitto, else amqtt, on a free loopback port; else return a broker-less note."""
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    want = os.environ.get("NII_DEMO_BROKER", "auto")
    if want not in ("auto", "mosquitto", "amqtt", "none"):
        raise NiiError(
            f"NII_DEMO_BROKER={want!r} is not a choice", fix="use mosquitto, amqtt or none"
        )
    exe = mosquitto_exe() if want in ("auto", "mosquitto") else None
    port = free_port()
    if want == "mosquitto" and exe is None:
        raise NiiError("Mosquitto is not installed", fix="apt-get install mosquitto")
    if exe is not None:
        conf = base / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        log = logs / "mosquitto.log"
        with open(log, "ab") as out:
            p = subprocess.Popen(
                [exe, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, **detached()
            )
        _wait_accepting(port, p, log, 10)
        return SiteBroker(port, "mosquitto", f"Mosquitto ({exe}) on 127.0.0.1:{port}", [p])
    amqtt = want in ("auto", "amqtt") and importlib.util.find_spec("amqtt") is not None
    if want == "amqtt" and not amqtt:
        raise NiiError("amqtt is not installed", fix="pip install 'amqtt>=0.12'")
    if amqtt:
        cfg = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
        }
        log = logs / "amqtt.log"
        with open(log, "ab") as out:
            p = subprocess.Popen(
                [sys.executable, "-P", "-W", "ignore", "-c", _AMQTT, json.dumps(cfg)],
                stdout=out,
                stderr=subprocess.STDOUT,
                **detached(),
            )
        _wait_accepting(port, p, log, 20)
        return SiteBroker(port, "amqtt", f"amqtt (embedded, Python) on 127.0.0.1:{port}", [p])
    return SiteBroker(
        None,
        "none",
        "OFF: no MQTT broker here, so no interlocks or dosimeters and no safety chain "
        "(install Mosquitto: 'apt-get install mosquitto', or 'pip install amqtt')",
    )


def edge_mqtt_lines(port: int) -> list[str]:
    """The ``[edge.mqtt]`` table for the demo edge."""
    return ["[edge.mqtt]", f'broker = "127.0.0.1:{port}"', 'site = "site"', "settle_s = 0.2", ""]


def scanner_safety_lines() -> list[str]:
    """Per ``[[scanner]]``: the site sensors that must be safe before it may arm."""
    return [
        "interlocks = [" + ", ".join(f'"{n}"' for n in INTERLOCKS) + "]",
        "dosimeters = [" + ", ".join(f'"{n}"' for n in DOSIMETERS) + "]",
        "sensor_max_age_s = 3.0",
    ]


async def drill(port: int, *, at_s: float, hold_s: float, scanner: str = "scanner1") -> None:
    """Open ``door-a`` of ``scanner`` at ``at_s`` for ``hold_s`` seconds, over MQTT."""
    import aiomqtt

    topic = "nii/site/_sim/cmd"
    sensor = f"{scanner}/interlock/door-a"
    await asyncio.sleep(at_s)
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", port) as c:
            print(f"[drill] opening door-a of {scanner} for {hold_s:g} s", flush=True)
            await c.publish(topic, json.dumps({"sensor": sensor, "state": "open"}), qos=1)
            await asyncio.sleep(hold_s)
            await c.publish(topic, json.dumps({"sensor": sensor, "state": "closed"}), qos=1)
            print(f"[drill] door-a of {scanner} closed again", flush=True)


__all__ = [
    "DOSIMETERS",
    "INTERLOCKS",
    "SiteBroker",
    "drill",
    "edge_mqtt_lines",
    "mosquitto_exe",
    "scanner_safety_lines",
    "start_broker",
]
