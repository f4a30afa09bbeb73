"""Every rule of the LSP-1 data link core, driven without sockets or tasks."""

from __future__ import annotations

import json

import pytest

from drivers import GapCause, LinkEpoch, LinkGap, Packet, PacketType
from drivers.lsp._io import Damaged, SessionInfo, Violation, pack_session
from drivers.lsp._linkcore import Action, Deliver, Drop, LinkCore, SendResume

BOOT = "aaaa0001"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def pkt(seq: int, ptype: PacketType = PacketType.LINE, scan_id: int = 1) -> Packet:
    return Packet(ptype, seq, 0, scan_id, seq, 4, 0, b"\0" * 16)


def session(head: int, oldest: int = 0, boot: str = BOOT) -> Packet:
    info = SessionInfo(boot, "SN1", oldest, head)
    return Packet(PacketType.SESSION, head, 0, 0, 0, 0, 0, pack_session(info)[40:-4])


def core(next_seq: int = 0, sess: str = "", **kw: object) -> tuple[LinkCore, Clock]:
    clock = Clock()
    c = LinkCore(next_seq, sess, clock=clock, **kw)  # type: ignore[arg-type]
    return c, clock


def connect(c: LinkCore, head: int, oldest: int = 0, boot: str = BOOT) -> list[Action]:
    c.connecting()
    assert c.connected_now() == []
    return c.item(session(head, oldest, boot))


def feed(c: LinkCore, *items: Packet | Violation | Damaged) -> list[Action]:
    out: list[Action] = []
    for item in items:
        out += c.item(item)
    return out + c.batch_done()


def delivered(actions: list[Action]) -> list[object]:
    return [a.item for a in actions if isinstance(a, Deliver)]


def seqs(actions: list[Action]) -> list[int | str]:
    out: list[int | str] = []
    for a in actions:
        if isinstance(a, SendResume):
            out.append(f"R{a.seq}")
        elif isinstance(a, Drop):
            out.append("drop")
        elif isinstance(a.item, Packet):
            out.append(a.item.seq)
        elif isinstance(a.item, LinkGap):
            out.append(f"gap{a.item.first_seq}-{a.item.last_seq}:{a.item.cause}")
        else:
            out.append(f"epoch{a.item.next_seq}")
    return out


# ------------------------------------------------------------------- session first


def test_resume_goes_out_only_after_the_session_packet() -> None:
    c, _ = core(5)
    c.connecting()
    assert c.connected_now() == []
    assert c.read_timeout() == c.connect_timeout_s
    assert seqs(c.item(session(head=10))) == ["R5"]
    assert c.session == BOOT and c.serial == "SN1"
    assert c.stats.resumes == 0  # the first RESUME of a connection is no retry


def test_no_session_within_the_connect_timeout_is_a_failed_connection() -> None:
    c, clock = core(0, connect_timeout_s=2.0)
    c.connecting()
    c.connected_now()
    clock.t += 1.5
    assert c.read_timeout() == pytest.approx(0.5)
    clock.t += 0.5
    (drop,) = c.timed_out()
    assert isinstance(drop, Drop) and drop.failed and "SESSION" in drop.reason
    assert c.stats.no_session == 1
    assert c.disconnected() == c.backoff_initial_s  # backoff, doubling
    c.connecting()
    assert c.connect_failed() == 2 * c.backoff_initial_s
    assert c.stats.reconnects == 1


@pytest.mark.parametrize(
    "first",
    [
        pkt(0),
        Damaged(0, 0, "bad CRC"),
        Violation(0, 0, 9, "unknown packet type 9"),
        Packet(PacketType.SESSION, 0, 0, 0, 0, 0, 0, b'{"session": 1}'),
    ],
)
def test_a_connection_not_starting_with_a_good_session_is_dropped(
    first: Packet | Violation | Damaged,
) -> None:
    c, _ = core(0)
    c.connecting()
    c.connected_now()
    (drop,) = c.item(first)
    assert isinstance(drop, Drop) and drop.failed
    assert c.stats.no_session == 1
    assert c.item(pkt(0)) == []  # nothing more from a dropped connection


