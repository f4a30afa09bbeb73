"""``nii bench sim``: physics simulation and edge calibration throughput on one core.

Simulates full container scans (random scenarios: truck, container, cargo,
concealments, detector noise) at 1536 channels, dual energy, and calibrates
them (dark/flat, bad channels, −ln T, 3 × 5 smoothing, material map and Z_eff).
The process is pinned to one CPU while it measures.  Prints one JSON line last.
"""
# ruff: noqa: RUF002

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from core.calibration import DetectorCalibration, MaterialCalibration, calibrate_scan
from firmware_sim.physics import PhysicsSource

TARGET_SIM = 5000.0
TARGET_CALIB = 20000.0


def _pin_one_cpu() -> set[int] | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    return before


def measure(
    channels: int = 1536, lines: int = 3000, scans: int = 4, seed: int = 1
) -> dict[str, Any]:
    """Lines per second of simulation and of calibration (median over the measured scans)."""
    before = _pin_one_cpu()
    try:
        src = PhysicsSource()
        mc = MaterialCalibration.default()
        warm = src.simulate(seed, 0, channels, 64)  # compiles the kernels, builds the tables
        cal = DetectorCalibration.from_lines(warm.dark_hi, warm.dark_lo, warm.air_hi, warm.air_lo)
        calibrate_scan(cal, warm.img_hi, warm.img_lo, mc)
        sim_rates, calib_rates = [], []
        for k in range(1, scans + 1):
            t0 = time.perf_counter()
            scan = src.simulate(seed, k, channels, lines)
            t1 = time.perf_counter()
            cal = DetectorCalibration.from_lines(
                scan.dark_hi, scan.dark_lo, scan.air_hi, scan.air_lo
            )
            t2 = time.perf_counter()
            calibrate_scan(cal, scan.img_hi, scan.img_lo, mc)
            t3 = time.perf_counter()
            sim_rates.append(lines / (t1 - t0))
            calib_rates.append(lines / (t3 - t2))
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    sim = sorted(sim_rates)[len(sim_rates) // 2]
    calib = sorted(calib_rates)[len(calib_rates) // 2]
    return {
        "bench": "sim",
        "channels": channels,
        "lines_per_scan": lines,
        "scans": scans,
        "sim_lines_per_s": round(sim, 1),
        "calib_lines_per_s": round(calib, 1),
        "sim_target": TARGET_SIM,
        "calib_target": TARGET_CALIB,
        "sim_ok": sim >= TARGET_SIM,
        "calib_ok": calib >= TARGET_CALIB,
        "cores": 1,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark from parsed arguments; prints the result as the last JSON line."""
    result = measure(args.channels, args.lines, args.scans, args.seed)
    print(json.dumps(result), flush=True)
    return result


def _main(args: argparse.Namespace) -> int:
    result = run(args)
    return 0 if result["sim_ok"] and result["calib_ok"] else 1


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``sim`` under ``nii bench``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sim", help="physics simulation and edge calibration lines/s on one core"
    )
    p.add_argument("--channels", type=int, default=1536)
    p.add_argument("--lines", type=int, default=3000, help="lines per simulated scan")
    p.add_argument("--scans", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=_main)
    return p
