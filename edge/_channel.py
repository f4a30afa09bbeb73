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
listeners (the uptime tracker's ``fault``). While a safety action waits on the
control link (:meth:`ScannerChannel.urgent_control`), it is reopened every
:data:`URGENT_S` instead.

The control link is used only while it reaches the scanner the data link reads
(:func:`edge._scanner_rules.check_identity`: the serial numbers of the data
link's SESSION, of the control link's IDN reply and the one persisted in the
spool); otherwise it is down, with one ``scanner_mismatch`` alarm. A scanner
that reports itself disarmed while the edge wants it armed is re-armed, with
one ``scanner_disarmed`` alarm (:func:`edge._scanner_rules.should_rearm`).

Alarms go to central whenever it answers, whatever the block stream's state
(welcomed, refused); one per kind per 10 s, the repeats counted
(:class:`edge._alarms.AlarmGate`). A chain fork quarantines the spool's
unacknowledged blocks and goes on from the CIR's chain head (decision 0012).
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
from core.net import close_monitor, handshake_monitor, send_nowait, watch_handshake
from core.runtime import Backoff, cancel_and_wait, supervise
from core.seal import BlockKind, Sealer, genesis_hash
from drivers import ControlEvent, DataLink, LinkEpoch, LinkGap, Packet, ScannerControl
from drivers.lsp import parse_status
from edge._alarms import AlarmGate
from edge._assembler import (
    AlarmOut,
    AssemblerStats,
    BlockOut,
    Output,
    PositionOut,
    ScanAssembler,
    with_att_role,
)
from edge._linkhealth import LinkHealth
from edge._scanner_rules import check_identity, should_rearm
from edge._spool import Spool
from edge._uplink import MAX_FAILOVER_WAIT_S, WINDOW_BLOCKS, Tick, UplinkWindow

__all__ = ["ChannelStats", "ScannerChannel", "with_att_role"]

LONE_SILENT_S = 10.0
"""With one central endpoint, how long it may stay silent before ``central_unreachable`` (s)."""

STOP_LINGER_MS = 300
"""How long a stopping edge waits for its farewell heartbeat to leave (ms)."""

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
IDENTITY_POLL_S = 0.1
"""How often the data link's serial number is compared with the control link's (s)."""
URGENT_S = 0.25
"""How often a failed control link is reopened while a safety action waits on it (s)."""
REARM_BACKOFF = (1.0, 30.0)
"""First and longest wait (s) before arming again a scanner that refused to be re-armed."""
PENDING_ALARMS = 1000
"""Alarms kept while central is away (the oldest dropped first)."""

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
    failovers: int = 0  # switches to another aggregator endpoint
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
            calibration=cfg.calibration_doc,
        )
        if cfg.calibration is not None:
            log.info(
                "%s: calibration %s (sha256 %s) goes with every scan-start record",
                cfg.id,
                cfg.calibration,
                self.asm.calibration_sha256[:16],
            )
        self.stats.asm = self.asm.stats
        self.win = UplinkWindow(
            acked=self.spool.state.acked_seq,
            stall_s=3 * edge.heartbeat_s,
            window=WINDOW_BLOCKS,
            endpoints=len(edge.centrals),
        )
        self.sealer = Sealer(key.sign_private, cir.x25519_public)
        self.sock = ctx.socket(zmq.DEALER)
        self._setup_socket()
        #: the aggregator endpoints, tried in turn; ``_ep`` is the one connected. The
        #: edge's scanners start on different ones (by their place in the configuration),
        #: so the aggregators share the load while all of them are up
        self._endpoints = list(edge.centrals)
        place = next((i for i, sc in enumerate(edge.scanners) if sc.id == cfg.id), 0)
        self._ep = place % len(self._endpoints)
        self._cache: dict[int, bytes] = {}
        self._cache_bytes = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._may_read = asyncio.Event()
        self._restart_reader = asyncio.Event()
        self._disarmed_for_spool = False
        self._failover_alarmed = False  # central_failover raised since the last WELCOME
        self._unreachable_alarmed = False  # central_unreachable (one endpoint) raised
        #: why the scanner is to be disarmed when its running scan ends, if it is
        self._disarm_at_scan_end: str | None = None
        self._last_release = 0.0
        self._release_failed = False
        self._pending_alarms: list[Alarm] = []
        self._gate = AlarmGate()
        self.link_health = LinkHealth(f"{cfg.data_host}:{cfg.data_port}")
        self._last_welcome: tuple[str, int] = ("", -2)
        self._last_heartbeat = 0.0
        self.forks = 0
        # the control link: its scanner's serial, the urgent reopen, the re-arm
        self._control_serial = ""
        self._link_serial = ""
        self._identity_bad = asyncio.Event()
        self._mismatch_alarmed = False
        self._arm_deferred = False
        self._control_wake = asyncio.Event()
        self._urgent = False
        self._disarmed_since: float | None = None
        self._disarmed_alarmed = False
        self._rearm_at = 0.0
        self._rearm_delay = REARM_BACKOFF[0]
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
        self.wants_armed: Callable[[], bool] = lambda: True  # False: stays disarmed by hand
        self.event_listeners: list[Callable[[Any], None]] = []
        self.heartbeat_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.heartbeat_extra: Callable[[], dict[str, Any]] = dict
        if not self.spool.fresh:
            self._may_read.set()

    def _setup_socket(self) -> None:
        s = self.sock
        s.setsockopt(zmq.LINGER, 0)
        # one routing id per process (its boot id): replies meant for one process can
        # never be handed over to another that connected with the same edge id
        s.setsockopt(zmq.ROUTING_ID, f"{self.edge.id}/{self.cfg.id}/{self.boot}".encode())
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
        # watched from before the first connection: a refusal then is the usual one
        self._monitor = handshake_monitor(self.sock)
        self.sock.connect(self._endpoints[self._ep])
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
            close_monitor(self.sock, self._monitor)

    async def _handshake(self) -> None:
        await watch_handshake(
            self.sock, " or ".join(self._endpoints), self.edge.id, log, monitor=self._monitor
        )

    def _crashed(self, name: str, exc: Exception, delay: float) -> None:
        self.stats.task_crashes += 1
        self.alarm(
            "task_crashed",
            f"{name} stopped ({type(exc).__name__}: {exc}); restarting in {delay:.1f} s",
            task=name,
        )

    async def _rounds(self) -> None:
        """Beat while every task of the channel is alive (read by the daemon's watchdog);
        check the control link against the data link's serial once it is known (the
        data link announces it in its SESSION, before any packet: an idle scanner
        sends none)."""
        n = 0
        per_round = round(ROUND_S / IDENTITY_POLL_S)
        while True:
            if n % per_round == 0:
                if all(not t.done() for t in self._tasks):
                    self.beat = time.monotonic()
                # a data-link fault that lasts is one alarm, not counters climbing; only
                # while the link is being read (not paused for a full disk or spool, not
                # before the first WELCOME of a fresh spool)
                reading = (
                    self._may_read.is_set() and self.storage_error is None and not self.spool.full
                )
                if reading:
                    connected = bool(getattr(self.link, "connected", True))
                    for a in self.link_health.update(self.link.stats, connected):
                        self.alarm(a.kind, a.message)
                else:
                    self.link_health.pause()
            n += 1
            self._poll_link_serial()
            await asyncio.sleep(IDENTITY_POLL_S)

    def _poll_link_serial(self) -> None:
        serial = getattr(self.link, "serial", "") or ""
        if serial != self._link_serial:
            self._link_serial = serial
            self._recheck_identity()

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
        linger = 0
        if self.win.connected:
            # a clean stop tells central that this process no longer streams the scanner,
            # so the next one (a restart) is not refused as a second process of the edge
            bye = Heartbeat(
                sender=f"{self.edge.id}/{self.cfg.id}", boot=self.boot, state={"stopping": True}
            )
            with contextlib.suppress(zmq.ZMQError):
                send_nowait(self.sock, bye.frames())
                linger = STOP_LINGER_MS
        self.sock.close(linger=linger)
        self.spool.close()

    def alarm(self, kind: str, message: str, **details: Any) -> None:
        """Raise an alarm to central, whatever the state of the block stream.

        One per kind per :data:`edge._alarms.REPEAT_S`: the repeats are counted and
        the latest of them follows when that time has passed (``repeated``). While
        central does not answer, alarms wait (the oldest dropped past
        :data:`PENDING_ALARMS`) and go out as soon as it does.
        """
        out = self._gate.offer(kind, message, details)
        if out is None:
            log.debug("%s: alarm %s repeated (held back): %s", self.cfg.id, kind, message)
            return
        self._raise(out.kind, out.message, out.details)

    def _raise(self, kind: str, message: str, details: dict[str, Any]) -> None:
        log.warning("%s: ALARM %s: %s", self.cfg.id, kind, message)
        if self._on_alarm is not None:
            self._on_alarm(self.cfg.id, kind, message)
        # when it was raised here: central stamps an alarm when it receives it, which
        # after an outage is long after (the control room can order them by this)
        details = {**details, "raised_ns": time.time_ns()}
        msg = Alarm(scanner=self.cfg.id, kind=kind, message=message, details=details)
        self._pending_alarms = [*self._pending_alarms[-(PENDING_ALARMS - 1) :], msg]
        self._flush_alarms()

    def _flush_alarms(self) -> None:
        """Send the alarms waiting, in order, while central answers."""
        for g in self._gate.due():
            self._raise(g.kind, g.message, g.details)
        if not self._pending_alarms or not self.win.connected:
            return
        pending, self._pending_alarms = self._pending_alarms, []
        for i, a in enumerate(pending):
            if not send_nowait(self.sock, a.frames()):
                self._pending_alarms = [*pending[i:], *self._pending_alarms][-PENDING_ALARMS:]
                return

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
                self._poll_link_serial()
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
            if self.control is not None and self.control_up:
                self._spawn(self._refuse_new_scans("spool above high water"), "refuse new scans")

    async def _refuse_new_scans(self, why: str) -> None:
        """Disarm now if idle; if a scan is running, let it finish and disarm at its end."""
        assert self.control is not None
        st = await self.control.status()
        if st.scanning:
            self._disarm_at_scan_end = why
            log.info("%s: the running scan may finish; disarming at its end", self.cfg.id)
        else:
            await self.control.disarm()
            log.info("%s: disarmed: %s", self.cfg.id, why)

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
            self._flush_alarms()
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
            st, fresh = self.spool.state, self.spool.fresh
            if st.head_seq > st.acked_seq:
                # blocks the CIR may hold (a spool that lost its last commits) or not (a
                # fork: another writer went further): kept in quarantine, not deleted
                moved = self.spool.fork_to(
                    last,
                    bytes.fromhex(w.last_hash),
                    w.link_next_seq,
                    reason=f"the CIR is ahead (block {last}); it may or may not hold these",
                )
                kept = f"; its {len(moved)} unacknowledged block(s) are kept in quarantine"
            else:
                self.spool.adopt(last, bytes.fromhex(w.last_hash), w.link_next_seq)
                moved, kept = [], ""
            if not fresh:
                self.alarm(
                    "spool_behind",
                    f"the CIR holds blocks up to {last}, this spool only to "
                    f"{st.head_seq}{kept}; continuing from the CIR's chain head",
                    quarantined=len(moved),
                )
            self._cache.clear()
            self._cache_bytes = 0
            self._restart_reader.set()
        elif self._forked(w):
            self._on_fork(w)
        else:
            self._release(last)
            if self.spool.fresh:
                self.spool.mark_started()
        self.win.on_welcome(last, w.boot)
        self._failover_alarmed = False  # a new failover after this is alarmed again
        self._may_read.set()
        self._wake.set()
        if (w.boot, last) != self._last_welcome:  # the HELLOs of an outage each get one
            self._last_welcome = (w.boot, last)
            log.info("%s: welcomed by central; the CIR holds blocks up to %d", self.cfg.id, last)

    def _forked(self, w: Welcome) -> bool:
        """Whether the CIR's block ``w.last_seq`` differs from this spool's (a chain fork)."""
        if w.last_seq < 0 or w.last_seq <= self.spool.state.acked_seq:
            return False
        h = self.spool.hash_at(w.last_seq)
        return h is not None and h.hex() != w.last_hash

    def _on_fork(self, w: Welcome) -> None:
        """Quarantine the spool's unacknowledged blocks; go on from the CIR's chain head.

        The CIR is the authority on the chain; the blocks it does not hold are kept
        in the spool file's quarantine (never deleted by the edge), the data link is
        read again from the CIR's position (what the scanner no longer holds becomes
        a GAP) and ``chain_fork`` tells the control room what was quarantined.

        Raises:
            StorageError: the quarantine could not be stored (the next WELCOME retries).
        """
        last, link_next = w.last_seq, w.link_next_seq
        moved = self.spool.fork_to(
            last, bytes.fromhex(w.last_hash), link_next, reason=f"the CIR's block {last} differs"
        )
        self.forks += 1
        self._cache.clear()
        self._cache_bytes = 0
        self._restart_reader.set()
        span = f"{moved[0]}..{moved[-1]}" if moved else "none"
        self.alarm(
            "chain_fork",
            f"the CIR's block {last} differs from this spool's: {len(moved)} unacknowledged "
            f"block(s) ({span}) quarantined in {self.spool.path}; going on from the CIR's "
            f"chain head (block {last}, data-link packet {link_next})",
            count=len(moved),
            first=moved[0] if moved else None,
            last=moved[-1] if moved else None,
            seqs=moved[:100],
            cir_last_seq=last,
            link_next_seq=link_next,
            quarantine=str(self.spool.path),
        )

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
            self._disarm_at_scan_end = None
            log.info("%s: spool drained; accepting scans again", self.cfg.id)
            if (
                self.control is not None
                and self.control_up
                and self.cfg.arm
                and self.wants_armed()
                and self.may_arm()
            ):
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
            first = self.refused is None
            self.win.refuse(n.reason)
            self.alarm("refused", f"central refused block {n.seq}: {n.reason}")
            if first and self.control is not None and self.control_up:
                # its scans would reach no CIR: let the running scan end, then disarm
                log.warning("%s: central refuses this stream; disarming the scanner", self.cfg.id)
                refusing = self._refuse_new_scans("central refuses the stream")
                self._spawn(refusing, "disarm while refused")
            return
        if n.elsewhere:
            # this aggregator does not hold the stream's lease: a HELLO settles it; one
            # refused so (seq -1) means another aggregator holds it: go there
            self.win.on_elsewhere()
            if n.seq < 0 and len(self._endpoints) > 1:
                self._failover(f"it answered: {n.reason}", silent=False)
            return
        log.info("%s: central wants block %d (%s)", self.cfg.id, n.expected, n.reason)
        acked = self.win.acked
        if self.win.on_nack(n.expected, self.spool.state.head_seq):
            if n.expected <= acked:
                self.alarm(
                    "central_behind",
                    f"central asks again for block {n.expected}, but the CIR acknowledged "
                    f"blocks up to {acked}: its view of the stream is behind; saying hello "
                    "again",
                    expected=n.expected,
                    acked=acked,
                )
            self._send_hello()
            return
        self._wake.set()

    def _failover(self, why: str, *, silent: bool = True) -> None:
        """Leave the aggregator in use for the next endpoint; nothing is lost: the
        spool keeps every block the CIR has not acknowledged, and the next WELCOME
        says where to resend from.

        One ``central_failover`` alarm until the next WELCOME (the first switch), and
        one ``central_unreachable`` once every endpoint was silent in turn; the
        switches between them, slower each round (``UplinkWindow.failover_wait_s``),
        are only logged: an outage of the CIR the aggregators share is one event, not
        an alarm every few seconds for each scanner. ``silent``: the endpoint left
        was silent, not one that answered that another aggregator holds the stream.
        """
        old = self._endpoints[self._ep]
        self._ep = (self._ep + 1) % len(self._endpoints)
        new = self._endpoints[self._ep]
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disconnect(old)
        self.sock.connect(new)
        was_all_silent = self.win.all_silent
        self.win.switched(silent=silent)
        self.stats.failovers += 1
        first = not self._failover_alarmed
        self._failover_alarmed = True
        (log.warning if first else log.info)(
            "%s: leaving central %s (%s); trying %s", self.cfg.id, old, why, new
        )
        if first:
            self.alarm(
                "central_failover",
                f"edge left central {old} for {new}: {why}",
                **{"from": old, "to": new},
            )
        elif self.win.all_silent and not was_all_silent:
            self.alarm(
                "central_unreachable",
                f"none of the {len(self._endpoints)} central endpoints answers; the spool "
                f"keeps every block, and each endpoint is tried in turn, waiting up to "
                f"{MAX_FAILOVER_WAIT_S:.0f} s at each",
                endpoints=list(self._endpoints),
            )

    def _lone_central_silent(self) -> None:
        """With one central endpoint: ``central_unreachable`` once it has not answered for
        ``LONE_SILENT_S`` (a wrong address, a central that is down), again only after
        it was heard."""
        silent = self.win.silent_s()
        if silent < LONE_SILENT_S:
            if self.win.connected:
                self._unreachable_alarmed = False
            return
        if self._unreachable_alarmed:
            return
        self._unreachable_alarmed = True
        ep = self._endpoints[0]
        self.alarm(
            "central_unreachable",
            f"central {ep} has not answered for {silent:.0f} s (is it running, and is "
            "that its listen address?); the spool keeps every block until it does",
            endpoints=[ep],
        )

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
            if len(self._endpoints) > 1 and self.win.failover_due():
                self._failover(f"silent for {self.win.failover_wait_s:.1f} s")
            elif len(self._endpoints) == 1:
                self._lone_central_silent()
            was_welcomed = self.win.welcomed
            what = self.win.tick()
            if was_welcomed and not self.win.welcomed:
                log.info("%s: no acknowledgement for %.1f s; resyncing", self.cfg.id, 3 * hb)
            if what is Tick.HELLO:
                self._send_hello()
            now = time.monotonic()
            # heartbeats go out while central answers, whether or not it takes our blocks
            if what is Tick.HEARTBEAT or (self.win.connected and now - self._last_heartbeat >= hb):
                self._last_heartbeat = now
                msg = Heartbeat(
                    sender=f"{self.edge.id}/{self.cfg.id}",
                    boot=self.boot,
                    state={**self.summary(), **self.heartbeat_extra()},
                )
                send_nowait(self.sock, msg.frames())
            self._flush_alarms()
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

    def urgent_control(self, on: bool = True) -> None:
        """A safety action waits on the control link (``on``), or no longer does.

        While on, a failed control link is reopened every :data:`URGENT_S` instead
        of after its growing backoff, and the wait now in progress ends at once.
        """
        was, self._urgent = self._urgent, on
        if on and not was:
            self._control_wake.set()

    async def _reopen_wait(self, delay: float) -> None:
        """Wait ``delay`` (:data:`URGENT_S` at most while urgent), or until made urgent."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._control_wake.wait()

    def _identity(self) -> None:
        """Check which scanner the control link reaches; remember the first one seen.

        Raises:
            DriverError: the control link reaches another scanner than the data
                link's or the remembered one (``scanner_mismatch``, alarmed once).
        """
        v = check_identity(
            self.cfg.id, self.spool.meta("serial"), self._link_serial, self._control_serial
        )
        if not v.ok:
            if not self._mismatch_alarmed:
                self._mismatch_alarmed = True
                self.alarm(
                    "scanner_mismatch",
                    v.message,
                    control_serial=self._control_serial,
                    data_serial=self._link_serial,
                    known_serial=self.spool.meta("serial"),
                )
            raise DriverError(
                v.message,
                fix="connect this scanner's own serial cable, or point `serial` in the "
                "config at its device",
            )
        self._mismatch_alarmed = False
        if v.remember:
            old = self.spool.meta("serial")
            try:
                self.spool.set_meta("serial", v.remember)
            except StorageError as exc:
                log.error("%s: %s", self.cfg.id, exc)
            if v.alarm:
                self.alarm(v.alarm, v.message, old_serial=old, new_serial=v.remember)
            else:
                log.info("%s: this channel serves scanner %s", self.cfg.id, v.remember)

    def _confirmed(self) -> bool:
        """Whether the scanner's identity is known beyond the control link's own word."""
        return bool(self._link_serial or self.spool.meta("serial"))

    def _recheck_identity(self) -> None:
        """The data link announced a serial number: check the control link against it."""
        try:
            self._identity()
        except DriverError:
            self._identity_bad.set()
            return
        if self._arm_deferred and self.control_up and self._confirmed():
            self._arm_deferred = False
            if (
                self.control is not None
                and self.cfg.arm
                and self.wants_armed()
                and self._may_arm_now()
            ):
                self._spawn(self._arm_confirmed(), "arm")

    async def _arm_confirmed(self) -> None:
        assert self.control is not None
        await self.control.arm()
        log.info("%s: scanner armed (the data link confirmed which scanner it is)", self.cfg.id)

    async def _control(self) -> None:
        """Open, identify, arm and listen; on failure close and reopen the device path."""
        assert self.control is not None
        ctl = self.control
        backoff = Backoff(*CONTROL_BACKOFF, reset_after_s=10.0)
        while True:
            t0 = time.monotonic()
            self._control_wake.clear()
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
                self._control_serial = ident.serial
                self._identity_bad.clear()
                self._identity()
                self._link_up()
                # armed only once the data link or the spool confirms which scanner
                # this is (a first start with another scanner's cable arms nothing)
                self._arm_deferred = not self._confirmed()
                if self._arm_deferred:
                    log.info("%s: arming once the data link says which scanner it is", self.cfg.id)
                elif self.cfg.arm and self.wants_armed() and self._may_arm_now():
                    await ctl.arm()
                    log.info("%s: scanner armed", self.cfg.id)
                await self._listen(ctl)
            except DriverError as exc:
                delay = backoff.after_run(time.monotonic() - t0)
                urgent = " (a safety action waits)" if self._urgent else ""
                if self._urgent:
                    delay = min(delay, URGENT_S)
                self._link_down(exc.message)
                log.warning(
                    "%s: control link: %s; reopening in %.2f s%s", self.cfg.id, exc, delay, urgent
                )
                with contextlib.suppress(Exception):
                    await ctl.close()
                await self._reopen_wait(delay)

    def _may_arm_now(self) -> bool:
        # a stream central refuses (another process streams it, a fork) would scan
        # trucks whose images never reach the CIR: such a scanner is not armed
        return (
            not self.spool.above_high_water
            and self.storage_error is None
            and self.refused is None
            and self.may_arm()
        )

    async def _listen(self, ctl: ScannerControl) -> None:
        """Handle the control link's events until it fails or reaches another scanner.

        Raises:
            DriverError: always (the link failed, closed, or reaches another scanner).
        """
        events = asyncio.ensure_future(self._events(ctl))
        bad = asyncio.ensure_future(self._identity_bad.wait())
        try:
            await asyncio.wait({events, bad}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait([events, bad], f"{self.cfg.id} control events", timeout=1.0)
        if bad.done() and not bad.cancelled():
            self._identity()  # raises the mismatch
        if events.done() and not events.cancelled() and events.exception() is not None:
            raise events.exception()  # type: ignore[misc]
        raise DriverError(f"control link {getattr(ctl, 'path', '')} closed")

    async def _events(self, ctl: ScannerControl) -> None:
        async for ev in ctl.events():
            self._tell(ev)
            if ev.kind == "FAULT":
                self.alarm("scanner_fault", " ".join(ev.fields))
            elif ev.kind == "STATUS":
                await self._on_status(ctl, ev)
            elif ev.kind in ("SCAN_START", "SCAN_END"):
                log.info("%s: %s %s", self.cfg.id, ev.kind, ",".join(ev.fields))
                if ev.kind == "SCAN_END" and self._disarm_at_scan_end is not None:
                    why, self._disarm_at_scan_end = self._disarm_at_scan_end, None
                    await ctl.disarm()
                    log.info("%s: disarmed: %s", self.cfg.id, why)

    async def _on_status(self, ctl: ScannerControl, ev: ControlEvent) -> None:
        """The scanner's unsolicited STATUS: re-arm it if it was disarmed behind our back."""
        try:
            st = parse_status(ev.fields, getattr(ctl, "path", ""))
        except DriverError:
            return
        now = time.monotonic()
        if st.armed or st.state != "idle":
            self._disarmed_since = None
            if st.armed:
                self._disarmed_alarmed = False
                self._rearm_delay = REARM_BACKOFF[0]
            return
        if self._disarmed_since is None:
            self._disarmed_since = now
        maintenance = (Path(self.edge.state_dir) / f"{self.cfg.id}.maintenance").exists()
        if now < self._rearm_at or not should_rearm(
            reported_armed=st.armed,
            reported_state=st.state,
            disarmed_s=now - self._disarmed_since,
            want_arm=self.cfg.arm and self.wants_armed(),
            may_arm=self.may_arm() and self.refused is None,
            control_up=self.control_up and self._confirmed(),
            spool_high=self.spool.above_high_water or self._disarmed_for_spool,
            storage_error=self.storage_error is not None,
            maintenance=maintenance,
        ):
            return
        if not self._disarmed_alarmed:
            self._disarmed_alarmed = True
            self.alarm(
                "scanner_disarmed", f"{self.cfg.id} is disarmed but should be armed: re-arming"
            )
        # the next try (if it stays disarmed) only after a growing wait
        self._rearm_at = now + self._rearm_delay
        self._rearm_delay = min(REARM_BACKOFF[1], self._rearm_delay * 2)
        try:
            await ctl.arm()
            log.info("%s: scanner re-armed", self.cfg.id)
        except DriverError as exc:
            log.warning("%s: re-arm refused: %s", self.cfg.id, exc)

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
            "link_fault": self.link_health.fault,
            "central": self._endpoints[self._ep],  # the aggregator endpoint in use
            "failovers": s.failovers,
        }
        if self.storage_error is not None:
            out["storage_error"] = self.storage_error.message
        out["quarantined"] = self.spool.quarantined
        out["forks"] = self.forks
        out["serial"] = self.spool.meta("serial")
        return out
