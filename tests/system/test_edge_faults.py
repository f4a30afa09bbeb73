"""Faults at the edge through real processes: a full disk, a serial device that vanishes.

Issue 13, kinds 2 and 4. Every part is a real ``nii`` process; the edge's
``state_dir`` lies on its own small tmpfs, and the simulator's serial device is
unplugged and plugged back through ``nii sim inject``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.net import free_port
from tests.system._cluster import Cluster, wait_until
from tests.system._faults import Tmpfs, fill

pytestmark = pytest.mark.system

SCAN_LINES = 300
CALIB = 16  # 8 dark + 8 air lines per scan


@contextlib.contextmanager
def small_tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` on ``path`` for the block (root only: the test fails
    otherwise, it never skips)."""
    with Tmpfs(path, size_bytes) as fs:
        yield fs.path


def lines_accounted(c: Cluster, scanner: str, scans: int) -> None:
    """Every emitted line is in the CIR exactly once, or inside a GAP with data_lost."""
    emitted = c.emitted(scanner)
    assert len(emitted) == scans * (SCAN_LINES + CALIB), "the simulator did not emit all lines"
    committed = c.committed_keys(scanner)
    assert len(committed) == len(set(committed)), "a line is in the CIR twice"
    missing = set(emitted) - set(committed)
    if missing:
        assert c.alarms("data_lost"), f"{len(missing)} lines missing without a data_lost alarm"
        gaps = c.sql("SELECT COUNT(*) FROM blocks WHERE scanner = ? AND kind = 'gap'", scanner)
        assert gaps and gaps[0][0] > 0, f"{len(missing)} lines missing without a GAP block"


@pytest.mark.parametrize(("buffer_s", "held_lines"), [(60, 200), (1, 600)])
def test_full_disk_pauses_the_edge_which_resumes_by_itself(
    cluster: Cluster, buffer_s: int, held_lines: int
) -> None:
    """state_dir full while scans run: the edge stays up, alarms storage_full with the
    path, holds the data link, and once space is back every line reaches the CIR; what
    the scanner's replay buffer no longer held (a 1 s buffer, 3 s held) is a GAP with
    data_lost instead."""
    with small_tmpfs(cluster.base / "edge", 24 << 20) as state:
        sims = cluster.start_sim(
            "--scan-lines",
            str(SCAN_LINES),
            "--scans",
            "3",
            "--interval",
            "0.5",
            "--line-rate",
            "200",
            "--seed",
            "21",
            "--buffer",
            str(buffer_s),
            scanners=1,
        )
        cluster.start_central()
        cluster.write_edge_config(sims)
        cluster.start_edge()
        edge_log = cluster.logs / "edge.log"
        wait_until(lambda: "welcomed" in edge_log.read_text(), 20, "the edge to be welcomed")
        wait_until(lambda: cluster.committed_keys("scanner1"), 20, "the first lines in the CIR")
        # central away: the spool must grow, and the disk is full
        cluster.kill("central", signal.SIGKILL)
        filler = fill(state)
        wait_until(
            lambda: "ALARM storage_full" in edge_log.read_text(), 30, "the storage_full alarm"
        )
        text = edge_log.read_text()
        assert "cannot rollback" not in text and "Traceback" not in text
        assert str(state) in text  # the alarm names the path
        # the scanner goes on scanning into its replay buffer while the edge holds
        emitted = len(cluster.emitted("scanner1"))
        wait_until(
            lambda: len(cluster.emitted("scanner1")) >= emitted + held_lines,
            20,
            f"the scanner to emit {held_lines} more lines while the spool is full",
        )
        assert "ALARM storage_ok" not in edge_log.read_text()
        assert cluster.procs["edge"].poll() is None, "the edge exited on a full disk"
        filler.unlink()
        wait_until(lambda: "ALARM storage_ok" in edge_log.read_text(), 10, "the spool to write")
        cluster.start_central()
        wait_until(
            lambda: cluster.finished_scans("scanner1") >= 3, 90, "3 finished scans in the CIR"
        )
        wait_until(
            lambda: (
                len(cluster.committed_keys("scanner1")) >= 3 * (SCAN_LINES + CALIB)
                or cluster.alarms("data_lost")
            ),
            30,
            "every line in the CIR",
        )
        lines_accounted(cluster, "scanner1", 3)
        missing = set(cluster.emitted("scanner1")) - set(cluster.committed_keys("scanner1"))
        if buffer_s >= 60:
            assert not missing and not cluster.alarms("data_lost")
        else:
            assert missing and cluster.alarms("data_lost"), "the scanner could not replay all"
        wait_until(lambda: cluster.alarms("storage_full"), 10, "storage_full at central")
        assert cluster.procs["edge"].poll() is None, "the edge exited"
        assert "crashed" not in edge_log.read_text()
        cluster.stop_all()


