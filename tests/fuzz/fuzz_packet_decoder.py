"""Fuzz target: the LSP-1 data link decoder and the link core behind it.

The input is cut into chunks (sizes from its first bytes) and fed to
``PacketDecoder.feed``; every item that comes out goes on into a
:class:`~drivers.lsp._linkcore.LinkCore` (fake clock), SESSION payloads into
``parse_session``. Invariants checked: every delivered packet is in the input
byte for byte (it passed its CRC), and nothing but the project's errors escapes.
"""

from __future__ import annotations

from drivers import LinkStats, Packet, PacketType
from drivers.lsp._io import (
    HEADER,
    MAGIC,
    Damaged,
    PacketDecoder,
    SessionInfo,
    Violation,
    pack_packet,
    pack_session,
    parse_session,
)
from drivers.lsp._linkcore import LinkCore


def _line(seq: int, channels: int = 4) -> bytes:
    return pack_packet(PacketType.LINE, 0, seq, 7, 1, seq, channels, bytes(4 * channels))


SEEDS: list[bytes] = [
    b"\x10\x40" + pack_session(SessionInfo("ab12", "SN", 0, 3)) + _line(0) + _line(1) + _line(2),
    b"\x01\x07"
    + pack_session(SessionInfo("cd", "SN", 0, 2))
    + pack_packet(PacketType.SCAN_START, 0, 0, 0, 1, 0, 4, b'{"scan_id": 1}')
    + _line(1),
    b"\x00\x00" + HEADER.pack(MAGIC, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0) + b"\0\0\0\0",
    b"\x05\x05" + pack_packet(9, 0, 0, 0, 0, 0, 0, b"x") + _line(0, 0),
    b'\xff\x00{"session": "0a1b", "serial": "SN-1", "oldest_seq": 5, "head_seq": 9}',
]


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.01
        return self.t


def one_input(data: bytes) -> None:
    """Feed ``data[2:]`` in chunks of ``data[0]`` and ``data[1]`` bytes (0: all at once);
    with ``data[0]`` 255, give ``data[2:]`` to ``parse_session`` alone.

    Raises:
        AssertionError: a packet came out that is not in the input, or an item of
            an unknown kind.
    """
    if len(data) < 2:
        return
    sizes = (data[0] or len(data), data[1] or len(data))
    stream = data[2:]
    if data[0] == 0xFF:  # the SESSION payload parser on its own
        parse_session(stream)  # ProtocolError is a refusal
        return
    decoder = PacketDecoder(LinkStats())
    core = LinkCore(0, "", clock=_Clock(), repeat_limit=2, gap_confirmations=1)
    core.connecting()
    core.connected_now()
    pos, i = 0, 0
    while pos < len(stream):
        chunk = stream[pos : pos + sizes[i % 2]]
        pos += len(chunk)
        i += 1
        for item in decoder.feed(chunk):
            if isinstance(item, Packet):
                raw = pack_packet(
                    item.type,
                    item.flags,
                    item.seq,
                    item.ts_ns,
                    item.scan_id,
                    item.line_no,
                    item.channels,
                    item.payload,
                )
                if raw not in stream:
                    raise AssertionError(f"decoded a packet that is not in the input: {item}")
                if item.type is PacketType.SESSION:
                    parse_session(item.payload)  # ProtocolError is a refusal
            elif not isinstance(item, Violation | Damaged):
                raise AssertionError(f"unknown item {item!r}")
            if not core.connected:
                core.disconnected()
                core.connecting()
                core.connected_now()
            core.item(item)
        core.batch_done()
    core.read_timeout()
    core.timed_out()
