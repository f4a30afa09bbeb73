"""The safety state machine (R5) on injected clocks: stale, flapping, resync, arming gate."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from core.config import ScannerConfig
from edge._safety import SafetyGuard, ScannerSafety


class Clock:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_750_000_000.0

    def advance(self, s: float) -> None:
        self.mono += s
        self.wall += s


def make(clock: Clock) -> ScannerSafety:
    cfg = ScannerConfig(
        id="scanner1",
        serial=Path("/dev/null"),
        data_host="h",
        data_port=1,
        interlocks=["plc", "door-a"],
        dosimeters=["zone-a"],
        dose_limit_usvh=2.5,
        sensor_max_age_s=3.0,
    )
    return ScannerSafety(cfg, settle_s=0.2, clock=lambda: clock.mono, wall=lambda: clock.wall)


def report(s: ScannerSafety, clock: Clock, **over: Any) -> None:
    ts = over.pop("ts", clock.wall)
    states = {"plc": "closed", "door-a": "closed", **over}
    s.report(
        "interlock", "plc", json.dumps({"kind": "plc", "state": states["plc"], "ts": ts}).encode()
    )
    s.report(
        "interlock",
        "door-a",
        json.dumps({"kind": "door", "state": states["door-a"], "ts": ts}).encode(),
    )
    s.report("dose", "zone-a", json.dumps({"usvh": states.get("usvh", 0.1), "ts": ts}).encode())


def safe_site(clock: Clock) -> ScannerSafety:
    s = make(clock)
    s.link(True)
    report(s, clock)
    clock.advance(0.3)
    assert s.evaluate() and s.safe
    return s


def test_unsafe_until_every_required_sensor_reported_and_settled() -> None:
    clock = Clock()
    s = make(clock)
    assert not s.evaluate()
    s.link(True)
    s.report(
        "interlock",
        "plc",
        json.dumps({"kind": "plc", "state": "closed", "ts": clock.wall}).encode(),
    )
    assert not s.evaluate() and "waiting for" in s.causes[0]
    report(s, clock)
    assert not s.evaluate()  # settling
    clock.advance(0.3)
    assert s.evaluate()


def test_open_door_high_dose_and_malformed_are_unsafe() -> None:
    clock = Clock()
    s = safe_site(clock)
    report(s, clock, **{"door-a": "open"})
    assert not s.safe and "door-a" in s.causes[0]
    report(s, clock)
    assert s.safe
    report(s, clock, usvh=30.0)
    assert not s.safe and "zone-a" in s.causes[0]
    report(s, clock)
    s.report("interlock", "plc", b"not json")
    assert not s.safe


def test_stale_sensor_is_unsafe() -> None:
    clock = Clock()
    s = safe_site(clock)
    clock.advance(2.0)
    report(s, clock)
    clock.advance(2.0)
    assert s.evaluate()
    clock.advance(1.5)  # 3.5 s since the last report, max age 3 s
    assert not s.evaluate()
    assert any("stale" in c for c in s.causes)


def test_retained_report_from_a_silent_sensor_is_stale_at_once() -> None:
    clock = Clock()
    s = make(clock)
    s.link(True)
    report(s, clock, ts=clock.wall - 60)  # re-read from the broker, a minute old
    clock.advance(0.3)
    assert not s.evaluate() and any("stale" in c for c in s.causes)


def test_reconnect_requires_a_fresh_read_of_everything() -> None:
    clock = Clock()
    s = safe_site(clock)
    s.link(False, "site broker unreachable (test)")
    assert not s.safe
    s.link(True)
    clock.advance(1.0)
    assert not s.evaluate() and "since reconnecting" in s.causes[0]
    report(s, clock)
    clock.advance(0.3)
    assert s.evaluate()


def test_a_sensor_seen_once_becomes_required() -> None:
    clock = Clock()
    s = safe_site(clock)
    s.report(
        "interlock",
        "estop-9",
        json.dumps({"kind": "estop", "state": "released", "ts": clock.wall}).encode(),
    )
    assert s.safe
    s.link(False)
    s.link(True)
    report(s, clock)
    clock.advance(0.3)
    assert not s.evaluate() and "estop-9" in s.causes[0]


class FakeControl:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def beam_off(self) -> None:
        self.calls.append("beam_off")

    async def stop_scan(self) -> None:
        self.calls.append("stop_scan")

    async def disarm(self) -> None:
        self.calls.append("disarm")

    async def arm(self) -> None:
        self.calls.append("arm")


class FakeChannel:
    def __init__(self, cfg: ScannerConfig) -> None:
        self.cfg = cfg
        self.control = FakeControl()
        self.alarms: list[str] = []
        self.spool = None

    def alarm(self, kind: str, message: str, **details: Any) -> None:
        self.alarms.append(kind)


async def test_guard_trips_the_beam_and_gates_arming() -> None:
    clock = Clock()
    s = make(clock)
    ch = FakeChannel(s.cfg)
    scanning = [True]
    guard = SafetyGuard(ch, s, scanning=lambda: scanning[0])
    assert not guard.may_arm()  # arming refused while unsafe (nothing known yet)
    s.link(True)
    report(s, clock)
    clock.advance(0.3)
    s.evaluate()
    await asyncio.sleep(0.01)
    assert guard.may_arm() and ch.control.calls == ["arm"]
    report(s, clock, **{"door-a": "open"})
    assert not guard.may_arm()
    assert ch.alarms[-1] == "safety_trip"
    await asyncio.sleep(0.01)
    assert ch.control.calls[1:] == ["beam_off", "stop_scan", "disarm"]
    assert guard.trips == 1 and len(guard.reaction_s) == 1
    await guard.close()
