"""The scan assembler: data-link packets and events in, blocks to seal out.

A pure core (no sockets, no tasks, an injectable clock; ``docs/decisions`` and
``STYLE.md``): :class:`ScanAssembler` takes what :meth:`drivers.DataLink.packets`
yields, in order, and returns typed outputs for the channel to act on:

* :class:`BlockOut`: a block to seal and spool (DATA, SCAN_START, SCAN_END, GAP);
* :class:`AlarmOut`: an alarm to raise;
* :class:`PositionOut`: a new data-link position to persist without a block (a
  new scanner session).

Rules, each unit-tested in ``tests/unit/edge/test_assembler.py``:

* lines of one scan go into a DATA block, closed on ``block_lines``, on
  ``block_ms`` (:meth:`ScanAssembler.tick`), on a change of scan and around the
  scan-start and scan-end records;
* a scan's shape (its channel count) is fixed by its SCAN_START record, or by its
  first line when the record was not seen; a LINE with another channel count,
  zero channels, a payload that is not ``4 * channels`` bytes, or a ``line_no``
  not above the last of its kind (dark, air or image lines) in the scan is
  refused: a run of such packets becomes one GAP block (cause ``violation``; a
  long run one per :data:`VIOLATION_RUN_S`) and the first of each rule a scan breaks one
  ``protocol_violation`` alarm naming the violation, the scan and the packet;
* every GAP block names its ``cause`` and the ``scan_id`` it cut (-1 if none):
  a :class:`~drivers.LinkGap` that falls inside an open scan cuts that scan; its
  alarm is ``data_lost`` (causes ``lost``, ``restart``) or
  ``protocol_violation`` (cause ``violation``: the link refused the packets);
* a :class:`~drivers.LinkEpoch` closes what is open, cuts the open scan (a
  RESTART GAP naming it), raises ``scanner_restarted`` and moves the data-link
  position to the new session; every block names its ``link_session``;
* a device timestamp that :func:`core.clock.implausible` rejects is counted in
  the block's meta (``ts_implausible``) and alarmed once per scan
  (``clock_implausible``); it is never used for anything else here.

The edge never says a scan is complete: central judges completeness.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.clock import implausible
from core.seal import BlockKind
from drivers import GapCause, LinkEpoch, LinkGap, Packet, PacketType

__all__ = [
    "AlarmOut",
    "AssemblerStats",
    "BlockOut",
    "Output",
    "PositionOut",
    "ScanAssembler",
    "with_att_role",
    "with_calibration",
]

log = logging.getLogger("nii.edge")

VIOLATION_RUN_S = 1.0
"""A run of refused packets is one GAP block per this many seconds at most (or per
``block_ms``, if longer): a scan whose every line breaks its shape makes a few GAP
blocks, not one per line, and each is durable within this time."""

IndexEntry = tuple[int, int, int, int]
"""One line's index entry: (line_no, flags, ts_ns, link seq)."""


@dataclass(frozen=True, slots=True)
class BlockOut:
    """A block to seal and spool, in this order."""

    kind: BlockKind
    meta: dict[str, Any]
    """The block's meta (``kind``, ``scan_id``, ``link_session``, …), without edge/scanner."""
    index: list[IndexEntry]
    payload: bytes
    link_next: int
    """The data-link packet to ask for once this block is durable."""
    link_session: str
    """The scanner session ``link_next`` belongs to."""


@dataclass(frozen=True, slots=True)
class AlarmOut:
    """An alarm to raise: ``kind`` (e.g. ``protocol_violation``), a message, details."""

    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PositionOut:
    """Persist this data-link position (a new scanner session began)."""

    link_session: str
    link_next: int


Output = BlockOut | AlarmOut | PositionOut


@dataclass
class AssemblerStats:
    """What the assembler handled (exported as metrics)."""

    lines: int = 0
    calib_lines: int = 0
    scans_started: int = 0
    scans_ended: int = 0
    gaps: int = 0
    lost_packets: int = 0
    violations: int = 0
    ts_implausible: int = 0
    epochs: int = 0
    calibration_replaced: int = 0  # start records whose own calibration the edge's replaced


