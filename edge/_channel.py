"""One scanner's path through the edge: driver → scan assembly → seal → spool → ZeroMQ.

:class:`ScannerChannel` is the shell: it owns the socket, the tasks, the spool
and the drivers, and leaves the rules to two pure cores:

* :class:`edge._assembler.ScanAssembler` (packets in, blocks and alarms out);
* :class:`edge._uplink.UplinkWindow` (what to send, when to say hello).

Stages, each counting what it handled:

* **assemble**: packets from the data link become blocks (the assembler);
* **seal**: encrypt to the CIR, sign, chain (``core.seal``);
* **spool**: durably store with the chain head and data-link position;
* **send**: DEALER → ROUTER with CurveZMQ; a block leaves the spool only on ACK.

Every task belongs to the channel's :class:`asyncio.TaskGroup` and runs under
:func:`core.runtime.supervise`: one that crashes is alarmed (``task_crashed``)
and restarted with backoff. The channel's rounds (:attr:`ScannerChannel.beat`)
stop when one of its tasks is dead, and the daemon's watchdog with them.

When the spool cannot write (disk full, I/O error: ``StorageError``) the data
link is paused, ``storage_full`` is alarmed with the path and the free space,
the spool is probed every second, and reading resumes from the durable link
position once it can write again; what the scanner could no longer replay
comes back from the link as a gap (a GAP block and ``data_lost``).

When the control link fails the serial device is closed and opened again by
its path with a capped backoff; ``control_link_down`` / ``control_link_up``
are alarmed once per outage and ``LINK_DOWN`` / ``LINK_UP`` events go to the
listeners (the uptime tracker's ``fault``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from core.config import EdgeConfig, ScannerConfig
from core.errors import DriverError, NiiError, ProtocolError, StorageError
from core.keys import CirPublic, EdgeKey
from core.messages import Ack, Alarm, BlockMsg, Heartbeat, Hello, Nack, Welcome, decode
from core.net import send_nowait, watch_handshake
from core.runtime import Backoff, cancel_and_wait, supervise
from core.seal import BlockKind, Sealer, genesis_hash
from drivers import ControlEvent, DataLink, LinkEpoch, LinkGap, Packet, ScannerControl
from edge._assembler import (
    AlarmOut,
    AssemblerStats,
    BlockOut,
    Output,
    PositionOut,
    ScanAssembler,
    with_att_role,
)
from edge._spool import Spool
from edge._uplink import WINDOW_BLOCKS, Tick, UplinkWindow

__all__ = ["ChannelStats", "ScannerChannel", "with_att_role"]

log = logging.getLogger("nii.edge")

RELEASE_S = 0.25
CACHE_BYTES = 256 * 1024 * 1024
QUEUE_PACKETS = 256
"""Packets read ahead of the assembler; when it pauses, the data link stops being read."""
PROBE_S = 1.0
"""How often a spool that could not write is probed (s)."""
CONTROL_BACKOFF = (0.5, 5.0)
"""First and longest wait (s) before reopening a failed control link's device."""
ROUND_S = 1.0
"""How often the channel's rounds check its tasks (s)."""

_ITEM = Packet | LinkGap | LinkEpoch


@dataclass
class StageStats:
    """Counters of one pipeline stage (odin-data plugin style)."""

    handled: int = 0
    rejected: int = 0
    seconds: float = 0.0


@dataclass
class ChannelStats:
    """Counters of one channel; the assembler's own are read through."""

    asm: AssemblerStats = field(default_factory=AssemblerStats)
    blocks_sealed: int = 0
    blocks_sent: int = 0
    blocks_resent: int = 0
    blocks_acked: int = 0
    nacks: int = 0
    task_crashes: int = 0
    storage_pauses: int = 0
    control_outages: int = 0
    stages: dict[str, StageStats] = field(
        default_factory=lambda: {n: StageStats() for n in ("assemble", "seal", "spool", "send")}
    )

    @property
    def lines(self) -> int:
        """Image lines assembled."""
        return self.asm.lines

    @property
    def calib_lines(self) -> int:
        """Calibration (dark, air) lines assembled."""
        return self.asm.calib_lines

    @property
    def gaps(self) -> int:
        """GAP blocks made."""
        return self.asm.gaps

    @property
    def lost_packets(self) -> int:
        """Data-link packets lost for good or refused."""
        return self.asm.lost_packets

    @property
    def scans_started(self) -> int:
        """Scan-start records seen."""
        return self.asm.scans_started

    @property
    def scans_ended(self) -> int:
        """Scan-end records seen."""
        return self.asm.scans_ended


