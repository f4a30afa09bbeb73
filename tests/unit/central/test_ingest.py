"""Central's ingest core, rule by rule, with no sockets, tasks or SQLite."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central._ingest import EnrolledEdge, Work
from core.errors import ProtocolError
from core.messages import Ack, Alarm, BlockMsg, Heartbeat, Hello
from core.seal import BlockKind
from tests.unit.central._chain import BOOT, EDGE, IDENT, SCANNER, Rig

#: the routing id of a second process of the Rig's edge (another boot id)
SECOND = f"{EDGE}/{SCANNER}/bb".encode()


def test_a_complete_scan() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 1]), r.data(1, [2, 3])):
        work = r.send(b)
        assert work.acks == {(IDENT, SCANNER): b[0]} and not work.nacks
    r.send(r.end(1))
    (row,) = r.scan_rows()
    assert row["status"] == "complete" and row["lines_received"] == 4 and row["scan_id"] == 1
    assert r.alarms == []
    assert r.store.streams[SCANNER].last_seq == 3


def test_not_enrolled_gets_a_fatal_nack_and_nothing_is_staged() -> None:
    r = Rig()
    seq, raw = r.start(1)
    for edge in (None, EnrolledEdge(EDGE, r.edge.sign_public, revoked=True)):
        work = Work()
        r.ingest.message(work, IDENT, edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
        assert not work.staged and work.nacks[0][1].fatal


def test_identity_block_of_another_edge_is_refused() -> None:
    r = Rig()
    other = EnrolledEdge("edge-2", r.edge.sign_public)
    seq, raw = r.start(1)
    work = Work()
    r.ingest.message(work, b"edge-2/s1/aa", other, BlockMsg(scanner=SCANNER, seq=seq), [raw])
    assert not work.staged and "identity" in work.nacks[0][1].reason
    assert r.kinds() == ["block_rejected"]


def test_signature_of_another_key_is_refused() -> None:
    r = Rig(sign=Ed25519PrivateKey.generate())
    r.edge = Rig().edge  # enrolled with another key than the one that signs
    work = r.send(r.start(1))
    assert not work.staged and work.nacks[0][1].reason.startswith("signature")


def test_duplicate_is_acked_again_and_replay_refused() -> None:
    r = Rig()
    first = r.start(1)
    r.send(first)
    again = r.send(first)
    assert again.acks == {(IDENT, SCANNER): 0} and not again.staged
    assert r.ingest.duplicates == 1
    other = r.seal(*_data_args(r), seq=0, advance=False)
    work = r.send(other)
    assert not work.staged and work.nacks[0][1].reason.startswith("replay")


def _data_args(r: Rig) -> tuple[BlockKind, dict[str, Any], list[tuple[int, int, int, int]], bytes]:
    return (
        BlockKind.DATA,
        {"kind": "data", "scan_id": 1, "channels": 8},
        [(9, 0, 1, 99)],
        bytes(32),
    )


def test_gap_in_sequence_asks_for_the_next_one() -> None:
    r = Rig()
    r.send(r.start(1))
    r.data(1, [0])  # sealed, never sent
    work = r.send(r.data(1, [1]))
    ((_ident, nack),) = work.nacks
    assert nack.reason == "gap" and nack.expected == 1 and not nack.fatal and not work.staged


def test_chain_break_is_refused() -> None:
    r = Rig()
    r.send(r.start(1))
    r.prev = bytes(32)
    work = r.send(r.data(1, [0]))
    assert work.nacks[0][1].reason.startswith("chain") and not work.staged


def test_hello_answered_unless_it_claims_another_edge() -> None:
    r = Rig()
    work = Work()
    hello = Hello(edge=EDGE, scanner=SCANNER, head_seq=-1, head_hash="", boot="0a")
    r.ingest.message(work, IDENT, r.edge, hello, [])
    assert work.hellos == [(IDENT, SCANNER)]
    work = Work()
    hello.edge = "edge-9"
    r.ingest.message(work, IDENT, r.edge, hello, [])
    assert not work.hellos and r.kinds() == ["identity"]


def test_edge_alarm_is_raised_and_edge_may_not_send_acks() -> None:
    r = Rig()
    r.ingest.message(Work(), IDENT, r.edge, Alarm(scanner=SCANNER, kind="x", message="m"), [])
    assert r.kinds() == ["x"]
    with pytest.raises(ProtocolError):
        r.ingest.message(Work(), IDENT, r.edge, Ack(scanner=SCANNER, seq=1, boot="a"), [])
    work = Work()
    with pytest.raises(ProtocolError):
        r.ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=0), [])
    assert work.nacks[0][1].fatal and "0 data frames" in work.nacks[0][1].reason


def test_garbage_block_frame_is_refused() -> None:
    r = Rig()
    work = Work()
    r.ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=0), [b"junk"])
    assert work.nacks[0][1].fatal and r.kinds() == ["block_rejected"]


# -- kind 10: a scan that loses its end ---------------------------------------------------
def test_next_scan_start_closes_an_open_scan_incomplete() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 1, 2, 3]), r.start(2)):
        r.send(b)
    first, second = r.scan_rows()
    assert first["status"] == "incomplete" and second["status"] == "scanning"
    assert r.kinds() == ["scan_incomplete"]
    assert "started before its end record" in r.alarms[0][1]


def test_data_of_another_scan_closes_the_open_one() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0]), r.data(2, [0])):
        r.send(b)
    first, second = r.scan_rows()
    assert first["status"] == "incomplete" and second["scan_id"] == 2
    assert r.kinds() == ["scan_incomplete", "no_start_record"]


def test_restart_gap_ends_the_open_scan() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0]), r.gap(-1, cause="restart")):
        r.send(b)
    (row,) = r.scan_rows()
    assert row["status"] == "incomplete" and row["gaps"] == 1
    assert r.kinds() == ["data_lost", "scan_incomplete"]
    assert r.ingest.streams[SCANNER].scan_ref is None


def test_gap_inside_a_scan_makes_it_incomplete_at_its_end() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 1]), r.gap(1), r.data(1, [2, 3]), r.end(1)):
        r.send(b)
    (row,) = r.scan_rows()
    assert row["status"] == "incomplete" and row["gaps"] == 1 and row["lines_received"] == 4


def test_a_gap_of_refused_packets_is_a_protocol_violation() -> None:
    r = Rig()
    for b in (r.start(1), r.gap(1, cause="violation")):
        r.send(b)
    kind, message, details = r.alarms[0]
    assert kind == "protocol_violation" and "violation" in message and details["scan_id"] == 1


def test_gap_that_cut_a_later_scan_closes_this_one() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0]), r.gap(2)):
        r.send(b)
    (row,) = r.scan_rows()
    assert row["status"] == "incomplete"


def test_scans_swallowed_by_a_gap_get_lost_rows() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 1, 2, 3]), r.end(1)):
        r.send(b)
    gap_seq = r.seq
    for b in (r.gap(-1), r.start(5)):
        r.send(b)
    rows = r.scan_rows()
    assert [(x["scan_id"], x["status"]) for x in rows] == [
        (1, "complete"),
        (2, "lost"),
        (3, "lost"),
        (4, "lost"),
        (5, "scanning"),
    ]
    kind, message, details = r.alarms[-1]
    assert kind == "scans_lost" and "2..4" in message and details["gap_seqs"] == [gap_seq]


def test_lost_rows_after_central_restarted_between_gap_and_next_scan() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 1, 2, 3]), r.end(1), r.gap(-1), r.gap(-1)):
        r.send(b)
    r.ingest = type(r.ingest)(r.store, r.ingest.open_block, r.ingest.alarm)
    r.send(r.start(4))
    assert [x["status"] for x in r.scan_rows()] == ["complete", "lost", "lost", "scanning"]
    assert r.alarms[-1][2]["gap_seqs"] == [3, 4]


def test_no_lost_rows_without_a_gap_or_when_ids_restart() -> None:
    r = Rig()
    for b in (r.start(7), r.end(7), r.start(9), r.end(9), r.gap(-1), r.start(1)):
        r.send(b)
    assert [x["status"] for x in r.scan_rows()].count("lost") == 0


def test_lost_rows_are_bounded() -> None:
    from central._ingest import MAX_LOST_ROWS

    r = Rig()
    for b in (r.start(1), r.end(1), r.gap(-1), r.start(10**12)):
        r.send(b)
    assert sum(x["status"] == "lost" for x in r.scan_rows()) == MAX_LOST_ROWS


def test_open_scan_survives_a_restart_of_central() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 1])):
        r.send(b)
    r.ingest = type(r.ingest)(r.store, r.ingest.open_block, r.ingest.alarm)
    for b in (r.data(1, [2, 3]), r.end(1)):
        r.send(b)
    (row,) = r.scan_rows()
    assert row["status"] == "complete" and row["lines_received"] == 4


def test_a_restart_of_central_keeps_the_open_scans_shape() -> None:
    """After a restart the open scan is judged against the lines already stored: lines
    repeated after it are not counted, a block of the wrong width is still wrong, and a
    scan broken before the restart cannot end complete (before, the shape was rebuilt
    from the start record alone and counted what the CIR's readers reject)."""
    r = Rig()
    for b in (r.start(1, lines=8), r.data(1, [0, 1, 2, 3]), r.data(1, [4, 5], channels=6)):
        r.send(b)
    r.ingest = type(r.ingest)(r.store, r.ingest.open_block, r.ingest.alarm)
    for b in (r.data(1, [2, 3]), r.data(1, [4, 5, 6, 7]), r.end(1)):
        r.send(b)
    (row,) = r.scan_rows()
    assert row["lines_received"] == 8 and row["status"] == "incomplete"
    assert r.kinds() == ["shape_violation", "scan_incomplete"]


def test_a_restart_keeps_the_channel_count_the_first_block_fixed() -> None:
    r = Rig()
    for b in (r.data(1, [0, 1], channels=5),):
        r.send(b)
    r.ingest = type(r.ingest)(r.store, r.ingest.open_block, r.ingest.alarm)
    r.send(r.data(1, [2], channels=4))
    (row,) = r.scan_rows()
    assert row["lines_received"] == 2
    assert r.kinds() == ["no_start_record", "shape_violation"]


# -- kind 3: the shape fixed by the start record -------------------------------------------
def test_channel_change_is_stored_but_marks_the_scan() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 1]), r.data(1, [2, 3], channels=6), r.end(1)):
        work = r.send(b)
        assert work.staged  # the chain holds: every block is stored
    (row,) = r.scan_rows()
    assert row["status"] == "incomplete" and row["lines_received"] == 2
    assert r.kinds() == ["shape_violation", "scan_incomplete"]
    assert "6 channels" in r.alarms[0][1]


