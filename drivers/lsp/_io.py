"""Wire map of LSP-1, the line scanner protocol.

This module is the protocol document: the data link packet layout, the request
frame a client sends back on the data link, and the serial control frames with
their command codes. The driver (``drivers.lsp``) and the simulated firmware
(``firmware_sim``) both build on it, so the two can never disagree on a byte.

Data link (TCP, little-endian)::

    header  40 bytes  HEADER
    payload payload_len bytes
    crc32   u32       zlib.crc32 over header + payload

On every data-link connection the scanner first sends one SESSION packet
(outside the packet sequence: its ``seq`` field is ``head_seq`` and is not a
packet of the stream), then waits for the client's RESUME request frame and
streams from there. The SESSION payload is UTF-8 JSON (:func:`pack_session`,
:func:`parse_session`)::

    {"session": "<boot id, hex, random per scanner start>",
     "serial": "<serial number>",
     "oldest_seq": <oldest seq in the replay ring>,
     "head_seq": <seq the next packet will get>}

Sequence numbers count from 0 in every session (boot). A new boot id (or a
``head_seq`` behind what the client already has) means the scanner restarted:
its sequence numbers started again from 0.

Serial control (pty / RS-232, 115200 8N1): NMEA-like frames ``$BODY*CS\\r\\n``.
"""

from __future__ import annotations

import enum
import json
import struct
import zlib
from dataclasses import dataclass

from core.errors import ProtocolError
from drivers._interface import LineFlags, LinkStats, Packet, PacketType

BytesLike = bytes | bytearray | memoryview
"""Anything the packers and decoders accept as bytes."""

__all__ = [
    "ACK",
    "CRC",
    "EVT",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_CHANNELS",
    "MAX_JSON_PAYLOAD",
    "MAX_PAYLOAD",
    "NAK",
    "REQUEST",
    "REQUEST_MAGIC",
    "REQUEST_SIZE",
    "SERIAL_MAX_FRAME",
    "STS",
    "VERSION",
    "BytesLike",
    "Command",
    "Damaged",
    "Decoded",
    "LineFlags",
    "PacketDecoder",
    "PacketType",
    "RequestKind",
    "SerialDecoder",
    "SessionInfo",
    "State",
    "Violation",
    "checksum",
    "encode_frame",
    "pack_header",
    "pack_packet",
    "pack_request",
    "pack_session",
    "parse_frame",
    "parse_session",
]

# --------------------------------------------------------------------------
# Data link: scanner -> client packets
# --------------------------------------------------------------------------

MAGIC = b"LSP1"
"""First four bytes of every data link packet; the resynchronisation mark."""

VERSION = 1
"""Protocol version carried in every header; a packet of another version is rejected."""

HEADER = struct.Struct("<4sBBHQQIIHHI")
"""Packet header, 40 bytes: magic, version u8, type u8 (:class:`PacketType`),
flags u16 (:class:`LineFlags`), seq u64 (per data link, +1 per packet, never reset),
ts_ns u64 (emission time, CLOCK_REALTIME, unchanged on replay), scan_id u32,
line_no u32 (image line index; calibration lines count from 0 with their flag),
channels u16, reserved u16 (0), payload_len u32."""

HEADER_SIZE = HEADER.size

CRC = struct.Struct("<I")
"""Packet trailer: zlib.crc32 over header and payload."""

MAX_CHANNELS = 16384
"""Largest detector line a LINE packet may carry (a protocol rule)."""

MAX_JSON_PAYLOAD = 65536
"""Largest SCAN_START / SCAN_END / SESSION JSON payload, bytes (a protocol rule)."""

MAX_PAYLOAD = 16 << 20
"""Hard cap on ``payload_len`` the decoder reads to check a CRC, bytes. A header
claiming more is corrupt; up to it, a packet that breaks a length or channel rule
is read whole: if its CRC matches it is a :class:`Violation`, not noise."""

_TYPES: dict[int, PacketType] = {int(t): t for t in PacketType}


