"""The central aggregator: ROUTER in, CIR commit, ACK out, live feed.

One asyncio task receives and verifies; a second commits batches in a worker
thread (blob writes, one ``syncfs``, one SQLite transaction), so receiving and
verifying the next batch overlaps the disk work of the last. A block is
acknowledged only after its batch committed.

The rules (which block is accepted, refused or asked for again, and how scans
open and close) live in the pure core ``central._ingest.Ingest``; this module is
the shell around it: the ROUTER socket (enrolled CurveZMQ keys only, ZeroMQ
heartbeats and TCP keepalive so a dead peer is noticed within seconds), the
commit thread, the replies and the live feed. Every message is decoded and
validated by ``core.messages.decode``; a message that fails, or that trips any
other error while it is staged, is refused with a ``bad_message`` alarm naming
its sender (at most one per sender every ``BAD_MESSAGE_ALARM_S``; the count of
the rest is alarmed when the window closes, so the last burst is never silent)
and the loop goes on for every other edge. ``ROUTER_HANDOVER`` is off: the peer
chooses its routing id, and a peer taking over another's would receive its
replies; the ingest core refuses any routing id that is not the sending key's
edge id + ``/`` (``Ingest.check_sender``). An edge names its connection
``edge/scanner/boot``, so a new process never collides with its predecessor's
dead pipe, and a process's own reconnect waits at most for the ZeroMQ
heartbeat timeout (3 s) to drop its old pipe. A commit that fails for want of space
(``StorageError``) alarms at once and is retried until it succeeds; nothing is
acknowledged before it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from central._cir import LeaseLost, is_storage_error, open_cir
from central._ingest import PROBE, EnrolledEdge, Ingest, Work
from central._leases import LeaseBook, holder_name
from central._metrics import serve_metrics
from central._sql import is_unreachable
from central._uptime import Sla, UptimeTracker
from core.config import CentralConfig
from core.errors import ConfigError, NiiError, StorageError
from core.keys import CirKey
from core.messages import Ack, BlockMsg, Heartbeat, Nack, Welcome, decode
from core.sdnotify import Notifier, watchdog_loop
from core.seal import BlockKind, Opener

log = logging.getLogger("nii.central")

MAX_BATCH_MSGS = 512
MAX_BATCH_BYTES = 64 * 1024 * 1024
#: one ``bad_message`` alarm per sender at most this often, seconds (the rest are counted)
BAD_MESSAGE_ALARM_S = 10.0
#: a commit that failed for want of space is tried again this often, seconds
STORAGE_RETRY_S = 1.0
#: at most ALARM_BURST alarms of one kind naming one edge per ALARM_WINDOW_S seconds
ALARM_BURST = 20
ALARM_WINDOW_S = 10.0
#: one ``storage`` alarm per this many seconds while the CIR cannot write
STORAGE_ALARM_S = 60.0
#: ZeroMQ heartbeats on the ROUTER: a dead or partitioned edge is dropped within seconds
#: (issue 13, kind 6); TCP keepalive backs them up below ZeroMQ
ZMQ_HEARTBEAT_IVL_MS = 1000
ZMQ_HEARTBEAT_TIMEOUT_MS = 3000
ZMQ_HEARTBEAT_TTL_MS = 3000
TCP_KEEPALIVE_IDLE_S = 1
TCP_KEEPALIVE_INTVL_S = 1
TCP_KEEPALIVE_CNT = 3


@dataclass
class _Window:
    start: float
    suppressed: int
    edge: str


class AlarmWindow:
    """At most one alarm per key (a sender) every ``every_s`` seconds; the rest counted.

    A pure rate limit with an injectable clock: :meth:`hit` says whether a message
    is alarmed now, with how many were suppressed before it; :meth:`closed`, called
    periodically, hands back the counts of windows that ended with suppressed
    messages, so the tail of a burst is reported even when nothing follows it.
    """

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._w: dict[str, _Window] = {}

    def hit(self, key: str, edge: str) -> int | None:
        """None: suppressed (counted). Else alarm now; the int is the count since the
        last alarm of ``key`` that :meth:`closed` has not reported yet."""
        now = self.clock()
        w = self._w.get(key)
        if w is not None and now - w.start < self.every_s:
            w.suppressed += 1
            return None
        self._w[key] = _Window(now, 0, edge)
        return w.suppressed if w is not None else 0

    def closed(self) -> list[tuple[str, str, int]]:
        """``(key, edge, suppressed)`` of each window that ended with messages suppressed.
        Every window that ended is forgotten, so the next message of its key is alarmed
        at once, with its own text (at most two alarms per key per window)."""
        now = self.clock()
        out = []
        for key, w in list(self._w.items()):
            if now - w.start < self.every_s:
                continue
            if w.suppressed:
                out.append((key, w.edge, w.suppressed))
            del self._w[key]
        return out


@dataclass
class CentralStats:
    blocks_committed: int = 0
    lines_committed: int = 0
    bytes_committed: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    out_of_order: int = 0
    commits: int = 0
    commit_seconds: float = 0.0
    refused_connections: int = 0
    bad_messages: int = 0
    storage_failures: int = 0
    #: heartbeats whose uptime entries were not stored: their sender was not the live
    #: writer of the scanner (another process of the same edge)
    uptime_skipped: int = 0


class _Keyring:
    """The CurveZMQ side of enrollment: ZAP asks it about every connecting key."""

    def __init__(self, central: Central) -> None:
        self.central = central

    def callback(self, domain: str, key: bytes) -> bool:
        z85 = key.decode() if isinstance(key, bytes) else str(key)
        row = self.central.edge_row(z85)
        if row is None or row["revoked_ns"] is not None:
            why = "revoked" if row is not None else "not enrolled"
            self.central.refused(z85, why, row["id"] if row else "")
            return False
        return True


class Central:
    """The aggregator process."""

    def __init__(self, cfg: CentralConfig) -> None:
        self.cfg = cfg
        self.key = CirKey.load(cfg.key)
        self.cir = open_cir(cfg)
        self.opener = Opener(self.key.x25519_private)
        self.boot = os.urandom(8).hex()
        # stream leases: one writer per scanner among the aggregators sharing the CIR
        self.leases = LeaseBook(holder_name(cfg.name, cfg.listen), self.boot, cfg.lease_s)
        # the CIR's writer connection serves one thread at a time: commits and leases
        self._wlock = asyncio.Lock()
        self.stats = CentralStats()
        self.latencies_ms: deque[float] = deque(maxlen=200_000)
        self._edges: dict[str, dict[str, Any] | None] = {}
        self._edges_loaded = 0.0
        self._refusals_logged: dict[str, float] = {}
        self._bad = AlarmWindow(BAD_MESSAGE_ALARM_S)
        self._uptime_skip_logged: set[str] = set()
        self._storage_alarm_at = -1e9
        self._alarm_window: dict[tuple[str, str], tuple[float, int, int]] = {}
        self._commit_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._pending_alarms: list[dict[str, Any]] = []
        self.ingest = Ingest(self.cir, self.opener.open, self._alarm, preview_hz=cfg.preview_hz)
        self.stats.rejected = self.ingest.rejected
        self._loop_beat = time.monotonic()
        self.ctx: zmq.asyncio.Context | None = None
        self.router: zmq.asyncio.Socket | None = None
        self.pub: zmq.asyncio.Socket | None = None
        self.auth: AsyncioAuthenticator | None = None
        # R3: scanner state logs replayed by the edges, SLA accounting (central._uptime)
        self.uptime = UptimeTracker(
            cfg.state_dir, database=cfg.cir, alarm=self._alarm, sla=Sla.load(_sla_file(cfg))
        )
        self.metrics_server: Any = None
        from central.atr._live import LiveAtr  # here: numba loads only where central runs

        self.atr = (
            LiveAtr(
                self.cir.dir,
                self.key.x25519_private,
                self._publish,
                max_backlog=cfg.atr_max_backlog,
                alarm=self._alarm,
                open_cir=lambda: open_cir(cfg),
                # "external": 'nii atr worker' processes judge the queued scans; this
                # aggregator only puts their results on its feed (decision 0019)
                work=cfg.atr_workers == "embedded",
            )
            if cfg.atr
            else None
        )

    # -- enrollment lookups --------------------------------------------------------------
    def edge_row(self, curve_z85: str) -> dict[str, Any] | None:
        now = time.monotonic()
        if now - self._edges_loaded > 1.0:
            self._edges.clear()
            self._edges_loaded = now
        if curve_z85 not in self._edges:
            self._edges[curve_z85] = self.cir.edge_by_curve(curve_z85)
        return self._edges[curve_z85]

    def refused(self, z85: str, why: str, edge_id: str) -> None:
        self.stats.refused_connections += 1
        now = time.monotonic()
        if now - self._refusals_logged.get(z85, -1e9) < 10.0:
            return
        self._refusals_logged[z85] = now
        msg = f"refused connection from CurveZMQ key {z85[:12]}…: {why}"
        log.warning("%s%s", msg, f" (edge {edge_id})" if edge_id else "")
        self._alarm("", edge_id, "connection_refused", msg, key=z85, why=why)

    def _alarm(self, scanner: str, edge: str, kind: str, message: str, **details: Any) -> None:
        """Raise an alarm: on the live feed now, in the CIR with the next commit.

        Alarms that name an edge are limited to ``ALARM_BURST`` of one kind per
        ``ALARM_WINDOW_S``, so a faulty edge cannot flood the CIR; the next alarm
        of that kind after the window says how many were dropped.
        """
        if edge:
            now = time.monotonic()
            key = (edge, kind)
            start, n, dropped = self._alarm_window.get(key, (now, 0, 0))
            if now - start > ALARM_WINDOW_S:
                if dropped:
                    message += f" ({dropped} more {kind} alarm(s) of this edge were dropped)"
                    details = {**details, "dropped": dropped}
                start, n, dropped = now, 0, 0
            if n >= ALARM_BURST:
                self._alarm_window[key] = (start, n, dropped + 1)
                return
            self._alarm_window[key] = (start, n + 1, dropped)
        row = self.cir.alarm_row(scanner, edge, kind, message, **details)
        self._pending_alarms.append(row)
        self._publish(b"alarm", {**row, "details": details})

    # -- sockets -------------------------------------------------------------------------
    def open(self) -> None:
        self.ctx = zmq.asyncio.Context()
        self.auth = AsyncioAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve_callback("*", credentials_provider=_Keyring(self))
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        # no handover: a peer naming its connection after another's would take its replies
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 0)
        self.router.setsockopt(zmq.RCVHWM, 10000)
        for opt, value in (
            (zmq.HEARTBEAT_IVL, ZMQ_HEARTBEAT_IVL_MS),
            (zmq.HEARTBEAT_TIMEOUT, ZMQ_HEARTBEAT_TIMEOUT_MS),
            (zmq.HEARTBEAT_TTL, ZMQ_HEARTBEAT_TTL_MS),
            (zmq.TCP_KEEPALIVE, 1),
            (zmq.TCP_KEEPALIVE_IDLE, TCP_KEEPALIVE_IDLE_S),
            (zmq.TCP_KEEPALIVE_INTVL, TCP_KEEPALIVE_INTVL_S),
            (zmq.TCP_KEEPALIVE_CNT, TCP_KEEPALIVE_CNT),
        ):
            self.router.setsockopt(opt, value)
        self.router.curve_server = True
        self.router.curve_secretkey = self.key.curve_secret
        self.router.curve_publickey = self.key.curve_public
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 10000)
        for sock, ep, what in (
            (self.router, self.cfg.listen, "listen"),
            (self.pub, self.cfg.feed, "feed"),
        ):
            try:
                sock.bind(ep)
            except zmq.ZMQError as exc:
                self.close()
                raise ConfigError(
                    f"cannot bind {what} = {ep}: {exc.strerror}",
                    fix="another process holds that port, or the address is not this "
                    f"machine's; choose a free port for {what} in {self.cfg.path}",
                ) from exc

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        for s in (self.router, self.pub):
            if s is not None:
                s.close(linger=0)
        self.router = self.pub = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None
        if self.atr is not None:
            self.atr.close()
        self.uptime.close()
        self._release_leases()
        self.cir.close()

    def _release_leases(self) -> None:
        """A clean stop gives the leases up: another aggregator takes over at once."""
        for scanner, (holder, token) in self.leases.all_held().items():
            try:
                self.cir.release_lease(scanner, holder, token)
            except Exception as exc:  # the database is gone: the leases expire by themselves
                log.warning("could not release the stream lease of %s: %s", scanner, exc)
                break
        self.leases.held.clear()

    def _publish(self, topic: bytes, doc: dict[str, Any], *raw: bytes) -> None:
        if self.pub is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self.pub.send_multipart(
                [topic, json.dumps(doc, default=str).encode(), *raw], flags=zmq.NOBLOCK
            )

    # -- main loop -----------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event) -> None:
        assert self.router is not None
        notifier = Notifier()
        aux = [
            asyncio.create_task(self._beat(), name="loop beat"),
            asyncio.create_task(watchdog_loop(notifier, self.healthy), name="watchdog"),
            asyncio.create_task(self.uptime.watch(), name="sla watch"),
            asyncio.create_task(self._lease_loop(), name="stream leases"),
        ]
        if self.cfg.metrics and self.metrics_server is None:
            self.metrics_server = serve_metrics(self)
        if self.atr is not None:
            self.atr.start(asyncio.get_running_loop())
        notifier.ready()
        log.info(
            "central listening on %s, live feed on %s, CIR in %s",
            self.cfg.listen,
            self.cfg.feed,
            self.cfg.state_dir,
        )
        main = asyncio.create_task(self._receive_loop())
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([main, stopper], return_when=asyncio.FIRST_COMPLETED)
            if main in done:
                main.result()
        finally:
            notifier.stopping()
            for t in [main, stopper, *aux]:
                t.cancel()
            for t in [main, stopper, *aux]:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _beat(self) -> None:
        n = 0
        while True:
            self._loop_beat = time.monotonic()
            self._bad_tail()
            if n % 4 == 0:  # every 2 s: the feed is alive, and what central has done
                st = self.stats
                self._publish(
                    b"central.status",
                    {
                        "boot": self.boot,
                        "name": self.leases.name,
                        "blocks_committed": st.blocks_committed,
                        "lines_committed": st.lines_committed,
                        "duplicates": st.duplicates,
                        "rejected": sum(st.rejected.values()),
                    },
                )
            n += 1
            await asyncio.sleep(0.5)

    async def _lease_loop(self) -> None:
        """Renew the leases whose edges are here; let the others go (``central._leases``)."""
        while True:
            plan = self.leases.due(self.ingest.last_heard)
            if plan is not None:
                renew, release = plan
                try:
                    async with self._wlock:
                        lost = await asyncio.to_thread(self._renew, renew, release)
                except Exception as exc:
                    if not is_unreachable(exc):
                        raise
                    lost = []  # the commits fail meanwhile; the leases may expire
                    log.warning("cannot renew the stream leases: %s", exc)
                if lost:
                    self._leases_lost(lost)
            await asyncio.sleep(self.cfg.lease_s / 6)

    def _renew(
        self, renew: dict[str, tuple[str, int]], release: dict[str, tuple[str, int]]
    ) -> list[str]:
        lost = []
        for scanner, (holder, token) in release.items():
            if self.cir.release_lease(scanner, holder, token):
                log.info("let the stream lease of %s go: its edge is no longer here", scanner)
            else:
                lost.append(scanner)
        return lost + (self.cir.renew_leases(renew, self.cfg.lease_s) if renew else [])

    def _leases_lost(self, scanners: list[str]) -> None:
        """Another aggregator took these streams over: never write them again."""
        self.leases.lost(scanners)
        for s in scanners:
            self.ingest.forget(s)
        log.warning("another aggregator took over the stream(s) of %s", ", ".join(scanners))

    def _take_leases(self, scanners: list[str]) -> dict[str, int | None]:
        """Take (or renew) the leases of the scanners that said hello (commit thread)."""
        return {
            s: self.cir.acquire_lease(s, self.leases.holder, self.cfg.lease_s) for s in scanners
        }

    async def _hello_leases(self, work: Work) -> None:
        """The HELLOs of ``work`` get a WELCOME only where this process holds the lease;
        the others are told the stream is elsewhere (the edge tries the next aggregator)."""
        wanted = sorted({s for ident, s in work.hellos if ident.split(b"/")[1:2] != [PROBE]})
        if not wanted:
            return
        try:
            async with self._wlock:
                got = await asyncio.to_thread(self._take_leases, wanted)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            self._storage_trouble(self.cir.unreachable(exc))
            got = {}  # no answer: the edges say hello again
        hellos = []
        for ident, scanner in work.hellos:
            if ident.split(b"/")[1:2] == [PROBE]:
                hellos.append((ident, scanner))
                continue
            token = got.get(scanner)
            if token is None:
                if scanner in got:
                    work.nacks.append((ident, _elsewhere(scanner, -1)))
                continue
            if self.leases.took(scanner, token):
                self.ingest.forget(scanner)  # another aggregator wrote it meanwhile
            hellos.append((ident, scanner))
        work.hellos = hellos

    def healthy(self) -> bool:
        return time.monotonic() - self._loop_beat < 5.0

    async def _receive_loop(self) -> None:
        """Receive, stage and commit until cancelled; a commit in flight then ends first.

        A commit being written finishes (its blocks are acknowledged); one waiting for
        space gives up at its next try, acknowledging nothing: the edges resend.
        """
        try:
            await self._receive_batches()
        finally:
            task = self._commit_task
            if task is not None and not task.done():
                self._stopping = True
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task

    async def _receive_batches(self) -> None:
        router = self.router
        assert router is not None
        self._commit_task = None
        while True:
            commit_task: asyncio.Task[None] | None = self._commit_task
            if not await router.poll(500):
                if self._pending_alarms and commit_task is None:
                    self._commit_task = asyncio.create_task(self._commit(Work()))
                elif commit_task is not None and commit_task.done():
                    try:
                        commit_task.result()
                    except Exception as exc:
                        log.error("CIR commit failed: %s; edges will resend", exc)
                        self._reset_state()
                    self._commit_task = None
                continue
            batch = [await router.recv_multipart(copy=False)]
            size = sum(len(f) for f in batch[0])
            while (
                len(batch) < MAX_BATCH_MSGS
                and size < MAX_BATCH_BYTES
                and int(router.get(zmq.EVENTS)) & zmq.POLLIN
            ):
                frames = await router.recv_multipart(copy=False)
                batch.append(frames)
                size += sum(len(f) for f in frames)
            try:
                work = self._stage(batch)
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                # the database server went away while the batch was checked (the edges'
                # keys, the stream heads): nothing of it is acknowledged, the edges resend
                self._storage_trouble(self.cir.unreachable(exc))
                self._reset_state()
                continue
            if commit_task is not None:
                try:  # shielded: a stop lets the commit being written finish (see above)
                    await asyncio.shield(commit_task)
                except Exception as exc:  # a failed commit: forget tentative state
                    log.error("CIR commit failed: %s; edges will resend", exc)
                    self._reset_state()
                    work = Work()
                self._commit_task = None
            if work.needs_commit or self._pending_alarms or work.hellos:
                self._commit_task = asyncio.create_task(self._commit(work))
                # let the next batch be received and verified while this one commits
            else:
                self._reply(work)

    def _reset_state(self) -> None:
        self.ingest.reset()

    async def _commit(self, work: Work) -> None:
        """Make ``work`` durable, then reply; on a full disk, retry until it fits.

        Nothing is acknowledged before its commit returned. A StorageError (disk
        full, I/O error) alarms at once on the log and the live feed (its row is
        committed with the batch once space returns) and the same batch is tried
        again every ``STORAGE_RETRY_S``; the edges keep their blocks meanwhile.
        """
        t0 = time.perf_counter()
        alarms, self._pending_alarms = self._pending_alarms, []
        # copies: the event loop goes on staging the next batch on the live states while
        # this one is written in the worker thread
        streams = {s: dataclasses.replace(self.ingest.streams[s]) for s in work.streams_touched}
        scans = {r: self.ingest.scans[r].row() for r in work.scans}
        fencing = self.leases.fencing(streams)
        # queued for the live ATR in the commit itself; a lost row has no line to analyse
        atr = work.finished - work.lost if self.atr is not None else set()
        failed = False
        while True:
            try:
                async with self._wlock:
                    await asyncio.to_thread(
                        self.cir.commit,
                        work.staged,
                        streams,
                        scans,
                        alarms,
                        calibrations=work.calibrations,
                        leases=fencing,
                        atr=atr,
                    )
                break
            except LeaseLost as exc:  # fenced off: nothing of the batch was written
                self._leases_lost(list(exc.scanners))
                raise
            except StorageError as exc:
                if self._stopping:
                    raise
                failed = True
                self._storage_trouble(exc)
                alarms = alarms + self._pending_alarms
                self._pending_alarms = []
                await asyncio.sleep(STORAGE_RETRY_S)
        await self._hello_leases(work)
        if failed:
            self._storage_alarm_at = -1e9
            log.warning("the CIR writes again; %d block(s) committed", len(work.staged))
            # the control room saw "storage" go up: it sees it end too
            self._alarm(
                "",
                "",
                "storage_ok",
                f"the CIR writes again; {len(work.staged)} waiting block(s) committed",
            )
        now_ns = time.time_ns()
        self.stats.commits += 1
        self.stats.commit_seconds += time.perf_counter() - t0
        for s in work.staged:
            self.stats.blocks_committed += 1
            self.stats.bytes_committed += len(s.block.raw)
            if s.block.kind == BlockKind.DATA:
                self.stats.lines_committed += s.committed_lines
                for e in s.block.index:
                    self.latencies_ms.append((now_ns - e.ts_ns) / 1e6)
        self.ingest.committed(work)
        if self.atr is not None and atr:  # the ATR reads them back from the CIR now
            self.atr.wake()
        self._reply(work)

    def _reply(self, work: Work) -> None:
        router = self.router
        assert router is not None
        for (ident, scanner), seq in work.acks.items():
            self._send(ident, Ack(scanner=scanner, seq=seq, boot=self.boot).frames())
        for ident, nack in work.nacks:
            self._send(ident, nack.frames())
        for ident, scanner in work.hellos:
            last_seq, last_hash, link_next_seq = self.ingest.welcome(scanner)
            self._send(
                ident,
                Welcome(
                    scanner=scanner,
                    last_seq=last_seq,
                    last_hash=last_hash.hex(),
                    link_next_seq=link_next_seq,
                    boot=self.boot,
                ).frames(),
            )
        for ident in work.heartbeats:
            self._send(
                ident,
                Heartbeat(
                    sender="central",
                    boot=self.boot,
                    state={"blocks": self.stats.blocks_committed, **self.uptime.reply(ident)},
                ).frames(),
            )
        for topic, doc, raw in work.feed:
            self._publish(topic, doc, *raw)

    def _send(self, ident: bytes, frames: list[Any]) -> None:
        assert self.router is not None
        with contextlib.suppress(zmq.ZMQError):
            self.router.send_multipart([ident, *frames], flags=zmq.NOBLOCK)

    # -- staging: the shell around central._ingest -------------------------------------
    def _sender(self, frames: list[Any]) -> tuple[str, EnrolledEdge | None]:
        """Who sent ``frames``: a name for alarms (edge id, else key) and its enrollment."""
        try:
            user = frames[1].get("User-Id") if hasattr(frames[1], "get") else None
        except (zmq.ZMQError, IndexError):
            user = None
        if not user:
            return "unknown peer", None
        row = self.edge_row(user)
        if row is None:
            return f"CurveZMQ key {user[:12]}…", None
        return str(row["id"]), EnrolledEdge.from_row(row)

    def _storage_trouble(self, exc: StorageError) -> None:
        """A write to the CIR failed for want of space: log and alarm (once a minute)."""
        self.stats.storage_failures += 1
        now = time.monotonic()
        if now - self._storage_alarm_at < STORAGE_ALARM_S:
            return
        self._storage_alarm_at = now
        log.error("%s; retrying every %.0f s, acknowledging nothing", exc, STORAGE_RETRY_S)
        self._alarm(
            "",
            "",
            "storage",
            f"{exc.message}; central keeps trying and acknowledges nothing meanwhile",
            path=exc.path,
            free_bytes=exc.free_bytes,
        )

    def _bad_message(self, ident: bytes, sender: str, edge: str, exc: BaseException) -> None:
        """Refuse one message: log it and alarm, at most once per sender every 10 s (the
        rest are logged at debug level and their count alarmed by :meth:`_bad_tail`)."""
        self.stats.bad_messages += 1
        what = exc.message if isinstance(exc, NiiError) else f"{type(exc).__name__}: {exc}"
        what = what[:300]
        suppressed = self._bad.hit(sender, edge)
        if suppressed is None:
            log.debug("refused a message from %s: %s", sender, what)
            return
        more = f" ({suppressed} more refused since the last alarm)" if suppressed else ""
        if isinstance(exc, NiiError):
            log.warning("refused a message from %s: %s%s", sender, what, more)
        else:
            log.error("refused a message from %s: %s%s", sender, what, more, exc_info=exc)
        self._alarm(
            "",
            edge,
            "bad_message",
            f"refused a message from {sender}: {what}{more}",
            sender=sender,
            suppressed=suppressed,
        )

    def _bad_tail(self) -> None:
        """Alarm the count of bad messages suppressed in windows that have closed."""
        for sender, edge, n in self._bad.closed():
            msg = (
                f"refused {n} more message(s) from {sender} in the last "
                f"{BAD_MESSAGE_ALARM_S:.0f} s (each is in central's log at debug level)"
            )
            log.warning("%s", msg)
            self._alarm("", edge, "bad_message", msg, sender=sender, suppressed=n)

    def _uptime_skipped(self, edge: str, sender: str, boot: str) -> None:
        """A heartbeat of a process that is not the writer: its uptime is not stored."""
        self.stats.uptime_skipped += 1
        if boot in self._uptime_skip_logged:
            return
        if len(self._uptime_skip_logged) > 1000:
            self._uptime_skip_logged.clear()
        self._uptime_skip_logged.add(boot)
        log.warning(
            "uptime entries of %s (boot %s) not stored: another process of edge %s streams "
            "that scanner; only the stream's writer speaks for its uptime",
            sender,
            boot,
            edge,
        )

    def _stage(self, batch: list[list[Any]]) -> Work:
        """Decode, validate and stage one received batch; one bad message never stops it."""
        work = Work()
        for frames in batch:
            ident = bytes(frames[0])
            sender, edge = self._sender(frames)
            edge_id = edge.id if edge else ""
            try:
                msg, extra = decode(frames[1:])
                if (
                    isinstance(msg, BlockMsg)
                    and edge is not None
                    and not self.leases.holds(msg.scanner)
                ):
                    # not this aggregator's stream (now): the edge says hello again
                    work.nacks.append((ident, _elsewhere(msg.scanner, msg.seq)))
                    continue
                if isinstance(msg, BlockMsg):
                    self.leases.touch(msg.scanner)
                if isinstance(msg, Heartbeat):
                    if edge is not None and not edge.revoked:
                        if self.ingest.heartbeat(work, ident, edge, msg):
                            self.uptime.on_heartbeat(ident, edge.id, msg.state)
                        else:
                            self._uptime_skipped(edge.id, msg.sender, msg.boot)
                else:
                    self.ingest.message(work, ident, edge, msg, extra)
            except StorageError as exc:  # not the sender's fault
                self._storage_trouble(exc)
            except NiiError as exc:
                self._bad_message(ident, sender, edge_id, exc)
            except Exception as exc:  # last resort: validation missed it, the loop goes on
                if is_storage_error(exc):
                    self._storage_trouble(self.cir.storage_error(exc))
                elif is_unreachable(exc):  # the database server went away: not the sender
                    self._storage_trouble(self.cir.unreachable(exc))
                else:
                    self._bad_message(ident, sender, edge_id, exc)
        self.stats.duplicates = self.ingest.duplicates
        self.stats.out_of_order = self.ingest.out_of_order
        return work


def _elsewhere(scanner: str, seq: int) -> Nack:
    """The answer to a HELLO (``seq`` -1) or block of a stream whose lease this
    aggregator does not hold."""
    why = (
        f"another aggregator holds the stream of scanner {scanner}"
        if seq < 0
        else f"this aggregator does not hold the stream of scanner {scanner}; say hello"
    )
    return Nack(scanner=scanner, seq=seq, expected=-1, reason=why, elsewhere=True)


def _sla_file(cfg: CentralConfig) -> Path | None:
    """``sla.toml`` beside the central configuration, if there is one (see central._uptime)."""
    p = Path(cfg.path).parent / "sla.toml"
    return p if p.exists() else None


async def run_central(cfg: CentralConfig, stop: asyncio.Event) -> None:
    central = Central(cfg)
    central.open()
    try:
        await central.serve(stop)
    finally:
        central.close()
