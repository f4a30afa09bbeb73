"""The LSP-1 data link's rules as a pure state machine: no sockets, no tasks.

:class:`LinkCore` takes what happened on the link as typed inputs (a connection
made or failed, the scanner's SESSION, each decoded item, a read timeout, the
connection gone) and answers with typed actions (:class:`SendResume`,
:class:`Deliver`, :class:`Drop`). ``drivers.lsp._link.LspDataLink`` is the
asyncio shell that owns the socket and carries the actions out.

The rules, each unit-tested in ``tests/unit/drivers/test_linkcore.py``:

* **Session.** Every connection starts with the scanner's SESSION packet; the
  RESUME request goes out only after it. None within ``connect_timeout_s`` (or a
  bad one) is a failed connection (backoff, ``stats.no_session``).
* **New session** (epoch). The announced boot id differs from the known one, or
  the announced ``head_seq`` is behind ``expected`` (a counter that went
  backwards). Unless the old session is known to be whole (the scanner closed
  the last connection with nothing owed: no scan in progress, nothing seen at or
  beyond ``expected``), a :class:`LinkGap` with cause ``RESTART`` comes first,
  from ``expected`` to the highest packet seen of it (``expected - 1`` when the
  link never saw its end: after an edge restart or a partition, how much it
  emitted is unknown); then always a :class:`LinkEpoch` (``next_seq`` 0:
  every session counts from 0); then, if the new session's oldest held packet
  is beyond 0, a :class:`LinkGap` (cause ``LOST``) for the packets before it;
  then the new session's packets. With no known session and a counter that
  did not go backwards, the announced session is adopted silently.
* **Go back N.** A damaged packet or a hole in the sequence asks the scanner to
  resume from ``expected`` (on the same connection). Duplicates after going back
  are dropped.
* **Gap vote.** A resume answer that starts beyond ``expected`` is counted only
  if nothing damaged came since the RESUME; ``gap_confirmations`` such answers
  make the missing packets a :class:`LinkGap` (cause ``LOST``).
* **Lost resume answer.** No answer ``resume_timeout_s`` after a RESUME while
  the scanner holds what is owed: drop the connection, a fresh one is unambiguous.
* **Violations.** An intact packet outside the protocol is delivered, in order,
  as a one-packet :class:`LinkGap` (cause ``VIOLATION``) and the link moves on.
  The same packet arriving damaged ``repeat_limit`` times in a row is refused
  the same way instead of being asked for forever.
* **Timeouts and backoff.** ``stall_timeout_s`` while a scan is in progress or a
  resume is owed, ``idle_timeout_s`` otherwise; a connection that delivered
  nothing (or failed) waits a capped, doubling backoff before the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import ProtocolError
from drivers._interface import GapCause, LinkEpoch, LinkGap, LinkStats, Packet, PacketType
from drivers.lsp._io import Damaged, SessionInfo, Violation, parse_session

__all__ = ["Action", "Deliver", "Drop", "LinkCore", "SendResume"]


@dataclass(frozen=True, slots=True)
class SendResume:
    """Write a RESUME request for ``seq`` on the current connection."""

    seq: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand ``item`` to the consumer of the link, in this order."""

    item: Packet | LinkGap | LinkEpoch


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the current connection and reconnect.

    ``failed``: the connection did not work (no SESSION): the shell waits the
    backoff :meth:`LinkCore.disconnected` returns before the next attempt.
    """

    reason: str
    failed: bool = False


Action = SendResume | Deliver | Drop
"""What :class:`LinkCore` asks its shell to do."""


class LinkCore:
    """Resume, go-back-N, gap votes, violations and epochs of one data link.

    Args:
        next_seq: the first sequence number wanted (the edge's durable position).
        session: the scanner session ``next_seq`` belongs to ("" if unknown).
        stats: counters to update (a fresh :class:`LinkStats` if None).
        clock: monotonic seconds (``time.monotonic`` by default; a test's fake).
        stall_timeout_s: read timeout while a scan runs or a resume is owed, s.
        idle_timeout_s: read timeout between scans, s.
        connect_timeout_s: how long the SESSION packet may take, s.
        resume_timeout_s: how long a RESUME answer may take once the scanner
            holds what is owed, s.
        backoff_initial_s: first pause after a failed connection, s.
        backoff_max_s: cap of the doubling pause, s.
        gap_confirmations: clean resume answers that must agree before packets
            are declared lost (at least 1).
        repeat_limit: times the same packet may arrive damaged in a row before
            it is refused as a violation (at least 2). A packet corrupted at
            random with probability p repeats with p**(limit-1): 5 keeps that
            below 1e-5 at the simulator's harshest test rate (5 %).
    """

    def __init__(
        self,
        next_seq: int,
        session: str = "",
        *,
        stats: LinkStats | None = None,
        clock: Callable[[], float] = time.monotonic,
        stall_timeout_s: float = 2.0,
        idle_timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        resume_timeout_s: float = 1.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        gap_confirmations: int = 2,
        repeat_limit: int = 5,
    ) -> None:
        self.stats = stats if stats is not None else LinkStats()
        self.clock = clock
        self.stall_timeout_s = stall_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.resume_timeout_s = resume_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.gap_confirmations = max(1, gap_confirmations)
        self.repeat_limit = max(2, repeat_limit)
        self.expected = next_seq
        """The next sequence number to deliver."""
        self.session = session
        """The scanner session being followed ("" until one is announced)."""
        self.serial = ""
        """The scanner's serial number, as last announced."""
        self.max_seen = -1
        """Highest sequence number seen of this session: the scanner holds up to it."""
        self.in_scan = False
        self.scan_id = -1
        """The scan in progress (by the last delivered packet), -1 if none."""
        self._backoff = backoff_initial_s
        self._attempts = 0
        self._votes = 0
        self._fail_seq = -1
        self._fail_count = 0
        # per connection
        self.connected = False
        self._want_session = False
        self._session_at = 0.0
        self._awaiting = False
        self._fresh = False
        self._clean = True
        self._resume_at = 0.0
        self._prev = -1
        self._delivered = False
        self._end_known = False
        """The last connection ended by the scanner closing it while nothing was owed:
        the old session cannot have emitted anything after it (set by :meth:`disconnected`)."""

    # ------------------------------------------------------------- connection

    def connecting(self) -> None:
        """A connection attempt starts (every one after the first counts as a reconnect)."""
        if self._attempts:
            self.stats.reconnects += 1
        self._attempts += 1

    def connect_failed(self) -> float:
        """The attempt failed; returns the pause before the next one, s."""
        return self._next_backoff()

    def connected_now(self) -> list[Action]:
        """The connection is up: wait for the scanner's SESSION packet."""
        self.connected = True
        self._want_session = True
        self._session_at = self.clock()
        self._awaiting = False
        self._delivered = False
        self._prev = -1
        return []

    def disconnected(self, orderly: bool = False) -> float:
        """The connection is gone; returns the pause before reconnecting, s (0: at once).

        Args:
            orderly: the scanner closed it (end of stream), as a scanner that shuts
                down or reboots does. If nothing was owed then, the session ended
                with everything it emitted delivered; otherwise (a timeout, a
                reset, or owed packets) its end is unknown, and a new session
                after it costs a ``RESTART`` gap.
        """
        self._end_known = orderly and not self._want_session and not self._owed()
        self.connected = False
        self._want_session = False
        if self._delivered:
            self._backoff = self.backoff_initial_s
            return 0.0
        return self._next_backoff()

    def read_timeout(self) -> float:
        """How long the shell may wait for the next bytes before calling :meth:`timed_out`, s."""
        if self._want_session:
            return max(0.0, self.connect_timeout_s - (self.clock() - self._session_at))
        return self.stall_timeout_s if self._owed() else self.idle_timeout_s

    def timed_out(self) -> list[Action]:
        """Nothing arrived within :meth:`read_timeout`."""
        if not self.connected:
            return []
        if self._want_session:
            self.stats.no_session += 1
            return self._drop(
                f"no SESSION packet within {self.connect_timeout_s:g} s: not an LSP-1 "
                "scanner with sessions",
                failed=True,
            )
        if self._owed():
            self.stats.stalls += 1
            return self._drop(f"stalled: nothing for {self.stall_timeout_s:g} s")
        return self._drop(f"idle for {self.idle_timeout_s:g} s")

    def held(self, seconds: float) -> None:
        """The consumer held the link ``seconds`` (nothing was read): an answer owed
        since before is given that much longer before it counts as lost."""
        if self._awaiting:
            self._resume_at += max(0.0, seconds)

    def batch_done(self) -> list[Action]:
        """The items of one read were fed; checks for a lost resume answer."""
        if (
            self.connected
            and self._awaiting
            and self.max_seen >= self.expected
            and self.clock() - self._resume_at > self.resume_timeout_s
        ):
            return self._drop("no answer to RESUME: the request or its answer got lost")
        return []

    # ------------------------------------------------------------------ items

    def item(self, item: Packet | Violation | Damaged) -> list[Action]:
        """One decoded item of the stream, in arrival order."""
        if not self.connected:
            return []
        if self._want_session:
            return self._session_item(item)
        if isinstance(item, Damaged):
            return self._damaged(item)
        if item.type == PacketType.SESSION:
            return []  # outside the sequence; only the first of a connection counts
        return self._sequenced(item)

    def _session_item(self, item: Packet | Violation | Damaged) -> list[Action]:
        if not isinstance(item, Packet) or item.type is not PacketType.SESSION:
            self.stats.no_session += 1
            what = item.reason if isinstance(item, Damaged | Violation) else item.type.name
            return self._drop(f"the connection did not start with a SESSION packet ({what})", True)
        try:
            info = parse_session(item.payload)
        except ProtocolError as exc:
            self.stats.no_session += 1
            return self._drop(exc.message, failed=True)
        return self.session_announced(info)

    def session_announced(self, info: SessionInfo) -> list[Action]:
        """The scanner announced its session on this connection: follow it and resume."""
        out: list[Action] = []
        self._want_session = False
        old = self.session
        backwards = info.head_seq < self.expected
        if (old and info.session != old) or backwards:
            why = (
                f"counter went back from {self.expected} to {info.head_seq}"
                if backwards
                else "new boot id"
            )
            label = f"scanner restarted (session {old or '?'} -> {info.session}): {why}"
            # only a session seen to its end (the scanner closed the link with nothing
            # owed) is known to be whole; after an edge restart, a partition or a
            # timeout, the old session may have emitted packets nobody read
            if not self._end_known or self.in_scan or self.max_seen >= self.expected:
                last = max(self.max_seen, self.expected - 1)
                lost = (
                    f"packets {self.expected}..{last} of the old session never arrived"
                    if last >= self.expected
                    else f"whatever the old session emitted from packet {self.expected} on "
                    "was not read before it ended: how much is unknown"
                )
                scan = f"; scan {self.scan_id} was in progress" if self.in_scan else ""
                out.append(
                    Deliver(
                        LinkGap(
                            self.expected,
                            last,
                            f"{label}; {lost}{scan}",
                            GapCause.RESTART,
                            self.scan_id if self.in_scan else -1,
                        )
                    )
                )
            self.stats.epochs += 1
            out.append(Deliver(LinkEpoch(info.session, old, 0, info.serial, label)))
            if info.oldest_seq > 0:
                # every session counts from 0: what it no longer holds is lost
                last = info.oldest_seq - 1
                self.stats.gaps += 1
                self.stats.lost_packets += info.oldest_seq
                out.append(
                    Deliver(
                        LinkGap(
                            0,
                            last,
                            f"packets 0..{last} of the new session {info.session} left the "
                            "scanner's buffer before the link reconnected",
                            GapCause.LOST,
                        )
                    )
                )
            self.expected = info.oldest_seq
            self.max_seen = -1
            self.in_scan, self.scan_id = False, -1
            self._votes = 0
            self._fail_seq, self._fail_count = -1, 0
            self._delivered = True
        self._end_known = False
        self.session = info.session
        self.serial = info.serial
        if info.head_seq > 0:
            self.max_seen = max(self.max_seen, info.head_seq - 1)
        out.append(self._resume(fresh=True))
        return out

    def _damaged(self, bad: Damaged) -> list[Action]:
        self._clean = False
        if bad.seq == self.expected:
            if self._fail_seq == bad.seq:
                self._fail_count += 1
            else:
                self._fail_seq, self._fail_count = bad.seq, 1
            if self._fail_count >= self.repeat_limit:
                seq = self.expected
                out = self._refuse(
                    seq,
                    bad.scan_id,
                    f"packet {seq} arrived damaged ({bad.reason}) {self._fail_count} times "
                    "in a row: refused",
                )
                out.append(self._resume(fresh=False))
                return out
        if not self._awaiting:
            return [self._resume(fresh=False)]
        return []

    def _sequenced(self, item: Packet | Violation) -> list[Action]:
        seq = item.seq
        if seq > self.max_seen:
            self.max_seen = seq
        expected = self.expected
        if seq < expected:
            self._prev = seq  # a duplicate after going back
            self._fresh = False
            return []
        out: list[Action] = []
        if seq > expected:
            answer = self._fresh or (self._awaiting and seq <= self._prev)
            self._prev = seq
            self._fresh = False
            if answer and self._clean:
                self._votes += 1
            if not (answer and self._clean and self._votes >= self.gap_confirmations):
                if answer or not self._awaiting:
                    out.append(self._resume(fresh=False))
                return out
            if self.in_scan:
                scan_id = self.scan_id
            elif isinstance(item, Packet) and item.type in (PacketType.LINE, PacketType.SCAN_END):
                scan_id = item.scan_id
            else:
                scan_id = -1
            self.stats.gaps += 1
            self.stats.lost_packets += seq - expected
            out.append(
                Deliver(
                    LinkGap(
                        expected,
                        seq - 1,
                        f"scanner no longer holds packets {expected}..{seq - 1}",
                        GapCause.LOST,
                        scan_id,
                    )
                )
            )
        self._advance(seq)
        if isinstance(item, Violation):
            self.stats.violations += 1
            out.append(
                Deliver(
                    LinkGap(
                        seq,
                        seq,
                        f"packet {seq} refused: {item.reason}",
                        GapCause.VIOLATION,
                        item.scan_id,
                    )
                )
            )
            self._track_scan(item.type, item.scan_id)
            return out
        self.stats.packets += 1
        self._track_scan(item.type, item.scan_id)
        out.append(Deliver(item))
        return out

    # -------------------------------------------------------------- internals

    def _refuse(self, seq: int, scan_id: int, reason: str) -> list[Action]:
        self._advance(seq)
        self.stats.violations += 1
        return [Deliver(LinkGap(seq, seq, reason, GapCause.VIOLATION, scan_id))]

    def _advance(self, seq: int) -> None:
        self.expected = seq + 1
        self._prev = seq
        self._fresh = self._awaiting = False
        self._clean = True
        self._votes = 0
        self._fail_seq, self._fail_count = -1, 0
        self._delivered = True

    def _track_scan(self, ptype: int, scan_id: int) -> None:
        if ptype == PacketType.SCAN_START or ptype == PacketType.LINE:
            self.in_scan, self.scan_id = True, scan_id
        elif ptype == PacketType.SCAN_END:
            self.in_scan, self.scan_id = False, -1

    def _resume(self, *, fresh: bool) -> SendResume:
        if not fresh:
            self.stats.resumes += 1
        else:
            self._fresh = True
        self._awaiting, self._clean, self._resume_at = True, True, self.clock()
        return SendResume(self.expected)

    def _owed(self) -> bool:
        return self.in_scan or (self._awaiting and self.max_seen >= self.expected)

    def _drop(self, reason: str, failed: bool = False) -> list[Action]:
        self.connected = False
        self._want_session = False
        return [Drop(reason, failed)]

    def _next_backoff(self) -> float:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max_s)
        return delay
