"""The channel shell's own rules, with fake drivers: control link outages, storage pauses.

The pure cores have their own tests (test_assembler.py, test_uplink.py); these
drive ScannerChannel's loops directly with a real ZeroMQ context and spool.
"""

from __future__ import annotations

import asyncio
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
from core.net import free_port
from drivers import (
    ControlEvent,
    LinkStats,
    Packet,
    PacketType,
    ScannerIdentity,
    ScannerStatus,
)
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
    return ch, alarms, events


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
    task = asyncio.create_task(ch._control())
    try:
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
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ch.close()


async def test_while_down_the_channel_says_what_it_waits_for(
    edge_cfg: EdgeConfig, ctx: zmq.asyncio.Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_mod, "CONTROL_BACKOFF", (0.01, 0.02))
    ctl = FakeControl(absent=10**6)
    ch, alarms, _ = make(edge_cfg, ctx, ctl)
    task = asyncio.create_task(ch._control())
    try:
        await until(lambda: ctl.opens >= 5)
        assert alarms == ["control_link_down"]  # once per outage, not per try
        assert "s1" in ch.waiting_for and "/dev/ttyX" in ch.waiting_for
        assert not ch.identified and not ch.control_up
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await ch.close()


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