def test_lines_out_of_order_or_repeated_are_not_counted() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 2]), r.data(1, [1, 2, 3]), r.end(1)):
        r.send(b)
    (row,) = r.scan_rows()
    assert row["status"] == "incomplete" and row["lines_received"] == 3
    assert r.kinds().count("shape_violation") == 1


def test_without_start_record_the_first_block_fixes_the_shape() -> None:
    r = Rig()
    for b in (r.data(1, [0, 1], channels=5), r.data(1, [2], channels=4)):
        r.send(b)
    (row,) = r.scan_rows()
    assert row["lines_received"] == 2
    assert r.kinds() == ["no_start_record", "shape_violation"]


def test_calibration_lines_do_not_take_part_in_line_order() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 0], flags=1), r.data(1, [0, 1, 2, 3]), r.end(1)):
        r.send(b)
    (row,) = r.scan_rows()
    assert row["status"] == "complete" and row["calib_lines"] == 2


def test_one_writer_per_stream_a_second_process_of_the_edge_is_refused() -> None:
    r = Rig()
    now = [100.0]
    r.ingest.clock = lambda: now[0]
    first = Hello(edge=EDGE, scanner=SCANNER, head_seq=-1, head_hash="", boot="aa")
    work = Work()
    r.ingest.message(work, IDENT, r.edge, first, [])
    assert work.hellos

    def beat(seconds: float, every: float = 1.0) -> None:
        """The writer heartbeats every ``every`` s for ``seconds``."""
        for _ in range(round(seconds / every)):
            now[0] += every
            r.ingest.heard(EDGE, f"{EDGE}/{SCANNER}", "aa")

    # a second process with the same edge id says hello while the first is alive
    second = Hello(edge=EDGE, scanner=SCANNER, head_seq=-1, head_hash="", boot="bb")
    beat(5.0)
    work = Work()
    r.ingest.message(work, SECOND, r.edge, second, [])
    assert not work.hellos and work.nacks[0][1].fatal
    assert "one edge identity runs twice" in work.nacks[0][1].reason
    assert r.kinds() == ["duplicate_edge"]
    # its HELLOs again and again: refused each time, alarmed once a minute
    for _ in range(3):
        work = Work()
        r.ingest.message(work, SECOND, r.edge, second, [])
        assert not work.hellos and work.nacks[0][1].fatal
    assert r.kinds() == ["duplicate_edge"]
    # its blocks are never chained in
    seq, raw = r.start(1)
    work = Work()
    r.ingest.message(work, SECOND, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
    assert not work.staged and work.nacks[0][1].fatal
    # the writer's own blocks and heartbeats keep it alive
    work = Work()
    r.ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
    assert work.staged
    beat(20.0)
    now[0] += 2.0  # two heartbeats late: a hiccup, not a crash
    work = Work()
    r.ingest.message(work, SECOND, r.edge, second, [])
    assert not work.hellos
    # silent for three and a half of its heartbeat intervals: crashed or cut off, it
    # gives way (an edge restarted after a crash takes its stream back within seconds)
    now[0] += 2.0
    work = Work()
    r.ingest.message(work, SECOND, r.edge, second, [])
    assert work.hellos


def test_a_writer_is_alive_as_of_its_messages_arrival_not_their_staging() -> None:
    """Messages held while a slow commit ran are staged seconds after they came: those
    of an edge process that has gone since must not make it look alive when its
    restarted successor says HELLO."""
    r = Rig()
    now = [100.0]
    r.ingest.clock = lambda: now[0]
    old = Hello(edge=EDGE, scanner=SCANNER, head_seq=-1, head_hash="", boot="aa")
    r.ingest.message(Work(), IDENT, r.edge, old, [])
    for _ in range(5):  # the old process heartbeats every second, then is killed
        now[0] += 1.0
        r.ingest.heard(EDGE, f"{EDGE}/{SCANNER}", "aa")
    gone = now[0]
    seq, raw = r.start(1)
    now[0] += 8.0  # a commit stuck for 8 s; its last block and heartbeat were held
    r.ingest.received_at = gone
    work = Work()
    r.ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
    r.ingest.heard(EDGE, f"{EDGE}/{SCANNER}", "aa")
    assert work.staged
    r.ingest.received_at = gone + 6.0  # the new process's HELLO came 6 s after
    new = Hello(edge=EDGE, scanner=SCANNER, head_seq=-1, head_hash="", boot="bb")
    work = Work()
    r.ingest.message(work, SECOND, r.edge, new, [])
    r.ingest.received_at = None
    assert work.hellos and not work.nacks, work.nacks
    assert "duplicate_edge" not in r.kinds()


def test_a_writer_that_stops_cleanly_gives_its_stream_to_its_restart_at_once() -> None:
    r = Rig()
    now = [100.0]
    r.ingest.clock = lambda: now[0]
    old = Hello(edge=EDGE, scanner=SCANNER, head_seq=-1, head_hash="", boot="aa")
    r.ingest.message(Work(), IDENT, r.edge, old, [])
    new = Hello(edge=EDGE, scanner=SCANNER, head_seq=-1, head_hash="", boot="bb")
    # another process's farewell does not release the writer's stream
    bye = Heartbeat(sender=f"{EDGE}/{SCANNER}", boot="bb", state={"stopping": True})
    r.ingest.heartbeat(Work(), SECOND, r.edge, bye)
    work = Work()
    r.ingest.message(work, SECOND, r.edge, new, [])
    assert not work.hellos and work.nacks[0][1].fatal
    # the writer's own does: its restart (0.4 s later) is welcomed, not refused
    now[0] += 0.2
    bye = Heartbeat(sender=f"{EDGE}/{SCANNER}", boot="aa", state={"stopping": True})
    r.ingest.heartbeat(Work(), IDENT, r.edge, bye)
    now[0] += 0.2
    work = Work()
    r.ingest.message(work, SECOND, r.edge, new, [])
    assert work.hellos and not work.nacks


def test_a_writer_that_heartbeats_slowly_is_given_longer() -> None:
    r = Rig()
    now = [100.0]
    r.ingest.clock = lambda: now[0]
    r.ingest.message(
        Work(), IDENT, r.edge,
        Hello(edge=EDGE, scanner=SCANNER, head_seq=-1, head_hash="", boot="aa"), [],
    )  # fmt: skip
    for _ in range(10):  # heartbeat_s = 2.5
        now[0] += 2.5
        r.ingest.heard(EDGE, f"{EDGE}/{SCANNER}", "aa")
    now[0] += 7.0  # under 3.5 x 2.5 s
    work = Work()
    second = Hello(edge=EDGE, scanner=SCANNER, head_seq=-1, head_hash="", boot="bb")
    r.ingest.message(work, SECOND, r.edge, second, [])
    assert not work.hellos
    now[0] += 2.0
    work = Work()
    r.ingest.message(work, SECOND, r.edge, second, [])
    assert work.hellos


# -- hostile enrolled edge: who may speak for a scanner ------------------------------------
def _hello(r: Rig, ident: bytes, boot: str, edge: EnrolledEdge | None = None) -> Work:
    work = Work()
    e = edge or r.edge
    hello = Hello(edge=e.id, scanner=SCANNER, head_seq=-1, head_hash="", boot=boot)
    r.ingest.message(work, ident, e, hello, [])
    return work


def test_alarm_for_a_scanner_of_another_edge_is_refused() -> None:
    r = Rig()
    r.send(r.start(1))  # SCANNER is bound to EDGE
    hostile = EnrolledEdge("hostile", r.edge.sign_public)
    for kind in ("safety_clear", "scan_incomplete"):
        forged = Alarm(scanner=SCANNER, kind=kind, message="all clear")
        with pytest.raises(ProtocolError, match="bound to edge edge-1"):
            r.ingest.message(Work(), b"hostile/x/0a", hostile, forged, [])
    # an alarm of its own (no scanner, or a scanner nobody streams) is raised
    r.ingest.message(Work(), b"hostile/x/0a", hostile, Alarm(scanner="", kind="k", message="m"), [])
    r.ingest.message(
        Work(), b"hostile/x/0a", hostile, Alarm(scanner="x", kind="k", message="m"), []
    )
    assert r.kinds() == ["k", "k"]


def test_alarm_for_a_scanner_another_edge_said_hello_for_is_refused() -> None:
    r = Rig()
    assert _hello(r, IDENT, "aa").hellos  # no block yet: bound by its live writer
    hostile = EnrolledEdge("hostile", r.edge.sign_public)
    with pytest.raises(ProtocolError, match="bound to edge edge-1"):
        r.ingest.message(
            Work(), b"hostile/x/0a", hostile, Alarm(scanner=SCANNER, kind="k", message="m"), []
        )
    # nor may it take the scanner over with a HELLO while the writer lives
    work = _hello(r, b"hostile/x/0a", "0a", hostile)
    assert not work.hellos and "bound to edge edge-1" in work.nacks[0][1].reason


def test_alarm_of_a_process_that_is_not_the_writer_is_dropped() -> None:
    r = Rig()
    r.ingest.clock = lambda: 100.0
    assert _hello(r, IDENT, "aa").hellos
    assert not _hello(r, SECOND, "bb").hellos  # refused: duplicate_edge
    r.alarms.clear()
    r.ingest.message(Work(), SECOND, r.edge, Alarm(scanner=SCANNER, kind="x", message="m"), [])
    assert r.kinds() == [] and r.ingest.alarms_dropped == 1
    r.ingest.message(Work(), IDENT, r.edge, Alarm(scanner=SCANNER, kind="x", message="m"), [])
    assert r.kinds() == ["x"]


def test_routing_id_must_start_with_the_senders_edge() -> None:
    r = Rig()
    for ident in (b"edge-demo/scanner1", b"edge-demo/scanner1/aa", b"id", b"edge-1x/s1/aa"):
        work = Work()
        with pytest.raises(ProtocolError, match="routing id"):
            r.ingest.message(work, ident, r.edge, Alarm(scanner=SCANNER, kind="k", message="m"), [])
        with pytest.raises(ProtocolError, match="routing id"):
            r.send(r.start(1, lines=4), ident=ident)
        hb = Heartbeat(sender=f"{EDGE}/{SCANNER}", boot="aa")
        with pytest.raises(ProtocolError, match="routing id"):
            r.ingest.heartbeat(work, ident, r.edge, hb)
        assert not work.heartbeats and not work.staged
    assert r.alarms == []


def test_doctor_probe_is_welcomed_without_taking_the_stream() -> None:
    r = Rig()
    r.ingest.clock = lambda: 100.0
    probe = f"{EDGE}/doctor/1234abcd".encode()
    assert _hello(r, probe, "d0c7").hellos  # no edge running: welcomed
    assert _hello(r, IDENT, "aa").hellos  # the edge starting right after is not refused
    assert _hello(r, probe, "d0c7").hellos  # nor is the doctor while the edge runs
    assert r.kinds() == []


def test_heartbeat_speaks_for_uptime_only_from_the_writer() -> None:
    r = Rig()
    now = [100.0]
    r.ingest.clock = lambda: now[0]
    state = {"uptime": {"scanner": SCANNER, "entries": []}}
    hb = Heartbeat(sender=f"{EDGE}/{SCANNER}", boot="aa", state=state)
    work = Work()
    assert r.ingest.heartbeat(work, IDENT, r.edge, hb)  # no writer known yet
    assert work.heartbeats == [IDENT]
    assert _hello(r, IDENT, "aa").hellos
    assert r.ingest.heartbeat(Work(), IDENT, r.edge, hb)
    # a short-lived second process of the same edge and scanner: answered, not stored
    other = Heartbeat(sender=f"{EDGE}/{SCANNER}", boot="bb", state=state)
    work = Work()
    assert not r.ingest.heartbeat(work, SECOND, r.edge, other)
    assert work.heartbeats == [SECOND]
    # nor may it name the writer's scanner in the uptime of another sender scanner
    sneaky = Heartbeat(sender=f"{EDGE}/s9", boot="bb", state=state)
    assert not r.ingest.heartbeat(Work(), SECOND, r.edge, sneaky)
    # once the writer is silent past WRITER_STALE_S the other process may speak
    now[0] += 11.0
    assert r.ingest.heartbeat(Work(), SECOND, r.edge, other)


def test_heartbeat_naming_another_edge_or_its_scanner_is_refused() -> None:
    r = Rig()
    r.send(r.start(1))
    hostile = EnrolledEdge("hostile", r.edge.sign_public)
    for sender in (f"{EDGE}/{SCANNER}", f"hostile/{SCANNER}"):
        with pytest.raises(ProtocolError):
            r.ingest.heartbeat(Work(), b"hostile/x/0a", hostile, Heartbeat(sender=sender, boot="a"))
    assert r.ingest.heartbeat(
        Work(), b"hostile/x/0a", hostile, Heartbeat(sender="hostile/x", boot="a")
    )


# -- a violation GAP swallows no scan; lost rows skip the live ATR ------------------------
def test_scan_ids_jumping_past_violation_gaps_make_no_lost_rows() -> None:
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 1, 2, 3]), r.end(1), r.start(2), r.data(2, [0])):
        r.send(b)
    for b in (r.gap(2, cause="violation"), r.gap(2, cause="violation"), r.data(2, [1])):
        r.send(b)
    work = r.send(r.start(10))
    assert [x["status"] for x in r.scan_rows()] == ["complete", "incomplete", "scanning"]
    assert "scans_lost" not in r.kinds() and not work.lost
    # and after a restart of central, from the GAP blocks at the head of the CIR's chain
    for b in (r.end(10), r.gap(-1, cause="violation")):
        r.send(b)
    r.ingest = type(r.ingest)(r.store, r.ingest.open_block, r.ingest.alarm)
    r.send(r.start(12))
    assert "scans_lost" not in r.kinds()


