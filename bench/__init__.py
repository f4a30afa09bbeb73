"""Benchmarks (``nii bench …``): each prints one JSON object as its last line."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any, local_servers: Any = None) -> argparse.ArgumentParser:
    """Add ``nii bench`` and its benchmarks; ``local_servers`` (``nii._local_servers``,
    from the layer above) starts the servers ``nii bench cir`` needs."""
    b: argparse.ArgumentParser = subparsers.add_parser("bench", help="run a benchmark")
    bs = b.add_subparsers(dest="bench", required=True, metavar="BENCH")
    from bench.atr import register as register_atr
    from bench.cir import register as register_cir
    from bench.control_room import register as register_control_room
    from bench.faults import register as register_faults
    from bench.live import register as register_live
    from bench.sim import register as register_sim

    register_atr(bs)
    register_cir(bs, local_servers)
    register_control_room(bs)
    register_faults(bs)
    register_live(bs)
    register_sim(bs)
    return b
