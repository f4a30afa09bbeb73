"""Wire map of LSP-1, the line scanner protocol.

This module is the protocol document: the data link packet layout, the request
frame a client sends back on the data link, and the serial control frames with
their command codes. The driver (``drivers.lsp``) and the simulated firmware
(``firmware_sim``) both build on it, so the two can never disagree on a byte.

Data link (TCP, little-endian)::

    header  40 bytes  HEADER
    payload payload_len bytes
    crc32   u32       zlib.crc32 over header + payload

Serial control (pty / RS-232, 115200 8N1): NMEA-like frames ``$BODY*CS\\r\\n``.
"""

from __future__ import annotations

import enum
import struct
import zlib

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
    "NAK",
    "REQUEST",
    "REQUEST_MAGIC",
    "REQUEST_SIZE",
    "SERIAL_MAX_FRAME",
    "STS",
    "VERSION",
    "BytesLike",
    "Command",
    "LineFlags",
    "PacketDecoder",
    "PacketType",
    "RequestKind",
    "SerialDecoder",
    "State",
    "checksum",
    "encode_frame",
    "pack_header",
    "pack_packet",
    "pack_request",
    "parse_frame",
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
"""Largest detector line a packet may carry; a header claiming more is corrupt."""

MAX_JSON_PAYLOAD = 65536
"""Largest SCAN_START / SCAN_END JSON payload; a header claiming more is corrupt."""

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


class PacketDecoder:
    """Incremental parser of the data link byte stream.

    :meth:`feed` returns the verified packets in arrival order, with ``None`` in
    the place of each packet that failed (bad header or bad CRC): the caller
    needs to know *where* the stream broke to ask the scanner to go back. After a
    failure the decoder skips forward to the next :data:`MAGIC`; it never returns
    a packet whose CRC did not match. Counters go to ``stats``.
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

    def feed(self, data: BytesLike) -> list[Packet | None]:
        buf = self._buf
        buf += data
        out: list[Packet | None] = []
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
                if (
                    version != VERSION
                    or kind is None
                    or reserved != 0
                    or channels > MAX_CHANNELS
                    or (
                        plen != 4 * channels if kind is PacketType.LINE else plen > MAX_JSON_PAYLOAD
                    )
                ):
                    stats.bad_header += 1
                    out.append(None)
                    pos = self._skip(buf, pos)
                    continue
                end = pos + HEADER_SIZE + plen
                if end + 4 > end_buf:
                    break
                if crc32(mv[pos:end]) != crc_unpack(buf, end)[0]:
                    stats.bad_crc += 1
                    out.append(None)
                    pos = self._skip(buf, pos)
                    continue
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

    def feed(self, data: bytes) -> list[list[str]]:
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
