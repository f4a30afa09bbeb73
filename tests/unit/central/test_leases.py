"""The stream-lease book of one aggregator (central._leases), without a database."""

from __future__ import annotations

from central._leases import LeaseBook, holder_name


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_token_other_than_the_last_held_forgets_the_stream() -> None:
    c = Clock()
    b = LeaseBook("agg-a", "boot1", 3.0, clock=c)
    assert b.holder == "agg-a#boot1"
    assert not b.took("s1", 4)  # first time: nothing known to forget
    assert not b.took("s1", 4)  # renewed, same token
    assert b.fencing(["s1", "s2"]) == {"s1": ("agg-a#boot1", 4)}
    assert b.took("s1", 6)  # another aggregator held it in between
    b.lost(["s1"])
    assert not b.holds("s1") and b.fencing(["s1"]) == {}


def test_leases_of_silent_edges_are_let_go_the_others_renewed() -> None:
    c = Clock()
    b = LeaseBook("agg-a", "boot1", 3.0, clock=c)
    b.took("s1", 1)
    b.took("s2", 1)
    heard = {"s1": c.t, "s2": c.t}
    assert b.due(heard.get) is not None  # the first round at once
    assert b.due(heard.get) is None  # then every ttl / 3
    c.t += 2.0
    b.touch("s1")  # a block of s1 came
    c.t += 1.5
    plan = b.due(heard.get)
    assert plan is not None
    renew, release = plan
    assert renew == {"s1": ("agg-a#boot1", 1)} and release == {"s2": ("agg-a#boot1", 1)}
    assert b.holds("s1") and not b.holds("s2")
    # a lease let go but not taken over still fences with its last token
    assert b.fencing(["s2"]) == {"s2": ("agg-a#boot1", 1)}


def test_the_default_name_is_host_and_listen_endpoint() -> None:
    assert holder_name("", "tcp://0.0.0.0:7600").endswith(":tcp://0.0.0.0:7600")
    assert holder_name("riac-north-1", "tcp://0.0.0.0:7600") == "riac-north-1"