def test_serial_device_unplugged_and_back(cluster: Cluster) -> None:
    """The scanner's serial device vanishes for 3 s: control_link_down, then _up, at
    central; the edge reopens the path, identifies and arms the scanner again."""
    sims = cluster.start_sim(
        "--scan-lines",
        str(SCAN_LINES),
        "--scans",
        "0",
        "--interval",
        "1",
        "--line-rate",
        "300",
        "--seed",
        "23",
        scanners=1,
    )
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    edge_log = cluster.logs / "edge.log"
    wait_until(lambda: "scanner armed" in edge_log.read_text(), 20, "the scanner to be armed")
    wait_until(lambda: "welcomed" in edge_log.read_text(), 20, "the edge to be welcomed")
    r = cluster.nii(
        "sim",
        "inject",
        "--status-file",
        str(cluster.status_file),
        "--scanner",
        "scanner1",
        "unplug",
        "--value",
        "3",
    )
    assert r.returncode == 0, r.stderr
    wait_until(lambda: cluster.alarms("control_link_down"), 15, "control_link_down at central")
    wait_until(lambda: cluster.alarms("control_link_up"), 20, "control_link_up at central")
    wait_until(lambda: edge_log.read_text().count("scanner armed") >= 2, 10, "the scanner re-armed")
    wait_until(
        lambda: cluster.edge_status().get("scanners", {}).get("scanner1", {}).get("control_up"),
        5,
        "control_up in status.json",
    )
    assert len(cluster.alarms("control_link_down")) == 1, "one alarm per outage"
    assert cluster.procs["edge"].poll() is None
    # scans go on after the replug
    n = cluster.finished_scans("scanner1")
    wait_until(lambda: cluster.finished_scans("scanner1") > n, 20, "a scan after the replug")
    assert os.path.exists(sims[0]["serial"])


def test_scanner_restarted_is_a_new_session_at_the_edge(cluster: Cluster) -> None:
    """The scanner is killed and started again on the same ports (a power cycle): the
    edge alarms scanner_restarted, stores the new session with its link position, and
    the new session's scans reach the CIR; nothing of it is taken for the old one."""
    port = free_port()
    args = (
        "--scan-lines",
        str(SCAN_LINES),
        "--scans",
        "0",
        "--interval",
        "0.5",
        "--line-rate",
        "400",
        "--data-port-base",
        str(port),
        "--buffer",
        "30",
    )
    sims = cluster.start_sim(*args, "--seed", "31", scanners=1)
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    wait_until(lambda: cluster.finished_scans("scanner1") >= 2, 30, "2 scans in the CIR")
    cluster.kill("sim", signal.SIGKILL)
    cluster.start_sim(*args, "--seed", "32", scanners=1)
    wait_until(lambda: cluster.alarms("scanner_restarted"), 30, "scanner_restarted at central")
    n = cluster.finished_scans("scanner1")
    wait_until(
        lambda: cluster.finished_scans("scanner1") >= n + 2, 30, "2 scans of the new session"
    )
    spool = sqlite3.connect(cluster.base / "edge" / "scanner1.spool.sqlite")
    try:
        state = dict(spool.execute("SELECT k, v FROM state").fetchall())
    finally:
        spool.close()
    (_, _, message), *_ = cluster.alarms("scanner_restarted")
    assert state["link_session"] and state["link_session"] in message
    assert cluster.procs["edge"].poll() is None
    edge_log = (cluster.logs / "edge.log").read_text()
    assert "crashed" not in edge_log and "Traceback" not in edge_log