def pack_header(
    ptype: int,
    flags: int,
    seq: int,
    ts_ns: int,
    scan_id: int,
    line_no: int,
    channels: int,
    payload_len: int,
) -> bytes:
    """Header bytes of one packet (see :data:`HEADER`)."""
    return HEADER.pack(
        MAGIC, VERSION, ptype, flags, seq, ts_ns, scan_id, line_no, channels, 0, payload_len
    )


def pack_packet(
    ptype: int,
    flags: int,
    seq: int,
    ts_ns: int,
    scan_id: int,
    line_no: int,
    channels: int,
    payload: BytesLike,
) -> bytes:
    """One complete packet: header, payload and CRC trailer."""
    view = memoryview(payload).cast("B")
    header = pack_header(ptype, flags, seq, ts_ns, scan_id, line_no, channels, len(view))
    crc = zlib.crc32(view, zlib.crc32(header))
    return b"".join((header, view, CRC.pack(crc)))


@dataclass(frozen=True, slots=True)
class Violation:
    """A packet that arrived intact (CRC good) but breaks a protocol rule.

    The client refuses it once and moves past it: resending it would not help.
    ``type`` is the raw packet type byte (it may be no :class:`PacketType`).
    """

    seq: int
    scan_id: int
    type: int
    reason: str
    """The rule broken, e.g. ``"SCAN_START record of 70000 bytes over the 65536 limit"``."""


@dataclass(frozen=True, slots=True)
class Damaged:
    """A packet that failed its header check or CRC: noise, ask for it again.

    ``seq`` and ``scan_id`` are what the (untrusted) header claims; they only
    serve to notice the same packet failing again and again.
    """

    seq: int
    scan_id: int
    reason: str
    """``"bad header"`` or ``"bad CRC"``."""


Decoded = Packet | Violation | Damaged
"""One item of :meth:`PacketDecoder.feed`."""


def _rule(kind: PacketType | None, ptype: int, channels: int, plen: int) -> str:
    """The protocol rule a plausible header breaks, or "" if none."""
    if kind is None:
        return f"unknown packet type {ptype}"
    if kind is PacketType.LINE:
        if channels == 0:
            return "LINE with 0 channels"
        if channels > MAX_CHANNELS:
            return f"LINE with {channels} channels over {MAX_CHANNELS}"
        if plen != 4 * channels:
            return f"LINE of {plen} bytes for {channels} channels ({4 * channels} expected)"
        return ""
    if plen > MAX_JSON_PAYLOAD:
        return f"{kind.name} record of {plen} bytes over the {MAX_JSON_PAYLOAD} limit"
    if channels > MAX_CHANNELS:
        return f"{kind.name} record for {channels} channels over {MAX_CHANNELS}"
    return ""


