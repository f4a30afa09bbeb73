"""A commit held up does not silence central: heartbeats are answered meanwhile.

An edge takes a central that does not answer for ``stall_s`` for a dead one and,
with several aggregators, fails over. A commit can take seconds (an object store
under load, a database lock), so central answers heartbeats as soon as it has
read them, and acknowledges blocks only once they are committed. Here the CIR's
SQLite file is locked by another process while a block waits for its commit.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from core.messages import Ack, BlockMsg, Heartbeat, Hello, Nack, Welcome, decode
from core.seal import genesis_hash
from tests.system._cluster import Cluster, wait_until
from tests.system.test_forgery import SCANNER, FakeEdge

pytestmark = pytest.mark.system


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.enroll()
    c.start_central()
    yield c
    c.stop_all()


@pytest.fixture
def held(cluster: Cluster) -> Iterator[tuple[zmq.asyncio.Context, sqlite3.Connection]]:
    """A ZeroMQ context for the test's edge, and a second connection to the CIR that
    the test locks (closed after the test)."""
    ctx = zmq.asyncio.Context()
    lock = sqlite3.connect(cluster.base / "cir" / "cir.sqlite", isolation_level=None)
    yield ctx, lock
    lock.close()
    ctx.destroy(linger=0)


async def _first_of(sock: zmq.asyncio.Socket, kinds: Any, timeout: float) -> Any:
    """The first message of ``kinds`` (a type or a union) that ``sock`` receives within
    ``timeout`` s, skipping others; None if none came."""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        if await sock.poll(int(left * 1000) + 1):
            m = decode(await sock.recv_multipart())[0]
            if isinstance(m, kinds):
                return m
    return None


async def _block_behind_a_lock(
    cluster: Cluster, ctx: zmq.asyncio.Context, lock: sqlite3.Connection
) -> tuple[FakeEdge, str]:
    """A welcomed edge whose first block waits for a commit that another process's
    write lock on the CIR holds up; the edge and central's boot id."""
    edge = FakeEdge(cluster, cluster.edge_key, ctx)
    hello = Hello(edge=edge.key.id, scanner=SCANNER, head_seq=-1, head_hash="", boot="7e")
    w = await edge.request(hello.frames(), timeout=10)
    assert isinstance(w, Welcome)
    lock.execute("BEGIN IMMEDIATE")  # another writer holds the CIR
    raw, _ = edge.seal(0, genesis_hash(SCANNER))
    await edge.sock.send_multipart(BlockMsg(scanner=SCANNER, seq=0).frames(raw))
    return edge, w.boot


async def test_heartbeats_are_answered_while_a_commit_waits(
    cluster: Cluster, held: tuple[zmq.asyncio.Context, sqlite3.Connection]
) -> None:
    ctx, lock = held
    edge, boot = await _block_behind_a_lock(cluster, ctx, lock)
    sent = time.monotonic()
    hb = Heartbeat(sender=f"{edge.key.id}/{SCANNER}", boot="7e", state={})
    await edge.sock.send_multipart(hb.frames())
    got: list[object] = []
    while time.monotonic() - sent < 1.5 and not any(isinstance(m, Heartbeat) for m in got):
        if await edge.sock.poll(100):
            got.append(decode(await edge.sock.recv_multipart())[0])
    beats = [m for m in got if isinstance(m, Heartbeat)]
    assert beats, f"no heartbeat answered within 1.5 s while the commit waits: {got!r}"
    assert beats[0].boot == boot
    assert not any(isinstance(m, Ack) for m in got), "a block acknowledged uncommitted"
    assert cluster.sql("SELECT seq FROM blocks") == []

    lock.execute("ROLLBACK")  # the lock goes: the block is committed and acknowledged
    ack = await _first_of(edge.sock, Ack, 15)
    assert ack is not None and ack.seq == 0
    assert cluster.sql("SELECT seq FROM blocks") == [(0,)]


