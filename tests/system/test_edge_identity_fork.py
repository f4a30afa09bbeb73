"""The edge after a chain fork and with crossed serial cables, through real processes.

Field test (2026-11-30): a fork left a scanner refused for ever, its alarms
stuck at the edge; a serial cable moved to another scanner was used to arm it.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.system._cluster import Cluster, wait_until

pytestmark = pytest.mark.system

SIM_ARGS = ("--scan-lines", "120", "--scans", "0", "--interval", "0.3", "--line-rate", "600")


def spool_head(state_dir: Path, scanner: str = "scanner1") -> int:
    f = state_dir / f"{scanner}.spool.sqlite"
    if not f.exists():
        return -1
    db = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT v FROM state WHERE k = 'head_seq'").fetchone()
    except sqlite3.Error:
        return -1
    finally:
        db.close()
    return -1 if row is None else int(row[0])


def cir_head(c: Cluster, scanner: str = "scanner1") -> int:
    rows = c.sql("SELECT COALESCE(MAX(seq), -1) FROM blocks WHERE scanner = ?", scanner)
    return int(rows[0][0]) if rows else -1


def test_crossed_serial_cables_arm_nothing_and_are_alarmed(cluster: Cluster) -> None:
    sims = cluster.start_sim(*SIM_ARGS, "--seed", "31", scanners=2)
    cluster.start_central()
    crossed = [dict(sims[0], serial=sims[1]["serial"]), dict(sims[1], serial=sims[0]["serial"])]
    cluster.write_edge_config(crossed)
    cluster.start_edge()
    wait_until(lambda: len(cluster.alarms("scanner_mismatch")) >= 2, 30, "scanner_mismatch x2")
    mism = {s: m for _, s, m in cluster.alarms("scanner_mismatch")}
    assert set(mism) == {"scanner1", "scanner2"}
    assert "check the serial cable" in mism["scanner1"]
    edge_log = cluster.logs / "edge.log"

    def both_down() -> bool:
        # the status file is written every second: one written just before the mismatch
        # was found may still say the link is up
        st = cluster.edge_status().get("scanners", {})
        return not any(st.get(s, {}).get("control_up") for s in ("scanner1", "scanner2"))

    wait_until(both_down, 5, "the status file to show both control links down")
    assert "scanner armed" not in edge_log.read_text()
    assert cluster.finished_scans("scanner1") == 0 and cluster.finished_scans("scanner2") == 0
    # one alarm per scanner, not one per reopen
    wait_until(lambda: edge_log.read_text().count("reopening") >= 6, 20, "a few reopen tries")
    assert len(cluster.alarms("scanner_mismatch")) == 2
    # the cables put right: armed, scanning, and no scanner_replaced
    cluster.kill("edge", signal.SIGTERM)
    cluster.write_edge_config(sims)
    cluster.start_edge()
    wait_until(lambda: cluster.finished_scans("scanner1") >= 1, 40, "a scan of scanner1")
    wait_until(lambda: cluster.finished_scans("scanner2") >= 1, 40, "a scan of scanner2")
    assert not cluster.alarms("scanner_replaced")


def test_a_chain_fork_quarantines_alarms_and_the_scanner_goes_on(cluster: Cluster) -> None:
    """Two copies of one edge state seal different blocks at the same sequence numbers
    (as two edge processes of one id did in the field); the second to reach central
    finds the CIR's chain differs: it quarantines its blocks, says so, and goes on."""
    sims = cluster.start_sim(*SIM_ARGS, "--seed", "37", scanners=1)
    state = cluster.base / "edge"
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    wait_until(lambda: cluster.finished_scans("scanner1") >= 1, 40, "a first scan in the CIR")
    cluster.kill("central", signal.SIGTERM)
    cluster.kill("edge", signal.SIGTERM)
    copy_b = cluster.base / "edge-b"
    shutil.copytree(state, copy_b)
    # A seals on without central
    cluster.start_edge()
    base = spool_head(state)
    wait_until(lambda: spool_head(state) >= base + 5, 30, "edge A to seal blocks")
    cluster.kill("edge", signal.SIGTERM)
    head_a = spool_head(state)
    state.rename(cluster.base / "edge-a")
    # B, from the same copy, seals other blocks at the same sequence numbers, and more
    shutil.copytree(copy_b, state)
    cluster.start_edge()
    wait_until(lambda: spool_head(state) >= head_a + 60, 60, "edge B to seal past edge A")
    cluster.kill("edge", signal.SIGTERM)
    state.rename(cluster.base / "edge-b2")
    # A reaches central first
    (cluster.base / "edge-a").rename(state)
    cluster.start_central()
    # the scanner pauses while A uploads: A seals nothing past B (on a slow machine it
    # otherwise went on sealing past B's head before it was stopped)
    cluster.procs["sim"].send_signal(signal.SIGSTOP)
    try:
        cluster.start_edge()
        wait_until(lambda: cir_head(cluster) >= head_a, 30, "edge A's blocks in the CIR")
        cluster.kill("edge", signal.SIGTERM)
    finally:
        cluster.procs["sim"].send_signal(signal.SIGCONT)
    c_head = cir_head(cluster)
    state.rename(cluster.base / "edge-a2")
    (cluster.base / "edge-b2").rename(state)
    assert spool_head(state) > c_head, "edge B must be past the CIR for a fork to show"
    scans = cluster.finished_scans("scanner1")
    cluster.start_edge()
    wait_until(lambda: cluster.alarms("chain_fork"), 30, "chain_fork at central")
    (fork,) = cluster.alarms("chain_fork")
    assert "quarantined" in fork[2]
    st = wait_until(
        lambda: cluster.edge_status().get("scanners", {}).get("scanner1", {}).get("quarantined"),
        10,
        "quarantined in status.json",
    )
    assert st > 0
    # the quarantined blocks are in the spool file, not sent
    db = sqlite3.connect(state / "scanner1.spool.sqlite")
    assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == st
    db.close()
    # not refused: new scans reach the CIR, chained on its head
    wait_until(lambda: cluster.finished_scans("scanner1") > scans, 40, "a scan after the fork")
    assert cluster.edge_status()["scanners"]["scanner1"]["refused"] is None
    assert len(cluster.alarms("chain_fork")) == 1
    assert not cluster.alarms("block_rejected")


def test_a_scanner_disarmed_behind_the_edges_back_is_re_armed(cluster: Cluster) -> None:
    """Field test: a scanner disarmed by another channel stayed idle for good while its
    own channel said "ready, scanner reports idle"."""
    sims = cluster.start_sim(*SIM_ARGS, "--seed", "41", scanners=1)
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    wait_until(lambda: cluster.finished_scans("scanner1") >= 1, 40, "a first scan in the CIR")
    r = cluster.nii(
        "sim",
        "inject",
        "--status-file",
        str(cluster.status_file),
        "--scanner",
        "scanner1",
        "disarm",
    )
    assert r.returncode == 0, r.stderr
    (alarm,) = wait_until(lambda: cluster.alarms("scanner_disarmed"), 20, "scanner_disarmed")
    assert "scanner1 is disarmed but should be armed: re-arming" in alarm[2]
    n = cluster.finished_scans("scanner1")
    wait_until(lambda: cluster.finished_scans("scanner1") > n + 1, 40, "scans after the re-arm")
    assert len(cluster.alarms("scanner_disarmed")) == 1
