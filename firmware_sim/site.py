"""Simulated site telemetry on MQTT: interlock PLC, doors, gates, curtains, e-stops, dosimeters.

At a scanner site these devices publish on the site's MQTT broker. Topics, one
per sensor, retained so a subscriber that (re)connects learns the whole state at
once::

    <prefix>/<site>/<scanner>/interlock/<name>  {"kind": "door", "state": "closed", "ts", "seq"}
    <prefix>/<site>/<scanner>/dose/<name>       {"usvh": 0.12, "ts", "seq"}

``kind`` is ``plc``, ``door``, ``gate``, ``curtain`` or ``estop``; the safe state
is ``closed`` (plc, door, gate), ``clear`` (curtain) or ``released`` (estop).
``ts`` is the publisher's wall clock (seconds), ``seq`` counts its publications.
Every sensor republishes its state every ``refresh_s`` (PLCs do, so a silent one
can be told from a quiet one).

Faults, to exercise the edge's safety logic: a **flapping** switch (toggles
every N seconds), a **stale** sensor (stops publishing; its last retained value
stays on the broker), and a **broker restart** (the publisher's reconnect loop
picks up again by itself and republishes everything).

The simulator obeys commands on ``<prefix>/<site>/_sim/cmd`` (JSON), so tests
and people can drive it from any MQTT client::

    {"sensor": "scanner1/interlock/door-a", "state": "open"}
    {"sensor": "scanner1/dose/zone-a", "usvh": 30.0}
    {"sensor": "scanner1/interlock/gate", "fault": "flap", "period_s": 0.5}
    {"sensor": "scanner1/interlock/plc", "fault": "stale"}
    {"sensor": "scanner1/interlock/plc", "fault": "none"}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from core.errors import ConfigError

log = logging.getLogger("nii.site_sim")

SAFE_STATES = {
    "plc": "closed",
    "door": "closed",
    "gate": "closed",
    "curtain": "clear",
    "estop": "released",
}
UNSAFE_STATES = {
    "plc": "open",
    "door": "open",
    "gate": "open",
    "curtain": "broken",
    "estop": "pressed",
}

#: The sensors a simulated scanner site has: (topic under the scanner, kind).
DEFAULT_INTERLOCKS: tuple[tuple[str, str], ...] = (
    ("plc", "plc"),
    ("door-a", "door"),
    ("gate", "gate"),
    ("curtain-a", "curtain"),
    ("estop-1", "estop"),
)
DEFAULT_DOSIMETERS: tuple[str, ...] = ("zone-a",)


@dataclass
class SimSensor:
    """One simulated site sensor and its fault state."""

    scanner: str
    group: str  # "interlock" or "dose"
    name: str
    kind: str  # plc, door, gate, curtain, estop, dose
    state: str = ""
    usvh: float = 0.1
    seq: int = 0
    fault: str = "none"  # none, flap, stale
    period_s: float = 1.0
    _next_flap: float = 0.0

    @property
    def path(self) -> str:
        return f"{self.scanner}/{self.group}/{self.name}"

    def payload(self, rng: random.Random) -> dict[str, Any]:
        self.seq += 1
        doc: dict[str, Any] = {"ts": time.time(), "seq": self.seq}
        if self.group == "dose":
            # background with a little counting noise
            doc["usvh"] = round(max(0.0, self.usvh * (1 + 0.05 * rng.uniform(-1, 1))), 4)
        else:
            doc["kind"] = self.kind
            doc["state"] = self.state
        return doc


@dataclass
class SiteSim:
    """The sensors of one site, published on an MQTT broker with a reconnect loop."""

    host: str
    port: int
    site: str = "site"
    prefix: str = "nii"
    scanners: list[str] = field(default_factory=lambda: ["scanner1"])
    refresh_s: float = 1.0
    seed: int = 0
    sensors: dict[str, SimSensor] = field(default_factory=dict)
    connects: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._client: aiomqtt.Client | None = None
        if not self.sensors:
            for sc in self.scanners:
                for name, kind in DEFAULT_INTERLOCKS:
                    s = SimSensor(sc, "interlock", name, kind, state=SAFE_STATES[kind])
                    self.sensors[s.path] = s
                for name in DEFAULT_DOSIMETERS:
                    s = SimSensor(sc, "dose", name, "dose")
                    self.sensors[s.path] = s

    def topic(self, s: SimSensor) -> str:
        return f"{self.prefix}/{self.site}/{s.path}"

    @property
    def cmd_topic(self) -> str:
        return f"{self.prefix}/{self.site}/_sim/cmd"

    # -- changes (from Python, or from the command topic) -----------------------------------
    async def set(
        self,
        path: str,
        *,
        state: str | None = None,
        usvh: float | None = None,
        fault: str | None = None,
        period_s: float | None = None,
    ) -> None:
        """Change a sensor and publish it at once (a stale sensor changes silently)."""
        s = self.sensors.get(path)
        if s is None:
            raise KeyError(f"no sensor {path!r}; have {', '.join(sorted(self.sensors))}")
        if state is not None:
            s.state = state
        if usvh is not None:
            s.usvh = float(usvh)
        if fault is not None:
            if fault not in ("none", "flap", "stale"):
                raise ValueError(f"unknown fault {fault!r}: use none, flap or stale")
            s.fault = fault
            if period_s is not None:
                s.period_s = float(period_s)
            s._next_flap = time.monotonic() + s.period_s
            if fault == "none" and s.group == "interlock":
                s.state = SAFE_STATES[s.kind] if s.state == "" else s.state
        log.info("site sensor %s: state=%s usvh=%s fault=%s", path, s.state, s.usvh, s.fault)
        await self._publish(s)

    async def _publish(self, s: SimSensor) -> None:
        c = self._client
        if c is None or s.fault == "stale":
            return
        with contextlib.suppress(aiomqtt.MqttError):
            await c.publish(self.topic(s), json.dumps(s.payload(self._rng)), qos=1, retain=True)

    async def _on_command(self, raw: bytes) -> None:
        try:
            doc = json.loads(raw)
            await self.set(
                str(doc["sensor"]),
                state=doc.get("state"),
                usvh=doc.get("usvh"),
                fault=doc.get("fault"),
                period_s=doc.get("period_s"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("bad site-sim command %r: %s", raw[:200], exc)

    # -- running ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish until ``stop`` is set (or cancelled), reconnecting after broker loss."""
        stop = stop or asyncio.Event()
        backoff = 0.1
        while not stop.is_set():
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=f"site-sim-{self.site}-{self.seed}",
                    keepalive=5,
                    timeout=2.0,
                ) as client:
                    self._client = client
                    self.connects += 1
                    backoff = 0.1
                    await client.subscribe(self.cmd_topic, qos=1)
                    for s in self.sensors.values():
                        await self._publish(s)
                    self.connected.set()
                    log.info("site %s: connected to broker %s:%d", self.site, self.host, self.port)
                    await self._serve(client, stop)
            except aiomqtt.MqttError as exc:
                log.warning(
                    "site %s: broker %s:%d: %s; retrying in %.1f s",
                    self.site,
                    self.host,
                    self.port,
                    exc,
                    backoff,
                )
            finally:
                self._client = None
                self.connected.clear()
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 2.0)

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        async def commands() -> None:
            async for msg in client.messages:
                await self._on_command(bytes(msg.payload))

        async def refresh() -> None:
            next_refresh = time.monotonic()
            while True:
                now = time.monotonic()
                for s in self.sensors.values():
                    if s.fault == "flap" and now >= s._next_flap and s.group == "interlock":
                        safe = SAFE_STATES[s.kind]
                        s.state = UNSAFE_STATES[s.kind] if s.state == safe else safe
                        s._next_flap = now + s.period_s
                        await self._publish(s)
                if now >= next_refresh:
                    for s in self.sensors.values():
                        await self._publish(s)
                    next_refresh = now + self.refresh_s
                await asyncio.sleep(0.05)

        tasks = [
            asyncio.create_task(commands()),
            asyncio.create_task(refresh()),
            asyncio.create_task(stop.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await t
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]


# -- command line -------------------------------------------------------------------------------
def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``site-sim`` to an argparse ``subparsers`` object (``args.func(args)`` runs it)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "site-sim",
        help="simulate a site's interlocks, doors, light curtains, e-stops and dosimeters on MQTT",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--broker", default="127.0.0.1:1883", help="MQTT broker HOST:PORT")
    p.add_argument("--site", default="site", help="site name (topic level)")
    p.add_argument("--prefix", default="nii", help="topic prefix (nii)")
    p.add_argument("--scanners", type=int, default=1, help="scanner1..N get a sensor set each")
    p.add_argument("--refresh", type=float, default=1.0, help="republish period, s (1)")
    p.add_argument(
        "--flap",
        action="append",
        default=[],
        metavar="SENSOR[:PERIOD]",
        help="make a switch flap, e.g. scanner1/interlock/gate:0.5",
    )
    p.add_argument(
        "--stale",
        action="append",
        default=[],
        metavar="SENSOR",
        help="make a sensor stop publishing after its first report",
    )
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the site simulator until SIGINT/SIGTERM."""
    import uvloop

    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host, _, port = str(args.broker).rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--broker {args.broker!r} is not HOST:PORT",
            fix="write the broker's address, e.g. --broker 127.0.0.1:1883",
        )
    names = {
        f"scanner{i}/{g}/{n}"
        for i in range(1, args.scanners + 1)
        for g, n in [
            *(("interlock", n) for n, _ in DEFAULT_INTERLOCKS),
            *(("dose", n) for n in DEFAULT_DOSIMETERS),
        ]
    }
    for spec in [*args.flap, *args.stale]:
        if spec.partition(":")[0] not in names:
            raise ConfigError(
                f"no simulated sensor {spec!r}", fix=f"use one of: {', '.join(sorted(names))}"
            )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        sim = SiteSim(
            host,
            int(port),
            site=args.site,
            prefix=args.prefix,
            scanners=[f"scanner{i}" for i in range(1, args.scanners + 1)],
            refresh_s=args.refresh,
        )
        for spec in args.flap:
            path, _, per = spec.partition(":")
            sim.sensors[path].fault = "flap"
            sim.sensors[path].period_s = float(per or 1.0)
        task = asyncio.create_task(sim.run(stop))
        if args.stale:
            await sim.connected.wait()  # publish once, then fall silent
            for path in args.stale:
                sim.sensors[path].fault = "stale"
        await task

    uvloop.run(main())
    return 0


__all__ = [
    "DEFAULT_DOSIMETERS",
    "DEFAULT_INTERLOCKS",
    "SAFE_STATES",
    "SimSensor",
    "SiteSim",
    "register",
    "run",
]
