"""Every rule of the scan assembler, without processes (edge._assembler)."""

from __future__ import annotations

import json

from core.seal import BlockKind
from drivers import GapCause, LineFlags, LinkEpoch, LinkGap, Packet, PacketType
from edge._assembler import AlarmOut, BlockOut, Output, PositionOut, ScanAssembler

NOW = 1_800_000_000.0
TS = int(NOW * 1e9)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def asm(block_lines: int = 4, block_ms: float = 200.0, **kw: object) -> tuple[ScanAssembler, Clock]:
    c = Clock()
    a = ScanAssembler(
        block_lines=block_lines,
        block_ms=block_ms,
        clock=c,
        wall_clock=lambda: NOW,
        **kw,  # type: ignore[arg-type]
    )
    return a, c


def start(seq: int, scan: int, channels: int | None = 4) -> Packet:
    doc: dict[str, object] = {"scan_id": scan}
    if channels is not None:
        doc["channels"] = channels
    return Packet(PacketType.SCAN_START, seq, TS, scan, 0, 0, 0, json.dumps(doc).encode())


def end(seq: int, scan: int) -> Packet:
    return Packet(PacketType.SCAN_END, seq, TS, scan, 0, 0, 0, b'{"status": "complete"}')


def line(
    seq: int, scan: int, no: int, channels: int = 4, flags: int = 0, ts: int = TS, size: int = -1
) -> Packet:
    payload = bytes([no % 256]) * (4 * channels if size < 0 else size)
    return Packet(PacketType.LINE, seq, ts, scan, no, channels, flags, payload)


def blocks(out: list[Output]) -> list[BlockOut]:
    return [o for o in out if isinstance(o, BlockOut)]


def alarms(out: list[Output]) -> list[AlarmOut]:
    return [o for o in out if isinstance(o, AlarmOut)]


def run(a: ScanAssembler, items: list[Packet | LinkGap | LinkEpoch]) -> list[Output]:
    out: list[Output] = []
    for it in items:
        out += a.feed(it)
    return out


def test_a_clean_scan_is_start_data_end_with_link_positions() -> None:
    a, _ = asm(block_lines=3, session="s1")
    out = run(a, [start(0, 7), *(line(1 + i, 7, i) for i in range(5)), end(6, 7)])
    out += a.flush()
    bs = blocks(out)
    assert [b.kind for b in bs] == [
        BlockKind.SCAN_START,
        BlockKind.DATA,
        BlockKind.DATA,
        BlockKind.SCAN_END,
    ]
    assert [b.meta.get("n_lines") for b in bs[1:3]] == [3, 2]
    assert [b.link_next for b in bs] == [1, 4, 6, 7]
    assert bs[1].index[0] == (0, 0, TS, 1)
    assert bs[1].payload == bytes([0]) * 16 + bytes([1]) * 16 + bytes([2]) * 16
    assert all(b.meta["link_session"] == "s1" and b.link_session == "s1" for b in bs)
    assert bs[1].meta["channels"] == 4 and bs[1].meta["scan_id"] == 7
    assert not alarms(out)
    assert "complete" not in json.dumps([b.meta for b in bs])
    assert (a.stats.lines, a.stats.scans_started, a.stats.scans_ended) == (5, 1, 1)


def test_blocks_close_on_block_ms_and_on_a_change_of_scan() -> None:
    a, clock = asm(block_lines=100, block_ms=200)
    out = run(a, [line(0, 1, 0), line(1, 1, 1)])
    assert not blocks(out + a.tick())
    clock.t += 0.2
    bs = blocks(a.tick())
    assert len(bs) == 1 and bs[0].meta["n_lines"] == 2
    out = run(a, [line(2, 1, 2), line(3, 2, 0)])
    bs = blocks(out)
    assert len(bs) == 1 and bs[0].meta["scan_id"] == 1 and a.open_lines == 1


