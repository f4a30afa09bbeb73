"""LSP-1 wire map: packets, the incremental decoder, request frames, serial frames."""

from __future__ import annotations

import json
import zlib

import pytest

from core.errors import ProtocolError
from drivers import LineFlags, LinkStats, Packet, PacketType
from drivers.lsp._io import (
    CRC,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    REQUEST,
    REQUEST_SIZE,
    Damaged,
    Decoded,
    PacketDecoder,
    RequestKind,
    SerialDecoder,
    SessionInfo,
    Violation,
    checksum,
    encode_frame,
    pack_packet,
    pack_request,
    pack_session,
    parse_frame,
    parse_session,
)

CHANNELS = 8


def line(seq: int, line_no: int = 0, flags: int = 0) -> bytes:
    payload = bytes((seq + i) % 256 for i in range(4 * CHANNELS))
    return pack_packet(PacketType.LINE, flags, seq, 1000 + seq, 7, line_no, CHANNELS, payload)


def good(items: list[Decoded]) -> list[Packet]:
    return [p for p in items if isinstance(p, Packet)]


def seqs(items: list[Decoded]) -> list[int | str]:
    """Each item as its seq (packets) or its kind and claimed seq (the others)."""
    return [
        p.seq if isinstance(p, Packet) else f"{type(p).__name__.lower()}:{p.seq}" for p in items
    ]


def test_header_is_40_bytes_and_request_16() -> None:
    assert HEADER_SIZE == 40
    assert REQUEST_SIZE == 16


def test_pack_parse_round_trip() -> None:
    payload = bytes(range(4 * CHANNELS))
    raw = pack_packet(PacketType.LINE, LineFlags.FIRST, 42, 123456789, 3, 0, CHANNELS, payload)
    assert len(raw) == HEADER_SIZE + len(payload) + 4
    assert raw[:4] == MAGIC
    (crc,) = CRC.unpack_from(raw, len(raw) - 4)
    assert crc == zlib.crc32(raw[:-4])
    (pkt,) = PacketDecoder().feed(raw)
    assert pkt == Packet(PacketType.LINE, 42, 123456789, 3, 0, CHANNELS, LineFlags.FIRST, payload)
    assert pkt is not None and pkt.type is PacketType.LINE


def test_json_packets_round_trip() -> None:
    body = b'{"scan_id": 3, "status": "complete"}'
    raw = pack_packet(PacketType.SCAN_END, 0, 9, 5, 3, 10, CHANNELS, body)
    (pkt,) = PacketDecoder().feed(raw)
    assert pkt is not None and pkt.type is PacketType.SCAN_END and pkt.payload == body


def test_decoder_handles_any_split() -> None:
    stream = b"".join(line(s, s) for s in range(5))
    for step in (1, 3, 39, 40, 41, 77):
        dec = PacketDecoder()
        out: list[Decoded] = []
        for i in range(0, len(stream), step):
            out += dec.feed(stream[i : i + step])
        assert [p.seq for p in good(out)] == list(range(5))
        assert dec.pending == 0


def test_bad_crc_is_counted_and_skipped() -> None:
    stats = LinkStats()
    bad = bytearray(line(1))
    bad[HEADER_SIZE + 3] ^= 0xFF
    out = PacketDecoder(stats).feed(line(0) + bytes(bad) + line(2))
    assert seqs(out) == [0, "damaged:1", 2]
    assert isinstance(out[1], Damaged) and out[1].reason == "bad CRC"
    assert stats.bad_crc == 1
    assert stats.resync_bytes == len(bad)


def test_resync_over_garbage() -> None:
    stats = LinkStats()
    dec = PacketDecoder(stats)
    junk = b"\x00LSP\xffgarbage LSP" + MAGIC[:2]
    out = dec.feed(junk + line(0) + b"noise" * 7 + line(1))
    assert [p.seq for p in good(out)] == [0, 1]
    assert stats.resync_bytes == len(junk) + 35


