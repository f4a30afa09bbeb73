"""ATR workers on the CIR's queue: one killed mid-verdict, its scan judged once by another.

Every part is a real ``nii`` process, on the embedded CIR and on the national one
(PostgreSQL and an object store): central with ``atr_workers = "external"`` queues
each finished scan in the commit that finishes it; two ``nii atr worker`` processes
take them.  The test catches one worker holding a claim on a scan it has not stored
yet (SIGSTOP, then the claim row read back), kills it (SIGKILL), and checks that the
other worker takes the scan once the claim ran out, that every scan has exactly one
verdict in the CIR, and that central put exactly one ``atr.verdict`` per scan on the
feed.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
import zmq

from tests.system._cluster import Cluster, wait_until

pytestmark = pytest.mark.system

SCANS = 4
CLAIM_S = "2"


def _claimed(c: Cluster) -> tuple[int, str, int] | None:
    """(scan ref, worker, attempt) of a claim held on an item not done, if any."""
    rows = c.sql(
        "SELECT scan_ref, claimed_by, attempts FROM atr_work WHERE done_ns IS NULL "
        "AND claimed_by IS NOT NULL AND claimed_until_ns IS NOT NULL ORDER BY scan_ref"
    )
    return (int(rows[0][0]), str(rows[0][1]), int(rows[0][2])) if rows else None


def _kill_mid_verdict(c: Cluster, timeout: float) -> tuple[int, str]:
    """SIGKILL a worker that holds the claim of a scan whose verdict it has not stored:
    stopped first (SIGSTOP), so that the claim read back afterwards is still what it
    holds.  (scan ref, the killed worker's name)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = _claimed(c)
        if got is None:
            time.sleep(0.005)
            continue
        ref, worker, _ = got
        proc = c.procs[worker]
        proc.send_signal(signal.SIGSTOP)
        if _claimed(c) == got:
            c.kill(worker)  # SIGKILL: no clean-up, its claim simply runs out
            return ref, worker
        proc.send_signal(signal.SIGCONT)  # it finished that one meanwhile: the next
    raise AssertionError(f"no worker was caught holding a claim within {timeout:.0f} s")


def test_a_worker_killed_mid_verdict_leaves_its_scan_to_another(any_cluster: Cluster) -> None:
    c = any_cluster
    c.central_toml.write_text(c.central_toml.read_text() + 'atr_workers = "external"\n')
    c.start_central()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for topic in (b"atr.verdict", b"central.status"):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(c.feed)
    try:
        sims = c.start_sim(
            "--source",
            "physics",
            "--scan-lines",
            "1000",
            "--scans",
            str(SCANS),
            "--interval",
            "0.3",
            "--line-rate",
            "2500",
            "--seed",
            "48",
            scanners=1,
        )
        c.write_edge_config(sims)
        c.start_edge()
        # every finished scan is queued by the commit that finished it
        wait_until(
            lambda: len(c.sql("SELECT scan_ref FROM atr_work")) == SCANS,
            90,
            f"{SCANS} scans queued for the ATR",
        )
        refs = sorted(int(r[0]) for r in c.sql("SELECT scan_ref FROM atr_work"))
        assert c.sql("SELECT ref FROM verdicts") == []  # central judges nothing itself
        for name in ("w1", "w2"):
            c.start(name, "atr", "worker", "-c", str(c.central_toml), "--id", name,
                    "--claim-s", CLAIM_S)  # fmt: skip
        ref, killed = _kill_mid_verdict(c, 90)
        survivor = "w2" if killed == "w1" else "w1"
        wait_until(
            lambda: len(c.sql("SELECT scan_ref FROM atr_work WHERE done_ns IS NULL")) == 0,
            90,
            "every queued scan judged",
        )
        got = _feed_verdicts(sub, len(refs), 30)
    finally:
        sub.close(linger=0)
        ctx.term()

    verdicts = c.sql("SELECT ref, verdict FROM verdicts ORDER BY ref")
    assert [v[0] for v in verdicts] == refs, "exactly one verdict per scan"
    assert all(v[1] in ("green", "yellow", "red") for v in verdicts), verdicts
    (item,) = c.sql("SELECT claimed_by, attempts, error FROM atr_work WHERE scan_ref = ?", ref)
    assert item[0] == survivor and int(item[1]) == 2 and item[2] is None, item
    # the killed worker never stored (nor logged) a verdict of that scan; the other did, once
    logs = {w: (c.logs / f"{w}.log").read_text() for w in ("w1", "w2")}
    said = f"(ref {ref}):"
    assert said not in logs[killed]
    assert logs[survivor].count(said) == 1, logs[survivor]
    assert not c.alarms("atr_skipped")
    # central put each verdict on its feed once: the ones the CIR holds
    assert sorted(d["ref"] for d in got) == refs, [d["ref"] for d in got]
    stored = {r[0]: json.loads(r[1]) for r in c.sql("SELECT ref, doc FROM verdicts")}
    assert all(stored[d["ref"]] == d for d in got)
    assert c.procs["central"].poll() is None and c.procs[survivor].poll() is None


def _feed_verdicts(sub: zmq.Socket[bytes], n: int, timeout: float) -> list[dict[str, Any]]:
    """The ``atr.verdict`` documents on the feed until ``n`` distinct scans have one, and
    then until central's next status message (it publishes every 2 s): a second copy of
    any verdict would have come by then."""
    out: list[dict[str, Any]] = []
    end = time.monotonic() + timeout
    seen_all = False
    while time.monotonic() < end:
        if not sub.poll(500):
            continue
        topic, body = sub.recv_multipart()[:2]
        if topic == b"atr.verdict":
            out.append(json.loads(body))
            seen_all = len({d["ref"] for d in out}) >= n
        elif seen_all:
            return out
    raise AssertionError(f"timed out after {timeout:.0f} s: {len(out)} of {n} verdicts")
