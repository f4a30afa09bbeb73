"""Radiation safety at the edge (R5): arm and emit only while the site says it is safe.

The site's interlock PLC, doors and gates, exclusion-zone light curtains,
emergency stops and area dosimeters publish on the site MQTT broker (retained,
refreshed every second or so; see ``firmware_sim.site`` for the topics). A
scanner is **safe** only while, at once:

* the edge is connected to the broker and has re-read every known sensor since
  its last (re)connect (the retained messages), plus ``settle_s``;
* every interlock (PLC, doors, gates, curtains, e-stops) is in its safe state;
* every dosimeter reads under ``dose_limit_usvh``;
* every reading is fresh: not older than ``sensor_max_age_s``, counted from the
  sensor's own timestamp, so a retained message from a sensor that fell silent
  long ago is stale the moment it is re-read;
* every sensor's timestamp is plausible (:func:`core.clock.implausible`): a
  reading stamped ahead of the edge's clock beyond the tolerance, in
  milliseconds or nanoseconds, not a number, or far in the past is stale, with
  the reason in the causes and logged once per change. A device clock that is
  wrong can never make a reading look fresh for ever.

Anything else, including a sensor never heard of, a malformed payload or a lost
broker, is unsafe: the safe direction for missing information. Sensors named in
the configuration are required from the start; any other sensor seen under the
scanner's topics becomes required from then on.

On a change to unsafe :class:`SafetyGuard` commands beam off, stop scan and
disarm over the driver (the simulator ends the partial scan with an ``aborted``
SCAN_END record, which the CIR keeps), and sends an alarm to central at once.
Arming is refused while unsafe (:meth:`SafetyGuard.may_arm` gates every arm of
the scanner channel). Every change is logged with its cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from core.clock import implausible
from core.config import MqttConfig, ScannerConfig
from core.errors import DriverError

log = logging.getLogger("nii.edge.safety")

#: The safe state of each kind of interlock input.
SAFE_STATES: dict[str, str] = {
    "plc": "closed",
    "door": "closed",
    "gate": "closed",
    "curtain": "clear",
    "estop": "released",
}
_GROUPS = ("interlock", "dose")
DOWN_POLL_S = 0.05
"""How often a beam stop waiting on a control link that is down looks whether it is back (s)."""


@dataclass
class Reading:
    """The last report of one sensor."""

    group: str  # interlock | dose
    name: str
    kind: str
    state: str  # interlock: its state word; dose: "" (see usvh)
    usvh: float | None
    ok: bool  # the value itself is safe
    fresh_until: float  # monotonic
    changed_wall: float  # wall time of the last change of ``ok`` or ``state``
    reports: int = 0
    clock_fault: str = ""  # why the sensor's timestamp cannot be believed ("" when it can)


def _ts_fault(ts: Any, wall: float) -> str | None:
    """Why a sensor's ``ts`` (from JSON: any type, ints of any size) cannot be believed."""
    if isinstance(ts, int) and not isinstance(ts, bool):
        try:
            ts = float(ts)
        except OverflowError:
            return "timestamp is an integer too large to be a time"
    return implausible(ts, wall)


