"""Central's ingest rules: a pure core with no sockets, no tasks and no SQLite writes.

``Ingest`` takes decoded messages from enrolled edges and decides, block by
block, what the next group commit records and what each edge is told. The
aggregator (``central._aggregator``) owns the sockets, the commit thread and the
live feed and calls it; the unit tests drive it with no processes at all.

Checks on every block, in order, each a reason a block is refused and alarmed
while the CIR stays unchanged: the block parses and its cipher digest holds; it
names the edge that sent it; its Ed25519 signature is the edge's; its scanner is
bound to that edge; its sequence number is the next one of its scanner's chain
(a lower one with the same hash is a duplicate and acknowledged again, with
another hash a replay); a higher one is answered with a gap NACK naming the
sequence number wanted; its ``prev_hash`` is the hash of the block before it.

Scan bookkeeping (issue 13, kinds 3 and 10): a scan opens on its SCAN_START
record (or, alarmed as ``no_start_record``, on a data block of a new scan id) and
closes on its SCAN_END record. It is closed as ``incomplete`` with a
``scan_incomplete`` alarm when the next scan starts while it is open, when a GAP
block of cause ``restart`` arrives, or when a GAP cuts a later scan. Scan ids a
GAP of cause ``lost`` or ``restart`` swallowed whole (the hole between the scan
ids on either side of it) get rows of status ``lost`` and a ``scans_lost`` alarm
naming the GAP blocks; a GAP of cause ``violation`` holds refused packets of the
scan it names and swallows none. The
shape of a scan is fixed by its start record (``central._shape``); a data block
that does not fit is stored but marks the scan ``incomplete`` with a
``shape_violation`` alarm. A scan is ``complete`` only when its end record says
so, no GAP touched it, no block broke its shape and every planned line arrived.

Who may speak (found by an adversarial test of central as an enrolled edge):
every message's ROUTER routing id must start with the enrolled edge id of its
CurveZMQ key and ``/`` (the peer chooses its routing id; central's replies go by
it); a message naming a scanner bound to another edge is refused; a process of
the right edge that is not the stream's live writer (see
``WRITER_STALE_S``) has its alarms dropped and its uptime entries ignored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

import numpy as np

from central._cir import Staged, StreamState
from central._scanbook import ScanBook, scan_record
from central._shape import CALIB_FLAGS, ScanShape, record_channels, record_lines
from core.errors import IntegrityError, NiiError, ProtocolError
from core.keys import EdgePublic
from core.messages import Alarm, BlockMsg, Heartbeat, Hello, Message, Nack
from core.seal import Block, BlockKind, genesis_hash, parse, verify

#: most ``lost`` rows made for one hole in the scan ids (a wrapped or reset counter
#: could otherwise ask for billions); the alarm gives the whole range
MAX_LOST_ROWS = 1000

#: the alarm kind of a GAP block by its ``cause`` (drivers.GapCause); unknown: data_lost
GAP_ALARMS = {"lost": "data_lost", "restart": "data_lost", "violation": "protocol_violation"}
#: GAP causes whose packets may have held whole scans (``violation``: refused packets of
#: the scan the GAP names, which cannot hide another scan)
SWALLOWING_CAUSES = frozenset({"lost", "restart"})

#: ``alarm(scanner, edge, kind, message, **details)``: raise an alarm at once
AlarmSink = Callable[..., None]


class IngestStore(Protocol):
    """What the ingest reads from the CIR (``central._cir.Cir`` provides it)."""

    def stream(self, scanner: str) -> StreamState | None:
        """Where a scanner's chain stands durably, or None for a new scanner."""

    def scan(self, ref: int) -> dict[str, Any] | None:  # a ScanRow
        """A scan row by its ref, or None."""

    def block_hash(self, scanner: str, seq: int) -> bytes | None:
        """The hash of a committed block, or None."""

    def next_scan_ref(self) -> int:
        """The ref the next new scan row gets."""

    def gap_tail(self, scanner: str) -> list[tuple[int, int | None, str]]:
        """``(seq, scan_id, cause)`` of the GAP blocks at the head of a scanner's committed
        chain (those after its last block of another kind), oldest first."""

    def scan_data_blocks(self, scan_ref: int) -> Iterable[Block]:
        """The committed DATA blocks of a scan, in chain order.

        Raises:
            NiiError: a stored block cannot be read again (gone or damaged).
        """


@dataclass(frozen=True)
class EnrolledEdge:
    """An edge as enrollment knows it.

    Attributes:
        id: The edge id (``core.keys.check_id``).
        sign_public: Its Ed25519 public key, base64.
        revoked: True once ``nii central revoke`` was run for it.
    """

    id: str
    sign_public: str
    revoked: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EnrolledEdge:
        """From a row of the CIR's ``edges`` table."""
        return cls(str(row["id"]), str(row["sign_public"]), row.get("revoked_ns") is not None)


class CalibrationSeen(TypedDict):
    """A scanner calibration a scan-start record brought (``scanner_calibration``)."""

    scanner: str
    sha256: str  #: ``core.scanner_cal.document_sha256`` of the document
    document: str  #: the document, canonical JSON
    ref: int  #: the scan that brought it
    seen_ns: int  #: the scan's start, ns since the epoch