def test_unknown_session_is_adopted_silently() -> None:
    c, _ = core(0)
    assert seqs(connect(c, head=3)) == ["R0"]
    assert c.session == BOOT
    assert seqs(feed(c, pkt(0), pkt(1), pkt(2))) == [0, 1, 2]
    assert c.stats.epochs == 0


def test_same_session_resumes_where_it_was() -> None:
    c, _ = core(7, BOOT)
    assert seqs(connect(c, head=9)) == ["R7"]
    assert seqs(feed(c, pkt(7), pkt(8))) == [7, 8]


def test_session_packets_later_in_the_stream_are_ignored() -> None:
    c, _ = core(0)
    connect(c, head=2)
    big = Violation(1, 0, int(PacketType.SESSION), "SESSION record of 70000 bytes over")
    assert seqs(feed(c, pkt(0), session(head=2, boot="bbbb"), big, pkt(1))) == [0, 1]
    assert c.session == BOOT and c.stats.violations == 0


# -------------------------------------------------------------------- new sessions


def test_restart_between_scans_is_an_epoch_without_a_gap() -> None:
    c, _ = core(0)
    connect(c, head=3)
    feed(c, pkt(0, PacketType.SCAN_START), pkt(1), pkt(2, PacketType.SCAN_END))
    c.disconnected(orderly=True)  # the scanner closed the link: its session ended whole
    out = connect(c, head=0, boot="bbbb0002")
    assert seqs(out) == ["epoch0", "R0"]
    (epoch,) = delivered(out)
    assert isinstance(epoch, LinkEpoch)
    assert (epoch.session, epoch.previous, epoch.serial) == ("bbbb0002", BOOT, "SN1")
    assert "restarted" in epoch.reason and c.session == "bbbb0002"
    assert seqs(feed(c, pkt(0, PacketType.SCAN_START, scan_id=1))) == [0]
    assert c.stats.epochs == 1 and c.stats.gaps == 0


def test_a_session_whose_end_the_link_did_not_see_costs_a_restart_gap() -> None:
    # the link timed out (a partition, a pulled cable): the old session may have
    # emitted packets after the last one read, before it ended
    c, _ = core(0)
    connect(c, head=3)
    feed(c, pkt(0, PacketType.SCAN_START), pkt(1), pkt(2, PacketType.SCAN_END))
    c.timed_out()
    c.disconnected()
    out = connect(c, head=0, boot="bbbb0002")
    assert seqs(out) == ["gap3-2:restart", "epoch0", "R0"]
    gap = delivered(out)[0]
    assert isinstance(gap, LinkGap) and "how much is unknown" in gap.reason


def test_after_an_edge_restart_a_new_session_costs_a_restart_gap() -> None:
    c, _ = core(636, BOOT)  # the spool's position and session; nothing seen since
    out = connect(c, head=2000, boot="bbbb0002")
    assert seqs(out) == ["gap636-635:restart", "epoch0", "R0"]


def test_restart_mid_scan_is_a_restart_gap_naming_the_scan() -> None:
    c, _ = core(0)
    connect(c, head=2)
    feed(c, pkt(0, PacketType.SCAN_START, scan_id=4), pkt(1, scan_id=4))
    c.disconnected()
    out = connect(c, head=1, boot="bbbb0002")
    assert seqs(out) == ["gap2-1:restart", "epoch0", "R0"]
    gap = delivered(out)[0]
    assert isinstance(gap, LinkGap) and gap.scan_id == 4 and gap.cause is GapCause.RESTART
    assert "scan 4 was in progress" in gap.reason and BOOT in gap.reason
    assert not c.in_scan


def test_restart_names_the_packets_the_old_session_owed() -> None:
    c, _ = core(0)
    connect(c, head=10)  # the scanner held 0..9
    feed(c, *(pkt(s) for s in range(4)))
    c.disconnected()
    out = connect(c, head=0, boot="bbbb0002")
    gap = delivered(out)[0]
    assert isinstance(gap, LinkGap) and (gap.first_seq, gap.last_seq) == (4, 9)
    assert "packets 4..9 of the old session never arrived" in gap.reason