@dataclass
class ScannerSafety:
    """The safety state of one scanner, from its site sensors; a pure state machine.

    ``clock`` (monotonic seconds) and ``wall`` (epoch seconds) are injectable for
    tests. ``on_change(safe, causes)`` runs on every change of :attr:`safe`.
    """

    cfg: ScannerConfig
    settle_s: float = 0.3
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    on_change: list[Callable[[bool, list[str]], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.required: set[tuple[str, str]] = {("interlock", n) for n in self.cfg.interlocks} | {
            ("dose", n) for n in self.cfg.dosimeters
        }
        self.readings: dict[tuple[str, str], Reading] = {}
        self.link_up = False
        self.link_reason = "no data from the site broker yet"
        self.connected_at = 0.0
        self.since_connect: set[tuple[str, str]] = set()
        self.safe = False
        self.causes: list[str] = ["no data from the site broker yet"]
        self.changed_wall = self.wall()
        self.transitions = 0
        self.stopped = False  # set when the monitor stops with the edge (no trip then)

    # -- inputs ---------------------------------------------------------------------------------
    def link(self, up: bool, reason: str = "") -> None:
        """The broker connection came up (re-read everything) or went down."""
        self.link_up = up
        self.link_reason = reason or "site broker unreachable"
        if up:
            self.connected_at = self.clock()
            self.since_connect = set()
        self.evaluate()

    def report(self, group: str, name: str, payload: bytes) -> None:
        """One MQTT message on ``…/<scanner>/<group>/<name>``."""
        key = (group, name)
        now, wall = self.clock(), self.wall()
        clock_fault = ""
        try:
            doc = json.loads(payload)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            raw_ts = doc.get("ts", wall)
            why = _ts_fault(raw_ts, wall)
            if why is not None:
                clock_fault, ts = why, wall - 2 * self.cfg.sensor_max_age_s - 1.0
            else:
                ts = float(raw_ts)
            if group == "dose":
                usvh: float | None = float(doc["usvh"])
                kind, state = "dose", ""
                ok = usvh is not None and 0.0 <= usvh < self.cfg.dose_limit_usvh
            else:
                usvh = None
                kind, state = str(doc.get("kind", "plc")), str(doc["state"])
                ok = state == SAFE_STATES.get(kind, "closed")
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
            log.warning(
                "%s: malformed report from %s/%s (%s): counted unsafe",
                self.cfg.id,
                group,
                name,
                exc,
            )
            ts, usvh, kind, state, ok = wall, None, "?", "malformed", False
        age = max(0.0, wall - ts)
        prev = self.readings.get(key)
        if bool(clock_fault) != bool(prev.clock_fault if prev else ""):  # once per change
            if clock_fault:
                log.warning(
                    "%s: sensor %s/%s: %s: reading counted stale",
                    self.cfg.id,
                    group,
                    name,
                    clock_fault,
                )
            else:
                log.info("%s: sensor %s/%s: timestamps plausible again", self.cfg.id, group, name)
        changed = prev is None or prev.ok != ok or prev.state != state
        self.readings[key] = Reading(
            group,
            name,
            kind,
            state,
            usvh,
            ok,
            fresh_until=now + self.cfg.sensor_max_age_s - age,
            changed_wall=wall if changed else prev.changed_wall,  # type: ignore[union-attr]
            reports=(prev.reports if prev else 0) + 1,
            clock_fault=clock_fault,
        )
        if self.link_up:
            self.since_connect.add(key)
        self.evaluate()

    # -- the rule -------------------------------------------------------------------------------
    def unsafe_causes(self) -> list[str]:
        """Why the scanner is not safe now (empty when it is)."""
        now = self.clock()
        if not self.link_up:
            return [self.link_reason]
        known = self.required | set(self.readings)
        causes: list[str] = []
        missing = sorted(f"{g}/{n}" for g, n in known - self.since_connect)
        if missing:
            causes.append(
                "waiting for "
                + ", ".join(missing)
                + (" since reconnecting" if self.transitions else "")
            )
        elif now - self.connected_at < self.settle_s:
            causes.append("re-reading the retained safety state after connecting")
        for (g, n), r in sorted(self.readings.items()):
            if not r.ok:
                if g == "dose":
                    what = "unreadable" if r.usvh is None else f"{r.usvh:g} µSv/h"
                    causes.append(f"dose {n} {what} ≥ limit {self.cfg.dose_limit_usvh:g} µSv/h")
                else:
                    causes.append(f"interlock {n} ({r.kind}) is {r.state}")
            elif r.clock_fault:
                causes.append(f"sensor {g}/{n} is stale: {r.clock_fault}")
            elif now > r.fresh_until:
                causes.append(
                    f"sensor {g}/{n} is stale (no fresh report within "
                    f"{self.cfg.sensor_max_age_s:g} s)"
                )
        return causes

    def evaluate(self) -> bool:
        """Re-evaluate; log and notify on a change. Returns :attr:`safe`."""
        causes = self.unsafe_causes()
        safe = not causes
        if safe != self.safe:
            self.safe = safe
            self.transitions += 1
            self.changed_wall = self.wall()
            if safe:
                n_i = sum(1 for g, _ in self.readings if g == "interlock")
                n_d = sum(1 for g, _ in self.readings if g == "dose")
                log.info(
                    "%s: SAFE: %d interlock(s) closed, %d dosimeter(s) under %g µSv/h",
                    self.cfg.id,
                    n_i,
                    n_d,
                    self.cfg.dose_limit_usvh,
                )
            else:  # a stop of the edge itself is no news
                lvl = logging.INFO if self.stopped else logging.WARNING
                log.log(lvl, "%s: UNSAFE: %s", self.cfg.id, "; ".join(causes))
            self.causes = causes
            for fn in list(self.on_change):
                fn(safe, causes)
        else:
            self.causes = causes
        return safe


class SafetyMonitor:
    """One MQTT subscriber for every scanner of an edge, reconnecting by itself.

    aiomqtt has no reconnect of its own: :meth:`run` loops over ``async with
    aiomqtt.Client(...)``, catches :class:`aiomqtt.MqttError` and backs off
    (0.1 s doubling to 2 s). Each (re)connect first marks every scanner unsafe
    and re-reads the retained state before any of them may arm again.
    """

    def __init__(
        self,
        mqtt: MqttConfig,
        scanners: list[ScannerConfig],
        *,
        edge_id: str = "edge",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mqtt = mqtt
        self.edge_id = edge_id
        #: The MQTT client id: unique per process, so two edges with the same ``[edge] id``
        #: and broker never take each other's session (the broker drops the older one).
        self.client_id = f"nii-{edge_id}-safety-{os.getpid()}-{secrets.token_hex(3)}"
        self.scanners = {
            sc.id: ScannerSafety(sc, settle_s=mqtt.settle_s, clock=clock) for sc in scanners
        }
        self.connects = 0
        self.connected = asyncio.Event()

    def topic(self, scanner: str, group: str) -> str:
        return f"{self.mqtt.prefix}/{self.mqtt.site}/{scanner}/{group}/+"

    def _dispatch(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) != 5 or parts[3] not in _GROUPS:
            return
        s = self.scanners.get(parts[2])
        if s is not None:
            try:
                s.report(parts[3], parts[4], payload)
            except Exception:  # a bug here must not end the subscription of every scanner
                log.exception("%s: report on %s could not be read", s.cfg.id, topic)

    def _link(self, up: bool, reason: str) -> None:
        for s in self.scanners.values():
            s.link(up, reason)

    async def run(self) -> None:
        """Subscribe forever (until cancelled), re-establishing state after each reconnect."""
        m = self.mqtt
        backoff = 0.1
        ticker = asyncio.create_task(self._tick(), name="safety tick")
        try:
            while True:
                client = aiomqtt.Client(
                    m.host,
                    m.port,
                    identifier=self.client_id,
                    keepalive=max(1, int(m.keepalive_s)),
                    timeout=m.keepalive_s,
                    clean_session=True,
                )
                try:
                    async with client:
                        self.connects += 1
                        backoff = 0.1
                        for sc in self.scanners:
                            for g in _GROUPS:
                                await client.subscribe(self.topic(sc, g), qos=1)
                        log.info(
                            "safety: connected to site broker %s:%d, reading the retained "
                            "state of %d scanner(s)",
                            m.host,
                            m.port,
                            len(self.scanners),
                        )
                        self._link(True, "")
                        self.connected.set()
                        async for msg in client.messages:
                            payload = msg.payload
                            raw = (
                                payload
                                if isinstance(payload, bytes | bytearray)
                                else (str(payload).encode())
                            )
                            self._dispatch(msg.topic.value, bytes(raw))
                except aiomqtt.MqttError as exc:
                    self.connected.clear()
                    log.warning(
                        "safety: site broker %s:%d: %s; reconnecting in %.1f s",
                        m.host,
                        m.port,
                        exc,
                        backoff,
                    )
                    self._link(False, f"site broker unreachable ({exc})")
                finally:
                    _retrieve_disconnect(client)
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
        finally:
            self.connected.clear()
            for state in self.scanners.values():
                state.stopped = True  # the edge is stopping: unsafe, but no trip to act on
            self._link(False, "safety monitor stopped")
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _tick(self) -> None:
        """Staleness and settling happen with time, not with messages: re-evaluate often."""
        while True:
            for s in self.scanners.values():
                s.evaluate()
            await asyncio.sleep(0.05)


def _retrieve_disconnect(client: aiomqtt.Client) -> None:
    """Retrieve the outcome of the client's disconnection, whatever ended the connection.

    When the broker drops the connection while the task is being cancelled,
    aiomqtt leaves the error in a future nobody awaits, and asyncio logs "Future
    exception was never retrieved" at exit. The error itself was already handled
    (or the edge is stopping), so it is only retrieved here.
    """
    fut = getattr(client, "_disconnected", None)
    if isinstance(fut, asyncio.Future) and fut.done() and not fut.cancelled():
        fut.exception()


class SafetyGuard:
    """Ties one scanner's :class:`ScannerSafety` to its channel: trip, alarm, gate arming.

    ``channel`` is an ``edge.ScannerChannel`` (its ``control``, ``cfg``,
    ``alarm`` and ``spool``); ``scanning`` says whether a scan is running now.
    """

    def __init__(
        self, channel: Any, safety: ScannerSafety, scanning: Callable[[], bool] = lambda: False
    ) -> None:
        self.channel = channel
        self.safety = safety
        self.scanning = scanning
        self.trips = 0
        self.reaction_s: list[float] = []  # unsafe → beam-off acknowledged, per trip
        self.observers: list[Callable[[float], None]] = []
        self._armed_once = False
        self._beam_off_timed = False
        self.retry_s = 0.25  # first retry of a failed beam stop (s), doubling to 2 s
        self.stop_failures = 0  # trips whose beam stop failed at least once
        self._stopper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        safety.on_change.append(self._on_change)

    def may_arm(self) -> bool:
        """The gate every arming of the scanner goes through."""
        return self.safety.safe

    def wants_armed(self) -> bool:
        """Whether the edge should keep the scanner armed (``rearm = false``: not after a trip)."""
        return bool(getattr(self.channel.cfg, "rearm", True)) or self.trips == 0

    def _urgent(self, on: bool) -> None:
        """Tell the channel a safety action waits (or no longer waits) on its control link."""
        fn = getattr(self.channel, "urgent_control", None)
        if fn is not None:
            fn(on)

    def _spawn(self, coro: Any) -> asyncio.Task[None] | None:
        try:
            t = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (a unit test driving the state machine by hand)
            coro.close()
            return None
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def _on_change(self, safe: bool, causes: list[str]) -> None:
        sid = self.channel.cfg.id
        if not safe and self.safety.stopped:
            # the edge is stopping: arming is refused from now on; the scanner is left to
            # its own interlocks (its serial device may already be gone with the edge)
            log.info("%s: safety monitor stopped with the edge; arming refused", sid)
            return
        if not safe:
            self.trips += 1
            scanning = self.scanning()
            if (self.channel.control is not None or scanning) and (
                self._stopper is None or self._stopper.done()
            ):  # a stopper still retrying covers this trip too
                self._beam_off_timed = False
                self._stopper = self._spawn(self._stop_beam(time.monotonic()))
            what = "; ".join(causes)
            if scanning:
                self.channel.alarm(
                    "safety_trip",
                    f"unsafe during a scan: {what}: beam off, "
                    "scan aborted (the partial scan is kept)",
                    causes=causes,
                )
            else:
                self.channel.alarm("unsafe", f"unsafe: {what}: arming refused", causes=causes)
            return
        self.channel.alarm("safety_clear", "safe again: every interlock closed, dose under limit")
        cfg = self.channel.cfg
        spool_high = getattr(self.channel.spool, "above_high_water", False)
        if (
            self.channel.control is not None
            and cfg.arm
            and not spool_high
            and (cfg.rearm or not self._armed_once)
        ):
            self._armed_once = True
            self._spawn(self._arm())
        elif not cfg.rearm and self._armed_once:
            log.info("%s: safe again; rearm = false, so it stays disarmed until armed by hand", sid)

    def _control_down(self) -> str | None:
        """Why the scanner cannot be commanded now, or None when its control link is up."""
        if self.channel.control is None:
            return "no control link"
        if getattr(self.channel, "control_up", True) is False:
            return "control link down"
        return None

    async def _stop_beam(self, t0: float) -> None:
        """Beam off, stop scan, disarm; retried until done or the scanner is safe again.

        A step that fails (``DriverError``, or the control link down) is an immediate
        ``beam_stop_failed`` alarm to the control room, "cannot stop beam on scanner
        X: <why>", once per trip; the guard retries every :attr:`retry_s` seconds
        (doubling to 2 s) and sends ``beam_stopped`` when it got through, or
        ``beam_stop_moot`` when the scanner became safe before it could.

        While it waits on a control link that is down, the channel reopens it every
        0.25 s (:meth:`edge.ScannerChannel.urgent_control`) and the guard looks every
        :data:`DOWN_POLL_S` whether it is back, so the beam stops within about 0.3 s
        of the device coming back, not after the link's reopen backoff.
        """
        try:
            await self._stop_beam_steps(t0)
        finally:
            self._urgent(False)

    async def _stop_beam_steps(self, t0: float) -> None:
        sid = self.channel.cfg.id
        failed_why = ""
        backoff = self.retry_s
        while True:
            why = self._control_down()
            if why is None:
                why = await self._stop_steps(t0)
            if why is None:
                if failed_why:
                    self.channel.alarm(
                        "beam_stopped",
                        f"beam stopped on scanner {sid} after the earlier failure ({failed_why})",
                    )
                return
            self._urgent(True)
            if not failed_why:
                failed_why = why
                self.stop_failures += 1
                log.error("%s: safety: cannot stop beam: %s; retrying", sid, why)
                self.channel.alarm(
                    "beam_stop_failed", f"cannot stop beam on scanner {sid}: {why}", why=why
                )
            if self.safety.safe:
                log.warning("%s: safety: safe again before the beam could be stopped", sid)
                self.channel.alarm(
                    "beam_stop_moot",
                    f"scanner {sid} is safe again; the beam stop that failed ({failed_why}) "
                    "is no longer needed",
                )
                return
            if self._control_down() is not None:
                await asyncio.sleep(DOWN_POLL_S)  # no I/O: look again soon
                continue
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)

    async def _stop_steps(self, t0: float) -> str | None:
        """One attempt at beam off, stop scan and disarm; the first failure's reason or None."""
        ctl = self.channel.control
        sid = self.channel.cfg.id
        failure: str | None = None
        for what, fn in (
            ("beam off", ctl.beam_off),
            ("stop scan", ctl.stop_scan),
            ("disarm", ctl.disarm),
        ):
            try:
                await fn()
            except DriverError as exc:
                log.error("%s: safety: %s failed: %s", sid, what, exc)
                failure = failure or f"{what} failed: {exc}"
                continue
            if what == "beam off" and not self._beam_off_timed:
                self._beam_off_timed = True
                dt = time.monotonic() - t0
                self.reaction_s.append(dt)
                for obs in self.observers:
                    obs(dt)
                log.warning(
                    "%s: safety: beam off acknowledged %.1f ms after the trip", sid, dt * 1e3
                )
        return failure

    async def _arm(self) -> None:
        try:
            if self.safety.safe and self._control_down() is None:
                await self.channel.control.arm()
                log.info("%s: safety: armed (safe)", self.channel.cfg.id)
        except DriverError as exc:
            log.warning("%s: safety: arm failed: %s", self.channel.cfg.id, exc)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


__all__ = ["SAFE_STATES", "Reading", "SafetyGuard", "SafetyMonitor", "ScannerSafety"]
