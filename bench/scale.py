"""Bytes per row of the national CIR's tables, measured on PostgreSQL (docs/scale.md).

Run on an embedded CIR that real scans filled (``nii demo`` for a minute) and an empty
PostgreSQL database::

    python -m bench.scale --config var/demo/central.toml --db postgresql://nii@host/empty

It migrates the CIR into the database (``central._migrate.copy_cir``, the blobs left
where they are), copies its rows ``--times`` times under fresh keys (so that indexes
and pages are measured at a size where the page granularity no longer shows), runs
``VACUUM ANALYZE`` and prints one JSON line: per table the rows, bytes with indexes and
TOAST (``pg_total_relation_size``) and bytes per row; the same for the audit indexes
docs/scale.md recommends; and the blobs' sizes as the scans made them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from central._cir import Cir, open_cir
from central._migrate import copy_cir
from core.config import CentralConfig

#: Each table copied under fresh keys: (the INSERT … SELECT, its placeholder for n).
_COPIES = {
    "blocks": "INSERT INTO blocks SELECT scanner || '-' || g, seq, kind, scan_ref + {off} * g, "
    "scan_id, n_lines, link_first, link_last, "
    "encode(sha256(convert_to(hash || g, 'UTF8')), 'hex'), "
    "encode(sha256(convert_to(prev_hash || g, 'UTF8')), 'hex'), size, created_ns + g, "
    "committed_ns + g FROM blocks, generate_series(1, {n}) g WHERE scanner NOT LIKE '%-%'",
    "scans": "INSERT INTO scans SELECT ref + {off} * g, scanner || '-' || g, scan_id, "
    "container || '-' || g, status, started_ns + g, finished_ns + g, lines_planned, "
    "lines_received, calib_lines, lines_emitted, blocks, first_seq, last_seq, gaps, "
    "start_record, end_record FROM scans, generate_series(1, {n}) g WHERE ref <= {off}",
    "verdicts": "INSERT INTO verdicts SELECT ref + {off} * g, scanner || '-' || g, scan_id, "
    "container || '-' || g, verdict, findings, model, gd_used, atr_ms, latency_s, "
    "created_ns + g, doc FROM verdicts, generate_series(1, {n}) g WHERE ref <= {off}",
}

#: Indexes for audit queries (docs/scale.md): scans by container, by period, by scanner
#: and period.
AUDIT_INDEXES = {
    "idx_scans_container": "CREATE INDEX IF NOT EXISTS idx_scans_container ON scans (container)",
    "idx_scans_started": "CREATE INDEX IF NOT EXISTS idx_scans_started ON scans (started_ns)",
    "idx_scans_scanner_started": "CREATE INDEX IF NOT EXISTS idx_scans_scanner_started "
    "ON scans (scanner, started_ns)",
}


def measure(cfg: CentralConfig, db: str, times: int) -> dict[str, Any]:
    """Migrate the CIR of ``cfg`` into the empty database ``db``, copy its rows ``times``
    times and measure; the JSON document the command prints."""
    source = open_cir(cfg, create=False)
    blobs = source.sql.rows("SELECT kind, size, n_lines, scan_ref FROM blocks")
    scans = source.sql.rows("SELECT ref, lines_received FROM scans")
    target = Cir(cfg.state_dir, blobs=source.blobs, database=db)
    try:
        copy_cir(source, target, copy_blobs=False)
        off = int(target.sql.value("SELECT MAX(ref) AS m FROM scans") or 0) + 1
        w = target.wsql
        for sql in _COPIES.values():
            w.execute(sql.format(n=times, off=off))
        w.execute("VACUUM ANALYZE")
        tables = {}
        for t in ("blocks", "scans", "verdicts", "streams", "alarms"):
            n = int(w.value(f"SELECT COUNT(*) AS n FROM {t}") or 0)
            size = int(w.value("SELECT pg_total_relation_size(?) AS b", [t]))
            tables[t] = {"rows": n, "bytes": size, "bytes_per_row": round(size / max(n, 1))}
        nscans = tables["scans"]["rows"]
        audit = {}
        for name, sql in AUDIT_INDEXES.items():
            w.execute(sql)
            size = int(w.value("SELECT pg_relation_size(?) AS b", [name]))
            audit[name] = {"bytes": size, "bytes_per_scan": round(size / max(nscans, 1))}
    finally:
        target.wsql.close()
        target.sql.close()
        source.close()
    data = [b for b in blobs if b["kind"] == "data"]
    lines = sum(int(b["n_lines"]) for b in data)
    return {
        "bench": "scale",
        "tables": tables,
        "audit_indexes": audit,
        "blobs": {
            "scans": len(scans),
            "blocks": len(blobs),
            "bytes": sum(int(b["size"]) for b in blobs),
            "data_bytes_per_line": round(sum(int(b["size"]) for b in data) / max(lines, 1), 1),
            "lines_per_data_block": round(lines / max(len(data), 1), 2),
            "other_bytes_per_scan": round(
                sum(int(b["size"]) for b in blobs if b["kind"] != "data") / max(len(scans), 1)
            ),
        },
        "times": times,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--config", required=True, help="central.toml of a filled embedded CIR")
    p.add_argument("--db", required=True, help="an empty PostgreSQL database's URL")
    p.add_argument("--times", type=int, default=200, help="copies of the rows (200)")
    a = p.parse_args(argv)
    print(json.dumps(measure(CentralConfig.load(Path(a.config)), a.db, a.times)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