def test_a_counter_that_went_backwards_is_a_new_session_even_with_the_same_id() -> None:
    c, _ = core(50, BOOT)
    out = connect(c, head=3, oldest=0, boot=BOOT)
    assert seqs(out) == ["gap50-49:restart", "epoch0", "R0"]
    epoch = delivered(out)[1]
    assert isinstance(epoch, LinkEpoch) and "counter went back from 50 to 3" in epoch.reason


def test_a_counter_that_went_backwards_on_first_start_is_a_new_session() -> None:
    c, _ = core(50, "")  # an old spool without a session: the scanner was restarted since
    out = connect(c, head=3)
    assert seqs(out) == ["gap50-49:restart", "epoch0", "R0"]
    epoch = delivered(out)[1]
    assert isinstance(epoch, LinkEpoch) and epoch.previous == ""


def test_what_the_new_session_no_longer_holds_is_a_lost_gap_after_the_epoch() -> None:
    c, _ = core(0, BOOT)
    out = connect(c, head=900, oldest=400, boot="bbbb0002")
    assert seqs(out) == ["gap0--1:restart", "epoch0", "gap0-399:lost", "R400"]
    gap = delivered(out)[2]
    assert isinstance(gap, LinkGap) and "new session bbbb0002" in gap.reason
    assert c.stats.lost_packets == 400
    assert seqs(feed(c, pkt(400))) == [400]


# ---------------------------------------------------------------- go back N, votes


def test_hole_asks_to_go_back_and_duplicates_are_dropped() -> None:
    c, _ = core(0)
    connect(c, head=5)
    assert seqs(feed(c, pkt(0), pkt(2), pkt(3))) == [0, "R1"]
    assert c.stats.resumes == 1
    # the answer starts at 1, then old in-flight copies arrive again
    assert seqs(feed(c, pkt(1), pkt(2), pkt(2), pkt(3), pkt(1))) == [1, 2, 3]


def test_damaged_packet_asks_to_go_back_once() -> None:
    c, _ = core(0)
    connect(c, head=5)
    out = feed(c, pkt(0), Damaged(1, 1, "bad CRC"), pkt(2), Damaged(3, 1, "bad CRC"), pkt(4))
    assert seqs(out) == [0, "R1"]  # one RESUME while it is owed an answer
    assert seqs(feed(c, pkt(1), pkt(2), pkt(3), pkt(4))) == [1, 2, 3, 4]


def test_a_gap_needs_the_confirming_votes_of_clean_answers() -> None:
    c, _ = core(0, gap_confirmations=2)
    assert seqs(connect(c, head=300, oldest=100)) == ["R0"]
    assert seqs(feed(c, pkt(100))) == ["R0"]  # first answer: one vote, ask again
    out = feed(c, pkt(101), pkt(100))  # the second answer starts at 100 again
    assert seqs(out) == ["gap0-99:lost", 100]
    gap = delivered(out)[0]
    assert isinstance(gap, LinkGap) and "no longer holds packets 0..99" in gap.reason
    assert c.stats.gaps == 1 and c.stats.lost_packets == 100


def test_an_answer_with_damage_does_not_vote() -> None:
    c, _ = core(0, gap_confirmations=2)
    connect(c, head=300, oldest=100)
    assert seqs(feed(c, Damaged(0, 1, "bad CRC"), pkt(100))) == ["R0"]
    assert c._votes == 0
    assert seqs(feed(c, pkt(100))) == ["R0"]
    assert seqs(feed(c, pkt(100))) == ["gap0-99:lost", 100]


def test_a_lost_gap_names_the_scan_it_cut_into() -> None:
    c, _ = core(0, gap_confirmations=1)
    connect(c, head=300, oldest=100)
    gap = delivered(feed(c, pkt(100, scan_id=8)))[0]
    assert isinstance(gap, LinkGap) and gap.scan_id == 8


