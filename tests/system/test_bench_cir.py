"""``nii bench cir --quick``: every figure it promises is there and sane, on real servers
(PostgreSQL, SeaweedFS and NATS JetStream of our own)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.system._cluster import wait_until

# no field timings to keep (decision 0024): it runs beside the unit tests, not with the
# system tests one at a time
pytestmark = [pytest.mark.system, pytest.mark.beside]

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


def _procs_under(folder: Path) -> list[str]:
    """The command lines of running processes that name ``folder``."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmd and "pytest" not in cmd:
            out.append(cmd)
    return out


@pytest.mark.timeout(120)
def test_sigterm_of_the_bench_stops_its_servers_and_removes_its_folder(tmp_path: Path) -> None:
    # the bench's PostgreSQL runs as nobody when we are root: its folder must be reachable
    tmp = Path(tempfile.mkdtemp(prefix="nii-test-bench-"))
    tmp.chmod(0o755)
    try:
        _sigterm_stops_the_bench(tmp, tmp_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sigterm_stops_the_bench(tmp: Path, cwd: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp)}
    p = subprocess.Popen(
        [sys.executable, "-P", "-m", "nii", "bench", "cir", "--quick"],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(
            lambda: any("postgres" in c for c in _procs_under(tmp)),
            60,
            "the bench's PostgreSQL server to start",
        )
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 128 + signal.SIGTERM
    finally:
        if p.poll() is None:
            p.kill()
    wait_until(lambda: not _procs_under(tmp), 20, "no server of the bench left running")
    assert not list(tmp.glob("nii-bench-cir-*")), list(tmp.iterdir())
    err = p.stderr.read() if p.stderr else b""
    if p.stderr:
        p.stderr.close()
    assert b"Traceback" not in err, err[-2000:]
