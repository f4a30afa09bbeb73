"""Field-fault tools for the system tests, and the scenarios ``nii bench faults`` runs.

The tools (a tmpfs to fill, a blackhole TCP proxy, a socat pty link) and the
scenarios live in ``bench/faults.py``, so that the installed ``nii bench faults``
has them; the tests import them from here, and so measure exactly what the
benchmark measures, only smaller and faster.
"""

from __future__ import annotations

from bench.faults import (
    SCENARIOS,
    BlackholeProxy,
    FaultToolError,
    Installation,
    Result,
    Sizing,
    SocatLink,
    Tmpfs,
    VethLink,
    count_lines,
    fill,
    free,
    free_bytes,
    run_scenario,
)

__all__ = [
    "SCENARIOS",
    "TEST_SIZING",
    "BlackholeProxy",
    "FaultToolError",
    "Installation",
    "Result",
    "Sizing",
    "SocatLink",
    "Tmpfs",
    "VethLink",
    "count_lines",
    "fill",
    "free",
    "free_bytes",
    "run_scenario",
]

#: small scans at a high line rate, short faults: each scenario in about 20 s on 2 cores
TEST_SIZING = Sizing(
    scan_lines=200,
    line_rate=1000.0,
    channels=128,
    interval_s=0.2,
    buffer_s=30.0,
    outage_s=3.0,
    full_s=4.0,
    partition_s=6.0,
    post_s=3.0,
    slack_s=4.0,
    wait_s=20.0,
    seed=31,
)
