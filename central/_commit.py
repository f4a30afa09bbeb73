"""The commit pipeline of the central aggregator, and the keeper of its stream leases.

:class:`CommitPipeline` makes a staged batch (``central._ingest.Work``) durable:
blobs, one sync and one transaction (``central._cir.Cir.commit``) in a worker
thread, so the event loop receives and verifies the next batch meanwhile. A
batch that cannot be written for want of space, or because the database is out
of reach (``StorageError``), is alarmed at once (``storage``, at most once a
minute) and tried again every ``STORAGE_RETRY_S`` until it is written
(``storage_ok``); nothing is acknowledged before. A batch fenced off because a
stream's lease was taken over (``LeaseLost``) is written nowhere.

:class:`LeaseKeeper` is the database side of ``central._leases.LeaseBook``:
it takes the leases of the scanners whose edges say hello, renews those whose
edges are here, lets the others go and drops what was taken over.

Both share the CIR's writer connection, which serves one thread at a time: they
take ``wlock`` around every call that uses it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from central._batching import BatchBudget
from central._cir import Cir, LeaseLost
from central._ingest import PROBE, Ingest, Work
from central._leases import LeaseBook
from central._sql import is_storage_error, is_unreachable
from central._stats import CentralStats
from core.errors import StorageError
from core.messages import Nack
from core.seal import BlockKind

log = logging.getLogger("nii.central")

__all__ = [
    "COMMIT_STUCK_S",
    "STORAGE_ALARM_S",
    "STORAGE_RETRY_S",
    "CommitPipeline",
    "LeaseKeeper",
    "elsewhere",
]

#: a commit that failed for want of space is tried again this often, seconds
STORAGE_RETRY_S = 1.0
#: one ``storage`` alarm per this many seconds while the CIR cannot write
STORAGE_ALARM_S = 60.0
#: a batch written for longer than this is stuck: heartbeats wait for it (s)
COMMIT_STUCK_S = 5.0
#: a gap this long between two stuck checks (made every 0.5 s) is the process paused
PAUSED_S = 2.0

Alarm = Callable[..., None]  # alarm(scanner, edge, kind, message, **details)


class CommitPipeline:
    """Writes batches into the CIR, retrying on storage trouble, and counts them.

    Args:
        cir: the CIR (its writer connection is used in a worker thread).
        ingest: the ingest core whose live states the batch is copied from.
        stats: the aggregator's counters.
        alarm: raises an alarm (feed now, CIR with the next commit).
        take_alarms: hands over (and clears) the alarm rows waiting to be committed.
        wlock: serialises the users of the CIR's writer connection.
        stopping: whether the aggregator is stopping (a batch waiting for space then
            gives up, acknowledging nothing).
        budget: told how long each commit took, for the size of the next batches.
    """

    def __init__(
        self,
        cir: Cir,
        ingest: Ingest,
        stats: CentralStats,
        *,
        alarm: Alarm,
        take_alarms: Callable[[], list[dict[str, Any]]],
        wlock: asyncio.Lock,
        stopping: Callable[[], bool],
        budget: BatchBudget | None = None,
        give_back_alarms: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.cir, self.ingest, self.stats = cir, ingest, stats
        #: takes back the alarm rows of a batch that was not written (the next one has them)
        self.give_back_alarms = give_back_alarms
        self.budget = budget
        self.alarm = alarm
        self.take_alarms = take_alarms
        self.wlock = wlock
        self.stopping = stopping
        #: line latencies (ms, emission → commit), the newest 200 000
        self.latencies_ms: deque[float] = deque(maxlen=200_000)
        #: observes each line latency in seconds (the metrics' histogram), if any
        self.observe_latency: Callable[[float], None] | None = None
        self._storage_alarm_at = -1e9
        # one batch's blobs are written while the one before commits (its blobs done)
        self._ahead = ThreadPoolExecutor(2, thread_name_prefix="nii-blobs")
        #: when the batch being written began (monotonic s), None between batches
        self.writing_since: float | None = None
        #: whether the batch being written failed for want of storage and is retried
        self.in_trouble = False
        self._stuck_alarmed = False
        self._last_check = time.monotonic()

    def healthy(self, now: float | None = None) -> bool:
        """Whether this aggregator commits as it should: no batch retried for want of
        storage, none written for longer than ``COMMIT_STUCK_S``.  Heartbeats are
        answered ahead of the commits only then (decision 0025): a central that cannot
        write falls silent, and its edges go to another aggregator."""
        if self.in_trouble:
            return False
        since = self.writing_since
        now = time.monotonic() if now is None else now
        return since is None or now - since < COMMIT_STUCK_S

    def write_ahead(self, work: Work) -> None:
        """Start writing the blobs of ``work``'s staged blocks now, in a thread of their
        own, while the batch before it commits: :meth:`write` then waits for them before
        the transaction.  A blob is named by its hash and harmless without its row (the
        module docstring of ``central._blobs``), so nothing waits for the batch's fate."""
        if work.staged and work.blobs_ahead is None:
            blobs = [(s.hash, s.block.raw) for s in work.staged]
            work.blobs_ahead = self._ahead.submit(self.cir.blobs.put, blobs)

    def close(self) -> None:
        """Wait for the blobs being written ahead."""
        self._ahead.shutdown(wait=True)

    async def write(
        self, work: Work, *, leases: LeaseBook, atr: set[int], on_lost: Callable[[list[str]], None]
    ) -> None:
        """Make ``work`` durable; ``atr`` are the scan refs queued for the live ATR in the
        same transaction.

        Raises:
            LeaseLost: a stream's lease was taken over (``on_lost`` ran): nothing written.
            StorageError: only when stopping while the CIR cannot write.
        """
        t0 = time.perf_counter()
        self.writing_since = time.monotonic()
        failed = False
        try:
            failed = await self._write(work, leases=leases, atr=atr, on_lost=on_lost)
        except LeaseLost:  # the storage answered (with the fence): stuck no longer
            raise
        except BaseException:  # still not written: no storage_ok
            self._stuck_alarmed = False
            raise
        finally:
            self.writing_since = None
            self.in_trouble = False
            stuck, self._stuck_alarmed = self._stuck_alarmed, False
            if stuck and not failed:  # the control room saw "storage" go up: it sees it end
                self._stuck_ended(work, t0)
        self._count(work, time.perf_counter() - t0)

    def _stuck_ended(self, work: Work, t0: float) -> None:
        """The batch that :meth:`check_stuck` alarmed about got an answer from the CIR
        (written, or refused by a lease's fence): ``storage_ok``."""
        self._storage_alarm_at = -1e9
        waited = time.perf_counter() - t0
        log.warning("the CIR answers again after a commit waited %.0f s", waited)
        self.alarm(
            "",
            "",
            "storage_ok",
            f"the CIR answers again; a commit waited {waited:.0f} s ({len(work.staged)} block(s))",
        )

    def check_stuck(self, now: float | None = None) -> None:
        """Alarm ``storage`` once when the batch being written has waited
        ``COMMIT_STUCK_S``: an object store or database that hangs, rather than fails,
        says nothing by itself (a PUT waits out its timeouts and retries).

        Called every half second or so; a longer gap since the last call is this
        process not running (paused, its machine suspended), not the storage: that
        time does not count.
        """
        now = time.monotonic() if now is None else now
        gap, self._last_check = now - self._last_check, now
        since = self.writing_since
        if since is None or self._stuck_alarmed:
            return
        if gap > PAUSED_S:
            since = self.writing_since = since + gap
        if now - since < COMMIT_STUCK_S:
            return
        self._stuck_alarmed = True
        where = f"blobs in {self.cir.blobs.location}, index in {self.cir.wsql.location}"
        self.storage_trouble(
            StorageError(
                f"a commit has waited {now - since:.0f} s for the CIR's storage ({where})",
                fix="check that the object store and the database answer; central commits "
                "the waiting blocks by itself once they do",
                path=self.cir.blobs.location,
                free_bytes=-1,
            )
        )

    async def _write(
        self, work: Work, *, leases: LeaseBook, atr: set[int], on_lost: Callable[[list[str]], None]
    ) -> bool:
        """:meth:`write` but the counting; whether a try failed for want of storage."""
        alarms = self.take_alarms()
        # copies: the event loop goes on staging the next batch on the live states while
        # this one is written in the worker thread
        streams = {s: dataclasses.replace(self.ingest.streams[s]) for s in work.streams_touched}
        scans = {r: self.ingest.scans[r].row() for r in work.scans}
        fencing = leases.fencing(streams)
        failed = False
        ahead = work.blobs_ahead
        while True:
            try:
                if ahead is not None:  # raises its StorageError; the retry writes them
                    await asyncio.wrap_future(ahead)
                async with self.wlock:
                    t_commit = time.perf_counter()
                    await asyncio.to_thread(
                        self.cir.commit,
                        work.staged,
                        streams,
                        scans,
                        alarms,
                        calibrations=work.calibrations,
                        leases=fencing,
                        atr=atr,
                        blobs_written=ahead is not None,
                    )
                if self.budget is not None:
                    nbytes = sum(len(s.block.raw) for s in work.staged)
                    self.budget.commit.observe(nbytes, time.perf_counter() - t_commit)
                break
            except LeaseLost as exc:  # fenced off: nothing of the batch was written
                on_lost(list(exc.scanners))
                self._give_back(alarms)
                raise
            except StorageError as exc:
                ahead = None
                if self.stopping():
                    self._give_back(alarms)
                    raise
                failed = True
                self.in_trouble = True
                self.storage_trouble(exc)
                alarms = alarms + self.take_alarms()
                await asyncio.sleep(STORAGE_RETRY_S)
            except BaseException:  # a failed commit: the edges resend, the alarms wait
                self._give_back(alarms)
                raise
        if failed:
            self._storage_alarm_at = -1e9
            log.warning("the CIR writes again; %d block(s) committed", len(work.staged))
            # the control room saw "storage" go up: it sees it end too
            self.alarm(
                "",
                "",
                "storage_ok",
                f"the CIR writes again; {len(work.staged)} waiting block(s) committed",
            )
        return failed

    def _give_back(self, alarms: list[dict[str, Any]]) -> None:
        if alarms and self.give_back_alarms is not None:
            self.give_back_alarms(alarms)

    def _count(self, work: Work, seconds: float) -> None:
        now_ns = time.time_ns()
        st = self.stats
        st.commits += 1
        st.commit_seconds += seconds
        observe = self.observe_latency
        for s in work.staged:
            st.blocks_committed += 1
            st.bytes_committed += len(s.block.raw)
            if s.block.kind == BlockKind.DATA:
                st.lines_committed += s.committed_lines
                for e in s.block.index:
                    ms = (now_ns - e.ts_ns) / 1e6
                    self.latencies_ms.append(ms)
                    if observe is not None:
                        observe(ms / 1e3)

    def storage_trouble(self, exc: StorageError) -> None:
        """A write to the CIR failed (no space, I/O, database gone): log and alarm, at
        most once every ``STORAGE_ALARM_S``."""
        self.stats.storage_failures += 1
        now = time.monotonic()
        if now - self._storage_alarm_at < STORAGE_ALARM_S:
            return
        self._storage_alarm_at = now
        log.error("%s; retrying every %.0f s, acknowledging nothing", exc, STORAGE_RETRY_S)
        self.alarm(
            "",
            "",
            "storage",
            f"{exc.message}; central keeps trying and acknowledges nothing meanwhile",
            path=exc.path,
            free_bytes=exc.free_bytes,
        )