def test_calibration_lines_keep_their_own_order() -> None:
    a, _ = asm(block_lines=100)
    dark, air = int(LineFlags.CALIB_DARK), int(LineFlags.CALIB_AIR)
    items: list[Packet | LinkGap | LinkEpoch] = [start(0, 3)]
    items += [line(1, 3, 0, flags=dark), line(2, 3, 1, flags=dark)]
    items += [line(3, 3, 0, flags=air), line(4, 3, 0), line(5, 3, 1)]
    out = run(a, items) + a.flush()
    assert not alarms(out)
    assert a.stats.calib_lines == 3 and a.stats.lines == 2


def test_the_start_record_fixes_the_channel_count() -> None:
    a, _ = asm(block_lines=100)
    out = run(a, [start(0, 5, channels=4), line(1, 5, 0), line(2, 5, 1, channels=3)])
    out += run(a, [line(3, 5, 2, channels=3), line(4, 5, 3, channels=3), line(5, 5, 4)])
    out += a.flush()
    bs = blocks(out)
    assert [b.kind for b in bs] == [
        BlockKind.SCAN_START,
        BlockKind.DATA,
        BlockKind.GAP,
        BlockKind.DATA,
    ]
    gap = bs[2].meta
    assert {k: gap[k] for k in ("first_seq", "last_seq", "cause", "scan_id")} == {
        "first_seq": 2,
        "last_seq": 4,
        "cause": "violation",
        "scan_id": 5,
    }
    assert "3 channels" in gap["reason"] and "the scan has 4" in gap["reason"]
    assert bs[2].link_next == 5 and bs[3].index[0][3] == 5
    (al,) = alarms(out)
    assert al.kind == "protocol_violation"
    assert al.details == {
        "violation": "channel_count",
        "scan_id": 5,
        "seq": 2,
        "reason": al.details["reason"],
    }
    assert "scan 5" in al.message and "packet 2" in al.message
    assert a.stats.violations == 3


def test_the_first_line_fixes_the_shape_without_a_record() -> None:
    a, _ = asm(block_lines=100)
    out = run(a, [line(0, 9, 0, channels=6), line(1, 9, 1, channels=5)]) + a.flush()
    assert [b.kind for b in blocks(out)] == [BlockKind.DATA, BlockKind.GAP]
    a, _ = asm(block_lines=100)
    out = run(a, [start(0, 9, channels=None), line(1, 9, 0, channels=6), line(2, 9, 1, 5)])
    assert [b.kind for b in blocks(out + a.flush())][-1] == BlockKind.GAP


def test_zero_channels_bad_size_and_line_order_are_refused() -> None:
    cases = [
        (line(2, 1, 1, channels=0), "zero_channels"),
        (line(2, 1, 1, size=10), "payload_size"),
        (line(2, 1, 0), "line_order"),  # repeated
    ]
    for bad, kind in cases:
        a, _ = asm(block_lines=100)
        out = run(a, [start(0, 1), line(1, 1, 0), bad, line(3, 1, 1)]) + a.flush()
        assert [al.details["violation"] for al in alarms(out)] == [kind], kind
        gaps = [b for b in blocks(out) if b.kind == BlockKind.GAP]
        assert len(gaps) == 1 and gaps[0].meta["first_seq"] == gaps[0].meta["last_seq"] == 2
        data = [b for b in blocks(out) if b.kind == BlockKind.DATA]
        assert sum(b.meta["n_lines"] for b in data) == 2
    a, _ = asm(block_lines=100)
    out = run(a, [line(0, 1, 5), line(1, 1, 3)])
    assert "out of order" in alarms(out)[0].message


def test_separate_violations_are_each_refused_and_alarmed() -> None:
    a, _ = asm(block_lines=100)
    out = run(a, [line(0, 1, 0), line(1, 1, 0), line(2, 1, 1), line(3, 1, 1, channels=0)])
    out += a.flush()
    assert len(alarms(out)) == 2 and a.stats.gaps == 2


