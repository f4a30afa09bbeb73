"""The ``bad_message`` rate limit: one alarm per sender per window, and the tail told."""

from __future__ import annotations

from central._aggregator import BAD_MESSAGE_ALARM_S
from central._alarm_gate import AlarmWindow


def test_one_alarm_per_window_and_the_count_of_the_rest() -> None:
    now = [0.0]
    w = AlarmWindow(BAD_MESSAGE_ALARM_S, clock=lambda: now[0])
    assert w.hit("edge-h", "edge-h") == 0  # the first is alarmed at once
    for _ in range(5):
        now[0] += 1.0
        assert w.hit("edge-h", "edge-h") is None  # counted
    assert w.closed() == []  # the window is still open
    now[0] += 5.0
    # the burst ended and nothing followed: its count is handed back when the window closes
    assert w.closed() == [("edge-h", "edge-h", 5)]
    assert w.closed() == []  # once
    # the next message is alarmed at once, with its own text
    now[0] += 1.0
    assert w.hit("edge-h", "edge-h") == 0
    assert w.hit("edge-h", "edge-h") is None
    now[0] += BAD_MESSAGE_ALARM_S
    assert w.hit("edge-h", "edge-h") == 1  # a later message carries what closed() did not
    now[0] += BAD_MESSAGE_ALARM_S
    assert w.closed() == []  # an empty window is forgotten
    assert w.hit("edge-h", "edge-h") == 0


def test_senders_have_their_own_windows() -> None:
    now = [0.0]
    w = AlarmWindow(10.0, clock=lambda: now[0])
    assert w.hit("a", "a") == 0 and w.hit("b", "b") == 0
    assert w.hit("a", "a") is None
    now[0] = 10.0
    assert w.closed() == [("a", "a", 1)]
