"""``nii bench cir``: the CIR's engines under load, against NATS JetStream; audits; fail-over.

In one run (``docs/performance.md``, section "The CIR's engines"):

* **Ingest**: simulated scanners, edges and aggregators as separate processes on
  real sockets, as ``nii bench live`` runs them, committing into the embedded CIR
  (SQLite and files) and into the national one (PostgreSQL and SeaweedFS, servers
  of our own from ``nii._local_servers``) with 1, 2 and 4 aggregators sharing it.
  Committed MB/s and lines/s, p99 line-to-commit latency, lines lost and
  duplicated, per configuration.
* **The peer**: a private NATS JetStream server (Debian's ``nats-server``, file
  storage) takes the very sealed blocks the embedded CIR committed, from as many
  publishers as there were scanners, each with as many acknowledgements in flight
  as an edge's window; its acknowledged MB/s is the yardstick of
  ``ratio_to_jetstream``.
* **The object store alone** (``--backend postgres``): the same sealed blocks PUT
  into SeaweedFS through the CIR's own blob store, nothing else running: the
  ceiling of the national CIR's capacity on this machine
  (``ratio_to_object_store``).
* **Audit queries**: a CIR pre-filled with ``--scans-rows`` synthetic scans (one
  million by default, generated inside the database) is asked for scans by GD
  number, by container number and by site and period, a few hundred times each;
  p99 per kind.
* **Fail-over** (two or more aggregators): one aggregator is SIGKILLed mid-scan;
  ``failover_s`` is the time from the kill until the first block of one of its
  scanners is committed by another (read from the CIR).

A configuration that cannot run reports an ``error`` instead of figures; the run
goes on with the next.  The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.live import INTERVAL_S, _emitted, _nii, analyse_cir
from core.errors import ConfigError, NiiError
from core.keys import CirKey, EdgeKey
from core.net import free_port

#: Targets on this machine (issue 15): PostgreSQL + object store against the embedded
#: CIR with one aggregator, the embedded CIR against JetStream, audit-query p99 at a
#: million scans, fail-over time.
TARGETS = {
    "ratio_to_embedded": 0.8,
    "embedded_ratio_to_jetstream": 1.0,
    "query_p99_ms": 100.0,
    "failover_s": 5.0,
}
#: Debian's NATS server (``apt-get install nats-server``).
NATS_SERVER = "/usr/sbin/nats-server"
#: Scanners per site in the synthetic CIR (a terminal's lanes).
SITE_SCANNERS = 4
#: The synthetic scans span one year from this instant (2025-01-01T00:00Z), ns.
YEAR_START_NS = 1_735_689_600 * 10**9
YEAR_NS = 365 * 86_400 * 10**9
#: Sealed blocks kept in memory for the JetStream peer, bytes (a prefix of each stream).
CAPTURE_BYTES = 512 * 2**20


def register(subparsers: Any, local_servers: Any = None) -> argparse.ArgumentParser:
    """Add ``nii bench cir``; ``local_servers`` (``nii._local_servers``) starts its
    PostgreSQL and object store."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "cir", help="the CIR's engines: ingest, JetStream peer, audit queries, fail-over"
    )
    p.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        default="postgres",
        help="the engine whose figures head the result (the embedded CIR is always measured)",
    )
    p.add_argument(
        "--aggregators", type=int, default=1, help="aggregators of the headline configuration"
    )
    p.add_argument(
        "--scans-rows", type=int, default=1_000_000, help="synthetic scans for the audit queries"
    )
    p.add_argument("--scanners", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0, help="scanning time per configuration")
    p.add_argument("--channels", type=int, default=1536)
    p.add_argument("--line-rate", type=float, default=500.0)
    p.add_argument("--block-ms", type=float, default=50.0, help="block time limit (ms)")
    p.add_argument("--queries", type=int, default=300, help="audit queries of each kind")
    p.add_argument("--quick", action="store_true", help="small sizes (a test)")
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    p.set_defaults(func=run, local_servers=local_servers)
    return p


def run(args: argparse.Namespace) -> int:
    quick = args.quick
    result = measure(
        backend=args.backend,
        aggregators=args.aggregators,
        scanners=2 if quick else args.scanners,
        seconds=3.0 if quick else args.seconds,
        scans_rows=20_000 if quick else args.scans_rows,
        queries=50 if quick else args.queries,
        channels=args.channels,
        line_rate=args.line_rate,
        block_ms=args.block_ms,
        sweep=(args.aggregators,) if quick else (1, 2, 4),
        keep=args.keep,
        local_servers=getattr(args, "local_servers", None),
    )
    print(json.dumps(result))
    return 0


