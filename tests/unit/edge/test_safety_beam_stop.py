"""A trip whose beam stop cannot be carried out is an immediate alarm, retried until done."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from core.errors import DriverError
from edge._safety import SafetyGuard
from tests.unit.test_safety import Clock, FakeChannel, FakeControl, make, report


async def wait_until_async(cond: Callable[[], object], timeout: float, what: str) -> None:
    """Let the event loop run until ``cond`` holds; fail naming ``what`` after ``timeout`` s."""
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


class FailingControl(FakeControl):
    """Beam off fails ``fails`` times with a DriverError, then works."""

    def __init__(self, fails: int) -> None:
        super().__init__()
        self.fails = fails

    async def beam_off(self) -> None:
        if self.fails > 0:
            self.fails -= 1
            self.calls.append("beam_off failed")
            raise DriverError("no answer from /dev/ttyS0", fix="check the cable")
        await super().beam_off()


class Channel(FakeChannel):
    def __init__(self, cfg: Any, control: FakeControl) -> None:
        super().__init__(cfg)
        self.control = control
        self.control_up = True
        self.messages: list[tuple[str, str]] = []

    def alarm(self, kind: str, message: str, **details: Any) -> None:
        super().alarm(kind, message, **details)
        self.messages.append((kind, message))


async def tripped(fails: int, *, link_up: bool = True) -> tuple[Clock, Any, Channel, SafetyGuard]:
    clock = Clock()
    s = make(clock)
    ch = Channel(s.cfg, FailingControl(fails))
    guard = SafetyGuard(ch, s, scanning=lambda: True)
    guard.retry_s = 0.01
    s.link(True)
    report(s, clock)
    clock.advance(0.3)
    assert s.evaluate()
    await asyncio.sleep(0)
    ch.control_up = link_up
    report(s, clock, **{"door-a": "open"})  # the interlock trips during a scan
    return clock, s, ch, guard


async def test_failed_beam_off_alarms_at_once_and_retries_until_done() -> None:
    _, _, ch, guard = await tripped(fails=3)
    await wait_until_async(lambda: "beam_stopped" in ch.alarms, 5, "the beam stop to succeed")
    failed = [m for k, m in ch.messages if k == "beam_stop_failed"]
    assert failed == [
        "cannot stop beam on scanner scanner1: beam off failed: no answer from /dev/ttyS0"
    ]
    assert ch.alarms.index("beam_stop_failed") < ch.alarms.index("beam_stopped")
    assert ch.control.calls.count("beam_off failed") == 3 and "beam_off" in ch.control.calls
    assert guard.stop_failures == 1 and len(guard.reaction_s) == 1
    await guard.close()


async def test_control_link_down_is_a_failed_stop_until_it_is_back() -> None:
    _, _, ch, guard = await tripped(fails=0, link_up=False)
    await wait_until_async(lambda: "beam_stop_failed" in ch.alarms, 5, "the alarm")
    assert "control link down" in dict(ch.messages)["beam_stop_failed"]
    await asyncio.sleep(0.05)
    assert "beam_off" not in ch.control.calls  # nothing sent over a dead link
    ch.control_up = True
    await wait_until_async(lambda: "beam_stopped" in ch.alarms, 5, "the beam stop")
    assert ch.control.calls[-3:] == ["beam_off", "stop_scan", "disarm"]
    await guard.close()


async def test_retrying_ends_when_the_scanner_is_safe_again() -> None:
    clock, s, ch, guard = await tripped(fails=10**6)
    await wait_until_async(lambda: "beam_stop_failed" in ch.alarms, 5, "the alarm")
    report(s, clock)
    clock.advance(0.3)
    assert s.evaluate()
    await wait_until_async(lambda: "beam_stop_moot" in ch.alarms, 5, "the all-clear")
    n = len(ch.control.calls)
    await asyncio.sleep(0.1)
    assert len(ch.control.calls) == n  # no more retries
    assert ch.alarms.count("beam_stop_failed") == 1
    await guard.close()


async def test_a_working_stop_sends_no_failure_alarm() -> None:
    _, _, ch, guard = await tripped(fails=0)
    await wait_until_async(lambda: "disarm" in ch.control.calls, 5, "the disarm")
    assert not {"beam_stop_failed", "beam_stopped"} & set(ch.alarms)
    await guard.close()


async def test_edge_stopping_is_not_a_trip() -> None:
    clock = Clock()
    s = make(clock)
    ch = Channel(s.cfg, FailingControl(fails=10**6))  # the serial device is already gone
    guard = SafetyGuard(ch, s, scanning=lambda: True)
    s.link(True)
    report(s, clock)
    clock.advance(0.3)
    assert s.evaluate()
    await asyncio.sleep(0.01)
    n_alarms, n_calls = len(ch.alarms), len(ch.control.calls)
    s.stopped = True  # what SafetyMonitor.run does as the edge stops
    s.link(False, "safety monitor stopped")
    await asyncio.sleep(0.05)
    assert not guard.may_arm()
    assert len(ch.alarms) == n_alarms and len(ch.control.calls) == n_calls
    await guard.close()
