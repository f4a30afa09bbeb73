"""The data link's health watch, rule by rule, on counters alone."""

from __future__ import annotations

from drivers import LinkStats
from edge._linkhealth import LinkHealth


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def rig() -> tuple[LinkHealth, LinkStats, Clock]:
    clock = Clock()
    return LinkHealth("10.0.0.5:7000", clock=clock), LinkStats(), clock


def run(h: LinkHealth, st: LinkStats, clock: Clock, seconds: int, **per_s: int) -> list[str]:
    """Advance ``seconds`` one by one, adding ``per_s`` to the counters each second."""
    connected = per_s.pop("connected", 1)
    kinds = []
    for _ in range(seconds):
        clock.t += 1.0
        for k, v in per_s.items():
            setattr(st, k, getattr(st, k) + v)
        kinds += [a.kind for a in h.update(st, bool(connected))]
    return kinds


def test_a_healthy_link_and_an_idle_one_raise_nothing() -> None:
    h, st, clock = rig()
    assert run(h, st, clock, 20, packets=500, bad_crc=1) == []
    assert run(h, st, clock, 60) == []  # between scans nothing flows, nothing is wrong
    assert h.fault is None


def test_damage_alone_for_a_window_is_one_alarm_then_ok_when_packets_flow() -> None:
    h, st, clock = rig()
    run(h, st, clock, 3, packets=500)
    kinds = run(h, st, clock, 30, bad_crc=200)
    assert kinds == ["data_link_damaged"]  # once, not once a second
    (ok,) = run(h, st, clock, 2, packets=500)
    assert ok == "data_link_ok" and h.fault is None


def test_some_damage_among_good_packets_is_the_link_recovering_not_a_fault() -> None:
    h, st, clock = rig()
    assert run(h, st, clock, 30, packets=10, bad_crc=300) == []


def test_a_scanner_without_sessions_is_a_protocol_alarm() -> None:
    h, st, clock = rig()
    alarms = []
    for _ in range(12):
        clock.t += 1.0
        st.no_session += 1
        alarms += h.update(st, True)
    assert [a.kind for a in alarms] == ["data_link_protocol"]
    assert "SESSION" in alarms[0].message and h.fault == "data_link_protocol"


def test_a_link_down_for_long_is_an_alarm_and_its_return_ends_it() -> None:
    h, st, clock = rig()
    assert run(h, st, clock, 9, connected=0) == []
    assert run(h, st, clock, 20, connected=0) == ["data_link_down"]
    msgs = [a for a in h.update(st, True)]
    assert [a.kind for a in msgs] == ["data_link_ok"] and "down" in msgs[0].message


def test_messages_name_the_link_and_the_counts() -> None:
    h, st, clock = rig()
    clock.t += 1.0
    h.update(st, True)
    alarms = []
    for _ in range(6):
        clock.t += 1.0
        st.bad_crc += 50
        alarms += h.update(st, True)
    (a,) = alarms
    assert "10.0.0.5:7000" in a.message and "damaged packets" in a.message


def test_a_link_held_on_purpose_is_no_fault_and_down_time_counts_from_its_start() -> None:
    h, st, clock = rig()
    for _ in range(30):  # the edge does not read the link (full disk, refused stream)
        clock.t += 1.0
        h.pause()
    assert run(h, st, clock, 5, connected=0) == []
    kinds = run(h, st, clock, 10, connected=0)
    assert kinds == ["data_link_down"]
    clock.t += 1.0
    (ok,) = h.update(st, True)
    assert "after 15 s" in ok.message  # from when it went down (15 s ago), not the alarm