class LeaseKeeper:
    """Takes, renews, lets go and drops the stream leases of one aggregator.

    Args:
        cir: the CIR holding ``stream_leases``.
        book: this process's leases (``central._leases``).
        ingest: forgets a stream whose lease changed hands; says when edges were heard.
        wlock: serialises the users of the CIR's writer connection.
        storage_trouble: told when the database cannot be reached.
    """

    def __init__(
        self,
        cir: Cir,
        book: LeaseBook,
        ingest: Ingest,
        *,
        wlock: asyncio.Lock,
        storage_trouble: Callable[[StorageError], None],
    ) -> None:
        self.cir, self.book, self.ingest = cir, book, ingest
        self.wlock = wlock
        self.storage_trouble = storage_trouble

    async def loop(self) -> None:
        """Renew the leases whose edges are here; let the others go. Until cancelled."""
        while True:
            plan = self.book.due(self.ingest.last_heard)
            if plan is not None:
                renew, release = plan
                try:
                    async with self.wlock:
                        lost = await asyncio.to_thread(self._renew, renew, release)
                except Exception as exc:
                    if not self._trouble(exc):
                        raise
                    lost = []  # the commits fail meanwhile; the leases may expire
                    log.warning("cannot renew the stream leases: %s", exc)
                if lost:
                    self.lost(lost)
            await asyncio.sleep(self.book.ttl_s / 6)

    def _renew(
        self, renew: dict[str, tuple[str, int]], release: dict[str, tuple[str, int]]
    ) -> list[str]:
        lost = []
        for scanner, (holder, token) in release.items():
            if self.cir.release_lease(scanner, holder, token):
                log.info("let the stream lease of %s go: its edge is no longer here", scanner)
            else:
                lost.append(scanner)
        return lost + (self.cir.renew_leases(renew, self.book.ttl_s) if renew else [])

    def _trouble(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the CIR's storage failing (database gone, disk full), not
        a bug; if so it is logged and alarmed like a failed commit."""
        if is_unreachable(exc):
            self.storage_trouble(self.cir.unreachable(exc))
        elif is_storage_error(exc):
            self.storage_trouble(self.cir.storage_error(exc))
        else:
            return False
        return True

    def lost(self, scanners: list[str]) -> None:
        """Another aggregator took these streams over: never write them again."""
        self.book.lost(scanners)
        for s in scanners:
            self.ingest.forget(s)
        log.warning("another aggregator took over the stream(s) of %s", ", ".join(scanners))

    def _take(self, scanners: list[str]) -> dict[str, int | None]:
        return {s: self.cir.acquire_lease(s, self.book.holder, self.book.ttl_s) for s in scanners}

    async def hellos(self, work: Work) -> None:
        """The HELLOs of ``work`` get a WELCOME only where this process holds the lease;
        the others are told the stream is elsewhere (the edge tries the next aggregator).
        The doctor's probe is welcomed without a lease."""
        wanted = sorted({s for ident, s in work.hellos if not _probe(ident)})
        if not wanted:
            return
        try:
            async with self.wlock:
                got = await asyncio.to_thread(self._take, wanted)
        except Exception as exc:
            if not self._trouble(exc):
                raise
            got = {}  # no answer: the edges say hello again
        for scanner, token in got.items():
            if token is None:
                continue
            kept = scanner in self.book.held  # held all along: no one else wrote since
            if self.book.took(scanner, token) or not kept:
                # Another aggregator may have committed to the stream until the moment
                # the lease was taken: what this process knew of it, and the head its
                # staging read for the WELCOME, may be behind the CIR (a WELCOME behind
                # the edge's acknowledged blocks asks for them again, and again).
                self.ingest.forget(scanner)
                work.heads.pop(scanner, None)  # read again from the CIR for the WELCOME
        hellos = []
        for ident, scanner in work.hellos:
            if _probe(ident):
                hellos.append((ident, scanner))
                continue
            if got.get(scanner) is None:
                if scanner in got:
                    work.nacks.append((ident, elsewhere(scanner, -1)))
                continue
            hellos.append((ident, scanner))
        work.hellos = hellos

    def release_all(self) -> None:
        """A clean stop gives the leases up: another aggregator takes over at once."""
        for scanner, (holder, token) in self.book.all_held().items():
            try:
                self.cir.release_lease(scanner, holder, token)
            except Exception as exc:  # the database is gone: the leases expire by themselves
                log.warning("could not release the stream lease of %s: %s", scanner, exc)
                break
        self.book.held.clear()


def _probe(ident: bytes) -> bool:
    return ident.split(b"/")[1:2] == [PROBE]


def elsewhere(scanner: str, seq: int) -> Nack:
    """The answer to a HELLO (``seq`` -1) or block of a stream whose lease this
    aggregator does not hold."""
    why = (
        f"another aggregator holds the stream of scanner {scanner}"
        if seq < 0
        else f"this aggregator does not hold the stream of scanner {scanner}; say hello"
    )
    return Nack(scanner=scanner, seq=seq, expected=-1, reason=why, elsewhere=True)