class PacketDecoder:
    """Incremental parser of the data link byte stream.

    :meth:`feed` returns the items in arrival order: each verified
    :class:`Packet`; a :class:`Damaged` in the place of each packet that failed
    (bad header or bad CRC: the caller needs to know *where* the stream broke to
    ask the scanner to go back); a :class:`Violation` for each packet whose CRC
    matched but which breaks a length or channel rule, or has an unknown type
    (the caller refuses it once instead of asking again). A header with the
    wrong version, a non-zero reserved field or a ``payload_len`` over
    :data:`MAX_PAYLOAD` is damaged at once. After a damaged packet the decoder
    skips forward to the next :data:`MAGIC`; it never returns a packet whose CRC
    did not match. Counters go to ``stats`` (``bad_header``, ``bad_crc``,
    ``resync_bytes``, ``bytes`` is the caller's).
    """

    __slots__ = ("_buf", "stats")

    def __init__(self, stats: LinkStats | None = None) -> None:
        self._buf = bytearray()
        self.stats = stats if stats is not None else LinkStats()

    def reset(self) -> None:
        """Forget a partial packet (after a reconnect)."""
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes held waiting for the rest of a packet."""
        return len(self._buf)

    def feed(self, data: BytesLike) -> list[Decoded]:
        """Take the next bytes of the stream; return the items they completed.

        Args:
            data: any number of bytes, cut anywhere.

        Returns:
            :class:`Packet`, :class:`Violation` and :class:`Damaged` items in
            stream order. Never raises on any input.
        """
        buf = self._buf
        buf += data
        out: list[Decoded] = []
        stats = self.stats
        end_buf = len(buf)
        pos = 0
        unpack = HEADER.unpack_from
        crc_unpack = CRC.unpack_from
        crc32 = zlib.crc32
        types = _TYPES
        with memoryview(buf) as mv:
            while end_buf - pos >= HEADER_SIZE:
                if buf[pos : pos + 4] != MAGIC:
                    nxt = buf.find(MAGIC, pos + 1)
                    if nxt < 0:
                        keep = max(pos, end_buf - 3)
                        stats.resync_bytes += keep - pos
                        pos = keep
                        break
                    stats.resync_bytes += nxt - pos
                    pos = nxt
                    continue
                (
                    _,
                    version,
                    ptype,
                    flags,
                    seq,
                    ts_ns,
                    scan_id,
                    line_no,
                    channels,
                    reserved,
                    plen,
                ) = unpack(buf, pos)
                kind = types.get(ptype)
                if version != VERSION or reserved != 0 or plen > MAX_PAYLOAD:
                    rule = "bad header"
                elif (
                    kind is PacketType.LINE
                    and plen == 4 * channels
                    and 0 < channels <= MAX_CHANNELS
                ):
                    rule = ""
                else:
                    rule = _rule(kind, ptype, channels, plen)
                    if kind is PacketType.LINE and plen > 4 * max(channels, MAX_CHANNELS):
                        rule = "bad header"  # no LINE rule allows that length: noise
                if rule == "bad header":
                    stats.bad_header += 1
                    out.append(Damaged(seq, scan_id, "bad header"))
                    pos = self._skip(buf, pos)
                    continue
                end = pos + HEADER_SIZE + plen
                if end + 4 > end_buf:
                    break
                if crc32(mv[pos:end]) != crc_unpack(buf, end)[0]:
                    stats.bad_crc += 1
                    out.append(Damaged(seq, scan_id, "bad CRC"))
                    pos = self._skip(buf, pos)
                    continue
                if rule or kind is None:
                    out.append(Violation(seq, scan_id, ptype, rule))
                else:
                    out.append(
                        Packet(
                            kind,
                            seq,
                            ts_ns,
                            scan_id,
                            line_no,
                            channels,
                            flags,
                            bytes(mv[pos + HEADER_SIZE : end]),
                        )
                    )
                pos = end + 4
        if pos:
            del buf[:pos]
        return out

    def _skip(self, buf: bytearray, pos: int) -> int:
        """Position of the next magic after a bad packet at ``pos`` (counting skipped bytes)."""
        nxt = buf.find(MAGIC, pos + 1)
        if nxt < 0:
            nxt = max(pos + 1, len(buf) - 3)
        self.stats.resync_bytes += nxt - pos
        return nxt


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a scanner announces in its SESSION packet (see the module doc)."""

    session: str
    """Boot id, lowercase hex, 1..64 characters; new on every scanner start."""
    serial: str
    """The scanner's serial number (up to 128 printable characters)."""
    oldest_seq: int
    """Oldest sequence number in the scanner's replay ring."""
    head_seq: int
    """Sequence number the scanner's next packet will get (>= ``oldest_seq``)."""


_HEX = frozenset("0123456789abcdef")


def pack_session(info: SessionInfo, ts_ns: int = 0) -> bytes:
    """The complete SESSION packet for ``info`` (header ``seq`` = ``head_seq``)."""
    body = json.dumps(
        {
            "session": info.session,
            "serial": info.serial,
            "oldest_seq": info.oldest_seq,
            "head_seq": info.head_seq,
        }
    ).encode()
    return pack_packet(PacketType.SESSION, 0, info.head_seq, ts_ns, 0, 0, 0, body)