def test_systemd_hears_ready_only_once_the_scanner_answered(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scanner's device is absent when the edge starts: the edge stays up, feeds the
    watchdog, says in STATUS= what it waits for, and sends READY=1 once it answered."""
    sock_path = cluster.base / "notify.sock"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(sock_path))
    manager.settimeout(0.2)
    got: list[str] = []

    def heard(what: str) -> bool:
        while True:
            try:
                got.extend(manager.recv(4096).decode().splitlines())
            except TimeoutError:
                break
        return any(what in g for g in got)

    try:
        port = free_port()
        serial = cluster.base / "sim" / "scanner1.tty"
        cluster.write_edge_config(
            [
                {
                    "name": "scanner1",
                    "serial": str(serial),
                    "data_host": "127.0.0.1",
                    "data_port": port,
                }
            ]
        )
        cluster.start_central()
        monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
        monkeypatch.setenv("WATCHDOG_USEC", "2000000")
        cluster.start_edge()
        monkeypatch.delenv("NOTIFY_SOCKET")
        monkeypatch.delenv("WATCHDOG_USEC")
        wait_until(lambda: heard("STATUS=waiting for scanner1"), 20, "STATUS=waiting for …")
        wait_until(
            lambda: heard("WATCHDOG=1") and got.count("WATCHDOG=1") >= 3,
            10,
            "watchdog pings while waiting",
        )
        assert "READY=1" not in got
        wait_until(
            lambda: heard(
                f"STATUS=waiting for scanner1: cannot open the scanner's serial device {serial}"
            ),
            10,
            "STATUS= naming the absent device",
        )
        assert cluster.procs["edge"].poll() is None
        cluster.start_sim("--data-port-base", str(port), "--scans", "0", scanners=1)
        wait_until(lambda: heard("READY=1"), 20, "READY=1 once the scanner answered")
        wait_until(lambda: heard("STATUS=serving 1 scanner"), 5, "STATUS=serving 1 scanner")
        wait_until(lambda: cluster.alarms("control_link_up"), 10, "control_link_up at central")
        assert len(cluster.alarms("control_link_down")) == 1
    finally:
        manager.close()


def test_a_scan_whose_lines_change_shape_is_refused_once_and_not_complete(
    cluster: Cluster,
) -> None:
    """Half-way through a scan the scanner's lines lose channels: the edge refuses the
    rest of the scan as GAP blocks (cause violation, one a second at most) with one
    protocol_violation alarm; the lines before it are in the CIR, and the scan is not
    stored as complete."""
    sims = cluster.start_sim(
        "--scan-lines", "3000", "--scans", "1", "--line-rate", "1000", "--seed", "41", scanners=1
    )
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    wait_until(lambda: len(cluster.committed_keys("scanner1")) > 200, 30, "200 lines in the CIR")
    r = cluster.nii(
        "sim", "inject", "--status-file", str(cluster.status_file), "--scanner", "scanner1",
        "channels_change",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    wait_until(lambda: cluster.finished_scans("scanner1") >= 1, 30, "the scan closed in the CIR")
    wait_until(lambda: cluster.alarms("protocol_violation"), 10, "protocol_violation at central")
    edge_alarms = [
        ln
        for ln in (cluster.logs / "edge.log").read_text().splitlines()
        if "ALARM protocol_v" in ln
    ]
    assert len(edge_alarms) == 1 and "channels" in edge_alarms[0], edge_alarms
    gaps = cluster.sql("SELECT COUNT(*) FROM blocks WHERE scanner = 'scanner1' AND kind = 'gap'")
    assert 1 <= gaps[0][0] <= 5  # one per second of refused lines at most
    (scan,) = cluster.scans("scanner1")
    assert scan[1] != "complete", scan
    committed = cluster.committed_keys("scanner1")  # before the emit log: see below
    emitted = cluster.emitted("scanner1")
    assert len(committed) == len(set(committed)) and set(committed) <= set(emitted)
    assert 200 < len(committed) < len(emitted)


def test_a_data_link_that_only_corrupts_is_alarmed_within_seconds(cluster: Cluster) -> None:
    """Every packet arrives damaged for a while: the link keeps asking again (right),
    and the control room hears of it at once (data_link_damaged), and again when the
    packets are whole (data_link_ok); nothing damaged reaches the CIR."""
    sims = cluster.start_sim(
        "--scan-lines", "300", "--line-rate", "1000", "--interval", "0.3", "--seed", "43",
        scanners=1,
    )  # fmt: skip
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    wait_until(lambda: cluster.finished_scans("scanner1") >= 1, 30, "a first scan in the CIR")
    r = cluster.nii(
        "sim", "inject", "--status-file", str(cluster.status_file), "--scanner", "scanner1",
        "corrupt", "--value", "8000",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    wait_until(lambda: cluster.alarms("data_link_damaged"), 20, "data_link_damaged at central")
    wait_until(lambda: cluster.alarms("data_link_ok"), 60, "data_link_ok once packets are whole")
    # the CIR first: the scanner goes on scanning, and a line read from the CIR was
    # emitted (and logged) before it, while the emit log read first may miss the newest
    committed = cluster.committed_keys("scanner1")
    emitted = set(cluster.emitted("scanner1"))
    assert len(committed) == len(set(committed)) and set(committed) <= emitted