def test_a_link_gap_inside_a_scan_cuts_it() -> None:
    a, _ = asm(block_lines=100, session="s")
    out = run(a, [start(0, 4), line(1, 4, 0), LinkGap(2, 9, "replay buffer moved on")])
    out += run(a, [line(10, 4, 8), end(11, 4), LinkGap(12, 12, "lost")])
    bs = blocks(out)
    gaps = [b for b in bs if b.kind == BlockKind.GAP]
    assert gaps[0].meta["scan_id"] == 4 and gaps[0].meta["cause"] == "lost"
    assert gaps[0].link_next == 10 and gaps[0].meta["link_session"] == "s"
    assert gaps[1].meta["scan_id"] == -1  # between scans
    lost = [al for al in alarms(out) if al.kind == "data_lost"]
    assert len(lost) == 2 and "8 data-link packets (2..9)" in lost[0].message
    assert a.stats.lost_packets == 9


def test_a_link_gap_keeps_the_scan_the_link_named() -> None:
    a, _ = asm()
    out = run(a, [start(0, 4), LinkGap(1, 1, "oversized", GapCause.VIOLATION, 4)])
    (gap,) = [b for b in blocks(out) if b.kind == BlockKind.GAP]
    assert gap.meta["cause"] == "violation" and gap.meta["scan_id"] == 4
    (al,) = alarms(out)
    assert al.kind == "protocol_violation" and "refused: oversized" in al.message
    assert al.details["cause"] == "violation"


def test_an_epoch_cuts_the_open_scan_and_moves_the_session() -> None:
    a, _ = asm(block_lines=100, session="old")
    out = run(a, [start(0, 2), line(1, 2, 0), line(2, 2, 1)])
    out += a.feed(LinkEpoch("new", "old", 0, serial="SN1", reason="counter restarted"))
    out += run(a, [start(0, 3), line(1, 3, 0)]) + a.flush()
    bs = blocks(out)
    assert [b.kind for b in bs] == [
        BlockKind.SCAN_START,
        BlockKind.DATA,
        BlockKind.GAP,
        BlockKind.SCAN_START,
        BlockKind.DATA,
    ]
    gap = bs[2]
    assert gap.meta["cause"] == "restart" and gap.meta["scan_id"] == 2
    assert gap.link_session == "old" and gap.link_next == 3
    assert [b.link_session for b in bs[3:]] == ["new", "new"]
    pos = [o for o in out if isinstance(o, PositionOut)]
    assert pos == [PositionOut("new", 0)]
    assert out.index(pos[0]) > out.index(gap)
    (al,) = [x for x in alarms(out) if x.kind == "scanner_restarted"]
    assert al.details["previous"] == "old" and al.details["session"] == "new"
    assert al.details["serial"] == "SN1"


def test_an_epoch_after_the_links_restart_gap_does_not_cut_twice() -> None:
    a, _ = asm(block_lines=100, session="old")
    out = run(a, [start(0, 2), line(1, 2, 0)])
    out += a.feed(LinkGap(2, 5, "scanner restarted", GapCause.RESTART))
    out += a.feed(LinkEpoch("new", "old", 0))
    gaps = [b for b in blocks(out) if b.kind == BlockKind.GAP]
    assert len(gaps) == 1 and gaps[0].meta["scan_id"] == 2 and gaps[0].meta["cause"] == "restart"
    assert [al.kind for al in alarms(out)] == ["data_lost", "scanner_restarted"]


def test_implausible_timestamps_are_counted_and_alarmed_once_per_scan() -> None:
    a, _ = asm(block_lines=100)
    ms = int(NOW * 1e3)  # milliseconds where nanoseconds belong
    out = run(a, [start(0, 1), line(1, 1, 0, ts=ms), line(2, 1, 1, ts=ms), line(3, 1, 2)])
    out += a.flush()
    out += run(a, [line(4, 2, 0, ts=0)]) + a.flush()
    clk = [al for al in alarms(out) if al.kind == "clock_implausible"]
    assert [al.details["scan_id"] for al in clk] == [1, 2]
    assert "past" in clk[1].details["reason"]
    data = [b for b in blocks(out) if b.kind == BlockKind.DATA]
    assert data[0].meta["ts_implausible"] == 2 and data[1].meta["ts_implausible"] == 1
    assert a.stats.ts_implausible == 3