def parse_session(payload: BytesLike) -> SessionInfo:
    """Check and decode a SESSION packet's JSON payload.

    Args:
        payload: the packet's payload bytes.

    Returns:
        The announced :class:`SessionInfo`.

    Raises:
        ProtocolError: the payload is not UTF-8 JSON of the documented shape
            (an object with a hex ``session``, a string ``serial`` and integer
            ``0 <= oldest_seq <= head_seq < 2**64``).
    """

    def bad(what: str) -> ProtocolError:
        return ProtocolError(
            f"scanner sent a bad SESSION packet: {what}",
            fix="Update the scanner firmware to one that speaks LSP-1 with SESSION "
            "(drivers/lsp/_io.py documents the payload).",
        )

    try:
        doc = json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad("not UTF-8 JSON") from exc
    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    session, serial = doc.get("session"), doc.get("serial")
    oldest, head = doc.get("oldest_seq"), doc.get("head_seq")
    if not isinstance(session, str) or not 0 < len(session) <= 64 or not set(session) <= _HEX:
        raise bad("'session' is not a lowercase hex id of 1..64 characters")
    if not isinstance(serial, str) or len(serial) > 128 or not serial.isprintable():
        raise bad("'serial' is not a printable string of up to 128 characters")
    for name, value in (("oldest_seq", oldest), ("head_seq", head)):
        if type(value) is not int or not 0 <= value < 1 << 64:
            raise bad(f"{name!r} is not an integer 0..2**64-1")
    assert isinstance(oldest, int) and isinstance(head, int)
    if oldest > head:
        raise bad(f"oldest_seq {oldest} is beyond head_seq {head}")
    return SessionInfo(session, serial, oldest, head)


# --------------------------------------------------------------------------
# Data link: client -> scanner requests
# --------------------------------------------------------------------------

REQUEST_MAGIC = b"LSPR"
"""First four bytes of a client request frame on the data link."""

REQUEST = struct.Struct("<4sIQ")
"""Client request frame, 16 bytes: magic, kind u32 (:class:`RequestKind`), seq u64."""

REQUEST_SIZE = REQUEST.size


class RequestKind(enum.IntEnum):
    """What a client asks of the scanner on the data link."""

    RESUME = 1
    """Stream from ``seq`` on, out of the replay buffer (from the oldest held
    packet if ``seq`` is older; wait for it if ``seq`` is in the future)."""


def pack_request(kind: int, seq: int) -> bytes:
    """One client request frame (see :data:`REQUEST`)."""
    return REQUEST.pack(REQUEST_MAGIC, kind, seq)


# --------------------------------------------------------------------------
# Serial control link
# --------------------------------------------------------------------------

SERIAL_MAX_FRAME = 512
"""Longest serial frame accepted; longer runs without a terminator are noise."""


class Command(enum.StrEnum):
    """Host -> scanner commands on the serial link. Replies are
    ``ACK,<cmd>[,fields]`` or ``NAK,<cmd>,<reason>``."""

    IDN = "IDN"
    """Identify: ``ACK,IDN,<vendor>,<model>,<serial>,<firmware>,<channels>,<kev_hi>,<kev_lo>``."""
    STS = "STS"
    """Status: ``ACK,STS,<state>,<armed 0/1>,<scanning 0/1>,<scan_id|->,<faults ;-joined|->``."""
    ARM = "ARM"
    """Arm the scanner; with auto scanning on it scans each passing truck."""
    DISARM = "DISARM"
    """Disarm; a running scan is aborted."""
    START = "START"
    """``START,<scan_id>,<lines>``: scan now (the scanner must be armed)."""
    STOP = "STOP"
    """Abort the running scan."""
    RESET = "RESET"
    """Clear faults and the interlock; back to idle."""
    BEAM = "BEAM"
    """``BEAM,OFF``: switch the X-ray source off now (aborts a scan)."""


