"""Central on a full file system (issue 13, kind 4): it stays up, alarms, and resumes.

The CIR folder is a real tmpfs (root only; skipped elsewhere). While a real edge
streams a simulated scanner, the tmpfs is filled: central must stay up,
acknowledge nothing, alarm at once (log and live feed), and within seconds of
the space returning commit every line of every scan exactly once, the alarm
row with them.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.system._cluster import Cluster, wait_until
from tests.system._faults import Tmpfs, fill
from tests.system.test_live_path import CALIB, SCAN_LINES, assert_all_lines_in_cir, run_until_done

pytestmark = pytest.mark.system

SCANS = 3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster whose CIR folder is a 48 MiB tmpfs (root only: fails otherwise)."""
    with Tmpfs(tmp_path / "cir", 48 << 20):
        c = Cluster(tmp_path)
        try:
            c.enroll()
            yield c
        finally:
            c.stop_all()


def _blocks(c: Cluster) -> int:
    rows = c.sql("SELECT COUNT(*) FROM blocks")
    return int(rows[0][0]) if rows else 0


def test_central_survives_a_full_disk_and_loses_nothing(cluster: Cluster) -> None:
    sims = cluster.start_sim(
        "--scan-lines", str(SCAN_LINES), "--scans", str(SCANS), "--interval", "1.5",
        "--line-rate", "400", "--seed", "17",
        scanners=1,
    )  # fmt: skip
    cluster.start_central()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    feed = ctx.socket(zmq.SUB)
    feed.setsockopt(zmq.LINGER, 0)
    feed.setsockopt(zmq.SUBSCRIBE, b"alarm")
    feed.connect(cluster.feed)
    try:
        cluster.write_edge_config(sims)
        cluster.start_edge()
        run_until_done(cluster, ["scanner1"], 1)
        filler = fill(cluster.base / "cir")
        # the feed says so at once, while nothing can be written
        end = time.monotonic() + 20
        storage = None
        while storage is None and time.monotonic() < end:
            if feed.poll(500):
                _, doc = feed.recv_multipart()
                alarm = json.loads(doc)
                if alarm["kind"] == "storage":
                    storage = alarm
        assert storage is not None, "no storage alarm on the live feed"
        # the path that could not be written: the database or a blob, whichever failed
        cir_dir = cluster.base / "cir"
        path = Path(storage["details"]["path"])
        assert path == cir_dir or cir_dir in path.parents, storage
        assert 0 <= storage["details"]["free_bytes"] < (1 << 20)
        wait_until(
            lambda: len(cluster.emitted("scanner1")) == SCANS * (SCAN_LINES + CALIB),
            60,
            "the simulator to emit every scan",
        )
        assert cluster.procs["central"].poll() is None, "central exited on a full disk"
        held = _blocks(cluster)
        filler.unlink()
        wait_until(lambda: _blocks(cluster) > held, 5, "progress within 5 s of space returning")
        run_until_done(cluster, ["scanner1"], SCANS, timeout=60)
    finally:
        feed.close()
        ctx.term()
    assert_all_lines_in_cir(cluster, "scanner1", SCANS)
    assert cluster.alarms("storage"), "the storage alarm row is not in the CIR"
    assert cluster.alarms("storage_ok"), "no alarm said the CIR writes again"
    assert cluster.procs["central"].poll() is None
    log = (cluster.logs / "central.log").read_text()
    assert "no transaction is active" not in log and "this is a bug" not in log


def test_central_stops_cleanly_while_the_disk_is_full(cluster: Cluster) -> None:
    """SIGTERM while a commit waits for space: central ends at once, acknowledging
    nothing; started again once space is back, it commits every line."""
    sims = cluster.start_sim(
        "--scan-lines", str(SCAN_LINES), "--scans", "2", "--interval", "1.5",
        "--line-rate", "400", "--seed", "19", "--buffer", "60",
        scanners=1,
    )  # fmt: skip
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    run_until_done(cluster, ["scanner1"], 1)
    filler = fill(cluster.base / "cir")
    log = cluster.logs / "central.log"
    wait_until(lambda: "cannot write the CIR" in log.read_text(), 30, "central to find no space")
    t0 = time.monotonic()
    cluster.kill("central", signal.SIGTERM)
    assert time.monotonic() - t0 < 10, "central took long to stop"
    assert cluster.procs["central"].returncode == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert "Traceback" not in text and "this is a bug" not in text, text[-3000:]
    filler.unlink()
    cluster.start_central()
    run_until_done(cluster, ["scanner1"], 2, timeout=60)
    assert_all_lines_in_cir(cluster, "scanner1", 2)