def with_att_role(record: bytes, role: str | None) -> bytes:
    """The scan-start record as the edge forwards it: with the checkpoint's ATT role (R12).

    Without a configured ``att_role`` the scanner's bytes go on untouched (with
    its own ``att_role``, if it sends one). With one, the configured role wins:
    it is written into the record, and a different role the scanner gave is
    kept beside it as ``att_role_scanner``. A record that is not a JSON object
    goes on untouched (central alarms an unreadable record).
    """
    if role is None:
        return record
    try:
        doc = json.loads(record)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        return record
    if not isinstance(doc, dict):
        return record
    own = doc.get("att_role")
    if own is not None and own != role:
        doc["att_role_scanner"] = own
    doc["att_role"] = role
    return json.dumps(doc).encode()


#: Key of the scanner's calibration document in a forwarded scan-start record.
CALIBRATION_KEY = "scanner_calibration"


def with_calibration(
    record: bytes, calibration: dict[str, Any] | None, sha256: str = ""
) -> tuple[bytes, str | None]:
    """The scan-start record as the edge forwards it: with the scanner's calibration.

    Args:
        record: the scan-start record's bytes as the scanner sent them (JSON).
        calibration: the scanner's calibration document from the edge configuration
            (``[[scanner]] calibration``), or None when the edge has none.
        sha256: ``core.scanner_cal.document_sha256`` of ``calibration`` (computed here
            when not given).

    Returns:
        ``(bytes, replaced)``: without a configured calibration, or when the record is
        not a JSON object (central alarms an unreadable record), the scanner's bytes
        untouched and None. Otherwise the record with ``scanner_calibration`` set to the
        edge's document (the configuration wins), and ``replaced`` the SHA-256 of a
        different document the scanner's record carried (kept beside it as
        ``scanner_calibration_scanner_sha256``, the document itself is dropped to keep
        the record small), else None.
    """
    if calibration is None:
        return record, None
    try:
        doc = json.loads(record)
    except (ValueError, RecursionError):
        return record, None
    if not isinstance(doc, dict):
        return record, None
    from core.scanner_cal import document_sha256

    sha = sha256 or document_sha256(calibration)
    own = doc.get(CALIBRATION_KEY)
    replaced = None
    if own is not None:
        own_sha = document_sha256(own) if isinstance(own, dict) else "not a JSON object"
        if own_sha != sha:
            replaced = own_sha
            doc["scanner_calibration_scanner_sha256"] = own_sha
    doc[CALIBRATION_KEY] = calibration
    return json.dumps(doc, separators=(",", ":")).encode(), replaced


def record_channels(record: bytes) -> int | None:
    """The channel count a SCAN_START record declares, or None if it declares none."""
    return _record_count(record, "channels")


def record_lines(record: bytes) -> int | None:
    """The image lines a SCAN_START record plans (``lines``), or None if it plans none."""
    return _record_count(record, "lines")


def _record_count(record: bytes, key: str) -> int | None:
    try:
        doc = json.loads(record)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    n = doc.get(key)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n
    return None


@dataclass
class _Scan:
    """What the assembler knows of the scan whose packets are arriving."""

    scan_id: int
    channels: int
    open: bool  # its SCAN_START was seen and its SCAN_END not yet
    last_line: dict[int, int] = field(default_factory=dict)  # flags & 3 -> last line_no
    planned: int = 0  # image lines its start record plans (0: none said)
    clock_alarmed: bool = False


@dataclass
class _Block:
    scan_id: int
    channels: int
    opened: float
    payloads: list[bytes] = field(default_factory=list)
    index: list[IndexEntry] = field(default_factory=list)
    ts_bad: int = 0


@dataclass
class _Violation:
    first_seq: int
    last_seq: int
    what: str
    reason: str
    scan_id: int
    opened: float


