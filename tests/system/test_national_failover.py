"""Several aggregators on one national CIR: edge failover and lease fencing (issue 15).

Two ``nii central`` processes share a real PostgreSQL server and a real
S3-compatible object store; one edge streams four simulated scanners and lists
both aggregators. Killing one aggregator mid-scan (SIGKILL) must move its
scanners to the other with nothing lost or duplicated; an aggregator paused
(SIGSTOP) past its leases must find them taken over when it resumes, and write
nothing more to those streams.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from central._reader import verify_stream
from tests.system._cluster import Cluster, wait_until

pytestmark = pytest.mark.system

SCAN_LINES = 800
CALIB = 16  # 8 dark + 8 air lines per scan
SCANS = 3
SCANNERS = ["scanner1", "scanner2", "scanner3", "scanner4"]


@pytest.fixture
def national(tmp_path: Any, request: pytest.FixtureRequest) -> Any:
    c = Cluster(
        tmp_path,
        database=request.getfixturevalue("pg_database"),
        s3=request.getfixturevalue("s3_server"),
    )
    c.enroll()
    c.add_aggregator("central2")
    yield c
    c.stop_all()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(c.log_tail(60))


def holders(c: Cluster) -> dict[str, str]:
    """scanner → the listen endpoint of the aggregator holding its lease now."""
    rows = c.sql("SELECT scanner, holder, expires_ns FROM stream_leases")
    out = {}
    for scanner, holder, _ in rows:
        for _name, (_toml, listen) in c.aggregators.items():
            if holder.split("#")[0].endswith(listen):
                out[scanner] = listen
    return out


def first_scan_running(c: Cluster, scanners: list[str]) -> bool:
    """Mid-scan, with scans still to come: one of ``scanners`` is in its first scan, some
    of its lines committed (so the streams go on after the fault)."""
    for s in scanners:
        rows = c.scans(s)
        if len(rows) == 1 and rows[0][1] == "scanning" and rows[0][2] > 100:
            return True
    return False


def one_to_fault(c: Cluster) -> tuple[str, str, list[str]]:
    """Once every stream is leased: ``(aggregator to fault, the other's listen endpoint,
    the scanners the first holds)``. The edges spread the scanners over both, but on a
    loaded machine an edge may fail over before its first WELCOME and leave all on one:
    the fault then goes to that one."""
    wait_until(lambda: len(holders(c)) == 4, 60, "every scanner's stream leased")
    held = holders(c)
    victim = "central" if c.aggregators["central"][1] in held.values() else "central2"
    other = "central2" if victim == "central" else "central"
    v_listen = c.aggregators[victim][1]
    return victim, c.aggregators[other][1], sorted(s for s, ep in held.items() if ep == v_listen)


def start(c: Cluster) -> None:
    sims = c.start_sim(
        "--scan-lines",
        str(SCAN_LINES),
        "--scans",
        str(SCANS),
        "--interval",
        "0.5",
        "--line-rate",
        "400",
        "--seed",
        "23",
        scanners=len(SCANNERS),
    )
    c.start_central("central")
    c.start_central("central2")
    c.write_edge_config(sims)
    c.start_edge()


def assert_exactly_once(c: Cluster) -> None:
    """Every emitted line of every scanner is in the CIR once, bit-identical, in order;
    every chain verifies; every scan is complete."""
    for scanner in SCANNERS:
        emitted = c.emitted(scanner)
        assert len(emitted) == SCANS * (SCAN_LINES + CALIB), f"{scanner}: not all emitted"
        committed = c.committed_keys(scanner)
        assert len(committed) == len(set(committed)), f"{scanner}: a line is in the CIR twice"
        assert committed == emitted, f"{scanner}: CIR lines differ from the emitted ones"
        cir = c.open_cir()
        try:
            rep = verify_stream(cir, scanner)
        finally:
            cir.close()
        assert rep.ok, rep.problems
        for scan_id, status, received, planned, gaps in c.scans(scanner):
            assert (status, received, planned, gaps) == ("complete", SCAN_LINES, SCAN_LINES, 0), (
                f"{scanner} scan {scan_id}: {status} {received}/{planned} gaps {gaps}"
            )


def test_sigkill_of_an_aggregator_mid_scan_moves_its_edges_losing_nothing(
    national: Cluster,
) -> None:
    c = national
    # the control room follows both aggregators' feeds at once
    feeds = [a for f in c.feeds.values() for a in ("--feed", f)]
    c.start("tail", "control-room", "tail", *feeds, "--json", "--no-previews", "--status")
    tail_log = c.logs / "tail.log"
    start(c)
    victim, o_listen, on_v = one_to_fault(c)
    # mid-scan: lines of a running scan of one of the victim's scanners are committed
    wait_until(lambda: first_scan_running(c, on_v), 60, "a first scan in progress")
    c.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: all(holders(c).get(s) == o_listen for s in on_v),
        30,
        "the other aggregator taking over the dead one's scanners",
    )
    for s in SCANNERS:
        wait_until(
            lambda s=s: c.finished_scans(s) >= SCANS,  # type: ignore[misc]
            120,
            f"{SCANS} finished scans of {s}",
        )
    assert_exactly_once(c)
    failovers = c.alarms("central_failover")
    assert {f[1] for f in failovers} >= set(on_v), failovers
    # the other aggregator answered all along (if only that the dead one's lease had not
    # run out yet): never "none of the endpoints answers"
    assert not c.alarms("central_unreachable"), c.alarms("central_unreachable")
    r = c.nii("cir", "verify", "--config", str(c.central_toml))
    assert r.returncode == 0 and "all 4 chains verified" in r.stdout, r.stdout + r.stderr

    # one live feed: every scan's end reached the control room, whichever aggregator
    # took it, the scans cut by the kill included
    def ends() -> set[tuple[str, int]]:
        docs = [json.loads(x) for x in tail_log.read_text().splitlines() if x.startswith("{")]
        return {(d["scanner"], d["scan_id"]) for d in docs if d["topic"] == "scan.finished"}

    want = {(s, i) for s in SCANNERS for i, *_ in c.scans(s)}
    wait_until(lambda: ends() >= want, 20, "every scan's end on the merged feed")


def test_a_paused_aggregator_finds_its_leases_taken_and_writes_nothing(
    national: Cluster,
) -> None:
    c = national
    start(c)
    paused, o_listen, on_p = one_to_fault(c)
    wait_until(lambda: first_scan_running(c, on_p), 60, "a first scan in progress")
    c.procs[paused].send_signal(signal.SIGSTOP)
    try:
        wait_until(
            lambda: all(holders(c).get(s) == o_listen for s in on_p),
            30,
            "the other aggregator taking over the paused one's scanners",
        )
        # the streams move on under the new holder before the paused one wakes up
        before = {s: c.sql("SELECT MAX(seq) FROM blocks WHERE scanner = ?", s)[0][0] for s in on_p}
        wait_until(
            lambda: all(
                (c.sql("SELECT MAX(seq) FROM blocks WHERE scanner = ?", s)[0][0] or -1)
                > (before[s] or -1)
                for s in on_p
            ),
            30,
            "blocks committed by the new holder",
        )
    finally:
        c.procs[paused].send_signal(signal.SIGCONT)
    log = c.logs / f"{paused}.log"
    wait_until(
        lambda: "took over the stream" in log.read_text(errors="replace"),
        30,
        "the resumed aggregator noticing its leases were taken over",
    )
    for s in SCANNERS:
        wait_until(
            lambda s=s: c.finished_scans(s) >= SCANS,  # type: ignore[misc]
            120,
            f"{SCANS} finished scans of {s}",
        )
    assert_exactly_once(c)
    # the streams stay with the aggregator that took them over
    assert all(holders(c).get(s) == o_listen for s in on_p), holders(c)


def test_with_no_aggregator_answering_an_edge_alarms_once_and_slows_its_rounds(
    national: Cluster,
) -> None:
    """Every aggregator silent (the CIR they share is out, or the edge's own link): the
    edge goes round its endpoints more slowly each round, raising one
    ``central_failover`` and one ``central_unreachable`` per scanner, not one alarm per
    switch; once an aggregator answers, the streams go on."""
    c = national
    scanners = ["scanner1", "scanner2"]
    sims = c.start_sim(
        "--scan-lines", "300", "--scans", "1", "--line-rate", "400", "--seed", "29",
        scanners=len(scanners),
    )  # fmt: skip
    c.write_edge_config(sims)
    c.start_edge()  # neither aggregator runs yet

    def switches() -> dict[str, int]:
        st = c.edge_status().get("scanners", {})
        return {s: int(st.get(s, {}).get("failovers", 0)) for s in scanners}

    # past the alarm gate's 10 s: at the first round's pace (1.5 s) that is 8 switches
    # and a repeated central_failover; slowed (1.5, 1.5, 3, 3, 6 s …) it is 5
    wait_until(lambda: min(switches().values()) >= 5, 60, "five switches of each scanner")
    edge_log = (c.logs / "edge.log").read_text(errors="replace")
    c.start_central("central")
    c.start_central("central2")
    for s in scanners:
        wait_until(
            lambda s=s: c.finished_scans(s) >= 1,  # type: ignore[misc]
            60,
            f"the scan of {s}",
        )
    wait_until(
        lambda: len(c.alarms("central_unreachable")) >= len(scanners),
        30,
        "the edge's alarms, sent once an aggregator answers",
    )
    for kind in ("central_failover", "central_unreachable"):
        by = sorted(a[1] for a in c.alarms(kind))
        assert by == scanners, f"{kind}: {by}\n{edge_log[-3000:]}"
    # stored when an aggregator came, long after: each keeps when the edge raised it
    for ts_ns, details in c.sql(
        "SELECT ts_ns, details FROM alarms WHERE kind = ?", "central_unreachable"
    ):
        assert json.loads(details)["raised_ns"] < ts_ns - 5e9, (ts_ns, details)
    for s in scanners:
        emitted = c.emitted(s)
        committed = c.committed_keys(s)
        assert committed == emitted and len(emitted) == 300 + CALIB, s