def test_bad_header_fields_are_rejected() -> None:
    # version and reserved: damaged at once, without reading the payload
    for offset, value in ((4, 2), (34, 1)):
        stats = LinkStats()
        bad = bytearray(line(1))
        bad[offset] = value
        out = PacketDecoder(stats).feed(bytes(bad) + line(2))
        assert seqs(out) == ["damaged:1", 2]
        assert stats.bad_header == 1, offset


def test_flipped_type_or_channels_fail_the_crc_not_the_protocol() -> None:
    # a type or channel count changed on the way is noise (ask again), not a violation
    for offset, value in ((5, 9), (32, 0), (32, 9)):
        stats = LinkStats()
        bad = bytearray(line(1))
        bad[offset] = value
        out = PacketDecoder(stats).feed(bytes(bad) + line(2))
        assert seqs(out) == ["damaged:1", 2], offset
        assert stats.bad_crc == 1 and stats.bad_header == 0, offset


def intact(ptype: int, seq: int, channels: int, payload: bytes, scan_id: int = 7) -> bytes:
    """A packet with a correct CRC, whatever its fields say."""
    header = HEADER.pack(MAGIC, 1, ptype, 0, seq, 0, scan_id, 0, channels, 0, len(payload))
    return header + payload + CRC.pack(zlib.crc32(payload, zlib.crc32(header)))


@pytest.mark.parametrize(
    ("ptype", "channels", "size", "reason"),
    [
        (PacketType.SCAN_START, 8, 70000, "SCAN_START record of 70000 bytes over the 65536 limit"),
        (PacketType.SESSION, 0, 65537, "SESSION record of 65537 bytes over the 65536 limit"),
        (PacketType.LINE, 0, 0, "LINE with 0 channels"),
        (PacketType.LINE, 20000, 80000, "LINE with 20000 channels over 16384"),
        (PacketType.LINE, 8, 31, "LINE of 31 bytes for 8 channels (32 expected)"),
        (9, 8, 5, "unknown packet type 9"),
    ],
)
def test_intact_packets_outside_the_protocol_are_violations(
    ptype: int, channels: int, size: int, reason: str
) -> None:
    stats = LinkStats()
    raw = intact(ptype, 1, channels, b"x" * size)
    dec = PacketDecoder(stats)
    out: list[Decoded] = []
    for i in range(0, len(raw), 4096):  # arrives in pieces: the decoder waits for all of it
        out += dec.feed(raw[i : i + 4096])
    out += dec.feed(line(2))
    assert out[1:] == good(PacketDecoder().feed(line(2)))
    assert out[0] == Violation(1, 7, int(ptype), reason)
    assert stats.bad_crc == stats.bad_header == 0


def test_a_violation_with_a_bad_crc_is_only_damaged() -> None:
    raw = bytearray(intact(PacketType.SCAN_START, 1, 8, b"x" * 70000))
    raw[-1] ^= 1
    stats = LinkStats()
    out = PacketDecoder(stats).feed(bytes(raw) + line(2))
    assert seqs(out) == ["damaged:1", 2] and stats.bad_crc == 1


def test_payload_over_the_hard_cap_is_damaged_at_once() -> None:
    stats = LinkStats()
    header = HEADER.pack(MAGIC, 1, PacketType.SCAN_START, 0, 4, 0, 0, 0, 8, 0, MAX_PAYLOAD + 1)
    out = PacketDecoder(stats).feed(header + line(5))
    assert seqs(out) == ["damaged:4", 5] and stats.bad_header == 1