# -- the whole run -------------------------------------------------------------------
def measure(
    *,
    backend: str = "postgres",
    aggregators: int = 1,
    scanners: int = 8,
    seconds: float = 20.0,
    scans_rows: int = 1_000_000,
    queries: int = 300,
    channels: int = 1536,
    line_rate: float = 500.0,
    block_ms: float = 50.0,
    sweep: tuple[int, ...] = (1, 2, 4),
    keep: bool = False,
    local_servers: Any = None,
) -> dict[str, Any]:
    """Measure everything the module docstring lists; one result mapping (JSON-ready).

    ``local_servers`` starts the national CIR's servers: ``nii._local_servers`` (a
    module above this layer, handed down by ``nii``), needed for ``backend="postgres"``.

    Raises:
        ConfigError: a setting out of range (checked before anything is started).
    """
    for name, value, lo in (
        ("--aggregators", aggregators, 1),
        ("--scanners", scanners, 1),
        ("--scans-rows", scans_rows, 1000),
        ("--queries", queries, 1),
        ("--channels", channels, 1),
    ):
        if value < lo:
            raise ConfigError(f"{name} {value} is out of range", fix=f"give {name} {lo} or more")
    for fname, fvalue in (
        ("--seconds", seconds),
        ("--line-rate", line_rate),
        ("--block-ms", block_ms),
    ):
        if not 0 < fvalue < 1e6:
            raise ConfigError(f"{fname} {fvalue:g} is out of range", fix=f"give {fname} above 0")
    if backend == "sqlite" and aggregators != 1:
        raise ConfigError(
            "the embedded CIR (SQLite) has one aggregator",
            fix="give --backend postgres for several aggregators",
        )
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="nii-bench-cir-"))
    os.chmod(work, 0o755)  # PostgreSQL runs as nobody when we are root: it must get in
    load = Load(scanners, seconds, channels, line_rate, block_ms)
    try:
        with _national(work, backend, local_servers) as servers:
            res = _measure(work, servers, load, backend, aggregators, sweep, scans_rows, queries)
    finally:  # on every way out, Ctrl-C included
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)
    res["machine"] = f"{platform.machine()} {os.cpu_count()} cpu"
    res["wall_s"] = round(time.monotonic() - t0, 1)
    return res


@dataclass
class Load:
    """The simulated load: the same for every configuration."""

    scanners: int
    seconds: float
    channels: int
    line_rate: float
    block_ms: float

    @property
    def scan_lines(self) -> int:  # a 40 ft container is about 3000 lines
        return 3000 if self.seconds >= 8 else max(100, int(self.seconds * self.line_rate / 2))

    @property
    def scans(self) -> int:
        return max(1, round(self.seconds / (self.scan_lines / self.line_rate + INTERVAL_S)))

    @property
    def line_bytes(self) -> int:  # two energies, uint16
        return self.channels * 4

    @property
    def expected_lines(self) -> int:  # image lines and 16 dark/air lines a scan
        return self.scanners * self.scans * (self.scan_lines + 16)


