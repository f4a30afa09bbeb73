"""The uplink window: which spooled block to send next, and when to say hello.

A pure core (no sockets, no tasks, an injectable clock; ``STYLE.md``) for the
edge → central block stream of one scanner. The channel's shell feeds it what
central says (WELCOME, ACK, NACK, heartbeats) and asks it what to send.

Rules, each unit-tested in ``tests/unit/edge/test_uplink.py``:

* nothing is sent before central's WELCOME, nor after a fatal NACK (``refused``);
* at most ``window`` blocks are in flight past the last acknowledged one;
* a WELCOME moves the acknowledged block up to central's head and the cursor
  just past it: what central lacks is sent (again) from there; a WELCOME from
  the same central while welcomed (the answer to an older HELLO) only
  acknowledges;
* an ACK moves ``acked`` forward (never back) and the cursor past it;
* a NACK moves the cursor back to what central expects (never below ``acked``
  + 1), or, when central expects a block this edge never sealed, asks for a
  new HELLO;
* a heartbeat from a central with another boot id asks for a new HELLO (unless
  one is pending: a central answers HELLOs with a heartbeat while their WELCOME
  waits for its commit);
* blocks in flight with no acknowledgement for ``ack_timeout_s`` ask for a new
  HELLO (a resync), and a HELLO not answered is repeated every ``hello_retry_s``,
  so the stream resumes as soon as the network is back.  ``ack_timeout_s`` is
  TCP's retransmission timeout (RFC 6298: the smoothed round trip from a
  block's send to its ACK plus four times its variation), never below
  ``stall_s`` nor above ``MAX_ACK_TIMEOUT_S``, while central is heard (its
  heartbeats): one that works through a deep backlog (an edge's spool after an
  outage, a slow object store) answers each block late but steadily, and
  resending the whole window to it every ``stall_s`` only buried it under
  duplicates. A central not heard for ``stall_s`` gets no more than that;
* central is ``connected`` while it was heard within ``stall_s``;
* failover (several aggregator endpoints): a central silent for ``stall_s`` since
  the last switch is left for the next endpoint (``failover_due``); a NACK saying
  the stream's lease is elsewhere asks for a new HELLO (``on_elsewhere``), and the
  shell moves on when a HELLO is answered so. Once every endpoint was tried in a
  row without hearing any (``all_silent``: the CIR they share is out, or the
  edge's own network), each further round waits twice as long at each endpoint,
  up to ``MAX_FAILOVER_WAIT_S``: HELLOs still go out every ``hello_retry_s`` to
  the endpoint in use, which is taken up again the moment it answers.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

__all__ = [
    "BEHIND_NACKS",
    "HELLO_RETRY_S",
    "MAX_ACK_TIMEOUT_S",
    "MAX_FAILOVER_WAIT_S",
    "WINDOW_BLOCKS",
    "Tick",
    "UplinkWindow",
]

WINDOW_BLOCKS = 256
"""Blocks in flight past the last acknowledged one (ZeroMQ SNDHWM is 1000 messages)."""

MAX_ACK_TIMEOUT_S = 30.0
"""The longest wait for an acknowledgement, however slow central was lately (s)."""

MAX_FAILOVER_WAIT_S = 10.0
"""The longest wait at one endpoint once every aggregator was silent in turn (s)."""

BEHIND_NACKS = 3
"""NACKs in a row for blocks central acknowledged already that ask for a new HELLO."""


HELLO_RETRY_S = 0.25
"""How often an unanswered HELLO is repeated (s): after a partition heals, the
stream resumes within this of ZeroMQ's reconnect (RECONNECT_IVL_MAX 2 s)."""


class Tick(enum.Enum):
    """What the shell sends on a keepalive tick."""

    HELLO = "hello"
    HEARTBEAT = "heartbeat"