def test_lost_resume_answer_drops_the_connection() -> None:
    c, clock = core(0, resume_timeout_s=1.0)
    connect(c, head=10)
    feed(c, pkt(0), pkt(2))  # RESUME 1 goes out
    clock.t += 0.5
    assert seqs(feed(c, pkt(3))) == []
    clock.t += 0.6
    assert seqs(feed(c, pkt(4))) == ["drop"]
    assert c.disconnected() == 0.0  # it delivered packet 0: reconnect at once


def test_time_the_consumer_held_the_link_does_not_count_against_an_answer() -> None:
    c, clock = core(0, resume_timeout_s=1.0)
    connect(c, head=10)
    feed(c, pkt(0), pkt(2))  # RESUME 1 goes out
    clock.t += 30.0  # the consumer paused (a full spool) with the answer on its way
    c.held(30.0)
    assert seqs(feed(c, pkt(3))) == []  # stale data still ahead of the answer
    assert seqs(feed(c, pkt(1))) == [1]


# ------------------------------------------------------------------- violations


def test_violation_is_delivered_once_in_order_as_a_gap() -> None:
    c, _ = core(0)
    connect(c, head=3)
    v = Violation(1, 5, int(PacketType.SCAN_START), "SCAN_START record of 70000 bytes over")
    out = feed(c, pkt(0, PacketType.SCAN_END, scan_id=4), v, pkt(2, scan_id=5))
    assert seqs(out) == [0, "gap1-1:violation", 2]
    gap = delivered(out)[1]
    assert isinstance(gap, LinkGap) and gap.scan_id == 5 and "70000 bytes" in gap.reason
    assert c.stats.violations == 1 and c.stats.resumes == 0
    assert c.in_scan and c.scan_id == 5
    assert seqs(feed(c, v)) == []  # the same violation again (a replay) is a duplicate


def test_violation_beyond_a_hole_waits_for_the_hole() -> None:
    c, _ = core(0)
    connect(c, head=3)
    v = Violation(2, 1, 1, "LINE with 0 channels")
    assert seqs(feed(c, pkt(0), v)) == [0, "R1"]
    assert seqs(feed(c, pkt(1), v)) == [1, "gap2-2:violation"]


def test_the_same_packet_damaged_again_and_again_is_refused() -> None:
    c, _ = core(0, repeat_limit=3)
    connect(c, head=3)
    bad = Damaged(1, 6, "bad header")
    assert seqs(feed(c, pkt(0), bad, pkt(2))) == [0, "R1"]
    assert seqs(feed(c, bad, pkt(2))) == ["R1"]  # the answer: damaged again, then 2
    out = feed(c, bad)
    assert seqs(out) == ["gap1-1:violation", "R2"]
    gap = delivered(out)[0]
    assert isinstance(gap, LinkGap) and gap.scan_id == 6 and "3 times in a row" in gap.reason
    assert seqs(feed(c, pkt(2))) == [2]
    assert c.stats.violations == 1


def test_damage_at_other_packets_does_not_add_up() -> None:
    c, _ = core(0, repeat_limit=2)
    connect(c, head=4)
    feed(c, pkt(0), Damaged(1, 1, "bad CRC"))
    assert seqs(feed(c, Damaged(2, 1, "bad CRC"), pkt(1))) == [1]
    assert seqs(feed(c, Damaged(3, 1, "bad CRC"))) == ["R2"]
    assert c.stats.violations == 0


# ------------------------------------------------------------- timeouts, backoff


def test_read_timeout_is_the_stall_timeout_in_a_scan_or_when_owed() -> None:
    c, _ = core(0, stall_timeout_s=2.0, idle_timeout_s=30.0)
    connect(c, head=0)
    assert c.read_timeout() == 30.0
    assert seqs(c.timed_out()) == ["drop"] and c.stats.stalls == 0
    c.disconnected()
    connect(c, head=1)  # the scanner holds packet 0: an answer is owed
    assert c.read_timeout() == 2.0
    feed(c, pkt(0, PacketType.SCAN_START))
    assert c.read_timeout() == 2.0  # a scan is in progress
    assert seqs(c.timed_out()) == ["drop"] and c.stats.stalls == 1


