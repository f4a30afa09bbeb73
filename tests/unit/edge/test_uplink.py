"""Every rule of the uplink window, without sockets (edge._uplink)."""

from __future__ import annotations

from edge._uplink import (
    HELLO_RETRY_S,
    MAX_ACK_TIMEOUT_S,
    MAX_FAILOVER_WAIT_S,
    Tick,
    UplinkWindow,
)


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def window(acked: int = -1, size: int = 4) -> tuple[UplinkWindow, Clock]:
    c = Clock()
    return UplinkWindow(acked=acked, stall_s=3.0, window=size, clock=c), c


def drain(w: UplinkWindow, head: int) -> list[int]:
    out = []
    while (seq := w.next_seq(head)) is not None:
        out.append(seq)
        w.sent(seq)
    return out


def test_nothing_is_sent_before_welcome_and_hello_comes_first() -> None:
    w, _ = window()
    assert w.next_seq(10) is None
    assert w.tick() is Tick.HELLO
    w.on_welcome(-1, "b1")
    assert drain(w, 2) == [0, 1, 2]


def test_the_window_bounds_blocks_in_flight() -> None:
    w, _ = window(size=4)
    w.on_welcome(-1, "b1")
    assert drain(w, 100) == [0, 1, 2, 3]
    assert w.in_flight == 4
    assert w.on_ack(1)
    assert drain(w, 100) == [4, 5]


def test_welcome_resends_from_centrals_head() -> None:
    w, _ = window(acked=3)
    w.on_welcome(-1, "b1")
    assert drain(w, 9) == [4, 5, 6, 7]
    w.welcomed = False
    w.on_welcome(5, "b1")
    assert (w.acked, w.cursor) == (5, 6)
    assert drain(w, 7) == [6, 7]


def test_acks_move_forward_only() -> None:
    w, _ = window(size=10)
    w.on_welcome(-1, "b")
    drain(w, 5)
    assert w.on_ack(3) and not w.on_ack(2) and not w.on_ack(3)
    assert w.acked == 3
    w2, _ = window(size=10)
    w2.on_welcome(-1, "b")
    w2.on_ack(4)  # an ACK past the cursor moves it
    assert w2.cursor == 5


def test_nack_rewinds_but_not_below_acked_and_asks_hello_beyond_head() -> None:
    w, _ = window(size=10)
    w.on_welcome(-1, "b")
    drain(w, 6)
    w.on_ack(2)
    assert not w.on_nack(1, head=6) and w.cursor == 3
    assert not w.on_nack(5, head=6) and w.cursor == 5
    assert w.on_nack(9, head=6) and not w.welcomed and w.next_seq(6) is None


def test_a_restarted_central_asks_for_hello() -> None:
    w, _ = window()
    assert not w.on_heartbeat("x")  # before any welcome: nothing to compare
    w.on_welcome(-1, "b1")
    assert not w.on_heartbeat("b1")
    assert w.on_heartbeat("b2") and not w.welcomed


def test_refused_stops_sending_until_next_welcome() -> None:
    w, _ = window()
    w.on_welcome(-1, "b")
    w.refuse("chain fork")
    assert w.next_seq(5) is None
    w.on_welcome(-1, "b")
    assert w.refused is None and w.next_seq(5) == 0


def test_no_progress_resyncs_and_hello_repeats_quickly() -> None:
    w, c = window(size=10)
    w.on_welcome(-1, "b")
    w.heard()
    drain(w, 3)
    c.t += 2.9
    assert w.tick() is Tick.HEARTBEAT and w.welcomed
    c.t += 0.2
    assert w.tick() is Tick.HELLO and not w.welcomed and w.resyncs == 1
    assert not w.connected  # not heard for 3.1 s
    assert w.tick() is None  # just said hello
    c.t += HELLO_RETRY_S
    assert w.tick() is Tick.HELLO
    assert w.sleep_s(1.0) == HELLO_RETRY_S
    # the network heals: the next WELCOME resumes from central's head
    w.heard()
    w.on_welcome(1, "b")
    assert w.connected and drain(w, 3) == [2, 3]
    assert w.sleep_s(1.0) == 1.0


def test_idle_without_blocks_in_flight_is_no_resync() -> None:
    w, c = window()
    w.on_welcome(-1, "b")
    c.t += 100
    assert w.tick() is Tick.HEARTBEAT and w.welcomed


def test_failover_is_due_after_a_silence_counted_from_the_last_switch() -> None:
    w, c = window()
    # a new window does not leave its first aggregator before it had its chance
    assert not w.failover_due()
    c.t += 3.1
    assert w.failover_due()  # never heard: try the next one
    w.switched()
    assert not w.failover_due() and not w.welcomed
    assert w.tick() is Tick.HELLO  # the new aggregator is greeted at once
    c.t += 2.0
    w.heard()
    w.on_welcome(-1, "b")
    c.t += 2.0
    assert not w.failover_due()  # heard 2 s ago
    c.t += 1.5
    assert w.failover_due()


