"""The central aggregator: ROUTER in, CIR commit, ACK out, live feed.

One asyncio task receives and verifies; the commit pipeline writes batches in a
worker thread (blobs, one sync, one transaction), so receiving and verifying the
next batch overlaps the storage work of the last. A block is acknowledged only
after its batch committed.

This module is the shell that wires the parts:

* the rules (which block is accepted, refused or asked for again, how scans open
  and close) live in the pure core ``central._ingest.Ingest``, each scan's
  bookkeeping in ``central._scanbook.ScanBook``;
* the sockets (ROUTER for the edges, enrolled CurveZMQ keys only; PUB for the
  live feed) in ``central._sockets``;
* the commit pipeline and the stream leases in ``central._commit`` and
  ``central._leases`` (several aggregators on one CIR, decision 0018);
* alarm rate limits in ``central._alarm_gate``; the metrics read a view of this
  process given at construction (``central._metrics``).

Every message is decoded and validated by ``core.messages.decode``; a message
that fails, or that trips any other error while it is staged, is refused with a
``bad_message`` alarm naming its sender (at most one per sender every
``BAD_MESSAGE_ALARM_S``; the count of the rest is alarmed when the window
closes, so the last burst is never silent) and the loop goes on for every other
edge. The ingest core refuses any routing id that is not the sending key's edge
id + ``/`` (``Ingest.check_sender``). An edge names its connection
``edge/scanner/boot``, so a new process never collides with its predecessor's
dead pipe. A commit that fails for want of space or database (``StorageError``)
alarms at once and is retried until it succeeds; nothing is acknowledged before
it is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from central._alarm_gate import AlarmWindow, BurstLimit
from central._batching import BatchBudget
from central._cir import database_target, is_storage_error, open_cir
from central._commit import CommitPipeline, LeaseKeeper, elsewhere
from central._enrolled import EnrolledKeys
from central._ingest import EnrolledEdge, Ingest, Work
from central._leases import LeaseBook, holder_name
from central._metrics import CentralMetrics, CentralView
from central._sockets import CentralSockets
from central._sql import Sql, is_unreachable
from central._stats import CentralStats
from central._uptime import Sla, UptimeTracker
from core.config import CentralConfig
from core.errors import NiiError, StorageError
from core.keys import CirKey
from core.messages import Ack, BlockMsg, Heartbeat, Welcome, decode
from core.sdnotify import Notifier, watchdog_loop
from core.seal import Opener

log = logging.getLogger("nii.central")

MAX_BATCH_MSGS = 512
#: the most bytes of one batch; fewer where staging or committing is slow
#: (``central._batching``)
MAX_BATCH_BYTES = 64 * 1024 * 1024
#: one ``bad_message`` alarm per sender at most this often, seconds (the rest are counted)
BAD_MESSAGE_ALARM_S = 10.0
#: at most ALARM_BURST alarms of one kind naming one edge per ALARM_WINDOW_S seconds
ALARM_BURST = 20
ALARM_WINDOW_S = 10.0
#: the longest a statement of the event loop may wait on PostgreSQL before it fails as
#: unreachable, seconds: a server that stops answering must not stop central
#: (``central._sql.Sql``'s deadline; the commits, in their thread, have COMMIT_STUCK_S)
READ_DEADLINE_S = 5.0


class Central:
    """The aggregator process."""

    def __init__(self, cfg: CentralConfig) -> None:
        self.cfg = cfg
        self.key = CirKey.load(cfg.key)
        self.cir = open_cir(cfg, read_deadline_s=READ_DEADLINE_S)
        target = database_target(self.cir.dir, self.cir.database)
        self.enrolled = EnrolledKeys(lambda: Sql(target))
        self.opener = Opener(self.key.x25519_private)
        self.boot = os.urandom(8).hex()
        # stream leases: one writer per scanner among the aggregators sharing the CIR
        self.leases = LeaseBook(holder_name(cfg.name, cfg.listen), self.boot, cfg.lease_s)
        # the writer's session carries the holder's name: another aggregator taking an
        # expired lease over can end it if it still holds the lease row (Cir.acquire_lease)
        self.cir.name_writer(self.leases.holder)
        # the CIR's writer connection serves one thread at a time: commits and leases
        self._wlock = asyncio.Lock()
        self.stats = CentralStats()
        self._refusals_logged: dict[str, float] = {}
        self._bad = AlarmWindow(BAD_MESSAGE_ALARM_S)
        self._uptime_skip_logged: set[str] = set()
        self._bursts = BurstLimit(ALARM_BURST, ALARM_WINDOW_S)
        self._commit_task: asyncio.Task[None] | None = None
        #: messages received while a commit was being written, for the next batch
        #: with the monotonic time each arrived (a writer is alive as of then, not as of
        #: when its message is staged)
        self._held: deque[tuple[float, list[Any]]] = deque()
        #: senders of heartbeats read while the commits are in trouble or running, to be
        #: answered once each with the next batch (an ordered set)
        self._late_beats: dict[bytes, None] = {}
        self._stopping = False
        self._pending_alarms: list[dict[str, Any]] = []
        self.ingest = Ingest(self.cir, self.opener.open, self._alarm, preview_hz=cfg.preview_hz)
        self.stats.rejected = self.ingest.rejected
        self.budget = BatchBudget(MAX_BATCH_BYTES)
        self.pipeline = CommitPipeline(
            self.cir,
            self.ingest,
            self.stats,
            alarm=self._alarm,
            take_alarms=self._take_alarms,
            give_back_alarms=self._give_back_alarms,
            wlock=self._wlock,
            stopping=lambda: self._stopping,
            budget=self.budget,
        )
        self.latencies_ms = self.pipeline.latencies_ms
        self.keeper = LeaseKeeper(
            self.cir,
            self.leases,
            self.ingest,
            wlock=self._wlock,
            storage_trouble=self.pipeline.storage_trouble,
        )
        self._loop_beat = time.monotonic()
        self.sockets: CentralSockets | None = None
        self.router: zmq.asyncio.Socket | None = None
        self.pub: zmq.asyncio.Socket | None = None
        # R3: scanner state logs replayed by the edges, SLA accounting (central._uptime)
        self.uptime = UptimeTracker(
            cfg.state_dir,
            database=cfg.cir,
            alarm=self._alarm,
            sla=Sla.load(_sla_file(cfg)),
            deadline_s=READ_DEADLINE_S,
        )
        self.metrics: CentralMetrics | None = None
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

    def _take_alarms(self) -> list[dict[str, Any]]:
        alarms, self._pending_alarms = self._pending_alarms, []
        return alarms

    def _give_back_alarms(self, rows: list[dict[str, Any]]) -> None:
        """Alarm rows of a batch that was not written: first in the next one."""
        self._pending_alarms = rows + self._pending_alarms

    # -- enrollment lookups --------------------------------------------------------------
    def edge_row(self, curve_z85: str) -> dict[str, Any] | None:
        """The edge enrolled with this CurveZMQ key (revoked or not), from memory
        (``central._enrolled``). A key not known there (an edge enrolled a moment ago)
        is looked up at once, on the readers' connection and its deadline: a database
        that does not answer fails it within ``READ_DEADLINE_S`` (decision 0027)."""
        row = self.enrolled.get(curve_z85)
        if row is None:
            row = self.cir.edge_by_curve(curve_z85)
            if row is not None:
                self.enrolled.remember(row)
        return row

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
            admitted = self._bursts.admit(edge, kind, message, details)
            if admitted is None:
                return
            message, details = admitted
        row = self.cir.alarm_row(scanner, edge, kind, message, **details)
        self._pending_alarms.append(row)
        self._publish(b"alarm", {**row, "details": details})

    # -- sockets -------------------------------------------------------------------------
    def open(self) -> None:
        """Bind the ROUTER (edges) and the PUB (live feed).

        Raises:
            ConfigError: ``listen`` or ``feed`` cannot be bound.
        """
        self.sockets = CentralSockets.open(self.cfg, self.key, self._allow, on_error=self.close)
        self.router, self.pub = self.sockets.router, self.sockets.pub

    def _allow(self, z85: str) -> bool:
        """ZAP asks about every connecting CurveZMQ key: enrolled and not revoked."""
        row = self.edge_row(z85)
        if row is None or row["revoked_ns"] is not None:
            why = "revoked" if row is not None else "not enrolled"
            self.refused(z85, why, row["id"] if row else "")
            return False
        return True

    def close(self) -> None:
        if self.sockets is not None:
            self.sockets.close()
            self.sockets = None
        self.router = self.pub = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.atr is not None:
            self.atr.close()
        self.uptime.close()
        self.enrolled.close()
        self.pipeline.close()
        self.keeper.release_all()
        self.cir.close()

    def _publish(self, topic: bytes, doc: dict[str, Any], *raw: bytes) -> None:
        if self.sockets is not None:
            self.sockets.publish(topic, doc, *raw)

    # -- main loop -----------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event) -> None:
        assert self.router is not None
        notifier = Notifier()
        aux = [
            asyncio.create_task(self._beat(), name="loop beat"),
            asyncio.create_task(watchdog_loop(notifier, self.healthy), name="watchdog"),
            asyncio.create_task(self.uptime.watch(), name="sla watch"),
            asyncio.create_task(self.keeper.loop(), name="stream leases"),
        ]
        if self.cfg.metrics and self.metrics is None:
            self._serve_metrics()
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
            waiting = {main, stopper, *aux}
            while stopper in waiting and main in waiting:
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for t in done:  # a helper that fails stops central now, not at its next stop
                    if t is not stopper:
                        t.result()  # (the watchdog returns at once where there is none)
        finally:
            notifier.stopping()
            for t in [main, stopper, *aux]:
                t.cancel()
            for t in [main, stopper, *aux]:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    def _serve_metrics(self) -> None:
        """Prometheus metrics on ``[central] metrics``, reading a view of this process."""
        up = self.uptime
        view = CentralView(
            stats=self.stats,
            live_states=lambda: {k: dict(v) for k, v in dict(up.live).items()},
            uptime_target=up.store.target,
            sla=up.sla,
        )
        metrics = CentralMetrics(view)
        metrics.serve(self.cfg.metrics)
        self.metrics = metrics
        self.pipeline.observe_latency = metrics.line_latency.observe
        if self.atr is not None:
            self.atr.latency = metrics.atr_latency

    async def _beat(self) -> None:
        n = 0
        while True:
            self._loop_beat = time.monotonic()
            self._bad_tail()
            self.pipeline.check_stuck()
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
                        # each scanner this aggregator hears by heartbeat (the board)
                        "scanners": self.uptime.board(),
                    },
                )
            n += 1
            await asyncio.sleep(0.5)

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
        held = self._held
        while True:
            commit_task: asyncio.Task[None] | None = self._commit_task
            if not held and not await router.poll(500):
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
            limit = self.budget.limit()
            batch: list[list[Any]] = []
            arrived: list[float] = []
            size = 0
            while held and len(batch) < MAX_BATCH_MSGS and size < limit:
                at, frames = held.popleft()
                batch.append(frames)
                arrived.append(at)
                size += sum(len(f) for f in frames)
            if not batch:
                batch.append(await router.recv_multipart(copy=False))
                arrived.append(time.monotonic())
                size = sum(len(f) for f in batch[0])
            # what is queued already is taken without waiting: a non-blocking receive
            # skips the event registration of an awaited one (a fifth of the loop's time
            # when the edges resend a backlog)
            while not held and len(batch) < MAX_BATCH_MSGS and size < limit:
                try:
                    frames = await router.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                batch.append(frames)
                size += sum(len(f) for f in frames)
            arrived += [time.monotonic()] * (len(batch) - len(arrived))
            t_stage = time.perf_counter()
            try:
                work = self._stage(batch, arrived)
                self.budget.stage.observe(size, time.perf_counter() - t_stage)
                self.pipeline.write_ahead(work)
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                # the database server went away while the batch was checked (the edges'
                # keys, the stream heads): nothing of it is acknowledged, the edges resend
                self.pipeline.storage_trouble(self.cir.unreachable(exc))
                self._reset_state()
                continue
            self._answer_early(work)
            if commit_task is not None:
                await self._while_committing(commit_task, limit)
                try:  # shielded: a stop lets the commit being written finish (see above)
                    await asyncio.shield(commit_task)
                except Exception as exc:  # a failed commit: forget tentative state
                    log.error("CIR commit failed: %s; edges will resend", exc)
                    self._reset_state()
                    work = Work()
                self._commit_task = None
                if self._late_beats and self.pipeline.healthy():  # writing again
                    self._answer_heartbeats(self._take_late())
            if work.needs_commit or self._pending_alarms or work.hellos:
                self._commit_task = asyncio.create_task(self._commit(work))
                # let the next batch be received and verified while this one commits; the
                # commit's first step (handing the batch to its thread) runs now: awaiting
                # a poll that is ready does not yield, and the next batch's staging would
                # hold the commit back for as long as it takes
                await asyncio.sleep(0)
            else:
                self._reply(work)

    async def _while_committing(self, commit_task: asyncio.Task[None], limit: int) -> None:
        """Until ``commit_task`` is done, answer the heartbeats that come and hold every
        other message, in order, for the next batch (at most about one batch's worth:
        beyond that the edges wait in ZeroMQ's queues)."""
        router = self.router
        assert router is not None
        held = self._held
        held_bytes = sum(sum(len(f) for f in m) for _, m in held)
        while not commit_task.done() and held_bytes < limit and len(held) < MAX_BATCH_MSGS:
            readable = asyncio.ensure_future(router.poll(1000))
            try:
                await asyncio.wait({commit_task, readable}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not readable.done():
                    readable.cancel()
            if not readable.done() or readable.cancelled() or not readable.result():
                continue
            beats = []
            now = time.monotonic()
            while held_bytes < limit and len(held) < MAX_BATCH_MSGS:
                try:
                    frames = await router.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                if len(frames) > 1 and frames[1].bytes == Heartbeat.TYPE:
                    beats.append(frames)
                else:
                    held.append((now, frames))
                    held_bytes += sum(len(f) for f in frames)
            if not beats:
                continue
            try:
                beat_work = self._stage(beats)  # heartbeats stage nothing to commit
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                self.pipeline.storage_trouble(self.cir.unreachable(exc))
                continue  # unanswered: the edges send them again
            self._answer_early(beat_work)
            # not now: with the next batch's answers, once each
            self._late_beats.update(dict.fromkeys(beat_work.heartbeats))
            self._reply(dataclasses.replace(beat_work, heartbeats=[]))

    def _answer_early(self, work: Work) -> None:
        """Answer ``work``'s heartbeats and HELLOs with a heartbeat now, before its commit,
        while this aggregator commits as it should (decision 0025).

        A heartbeat says that central is alive; the uptime entries it acknowledges are
        stored already (``UptimeTracker.on_heartbeat``), and the WELCOME of a HELLO
        still waits for the commit (it names the chain head).  So a slow commit is never
        taken for a dead aggregator by edges that could fail over, while one that
        cannot write (storage trouble, or a batch stuck for ``COMMIT_STUCK_S``) falls
        silent: its edges then go to another aggregator.
        """
        if not self.pipeline.healthy():  # answered with the commit, if it is written
            work.heartbeats = self._take_late(work.heartbeats)
            return
        self._answer_heartbeats(self._take_late(work.heartbeats, (i for i, _ in work.hellos)))
        work.heartbeats = []

    def _take_late(self, *more: Iterable[bytes]) -> list[bytes]:
        """The late heartbeats' senders, then those of ``more``, each once; none is left
        late."""
        for idents in more:
            self._late_beats.update(dict.fromkeys(idents))
        late = list(self._late_beats)
        self._late_beats.clear()
        return late

    def _reset_state(self) -> None:
        self.ingest.reset()

    async def _commit(self, work: Work) -> None:
        """Make ``work`` durable (``central._commit``), answer the HELLOs where this
        process holds the leases, then reply; nothing is acknowledged before."""
        # queued for the live ATR in the commit itself; a lost row has no line to analyse
        atr = work.finished - work.lost if self.atr is not None else set()
        await self.pipeline.write(work, leases=self.leases, atr=atr, on_lost=self.keeper.lost)
        await self.keeper.hellos(work)
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
            head = work.heads.get(scanner)
            last_seq, last_hash, link_next_seq = head or self.ingest.welcome(scanner)
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
        self._answer_heartbeats(work.heartbeats)
        for topic, doc, raw in work.feed:
            self._publish(topic, doc, *raw)

    def _answer_heartbeats(self, idents: list[bytes]) -> None:
        for ident in idents:
            self._send(
                ident,
                Heartbeat(
                    sender="central",
                    boot=self.boot,
                    state={"blocks": self.stats.blocks_committed, **self.uptime.reply(ident)},
                ).frames(),
            )

    def _send(self, ident: bytes, frames: list[Any]) -> None:
        assert self.sockets is not None
        self.sockets.send(ident, frames)

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

    def _stage(self, batch: list[list[Any]], arrived: list[float] | None = None) -> Work:
        """Decode, validate and stage one received batch; one bad message never stops it.

        ``arrived``: when each message was received (monotonic s; default now), so that
        the messages of an edge process that has gone since (held while a commit ran)
        do not make it look alive when a restarted process says HELLO.
        """
        work = Work()
        try:
            for i, frames in enumerate(batch):
                self.ingest.received_at = arrived[i] if arrived is not None else None
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
                        work.nacks.append((ident, elsewhere(msg.scanner, msg.seq)))
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
                    self.pipeline.storage_trouble(exc)
                except NiiError as exc:
                    self._bad_message(ident, sender, edge_id, exc)
                except Exception as exc:  # last resort: validation missed it, the loop goes on
                    if is_storage_error(exc):
                        self.pipeline.storage_trouble(self.cir.storage_error(exc))
                    elif is_unreachable(exc):  # the database server went away: not the sender
                        self.pipeline.storage_trouble(self.cir.unreachable(exc))
                    else:
                        self._bad_message(ident, sender, edge_id, exc)
        finally:
            self.ingest.received_at = None
        self.ingest.settle(work)
        self.stats.duplicates = self.ingest.duplicates
        self.stats.out_of_order = self.ingest.out_of_order
        return work


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