def calibration_seen(
    scanner: str, ref: int, seen_ns: int, record: Mapping[str, Any]
) -> CalibrationSeen | None:
    """The calibration a scan-start record carries, as the CIR keeps it; None without one.

    Only its form is looked at here (a JSON object); whether it is a usable
    calibration is the live ATR's business, which says so in the verdict.
    """
    doc = record.get("scanner_calibration")
    if not isinstance(doc, dict) or not doc:
        return None
    from core.scanner_cal import document_sha256

    return {
        "scanner": scanner,
        "sha256": document_sha256(doc),
        "document": json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "ref": ref,
        "seen_ns": seen_ns,
    }


@dataclass
class Work:
    """What one received batch asks of the commit and of the replies.

    Attributes:
        staged: Verified blocks for the next group commit, in arrival order.
        staged_hash: ``(scanner, seq) -> block hash`` of the staged blocks.
        blobs_ahead: the staged blocks' blobs being written ahead of the commit
            (``central._commit.CommitPipeline.write_ahead``), if they are.
        streams_touched: Scanners whose stream head moved.
        scans: Refs of scan rows to write.
        finished: Refs of scans that closed (any status) in this batch.
        lost: Refs among ``finished`` of rows of status ``lost`` (no live ATR for them).
        acks: ``(ident, scanner) -> highest seq`` to acknowledge once durable.
        nacks: ``(ident, NACK)`` to send.
        hellos: ``(ident, scanner)`` to answer with a WELCOME.
        heartbeats: Idents to answer with a heartbeat.
        feed: ``(topic, document, raw frames)`` for the live feed once durable.
        calibrations: Scanner calibrations that scan-start records of this batch
            brought, for the CIR's ``scanner_calibrations`` table (``Cir.commit``).
        heads: ``scanner -> (last_seq, last_hash, link_next_seq)`` for the WELCOMEs,
            as of the end of this batch (:meth:`Ingest.settle`): the next batch is
            staged on the live states while this one commits, and a WELCOME must not
            name a block that is not yet durable.
    """

    staged: list[Staged] = field(default_factory=list)
    staged_hash: dict[tuple[str, int], bytes] = field(default_factory=dict)
    blobs_ahead: Future[None] | None = None
    streams_touched: set[str] = field(default_factory=set)
    scans: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)
    acks: dict[tuple[bytes, str], int] = field(default_factory=dict)
    nacks: list[tuple[bytes, Nack]] = field(default_factory=list)
    hellos: list[tuple[bytes, str]] = field(default_factory=list)
    heartbeats: list[bytes] = field(default_factory=list)
    feed: list[tuple[bytes, dict[str, Any], tuple[bytes, ...]]] = field(default_factory=list)
    calibrations: list[CalibrationSeen] = field(default_factory=list)
    heads: dict[str, tuple[int, bytes, int]] = field(default_factory=dict)

    def ack(self, ident: bytes, scanner: str, seq: int) -> None:
        """Acknowledge ``seq`` (and all before it) of ``scanner`` to ``ident``."""
        k = (ident, scanner)
        if seq > self.acks.get(k, -1):
            self.acks[k] = seq

    @property
    def needs_commit(self) -> bool:
        """True when something must be made durable before the replies go out."""
        return bool(self.staged or self.scans)


@dataclass
class _PendingGap:
    seq: int
    scan_id: int | None
    cause: str = "lost"


WRITER_STALE_S = 10.0
"""A scanner's stream has one writer: the edge process (by its boot id) that said
HELLO last. Another process of the same edge is refused while the writer was
heard from (HELLO, heartbeat, block) within :meth:`_Writer.stale_s`, s: three and
a half of its own heartbeat intervals as central measures them (an edge
heartbeats every ``heartbeat_s``, 1 s by default, and says HELLO again after
three missed answers), at least ``WRITER_MIN_STALE_S`` and at most this. A
writer silent longer (crashed, cut off) gives way, so an edge restarted after a
crash takes its stream back within seconds; if the old process comes back it is
the one refused."""

DUPLICATE_ALARM_S = 60.0
"""At most one ``duplicate_edge`` alarm per refused process and scanner in this time, s."""

WRITER_MIN_STALE_S = 2.0
"""The shortest silence after which a writer gives way, s (scheduling hiccups)."""


@dataclass
class _Writer:
    boot: str
    heard: float
    edge: str = ""
    hb_at: float | None = None  # when its last heartbeat came
    hb_gap: float = 1.0  # its heartbeat interval, smoothed (the edge's default to start)

    def stale_s(self) -> float:
        """How long this writer may be silent before another process may take over, s."""
        return min(WRITER_STALE_S, max(WRITER_MIN_STALE_S, 3.5 * self.hb_gap))


#: the second part of the routing id of ``nii doctor``'s probe (``edge/doctor/random``):
#: its HELLO is answered but never takes (or is refused) a scanner's stream
PROBE = b"doctor"


def _boot_of(ident: bytes) -> str | None:
    """The boot id an edge process puts last in its routing id (``edge/scanner/boot``)."""
    parts = ident.split(b"/")
    if len(parts) != 3:
        return None
    try:
        return parts[2].decode("ascii")
    except UnicodeDecodeError:
        return None


