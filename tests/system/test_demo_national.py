"""``nii demo --national``: two aggregators on PostgreSQL + SeaweedFS, one killed mid-scan."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nii._demo_national import postgres_dir

pytestmark = pytest.mark.system


def test_the_national_demo_fails_over_and_every_chain_verifies(tmp_path: Path) -> None:
    base = tmp_path
    try:
        r = subprocess.run(
            [sys.executable, "-P", "-m", "nii", "demo", "--national", "--dir", str(base / "d"),
             "--seconds", "18", "--kill-after", "9"],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        out = r.stdout
        assert r.returncode == 0, out[-3000:] + r.stderr[-3000:]
        assert "two aggregators (riac-a, riac-b)" in out
        before, _, after = out.partition("*** killing aggregator riac-a")
        assert after, out[-3000:]
        assert "SCAN FINISHED" in before
        # the dead aggregator's scanners moved, and scans went on finishing
        assert "ALARM central_failover" in after, after[-3000:]
        assert "SCAN FINISHED" in after.partition("ALARM central_failover")[2], after[-3000:]
        assert "Traceback" not in out + r.stderr
        assert "all 4 chains verified" in after, after[-3000:]
    finally:
        # under root the database lives outside the demo folder (PostgreSQL runs as
        # 'nobody'): the demo says where; it is removed with the test
        shutil.rmtree(postgres_dir((base / "d").resolve()), ignore_errors=True)
