"""The live path end to end: simulator → driver → edge → sealed ZeroMQ → central → CIR.

Every part is a real ``nii`` process; lines travel over a real pty, TCP and
ZeroMQ. The simulators log a SHA-256 of every line they emit; the test decrypts
the CIR and compares, line by line, in order.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

import pytest

from central._reader import verify_stream
from tests.system._cluster import Cluster, wait_until

pytestmark = pytest.mark.system

SCAN_LINES = 300
CALIB = 16  # 8 dark + 8 air lines per scan


def assert_all_lines_in_cir(c: Cluster, scanner: str, scans: int) -> None:
    """Every emitted line is in the CIR once, bit-identical, in emission order."""
    emitted = c.emitted(scanner)
    assert len(emitted) == scans * (SCAN_LINES + CALIB), "simulator did not emit all lines"
    committed = c.committed_keys(scanner)
    assert len(committed) == len(set(committed)), "a line is in the CIR twice"
    missing = set(emitted) - set(committed)
    assert not missing, f"{len(missing)} emitted lines are missing from the CIR"
    assert committed == emitted, "CIR lines differ from the emitted ones or are out of order"
    cir = c.open_cir()
    try:
        rep = verify_stream(cir, scanner)
    finally:
        cir.close()
    assert rep.ok, rep.problems
    for scan_id, status, received, planned, gaps in c.scans(scanner):
        assert (status, received, planned, gaps) == ("complete", SCAN_LINES, SCAN_LINES, 0), (
            f"scan {scan_id}: {status} {received}/{planned} gaps {gaps}"
        )


def run_until_done(c: Cluster, scanners: list[str], scans: int, timeout: float = 90) -> None:
    for s in scanners:
        wait_until(
            lambda s=s: c.finished_scans(s) >= scans,  # type: ignore[misc]
            timeout,
            f"{scans} finished scans of {s} in the CIR",
        )


def test_two_scanners_every_line_bit_identical(any_cluster: Cluster) -> None:
    cluster = any_cluster
    sims = cluster.start_sim(
        "--scan-lines",
        str(SCAN_LINES),
        "--scans",
        "2",
        "--interval",
        "0.2",
        "--line-rate",
        "1000",
        "--seed",
        "11",
    )
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    run_until_done(cluster, ["scanner1", "scanner2"], 2)
    for s in ("scanner1", "scanner2"):
        assert_all_lines_in_cir(cluster, s, 2)
    # the control room's view: nii cir verify says the chains are intact
    r = cluster.nii("cir", "verify", "--config", str(cluster.central_toml))
    assert r.returncode == 0 and "all 2 chains verified" in r.stdout, r.stdout + r.stderr
    # a person can look at a scan, and take its arrays out
    r = cluster.nii("cir", "show", "--config", str(cluster.central_toml), "1", "--png", "s1.png")
    assert r.returncode == 0, r.stderr
    import cv2
    import numpy as np

    img = cv2.imread(str(cluster.base / "s1.png"))
    assert img is not None and img.std() > 5
    # at its true aspect ratio (as long against as high as it says), a caption band below
    import re

    length_m, height_m = map(float, re.findall(r"([\d.]+) m x ([\d.]+) m", r.stdout)[0])
    assert img.shape[0] > 1536 and f"{SCAN_LINES} lines x 1536 channels" in r.stdout
    assert abs(img.shape[1] / 1536 - length_m / height_m) < 0.01 * length_m / height_m
    r = cluster.nii("cir", "export", "--config", str(cluster.central_toml), "1", "--out", "s1.npz")
    assert r.returncode == 0, r.stderr
    with np.load(cluster.base / "s1.npz") as z:
        assert z["image_high"].shape == (1536, SCAN_LINES) and z["dark_low"].shape == (1536, 8)
        raw_high = z["image_high"].T
    # and exchange it as a UFF-style package that carries the evidence it came from
    from central.products import read_uff

    r = cluster.nii("cir", "uff", "--config", str(cluster.central_toml), "1", "--out", "s1.uff")
    assert r.returncode == 0, r.stderr
    pkg = read_uff(cluster.base / "s1.uff")
    assert np.array_equal(pkg.arrays["raw_high"], raw_high)
    assert pkg.arrays["attenuation_low"].shape == (SCAN_LINES, 1536)
    assert (
        pkg.metadata["evidence"]["first_seq"] == 0 and pkg.metadata["scan"]["status"] == "complete"
    )


def test_faulty_links_resynchronise_and_lose_nothing(cluster: Cluster) -> None:
    sims = cluster.start_sim(
        "--scan-lines",
        str(SCAN_LINES),
        "--scans",
        "2",
        "--interval",
        "0.2",
        "--line-rate",
        "1000",
        "--seed",
        "12",
        "--corrupt",
        "0.01",
        "--drop",
        "0.01",
        "--serial-corrupt",
        "0.1",
        scanners=1,
    )
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    run_until_done(cluster, ["scanner1"], 2)
    assert_all_lines_in_cir(cluster, "scanner1", 2)
    # the driver's counters are exposed in the edge's status file
    emitted = len(cluster.emitted("scanner1"))

    def counted() -> dict[str, int] | None:
        sc = cluster.edge_status().get("scanners", {}).get("scanner1")
        return sc["link"] if sc and sc["link"]["packets"] >= emitted else None

    link = wait_until(counted, 10, "the edge status file to count every packet")
    assert link["bad_crc"] + link["bad_header"] > 0, link
    assert link["resumes"] > 0, link


def data_blocks(c: Cluster, scanner: str) -> int:
    rows = c.sql("SELECT COUNT(*) FROM blocks WHERE kind = 'data' AND scanner = ?", scanner)
    return int(rows[0][0]) if rows else 0


@pytest.mark.parametrize("victim", ["central", "edge"])
def test_process_killed_mid_scan_loses_nothing(cluster: Cluster, victim: str) -> None:
    """SIGKILL the central aggregator or the edge daemon mid-scan, restart it: the CIR
    still ends up with every line once."""
    sims = cluster.start_sim(
        "--scan-lines", str(SCAN_LINES), "--scans", "2", "--interval", "0.3",
        "--line-rate", "300", "--seed", "13" if victim == "central" else "14",
    )  # fmt: skip
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    # scanner1's own blocks: the other scanner may be well into its scan before scanner1
    # is armed, and a scanner that was never armed has nothing to go on emitting
    wait_until(lambda: data_blocks(cluster, "scanner1") > 5, 30, "scanner1's first data blocks")
    cluster.kill(victim, signal.SIGKILL)
    before = len(cluster.emitted("scanner1"))
    # 600 lines take 2 s: on a loaded machine the first blocks may reach the CIR when
    # fewer than 100 are left, so "goes on" means 100 more lines or all of them
    total = 2 * (SCAN_LINES + CALIB)
    wait_until(
        lambda: len(cluster.emitted("scanner1")) >= min(before + 100, total),
        20,
        f"the scanner to go on emitting while the {victim} is down",
    )
    cluster.start_central() if victim == "central" else cluster.start_edge()
    run_until_done(cluster, ["scanner1", "scanner2"], 2)
    for s in ("scanner1", "scanner2"):
        assert_all_lines_in_cir(cluster, s, 2)


def test_full_spool_refuses_new_scans_and_loses_nothing(cluster: Cluster) -> None:
    """Central down: the spool fills, alarms, refuses new scans, pauses the data link;
    central back: it drains, the scanner is re-armed, and every line arrives."""
    sims = cluster.start_sim(
        "--scan-lines",
        str(SCAN_LINES),
        "--scans",
        "2",
        "--interval",
        "0.3",
        "--line-rate",
        "300",
        "--seed",
        "15",
        "--buffer",
        "60",
        scanners=1,
    )
    cluster.start_central()
    cluster.write_edge_config(sims, spool_max_mb=0.6, spool_high_water=0.5)
    cluster.start_edge()
    wait_until(
        lambda: "welcomed" in (cluster.logs / "edge.log").read_text(), 20, "the edge to be welcomed"
    )
    cluster.kill("central", signal.SIGKILL)
    edge_log = cluster.logs / "edge.log"
    wait_until(
        lambda: "spool full: pausing the data link" in edge_log.read_text(), 30, "the spool to fill"
    )
    assert "ALARM spool_high" in edge_log.read_text()
    spool = cluster.edge_status()["scanners"]["scanner1"]
    assert spool["spool_bytes"] <= 0.6 * 1024 * 1024 + 200_000  # bounded (one block over)
    cluster.start_central()
    run_until_done(cluster, ["scanner1"], 2)
    assert_all_lines_in_cir(cluster, "scanner1", 2)
    assert cluster.alarms("spool_high"), "the spool alarm did not reach the CIR"
    assert "disarm" in edge_log.read_text()


def test_control_room_tail_shows_scans_as_they_happen(cluster: Cluster) -> None:
    """`nii control-room tail --json` is how a control room follows the scanners live."""
    cluster.start_central()
    tail = cluster.start(
        "tail",
        "control-room",
        "tail",
        "--feed",
        cluster.feed,
        "--json",
        "--no-previews",
        "--status",
    )
    log = cluster.logs / "tail.log"
    # PUB/SUB drops what is published before the subscriber joined: wait until the feed
    # reaches it (central's status comes every 2 s)
    wait_until(lambda: "central.status" in log.read_text(), 20, "central's status on the feed")
    sims = cluster.start_sim(
        "--scan-lines",
        str(SCAN_LINES),
        "--scans",
        "1",
        "--line-rate",
        "1000",
        "--seed",
        "16",
        scanners=1,
    )
    cluster.write_edge_config(sims)
    cluster.start_edge()
    wait_until(lambda: "scan.finished" in log.read_text(), 60, "the scan on the feed")
    tail.terminate()
    assert tail.wait(timeout=10) == 0
    import json

    events = [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]
    events = [e for e in events if e["topic"].startswith("scan.")]
    topics = [e["topic"] for e in events]
    assert topics[:2] == ["scan.started", "scan.finished"], topics
    assert events[1]["status"] == "complete" and events[1]["lines_received"] == SCAN_LINES


def test_the_national_cirs_database_restarting_mid_scan_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, s3_server: Any, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL stops under a running central mid-scan and comes back on its address:
    central alarms and retries, the edges keep their blocks, and the CIR ends up with
    every line once, bit-identical."""
    import shutil
    import tempfile
    from pathlib import Path

    from nii._local_servers import start_postgres

    base = Path(tempfile.mkdtemp(prefix="nii-test-pg-live-"))
    pg = start_postgres(base)
    c = Cluster(tmp_path_factory.mktemp("national"), database=pg.url, s3=s3_server)
    try:
        c.enroll()
        sims = c.start_sim(
            "--scan-lines", str(SCAN_LINES), "--scans", "2", "--interval", "0.3",
            "--line-rate", "300", "--seed", "15",
        )  # fmt: skip
        c.start_central()
        c.write_edge_config(sims)
        c.start_edge()
        wait_until(lambda: data_blocks(c, "scanner1") > 5, 30, "scanner1's first data blocks")
        pg.stop()
        before = len(c.emitted("scanner1"))
        total = 2 * (SCAN_LINES + CALIB)
        wait_until(
            lambda: len(c.emitted("scanner1")) >= min(before + 100, total),
            20,
            "the scanner to go on emitting while the database is down",
        )
        wait_until(
            lambda: "cannot write the CIR's database" in (c.logs / "central.log").read_text(),
            20,
            "central to say that the database is gone",
        )
        pg = start_postgres(base, port=pg.extra["port"])
        run_until_done(c, ["scanner1", "scanner2"], 2)
        for s in ("scanner1", "scanner2"):
            assert_all_lines_in_cir(c, s, 2)
        # the live ATR tried again: every scan has its verdict, those that finished while
        # the database was down too
        wait_until(
            lambda: len(c.sql("SELECT ref FROM verdicts")) == 4, 90, "a live verdict per scan"
        )
        assert not [a for a in c.sql("SELECT kind FROM alarms") if a[0] == "atr_skipped"]
        assert c.procs["central"].poll() is None, "central kept running"
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        c.stop_all()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_paused_database_does_not_stop_central_from_saying_so(
    tmp_path_factory: pytest.TempPathFactory, s3_server: Any, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL paused mid-scan (SIGSTOP: its connections stay open, nothing answers):
    central's event loop must not wait on it. It says within seconds that the CIR's
    storage does not answer, while the server is still paused, and once the server
    goes on every line is in the CIR once."""
    import os
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from nii._local_servers import start_postgres

    base = Path(tempfile.mkdtemp(prefix="nii-test-pg-paused-"))
    pg = start_postgres(base)
    c = Cluster(tmp_path_factory.mktemp("national-paused"), database=pg.url, s3=s3_server)
    stopped: list[int] = []
    try:
        c.enroll()
        sims = c.start_sim(
            "--scan-lines", str(SCAN_LINES), "--scans", "2", "--interval", "0.3",
            "--line-rate", "300", "--seed", "16",
        )  # fmt: skip
        c.start_central()
        c.write_edge_config(sims)
        c.start_edge()
        wait_until(lambda: data_blocks(c, "scanner1") > 5, 30, "scanner1's first data blocks")
        top = pg.procs[0].pid
        kids = subprocess.run(["pgrep", "-P", str(top)], capture_output=True, text=True)
        stopped = [top, *(int(x) for x in kids.stdout.split())]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        log = c.logs / "central.log"
        # whichever notices first: the stuck commit, or a read past its deadline
        said = ("a commit has waited", "did not answer within")
        wait_until(
            lambda: any(x in log.read_text(errors="replace") for x in said),
            20,
            "central to say, with the database still paused, that its storage hangs",
        )
        assert c.procs["central"].poll() is None
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped = []
        run_until_done(c, ["scanner1", "scanner2"], 2)
        for s in ("scanner1", "scanner2"):
            assert_all_lines_in_cir(c, s, 2)
        assert wait_until(lambda: c.alarms("storage"), 20, "the storage alarm in the CIR")
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        c.stop_all()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