class State(enum.StrEnum):
    """Scanner states reported by STS."""

    IDLE = "idle"
    ARMED = "armed"
    SCANNING = "scanning"
    FAULT = "fault"
    INTERLOCK = "interlock"


ACK = "ACK"
"""Positive reply to a command."""
NAK = "NAK"
"""Negative reply to a command: ``NAK,<cmd>,<reason>``."""
EVT = "EVT"
"""Unsolicited event: ``EVT,SCAN_START,<id>``, ``EVT,SCAN_END,<id>,<lines>,<status>``,
``EVT,FAULT,<code>,<text>``."""
STS = "STS"
"""Unsolicited status, once per second: ``STS,<state>,<armed>,<scanning>,<scan_id>,<faults>``."""


def checksum(body: bytes) -> int:
    """XOR of the bytes of a frame body (between ``$`` and ``*``)."""
    cs = 0
    for b in body:
        cs ^= b
    return cs


def encode_frame(*fields: object) -> bytes:
    """``$F1,F2,...*CS\\r\\n`` for the given fields."""
    body = ",".join(str(f) for f in fields).encode("ascii")
    return b"$%s*%02X\r\n" % (body, checksum(body))


def parse_frame(frame: bytes) -> list[str] | None:
    """Fields of one complete frame (``$...*CS`` with or without CR LF), or None if bad."""
    frame = frame.rstrip(b"\r\n")
    if len(frame) < 4 or frame[:1] != b"$" or frame[-3:-2] != b"*":
        return None
    body = frame[1:-3]
    if frame[-2:] != b"%02X" % checksum(body):
        return None  # uppercase hex only: a flipped case bit must not pass
    try:
        text = body.decode("ascii")
    except ValueError:
        return None
    return text.split(",") if text else None


class SerialDecoder:
    """Incremental parser of the serial byte stream.

    Resynchronises on ``$``: bytes before a ``$``, a frame with a bad checksum,
    a frame cut by a new ``$`` or one longer than :data:`SERIAL_MAX_FRAME` are
    dropped and counted in :attr:`stats` (``frames``, ``bad_checksum``,
    ``bad_frame``, ``resync_bytes``).
    """

    __slots__ = ("_buf", "stats")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.stats: dict[str, int] = {
            "frames": 0,
            "bad_checksum": 0,
            "bad_frame": 0,
            "resync_bytes": 0,
        }

    @property
    def pending(self) -> int:
        """Bytes held waiting for the end of a frame (at most :data:`SERIAL_MAX_FRAME`
        plus one read)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[list[str]]:
        """Take the next bytes from the serial line; return the complete good frames' fields.

        Never raises on any input; bad frames are counted in :attr:`stats`.
        """
        buf = self._buf
        buf += data
        out: list[list[str]] = []
        stats = self.stats
        while buf:
            start = buf.find(b"$")
            if start < 0:
                stats["resync_bytes"] += len(buf)
                buf.clear()
                break
            if start:
                stats["resync_bytes"] += start
                del buf[:start]
            nl = buf.find(b"\n")
            again = buf.find(b"$", 1, nl if nl >= 0 else len(buf))
            if again > 0:
                stats["bad_frame"] += 1
                stats["resync_bytes"] += again
                del buf[:again]
                continue
            if nl < 0:
                if len(buf) > SERIAL_MAX_FRAME:
                    stats["bad_frame"] += 1
                    stats["resync_bytes"] += len(buf)
                    buf.clear()
                break
            frame = bytes(buf[: nl + 1])
            del buf[: nl + 1]
            fields = parse_frame(frame)
            if fields is None:
                if len(frame) > 5 and frame.rstrip(b"\r\n")[-3:-2] == b"*":
                    stats["bad_checksum"] += 1
                else:
                    stats["bad_frame"] += 1
                continue
            stats["frames"] += 1
            out.append(fields)
        return out
