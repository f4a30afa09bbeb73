"""``nii bench cir --quick``: every figure it promises is there and sane, on real servers
(PostgreSQL, SeaweedFS and NATS JetStream of our own)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

KEYS = {
    "mb_per_s", "lines_per_s", "p99_ms", "ratio_to_embedded", "ratio_to_jetstream",
    "query_p99_ms", "failover_s", "configs", "jetstream", "queries", "machine", "wall_s",
}  # fmt: skip


@pytest.mark.timeout(900)
def test_bench_cir_quick_prints_every_figure(tmp_path: Path) -> None:
    if not shutil.which("nats-server") and not Path("/usr/sbin/nats-server").exists():
        pytest.fail("nats-server is not installed: apt-get install nats-server (.ci/run does)")
    r = subprocess.run(
        [sys.executable, "-P", "-m", "nii", "bench", "cir", "--quick"],
        cwd=tmp_path, capture_output=True, text=True, timeout=880,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc.keys() >= KEYS
    for key in ("mb_per_s", "lines_per_s", "p99_ms", "ratio_to_embedded", "ratio_to_jetstream",
                "query_p99_ms", "wall_s"):  # fmt: skip
        assert isinstance(doc[key], float | int) and doc[key] > 0, (key, doc)
    embedded, national = doc["configs"][:2]
    assert (embedded["backend"], national["backend"]) == ("sqlite", "postgres")
    for c in (embedded, national):
        assert "error" not in c and "drain_error" not in c, c
        assert c["lost"] == c["duplicated"] == c["drain_lost"] == c["drain_duplicated"] == 0
    assert doc["jetstream"]["mb_per_s"] > 0 and doc["jetstream"]["publishers"] == 2
    for engine in ("sqlite", "postgres"):
        q = doc["queries"][engine]
        for kind in ("gd_number", "container", "site_period"):
            assert q[kind]["p99_ms"] > 0 and q[kind]["rows_per_query"] >= 1, (engine, kind, q)
    # two aggregators, one killed mid-scan: the edges fail over, nothing lost or doubled
    assert "error" not in doc["failover"], doc["failover"]
    assert doc["failover_s"] > 0 and doc["failover"]["lost"] == doc["failover"]["duplicated"] == 0
    assert doc["machine"].endswith("cpu")