class Ingest:
    """Verification and scan bookkeeping for central, one instance per process.

    Args:
        store: Reads of the committed CIR.
        open_block: Decrypts a block's payload (``core.seal.Opener.open``); raises
            IntegrityError when it cannot.
        alarm: Called at once for every alarm, as ``alarm(scanner, edge, kind,
            message, **details)``.
        preview_hz: Live-feed previews per second and scanner; 0 for none.
        clock: Monotonic seconds, for the preview rate.
    """

    def __init__(
        self,
        store: IngestStore,
        open_block: Callable[[Block], bytes],
        alarm: AlarmSink,
        *,
        preview_hz: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.open_block = open_block
        self.alarm = alarm
        self.preview_hz = preview_hz
        self.clock = clock
        self.streams: dict[str, StreamState] = {}
        self.scans: dict[int, ScanBook] = {}
        self.shapes: dict[int, ScanShape] = {}
        #: refs allocated one by one by the database (several aggregators share it)
        self._shared_refs = bool(getattr(store, "shared_refs", False))
        self._next_ref: int | None = None if self._shared_refs else store.next_scan_ref()
        self.duplicates = 0
        self.out_of_order = 0
        self.rejected: dict[str, int] = {}
        self._inflight_hash: dict[tuple[str, int], bytes] = {}
        self._sign_keys: dict[str, Any] = {}
        self._last_preview: dict[str, float] = {}
        self._gaps_since_scan: dict[str, list[_PendingGap]] = {}
        self._fresh: set[str] = set()  # streams loaded from the CIR, no block since
        self._writers: dict[str, _Writer] = {}  # scanner -> the edge process streaming it
        #: when the message being handled was received (monotonic s; None: now): its
        #: sender was alive then, which may be a while before it is staged
        self.received_at: float | None = None
        self._dup_alarmed: dict[tuple[str, str], float] = {}  # (scanner, boot) -> last alarm
        #: ALARMs dropped because their sender is not the live writer of their scanner
        self.alarms_dropped = 0

    # -- life cycle ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget all tentative state (after a failed commit); the CIR is the truth."""
        self._inflight_hash.clear()
        self.streams.clear()
        self.scans.clear()
        self.shapes.clear()
        # read again at the next new scan: the CIR (its database) may be out of reach now
        self._next_ref = None

    def forget(self, scanner: str) -> None:
        """Forget what this process knows of ``scanner``'s stream: another aggregator may
        have written it since (its lease changed hands); it is read from the CIR again."""
        self.streams.pop(scanner, None)
        self._fresh.discard(scanner)
        self._gaps_since_scan.pop(scanner, None)
        self._last_preview.pop(scanner, None)
        for ref in [r for r, book in self.scans.items() if book.scanner == scanner]:
            self.scans.pop(ref, None)
            self.shapes.pop(ref, None)
        for key in [k for k in self._inflight_hash if k[0] == scanner]:
            self._inflight_hash.pop(key, None)

    def last_heard(self, scanner: str) -> float | None:
        """When (``clock``) the process streaming ``scanner`` was last heard, or None."""
        w = self._writers.get(scanner)
        return None if w is None else w.heard

    def _take_ref(self) -> int:
        """The next scan ref (the CIR's highest ref + 1, read once after a reset; or one
        allocated by the shared database)."""
        if self._shared_refs:
            return self.store.next_scan_ref()
        if self._next_ref is None:
            self._next_ref = self.store.next_scan_ref()
        ref = self._next_ref
        self._next_ref += 1
        return ref

    def committed(self, work: Work) -> None:
        """Record that ``work`` is durable: closed scans and in-flight hashes are let go."""
        for r in work.finished:
            self.scans.pop(r, None)
            self.shapes.pop(r, None)
        for k in work.staged_hash:
            self._inflight_hash.pop(k, None)

    def load_stream(self, scanner: str) -> StreamState | None:
        """The live state of a scanner's chain (from the CIR the first time)."""
        st = self.streams.get(scanner)
        if st is None:
            st = self.store.stream(scanner)
            if st is not None:
                self.streams[scanner] = st
                self._fresh.add(scanner)
                if st.scan_ref is not None and st.scan_ref not in self.scans:
                    row = self.store.scan(st.scan_ref)
                    if row is not None:
                        self.scans[st.scan_ref] = ScanBook.from_row(row)
        return st

    # -- messages --------------------------------------------------------------------------
    def message(
        self, work: Work, ident: bytes, edge: EnrolledEdge | None, msg: Message, extra: list[Any]
    ) -> None:
        """Handle one decoded message from a connected peer (not heartbeats).

        Args:
            work: The batch being built.
            ident: The ROUTER identity of the sender (for replies).
            edge: The enrolled edge of the sender's CurveZMQ key; None if none.
            msg: The decoded message.
            extra: The frames after the header.

        Raises:
            ProtocolError: A message an edge must not send (WELCOME, ACK, NACK, HB
                are answered elsewhere), a BLOCK without its block frame, a routing id
                that is not the sender's edge's (:meth:`check_sender`), or an ALARM for
                a scanner bound to another edge.
        """
        if edge is None or edge.revoked:
            if isinstance(msg, BlockMsg):
                work.nacks.append(
                    (
                        ident,
                        Nack(
                            scanner=msg.scanner,
                            seq=msg.seq,
                            expected=-1,
                            reason="edge not enrolled or revoked",
                            fatal=True,
                        ),
                    )
                )
            return
        self.check_sender(ident, edge)
        if isinstance(msg, BlockMsg):
            if len(extra) != 1:
                why = f"BLOCK {msg.scanner}/{msg.seq} has {len(extra)} data frames, not 1"
                work.nacks.append(
                    (
                        ident,
                        Nack(scanner=msg.scanner, seq=msg.seq, expected=-1, reason=why, fatal=True),
                    )
                )
                raise ProtocolError(why)
            self.block(work, ident, edge, msg, extra[0])
        elif isinstance(msg, Hello):
            self.hello(work, ident, edge, msg)
        elif isinstance(msg, Alarm):
            self.edge_alarm(ident, edge, msg)
        else:
            raise ProtocolError(f"an edge does not send {msg.TYPE.decode()} messages")

    @staticmethod
    def check_sender(ident: bytes, edge: EnrolledEdge) -> None:
        """Refuse a routing id that does not start with the sender's enrolled edge id + ``/``.

        The peer chooses its routing id and central's replies go by it: a peer naming
        its connection after another edge (``edge-demo/scanner1``) would be answered
        in its place. Edges use ``edge/scanner/boot``, the doctor ``edge/doctor/…``.

        Raises:
            ProtocolError: The routing id is another edge's, or has no edge in it.
        """
        if not ident.startswith(edge.id.encode() + b"/"):
            raise ProtocolError(
                f"routing id {ident[:80]!r} of edge {edge.id} does not start with "
                f"'{edge.id}/': an edge names its connection after itself"
            )

    def bound_edge(self, scanner: str) -> str | None:
        """The edge a scanner belongs to: its chain's in the CIR, else the edge of its
        live writer (HELLO answered, no block yet); None for a scanner nobody streams."""
        st = self.load_stream(scanner)
        if st is not None:
            return st.edge
        w = self._writers.get(scanner)
        if w is not None and w.edge and self.clock() - w.heard < w.stale_s():
            return w.edge
        return None

    def _check_bound(self, scanner: str, edge: EnrolledEdge, what: str) -> None:
        bound = self.bound_edge(scanner) if scanner else None
        if bound is not None and bound != edge.id:
            raise ProtocolError(
                f"edge {edge.id} sent {what} for scanner {scanner}, which is bound to edge {bound}"
            )

    def edge_alarm(self, ident: bytes, edge: EnrolledEdge, msg: Alarm) -> None:
        """An edge's ALARM: raised under the sending edge's id when it may speak for its
        scanner; dropped (counted in ``alarms_dropped``) when it comes from a process of
        that edge that is not the scanner's live writer (``duplicate_edge`` told the
        control room about that process already).

        Raises:
            ProtocolError: The alarm names a scanner bound to another edge.
        """
        self._check_bound(msg.scanner, edge, f"a {msg.kind} alarm")
        if msg.scanner and self._other_writer(msg.scanner, _boot_of(ident)) is not None:
            self.alarms_dropped += 1
            return
        self.alarm(msg.scanner, edge.id, msg.kind, msg.message, **msg.details)

    def heartbeat(self, work: Work, ident: bytes, edge: EnrolledEdge, msg: Heartbeat) -> bool:
        """A heartbeat from an enrolled edge: answered, and its writer kept alive.

        Returns:
            True when the sender may speak for its scanner (and the scanner its
            ``uptime`` entries name): it is the live writer of each, or none is
            known. False for another process of the edge (its uptime is not stored).

        Raises:
            ProtocolError: The routing id is not the edge's (:meth:`check_sender`), the
                ``sender`` names another edge, or a scanner bound to another edge.
        """
        self.check_sender(ident, edge)
        sender_edge, _, scanner = msg.sender.partition("/")
        if sender_edge != edge.id:
            raise ProtocolError(f"edge {edge.id} sent a heartbeat as {msg.sender!r}")
        self._check_bound(scanner, edge, "a heartbeat")
        work.heartbeats.append(ident)
        if msg.state.get("stopping") is True:
            # the writer stops cleanly (edge.ScannerChannel.close): its successor, a
            # restart, may take the stream at once
            w = self._writers.get(scanner)
            if w is not None and w.boot == msg.boot:
                del self._writers[scanner]
            return True
        self.heard(edge.id, msg.sender, msg.boot)
        named = {scanner}
        up = msg.state.get("uptime")
        if isinstance(up, dict) and isinstance(up.get("scanner"), str) and up["scanner"]:
            named.add(up["scanner"])
        return all(self._other_writer(s, msg.boot) is None for s in named)

    def heard(self, edge_id: str, sender: str, boot: str) -> None:
        """A heartbeat from ``sender`` (``edge/scanner``): its writer is alive."""
        edge, _, scanner = sender.partition("/")
        w = self._writers.get(scanner)
        if edge == edge_id and w is not None and w.boot == boot:
            now = self._heard_at()
            if w.hb_at is not None:
                w.hb_gap = 0.5 * w.hb_gap + 0.5 * min(max(0.0, now - w.hb_at), WRITER_STALE_S)
            w.hb_at = now
            w.heard = max(w.heard, now)

    def _heard_at(self) -> float:
        """When the sender of the message being handled was alive (monotonic s)."""
        return self.clock() if self.received_at is None else self.received_at

    def _other_writer(self, scanner: str, boot: str | None) -> _Writer | None:
        """The live writer of ``scanner`` if it is another process than ``boot``."""
        w = self._writers.get(scanner)
        if boot is None or w is None or w.boot == boot:
            return None
        return w if self.clock() - w.heard < w.stale_s() else None

    def hello(self, work: Work, ident: bytes, edge: EnrolledEdge, msg: Hello) -> None:
        """A HELLO: answered with a WELCOME unless it claims another edge or scanner,
        or another process of the same edge streams that scanner (one writer per stream).
        The doctor's probe (routing id ``edge/doctor/…``) is answered without taking
        the stream, so a doctor run neither trips nor blocks the running edge."""
        if msg.edge != edge.id:
            self.alarm(
                msg.scanner, edge.id, "identity", f"edge {edge.id} said hello as {msg.edge!r}"
            )
            return
        bound = self.bound_edge(msg.scanner)
        if bound is not None and bound != edge.id:
            work.nacks.append(
                (
                    ident,
                    Nack(
                        scanner=msg.scanner,
                        seq=-1,
                        expected=-1,
                        fatal=True,
                        reason=f"scanner {msg.scanner} is bound to edge {bound}",
                    ),
                )
            )
            return
        probe = ident.split(b"/")[1:2] == [PROBE]
        w = None if probe else self._other_writer(msg.scanner, msg.boot)
        if w is not None:
            why = (
                f"scanner {msg.scanner} is streamed by another process of edge {edge.id} "
                f"(boot {w.boot}, heard {self.clock() - w.heard:.1f} s ago): one edge "
                "identity runs twice (a second edge process, or two boxes with one key)"
            )
            # the newcomer says HELLO again every fraction of a second: one alarm a
            # minute per process, not a flood that hides every other alarm
            key = (msg.scanner, msg.boot)
            if self.clock() - self._dup_alarmed.get(key, -1e18) >= DUPLICATE_ALARM_S:
                self._dup_alarmed[key] = self.clock()
                self.alarm(
                    msg.scanner,
                    edge.id,
                    "duplicate_edge",
                    f"{why}; the newcomer (boot {msg.boot}) is refused",
                    boot=msg.boot,
                    writer=w.boot,
                )
            work.nacks.append(
                (ident, Nack(scanner=msg.scanner, seq=-1, expected=-1, fatal=True, reason=why))
            )
            return
        if not probe:
            self._writers[msg.scanner] = _Writer(msg.boot, self._heard_at(), edge.id)
        work.hellos.append((ident, msg.scanner))

    def settle(self, work: Work) -> None:
        """Fix the chain heads that ``work``'s WELCOMEs will name: where each stream
        stands at the end of this batch, which is durable once the batch is."""
        for _, scanner in work.hellos:
            if scanner not in work.heads:
                work.heads[scanner] = self.welcome(scanner)

    def welcome(self, scanner: str) -> tuple[int, bytes, int]:
        """``(last_seq, last_hash, link_next_seq)`` of a scanner's chain for a WELCOME."""
        st = self.streams.get(scanner) or self.load_stream(scanner)
        if st is None:
            return -1, genesis_hash(scanner), -1
        return st.last_seq, st.last_hash, st.link_next_seq

    def _reject(
        self, work: Work, ident: bytes, edge: str, msg: BlockMsg, reason: str, message: str
    ) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self.alarm(
            msg.scanner,
            edge,
            "block_rejected",
            f"block {msg.seq} refused: {message}",
            reason=reason,
            seq=msg.seq,
        )
        work.nacks.append(
            (
                ident,
                Nack(
                    scanner=msg.scanner,
                    seq=msg.seq,
                    expected=-1,
                    reason=f"{reason}: {message}"[:4096],
                    fatal=True,
                ),
            )
        )

    def block(
        self, work: Work, ident: bytes, edge: EnrolledEdge, msg: BlockMsg, frame: Any
    ) -> None:
        """One BLOCK: check it against every rule, then stage it or refuse it."""
        edge_id = edge.id
        boot = _boot_of(ident)
        if self._other_writer(msg.scanner, boot) is not None:
            # a process that lost the stream to another (see hello): never chained in
            why = f"scanner {msg.scanner} is streamed by another process of edge {edge_id}"
            work.nacks.append(
                (ident, Nack(scanner=msg.scanner, seq=msg.seq, expected=-1, fatal=True, reason=why))
            )
            return
        w = self._writers.get(msg.scanner)
        if w is not None and w.boot == boot:
            w.heard = max(w.heard, self._heard_at())
        try:
            raw = frame.buffer if hasattr(frame, "buffer") else frame
            if isinstance(raw, bytearray):
                raw = bytes(raw)
            if not isinstance(raw, bytes | memoryview):
                raise IntegrityError("block frame is not bytes", reason="malformed")
            block = parse(raw)
            if block.edge != edge_id or block.scanner != msg.scanner or block.seq != msg.seq:
                raise IntegrityError(
                    f"block claims edge {block.edge[:64]!r} scanner {block.scanner[:64]!r} seq "
                    f"{block.seq}, but came from edge {edge_id!r} as {msg.scanner}/{msg.seq}",
                    reason="identity",
                )
            key = self._sign_keys.get(edge.sign_public)
            if key is None:
                key = self._sign_keys[edge.sign_public] = EdgePublic.from_b64(edge.sign_public)
            verify(block, key)
        except IntegrityError as exc:
            self._reject(work, ident, edge_id, msg, exc.reason, exc.message)
            return
        st = self.load_stream(block.scanner)
        if st is None:
            st = StreamState(
                block.scanner, edge_id, -1, genesis_hash(block.scanner), -1, None, None
            )
            self.streams[block.scanner] = st
        if st.edge != edge_id:
            self._reject(
                work,
                ident,
                edge_id,
                msg,
                "identity",
                f"scanner {block.scanner} is bound to edge {st.edge}",
            )
            return
        h = block.hash
        if block.seq <= st.last_seq:
            known = self._inflight_hash.get((block.scanner, block.seq)) or self.store.block_hash(
                block.scanner, block.seq
            )
            if known == h:
                self.duplicates += 1
                work.ack(ident, block.scanner, st.last_seq)
            else:
                self._reject(
                    work,
                    ident,
                    edge_id,
                    msg,
                    "replay",
                    f"sequence number {block.seq} is already taken by another block",
                )
            return
        if block.seq > st.last_seq + 1:
            self.out_of_order += 1
            work.nacks.append(
                (
                    ident,
                    Nack(
                        scanner=block.scanner, seq=block.seq, expected=st.last_seq + 1, reason="gap"
                    ),
                )
            )
            return
        if block.prev_hash != st.last_hash:
            self._reject(
                work,
                ident,
                edge_id,
                msg,
                "chain",
                "its prev_hash is not the hash of the block before it",
            )
            return
        self._accept(work, ident, st, block, h)

    # -- scans -----------------------------------------------------------------------------
    def _accept(self, work: Work, ident: bytes, st: StreamState, block: Block, h: bytes) -> None:
        kind = block.kind
        scan_id = block.meta.get("scan_id")
        ref = st.scan_ref if st.scan_ref in self.scans else None
        image_lines = calib = 0
        if kind == BlockKind.GAP:
            ref = self._gap(work, st, block, ref)
        elif kind == BlockKind.SCAN_START:
            if ref is not None:
                self._close_incomplete(
                    work, st, ref, block, f"scan {scan_id} started before its end record arrived"
                )
            record = self._open_record(block)
            ref = self._new_scan(work, st, block, record)
            work.feed.append((b"scan.started", self._scan_doc(ref), ()))
        elif ref is None or st.scan_id != scan_id:  # DATA or SCAN_END of a scan not open
            if ref is not None:
                self._close_incomplete(
                    work,
                    st,
                    ref,
                    block,
                    f"a block of scan {scan_id} arrived before its end record",
                )
            ref = self._new_scan(work, st, block, {})
            self.alarm(
                block.scanner,
                st.edge,
                "no_start_record",
                f"scan {scan_id} has no scan-start record in the CIR",
            )
        if kind == BlockKind.DATA and ref is not None:
            image_lines, calib = self._data(block, ref)
        if ref is not None and ref in self.scans:
            s = self.scans[ref]
            s.blocks += 1
            s.last_seq = block.seq
            s.lines_received += image_lines
            s.calib_lines += calib
            work.scans.add(ref)
        if kind == BlockKind.DATA:
            self._maybe_preview(work, block, ref)
        elif kind == BlockKind.SCAN_END and ref is not None:
            self._close_scan(work, st, block, ref)
        block.meta["_scan_ref"] = ref
        st.last_seq = block.seq
        st.last_hash = h
        if block.index:
            st.link_next_seq = block.index[-1].link_seq + 1
        elif type(block.meta.get("last_seq")) is int:
            st.link_next_seq = int(block.meta["last_seq"]) + 1
        work.staged.append(Staged(block, h, image_lines, calib))
        work.staged_hash[(block.scanner, block.seq)] = h
        self._inflight_hash[(block.scanner, block.seq)] = h
        work.streams_touched.add(block.scanner)
        work.ack(ident, block.scanner, block.seq)
        self._fresh.discard(block.scanner)

    def _shape(self, ref: int) -> ScanShape:
        shape = self.shapes.get(ref)
        if shape is None:
            s = self.scans[ref]
            try:
                record = json.loads(s.start_record or "{}")
            except ValueError:
                record = {}
            rec = record if isinstance(record, dict) else {}
            shape = self.shapes[ref] = ScanShape(record_channels(rec), record_lines(rec))
            if s.blocks:
                self._replay_shape(ref, shape)
        return shape

    def _replay_shape(self, ref: int, shape: ScanShape) -> None:
        """Bring the shape of scan ``ref``, loaded from the CIR after a restart, to where
        its committed DATA blocks left it: the lines still to come are judged against
        every line already stored (line order, the channel count its first block fixed),
        exactly as the CIR's readers judge them (``central._reader.ScanTally``)."""
        try:
            for block in self.store.scan_data_blocks(ref):
                shape.fit(block.meta.get("channels"), block.index, len(block.cipher))
        except NiiError as exc:
            # its lines cannot be judged any more: the scan cannot be proven complete
            shape.violations += 1
            shape.problems.append(f"its stored blocks could not be read again: {exc.message}")

    def _data(self, block: Block, ref: int) -> tuple[int, int]:
        """Image and calibration lines of a data block that fit its scan's shape."""
        if ref not in self.scans:
            return 0, 0
        shape = self._shape(ref)
        mask, problem = shape.fit(block.meta.get("channels"), block.index, len(block.cipher))
        image = sum(
            1 for e, ok in zip(block.index, mask, strict=True) if ok and not e.flags & CALIB_FLAGS
        )
        calib = sum(
            1 for e, ok in zip(block.index, mask, strict=True) if ok and e.flags & CALIB_FLAGS
        )
        if problem:
            s = self.scans[ref]
            if shape.violations == 1:  # once per scan; the count is in the end alarm
                self.alarm(
                    block.scanner,
                    block.edge,
                    "shape_violation",
                    f"scan {s.scan_id} (ref {ref}) block {block.seq}: {problem}; "
                    "its lines that do not fit are stored but treated as missing",
                    seq=block.seq,
                    scan_id=s.scan_id,
                )
        return image, calib

    def _gap(self, work: Work, st: StreamState, block: Block, ref: int | None) -> int | None:
        """A GAP block: alarm, note it against the scan it cut; returns the scan it joins."""
        m = block.meta
        cause = m.get("cause", "lost")
        gap_scan = m.get("scan_id") if "scan_id" in m else None
        first, last = m.get("first_seq"), m.get("last_seq")
        known = type(first) is int and type(last) is int and last >= first
        what = (
            f"data-link packets {first}..{last} are not in the CIR"
            if known
            # a RESTART gap whose end the edge never saw: how much is unknown
            else f"data-link packets from {first} on may be missing, how many is unknown"
        )
        self.alarm(
            block.scanner,
            st.edge,
            GAP_ALARMS.get(str(cause), "data_lost"),
            f"GAP block {block.seq}: {what} ({cause}): {m.get('reason')}",
            seq=block.seq,
            cause=cause,
            scan_id=gap_scan,
        )
        self._gaps_since_scan.setdefault(block.scanner, []).append(
            _PendingGap(
                block.seq,
                gap_scan if type(gap_scan) is int and gap_scan >= 0 else None,
                str(cause),
            )
        )
        if ref is None:
            return None
        s = self.scans[ref]
        if cause == "restart":
            s.gaps += 1
            self._close_incomplete(
                work, st, ref, block, f"the scanner restarted (GAP block {block.seq})"
            )
            return None
        if gap_scan is None or gap_scan == st.scan_id:  # it cut this scan, which may go on
            s.gaps += 1
            return ref
        if type(gap_scan) is int and gap_scan >= 0:  # it cut a later scan: this one is over
            s.gaps += 1
            self._close_incomplete(
                work, st, ref, block, f"GAP block {block.seq} cut scan {gap_scan}, a later one"
            )
            return None
        return ref  # -1: the GAP fell between scans, as the edge saw it

    def _note_lost(self, work: Work, st: StreamState, block: Block, new_id: Any) -> None:
        """Rows of status ``lost`` for the scan ids a GAP swallowed before ``new_id``.

        Only a GAP of cause ``lost`` or ``restart`` (``SWALLOWING_CAUSES``) can have
        swallowed a scan; a ``violation`` GAP holds refused packets of the scan it
        names, so scan ids that jump past one are the scanner's own numbering.
        """
        gaps = [g for g in self._pending_gaps(block.scanner) if g.cause in SWALLOWING_CAUSES]
        self._gaps_since_scan.pop(block.scanner, None)
        prev = st.scan_id
        if not gaps or type(prev) is not int or type(new_id) is not int or new_id <= prev + 1:
            return
        first, last = prev + 1, new_id - 1
        seqs = [g.seq for g in gaps]
        for scan_id in range(first, min(last, first + MAX_LOST_ROWS - 1) + 1):
            ref = self._take_ref()
            self.scans[ref] = ScanBook.new(
                ref, block.scanner, scan_id, "lost", block.created_ns, gaps[0].seq, {}
            )
            self.scans[ref].gaps = len(gaps)
            self.scans[ref].finished_ns = block.created_ns
            work.scans.add(ref)
            work.finished.add(ref)
            work.lost.add(ref)
        ids = f"{first}" if first == last else f"{first}..{last}"
        self.alarm(
            block.scanner,
            st.edge,
            "scans_lost",
            f"GAP block(s) {', '.join(map(str, seqs[:10]))} swallowed scan(s) {ids}: "
            "no record or line of them reached the CIR",
            gap_seqs=seqs[:100],
            first_scan_id=first,
            last_scan_id=last,
        )

    def _pending_gaps(self, scanner: str) -> list[_PendingGap]:
        """GAP blocks since the stream's last scan: those staged by this process, or,
        right after central (re)started, the GAP blocks at the head of the CIR's chain."""
        gaps = self._gaps_since_scan.get(scanner, [])
        if not gaps and scanner in self._fresh:
            gaps = [_PendingGap(*g) for g in self.store.gap_tail(scanner)]
            self._gaps_since_scan[scanner] = gaps
        return list(gaps)

    def _new_scan(self, work: Work, st: StreamState, block: Block, record: dict[str, Any]) -> int:
        scan_id = block.meta.get("scan_id")
        pending = self._pending_gaps(block.scanner)
        self._note_lost(work, st, block, scan_id)
        ref = self._take_ref()
        ts = block.index[0].ts_ns if block.index else block.created_ns
        self.scans[ref] = ScanBook.new(
            ref, block.scanner, scan_id, "scanning", ts, block.seq, record
        )
        # a GAP that cut this very scan before its first block arrived
        self.scans[ref].gaps = sum(1 for g in pending if g.scan_id == scan_id)
        self.shapes[ref] = ScanShape(record_channels(record), record_lines(record))
        st.scan_ref = ref
        st.scan_id = scan_id if type(scan_id) is int else None
        work.scans.add(ref)
        seen = calibration_seen(block.scanner, ref, ts, record)
        if seen is not None:
            work.calibrations.append(seen)
        return ref

    def _open_record(self, block: Block) -> dict[str, Any]:
        try:
            return scan_record(self.open_block(block))
        except (NiiError, ValueError, RecursionError) as exc:
            self.alarm(
                block.scanner,
                block.edge,
                "bad_record",
                f"scan record in block {block.seq} unreadable: {str(exc)[:200]}",
            )
            return {}

    def _close_incomplete(
        self, work: Work, st: StreamState, ref: int, block: Block, why: str
    ) -> None:
        s = self.scans[ref]
        s.status = "incomplete"
        s.finished_ns = block.created_ns
        self.alarm(
            block.scanner,
            st.edge,
            "scan_incomplete",
            f"scan {s.scan_id} (ref {ref}) is incomplete: {why}; {s.lines_received} of "
            f"{s.lines_planned} lines, {s.gaps} gap(s)",
            scan_id=s.scan_id,
            ref=ref,
        )
        self._finish(work, st, ref)

    def _finish(self, work: Work, st: StreamState, ref: int) -> None:
        st.scan_ref = None  # st.scan_id stays: the last scan id seen, for lost-scan rows
        work.scans.add(ref)
        work.finished.add(ref)
        work.feed.append((b"scan.finished", self._scan_doc(ref), ()))

    def _close_scan(self, work: Work, st: StreamState, block: Block, ref: int) -> None:
        s = self.scans.get(ref)
        if s is None:
            return
        record = self._open_record(block)
        s.end_record = json.dumps(record)
        s.finished_ns = block.index[0].ts_ns if block.index else block.created_ns
        emitted = record.get("lines_emitted")
        s.lines_emitted = emitted if type(emitted) is int else None
        shape = self._shape(ref)
        complete = (
            record.get("status") == "complete"
            and s.gaps == 0
            and shape.violations == 0
            and s.lines_received == s.lines_planned
        )
        if complete:
            s.status = "complete"
        else:
            s.status = "aborted" if record.get("status") == "aborted" else "incomplete"
            reason = record.get("reason")
            self.alarm(
                block.scanner,
                st.edge,
                "scan_incomplete",
                f"scan {s.scan_id} (ref {ref}) is {s.status}: {s.lines_received} of "
                f"{s.lines_planned} lines, {s.gaps} gap(s)"
                + (
                    f", {shape.violations} block(s) off the scan's shape"
                    if shape.violations
                    else ""
                )
                + (f", {str(reason)[:200]}" if reason else ""),
                scan_id=s.scan_id,
                ref=ref,
            )
        self._finish(work, st, ref)

    def _scan_doc(self, ref: int) -> dict[str, Any]:
        return self.scans[ref].feed_doc()

    def _maybe_preview(self, work: Work, block: Block, ref: int | None) -> None:
        if self.preview_hz <= 0:
            return
        now = self.clock()
        if now - self._last_preview.get(block.scanner, -1e18) < 1.0 / self.preview_hz:
            return
        self._last_preview[block.scanner] = now
        ch = block.meta.get("channels", 0)
        n = len(block.index)
        if n == 0 or type(ch) is not int or ch <= 0 or len(block.cipher) != n * ch * 4 + 16:
            return
        try:
            plain = self.open_block(block)
        except IntegrityError as exc:
            self.alarm(
                block.scanner, block.edge, "bad_block", f"block {block.seq} does not decrypt: {exc}"
            )
            return
        if len(plain) != n * ch * 4:
            return
        arr = np.frombuffer(plain, dtype="<u2").reshape(n, 2, ch)[:, 0, :]
        step = max(1, ch // 192)
        preview = (arr[:, ::step] >> 8).astype(np.uint8)
        doc = {
            "scan_ref": ref,
            "scanner": block.scanner,
            "scan_id": block.meta.get("scan_id"),
            "seq": block.seq,
            "first_line": block.index[0].line_no,
            "lines": n,
            "shape": list(preview.shape),
            "mean_high": float(arr.mean()),
        }
        work.feed.append((b"scan.block", doc, (preview.tobytes(),)))
