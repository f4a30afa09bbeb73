"""A commissioned scanner end to end: its calibration travels from the edge's configuration
through every scan-start record into the CIR, the live verdict and the UFF package.

Real ``nii`` processes: a physics simulator of a scanner model other than the
reference (the 9/6 MeV unit), commissioned as a site does it (its step-wedge scan
and ``nii atr calibrate``), an edge whose ``[[scanner]]`` has ``calibration =``, and
central. Then the same edge with a broken calibration file: it refuses to start.
Simulator seed 48 (the live ATR's test seed, docs/atr.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from central.products._uff import read_uff
from core.scanner_cal import document_sha256
from tests.system._cluster import Cluster, wait_until

pytestmark = pytest.mark.system

MODEL = "l9-cdwo4-40"


def test_verdict_of_a_commissioned_scanner_is_calibrated(cluster: Cluster) -> None:
    cluster.start_central()
    sims = cluster.start_sim(
        "--source",
        "physics",
        "--model",
        MODEL,
        "--scan-lines",
        "1000",
        "--scans",
        "1",
        "--line-rate",
        "2500",
        "--seed",
        "48",
        scanners=1,
    )
    cal_value = cluster.commission(MODEL)
    cal_doc = json.loads((cluster.base / json.loads(cal_value)).read_text())
    sha = document_sha256(cal_doc)
    cluster.write_edge_config(sims, calibration=cal_value)
    cluster.start_edge()

    def verdicts() -> list[tuple[object, ...]]:
        edge = cluster.procs["edge"]
        assert edge.poll() is None, f"the edge stopped ({edge.returncode}): {cluster.log_tail()}"
        return cluster.sql("SELECT ref, doc FROM verdicts WHERE scanner = ?", "scanner1")

    rows = wait_until(
        verdicts,
        90,
        "the live verdict of scanner1's scan",
        poll=0.2,
    )
    ref, doc_text = rows[0]
    doc = json.loads(doc_text)
    assert doc["verdict"] in ("green", "yellow", "red"), doc
    assert doc["gd_checks"]["calibrated"] is True, doc["gd_checks"]
    assert doc["scanner_calibration"] == {"sha256": sha, "used": True, "scanner": MODEL}
    assert not any("calibration" in n for n in doc["notes"]), doc["notes"]

    # the scan row's start record carries the whole document; the CIR keeps it per scanner
    (start,) = cluster.sql("SELECT start_record FROM scans WHERE ref = ?", ref)[0]
    assert json.loads(start)["scanner_calibration"] == cal_doc
    kept = cluster.sql(
        "SELECT sha256, document, first_ref, scans FROM scanner_calibrations WHERE scanner = ?",
        "scanner1",
    )
    assert len(kept) == 1 and kept[0][0] == sha and kept[0][2] == ref and kept[0][3] >= 1
    assert json.loads(kept[0][1]) == cal_doc
    cfg = ["--config", str(cluster.central_toml)]
    r = cluster.nii("cir", "calibration", *cfg, "scanner1")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == cal_doc

    # the UFF package carries the calibration the scan was taken with
    r = cluster.nii("cir", "uff", *cfg, str(ref), "--out", "scan.uff")
    assert r.returncode == 0, r.stdout + r.stderr
    meta = read_uff(cluster.base / "scan.uff").metadata
    assert meta["scanner_calibration"] == {"sha256": sha, "document": cal_doc}


def test_edge_with_a_broken_calibration_refuses_to_start(cluster: Cluster, tmp_path: Path) -> None:
    bad = cluster.base / "scanner1.json"
    bad.write_text('{"format": "nii-scanner-calibration/1", "materials": []}')
    fake = [{"name": "scanner1", "serial": "/dev/null", "data_host": "127.0.0.1", "data_port": 9}]
    for value in ('"scanner1.json"', '"missing.json"'):
        cluster.write_edge_config(fake, calibration=value)
        r = cluster.nii("edge", "--config", str(cluster.edge_toml), timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        err = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert "Traceback" not in r.stderr
        assert [ln.split(":")[0] for ln in err] == ["error", "fix"], r.stderr
        assert "scanner1" in err[0] and json.loads(value) in err[0]
        assert "nii atr calibrate" in err[1]
    assert not (cluster.base / "edge").exists() or not any((cluster.base / "edge").iterdir())
