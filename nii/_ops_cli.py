"""Operations commands: ``nii uptime report`` (R3) and ``nii site-sim``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_uptime(args: argparse.Namespace) -> int:
    """Print the availability table; write the CSV and the PNG timeline."""
    from central._uptime import Sla, UptimeStore, format_table, report
    from core.config import CentralConfig

    cfg = CentralConfig.load(Path(args.config))
    sla_path = Path(args.sla) if args.sla else cfg.path.parent / "sla.toml"
    sla = Sla.load(sla_path if sla_path.exists() else None)
    store = UptimeStore(cfg.state_dir / "uptime.sqlite")
    try:
        accounts, csv_path, png_path = report(
            store, sla, spec=args.period, scanners=args.scanner or None, out_dir=Path(args.out)
        )
    finally:
        store.close()
    print(format_table(accounts, sla))
    print(f"wrote {csv_path} and {png_path}")
    return 0


def register(sub: Any) -> None:
    """Add ``uptime`` and ``site-sim`` to the ``nii`` command line."""
    from firmware_sim.site import register as register_site_sim

    u = sub.add_parser("uptime", help="scanner availability against the 98 %% SLA (R3)")
    us = u.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = us.add_parser("report", help="table, CSV and PNG timeline per scanner and period")
    r.add_argument("--config", default="central.toml", help="central configuration (TOML)")
    r.add_argument("--scanner", action="append", help="only this scanner (repeatable)")
    r.add_argument(
        "--period",
        default="month",
        help="day, month, fiscal, 2025-07-14, 2025-07 or FY2025-26 (month)",
    )
    r.add_argument("--sla", help="SLA terms (TOML; default: sla.toml beside the config)")
    r.add_argument("--out", default=".", help="folder for the CSV and PNG (.)")
    r.set_defaults(func=cmd_uptime)
    register_site_sim(sub)


__all__ = ["register"]
