"""The channel shell's own rules, with fake drivers: control link outages, storage pauses.

The pure cores have their own tests (test_assembler.py, test_uplink.py); these
drive ScannerChannel's loops directly with a real ZeroMQ context and spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

import edge._channel as channel_mod
from core.config import EdgeConfig
from core.errors import DriverError
from core.keys import CirKey, CirPublic, EdgeKey
from core.messages import Alarm, Welcome, decode
from core.net import free_port
from drivers import (
    ControlEvent,
    LinkStats,
    Packet,
    PacketType,
    ScannerIdentity,
    ScannerStatus,
)
from edge._alarms import AlarmGate
from edge._channel import ScannerChannel


class FakeLink:
    stats = LinkStats()

    async def packets(self, next_seq: int, session: str = "") -> AsyncIterator[Any]:
        await asyncio.sleep(3600)
        yield  # pragma: no cover

    async def close(self) -> None:
        return None


class FakeControl:
    """A control link whose device is absent ``absent`` times, then fails once mid-events."""

    def __init__(self, absent: int) -> None:
        self.absent = absent
        self.opens = self.closes = self.arms = 0
        self.events_q: asyncio.Queue[ControlEvent | Exception] = asyncio.Queue()

    async def open(self) -> None:
        self.opens += 1
        if self.absent > 0:
            self.absent -= 1
            raise DriverError("cannot open the scanner's serial device /dev/ttyX: absent")

    async def identify(self) -> ScannerIdentity:
        return ScannerIdentity("v", "m", "SN1", "1.0", 4)

    async def status(self) -> ScannerStatus:
        return ScannerStatus("idle", False, False, None)

    async def arm(self) -> None:
        self.arms += 1

    async def disarm(self) -> None:
        return None

    async def events(self) -> AsyncIterator[ControlEvent]:
        while True:
            ev = await self.events_q.get()
            if isinstance(ev, Exception):
                raise ev
            yield ev

    async def close(self) -> None:
        self.closes += 1


@pytest.fixture
def edge_cfg(tmp_path: Path) -> EdgeConfig:
    keys = tmp_path / "keys"
    CirKey.generate().save(keys)
    EdgeKey.generate("e1").save(keys)
    toml = tmp_path / "edge.toml"
    toml.write_text(
        '[edge]\nid = "e1"\nkey = "keys/e1.key"\ncir_public = "keys/cir.pub"\n'
        f'central = "tcp://127.0.0.1:{free_port()}"\nstate_dir = "state"\n\n'
        '[[scanner]]\nid = "s1"\nserial = "/dev/ttyX"\ndata = "127.0.0.1:1"\n'
    )
    return EdgeConfig.load(toml)


@pytest.fixture
def ctx() -> Iterator[zmq.asyncio.Context]:
    c = zmq.asyncio.Context()
    yield c
    c.term()


def make(
    cfg: EdgeConfig, ctx: zmq.asyncio.Context, control: FakeControl
) -> tuple[ScannerChannel, list[str], list[ControlEvent]]:
    alarms: list[str] = []
    events: list[ControlEvent] = []
    ch = ScannerChannel(
        cfg,
        cfg.scanners[0],
        EdgeKey.load(cfg.key),
        CirPublic.load(cfg.cir_public),
        ctx,
        FakeLink(),
        control,  # type: ignore[arg-type]
        on_alarm=lambda sid, kind, msg: alarms.append(kind),
    )
    ch.event_listeners.append(events.append)
    ch._gate = AlarmGate(every_s=0.0)  # these tests count every alarm (test_alarms.py: the gate)
    ch._link_serial = "SN1"  # what the data link's SESSION said (the control link's IDN too)
    return ch, alarms, events


@contextlib.asynccontextmanager
async def controlling(ch: ScannerChannel) -> AsyncIterator[None]:
    """Run the channel's control loop for the block; stop it and close the channel after."""
    task = asyncio.create_task(ch._control())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ch.close()


