"""Live ATR verdicts end to end: physics simulator → edge → central → ``atr.verdict`` on the feed.

Every part is a real ``nii`` process.  The test listens on the live feed as a
control room does (a ZeroMQ SUB socket, and ``nii control-room tail``), and
checks that each completed scan gets its verdict within 1.5 s of its end
record, that the verdict is in the CIR's ``verdicts`` table, that the
control room prints it, and that ``nii cir dicos`` writes the scan and its
verdict as a DICOS DX image and TDR.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pydicom
import pytest
import zmq

from tests.system._cluster import Cluster, start_tail, wait_until

pytestmark = pytest.mark.system

SCANS = 2
LIVE_LATENCY_S = 1.5


def _receive_verdicts(sub: zmq.Socket[bytes], n: int, timeout: float) -> list[tuple[int, Any]]:
    """(arrival time ns, document) of the first ``n`` verdicts, or fail after ``timeout`` s."""
    out: list[tuple[int, Any]] = []
    end = time.monotonic() + timeout
    while len(out) < n:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout:.0f} s: {len(out)} of {n} verdicts")
        if sub.poll(int(min(left, 0.5) * 1000)):
            topic, body = sub.recv_multipart()[:2]
            if topic == b"atr.verdict":
                out.append((time.time_ns(), json.loads(body)))
    return out


def test_each_scan_gets_a_verdict_on_the_feed_within_1_5_s(cluster: Cluster) -> None:
    cluster.start_central()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"atr.verdict")
    sub.connect(cluster.feed)
    tail, tail_log = start_tail(cluster)
    try:
        sims = cluster.start_sim(
            "--source",
            "physics",
            "--scan-lines",
            "1000",
            "--scans",
            str(SCANS),
            "--interval",
            "0.3",
            "--line-rate",
            "2500",
            "--seed",
            "48",
            scanners=1,
        )
        cluster.write_edge_config(sims)
        cluster.start_edge()
        got = _receive_verdicts(sub, SCANS, 20)
        # the tail heard them too (a moment after this test's own socket, maybe)
        wait_until(lambda: tail_log.read_text().count(" ATR ") >= SCANS, 10,
                   "the control room's tail to print the verdicts")  # fmt: skip
    finally:
        sub.close(linger=0)
        ctx.term()
        tail.terminate()
        tail.wait(timeout=10)
    printed = tail_log.read_text()

    scans = {
        r[0]: r
        for r in cluster.sql(
            "SELECT ref, scan_id, container, status, finished_ns FROM scans WHERE scanner = ?",
            "scanner1",
        )
    }
    for arrived_ns, doc in got:
        ref, scan_id, container, status, finished_ns = scans[doc["ref"]]
        assert status == "complete"
        assert (doc["scanner"], doc["scan_id"], doc["container"]) == (
            "scanner1",
            scan_id,
            container,
        )
        assert doc["verdict"] in ("green", "yellow", "red"), doc
        assert isinstance(doc["findings"], list) and doc["ms"] > 0
        for f in doc["findings"]:
            assert {"bbox_mm", "bbox_px", "category", "material", "score", "reason"} <= set(f)
        # the physics simulator's scan-start record carries the pixel size and the GD linked
        # at the gate: the verdict uses both and says nothing about defaults
        assert doc["gd_used"] is True
        assert not any("pixel size not in the scan-start record" in n for n in doc["notes"])
        latency = (arrived_ns - finished_ns) / 1e9
        assert latency <= LIVE_LATENCY_S, (
            f"verdict of ref {ref} came {latency:.2f} s after scan end"
        )
        assert doc["latency_s"] <= LIVE_LATENCY_S
        rows = cluster.sql("SELECT verdict, findings, doc FROM verdicts WHERE ref = ?", ref)
        assert rows, f"verdict of ref {ref} is not in the CIR"
        assert rows[0][0] == doc["verdict"] and rows[0][1] == len(doc["findings"])
        assert json.loads(rows[0][2]) == doc
    lines = [ln for ln in printed.splitlines() if " ATR " in ln]
    assert len(lines) >= SCANS, printed
    assert all("scanner1 scan" in ln and "after scan end" in ln for ln in lines), lines

    # the scan and its verdict as DICOS: the TDR reports the stored verdict on the DX image
    doc = got[0][1]
    ref = doc["ref"]
    r = cluster.nii("cir", "dicos", "--config", str(cluster.central_toml), str(ref), "--out", "d")
    assert r.returncode == 0, r.stdout + r.stderr
    dx = pydicom.dcmread(cluster.base / "d" / f"{ref}-dx.dcm")
    tdr = pydicom.dcmread(cluster.base / "d" / f"{ref}-tdr.dcm")
    assert dx.Rows == 1536 and dx.Columns == 1000 and dx.PatientID == doc["container"]
    assert tdr.StudyInstanceUID == dx.StudyInstanceUID
    assert tdr.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == dx.SOPInstanceUID
    assert tdr.NumberOfTotalObjects == len(doc["findings"])
    assert (
        tdr.AlarmDecision == {"red": "ALARM", "yellow": "UNKNOWN", "green": "CLEAR"}[doc["verdict"]]
    )
