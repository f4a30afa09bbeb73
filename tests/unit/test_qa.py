"""R4 image-quality QA on simulated test-object scans: healthy passes, weak or noisy fails."""

from __future__ import annotations

import argparse
import json

import pytest

from central.qa import QaSpec, measure, register_qa
from firmware_sim.physics import qa_simulation


def test_healthy_6mev_scanner_passes() -> None:
    dark, air, image, layout = qa_simulation()
    report = measure(dark, air, image, layout)
    assert report.passed, report.reasons
    assert report.penetration_mm >= 340
    assert report.resolution_mm is not None and report.resolution_mm <= 5
    assert report.contrast_percent is not None and report.contrast_percent <= 3


def test_weak_source_fails_for_low_output() -> None:
    report = measure(*qa_simulation(source_output=0.3))
    assert not report.passed
    assert report.penetration_mm < 340
    assert any("penetration" in r for r in report.reasons)
    assert any("source output low" in r for r in report.reasons)
    assert not any("detector noisy" in r for r in report.reasons)


def test_noisy_detector_fails_for_noise() -> None:
    report = measure(*qa_simulation(detector_noise_adu=6.0))
    assert not report.passed
    assert any("detector noisy" in r for r in report.reasons)
    assert not any("source output low" in r for r in report.reasons)


def test_sla_is_configurable_and_cli_reports(capsys: pytest.CaptureFixture[str]) -> None:
    data = qa_simulation()
    assert not measure(*data, spec=QaSpec(penetration_mm=400)).passed
    parser = argparse.ArgumentParser(prog="nii")
    sub = parser.add_subparsers()
    register_qa(sub, simulate=lambda out, noise, seed: data)
    args = parser.parse_args(["qa", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["passed"] is True and out["penetration_mm"] >= 340
    args = parser.parse_args(["qa", "--penetration-mm", "450"])
    assert args.func(args) == 1
    assert "penetration" in capsys.readouterr().out