@dataclass
class Servers:
    """The national CIR's servers of this run (None: the embedded CIR only)."""

    postgres: Any = None
    s3: Any = None
    databases: list[str] = field(default_factory=list)

    def database(self, name: str) -> str:
        """A fresh database on the PostgreSQL server; its URL."""
        import psycopg

        with psycopg.connect(self.postgres.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return str(self.postgres.url).rsplit("/", 1)[0] + f"/{name}"


@contextlib.contextmanager
def _national(work: Path, backend: str, local_servers: Any) -> Iterator[Servers]:
    if backend != "postgres":
        yield Servers()
        return
    if local_servers is None:
        raise ConfigError(
            "no way to start PostgreSQL and the object store was given",
            fix="run it as 'nii bench cir' (or give measure() nii._local_servers)",
        )
    print("starting PostgreSQL and SeaweedFS …", file=sys.stderr, flush=True)
    pg = local_servers.start_postgres(work / "postgres")
    try:
        s3 = local_servers.start_s3(work / "s3")
        try:
            yield Servers(pg, s3)
        finally:
            s3.stop()
    finally:
        pg.stop()


def _measure(
    work: Path,
    servers: Servers,
    load: Load,
    backend: str,
    aggregators: int,
    sweep: tuple[int, ...],
    scans_rows: int,
    queries: int,
) -> dict[str, Any]:
    blocks: dict[str, list[bytes]] = {}

    def config(name: str, n: int, national: bool) -> dict[str, Any]:
        """Live figures of one configuration, and its capacity (``drain_*``)."""
        srv = servers if national else None
        live = _guarded(
            name, n, lambda: ingest(work / f"{name}-{n}-live", load, servers=srv, aggregators=n)
        )
        drain = _guarded(
            name,
            n,
            lambda: ingest(
                work / f"{name}-{n}-drain",
                load,
                servers=srv,
                aggregators=n,
                drain=True,
                capture=None if national else blocks,
            ),
        )
        live.update(
            {f"drain_{k}": v for k, v in drain.items() if k not in ("backend", "aggregators")}
        )
        return live

    embedded = config("sqlite", 1, national=False)
    configs = [embedded]
    jet = _guarded_peer(work / "jetstream", blocks, load.scanners)
    store: dict[str, Any] = {}
    if backend == "postgres":
        store = _guarded_store(work, servers, blocks)
    blocks.clear()
    headline = embedded
    failover: dict[str, Any] = {"failover_s": None, "error": "needs two aggregators or more"}
    if backend == "postgres":
        for n in sorted({*sweep, aggregators}):
            res = config("postgres", n, national=True)
            configs.append(res)
            if n == aggregators:
                headline = res
        # its own run: a kill mid-run would blur the figures of the runs above
        n = max(2, aggregators)
        res = _guarded(
            "postgres",
            n,
            lambda: ingest(work / "failover", load, servers=servers, aggregators=n, kill_one=True),
        )
        failover = {"failover_s": res.get("failover_s"), "aggregators": n}
        if res.get("error"):
            failover["error"] = res["error"]
        else:
            failover.update({k: res.get(k) for k in ("lost", "duplicated")})
    query_res = {"sqlite": _guarded_queries(work / "q-sqlite", "", scans_rows, queries)}
    if backend == "postgres":
        query_res["postgres"] = _guarded_queries(
            work / "q-postgres", servers.database("nii_audit"), scans_rows, queries
        )
    q_head = query_res["postgres" if backend == "postgres" else "sqlite"]

    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 3) if a and b else None

    cap, cap_embedded = headline.get("drain_mb_per_s"), embedded.get("drain_mb_per_s")
    out: dict[str, Any] = {
        "backend": backend,
        "aggregators": aggregators,
        # capacity: the edges' spools taken as fast as the CIR commits them
        "mb_per_s": cap,
        "lines_per_s": headline.get("drain_lines_per_s"),
        # under the simulated load, as it comes
        "live_mb_per_s": headline.get("mb_per_s"),
        "live_lines_per_s": headline.get("lines_per_s"),
        "p99_ms": headline.get("p99_ms"),
        "ratio_to_embedded": ratio(cap, cap_embedded),
        "live_ratio_to_embedded": ratio(headline.get("mb_per_s"), embedded.get("mb_per_s")),
        "ratio_to_jetstream": ratio(cap, jet.get("mb_per_s")),
        "embedded_ratio_to_jetstream": ratio(cap_embedded, jet.get("mb_per_s")),
        # the object store's own rate for the same blocks, nothing else running
        "ratio_to_object_store": ratio(cap, store.get("mb_per_s")),
        "query_p99_ms": q_head.get("p99_ms"),
        "failover_s": failover["failover_s"],
        "configs": configs,
        "jetstream": jet,
        "object_store": store,
        "queries": query_res,
        "failover": failover,
        "load": {
            "scanners": load.scanners,
            "seconds": load.seconds,
            "channels": load.channels,
            "line_rate": load.line_rate,
            "block_ms": load.block_ms,
            "scans_per_scanner": load.scans,
            "scan_lines": load.scan_lines,
            "offered_mb_per_s": round(load.scanners * load.line_rate * load.line_bytes / 1e6, 2),
        },
        "scans_rows": scans_rows,
        "targets": TARGETS,
    }
    out["met"] = {
        "ratio_to_embedded": _at_least(out["ratio_to_embedded"], TARGETS["ratio_to_embedded"]),
        "embedded_ratio_to_jetstream": _at_least(
            out["embedded_ratio_to_jetstream"], TARGETS["embedded_ratio_to_jetstream"]
        ),
        "query_p99_ms": _at_most(out["query_p99_ms"], TARGETS["query_p99_ms"]),
        "failover_s": _at_most(out["failover_s"], TARGETS["failover_s"]),
    }
    return out


def _at_least(v: float | None, target: float) -> bool | None:
    return None if v is None else v >= target


def _at_most(v: float | None, target: float) -> bool | None:
    return None if v is None else v <= target