def test_every_endpoint_silent_slows_the_rounds_until_one_is_heard() -> None:
    c = Clock()
    w = UplinkWindow(acked=-1, stall_s=1.5, endpoints=2, clock=c)

    def silent_until_due() -> float:
        waited = 0.0
        while not w.failover_due():
            c.t += 0.25
            waited += 0.25
            assert waited < 100, "never due"
        w.switched()
        return waited

    first_round = [silent_until_due(), silent_until_due()]
    assert all(1.5 <= x <= 1.75 for x in first_round), first_round  # a dead aggregator
    assert w.all_silent  # both tried, neither heard: the shared CIR (or the link) is out
    later = [silent_until_due() for _ in range(8)]
    assert later[0] >= 3.0 and later[2] >= 6.0, later  # twice as long each round
    assert max(later) <= MAX_FAILOVER_WAIT_S + 0.25 and later[-1] >= MAX_FAILOVER_WAIT_S
    w.heard()  # the endpoint in use answers: back to a quick failover next time
    assert not w.all_silent and w.failover_wait_s == 1.5
    c.t += 1.6
    assert w.failover_due()
    # one aggregator dead, the other answering that the lease is still the dead one's:
    # never a round of silent endpoints
    for _ in range(6):
        w.switched()  # left the dead one
        w.heard()
        w.switched(silent=False)  # the live one said "elsewhere"
        assert not w.all_silent and w.failover_wait_s == 1.5


def test_silence_is_counted_from_the_start_until_central_is_heard() -> None:
    w, c = window()
    assert w.silent_s() == 0.0  # never heard, but only just started
    c.t += 12.0
    assert w.silent_s() == 12.0  # a wrong address: silent since the start
    w.heard()
    assert w.silent_s() == 0.0
    c.t += 4.0
    assert w.silent_s() == 4.0


def test_a_stream_held_elsewhere_asks_for_hello_before_any_block() -> None:
    w, _ = window()
    w.on_welcome(-1, "a")
    assert drain(w, 5) == [0, 1, 2, 3]
    w.on_elsewhere()
    assert w.next_seq(5) is None and w.tick() is Tick.HELLO


def test_a_welcome_answering_an_older_hello_only_acknowledges() -> None:
    # an outage queues a HELLO every HELLO_RETRY_S; central answers each one when it is
    # back: only the first may move the cursor, or the window is sent once per HELLO
    w, _ = window(acked=-1, size=10)
    w.on_welcome(-1, "b")
    assert drain(w, 20) == list(range(10))
    w.on_welcome(-1, "b")  # stale: answers an older HELLO
    assert w.cursor == 10 and w.in_flight == 10
    w.on_welcome(4, "b")  # stale, and central has committed up to 4 meanwhile
    assert (w.acked, w.cursor) == (4, 10)
    assert drain(w, 20) == [10, 11, 12, 13, 14]
    # another central (a restart, a fail-over) is a new start: from its head
    w.on_welcome(2, "c")
    assert (w.acked, w.cursor) == (4, 5)


def test_the_ack_timeout_follows_the_round_trip_of_a_slow_central() -> None:
    w, c = window(size=100)
    w.on_welcome(-1, "b")
    w.heard()
    assert w.ack_timeout_s == 3.0  # nothing measured yet: stall_s
    # a central that works through a backlog answers each block 6 s after it was sent,
    # steadily: each ACK is progress, but 6 s > stall_s
    for k in range(20):
        drain(w, 1000)
        c.t += 0.5
        w.heard()
        if k >= 12:
            assert w.on_ack(k - 12)
    assert w.ack_timeout_s > 6.0
    c.t += 5.0  # a pause of 5 s with blocks in flight: slow, not stuck
    w.heard()
    assert w.tick() is Tick.HEARTBEAT and w.welcomed and w.resyncs == 0
    # a silent one (a partition, a crash) gets stall_s, as before
    c.t += 3.1
    assert w.tick() is Tick.HELLO and w.resyncs == 1
    # and one that answers heartbeats but never acknowledges: within the bound
    w.on_welcome(-1, "b")
    drain(w, 1000)
    for _ in range(int(MAX_ACK_TIMEOUT_S) + 1):
        c.t += 1.0
        w.heard()
        if w.tick() is Tick.HELLO:
            break
    assert w.resyncs == 2


def test_the_ack_timeout_never_goes_below_stall_nor_above_its_bound() -> None:
    w, c = window(size=10)
    w.on_welcome(-1, "b")
    drain(w, 5)
    c.t += 0.01
    assert w.on_ack(5)
    assert w.ack_timeout_s == 3.0  # a quick central: stall_s
    w2, c2 = window(size=10)
    w2.on_welcome(-1, "b")
    drain(w2, 5)
    c2.t += 500.0
    assert w2.on_ack(5)
    assert w2.ack_timeout_s == MAX_ACK_TIMEOUT_S


def test_blocks_sent_again_after_a_nack_are_not_timed() -> None:
    # Karn's rule: the ACK after a rewind may be the first copy's; timing it would
    # take the first send for the second's round trip
    w, c = window(size=10)
    w.on_welcome(-1, "b")
    drain(w, 5)
    c.t += 20.0
    assert not w.on_nack(2, 5)
    drain(w, 5)
    c.t += 0.01
    assert w.on_ack(5)
    assert w.ack_timeout_s == 3.0


def test_a_nack_for_a_block_central_acknowledged_asks_for_hello() -> None:
    # a central whose view of the stream is behind the CIR asks, as a gap, for a block it
    # acknowledged already: sending from acked + 1 again would be refused for ever
    w, _ = window(size=10)
    w.on_welcome(-1, "b")
    drain(w, 8)
    assert w.on_ack(5)
    assert not w.on_nack(3, 8) and w.cursor == 6  # one can be stale: overtaken by the ACK
    assert not w.on_nack(3, 8) and w.welcomed
    assert w.on_nack(3, 8) and not w.welcomed  # BEHIND_NACKS in a row: say hello again
    w.on_welcome(5, "b")
    assert not w.on_nack(7, 8) and w.cursor == 7  # an ordinary gap: resend from it