def test_reset_drops_what_is_open() -> None:
    a, _ = asm(block_lines=100)
    run(a, [start(0, 1), line(1, 1, 0)])
    a.reset("s2")
    assert a.open_lines == 0 and not a.flush()
    out = run(a, [line(1, 1, 0)]) + a.flush()
    assert not alarms(out) and blocks(out)[0].link_session == "s2"


def test_att_role_is_written_into_the_start_record() -> None:
    a, _ = asm(att_role="entry")
    (b,) = blocks(a.feed(start(0, 1)))
    assert json.loads(b.payload)["att_role"] == "entry"


def test_session_packets_carry_no_data() -> None:
    a, _ = asm()
    assert a.feed(Packet(PacketType.SESSION, 0, TS, -1, 0, 0, 0, b"{}")) == []


def test_a_session_learned_without_an_epoch_is_adopted_only_when_unknown() -> None:
    a, _ = asm()
    a.adopt_session("s1")
    (b,) = blocks(a.feed(start(0, 1)))
    assert b.link_session == "s1" and b.meta["link_session"] == "s1"
    a.adopt_session("s2")  # a known session changes only by an epoch
    assert a.session == "s1"


def test_a_record_nested_deeper_than_the_stack_goes_on_untouched() -> None:
    a, _ = asm(att_role="exit")
    deep = b"[" * 100_000
    (b,) = blocks(a.feed(Packet(PacketType.SCAN_START, 0, TS, 1, 0, 0, 0, deep)))
    assert b.payload == deep
    out = a.feed(line(1, 1, 0, channels=3)) + a.flush()  # the first line fixes the shape
    assert not alarms(out)


def test_a_long_run_of_refused_lines_is_one_alarm_and_a_gap_per_second() -> None:
    a, clock = asm(block_lines=100, block_ms=20)
    out = run(a, [start(0, 5), line(1, 5, 0)])
    for i in range(2, 40):
        out += a.feed(line(i, 5, i - 1, channels=3))
        out += a.tick()
        clock.t += 0.05  # 1.9 s in all
    out += a.flush()
    gaps = [b for b in blocks(out) if b.kind == BlockKind.GAP]
    assert len(gaps) == 2
    assert (gaps[0].meta["first_seq"], gaps[-1].meta["last_seq"]) == (2, 39)
    assert gaps[0].meta["last_seq"] + 1 == gaps[1].meta["first_seq"]
    assert len(alarms(out)) == 1 and a.stats.violations == 38


def test_a_restart_gap_of_unknown_extent_is_still_a_data_lost_alarm() -> None:
    # after an edge restart the link cannot know what the old session emitted
    a, _ = asm(block_lines=100, session="old")
    out = a.feed(LinkGap(636, 635, "scanner restarted: how much is unknown", GapCause.RESTART))
    (gap,) = [b for b in blocks(out) if b.kind == BlockKind.GAP]
    assert gap.meta["cause"] == "restart"
    (al,) = alarms(out)
    assert al.kind == "data_lost" and "from 636 on may be lost" in al.message


def test_a_line_beyond_the_planned_lines_is_refused() -> None:
    a, _ = asm(block_lines=100)
    rec = json.dumps({"scan_id": 1, "channels": 4, "lines": 3}).encode()
    first = Packet(PacketType.SCAN_START, 0, TS, 1, 0, 0, 0, rec)
    out = run(a, [first, line(1, 1, 0), line(2, 1, 1), line(3, 1, 2**32 - 1), line(4, 1, 2)])
    out += a.flush()
    data = [b for b in blocks(out) if b.kind == BlockKind.DATA]
    assert [e[0] for b in data for e in b.index] == [0, 1, 2]
    (al,) = alarms(out)
    assert al.kind == "protocol_violation" and "beyond the 3 image lines" in al.message
