"""The alarm gate: one alarm per kind per 10 s, the repeats counted, the last word kept."""

from __future__ import annotations

from edge._alarms import AlarmGate


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_storm_of_one_kind_is_one_alarm_then_the_latest_with_a_count() -> None:
    clock = Clock()
    g = AlarmGate(every_s=10.0, clock=clock)
    first = g.offer("chain_fork", "fork 1", {})
    assert first is not None and first.message == "fork 1" and "repeated" not in first.details
    for i in range(2, 365):
        clock.t += 0.02
        assert g.offer("chain_fork", f"fork {i}", {"n": i}) is None
    assert g.due() == []  # not before 10 s
    clock.t = 110.0
    (late,) = g.due()
    assert late.kind == "chain_fork" and late.details["n"] == 364
    assert late.details["repeated"] == 363 and "fork 364" in late.message
    assert g.due() == []  # said once
    assert g.held_total == 363
    # a storm that lasts: one per 10 s
    sent = 0
    for _ in range(4000):  # 100 s
        clock.t += 0.025
        sent += g.offer("chain_fork", "fork", {}) is not None
        sent += len(g.due())
    assert 9 <= sent <= 11


def test_other_kinds_pass_while_one_is_held() -> None:
    clock = Clock()
    g = AlarmGate(every_s=10.0, clock=clock)
    assert g.offer("unsafe", "door open", {}) is not None
    assert g.offer("unsafe", "door open", {}) is None
    assert g.offer("safety_clear", "safe", {}) is not None
    assert g.offer("storage_full", "disk", {}) is not None


def test_after_the_window_the_next_one_goes_at_once_with_the_count() -> None:
    clock = Clock()
    g = AlarmGate(every_s=10.0, clock=clock)
    g.offer("k", "a", {})
    g.offer("k", "b", {})
    g.offer("k", "c", {})
    clock.t += 11.0
    out = g.offer("k", "d", {})
    assert out is not None and out.message == "d" and out.details["repeated"] == 2
    assert g.due() == []  # the held ones were counted in "d", not sent again


def test_held_alarms_come_out_in_the_order_they_were_raised() -> None:
    clock = Clock()
    g = AlarmGate(every_s=10.0, clock=clock)
    g.offer("control_link_up", "up", {})
    g.offer("control_link_down", "down", {})
    clock.t += 1
    g.offer("control_link_down", "down again", {})
    clock.t += 1
    g.offer("control_link_up", "up again", {})
    clock.t += 10
    assert [a.kind for a in g.due()] == ["control_link_down", "control_link_up"]