async def test_a_central_whose_commit_is_stuck_falls_silent(
    cluster: Cluster, held: tuple[zmq.asyncio.Context, sqlite3.Connection]
) -> None:
    # a commit held for longer than COMMIT_STUCK_S is a central that cannot write: it
    # stops answering ahead, so edges with another aggregator go there
    from central._commit import COMMIT_STUCK_S

    ctx, lock = held
    edge, _ = await _block_behind_a_lock(cluster, ctx, lock)
    held_at = time.monotonic()
    hb = Heartbeat(sender=f"{edge.key.id}/{SCANNER}", boot="7e", state={}).frames()
    answered: list[float] = []  # when each answer came, s after the lock
    while time.monotonic() - held_at < COMMIT_STUCK_S + 3:
        await edge.sock.send_multipart(hb)
        end = time.monotonic() + 0.5
        while (left := end - time.monotonic()) > 0:
            if await edge.sock.poll(int(left * 1000) + 1):
                m = decode(await edge.sock.recv_multipart())[0]
                assert not isinstance(m, Ack)
                if isinstance(m, Heartbeat):
                    answered.append(time.monotonic() - held_at)
    assert answered and answered[0] < 1.5, answered  # busy: answered
    assert not [t for t in answered if t > COMMIT_STUCK_S + 1], answered  # stuck: silent
    lock.execute("ROLLBACK")
    deadline = time.monotonic() + 15
    kinds: set[type] = set()
    while time.monotonic() < deadline and not {Ack, Heartbeat} <= kinds:
        if await edge.sock.poll(200):
            kinds.add(type(decode(await edge.sock.recv_multipart())[0]))
    assert {Ack, Heartbeat} <= kinds  # written again: acknowledged, and answered
    # and it said so: a storage alarm naming the wait, and its end
    assert wait_until(lambda: cluster.alarms("storage_ok"), timeout=15, what="the storage_ok alarm")
    stuck = [m for _, _, m in cluster.alarms("storage") if "a commit has waited" in m]
    assert stuck and "cir.sqlite" in stuck[0], cluster.alarms()


async def test_an_edge_restarted_while_a_commit_is_stuck_is_welcomed(
    cluster: Cluster, held: tuple[zmq.asyncio.Context, sqlite3.Connection]
) -> None:
    # the old process's last block waits in central while the commit before it is
    # stuck; the process dies and a new one says HELLO. The held block shows the old
    # process alive as of when it came, not as of when it is staged: the newcomer is
    # welcomed, not refused as "another process of the edge"
    ctx, lock = held
    old = FakeEdge(cluster, cluster.edge_key, ctx, boot="7e")
    hello = Hello(edge=old.key.id, scanner=SCANNER, head_seq=-1, head_hash="", boot="7e")
    assert isinstance(await old.request(hello.frames(), timeout=10), Welcome)
    lock.execute("BEGIN IMMEDIATE")
    prev = genesis_hash(SCANNER)
    for seq in (0, 1):  # the first in the stuck commit, the next staged for the one after
        raw, prev = old.seal(seq, prev, line=seq)
        await old.sock.send_multipart(BlockMsg(scanner=SCANNER, seq=seq).frames(raw))
    # a heartbeat answered: central now waits on its commit, holding what comes
    hb = Heartbeat(sender=f"{old.key.id}/{SCANNER}", boot="7e", state={})
    await old.sock.send_multipart(hb.frames())
    beat = await _first_of(old.sock, Heartbeat, 5)
    assert beat is not None, "no heartbeat answered while the commit waits"
    raw, h2 = old.seal(2, prev, line=2)
    await old.sock.send_multipart(BlockMsg(scanner=SCANNER, seq=2).frames(raw))
    old.sock.close()  # killed; the new process starts once the commit has been stuck
    wait_until(
        lambda: "a commit has waited" in (cluster.logs / "central.log").read_text(),
        timeout=20,
        what="central to say that its commit is stuck",
    )
    new = FakeEdge(cluster, cluster.edge_key, ctx, boot="8f")
    again = Hello(edge=new.key.id, scanner=SCANNER, head_seq=2, head_hash=h2.hex(), boot="8f")
    await new.sock.send_multipart(again.frames())
    lock.execute("ROLLBACK")
    answer = await _first_of(new.sock, Welcome | Nack, 15)
    assert isinstance(answer, Welcome), getattr(answer, "reason", answer)
    assert answer.last_seq == 2  # the old process's blocks are in, and it is told so
    assert not cluster.alarms("duplicate_edge"), cluster.alarms()
