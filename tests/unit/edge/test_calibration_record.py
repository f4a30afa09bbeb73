"""The scanner's calibration in every scan-start record the edge forwards."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from core.scanner_cal import document_sha256
from core.seal import BlockKind
from drivers import Packet, PacketType
from edge._assembler import BlockOut, ScanAssembler, with_calibration

REFERENCE = Path(__file__).parents[3] / "central" / "atr" / "data" / "reference-scanner.json"
CAL = json.loads(REFERENCE.read_text())
OTHER = {**CAL, "scanner": "another unit"}
TS = 1_800_000_000 * 10**9


def test_no_configured_calibration_leaves_the_bytes_alone() -> None:
    raw = b'{"scan_id": 1, "scanner_calibration": {"format": "x"}}'
    out, replaced = with_calibration(raw, None)
    assert out is raw and replaced is None


def test_configured_calibration_goes_into_the_record() -> None:
    raw = json.dumps({"scan_id": 3, "container": "MSKU0000003", "channels": 4}).encode()
    out, replaced = with_calibration(raw, CAL)
    doc = json.loads(out)
    assert replaced is None
    assert doc["scanner_calibration"] == CAL
    assert {k: doc[k] for k in ("scan_id", "container", "channels")} == {
        "scan_id": 3,
        "container": "MSKU0000003",
        "channels": 4,
    }
    assert b"\n" not in out and b": " not in out  # compact: the record stays small


def test_the_edge_configuration_wins_over_the_scanners_own() -> None:
    raw = json.dumps({"scan_id": 1, "scanner_calibration": OTHER}).encode()
    out, replaced = with_calibration(raw, CAL)
    doc = json.loads(out)
    assert doc["scanner_calibration"] == CAL
    assert replaced == document_sha256(OTHER)
    assert doc["scanner_calibration_scanner_sha256"] == replaced
    # the same document the scanner sent (spaced otherwise): nothing replaced
    same = json.dumps({"scan_id": 1, "scanner_calibration": CAL}, indent=3).encode()
    out, replaced = with_calibration(same, CAL)
    assert replaced is None and "scanner_calibration_scanner_sha256" not in json.loads(out)
    # not even an object: replaced, and said so
    odd = json.dumps({"scan_id": 1, "scanner_calibration": [1, 2]}).encode()
    out, replaced = with_calibration(odd, CAL)
    assert replaced == "not a JSON object" and json.loads(out)["scanner_calibration"] == CAL


def test_records_that_are_not_objects_go_on_untouched() -> None:
    for raw in (b"not json", b"[1, 2]", b"3"):
        assert with_calibration(raw, CAL) == (raw, None)


def test_digest_ignores_spacing_and_key_order() -> None:
    shuffled = json.loads(json.dumps(dict(reversed(list(CAL.items())))))
    assert document_sha256(shuffled) == document_sha256(CAL)
    assert document_sha256(OTHER) != document_sha256(CAL)
    assert len(document_sha256(CAL)) == 64


def _start(seq: int, scan: int, extra: dict[str, object] | None = None) -> Packet:
    doc: dict[str, object] = {"scan_id": scan, "channels": 4, **(extra or {})}
    return Packet(PacketType.SCAN_START, seq, TS, scan, 0, 0, 0, json.dumps(doc).encode())


def test_assembler_writes_it_into_every_start_record_and_logs_a_clash_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    a = ScanAssembler(
        block_lines=4, block_ms=200.0, att_role="exit", calibration=CAL, wall_clock=lambda: 1.8e9
    )
    assert a.calibration_sha256 == document_sha256(CAL)
    out = []
    with caplog.at_level(logging.WARNING, logger="nii.edge"):
        extras: list[dict[str, object] | None] = [
            None,
            {"scanner_calibration": OTHER},
            {"scanner_calibration": OTHER},
        ]
        for i, extra in enumerate(extras):
            out += a.feed(_start(2 * i, i + 1, extra))
            out += a.feed(Packet(PacketType.SCAN_END, 2 * i + 1, TS, i + 1, 0, 0, 0, b"{}"))
    starts = [
        json.loads(o.payload)
        for o in out
        if isinstance(o, BlockOut) and o.kind is BlockKind.SCAN_START
    ]
    assert len(starts) == 3
    assert all(d["scanner_calibration"] == CAL and d["att_role"] == "exit" for d in starts)
    assert a.stats.calibration_replaced == 2
    clashes = [r for r in caplog.records if "other than the edge configuration" in r.message]
    assert len(clashes) == 1


def test_assembler_without_calibration_forwards_the_scanners_record() -> None:
    a = ScanAssembler(block_lines=4, block_ms=200.0, wall_clock=lambda: 1.8e9)
    raw = _start(0, 1, {"scanner_calibration": OTHER})
    (blk,) = [o for o in a.feed(raw) if isinstance(o, BlockOut)]
    assert blk.payload == raw.payload