def test_lost_rows_are_marked_for_no_live_atr() -> None:
    r = Rig()
    for b in (r.start(1), r.end(1), r.gap(-1, cause="restart")):
        r.send(b)
    work = r.send(r.start(4))
    lost = {x["ref"] for x in r.scan_rows() if x["status"] == "lost"}
    assert len(lost) == 2 and work.lost == lost and lost <= work.finished


def test_a_line_beyond_the_planned_lines_does_not_fit() -> None:
    # a validly sealed block naming line 4294967295 of a 4-line scan
    r = Rig()
    for b in (r.start(1), r.data(1, [0, 1, 2, 3]), r.data(1, [2**32 - 1]), r.end(1)):
        r.send(b)
    (row,) = r.scan_rows()
    assert row["lines_received"] == 4 and row["status"] == "incomplete"
    (msg,) = [m for k, m, _ in r.alarms if k == "shape_violation"]
    assert "beyond the 4 image lines" in msg


def test_a_welcome_names_the_head_of_its_own_batch_not_of_the_next() -> None:
    """Central stages the next batch while one commits: a WELCOME answering a HELLO
    of the committing batch must name that batch's head, durable when it is sent,
    never a block of the next batch that may yet fail to commit."""
    r = Rig()
    r.send(r.start(1))
    first = _hello(r, IDENT, BOOT)
    r.ingest.settle(first)
    durable = r.ingest.welcome(SCANNER)
    nxt = r.send(r.data(1, [0, 1]), commit=False)  # the next batch, staged, not durable
    assert nxt.staged and not nxt.nacks
    assert r.ingest.welcome(SCANNER)[0] == durable[0] + 1
    assert first.heads[SCANNER] == durable
