"""Scans that lose their end, or fall wholly into a GAP (issue 13, kind 10).

The edge is killed while a scanner with a short replay buffer goes on scanning,
and comes back only after several scans have passed out of the buffer. The scan
that was running loses its end record; the scans in between reach the edge not
at all. Central must close the first as ``incomplete``, give every swallowed
scan id a ``lost`` row, alarm both, and leave no scan ``scanning`` for ever.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system._cluster import Cluster, wait_until

pytestmark = pytest.mark.system

SCAN_LINES = 400  # a second a scan at 400 lines/s: the kill lands inside one
CALIB = 16
SCANS = 8


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.enroll()
    yield c
    c.stop_all()


def _scan_ids_emitted(c: Cluster) -> set[int]:
    return {e[0] for e in c.emitted("scanner1")}


def test_scans_lost_in_a_gap_are_closed_and_named(cluster: Cluster) -> None:
    sims = cluster.start_sim(
        "--scan-lines", str(SCAN_LINES), "--scans", str(SCANS), "--interval", "0.3",
        "--line-rate", "400", "--seed", "23", "--buffer", "0.3",
        scanners=1,
    )  # fmt: skip
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    wait_until(lambda: cluster.finished_scans("scanner1") >= 1, 60, "the first scan in the CIR")
    # kill the edge in the middle of a scan, and keep it away for three more scans.
    # The kill waits for central to hold the next scan's row: a scan whose every
    # block is still in the edge when it dies has no row yet and is rightly "lost".
    cut = max(_scan_ids_emitted(cluster))

    def _next_scan_open() -> int | None:
        open_ = [s[0] for s in cluster.scans("scanner1") if s[0] > cut and s[1] == "scanning"]
        return open_[0] if open_ else None

    wait_until(lambda: _next_scan_open() is not None, 30, "central to open the next scan")
    cluster.kill("edge", signal.SIGKILL)
    running = max(_scan_ids_emitted(cluster))
    opened = _next_scan_open()
    assert opened == running, f"the scan ended before the kill: {cluster.scans('scanner1')}"
    wait_until(
        lambda: max(_scan_ids_emitted(cluster)) >= running + 4, 60, "four scans without the edge"
    )
    cluster.start_edge()
    wait_until(
        lambda: len(cluster.emitted("scanner1")) == SCANS * (SCAN_LINES + CALIB),
        90,
        "the simulator to emit every scan",
    )
    wait_until(
        lambda: (
            {s[0] for s in cluster.scans("scanner1")} >= set(range(1, SCANS + 1))
            and cluster.scans("scanner1")[-1][1] != "scanning"
        ),
        60,
        "a row for every scan id, the last one finished",
    )
    rows = {s[0]: s for s in cluster.scans("scanner1")}
    status = {i: rows[i][1] for i in rows}
    assert "scanning" not in status.values(), status
    assert status[SCANS] == "complete", status
    assert status[running] == "incomplete", status  # its end record fell into the GAP
    lost = [i for i, st in status.items() if st == "lost"]
    assert lost, f"no scan id was named lost: {status}"
    assert all(running < i < SCANS for i in lost), status
    lost_alarms = [m for _, _, m in cluster.alarms("scans_lost")]
    assert lost_alarms and any(str(lost[0]) in m for m in lost_alarms), lost_alarms
    assert cluster.alarms("scan_incomplete") and cluster.alarms("data_lost")
    for i, (_, st, received, planned, gaps) in rows.items():
        if st == "complete":
            assert received == planned == SCAN_LINES and gaps == 0, rows[i]
    assert cluster.procs["central"].poll() is None