class ScannerChannel:
    """Carries one scanner's data from its driver into the CIR (the async shell).

    Public state read by the safety guard, the uptime tracker and status.json:
    :attr:`connected` (central answers), :attr:`refused`, :attr:`control_up`
    (the control link answers), :attr:`identified` (the scanner answered IDN
    once), :attr:`storage_error` (the spool cannot write), :attr:`waiting_for`
    (what the channel waits for, for systemd's ``STATUS=``) and :attr:`beat`
    (monotonic time of the channel's last round with every task alive).
    """

    def __init__(
        self,
        edge: EdgeConfig,
        cfg: ScannerConfig,
        key: EdgeKey,
        cir: CirPublic,
        ctx: zmq.asyncio.Context,
        link: DataLink,
        control: ScannerControl | None,
        *,
        on_alarm: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.edge, self.cfg, self.key, self.cir = edge, cfg, key, cir
        self.link, self.control = link, control
        self.stats = ChannelStats()
        self.boot = os.urandom(8).hex()
        self._on_alarm = on_alarm
        self.spool = Spool(
            Path(edge.state_dir) / f"{cfg.id}.spool.sqlite",
            max_bytes=int(cfg.spool_max_mb * 1024 * 1024),
            high_water=cfg.spool_high_water,
            genesis=genesis_hash(cfg.id),
        )
        self.asm = ScanAssembler(
            block_lines=cfg.block_lines,
            block_ms=cfg.block_ms,
            session=self.spool.state.link_session,
            att_role=cfg.att_role,
        )
        self.stats.asm = self.asm.stats
        self.win = UplinkWindow(
            acked=self.spool.state.acked_seq, stall_s=3 * edge.heartbeat_s, window=WINDOW_BLOCKS
        )
        self.sealer = Sealer(key.sign_private, cir.x25519_public)
        self.sock = ctx.socket(zmq.DEALER)
        self._setup_socket()
        self._cache: dict[int, bytes] = {}
        self._cache_bytes = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._may_read = asyncio.Event()
        self._restart_reader = asyncio.Event()
        self._disarmed_for_spool = False
        self._disarm_at_scan_end = False
        self._last_release = 0.0
        self._release_failed = False
        self._pending_alarms: list[Alarm] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._side: set[asyncio.Task[None]] = set()
        self.storage_error: StorageError | None = None
        self.control_up = False
        self.identified = control is None
        self._control_down_since: float | None = None
        self.waiting_for = "" if control is None else f"{cfg.id}: opening the control link"
        self.beat = time.monotonic()
        # hooks for the safety guard and the state tracker (edge._safety, edge._uptime)
        self.may_arm: Callable[[], bool] = lambda: True
        self.event_listeners: list[Callable[[Any], None]] = []
        self.heartbeat_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.heartbeat_extra: Callable[[], dict[str, Any]] = dict
        if not self.spool.fresh:
            self._may_read.set()

    def _setup_socket(self) -> None:
        s = self.sock
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTING_ID, f"{self.edge.id}/{self.cfg.id}".encode())
        s.setsockopt(zmq.RECONNECT_IVL, 100)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        s.setsockopt(zmq.SNDHWM, 1000)
        # queue only on a live connection: while central is unreachable a HELLO or
        # heartbeat is dropped (it is repeated), not piled up and replayed as hundreds
        # of HELLOs (each answered by a WELCOME that rewinds the window) when it is back
        s.setsockopt(zmq.IMMEDIATE, 1)
        # a dead peer is noticed within seconds (issue 13, kind 6): ZMTP heartbeats drop
        # a connection whose peer stopped answering, and ZeroMQ reconnects at once
        s.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
        s.setsockopt(zmq.HEARTBEAT_TTL, 3000)
        s.setsockopt(zmq.TCP_KEEPALIVE, 1)
        s.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 1)
        s.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 1)
        s.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)
        s.curve_secretkey = self.key.curve_secret
        s.curve_publickey = self.key.curve_public
        s.curve_serverkey = self.cir.curve_public

    # -- life cycle ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """Whether central was heard lately."""
        return self.win.connected

    @property
    def refused(self) -> str | None:
        """Why central refused this scanner's blocks, or None."""
        return self.win.refused

    async def run(self) -> None:
        """Serve until cancelled. Raises only if a task escaped its supervisor (a bug)."""
        self.sock.connect(self.edge.central)
        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("receiver", self._receiver),
            ("sender", self._sender),
            ("keepalive", self._keepalive),
            ("reader", self._reader),
            ("handshake", self._handshake),  # "not enrolled at central …", not silence
        ]
        if self.control is not None:
            loops.append(("control", self._control))
        try:
            async with asyncio.TaskGroup() as tg:
                for name, body in loops:
                    full = f"{self.cfg.id}.{name}"
                    self._tasks.append(
                        tg.create_task(supervise(full, body, on_crash=self._crashed), name=full)
                    )
                tg.create_task(self._rounds(), name=f"{self.cfg.id}.rounds")
        finally:
            await cancel_and_wait(list(self._side), f"{self.cfg.id} side jobs", timeout=1.0)

    async def _handshake(self) -> None:
        await watch_handshake(self.sock, self.edge.central, self.edge.id, log)

    def _crashed(self, name: str, exc: Exception, delay: float) -> None:
        self.stats.task_crashes += 1
        self.alarm(
            "task_crashed",
            f"{name} stopped ({type(exc).__name__}: {exc}); restarting in {delay:.1f} s",
            task=name,
        )

    async def _rounds(self) -> None:
        """Beat while every task of the channel is alive (read by the daemon's watchdog)."""
        while True:
            if all(not t.done() for t in self._tasks):
                self.beat = time.monotonic()
            await asyncio.sleep(ROUND_S)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        """Run a short side job (arm, disarm) owned by the channel; its failure is logged."""

        async def job() -> None:
            try:
                await coro
            except NiiError as exc:
                log.warning("%s: %s: %s", self.cfg.id, name, exc)

        t = asyncio.get_running_loop().create_task(job(), name=f"{self.cfg.id}.{name}")
        self._side.add(t)
        t.add_done_callback(self._side.discard)

    async def close(self) -> None:
        """Close the drivers, the socket and the spool."""
        with contextlib.suppress(Exception):
            await self.link.close()
        if self.control is not None:
            with contextlib.suppress(Exception):
                await self.control.close()
        self.sock.close(linger=0)
        self.spool.close()

    def alarm(self, kind: str, message: str, **details: Any) -> None:
        """Raise an alarm to central (queued, oldest dropped past 1000, while it is away)."""
        log.warning("%s: ALARM %s: %s", self.cfg.id, kind, message)
        if self._on_alarm is not None:
            self._on_alarm(self.cfg.id, kind, message)
        msg = Alarm(scanner=self.cfg.id, kind=kind, message=message, details=details)
        if (
            not self.win.welcomed
            or not self.win.connected
            or not send_nowait(self.sock, msg.frames())
        ):
            self._pending_alarms = [*self._pending_alarms[-999:], msg]

    # -- assemble, seal, spool -----------------------------------------------------------
    async def _reader(self) -> None:
        """Read the data link into the assembler; pause it while the spool cannot write."""
        while True:
            await self._may_read.wait()
            self._restart_reader.clear()
            st = self.spool.state
            self.asm.reset(st.link_session)
            log.info(
                "%s: reading the data link from packet %d (session %s)",
                self.cfg.id,
                st.link_next_seq,
                st.link_session or "unknown",
            )
            queue: asyncio.Queue[tuple[_ITEM, str]] = asyncio.Queue(QUEUE_PACKETS)
            # the pump is this task's own: stopped (cancelled again until it is, at
            # most 2 s: a driver's reconnect loop may swallow one cancellation on
            # Python 3.11) before the link is read again or the channel stops
            pump = asyncio.create_task(
                self._pump(st.link_next_seq, st.link_session, queue),
                name=f"{self.cfg.id}.pump",
            )
            paused: StorageError | None = None
            try:
                await self._assemble(queue, pump)
            except StorageError as exc:
                paused = exc
            finally:
                await cancel_and_wait([pump], f"{self.cfg.id} data link", timeout=2.0)
            if paused is not None:
                await self._storage_pause(paused)

    async def _pump(
        self, start: int, session: str, queue: asyncio.Queue[tuple[_ITEM, str]]
    ) -> None:
        it = self.link.packets(start, session)
        try:
            async for item in it:
                # the session the link followed when it gave the item (it adopts the
                # scanner's first one silently when started without one)
                await queue.put((item, getattr(self.link, "session", "") or ""))
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _assemble(
        self, queue: asyncio.Queue[tuple[_ITEM, str]], pump: asyncio.Task[None]
    ) -> None:
        """Feed the assembler until asked to restart.

        Raises:
            StorageError: the spool could not store a block or position.
            Exception: what ended the data link (the pump), if it ended.
        """
        st = self.stats.stages["assemble"]
        tick = max(self.cfg.block_ms / 4000.0, 0.001)
        while not self._restart_reader.is_set():
            if pump.done() and queue.empty():
                exc = None if pump.cancelled() else pump.exception()
                raise exc or DriverError(f"the data link of {self.cfg.id} ended")
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a
                # cancellation that races with the item's arrival
                async with asyncio.timeout(tick):
                    item, session = await queue.get()
            except TimeoutError:
                self._apply(self.asm.tick())
                continue
            if self.spool.full:
                self._apply(self.asm.flush())
                log.warning("%s: spool full: pausing the data link", self.cfg.id)
                self._drained.clear()
                while self.spool.full and not self._restart_reader.is_set():
                    await self._drained.wait()
                    self._drained.clear()
            t0 = time.perf_counter()
            if not isinstance(item, LinkEpoch):
                self.asm.adopt_session(session)
            self._apply(self.asm.feed(item))
            self._apply(self.asm.tick())
            st.handled += 1
            st.seconds += time.perf_counter() - t0

    async def _storage_pause(self, exc: StorageError) -> None:
        """Hold the data link until the spool can write again, then go on from the spool."""
        self.storage_error = exc
        self.stats.storage_pauses += 1
        log.error("%s: %s: pausing the data link", self.cfg.id, exc)
        self.alarm(
            "storage_full",
            f"the spool cannot write: {exc.message}; the data link is paused "
            "(the scanner's replay buffer holds the lines)",
            path=exc.path,
            free_bytes=exc.free_bytes,
        )
        t0 = time.monotonic()
        while not self.spool.probe():
            await asyncio.sleep(PROBE_S)
        self.storage_error = None
        self.alarm(
            "storage_ok",
            f"the spool writes again after {time.monotonic() - t0:.0f} s; "
            f"{self.spool.free_bytes()} bytes free; resuming the data link",
            path=exc.path,
            free_bytes=self.spool.free_bytes(),
        )

    def _apply(self, outs: list[Output]) -> None:
        """Carry out the assembler's outputs: blocks first, in order, then their alarms.

        Raises:
            StorageError: a block or position could not be stored; the alarms of
                this batch are not raised (the packets are read again).
        """
        if not outs:
            return
        alarms: list[AlarmOut] = []
        for o in outs:
            if isinstance(o, BlockOut):
                self._seal(o)
            elif isinstance(o, PositionOut):
                self.spool.set_link(o.link_session, o.link_next)
            else:
                alarms.append(o)
        for a in alarms:
            self.alarm(a.kind, a.message, **a.details)

    def _seal(self, b: BlockOut) -> None:
        meta = {"edge": self.edge.id, "scanner": self.cfg.id, **b.meta}
        seq = self.spool.state.head_seq + 1
        t0 = time.perf_counter()
        sealed, h = self.sealer.seal(
            kind=b.kind,
            seq=seq,
            prev_hash=self.spool.state.head_hash,
            meta=meta,
            index=b.index,
            payload=b.payload,
            created_ns=time.time_ns(),
        )
        t1 = time.perf_counter()
        self.spool.append(seq, int(b.kind), sealed, h, b.link_next, b.link_session)
        if b.kind == BlockKind.SCAN_END:
            self.sealer.rotate()
        t2 = time.perf_counter()
        self.stats.blocks_sealed += 1
        self.stats.stages["seal"].handled += 1
        self.stats.stages["seal"].seconds += t1 - t0
        self.stats.stages["spool"].handled += 1
        self.stats.stages["spool"].seconds += t2 - t1
        if self._cache_bytes < CACHE_BYTES:
            self._cache[seq] = sealed
            self._cache_bytes += len(sealed)
        self._wake.set()
        if self.spool.above_high_water and self.win.acked > self.spool.state.acked_seq:
            self._last_release = time.monotonic()
            self._release(self.win.acked)  # acknowledged blocks do not count against the bound
        if self.spool.above_high_water and not self._disarmed_for_spool:
            self._disarmed_for_spool = True
            self.alarm(
                "spool_high",
                f"spool at {self.spool.bytes_used / 1e6:.1f} MB of "
                f"{self.spool.max_bytes / 1e6:.1f} MB: new scans are refused until it drains",
            )
            if self.control is not None:
                self._spawn(self._refuse_new_scans(), "refuse new scans")

    async def _refuse_new_scans(self) -> None:
        """Disarm now if idle; if a scan is running, let it finish and disarm at its end."""
        assert self.control is not None
        st = await self.control.status()
        if st.scanning:
            self._disarm_at_scan_end = True
            log.info("%s: the running scan may finish; disarming at its end", self.cfg.id)
        else:
            await self.control.disarm()

    # -- send and acknowledge ------------------------------------------------------------
    async def _sender(self) -> None:
        st = self.stats.stages["send"]
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (seq := self.win.next_seq(self.spool.state.head_seq)) is not None:
                raw = self._cache.get(seq)
                if raw is None:
                    raw = self.spool.get(seq)
                    if raw is None:  # acknowledged meanwhile
                        self.win.sent(seq)
                        continue
                    self.stats.blocks_resent += 1
                t0 = time.perf_counter()
                # copying a block into the zmq message costs less than tracking a
                # zero-copy frame through pyzmq's garbage-collector thread
                await self.sock.send_multipart(BlockMsg(scanner=self.cfg.id, seq=seq).frames(raw))
                st.handled += 1
                st.seconds += time.perf_counter() - t0
                self.stats.blocks_sent += 1
                self.win.sent(seq)

    async def _receiver(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            try:
                msg, _ = decode(frames)
            except ProtocolError as exc:
                log.warning("%s: bad message from central: %s", self.cfg.id, exc)
                continue
            self.win.heard()
            try:
                self._on_message(msg)
            except StorageError as exc:
                # the spool could not record what central said: say hello again later
                log.error("%s: %s", self.cfg.id, exc)
                self.win.welcomed = False

    def _on_message(self, msg: object) -> None:
        if isinstance(msg, Heartbeat):
            for hb_fn in self.heartbeat_listeners:
                hb_fn(msg.state)
            if self.win.on_heartbeat(msg.boot):
                log.info("%s: central restarted; saying hello again", self.cfg.id)
                self._send_hello()
        elif isinstance(msg, Welcome):
            self._on_welcome(msg)
        elif isinstance(msg, Ack):
            self._on_ack(msg)
        elif isinstance(msg, Nack):
            self._on_nack(msg)

    def _on_welcome(self, w: Welcome) -> None:
        last = w.last_seq
        if last > self.spool.state.head_seq:
            log.warning(
                "%s: the CIR is ahead of this spool (%d > %d): taking its chain head",
                self.cfg.id,
                last,
                self.spool.state.head_seq,
            )
            if not self.spool.fresh:
                self.alarm(
                    "spool_behind",
                    f"the CIR holds blocks up to {last}, this spool only to "
                    f"{self.spool.state.head_seq}; continuing from the CIR's chain head",
                )
            self.spool.adopt(last, bytes.fromhex(w.last_hash), w.link_next_seq)
            self._cache.clear()
            self._cache_bytes = 0
            self._restart_reader.set()
        else:
            if last >= 0 and last > self.spool.state.acked_seq:
                h = self.spool.hash_at(last)
                if h is not None and h.hex() != w.last_hash:
                    self.win.central_boot = w.boot
                    self.win.refuse("chain fork")
                    self.alarm(
                        "chain_fork",
                        f"the CIR's block {last} differs from this spool's; refusing to go on",
                    )
                    return
            self._release(last)
            if self.spool.fresh:
                self.spool.mark_started()
        self.win.on_welcome(last, w.boot)
        self._may_read.set()
        self._wake.set()
        log.info("%s: welcomed by central; the CIR holds blocks up to %d", self.cfg.id, last)
        pending, self._pending_alarms = self._pending_alarms, []
        for i, a in enumerate(pending):
            if not send_nowait(self.sock, a.frames()):
                self._pending_alarms = [*pending[i:], *self._pending_alarms][-1000:]
                break

    def _drop_cached(self, seq: int) -> None:
        """Forget the in-memory copies of blocks up to ``seq`` (the CIR holds them)."""
        for s in [s for s in self._cache if s <= seq]:
            self._cache_bytes -= len(self._cache.pop(s))

    def _release(self, seq: int) -> None:
        """Let the spool drop blocks up to ``seq``; a failed delete is retried later."""
        try:
            freed = self.spool.ack(seq)
        except StorageError as exc:
            if not self._release_failed:
                self._release_failed = True
                log.error("%s: %s (kept; retried on the next acknowledgement)", self.cfg.id, exc)
            return
        self._release_failed = False
        if freed:
            self.stats.blocks_acked += freed
        self._drop_cached(seq)
        if not self.spool.full:
            self._drained.set()
        if self._disarmed_for_spool and self.spool.bytes_used < self.spool.high_water_bytes // 2:
            self._disarmed_for_spool = False
            self._disarm_at_scan_end = False
            log.info("%s: spool drained; accepting scans again", self.cfg.id)
            if self.control is not None and self.cfg.arm and self.may_arm():
                self._spawn(self.control.arm(), "re-arm")

    def _on_ack(self, a: Ack) -> None:
        if not self.win.on_ack(a.seq):
            return
        self._drop_cached(a.seq)
        # deleting from the spool is batched (one transaction per RELEASE_S), except
        # when space is short; a crash before it only means the CIR gets duplicates
        # it recognises, and the WELCOME after a restart releases them anyway
        now = time.monotonic()
        if self.spool.above_high_water or now - self._last_release >= RELEASE_S:
            self._last_release = now
            self._release(a.seq)
        self._wake.set()

    def _on_nack(self, n: Nack) -> None:
        self.stats.nacks += 1
        if n.fatal:
            self.win.refuse(n.reason)
            self.alarm("refused", f"central refused block {n.seq}: {n.reason}")
            return
        log.info("%s: central wants block %d (%s)", self.cfg.id, n.expected, n.reason)
        if self.win.on_nack(n.expected, self.spool.state.head_seq):
            self._send_hello()
            return
        self._wake.set()

    def _send_hello(self) -> None:
        st = self.spool.state
        msg = Hello(
            edge=self.edge.id,
            scanner=self.cfg.id,
            head_seq=st.head_seq,
            head_hash=st.head_hash.hex(),
            boot=self.boot,
        )
        send_nowait(self.sock, msg.frames())

    async def _keepalive(self) -> None:
        hb = self.edge.heartbeat_s
        while True:
            if self.win.acked > self.spool.state.acked_seq:
                self._last_release = time.monotonic()
                self._release(self.win.acked)
            was_welcomed = self.win.welcomed
            what = self.win.tick()
            if was_welcomed and not self.win.welcomed:
                log.info("%s: no acknowledgement for %.1f s; resyncing", self.cfg.id, 3 * hb)
            if what is Tick.HELLO:
                self._send_hello()
            elif what is Tick.HEARTBEAT:
                msg = Heartbeat(
                    sender=f"{self.edge.id}/{self.cfg.id}",
                    boot=self.boot,
                    state={**self.summary(), **self.heartbeat_extra()},
                )
                send_nowait(self.sock, msg.frames())
            await asyncio.sleep(self.win.sleep_s(hb))

    # -- control link --------------------------------------------------------------------
    def _tell(self, ev: ControlEvent) -> None:
        for fn in self.event_listeners:
            fn(ev)

    def _link_down(self, reason: str) -> None:
        """The control link failed: tell listeners and central once per outage."""
        self.control_up = False
        self.waiting_for = f"{self.cfg.id}: {reason}"
        if self._control_down_since is not None:
            return
        self._control_down_since = time.monotonic()
        self.stats.control_outages += 1
        self._tell(ControlEvent("LINK_DOWN", [reason], f"LINK_DOWN,{reason}"))
        self.alarm("control_link_down", f"control link to the scanner is down: {reason}")

    def _link_up(self) -> None:
        self.control_up = True
        self.identified = True
        self.waiting_for = ""
        since, self._control_down_since = self._control_down_since, None
        if since is None:
            return
        self._tell(ControlEvent("LINK_UP", [], "LINK_UP"))
        self.alarm(
            "control_link_up",
            f"control link to the scanner is back after {time.monotonic() - since:.1f} s",
        )

    async def _control(self) -> None:
        """Open, identify, arm and listen; on failure close and reopen the device path."""
        assert self.control is not None
        ctl = self.control
        backoff = Backoff(*CONTROL_BACKOFF, reset_after_s=10.0)
        while True:
            t0 = time.monotonic()
            try:
                await ctl.open()
                ident = await ctl.identify()
                log.info(
                    "%s: scanner %s %s serial %s firmware %s, %d channels",
                    self.cfg.id,
                    ident.vendor,
                    ident.model,
                    ident.serial,
                    ident.firmware,
                    ident.channels,
                )
                self._link_up()
                if (
                    self.cfg.arm
                    and not self.spool.above_high_water
                    and self.storage_error is None
                    and self.may_arm()
                ):
                    await ctl.arm()
                    log.info("%s: scanner armed", self.cfg.id)
                async for ev in ctl.events():
                    self._tell(ev)
                    if ev.kind == "FAULT":
                        self.alarm("scanner_fault", " ".join(ev.fields))
                    elif ev.kind in ("SCAN_START", "SCAN_END"):
                        log.info("%s: %s %s", self.cfg.id, ev.kind, ",".join(ev.fields))
                        if ev.kind == "SCAN_END" and self._disarm_at_scan_end:
                            self._disarm_at_scan_end = False
                            await ctl.disarm()
                            log.info("%s: disarmed: spool above high water", self.cfg.id)
                raise DriverError(f"control link {getattr(ctl, 'path', '')} closed")
            except DriverError as exc:
                delay = backoff.after_run(time.monotonic() - t0)
                self._link_down(exc.message)
                log.warning("%s: control link: %s; reopening in %.1f s", self.cfg.id, exc, delay)
                with contextlib.suppress(Exception):
                    await ctl.close()
                await asyncio.sleep(delay)

    # -- reporting -----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """What the heartbeat and status.json say of this channel."""
        s = self.stats
        out: dict[str, Any] = {
            "lines": s.lines,
            "blocks_sealed": s.blocks_sealed,
            "blocks_acked": s.blocks_acked,
            "spool_depth": self.spool.depth,
            "spool_bytes": self.spool.bytes_used,
            "gaps": s.gaps,
            "violations": s.asm.violations,
            "control_up": self.control_up,
            "link": self.link.stats.as_dict(),
        }
        if self.storage_error is not None:
            out["storage_error"] = self.storage_error.message
        return out
