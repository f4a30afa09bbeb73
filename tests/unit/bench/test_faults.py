"""The fault benchmark's line accounting (bench.faults.count_lines), without processes."""

from __future__ import annotations

from bench.faults import Chain, Result, Sizing, count_lines


def key(scan: int, line: int, sha: str = "") -> tuple[int, int, int, str]:
    return (scan, line, 0, sha or f"h{scan}.{line}")


EMITTED = [key(1, i) for i in range(6)]


def chain(*blocks: list[int] | str) -> Chain:
    """Blocks in chain order: a list of line numbers of scan 1 is a data block, 'G' a GAP."""
    ch = Chain()
    for pos, b in enumerate(blocks):
        if isinstance(b, str):
            ch.gaps.append(pos)
        else:
            ch.lines += [(key(1, i), pos) for i in b]
    return ch


def test_every_line_once_is_nothing_lost() -> None:
    c = count_lines(EMITTED, chain([0, 1, 2], [3, 4, 5]), gap_alarm=False)
    assert (c.expected, c.committed, c.lost, c.gap_lines, c.duplicated, c.forged) == (
        6, 6, 0, 0, 0, 0,
    )  # fmt: skip


def test_lines_missing_where_a_gap_stands_are_gap_lines() -> None:
    c = count_lines(EMITTED, chain([0, 1], "G", [4, 5]), gap_alarm=True)
    assert (c.lost, c.gap_lines, c.committed) == (0, 2, 4)


def test_a_gap_without_an_alarm_does_not_excuse_a_loss() -> None:
    c = count_lines(EMITTED, chain([0, 1], "G", [4, 5]), gap_alarm=False)
    assert (c.lost, c.gap_lines) == (2, 0)


def test_a_gap_elsewhere_in_the_chain_does_not_excuse_a_loss() -> None:
    c = count_lines(EMITTED, chain("G", [0, 1], [4, 5]), gap_alarm=True)
    assert (c.lost, c.gap_lines) == (2, 0)


def test_lines_lost_at_the_end_are_excused_by_a_gap_after_the_last_commit() -> None:
    c = count_lines(EMITTED, chain([0, 1, 2, 3], "G"), gap_alarm=True)
    assert (c.lost, c.gap_lines) == (0, 2)
    c = count_lines(EMITTED, chain([0, 1, 2, 3]), gap_alarm=True)
    assert (c.lost, c.gap_lines) == (2, 0)


def test_a_line_twice_is_a_duplicate_and_a_strange_line_is_forged() -> None:
    ch = chain([0, 1, 2], [2, 3, 4, 5])
    ch.lines.append(((1, 9, 0, "not-emitted"), 2))
    c = count_lines(EMITTED, ch, gap_alarm=False)
    assert (c.duplicated, c.forged, c.lost) == (1, 1, 0)


def test_a_changed_payload_is_lost_and_forged_not_committed() -> None:
    ch = chain([0, 1, 2, 3, 4])
    ch.lines.append(((1, 5, 0, "other-bytes"), 0))
    c = count_lines(EMITTED, ch, gap_alarm=True)
    assert (c.lost, c.forged) == (1, 1)


def test_a_line_emitted_twice_needs_two_copies() -> None:
    """A restarted scanner may send the same scan id and bytes again: both must arrive."""
    emitted = [*EMITTED, *EMITTED]
    c = count_lines(emitted, chain([0, 1, 2, 3, 4, 5]), gap_alarm=False)
    assert (c.expected, c.lost, c.duplicated) == (12, 6, 0)


def test_the_targets() -> None:
    ok = Result(expected=10, committed=10, recovery_s=1.0)
    assert ok.passed and ok.as_dict()["passed"] is True
    assert not Result(expected=10, committed=9, lost=1, recovery_s=1.0).passed
    assert not Result(expected=10, committed=10, recovery_s=None).passed
    assert not Result(expected=10, committed=10, recovery_s=5.5).passed
    assert not Result(expected=10, committed=10, unexpected_exits=1, recovery_s=1).passed
    # a fault's own time (a device opened again) is held to the same target
    reopened = Result(expected=10, committed=10, recovery_s=1.0, timings={"reopen_s": 0.5})
    assert reopened.passed and reopened.as_dict()["reopen_s"] == 0.5
    assert not Result(expected=10, committed=10, recovery_s=1, timings={"reopen_s": None}).passed


def test_sizing_keeps_the_scanners_busy() -> None:
    s = Sizing(scan_lines=484, line_rate=500, interval_s=0.0)
    assert s.scan_s == 1.0 and s.scans_for(10) == 10 and s.scans_for(0.1) == 2
    assert Sizing(scans=7).scans_for(100) == 7