def _guarded(backend: str, n: int, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn()``'s figures for one configuration, or its ``error``: one that cannot run
    does not stop the others."""
    head: dict[str, Any] = {"backend": backend, "aggregators": n}
    print(f"ingest: {backend}, {n} aggregator(s) …", file=sys.stderr, flush=True)
    try:
        return {**head, **fn()}
    except Exception as exc:  # a benchmark reports what failed and goes on
        return {**head, "error": f"{type(exc).__name__}: {exc}"[:2000]}


def _guarded_peer(work: Path, blocks: dict[str, list[bytes]], publishers: int) -> dict[str, Any]:
    print("JetStream peer …", file=sys.stderr, flush=True)
    try:
        return jetstream(work, list(blocks.values()) or [], publishers)
    except Exception as exc:  # a benchmark reports what failed and goes on
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


def _guarded_store(work: Path, servers: Servers, blocks: dict[str, list[bytes]]) -> dict[str, Any]:
    print("object store alone …", file=sys.stderr, flush=True)
    try:
        return object_store_rate(work / "object-store", servers.s3, list(blocks.values()))
    except Exception as exc:  # a benchmark reports what failed and goes on
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


def _guarded_queries(work: Path, database: str, rows: int, queries: int) -> dict[str, Any]:
    print(f"audit queries on {rows} scans ({database or 'sqlite'}) …", file=sys.stderr, flush=True)
    try:
        return audit_queries(work, database, rows=rows, queries=queries)
    except Exception as exc:  # a benchmark reports what failed and goes on
        return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


# -- ingest --------------------------------------------------------------------------
def ingest(
    work: Path,
    load: Load,
    *,
    servers: Servers | None,
    aggregators: int = 1,
    kill_one: bool = False,
    drain: bool = False,
    capture: dict[str, list[bytes]] | None = None,
) -> dict[str, Any]:
    """Run ``load`` through simulators, edges and ``aggregators`` central processes into
    one CIR (embedded without ``servers``); its figures (``bench.live.analyse_cir``).

    With ``drain`` the aggregators are stopped once every stream has begun and started
    again once the edges have spooled every line: they then take the spools as fast as
    they can, and the figures are ``mb_per_s``
    (sealed bytes) and ``lines_per_s`` from the first commit to the last, with lines
    lost and duplicated (no latency: the lines waited on purpose).

    Each aggregator has its own ``listen``, ``feed`` and ``state_dir`` and the same
    ``cir``, ``blobs`` and key; each edge lists every aggregator, its own first (edge
    ``i`` starts on aggregator ``i mod N``).  With ``kill_one`` aggregator 0 is
    SIGKILLed once a third of the lines are committed; ``failover_s`` is the time from
    the kill until a block of one of its scanners is committed again.  ``capture``
    receives each scanner's committed sealed blocks in chain order.

    Raises:
        RuntimeError: a process exited early, or the lines were not all committed in
            time (the message carries the ends of the logs).
    """
    from central._cir import open_cir
    from central._sql import Sql
    from core.config import CentralConfig

    work.mkdir(parents=True)
    keys = work / "keys"
    CirKey.generate().save(keys)
    national = ""
    if servers is not None:
        database = servers.database(work.name.replace("-", "_"))
        s3 = servers.s3
        national = (
            f'cir = "{database}"\nblobs = "s3://{s3.extra["bucket"]}/{work.name}"\n'
            f's3_endpoint = "{s3.url}"\ns3_credentials = "{s3.extra["credentials"]}"\n'
        )
    listens = [f"tcp://127.0.0.1:{free_port()}" for _ in range(aggregators)]
    tomls = []
    for j, listen in enumerate(listens):
        toml = work / f"central-{j}.toml"
        toml.write_text(
            f'[central]\nlisten = "{listen}"\nfeed = "tcp://127.0.0.1:{free_port()}"\n'
            f'state_dir = "cir-{j}"\nkey = "keys/cir.key"\npreview_hz = 2\n'
            "atr = false\n" + national  # the transport path only; ATR has its own benchmark
        )
        tomls.append(toml)
    n_edges = max(aggregators, 1 if load.scanners <= 8 else 2)
    n_edges = min(n_edges, load.scanners)
    edge_ids = [f"edge-{i}" for i in range(n_edges)]
    cfg = CentralConfig.load(tomls[0])
    cir = open_cir(cfg)
    try:
        for eid in edge_ids:
            k = EdgeKey.generate(eid)
            k.save(keys)
            cir.enroll(k.public)
    finally:
        cir.close()
    target = cfg.cir or str(cfg.state_dir / "cir.sqlite")

    def committed() -> int:
        db = Sql(target)
        try:  # cheap: per finished scan, not per block
            return int(
                db.value(
                    "SELECT COALESCE(SUM(lines_received + calib_lines), 0) AS n FROM scans "
                    "WHERE status != 'scanning'"
                )
                or 0
            )
        finally:
            db.close()

    def streams() -> int:
        db = Sql(target)
        try:
            return int(db.value("SELECT COUNT(*) AS n FROM streams") or 0)
        finally:
            db.close()

    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = work / "logs"
    logs.mkdir()

    def start(name: str, *a: str) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "ab") as out:
            p = subprocess.Popen(_nii(*a), stdout=out, stderr=subprocess.STDOUT, cwd=work)
        procs[name] = p
        return p

    def tails() -> str:
        return "\n".join(
            f"== {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-8:])
            for f in sorted(logs.glob("*.log"))
        )

    killed: set[str] = set()

    def wait(cond: Callable[[], bool], deadline_s: float, what: str) -> None:
        end = time.monotonic() + deadline_s
        while not cond():
            dead = [n for n, p in procs.items() if p.poll() is not None and n not in killed]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}\n{tails()}")
            if time.monotonic() > end:
                raise RuntimeError(f"timed out waiting for {what}\n{tails()}")
            time.sleep(0.05)

    status = work / "sim" / "status.json"
    emit = work / "emit"
    res: dict[str, Any] = {}

    def start_centrals(suffix: str = "") -> None:
        for j, toml in enumerate(tomls):
            name = f"central-{j}{suffix}"
            start(name, "central", "--config", str(toml), "--log-level", "WARNING")

    try:
        start_centrals()
        start(
            "sim", "sim", "--scanners", str(load.scanners), "--channels", str(load.channels),
            "--line-rate", str(load.line_rate), "--scan-lines", str(load.scan_lines),
            "--interval", str(INTERVAL_S), "--scans", str(load.scans), "--replay", "2",
            "--buffer", "4", "--serial-dir", str(work / "sim"), "--status-file", str(status),
            "--emit-log-dir", str(emit), "--emit-log-no-hash",
        )  # fmt: skip
        wait(status.exists, 120, "the simulators")
        sims = json.loads(status.read_text())["scanners"]
        scanners_of: dict[int, list[str]] = {}
        for i, eid in enumerate(edge_ids):
            mine = sims[i::n_edges]
            scanners_of[i % aggregators] = scanners_of.get(i % aggregators, []) + [
                s["name"] for s in mine
            ]
            mine_first = listens[i % aggregators :] + listens[: i % aggregators]
            central = json.dumps(mine_first[0]) if aggregators == 1 else json.dumps(mine_first)
            lines = [
                "[edge]", f'id = "{eid}"', f'key = "keys/{eid}.key"',
                'cir_public = "keys/cir.pub"', f"central = {central}",
                f'state_dir = "spool-{eid}"', "heartbeat_s = 0.5", "",
            ]  # fmt: skip
            for s in mine:
                lines += [
                    "[[scanner]]", f'id = "{s["name"]}"', f'serial = "{s["serial"]}"',
                    f'data = "{s["data_host"]}:{s["data_port"]}"',
                    f"block_ms = {load.block_ms}", "block_lines = 64", "",
                ]  # fmt: skip
            (work / f"{eid}.toml").write_text("\n".join(lines))
            start(eid, "edge", "--config", str(work / f"{eid}.toml"), "--log-level", "WARNING")
        expected = load.expected_lines
        deadline = load.seconds * 4 + 120
        since_ns = 0
        if drain:
            # an edge reads its scanners once central has welcomed it: stop the
            # aggregators once every stream has begun, let the edges spool the rest
            wait(lambda: streams() >= load.scanners, deadline, "every stream to begin")
            for j in range(aggregators):
                killed.add(f"central-{j}")
                procs[f"central-{j}"].send_signal(signal.SIGTERM)
                procs[f"central-{j}"].wait(timeout=30)
            spooled = _Spooled(work, edge_ids, load.scanners * load.scans * load.scan_lines)
            wait(spooled, deadline, "the edges to spool every line")
            # the edges' spools are written back to disk before the aggregators come
            # back: in the field an edge is another machine, and its writeback is not
            # the aggregator's to pay (ext4 couples every flush on one file system)
            os.sync()
            since_ns = time.time_ns()
            start_centrals("-again")
        if kill_one:
            wait(lambda: committed() >= expected // 3, deadline, "a third of the lines")
            res["failover_s"] = _kill_and_time(procs, killed, target, scanners_of.get(0, []))
        wait(lambda: committed() >= expected, deadline, "the CIR to hold every line")
        procs["sim"].send_signal(signal.SIGTERM)
        procs["sim"].wait(timeout=60)
        emitted = _emitted(emit)
        cir = open_cir(cfg)
        try:
            left: dict[str, int] = {}

            def keep(scanner: str, raw: bytes | memoryview) -> None:
                if capture is None:
                    return
                room = left.setdefault(scanner, CAPTURE_BYTES // load.scanners)
                if len(raw) <= room:
                    left[scanner] = room - len(raw)
                    capture.setdefault(scanner, []).append(bytes(raw))

            res = {**analyse_cir(cir, emitted, load.line_bytes, keep), **res}
            if drain:
                res = {k: res[k] for k in ("lost", "duplicated", "lines_emitted")}
                res.update(_drain_rate(cir.sql, since_ns))
        finally:
            cir.close()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    res["edges"] = n_edges
    return res


class _Spooled:
    """Whether the edges have sealed every line (``status.json``: lines seen, and no new
    block sealed since the last look)."""

    def __init__(self, work: Path, edge_ids: list[str], expected: int) -> None:
        self.files = [work / f"spool-{eid}" / "status.json" for eid in edge_ids]
        self.expected = expected
        self.sealed = -1
        self.since = 0.0

    def __call__(self) -> bool:
        lines = sealed = 0
        for f in self.files:
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                return False
            for sc in doc.get("scanners", {}).values():
                lines += int(sc.get("lines", 0))
                sealed += int(sc.get("blocks_sealed", 0))
        now = time.monotonic()
        if sealed != self.sealed:
            self.sealed, self.since = sealed, now
        return lines >= self.expected and now - self.since > 1.5


def _drain_rate(db: Any, since_ns: int) -> dict[str, Any]:
    """Sealed MB/s and lines/s of the data blocks committed from ``since_ns`` on, from the
    first such commit to the last."""
    row = db.one(
        "SELECT MIN(committed_ns) AS t0, MAX(committed_ns) AS t1, SUM(size) AS b, "
        "SUM(n_lines) AS n, COUNT(*) AS k FROM blocks WHERE kind = 'data' AND committed_ns >= ?",
        [since_ns],
    )
    if not row or not row["k"]:
        raise RuntimeError("no data block was committed")
    secs = max(1e-9, (int(row["t1"]) - int(row["t0"])) / 1e9)
    return {
        "mb_per_s": round(int(row["b"]) / secs / 1e6, 2),
        "lines_per_s": round(int(row["n"]) / secs, 1),
        "blocks": int(row["k"]),
        "bytes": int(row["b"]),
        "seconds": round(secs, 3),
    }


def _kill_and_time(
    procs: dict[str, subprocess.Popen[bytes]], killed: set[str], target: str, scanners: list[str]
) -> float:
    """SIGKILL aggregator 0; seconds until a block of one of ``scanners`` (those whose
    edges it served) is committed after the kill, read from the CIR."""
    from central._sql import Sql

    if not scanners:
        raise RuntimeError("aggregator 0 served no scanner: nothing to fail over")
    killed.add("central-0")
    kill_ns = time.time_ns()
    procs["central-0"].send_signal(signal.SIGKILL)
    procs["central-0"].wait(timeout=20)
    marks = ", ".join("?" for _ in scanners)
    db = Sql(target)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            first = db.value(
                f"SELECT MIN(committed_ns) AS t FROM blocks WHERE scanner IN ({marks}) "
                "AND committed_ns > ?",
                [*scanners, kill_ns],
            )
            if first is not None:
                return round((int(first) - kill_ns) / 1e9, 3)
            time.sleep(0.02)
    finally:
        db.close()
    raise RuntimeError("no block of the killed aggregator's scanners was committed in 60 s")


# -- the JetStream peer --------------------------------------------------------------
def jetstream(
    work: Path, blocks: list[list[bytes]], publishers: int, window: int | None = None
) -> dict[str, Any]:
    """Acknowledged MB/s of a private NATS JetStream server (file storage) taking
    ``blocks`` (one list per publisher, in order) from ``publishers`` connections,
    each with up to ``window`` publishes awaiting their acknowledgement (default: an
    edge's uplink window).

    Raises:
        NiiError: ``nats-server`` or the ``nats-py`` client is missing, or the server
            did not start.
    """
    from edge._uplink import WINDOW_BLOCKS

    window = window or WINDOW_BLOCKS
    if not Path(NATS_SERVER).exists() and not shutil.which("nats-server"):
        raise NiiError(
            "NATS server is not installed (no nats-server)",
            fix="apt-get install nats-server (.ci/run does)",
        )
    try:
        import nats  # noqa: F401
    except ImportError as exc:
        raise NiiError(
            "the NATS client is not installed", fix="pip install 'nats-py>=2.6' (make venv does)"
        ) from exc
    blocks = [b for b in blocks if b][:publishers] or []
    if not blocks:
        raise NiiError("no sealed blocks to publish", fix="the embedded ingest run failed first")
    exe = NATS_SERVER if Path(NATS_SERVER).exists() else str(shutil.which("nats-server"))
    work.mkdir(parents=True)
    port = free_port()
    conf = work / "nats.conf"
    conf.write_text(
        f'listen: "127.0.0.1:{port}"\nmax_payload: 8MB\n'
        f'jetstream {{\n  store_dir: "{work / "store"}"\n}}\n'
    )
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    with open(work / "nats.log", "wb") as out:
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        res = asyncio.run(_publish_all(f"nats://127.0.0.1:{port}", blocks, window))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    res.update(
        {
            "server": version,
            "storage": "file",
            "publishers": len(blocks),
            "in_flight": window,
            "fsync": "sync_interval default (2 min); not per message",
        }
    )
    return res


def object_store_rate(
    work: Path, s3: Any, blocks: list[list[bytes]], batch: int = 64
) -> dict[str, Any]:
    """The object store's own rate for ``blocks`` (per scanner, in chain order): PUT
    through the CIR's blob store (``central._blobs``, the same client and parallelism)
    in batches of ``batch`` blocks taken from the scanners in turn, nothing else
    running: the ceiling of what a national CIR on this server can commit.

    Raises:
        ConfigError: the object store cannot be opened.
    """
    from central._blobs import S3_PARALLEL, open_blob_store

    work.mkdir(parents=True, exist_ok=True)
    order = [b for group in itertools.zip_longest(*blocks) for b in group if b is not None]
    store = open_blob_store(
        f"s3://{s3.extra['bucket']}/ceiling",
        work,
        endpoint=s3.url,
        credentials=Path(s3.extra["credentials"]),
    )
    try:
        t0 = time.perf_counter()
        for i in range(0, len(order), batch):
            store.put([(hashlib.sha256(raw).digest(), raw) for raw in order[i : i + batch]])
        seconds = time.perf_counter() - t0
    finally:
        store.close()
    nbytes = sum(len(b) for b in order)
    return {
        "mb_per_s": round(nbytes / 1e6 / seconds, 2) if seconds > 0 else None,
        "objects": len(order),
        "bytes": nbytes,
        "seconds": round(seconds, 3),
        "parallel": S3_PARALLEL,
        "batch": batch,
    }


async def _publish_all(url: str, blocks: list[list[bytes]], window: int) -> dict[str, Any]:
    import nats
    from nats.js.api import StorageType

    host, port = url.rsplit("/", 1)[1].split(":")
    deadline = time.monotonic() + 20
    while True:  # the server takes a moment to listen
        try:
            _, w = await asyncio.open_connection(host, int(port))
            w.close()
            break
        except OSError as exc:  # not up yet: connection refused
            if time.monotonic() > deadline:
                raise NiiError(
                    f"the NATS server did not take connections: {exc}", fix="read nats.log"
                ) from exc
            await asyncio.sleep(0.1)
    admin = await nats.connect(url, max_reconnect_attempts=0)
    try:
        js = admin.jetstream()
        await js.add_stream(name="CIR", subjects=["cir.>"], storage=StorageType.FILE)
        conns = [await nats.connect(url) for _ in blocks]
        try:
            total = sum(len(b) for bs in blocks for b in bs)
            t0 = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                for i, (nc, bs) in enumerate(zip(conns, blocks, strict=True)):
                    tg.create_task(_publisher(nc.jetstream(), f"cir.s{i}", bs, window))
            secs = time.perf_counter() - t0
        finally:
            for nc in conns:
                await nc.close()
        info = await js.stream_info("CIR")
    finally:
        await admin.close()
    if info.state.messages != sum(len(b) for b in blocks):
        raise NiiError(
            f"JetStream holds {info.state.messages} messages, not {sum(len(b) for b in blocks)}",
            fix="read nats.log",
        )
    return {
        "mb_per_s": round(total / secs / 1e6, 2),
        "messages": int(info.state.messages),
        "bytes": total,
        "seconds": round(secs, 3),
    }


async def _publisher(js: Any, subject: str, blocks: list[bytes], window: int) -> None:
    """Publish ``blocks`` in order, up to ``window`` awaiting their acknowledgement."""
    room = asyncio.Semaphore(window)

    async def one(data: bytes) -> None:
        try:
            await js.publish(subject, data, timeout=30)
        finally:
            room.release()

    async with asyncio.TaskGroup() as tg:
        for data in blocks:
            await room.acquire()
            tg.create_task(one(data))


# -- audit queries -------------------------------------------------------------------
def fill_scans(db: Any, rows: int, sites: int) -> None:
    """Insert ``rows`` synthetic scans into ``db`` (a ``central._sql.Sql`` on an empty
    CIR) in one statement, generated by the database itself.

    Scan ``i`` (1 … ``rows``): scanner ``site<i mod sites>-<(i div sites) mod 4>``,
    container ``NIIU`` + 7 digits (each about three times in the year), GD number
    ``GD-`` + 9 digits, started evenly over one year from :data:`YEAR_START_NS`.
    """
    step = YEAR_NS // rows
    containers = max(1, rows // 3)
    cols = (
        "ref, scanner, scan_id, container, gd_number, status, started_ns, finished_ns, "
        "lines_planned, lines_received, calib_lines, lines_emitted, blocks, first_seq, "
        "last_seq, gaps, start_record, end_record"
    )
    if db.postgres:
        sql = f"""
INSERT INTO scans ({cols})
SELECT i, 'site' || (i % {sites}) || '-' || ((i / {sites}) % {SITE_SCANNERS}), i, c, g,
  'complete', {YEAR_START_NS} + i * {step}, {YEAR_START_NS} + i * {step} + 8000000000,
  3000, 3000, 16, 3016, 40, i * 40, i * 40 + 39, 0,
  json_build_object('container', c, 'lines', 3000, 'gd',
    json_build_object('gd_number', g, 'container_number', c))::text, '{{}}'
FROM (SELECT i, 'NIIU' || lpad(((i * 7919) % {containers})::text, 7, '0') AS c,
  'GD-' || lpad(i::text, 9, '0') AS g FROM generate_series(1::bigint, {rows}) AS i) AS t"""
    else:
        sql = f"""
INSERT INTO scans ({cols})
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}),
t(i, c, g) AS (SELECT i, printf('NIIU%07d', (i * 7919) % {containers}),
  printf('GD-%09d', i) FROM n)
