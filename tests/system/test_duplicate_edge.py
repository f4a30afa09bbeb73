"""One writer per scanner stream: a second process of an edge identity is refused by central.

Two edge processes with one ``[edge] id`` and key but separate state directories
(a copied configuration, two boxes given one key) escape the state-directory
lock. Before, the second took the stream's chain head from the CIR, sealed
blocks of its own and forked the chain; the first was refused for ever and its
scanner's scans and alarms stopped reaching central. Now central refuses the
newcomer's HELLO with ``duplicate_edge`` while the first is alive, and the first
goes on losing nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system._cluster import Cluster, wait_until

pytestmark = pytest.mark.system


def test_a_second_process_of_the_same_edge_is_refused_and_the_first_goes_on(
    cluster: Cluster,
) -> None:
    sims = cluster.start_sim(
        "--scan-lines", "200", "--line-rate", "1000", "--interval", "0.3", scanners=1
    )  # fmt: skip
    # the second process streams another scanner that the same configuration calls scanner1
    other = cluster.start_sim(
        "--scan-lines", "200", "--line-rate", "1000", "--interval", "0.3", "--seed", "9",
        scanners=1, name="sim2",
    )  # fmt: skip
    cluster.start_central()
    cluster.write_edge_config(sims)
    cluster.start_edge()
    wait_until(lambda: cluster.finished_scans("scanner1") >= 1, 60, "a first scan in the CIR")

    twin = cluster.base / "edge-twin.toml"
    cluster.write_edge_config(other)
    text = cluster.edge_toml.read_text().replace('state_dir = "edge"', 'state_dir = "edge-twin"')
    twin.write_text(text)
    cluster.write_edge_config(sims)  # the first edge's own file as it was
    cluster.start("edge-twin", "edge", "--config", str(twin))

    wait_until(lambda: cluster.alarms("duplicate_edge"), 30, "a duplicate_edge alarm")
    (_, scanner, message) = cluster.alarms("duplicate_edge")[0]
    assert scanner == "scanner1" and "one edge identity runs twice" in message

    # the first edge goes on: more scans complete, no fork, nothing refused
    done = cluster.finished_scans("scanner1")
    wait_until(lambda: cluster.finished_scans("scanner1") >= done + 2, 60, "two more scans")
    assert not cluster.alarms("chain_fork") and not cluster.alarms("block_rejected")
    assert cluster.edge_status()["scanners"]["scanner1"]["refused"] is None
    committed = set(cluster.committed_keys("scanner1"))
    twin_lines = {k[3] for k in _emitted(cluster.emit_dir / "sim2" / "scanner1.emit.log")}
    assert not {k[3] for k in committed} & twin_lines, "the twin's lines reached the CIR"
    assert cluster.procs["edge"].poll() is None


def _emitted(path: Path) -> list[tuple[str, ...]]:
    if not path.exists():
        return []
    return [tuple(ln.split()) for ln in path.read_text().splitlines() if len(ln.split()) == 4]
