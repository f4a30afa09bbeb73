"""Operations commands: ``nii uptime``, ``nii coverage`` (R3, R6), ``nii doctor``, site-sim."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from central._uptime import UptimeStore
    from core.config import CentralConfig


def cmd_uptime(args: argparse.Namespace) -> int:
    """Print the availability table; write the CSV and the PNG timeline."""
    from central._uptime import Sla, format_table, report
    from core.config import CentralConfig

    cfg = CentralConfig.load(Path(args.config))
    sla_path = Path(args.sla) if args.sla else cfg.path.parent / "sla.toml"
    sla = Sla.load(sla_path if sla_path.exists() or args.sla else None)
    store = _uptime_store(cfg)
    try:
        accounts, csv_path, png_path = report(
            store, sla, spec=args.period, scanners=args.scanner or None, out_dir=Path(args.out)
        )
    finally:
        store.close()
    print(format_table(accounts, sla))
    print(f"wrote {csv_path} and {png_path}")
    return 0


def cmd_commission(args: argparse.Namespace) -> int:
    """Record when a scanner was commissioned: its availability is accounted from then on."""
    import datetime as dt
    import time

    from central._uptime import Sla
    from core.config import CentralConfig
    from core.errors import ConfigError
    from core.keys import check_id

    cfg = CentralConfig.load(Path(args.config))
    check_id("scanner", args.scanner)
    sla_path = cfg.path.parent / "sla.toml"
    tz = Sla.load(sla_path if sla_path.exists() else None).tz
    now = time.time()
    if args.at is None:
        at = now
    else:
        try:
            d = dt.datetime.fromisoformat(args.at)
        except ValueError:
            raise ConfigError(
                f"--at {args.at!r} is not a date and time",
                fix="write it as 2025-07-14T08:00 (in the SLA's time zone) or with an offset",
            ) from None
        at = (d if d.tzinfo else d.replace(tzinfo=tz)).timestamp()
        if at > now + 60:
            raise ConfigError(
                f"--at {args.at} is in the future", fix="give the time the scanner went into use"
            )
    store = _uptime_store(cfg)
    try:
        known = store.known_scanners()
        if args.scanner not in known and not args.new:
            # a mistyped id would start the accounting of a scanner that does not exist
            raise ConfigError(
                f"no scanner {args.scanner!r} is known to this CIR "
                f"(known: {', '.join(sorted(known)) or 'none yet'})",
                fix="check the id; to commission a scanner before its edge ever connected, "
                "add --new",
            )
        store.commission(args.scanner, at)
    finally:
        store.close()
    when = dt.datetime.fromtimestamp(at, tz).isoformat(timespec="seconds")
    print(f"scanner {args.scanner} commissioned at {when}: its availability counts from then")
    return 0


def _uptime_store(cfg: CentralConfig) -> UptimeStore:
    """The uptime record of central's configuration ``cfg``, in the CIR's database (an
    older release's ``state_dir/uptime.sqlite`` moved in first).

    Raises:
        ConfigError: there is no CIR in ``state_dir`` (and no ``cir`` URL), or it cannot
            be opened.
    """
    from central._cir import database_target
    from central._uptime import UptimeStore

    return UptimeStore(
        database_target(cfg.state_dir, cfg.cir),
        create=False,
        legacy=cfg.state_dir / "uptime.sqlite",
    )


def cmd_coverage(args: argparse.Namespace) -> int:
    """Selection coverage per terminal and period: the 30 % cap and 100 % ATT (R6)."""
    from central._cir import database_target
    from central._coverage import (
        cir_scans,
        coverage,
        format_table,
        load_selection,
        report_json,
        write_csv,
    )
    from core.config import CentralConfig

    cfg = CentralConfig.load(Path(args.config))
    sl = load_selection(Path(args.selection))
    scans = cir_scans(database_target(cfg.state_dir, cfg.cir), {s.container for s in sl.selections})
    rows = coverage(
        sl, scans, tolerance_s=float(args.tolerance_min) * 60.0, only_period=args.period
    )
    if args.json:
        print(report_json(rows))
    else:
        print(format_table(rows, sl.tz))
    if args.csv:
        missing = write_csv(rows, Path(args.csv))
        print(f"wrote {args.csv} and {missing}", file=sys.stderr if args.json else sys.stdout)
    return 0


def register(sub: Any) -> None:
    """Add ``uptime``, ``coverage``, ``doctor`` and ``site-sim`` to the ``nii`` command line."""
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
    m = us.add_parser(
        "commission", help="start a scanner's accounting at its commissioning (default: now)"
    )
    m.add_argument("--config", default="central.toml", help="central configuration (TOML)")
    m.add_argument("--scanner", required=True, help="the scanner's id")
    m.add_argument(
        "--at", help="when it went into use, e.g. 2025-07-14T08:00 (SLA time zone; default now)"
    )
    m.add_argument(
        "--new",
        action="store_true",
        help="the scanner's edge has never connected yet (otherwise an unknown id is refused)",
    )
    m.set_defaults(func=cmd_commission)

    c = sub.add_parser("coverage", help="RMS selection coverage: 30 %% cap, 100 %% ATT (R6)")
    cs = c.add_subparsers(dest="action", metavar="ACTION", required=True)
    cr = cs.add_parser("report", help="per terminal and period, with ATT containers not scanned")
    cr.add_argument("--config", default="central.toml", help="central configuration (TOML)")
    cr.add_argument(
        "--selection", required=True, help="the RMS selection list (JSON; docs/coverage.md)"
    )
    cr.add_argument("--period", help="only this period, e.g. 2025-07 (all in the list)")
    cr.add_argument(
        "--tolerance-min",
        type=float,
        default=15.0,
        help="a scan up to this many minutes before the selection time counts (15)",
    )
    cr.add_argument("--json", action="store_true", help="print the report as JSON")
    cr.add_argument("--csv", help="also write the table to this CSV file")
    cr.set_defaults(func=cmd_coverage)

    from nii._doctor import register as register_doctor

    register_doctor(sub)
    register_site_sim(sub)


__all__ = ["register"]