SELECT i, 'site' || (i % {sites}) || '-' || ((i / {sites}) % {SITE_SCANNERS}), i, c, g,
  'complete', {YEAR_START_NS} + i * {step}, {YEAR_START_NS} + i * {step} + 8000000000,
  3000, 3000, 16, 3016, 40, i * 40, i * 40 + 39, 0,
  json_object('container', c, 'lines', 3000, 'gd',
    json_object('gd_number', g, 'container_number', c)), '{{}}'
FROM t"""
    with db.transaction():
        db.execute(sql)
    db.execute("ANALYZE")


def audit_queries(
    work: Path, database: str, *, rows: int, queries: int, seed: int = 15
) -> dict[str, Any]:
    """Latency of the audit queries (``central.Cir.find_scans``) on a CIR of ``rows``
    synthetic scans (:func:`fill_scans`; SQLite in ``work``, or the empty PostgreSQL
    ``database``): ``queries`` of each kind, p50/p99/max in ms per kind; ``p99_ms`` the
    worst kind's p99.
    """
    from central._cir import Cir

    sites = max(1, rows // 4000)  # about a thousand scans a year per scanner
    cir = Cir(work, database=database)
    try:
        t0 = time.perf_counter()
        fill_scans(cir.wsql, rows, sites)
        fill_s = time.perf_counter() - t0
        rng = random.Random(seed)
        week = 7 * 86_400 * 10**9
        kinds: dict[str, Callable[[], dict[str, Any]]] = {
            "gd_number": lambda: {"gd_number": f"GD-{rng.randint(1, rows):09d}"},
            "container": lambda: {
                "container": f"NIIU{(rng.randint(1, rows) * 7919) % max(1, rows // 3):07d}"
            },
            "site_period": lambda: _site_week(rng, sites, week),
        }
        out: dict[str, Any] = {"rows": rows, "fill_s": round(fill_s, 2), "sites": sites}
        for kind, make in kinds.items():
            lat = []
            found = 0
            for _ in range(queries):
                q = make()
                t = time.perf_counter()
                found += len(cir.find_scans(**q))
                lat.append((time.perf_counter() - t) * 1e3)
            arr = np.asarray(lat)
            out[kind] = {
                "p50_ms": round(float(np.percentile(arr, 50)), 3),
                "p99_ms": round(float(np.percentile(arr, 99)), 3),
                "max_ms": round(float(arr.max()), 3),
                "rows_per_query": round(found / queries, 1),
            }
        out["p99_ms"] = max(out[k]["p99_ms"] for k in kinds)
        return out
    finally:
        cir.close()


def _site_week(rng: random.Random, sites: int, week: int) -> dict[str, Any]:
    site = rng.randrange(sites)
    since = YEAR_START_NS + rng.randrange(YEAR_NS - week)
    return {
        "scanners": [f"site{site}-{k}" for k in range(SITE_SCANNERS)],
        "since_ns": since,
        "until_ns": since + week,
    }