def test_session_packet_round_trip() -> None:
    info = SessionInfo("a1b2c3d4e5f60708", "SIM0001-scanner1", 12, 3000)
    (pkt,) = PacketDecoder().feed(pack_session(info, 99))
    assert isinstance(pkt, Packet) and pkt.type is PacketType.SESSION
    assert (pkt.seq, pkt.ts_ns) == (3000, 99)
    assert parse_session(pkt.payload) == info


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        b"[]",
        b"{}",
        json.dumps({"session": "XYZ", "serial": "s", "oldest_seq": 0, "head_seq": 0}).encode(),
        json.dumps({"session": "ab", "serial": 5, "oldest_seq": 0, "head_seq": 0}).encode(),
        json.dumps({"session": "ab", "serial": "s", "oldest_seq": -1, "head_seq": 0}).encode(),
        json.dumps({"session": "ab", "serial": "s", "oldest_seq": 0, "head_seq": 2.0}).encode(),
        json.dumps({"session": "ab", "serial": "s", "oldest_seq": 0, "head_seq": True}).encode(),
        json.dumps({"session": "ab", "serial": "s", "oldest_seq": 5, "head_seq": 4}).encode(),
        json.dumps({"session": "ab", "serial": "s", "oldest_seq": 0, "head_seq": 2**64}).encode(),
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_bad_session_payload_is_one_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_session(payload)
    assert err.value.message.startswith("scanner sent a bad SESSION packet")
    assert "firmware" in err.value.fix


def test_oversized_length_does_not_block_forever() -> None:
    stats = LinkStats()
    header = HEADER.pack(MAGIC, 1, PacketType.SCAN_START, 0, 0, 0, 0, 0, 8, 0, 1 << 30)
    out = PacketDecoder(stats).feed(header + line(1))
    assert seqs(out) == ["damaged:0", 1]
    assert stats.bad_header == 1


def test_truncated_packet_waits_for_the_rest() -> None:
    raw = line(5)
    dec = PacketDecoder()
    assert dec.feed(raw[:-1]) == []
    assert [p.seq for p in good(dec.feed(raw[-1:]))] == [5]


def test_request_frame() -> None:
    raw = pack_request(RequestKind.RESUME, 2**40 + 1)
    assert raw[:4] == b"LSPR"
    assert REQUEST.unpack(raw) == (b"LSPR", 1, 2**40 + 1)


def test_serial_frame_checksum() -> None:
    frame = encode_frame("ACK", "STS", "idle", 0, 0, "-", "-")
    body = b"ACK,STS,idle,0,0,-,-"
    assert frame == b"$" + body + b"*%02X\r\n" % checksum(body)
    assert parse_frame(frame) == ["ACK", "STS", "idle", "0", "0", "-", "-"]
    # a known NMEA sentence checks out the same way
    assert checksum(b"GPGLL,5300.97914,N,00259.98174,E,125926,A") == 0x28


@pytest.mark.parametrize(
    "frame",
    [
        b"$IDN*00\r\n",  # wrong checksum
        b"$ARM*5e\r\n",  # lowercase hex (ARM is 0x5E)
        b"IDN*43\r\n",  # no '$'
        b"$IDN*4\r\n",  # one digit
        b"$IDN43\r\n",  # no '*'
        b"$*00\r\n",  # empty body
        b"$ID\xffN*BC\r\n",  # not ASCII
    ],
)
def test_bad_serial_frames(frame: bytes) -> None:
    assert parse_frame(frame) is None


def test_serial_decoder_resyncs_on_dollar() -> None:
    dec = SerialDecoder()
    a, b = encode_frame("ACK", "IDN", "x"), encode_frame("EVT", "SCAN_START", 4)
    broken = bytearray(encode_frame("STS", "idle"))
    broken[3] ^= 0x01
    stream = b"\x00\xffjunk" + a[:6] + a + bytes(broken) + b"zz" + b
    out: list[list[str]] = []
    for i in range(len(stream)):
        out += dec.feed(stream[i : i + 1])
    assert out == [["ACK", "IDN", "x"], ["EVT", "SCAN_START", "4"]]
    assert dec.stats["frames"] == 2
    assert dec.stats["bad_frame"] == 1  # the frame cut short by a new '$'
    assert dec.stats["bad_checksum"] == 1
    assert dec.stats["resync_bytes"] >= len(b"\x00\xffjunk") + 6 + 2


def test_serial_decoder_drops_overlong_frames() -> None:
    dec = SerialDecoder()
    assert dec.feed(b"$" + b"A" * 600) == []
    assert dec.stats["bad_frame"] == 1
    assert dec.feed(encode_frame("ACK", "ARM")) == [["ACK", "ARM"]]