async def until(cond: Any, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_an_absent_device_is_one_outage_then_up_and_armed(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_mod, "CONTROL_BACKOFF", (0.01, 0.02))
    ctl = FakeControl(absent=3)
    ch, alarms, events = make(edge_cfg, ctx, ctl)
    assert not ch.control_up and not ch.identified
    async with controlling(ch):
        await until(lambda: ch.control_up)
        assert ctl.opens == 4 and ctl.closes == 3  # the failed handle is closed each time
        assert alarms == ["control_link_down", "control_link_up"]
        assert [e.kind for e in events] == ["LINK_DOWN", "LINK_UP"]
        assert "absent" in events[0].fields[0]
        assert ch.identified and ctl.arms == 1 and ch.waiting_for == ""
        # the device goes away under a running link: down once, reopened, re-armed
        ctl.absent = 2
        ctl.events_q.put_nowait(DriverError("serial device /dev/ttyX went away"))
        await until(lambda: ctl.arms == 2)
        assert alarms.count("control_link_down") == 2 and alarms[-1] == "control_link_up"
        assert [e.kind for e in events][-2:] == ["LINK_DOWN", "LINK_UP"]
        assert ch.control_up and ch.stats.control_outages == 2


async def test_while_down_the_channel_says_what_it_waits_for(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_mod, "CONTROL_BACKOFF", (0.01, 0.02))
    ctl = FakeControl(absent=10**6)
    ch, alarms, _ = make(edge_cfg, ctx, ctl)
    async with controlling(ch):
        await until(lambda: ctl.opens >= 5)
        assert alarms == ["control_link_down"]  # once per outage, not per try
        assert "s1" in ch.waiting_for and "/dev/ttyX" in ch.waiting_for
        assert not ch.identified and not ch.control_up


async def test_the_dealer_notices_a_dead_peer(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context
) -> None:
    ch, _, _ = make(edge_cfg, ctx, FakeControl(0))
    try:
        s = ch.sock
        assert s.getsockopt(zmq.HEARTBEAT_IVL) == 1000
        assert s.getsockopt(zmq.HEARTBEAT_TIMEOUT) == 3000
        assert s.getsockopt(zmq.HEARTBEAT_TTL) == 3000
        assert s.getsockopt(zmq.TCP_KEEPALIVE) == 1
        assert s.getsockopt(zmq.TCP_KEEPALIVE_IDLE) == 1
        assert s.getsockopt(zmq.TCP_KEEPALIVE_INTVL) == 1
        assert s.getsockopt(zmq.TCP_KEEPALIVE_CNT) == 3
    finally:
        await ch.close()


class ScriptLink:
    """A data link that replays a fixed packet list from any position, then waits."""

    stats = LinkStats()

    def __init__(self, packets: list[Packet]) -> None:
        self.script = packets
        self.starts: list[tuple[int, str]] = []

    async def packets(self, next_seq: int, session: str = "") -> AsyncIterator[Any]:
        self.starts.append((next_seq, session))
        for p in self.script:
            if p.seq >= next_seq:
                yield p
        await asyncio.sleep(3600)

    async def close(self) -> None:
        return None


class FailingCommit:
    """COMMIT fails (SQLite rolls back by itself, as on a full disk) while ``fail``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.fail = db, False

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self.fail:
            self.db.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


async def test_a_spool_that_cannot_write_pauses_and_resumes_from_the_durable_position(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_mod, "PROBE_S", 0.01)
    ts = time.time_ns()
    script = [Packet(PacketType.SCAN_START, 0, ts, 1, 0, 0, 0, b'{"channels": 4}')]
    script += [Packet(PacketType.LINE, i, ts, 1, i - 1, 4, 0, bytes(16)) for i in range(1, 21)]
    script += [Packet(PacketType.SCAN_END, 21, ts, 1, 0, 0, 0, b"{}")]
    link = ScriptLink(script)
    alarms: list[str] = []
    ch = ScannerChannel(
        edge_cfg,
        edge_cfg.scanners[0],
        EdgeKey.load(edge_cfg.key),
        CirPublic.load(edge_cfg.cir_public),
        ctx,
        link,
        None,
        on_alarm=lambda sid, kind, msg: alarms.append(kind),
    )
    db = FailingCommit(ch.spool._db)
    ch.spool._db = db  # type: ignore[assignment]
    original = ch.spool.append
    calls = 0

    def append(*args: Any, **kw: Any) -> None:
        nonlocal calls
        calls += 1
        db.fail = calls == 2  # the DATA block meets a full disk
        original(*args, **kw)

    monkeypatch.setattr(ch.spool, "append", append)
    ch._may_read.set()
    task = asyncio.create_task(ch._reader())
    try:
        await until(lambda: "storage_full" in alarms)
        assert ch.storage_error is not None and ch.storage_error.path == str(ch.spool.path)
        assert ch.spool.state.head_seq == 0 and ch.spool.state.link_next_seq == 1
        db.fail = False
        await until(lambda: ch.spool.state.link_next_seq == 22)
        assert alarms == ["storage_full", "storage_ok"] and ch.storage_error is None
        assert [s for s, _ in link.starts] == [0, 1]  # again from the durable position
        assert ch.spool.state.head_seq == 2 and ch.spool.depth == 3
        assert ch.stats.lines == 20 + 20  # the 20 lines were read twice, stored once
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        ch.spool._db = db.db
        await ch.close()


# -- alarms reach central whatever the block stream (kind 1) ----------------------------
def sent_kinds(sent: list[list[bytes]]) -> list[str]:
    out = []
    for frames in sent:
        msg, _ = decode(frames)
        out.append(msg.kind if isinstance(msg, Alarm) else type(msg).__name__)
    return out


async def test_alarms_and_heartbeats_go_to_central_while_its_blocks_are_refused(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[list[bytes]] = []

    def send_nowait(_sock: object, frames: list[bytes]) -> bool:
        sent.append(frames)
        return True

    monkeypatch.setattr(channel_mod, "send_nowait", send_nowait)
    ch, _, _ = make(edge_cfg, ctx, FakeControl(0))
    ch._gate = AlarmGate()
    try:
        ch.alarm("unsafe", "unsafe: interlock door-a is open: arming refused")
        assert sent == [] and len(ch._pending_alarms) == 1  # central not heard yet
        ch.win.heard()  # central answers, but refuses the block stream (never welcomed)
        ch.win.refuse("edge not enrolled or revoked")
        ch._flush_alarms()
        assert sent_kinds(sent) == ["unsafe"]
        ch.alarm("safety_clear", "safe again")
        ch.alarm("storage_full", "the spool cannot write")
        for _ in range(50):
            ch.alarm("control_link_down", "down")  # a storm of one kind is one alarm
        assert sent_kinds(sent) == ["unsafe", "safety_clear", "storage_full", "control_link_down"]
        # heartbeats too, though not welcomed
        ka = asyncio.create_task(ch._keepalive())
        await until(lambda: "Heartbeat" in sent_kinds(sent))
        ka.cancel()
        await asyncio.gather(ka, return_exceptions=True)
        # while central is away alarms wait, at most PENDING_ALARMS of them
        ch.win.connected = False
        for i in range(channel_mod.PENDING_ALARMS + 500):
            ch.alarm(f"k{i}", "m")
        assert len(ch._pending_alarms) == channel_mod.PENDING_ALARMS
        assert ch._pending_alarms[-1].kind == f"k{channel_mod.PENDING_ALARMS + 499}"
    finally:
        await ch.close()


# -- a chain fork quarantines and goes on (kind 2) --------------------------------------
async def test_a_chain_fork_quarantines_the_spool_and_reads_again_from_the_cir(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    ts = time.time_ns()
    script = [Packet(PacketType.SCAN_START, 0, ts, 1, 0, 0, 0, b'{"channels": 4}')]
    script += [Packet(PacketType.LINE, i, ts, 1, i - 1, 4, 0, bytes(16)) for i in range(1, 21)]
    script += [Packet(PacketType.SCAN_END, 21, ts, 1, 0, 0, 0, b"{}")]
    link = ScriptLink(script)
    alarms: list[tuple[str, str]] = []
    ch = ScannerChannel(
        edge_cfg,
        edge_cfg.scanners[0],
        EdgeKey.load(edge_cfg.key),
        CirPublic.load(edge_cfg.cir_public),
        ctx,
        link,
        None,
        on_alarm=lambda sid, kind, msg: alarms.append((kind, msg)),
    )
    ch._may_read.set()
    reader = asyncio.create_task(ch._reader())
    try:
        await until(lambda: ch.spool.state.link_next_seq == 22)
        assert ch.spool.depth == 3  # SCAN_START, DATA, SCAN_END: blocks 0..2
        other = "ab" * 32  # the CIR's block 1 is another one
        w = Welcome(scanner="s1", last_seq=1, last_hash=other, link_next_seq=5, boot="c0ffee")
        ch._on_welcome(w)
        assert ch.refused is None and ch.win.welcomed  # goes on, not refused for ever
        assert [k for k, _ in alarms] == ["chain_fork"]
        assert "3 unacknowledged block(s) (0..2) quarantined" in alarms[0][1]
        st = ch.spool.state
        assert (st.head_seq, st.head_hash.hex(), st.acked_seq) == (1, other, 1)
        assert ch.spool.quarantined == 3 and ch.spool.depth == 0
        summary = ch.summary()
        assert summary["quarantined"] == 3 and summary["forks"] == 1
        # the data link is read again from the CIR's position; new blocks chain on its head
        await until(lambda: [s for s, _ in link.starts] == [0, 5])
        await until(lambda: ch.spool.state.link_next_seq == 22)
        assert ch.spool.state.head_seq >= 2 and ch.spool.get(2) is not None
        assert ch.spool.hash_at(2) is not None
        # the same WELCOME again is no second fork
        ch._on_welcome(w)
        assert [k for k, _ in alarms] == ["chain_fork"] and ch.spool.quarantined == 3
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await ch.close()


# -- the control link must reach the right scanner (kind 3) -----------------------------
class SerialControl(FakeControl):
    def __init__(self, serial: str) -> None:
        super().__init__(absent=0)
        self.serial = serial
        self.beam_offs = 0

    async def identify(self) -> ScannerIdentity:
        return ScannerIdentity("v", "m", self.serial, "1.0", 4)

    async def beam_off(self) -> None:
        self.beam_offs += 1


async def test_a_control_link_to_another_scanner_is_down_and_never_used(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_mod, "CONTROL_BACKOFF", (0.01, 0.02))
    ctl = SerialControl("SIM0005-scanner2")
    ch, alarms, _ = make(edge_cfg, ctx, ctl)
    ch._link_serial = "SIM0004-scanner1"
    async with controlling(ch):
        await until(lambda: ctl.opens >= 5)
        assert not ch.control_up and ctl.arms == 0  # not armed: another scanner's cable
        assert alarms == ["scanner_mismatch", "control_link_down"]  # once, not per try
        assert "check the serial cable" in ch.waiting_for
        # the right cable again: up, armed, and this scanner remembered
        ctl.serial = "SIM0004-scanner1"
        await until(lambda: ch.control_up and ctl.arms == 1)
        assert ch.spool.meta("serial") == "SIM0004-scanner1"
        # the cable is moved while the data link is not known (an edge restart): the
        # remembered serial decides
        ch._link_serial = ""
        ctl.serial = "SIM0005-scanner2"
        ctl.events_q.put_nowait(DriverError("serial device /dev/ttyX went away"))
        await until(lambda: alarms.count("scanner_mismatch") == 2)
        await asyncio.sleep(0.05)
        assert not ch.control_up and ctl.arms == 1


async def test_a_data_link_serial_learned_later_takes_a_wrong_control_link_down(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_mod, "CONTROL_BACKOFF", (0.01, 0.02))
    ctl = SerialControl("SIM0005-scanner2")
    ch, alarms, _ = make(edge_cfg, ctx, ctl)
    ch.spool.set_meta("serial", "SIM0005-scanner2")  # wrongly learned (an older edge)
    ch._link_serial = ""
    async with controlling(ch):
        await until(lambda: ch.control_up)
        ch._link_serial = "SIM0004-scanner1"  # the data link's SESSION says otherwise
        ch._recheck_identity()
        await until(lambda: not ch.control_up)
        assert "scanner_mismatch" in alarms


async def test_a_scanner_replaced_on_purpose_is_taken_with_an_alarm(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctl = SerialControl("SIM0009-new")
    ch, alarms, _ = make(edge_cfg, ctx, ctl)
    ch.spool.set_meta("serial", "SIM0004-scanner1")
    ch._link_serial = "SIM0009-new"
    async with controlling(ch):
        await until(lambda: ch.control_up and ctl.arms == 1)
        assert alarms == ["scanner_replaced"] and ch.spool.meta("serial") == "SIM0009-new"


async def test_a_first_start_arms_only_once_the_data_link_says_which_scanner_it_is(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context
) -> None:
    ctl = SerialControl("SIM0005-scanner2")
    ch, alarms, _ = make(edge_cfg, ctx, ctl)
    ch._link_serial = ""  # no SESSION yet, nothing remembered
    async with controlling(ch):
        await until(lambda: ch.control_up)  # usable for a beam stop at once
        await asyncio.sleep(0.05)
        assert ctl.arms == 0 and ch.spool.meta("serial") == ""
        ch._link_serial = "SIM0004-scanner1"  # another scanner's cable after all
        ch._recheck_identity()
        await until(lambda: not ch.control_up)
        assert ctl.arms == 0 and alarms[0] == "scanner_mismatch"
        ctl.serial = "SIM0004-scanner1"  # the right cable: up, remembered, armed
        await until(lambda: ch.control_up and ctl.arms == 1)
        assert ch.spool.meta("serial") == "SIM0004-scanner1"


async def test_a_deferred_arm_happens_when_the_data_link_confirms(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context
) -> None:
    ctl = SerialControl("SIM0004-scanner1")
    ch, _, _ = make(edge_cfg, ctx, ctl)
    ch._link_serial = ""
    async with controlling(ch):
        await until(lambda: ch.control_up)
        assert ctl.arms == 0
        ch._link_serial = "SIM0004-scanner1"
        ch._recheck_identity()
        await until(lambda: ctl.arms == 1)
        assert ch.spool.meta("serial") == "SIM0004-scanner1"


# -- a scanner disarmed behind the edge's back is re-armed (kind 4) ---------------------
def status(armed: bool, state: str = "") -> ControlEvent:
    st = state or ("armed" if armed else "idle")
    f = [st, str(int(armed)), "0", "-", "-"]
    return ControlEvent("STATUS", f, "STS," + ",".join(f))


async def test_a_scanner_disarmed_behind_our_back_is_re_armed_once_alarmed(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edge._scanner_rules.DISARMED_CONFIRM_S", 0.05)
    monkeypatch.setattr(channel_mod, "REARM_BACKOFF", (0.05, 0.2))
    ctl = SerialControl("SN1")
    ch, alarms, _ = make(edge_cfg, ctx, ctl)
    async with controlling(ch):
        await until(lambda: ch.control_up and ctl.arms == 1)
        ctl.events_q.put_nowait(status(False))  # maybe sent before our own ARM: no action
        await asyncio.sleep(0.02)
        assert ctl.arms == 1 and alarms == []
        ctl.events_q.put_nowait(status(True))
        await asyncio.sleep(0.1)
        for _ in range(3):  # disarmed, and it stays so
            ctl.events_q.put_nowait(status(False))
            await asyncio.sleep(0.06)
        await until(lambda: ctl.arms >= 2)
        assert alarms == ["scanner_disarmed"]
        assert ctl.arms <= 3  # with a backoff, not once per STATUS
        ctl.events_q.put_nowait(status(True))
        await asyncio.sleep(0.02)
        # disarmed while the edge wants it so: left alone
        ch.may_arm = lambda: False  # unsafe
        n = ctl.arms
        for _ in range(4):
            ctl.events_q.put_nowait(status(False))
            await asyncio.sleep(0.06)
        assert ctl.arms == n and alarms == ["scanner_disarmed"]
        ch.may_arm = lambda: True
        (Path(edge_cfg.state_dir) / "s1.maintenance").touch()
        for _ in range(4):
            ctl.events_q.put_nowait(status(False))
            await asyncio.sleep(0.06)
        assert ctl.arms == n


# -- a beam stop does not wait on the reopen backoff (kind 5) ---------------------------
async def test_urgent_control_reopens_at_once_and_then_every_quarter_second(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_mod, "CONTROL_BACKOFF", (5.0, 5.0))
    ctl = FakeControl(absent=1)
    ch, _, _ = make(edge_cfg, ctx, ctl)
    async with controlling(ch):
        await until(lambda: ctl.opens == 1)
        await asyncio.sleep(0.05)  # now in its 5 s backoff; the device is back
        t0 = time.monotonic()
        ch.urgent_control()
        await until(lambda: ch.control_up, timeout=1.0)
        assert time.monotonic() - t0 < 0.2  # at once, not after 5 s
        # absent for three more tries while urgent: one every URGENT_S
        ctl.absent = 3
        ctl.events_q.put_nowait(DriverError("serial device /dev/ttyX went away"))
        t0 = time.monotonic()
        await until(lambda: ch.control_up and ctl.opens == 6, timeout=2.0)
        dt = time.monotonic() - t0
        assert 2 * channel_mod.URGENT_S <= dt < 4 * channel_mod.URGENT_S + 0.2
        # no longer urgent: the backoff again
        ch.urgent_control(False)
        ctl.absent = 1
        ctl.events_q.put_nowait(DriverError("serial device /dev/ttyX went away"))
        await until(lambda: not ch.control_up)
        await asyncio.sleep(0.5)
        assert ctl.opens == 6  # waiting out the 5 s backoff


class StopControl(SerialControl):
    """A control link that logs the safety steps."""

    def __init__(self) -> None:
        super().__init__("SN1")
        self.calls: list[tuple[str, float]] = []

    async def beam_off(self) -> None:
        self.calls.append(("beam_off", time.monotonic()))

    async def stop_scan(self) -> None:
        self.calls.append(("stop_scan", time.monotonic()))

    async def disarm(self) -> None:
        self.calls.append(("disarm", time.monotonic()))


async def test_a_beam_stop_waiting_on_a_vanished_device_goes_out_soon_after_it_is_back(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Field test: the beam went off 4.1 s after the device was back (the reopen backoff)."""
    from edge._safety import SafetyGuard
    from tests.unit.test_safety import Clock, report
    from tests.unit.test_safety import make as make_safety

    monkeypatch.setattr(channel_mod, "CONTROL_BACKOFF", (5.0, 5.0))
    ctl = StopControl()
    ch, alarms, _ = make(edge_cfg, ctx, ctl)
    clock = Clock()
    safety = make_safety(clock)
    guard = SafetyGuard(ch, safety, scanning=lambda: True)
    safety.link(True)
    report(safety, clock)
    clock.advance(0.3)
    assert safety.evaluate()
    task = asyncio.create_task(ch._control())
    try:
        await until(lambda: ch.control_up)
        ctl.absent = 10**6  # the device vanishes; the channel waits 5 s between reopens
        ctl.events_q.put_nowait(DriverError("serial device /dev/ttyX went away"))
        await until(lambda: not ch.control_up)
        report(safety, clock, **{"door-a": "open"})  # the interlock trips meanwhile
        await until(lambda: "beam_stop_failed" in alarms)
        opens = ctl.opens
        await asyncio.sleep(0.6)
        # every URGENT_S while the guard waits (it looks every 0.05 s: no faster)
        assert 1 <= ctl.opens - opens <= 0.6 / channel_mod.URGENT_S + 1
        back = time.monotonic()
        ctl.absent = 0  # the device is back
        await until(lambda: any(c == "beam_off" for c, _ in ctl.calls), timeout=4.0)
        t_off = next(t for c, t in ctl.calls if c == "beam_off")
        # within a few of the guard's URGENT_S retries, not after the 5 s backoff (the
        # margin is for a machine whose other work starves this test of CPU)
        assert t_off - back < 3.0
        await until(lambda: "beam_stopped" in alarms)
        assert not ch._urgent  # the guard is done: the ordinary backoff again
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await guard.close()
        await ch.close()


async def test_a_cir_ahead_of_a_spool_with_unacknowledged_blocks_keeps_them_in_quarantine(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context
) -> None:
    """The CIR ahead may be a spool that lost commits, or another writer: nothing deleted."""
    alarms: list[tuple[str, str]] = []
    ch = ScannerChannel(
        edge_cfg,
        edge_cfg.scanners[0],
        EdgeKey.load(edge_cfg.key),
        CirPublic.load(edge_cfg.cir_public),
        ctx,
        FakeLink(),
        None,
        on_alarm=lambda sid, kind, msg: alarms.append((kind, msg)),
    )
    try:
        ch.spool.mark_started()
        for i in range(3):
            ch.spool.append(i, 1, b"x" * 10, bytes([i]) * 32, i + 1)
        w = Welcome(scanner="s1", last_seq=7, last_hash="cd" * 32, link_next_seq=40, boot="c0ffee")
        ch._on_welcome(w)
        assert ch.spool.quarantined == 3 and ch.spool.depth == 0
        assert ch.spool.state.head_seq == 7 and ch.spool.state.link_next_seq == 40
        assert [k for k, _ in alarms] == ["spool_behind"] and "quarantine" in alarms[0][1]
    finally:
        await ch.close()


# -- a stream central refuses is not scanned into nowhere ------------------------------
class DisarmControl(SerialControl):
    def __init__(self, serial: str) -> None:
        super().__init__(serial)
        self.disarms = 0

    async def disarm(self) -> None:
        self.disarms += 1


async def test_a_refused_stream_disarms_the_scanner_and_is_never_re_armed(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.messages import Nack

    monkeypatch.setattr("edge._scanner_rules.DISARMED_CONFIRM_S", 0.05)
    monkeypatch.setattr(channel_mod, "REARM_BACKOFF", (0.05, 0.2))
    ctl = DisarmControl("SN1")
    ch, alarms, _ = make(edge_cfg, ctx, ctl)
    async with controlling(ch):
        await until(lambda: ch.control_up and ctl.arms == 1)
        why = "scanner s1 is streamed by another process of edge e1"
        ch._on_nack(Nack(scanner="s1", seq=-1, expected=-1, reason=why, fatal=True))
        await until(lambda: ctl.disarms == 1)  # idle: at once (a running scan may end)
        assert "refused" in alarms and ch.refused == why
        for _ in range(4):  # disarmed, and the edge does not arm it again while refused
            ctl.events_q.put_nowait(status(False))
            await asyncio.sleep(0.06)
        assert ctl.arms == 1