class UplinkWindow:
    """Cursor, acknowledgements and resync of one scanner's block stream (pure).

    Args:
        acked: the last block the CIR is known to hold (-1 if none).
        stall_s: seconds without an acknowledgement (with blocks in flight), or
            without hearing central, before a resync / ``connected`` goes False.
        window: blocks in flight at most.
        endpoints: how many aggregator endpoints the edge tries in turn.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        acked: int,
        stall_s: float,
        window: int = WINDOW_BLOCKS,
        endpoints: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.acked = acked
        self.cursor = acked + 1
        self.window = window
        self.stall_s = stall_s
        self._clock = clock
        self.welcomed = False
        self.refused: str | None = None
        self.central_boot = ""
        self.connected = False
        self.resyncs = 0
        now = clock()
        self._last_heard = now - stall_s - 1.0
        self._made = now
        self._last_progress = now
        self._last_hello = now - HELLO_RETRY_S - 1.0
        self._last_switch = now
        self.endpoints = max(1, endpoints)
        #: switches since central was last heard
        self.silent_switches = 0
        #: when each block in flight was first sent since the last WELCOME
        self._sent_at: dict[int, float] = {}
        self._srtt: float | None = None
        self._rttvar = 0.0
        #: NACKs in a row for blocks acknowledged already
        self._behind = 0

    @property
    def ack_timeout_s(self) -> float:
        """How long blocks in flight may wait for an acknowledgement before a resync."""
        if self._srtt is None:
            return self.stall_s
        return min(MAX_ACK_TIMEOUT_S, max(self.stall_s, self._srtt + 4 * self._rttvar))

    # -- sending -------------------------------------------------------------------------
    def next_seq(self, head: int) -> int | None:
        """The next block to send with ``head`` the last sealed one, or None for now."""
        if not self.welcomed or self.refused is not None:
            return None
        if self.cursor > head or self.cursor - self.acked > self.window:
            return None
        return self.cursor

    def sent(self, seq: int) -> None:
        """Block ``seq`` went out (or is gone from the spool: acknowledged meanwhile)."""
        if self.cursor == seq:
            self.cursor = seq + 1
            self._sent_at.setdefault(seq, self._clock())

    @property
    def in_flight(self) -> int:
        """Blocks sent and not yet acknowledged."""
        return max(0, self.cursor - 1 - self.acked)

    # -- what central says ---------------------------------------------------------------
    def heard(self) -> None:
        """Any valid message from central arrived."""
        self._last_heard = self._clock()
        self.connected = True
        self.silent_switches = 0

    def on_welcome(self, last_seq: int, boot: str) -> None:
        """Central holds blocks up to ``last_seq`` (its WELCOME, after our HELLO).

        Every HELLO that asks for a resync first ends the welcome (``welcomed`` False),
        so a WELCOME from the same central while welcomed answers an older HELLO (an
        outage queues one every ``HELLO_RETRY_S``, and central answers each): it only
        acknowledges up to ``last_seq``.  Moving the cursor back to it would send the
        whole window again, once per HELLO queued.
        """
        if self.welcomed and self.refused is None and boot == self.central_boot:
            self.on_ack(last_seq)
            return
        self.central_boot = boot
        self.refused = None
        self.acked = max(self.acked, last_seq)
        self.cursor = self.acked + 1
        self.welcomed = True
        self._last_progress = self._clock()
        self._sent_at.clear()
        self._behind = 0

    def refuse(self, reason: str) -> None:
        """Stop sending for good (a chain fork, a fatal NACK) until the next WELCOME."""
        self.refused = reason

    def on_ack(self, seq: int) -> bool:
        """Central committed blocks up to ``seq``. Returns whether that was progress."""
        if seq <= self.acked:
            return False
        now = self._clock()
        sent = self._sent_at.get(seq)
        if sent is not None:
            self._round_trip(now - sent)
        for s in [s for s in self._sent_at if s <= seq]:
            del self._sent_at[s]
        self.acked = seq
        self._last_progress = now
        self._behind = 0
        if self.cursor <= seq:
            self.cursor = seq + 1
        return True

    def _round_trip(self, r: float) -> None:
        """One block's send-to-ACK time (RFC 6298, section 2)."""
        if self._srtt is None:
            self._srtt, self._rttvar = r, r / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - r)
            self._srtt = 0.875 * self._srtt + 0.125 * r

    def on_nack(self, expected: int, head: int) -> bool:
        """Central wants block ``expected`` next. Returns whether a new HELLO is needed.

        A NACK for a block beyond ``head`` (never sealed here) means central and
        this edge disagree on the chain: say hello again and let the WELCOME settle it.
        So do ``BEHIND_NACKS`` in a row for blocks central acknowledged already (one
        can be stale, overtaken by the ACK): its view of the stream is then behind the
        CIR's, and sending from ``acked`` + 1 again would only be refused again, for
        ever.
        """
        if expected <= self.acked:
            self._behind += 1
            if self._behind >= BEHIND_NACKS:
                self._behind = 0
                self.welcomed = False
                return True
        if expected > head + 1:
            self.welcomed = False
            return True
        self.cursor = max(expected, self.acked + 1)
        # what is sent again times nothing (Karn's rule: an ACK could be the first copy's)
        for s in [s for s in self._sent_at if s >= self.cursor]:
            del self._sent_at[s]
        return False

    def on_heartbeat(self, boot: str) -> bool:
        """A heartbeat from central with ``boot``. Returns whether it restarted (HELLO).

        Not welcomed, a HELLO is on its way already (repeated every ``HELLO_RETRY_S``):
        a heartbeat then only says the aggregator is alive (it answers HELLOs so while
        their WELCOME waits for a commit), and asks for nothing more.
        """
        if self.central_boot and boot != self.central_boot and self.welcomed:
            self.welcomed = False
            return True
        return False

    def on_elsewhere(self) -> None:
        """Central does not hold this stream (its lease is elsewhere, or lapsed): say
        hello again before anything else is sent."""
        self.welcomed = False

    # -- failover between aggregators ------------------------------------------------------
    def failover_due(self) -> bool:
        """Whether central (the endpoint in use) was silent for ``stall_s``, counting from
        the last switch: time to try the next aggregator endpoint; twice as long per
        round of endpoints all silent, up to ``MAX_FAILOVER_WAIT_S``."""
        return self._clock() - max(self._last_heard, self._last_switch) > self.failover_wait_s

    @property
    def failover_wait_s(self) -> float:
        """How long the endpoint in use may be silent before the next is tried (s)."""
        rounds = self.silent_switches // self.endpoints
        if rounds == 0:
            return self.stall_s
        return max(self.stall_s, min(MAX_FAILOVER_WAIT_S, self.stall_s * 2.0**rounds))

    def silent_s(self) -> float:
        """Seconds since central was last heard (since this window was made, if never)."""
        return self._clock() - max(self._last_heard, self._made)

    @property
    def all_silent(self) -> bool:
        """Every endpoint was tried in a row, and none was heard since."""
        return self.silent_switches >= self.endpoints

    def switched(self, *, silent: bool = True) -> None:
        """The edge connected to another aggregator: nothing is sent before its WELCOME.
        ``silent``: it left one that was silent (not one that answered that another
        aggregator holds the stream, which ends a round of silent endpoints)."""
        self._last_switch = self._clock()
        self.silent_switches = self.silent_switches + 1 if silent else 0
        self.welcomed = False
        self.connected = False
        self._last_hello = self._last_switch - HELLO_RETRY_S - 1.0

    # -- time ----------------------------------------------------------------------------
    def tick(self) -> Tick | None:
        """What to send now: a HELLO, a heartbeat, or nothing (a HELLO went out lately)."""
        now = self._clock()
        if now - self._last_heard > self.stall_s:
            self.connected = False
        # a central heard lately is slow, not gone: it gets its round trip's time; a
        # silent one (a partition, a crash) only stall_s, as before
        silent = now - self._last_heard > self.stall_s
        patience = self.stall_s if silent else self.ack_timeout_s
        if self.welcomed and self.in_flight and now - self._last_progress > patience:
            self.welcomed = False
            self.resyncs += 1
        if not self.welcomed:
            if now - self._last_hello < HELLO_RETRY_S:
                return None
            self._last_hello = now
            return Tick.HELLO
        return Tick.HEARTBEAT

    def sleep_s(self, heartbeat_s: float) -> float:
        """How long the shell waits before the next :meth:`tick`."""
        return heartbeat_s if self.welcomed else min(heartbeat_s, HELLO_RETRY_S)