def test_backoff_doubles_to_its_cap_and_resets_after_delivery() -> None:
    c, _ = core(0, backoff_initial_s=0.1, backoff_max_s=0.3)
    assert [c.connect_failed() for _ in range(4)] == [0.1, 0.2, 0.3, 0.3]
    connect(c, head=1)
    feed(c, pkt(0))
    assert c.disconnected() == 0.0
    assert c.connect_failed() == 0.1


def test_session_payload_is_what_the_simulator_sends() -> None:
    raw = pack_session(SessionInfo("ab", "S", 0, 0))
    assert json.loads(raw[40:-4]) == {
        "session": "ab",
        "serial": "S",
        "oldest_seq": 0,
        "head_seq": 0,
    }


# ------------------------------------------------- the core against a model scanner


class ModelScanner:
    """A scanner's replay ring and its answers to RESUME, with seeded losses on the way."""

    def __init__(self, seed: int, total: int, ring: int, loss: float) -> None:
        import random

        self.rng = random.Random(seed)
        self.total, self.ring, self.loss = total, ring, loss
        self.pos: int | None = None

    def send(self, n: int) -> list[Packet | Damaged]:
        """Up to ``n`` items of the stream from the current position (after a RESUME)."""
        if self.pos is None:
            return []
        out: list[Packet | Damaged] = []
        start = max(self.pos, self.total - self.ring)
        for seq in range(start, min(self.total, start + n)):
            roll = self.rng.random()
            if roll < self.loss / 2:
                continue  # dropped on the way
            if roll < self.loss:
                out.append(Damaged(seq, 1, "bad CRC"))
            else:
                out.append(pkt(seq))
        self.pos = min(self.total, start + n)
        return out


@pytest.mark.parametrize("seed", range(20))
def test_every_packet_once_in_order_through_losses(seed: int) -> None:
    total = 400
    scanner = ModelScanner(seed, total, ring=total, loss=0.08)
    c, clock = core(0, gap_confirmations=2, resume_timeout_s=1.0)
    got: list[int] = []
    for _ in range(2000):
        if c.expected >= total:
            break
        if not c.connected:
            c.disconnected()
            c.connecting()
            c.connected_now()
            scanner.pos = None
            actions = c.item(session(head=total))
        else:
            clock.t += 0.1
            actions = feed(c, *scanner.send(25))
            if not any(isinstance(a, Deliver) for a in actions) and scanner.pos == total:
                actions += c.timed_out()  # nothing more comes: the stall timeout
        for a in actions:
            if isinstance(a, SendResume):
                scanner.pos = a.seq
            elif isinstance(a, Deliver):
                assert isinstance(a.item, Packet), a.item  # the ring holds all: no gap
                got.append(a.item.seq)
    assert got == list(range(total))
    assert c.stats.gaps == c.stats.violations == 0
    assert c.stats.resumes > 0  # the losses were there and were gone back for


def test_what_left_the_ring_is_one_gap_and_the_rest_arrives() -> None:
    total, ring = 400, 150
    scanner = ModelScanner(3, total, ring=ring, loss=0.0)
    c, _ = core(0, gap_confirmations=2)
    connect(c, head=total, oldest=total - ring)
    scanner.pos = 0
    got: list[object] = []
    for _ in range(100):
        if c.expected >= total:
            break
        for a in feed(c, *scanner.send(40)):
            if isinstance(a, SendResume):
                scanner.pos = a.seq
            elif isinstance(a, Deliver):
                got.append(a.item)
    gaps = [g for g in got if isinstance(g, LinkGap)]
    assert [(g.first_seq, g.last_seq, g.cause) for g in gaps] == [(0, 249, GapCause.LOST)]
    assert [p.seq for p in got if isinstance(p, Packet)] == list(range(250, total))