class ScanAssembler:
    """Packets and link events of one scanner in, blocks and alarms out (pure).

    Args:
        block_lines: close a DATA block at this many lines.
        block_ms: close a DATA block this many ms after its first line (see :meth:`tick`).
        session: the scanner session the data link starts in ("" if not known).
        att_role: the checkpoint's ATT role written into scan-start records, or None.
        calibration: the scanner's calibration document written into scan-start records
            (:func:`with_calibration`), or None.
        clock: monotonic seconds, for ``block_ms``.
        wall_clock: this host's wall clock, Unix seconds, to judge device timestamps.
    """

    def __init__(
        self,
        *,
        block_lines: int,
        block_ms: float,
        session: str = "",
        att_role: str | None = None,
        calibration: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.block_lines = max(1, block_lines)
        self.block_s = block_ms / 1000.0
        self.session = session
        self.att_role = att_role
        self.calibration = calibration
        self.calibration_sha256 = ""
        if calibration is not None:
            from core.scanner_cal import document_sha256

            self.calibration_sha256 = document_sha256(calibration)
        self._clock = clock
        self._wall = wall_clock
        self.stats = AssemblerStats()
        self._scan: _Scan | None = None
        self._block: _Block | None = None
        self._violation: _Violation | None = None
        self._next_seq = -1  # the next link seq expected (-1: not known yet)
        self._alarmed: set[tuple[int, str]] = set()  # (scan, violation) already alarmed

    # -- inputs ------------------------------------------------------------------------
    def feed(self, item: Packet | LinkGap | LinkEpoch) -> list[Output]:
        """Take one item from the data link; return what to do, in order."""
        out: list[Output] = []
        if isinstance(item, LinkEpoch):
            self._epoch(item, out)
        elif isinstance(item, LinkGap):
            self._gap(item, out)
        elif item.type == PacketType.LINE:
            self._line(item, out)
        elif item.type in (PacketType.SCAN_START, PacketType.SCAN_END):
            self._record(item, out)
        # other packet types (SESSION) carry no data: the link consumes them
        return out

    def tick(self) -> list[Output]:
        """Close a DATA block (or a run of refused packets) open ``block_ms`` or longer."""
        out: list[Output] = []
        b = self._block
        if b is not None and self._clock() - b.opened >= self.block_s:
            self._close_block(out)
        v = self._violation
        if v is not None and self._clock() - v.opened >= max(self.block_s, VIOLATION_RUN_S):
            self._close_violation(out)
        return out

    def flush(self) -> list[Output]:
        """Close whatever is open now (before a pause or a stop)."""
        out: list[Output] = []
        self._close_all(out)
        return out

    def adopt_session(self, session: str) -> None:
        """The link learned the session it follows without an epoch: take it if unknown.

        A link started without a session adopts the first one the scanner
        announces (no packets lost, no epoch); the blocks from here on name it.
        """
        if not self.session and session:
            self.session = session

    def reset(self, session: str) -> None:
        """Forget what is open: the link restarts from the durable position of ``session``.

        Blocks not yet returned are dropped; the data link delivers their packets again.
        """
        self.session = session
        self._scan = None
        self._block = None
        self._violation = None
        self._next_seq = -1

    @property
    def open_lines(self) -> int:
        """Lines in the DATA block being built."""
        return 0 if self._block is None else len(self._block.payloads)

    # -- rules -------------------------------------------------------------------------
    def _line(self, p: Packet, out: list[Output]) -> None:
        scan = self._scan
        if scan is None or scan.scan_id != p.scan_id:
            self._close_all(out)
            # a scan whose start record was not seen (edge started mid-scan, or a gap
            # took it): its first line fixes its shape
            scan = self._scan = _Scan(p.scan_id, p.channels, open=False)
            self._alarmed = {k for k in self._alarmed if k[0] == p.scan_id}
        what = self._violates(scan, p)
        if what is not None:
            self._refuse(p, what, out)
            return
        if self._violation is not None:
            self._close_violation(out)
        cls = p.flags & 3
        scan.last_line[cls] = p.line_no
        b = self._block
        if b is None:
            b = self._block = _Block(p.scan_id, scan.channels, self._clock())
        b.payloads.append(p.payload)
        b.index.append((p.line_no, p.flags, p.ts_ns, p.seq))
        bad = self._judge_ts(p, scan, out)
        if bad:
            b.ts_bad += 1
        if cls:
            self.stats.calib_lines += 1
        else:
            self.stats.lines += 1
        self._next_seq = p.seq + 1
        if len(b.payloads) >= self.block_lines:
            self._close_block(out)

    def _violates(self, scan: _Scan, p: Packet) -> tuple[str, str] | None:
        """(kind, reason) if the line breaks its scan's shape or order, else None."""
        if p.channels <= 0:
            return "zero_channels", f"line {p.line_no} has {p.channels} channels"
        if scan.channels < 0:
            scan.channels = p.channels  # the start record declared none: the first line does
        if p.channels != scan.channels:
            return (
                "channel_count",
                f"line {p.line_no} has {p.channels} channels; the scan has {scan.channels}",
            )
        if len(p.payload) != 4 * p.channels:
            return (
                "payload_size",
                f"line {p.line_no} carries {len(p.payload)} bytes for {p.channels} channels "
                f"(expected {4 * p.channels})",
            )
        if scan.planned and not p.flags & 3 and p.line_no >= scan.planned:
            return (
                "line_range",
                f"line {p.line_no} is beyond the {scan.planned} image lines the scan planned",
            )
        last = scan.last_line.get(p.flags & 3)
        if last is not None and p.line_no <= last:
            word = "repeated" if p.line_no == last else "out of order"
            return "line_order", f"line {p.line_no} is {word} (after line {last})"
        return None

    def _refuse(self, p: Packet, what: tuple[str, str], out: list[Output]) -> None:
        kind, reason = what
        self.stats.violations += 1
        v = self._violation
        if v is not None and v.what == kind and v.scan_id == p.scan_id and v.last_seq + 1 == p.seq:
            v.last_seq = p.seq
            self._next_seq = p.seq + 1
            return
        self._close_all(out)
        self._violation = _Violation(p.seq, p.seq, kind, reason, p.scan_id, self._clock())
        self._next_seq = p.seq + 1
        if (p.scan_id, kind) in self._alarmed:
            return  # this scan broke this rule before: its GAP blocks say the rest
        self._alarmed.add((p.scan_id, kind))
        out.append(
            AlarmOut(
                "protocol_violation",
                f"scan {p.scan_id}: data-link packet {p.seq} refused: {reason}",
                {"violation": kind, "scan_id": p.scan_id, "seq": p.seq, "reason": reason},
            )
        )

    def _judge_ts(self, p: Packet, scan: _Scan | None, out: list[Output]) -> bool:
        why = implausible(p.ts_ns / 1e9, self._wall())
        if why is None:
            return False
        self.stats.ts_implausible += 1
        if scan is not None and not scan.clock_alarmed:
            scan.clock_alarmed = True
            out.append(
                AlarmOut(
                    "clock_implausible",
                    f"scan {p.scan_id}: the scanner's timestamps are not plausible: {why}",
                    {"scan_id": p.scan_id, "seq": p.seq, "reason": why},
                )
            )
        return True

    def _record(self, p: Packet, out: list[Output]) -> None:
        self._close_all(out)
        start = p.type == PacketType.SCAN_START
        payload = p.payload
        if start:
            self.stats.scans_started += 1
            channels = record_channels(p.payload) or 0
            self._scan = _Scan(p.scan_id, channels, open=True, planned=record_lines(p.payload) or 0)
            if channels == 0:
                self._scan.channels = -1  # fixed by the first line instead
            payload = with_att_role(payload, self.att_role)
            payload, replaced = with_calibration(payload, self.calibration, self.calibration_sha256)
            if replaced is not None:
                self.stats.calibration_replaced += 1
                if self.stats.calibration_replaced == 1:
                    log.warning(
                        "scan %s: the scanner's start record carries a calibration "
                        "(sha256 %s) other than the edge configuration's (sha256 %s): the "
                        "configuration's is forwarded (logged once)",
                        p.scan_id,
                        replaced[:16],
                        self.calibration_sha256[:16],
                    )
            kind = BlockKind.SCAN_START
        else:
            self.stats.scans_ended += 1
            kind = BlockKind.SCAN_END
        scan = self._scan
        bad = self._judge_ts(
            p, scan if scan is not None and scan.scan_id == p.scan_id else None, out
        )
        meta: dict[str, Any] = {"kind": kind.name.lower(), "scan_id": p.scan_id, "link_seq": p.seq}
        if bad:
            meta["ts_implausible"] = 1
        self._next_seq = p.seq + 1
        self._emit(kind, meta, [(p.line_no, p.flags, p.ts_ns, p.seq)], payload, p.seq + 1, out)
        if not start and scan is not None and scan.scan_id == p.scan_id:
            scan.open = False

    def _gap(self, g: LinkGap, out: list[Output]) -> None:
        self._close_all(out)
        scan_id = g.scan_id
        if scan_id < 0 and self._scan is not None and self._scan.open:
            scan_id = self._scan.scan_id
        self._emit_gap(g.first_seq, g.last_seq, g.reason, GapCause(g.cause), scan_id, out)
        n = g.last_seq - g.first_seq + 1
        if n > 0 or g.cause == GapCause.RESTART:
            violation = g.cause == GapCause.VIOLATION
            what = (
                f"{n} data-link packets ({g.first_seq}..{g.last_seq}) are "
                f"{'refused' if violation else 'lost'}"
                if n > 0
                # the old session's end was not seen: what it emitted after the last
                # packet read is lost, and nobody can say how much
                else f"data-link packets from {g.first_seq} on may be lost, how many is unknown"
            )
            out.append(
                AlarmOut(
                    "protocol_violation" if violation else "data_lost",
                    f"{what}: {g.reason}",
                    {
                        "first_seq": g.first_seq,
                        "last_seq": g.last_seq,
                        "cause": str(g.cause),
                        "scan_id": scan_id,
                    },
                )
            )
        if g.cause == GapCause.RESTART and self._scan is not None:
            self._scan.open = False  # the old session's scan will never go on

    def _epoch(self, e: LinkEpoch, out: list[Output]) -> None:
        self._close_all(out)
        self.stats.epochs += 1
        scan = self._scan
        if scan is not None and scan.open:
            # the link said nothing of it: the scan is cut here all the same
            first = self._next_seq if self._next_seq >= 0 else 0
            self._emit_gap(
                first,
                first - 1,
                f"scanner restarted (session {e.session}) during scan {scan.scan_id}",
                GapCause.RESTART,
                scan.scan_id,
                out,
            )
        self._scan = None
        old = self.session
        self.session = e.session
        self._next_seq = e.next_seq
        out.append(PositionOut(e.session, e.next_seq))
        out.append(
            AlarmOut(
                "scanner_restarted",
                f"the scanner started a new session {e.session} (serial {e.serial or '?'}); "
                f"was {old or 'unknown'}" + (f": {e.reason}" if e.reason else ""),
                {"previous": old, "session": e.session, "serial": e.serial, "next_seq": e.next_seq},
            )
        )

    # -- outputs -----------------------------------------------------------------------
    def _close_all(self, out: list[Output]) -> None:
        self._close_block(out)
        self._close_violation(out)

    def _close_block(self, out: list[Output]) -> None:
        b = self._block
        if b is None:
            return
        self._block = None
        meta: dict[str, Any] = {
            "kind": "data",
            "scan_id": b.scan_id,
            "channels": b.channels,
            "n_lines": len(b.payloads),
            "link_first": b.index[0][3],
            "link_last": b.index[-1][3],
        }
        if b.ts_bad:
            meta["ts_implausible"] = b.ts_bad
        self._emit(BlockKind.DATA, meta, b.index, b"".join(b.payloads), b.index[-1][3] + 1, out)

    def _close_violation(self, out: list[Output]) -> None:
        v = self._violation
        if v is None:
            return
        self._violation = None
        n = v.last_seq - v.first_seq + 1
        reason = f"{v.reason}" + (f" (and {n - 1} more packets like it)" if n > 1 else "")
        self._emit_gap(v.first_seq, v.last_seq, reason, GapCause.VIOLATION, v.scan_id, out)

    def _emit_gap(
        self,
        first: int,
        last: int,
        reason: str,
        cause: GapCause,
        scan_id: int,
        out: list[Output],
    ) -> None:
        n = max(0, last - first + 1)
        self.stats.gaps += 1
        self.stats.lost_packets += n
        meta = {
            "kind": "gap",
            "first_seq": first,
            "last_seq": last,
            "reason": reason,
            "cause": str(cause),
            "scan_id": scan_id,
        }
        self._next_seq = max(self._next_seq, last + 1)
        self._emit(BlockKind.GAP, meta, [], b"", last + 1, out)

    def _emit(
        self,
        kind: BlockKind,
        meta: dict[str, Any],
        index: list[IndexEntry],
        payload: bytes,
        link_next: int,
        out: list[Output],
    ) -> None:
        meta["link_session"] = self.session
        out.append(BlockOut(kind, meta, index, payload, link_next, self.session))
