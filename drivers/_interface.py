"""Device roles as async protocols, one per role.

A vendor driver implements these; the edge daemon only ever talks to these
protocols, so the simulator-backed driver and a real vendor's stand side by side
(as ophyd-async's signal backends do).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class PacketType(enum.IntEnum):
    """Kinds of packet on a detector data link."""

    LINE = 1
    SCAN_START = 2
    SCAN_END = 3
    SESSION = 4
    """Sent by the scanner first on every data-link connection, outside the
    sequence: its session (boot) id, serial number and the sequence numbers it
    holds (JSON payload; see ``drivers.lsp._io``)."""


class LineFlags(enum.IntFlag):
    """Per-line flags carried by LINE packets."""

    NONE = 0
    CALIB_DARK = 1  # beam off: dark offset line, sent at scan start
    CALIB_AIR = 2  # beam on, nothing in the tunnel: flat-field line
    FIRST = 4  # first line of the scan image
    LAST = 8  # last line of the scan image


@dataclass(slots=True)
class Packet:
    """One verified packet from a detector data link, in sequence order.

    ``payload`` is, for LINE, the high-energy samples then the low-energy samples
    (``channels`` little-endian uint16 each); for SCAN_START and SCAN_END, UTF-8 JSON.
    ``ts_ns`` is the scanner's emission time (CLOCK_REALTIME, ns).
    """

    type: PacketType
    seq: int
    ts_ns: int
    scan_id: int
    line_no: int
    channels: int
    flags: int
    payload: bytes


class GapCause(enum.StrEnum):
    """Why a :class:`LinkGap` happened; central maps each to its alarm."""

    LOST = "lost"
    """The scanner no longer holds the packets (its replay buffer moved on)."""
    VIOLATION = "violation"
    """The packets arrived intact (CRC good) but break the protocol; they were refused."""
    RESTART = "restart"
    """The scanner started a new session (reboot, replacement, re-flash) before
    sending them: they will never come."""


@dataclass(slots=True)
class LinkGap:
    """Packets ``first_seq``..``last_seq`` (inclusive) are gone for good.

    The edge must record the loss as a GAP block and raise an alarm. ``cause``
    says why (:class:`GapCause`). For ``RESTART`` the end of the old session is
    unknown: ``last_seq`` is the highest sequence number the link saw of it, or
    ``first_seq - 1`` when it saw none beyond what it delivered (then nothing is
    known to be lost, but the scanner may have emitted more). ``scan_id`` is the
    scan whose packets were refused or lost, where the link knows it (-1 if not).
    """

    first_seq: int
    last_seq: int
    reason: str
    cause: GapCause = GapCause.LOST
    scan_id: int = -1


@dataclass(slots=True)
class LinkEpoch:
    """The scanner's data-link session changed: its sequence numbers start again.

    Yielded by :meth:`DataLink.packets` when the scanner announces a session
    (boot) id other than the one the link was started with, or a packet counter
    behind what was already delivered (a rebooted, replaced or re-flashed
    scanner). It comes after the :class:`LinkGap` (cause ``RESTART``) for what of
    the old session could not be had, and before the first packet of the new
    session. From here on sequence numbers are the new session's.
    """

    session: str
    """The new session id (the scanner's boot id, hex)."""
    previous: str
    """The session the link was following ("" if it did not know one)."""
    next_seq: int
    """The first sequence number of the new session the link delivers (0 for
    LSP-1, whose sessions count from 0; a ``LOST`` gap follows at once for the
    packets the scanner no longer holds)."""
    serial: str = ""
    """The scanner's serial number, as it announced it."""
    reason: str = ""


@dataclass(slots=True)
class LinkStats:
    """Counters a data link driver keeps; exported as metrics."""

    packets: int = 0
    bytes: int = 0
    bad_crc: int = 0
    bad_header: int = 0
    resync_bytes: int = 0
    gaps: int = 0
    resumes: int = 0
    reconnects: int = 0
    stalls: int = 0
    lost_packets: int = 0
    violations: int = 0
    """Packets refused as outside the protocol (each one a ``VIOLATION`` gap)."""
    epochs: int = 0
    """New scanner sessions followed (each one a :class:`LinkEpoch`)."""
    no_session: int = 0
    """Connections dropped because the scanner did not announce its SESSION first."""

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@runtime_checkable
class DataLink(Protocol):
    """The fast detector data link (Ethernet on real scanners)."""

    stats: LinkStats

    def packets(
        self, next_seq: int, session: str = ""
    ) -> AsyncIterator[Packet | LinkGap | LinkEpoch]:
        """Yield packets in strict sequence order from ``next_seq`` on, forever.

        ``session`` is the scanner session ``next_seq`` belongs to ("" if not
        known). The driver reconnects and asks the scanner to resume by itself;
        what the scanner can no longer replay, or sent outside the protocol, comes
        out as a :class:`LinkGap`; a new scanner session as a :class:`LinkEpoch`.
        """
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class ScannerIdentity:
    vendor: str
    model: str
    serial: str
    firmware: str
    channels: int
    energies_kev: tuple[int, ...] = ()


@dataclass(slots=True)
class ScannerStatus:
    """The scanner's own view of itself, from its control link."""

    state: str  # idle, armed, scanning, fault, interlock
    armed: bool
    scanning: bool
    scan_id: int | None
    faults: list[str] = field(default_factory=list)
    raw: str = ""


@dataclass(slots=True)
class ControlEvent:
    """An unsolicited report on the control link (scan start/end, fault, status)."""

    kind: str  # SCAN_START, SCAN_END, FAULT, STATUS
    fields: list[str]
    raw: str


@runtime_checkable
class ScannerControl(Protocol):
    """The serial (or PLC) control and status link of a scanner."""

    async def open(self) -> None: ...

    async def identify(self) -> ScannerIdentity: ...

    async def status(self) -> ScannerStatus: ...

    async def arm(self) -> None: ...

    async def disarm(self) -> None: ...

    async def start_scan(self, scan_id: int, lines: int) -> None: ...

    async def stop_scan(self) -> None: ...

    async def beam_off(self) -> None: ...

    async def reset(self) -> None: ...

    def events(self) -> AsyncIterator[ControlEvent]: ...

    async def close(self) -> None: ...
