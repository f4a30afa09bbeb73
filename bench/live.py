"""``nii bench live``: N simulated scanners through the whole live path, with ceilings.

Runs, as separate processes on real sockets as in the field: one simulator
process serving N scanners (replaying pre-generated images, so image
generation is not what is measured), edge processes (each scanner with its own
driver, spool and ZeroMQ identity), and the central aggregator. In the same
run it measures two ceilings for the same block size: ZeroMQ PUSH/PULL over
TCP loopback, and AES-256-GCM on one core.

Latency is per line: from its emission by the simulator (the timestamp in its
data-link packet) to the commit of its block in the CIR.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from central import Cir, Sql, database_target
from core.errors import ConfigError
from core.keys import CirKey, EdgeKey
from core.net import free_port

INTERVAL_S = 0.1  # seconds between scans of one scanner (trucks back to back)


def register(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "live", help="throughput and latency of the whole live path"
    )
    p.add_argument("--scanners", type=int, default=4)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--channels", type=int, default=1536)
    p.add_argument("--line-rate", type=float, default=500.0)
    p.add_argument("--block-ms", type=float, default=20.0, help="block time limit (ms)")
    p.add_argument("--block-lines", type=int, default=64, help="block size limit (lines)")
    p.add_argument("--edge-procs", type=int, default=0, help="edge processes (0 = auto)")
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    p.set_defaults(func=run)
    return p


# -- ceilings ------------------------------------------------------------------------
def zmq_ceiling(block_bytes: int, seconds: float = 1.5) -> float:
    """MB/s of PUSH/PULL over TCP loopback for messages of ``block_bytes``."""
    ctx = zmq.Context()
    port = free_port()
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"tcp://127.0.0.1:{port}")
    push = ctx.socket(zmq.PUSH)
    push.connect(f"tcp://127.0.0.1:{port}")
    payload = os.urandom(block_bytes)
    received = [0]
    stop = threading.Event()

    def sink() -> None:
        while not stop.is_set():
            if pull.poll(100):
                received[0] += len(pull.recv(copy=False))

    t = threading.Thread(target=sink)
    t.start()
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        push.send(payload, copy=False)
    start_count = received[0]
    while received[0] < start_count or pull.poll(200):
        time.sleep(0.01)
        if time.perf_counter() - t0 > seconds + 5:
            break
    dt = time.perf_counter() - t0
    stop.set()
    t.join()
    push.close(linger=0)
    pull.close(linger=0)
    ctx.term()
    return received[0] / dt / 1e6


def aes_ceiling(block_bytes: int, seconds: float = 1.0) -> float:
    """MB/s of AES-256-GCM encryption of ``block_bytes`` chunks on one core."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aes = AESGCM(AESGCM.generate_key(bit_length=256))
    data = os.urandom(block_bytes)
    nonce = os.urandom(12)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        aes.encrypt(nonce, data, None)
        n += 1
    return n * block_bytes / (time.perf_counter() - t0) / 1e6


# -- the run -------------------------------------------------------------------------
def _nii(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "nii", *args]


def _wait(cond: Any, deadline_s: float, what: str, poll_s: float = 0.1) -> None:
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def run(args: argparse.Namespace) -> int:
    result = measure(
        scanners=args.scanners,
        seconds=args.seconds,
        channels=args.channels,
        line_rate=args.line_rate,
        block_ms=args.block_ms,
        block_lines=args.block_lines,
        edge_procs=args.edge_procs,
        keep=args.keep,
    )
    print(json.dumps(result))
    return 0


def measure(
    *,
    scanners: int,
    seconds: float,
    channels: int = 1536,
    line_rate: float = 500.0,
    block_ms: float = 20.0,
    block_lines: int = 64,
    edge_procs: int = 0,
    keep: bool = False,
) -> dict[str, Any]:
    """Run the live path for about ``seconds`` and measure it; one result mapping.

    Raises:
        ConfigError: a setting out of range (checked before anything is started
            or written).
    """
    for name, value, lo in (
        ("--scanners", scanners, 1),
        ("--channels", channels, 1),
        ("--block-lines", block_lines, 1),
        ("--edge-procs", edge_procs, 0),
    ):
        if value < lo:
            raise ConfigError(f"{name} {value} is out of range", fix=f"give {name} {lo} or more")
    for name, fvalue in (
        ("--seconds", seconds),
        ("--line-rate", line_rate),
        ("--block-ms", block_ms),
    ):
        if not 0 < fvalue < 1e6:
            raise ConfigError(f"{name} {fvalue:g} is out of range", fix=f"give {name} above 0")
    work = Path(tempfile.mkdtemp(prefix="nii-bench-"))
    try:
        return _measure(
            work, scanners, seconds, channels, line_rate, block_ms, block_lines, edge_procs
        )
    finally:  # on every way out, Ctrl-C included
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


def _measure(
    work: Path,
    scanners: int,
    seconds: float,
    channels: int,
    line_rate: float,
    block_ms: float,
    block_lines: int,
    edge_procs: int,
) -> dict[str, Any]:
    # a 40 ft container is about 3000 lines; run whole scans for about `seconds`
    scan_lines = 3000 if seconds >= 8 else max(100, int(seconds * line_rate / 2))
    scans = max(1, round(seconds / (scan_lines / line_rate + INTERVAL_S)))
    line_bytes = channels * 4
    block_bytes = min(block_lines, max(1, int(line_rate * block_ms / 1000))) * line_bytes
    print(f"ceilings for {block_bytes} B blocks …", file=sys.stderr, flush=True)
    zmq_mb = zmq_ceiling(block_bytes)
    aes_mb = aes_ceiling(block_bytes)

    keys = work / "keys"
    cir_key = CirKey.generate()
    cir_key.save(keys)
    listen, feed = free_port(), free_port()
    (work / "central.toml").write_text(
        f'[central]\nlisten = "tcp://127.0.0.1:{listen}"\nfeed = "tcp://127.0.0.1:{feed}"\n'
        'state_dir = "cir"\nkey = "keys/cir.key"\npreview_hz = 2\n'
        "atr = false\n"  # the transport path only; ATR has its own benchmark (nii bench atr)
    )
    n_edges = edge_procs or (1 if scanners <= 8 else 2)
    cir = Cir(work / "cir")
    edge_ids = [f"edge-{i}" for i in range(n_edges)]
    for eid in edge_ids:
        k = EdgeKey.generate(eid)
        k.save(keys)
        cir.enroll(k.public)
    cir.close()

    procs: list[subprocess.Popen[bytes]] = []
    logs = work / "logs"
    logs.mkdir()

    def start(name: str, *a: str) -> subprocess.Popen[bytes]:
        out = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        p = subprocess.Popen(_nii(*a), stdout=out, stderr=subprocess.STDOUT, cwd=work)
        procs.append(p)
        return p

    status = work / "sim" / "status.json"
    emit = work / "emit"
    try:
        start(
            "central", "central", "--config", str(work / "central.toml"), "--log-level", "WARNING"
        )
        sim = start(
            "sim",
            "sim",
            "--scanners",
            str(scanners),
            "--channels",
            str(channels),
            "--line-rate",
            str(line_rate),
            "--scan-lines",
            str(scan_lines),
            "--interval",
            str(INTERVAL_S),
            "--scans",
            str(scans),
            "--replay",
            "2",
            "--buffer",
            "4",
            "--serial-dir",
            str(work / "sim"),
            "--status-file",
            str(status),
            "--emit-log-dir",
            str(emit),
            "--emit-log-no-hash",
        )
        _wait(status.exists, 120, "the simulators")
        st = json.loads(status.read_text())
        for i, eid in enumerate(edge_ids):
            mine = st["scanners"][i::n_edges]
            lines = [
                "[edge]",
                f'id = "{eid}"',
                f'key = "keys/{eid}.key"',
                'cir_public = "keys/cir.pub"',
                f'central = "tcp://127.0.0.1:{listen}"',
                f'state_dir = "spool-{eid}"',
                "",
            ]
            for s in mine:
                lines += [
                    "[[scanner]]",
                    f'id = "{s["name"]}"',
                    f'serial = "{s["serial"]}"',
                    f'data = "{s["data_host"]}:{s["data_port"]}"',
                    f"block_ms = {block_ms}",
                    f"block_lines = {block_lines}",
                    "",
                ]
            (work / f"{eid}.toml").write_text("\n".join(lines))
            start(eid, "edge", "--config", str(work / f"{eid}.toml"), "--log-level", "WARNING")
        print(f"running {scanners} scanners for {seconds:.0f} s …", file=sys.stderr, flush=True)
        expected = scanners * scans * (scan_lines + 16)
        _wait(
            lambda: _committed_count(work / "cir") >= expected,
            seconds * 4 + 120,
            "the CIR to hold every line of every scan",
            poll_s=1.0,
        )
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=60)
        emitted = _emitted(emit)
        res = _analyse(work / "cir", emitted, line_bytes)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    res.update(
        {
            "scanners": scanners,
            "seconds": seconds,
            "channels": channels,
            "line_rate": line_rate,
            "block_ms": block_ms,
            "edge_procs": n_edges,
            "offered_lines_per_s": round(
                scanners
                * scans
                * (scan_lines + 16)
                / (scans * (scan_lines + 16) / line_rate + (scans - 1) * INTERVAL_S),
                1,
            ),
            "zmq_ceiling_mb_per_s": round(zmq_mb, 1),
            "aes_ceiling_mb_per_s": round(aes_mb, 1),
            "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        }
    )
    return res


def _emitted(emit_dir: Path) -> dict[str, set[tuple[int, int, int]]]:
    out: dict[str, set[tuple[int, int, int]]] = {}
    for f in sorted(emit_dir.glob("*.emit.log")):
        name = f.name.split(".")[0]
        keys: set[tuple[int, int, int]] = set()
        for line in f.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                keys.add((int(parts[0]), int(parts[1]), int(parts[2]) & 3))
        out[name] = keys
    return out


def _committed_count(cir_dir: Path) -> int:
    db = Sql(database_target(cir_dir), read_only=True)
    try:  # cheap: per finished scan, not per block
        return int(
            db.value(
                "SELECT COALESCE(SUM(lines_received + calib_lines), 0) AS n FROM scans "
                "WHERE status != 'scanning'"
            )
        )
    finally:
        db.close()


def _analyse(
    cir_dir: Path, emitted: dict[str, set[tuple[int, int, int]]], line_bytes: int
) -> dict[str, Any]:
    """Throughput = committed lines / (last commit - first emission); latency per line."""
    cir = Cir(cir_dir)
    try:
        return analyse_cir(cir, emitted, line_bytes)
    finally:
        cir.close()


def analyse_cir(
    cir: Cir,
    emitted: dict[str, set[tuple[int, int, int]]],
    line_bytes: int,
    on_block: Any = None,
) -> dict[str, Any]:
    """Throughput and per-line latency of what ``cir`` committed of the ``emitted`` lines
    (per scanner: ``(scan_id, line_no, flags & 3)``), each line ``line_bytes`` bytes.

    Throughput = committed lines / (last commit - first emission); latency = a line's
    block's ``committed_ns`` - the line's emission time, in ms.  ``on_block(scanner,
    raw)`` sees each committed data block's sealed bytes in chain order.
    """
    lat: list[float] = []
    committed_lines = 0
    first_ts, last_commit = 2**63, 0
    lost = dup = 0
    for scanner, want in emitted.items():
        seen: dict[tuple[int, int, int], int] = {}
        for row in cir.stream_blocks(scanner):
            if row["kind"] != "data":
                continue
            b = cir.read_block(row["hash"])
            if on_block is not None:
                on_block(scanner, b.raw)
            sid = int(b.meta["scan_id"])
            for e in b.index:
                k = (sid, e.line_no, e.flags & 3)
                seen[k] = seen.get(k, 0) + 1
                committed_lines += 1
                first_ts = min(first_ts, e.ts_ns)
                last_commit = max(last_commit, row["committed_ns"])
                lat.append((row["committed_ns"] - e.ts_ns) / 1e6)
        lost += len(want - seen.keys())
        dup += sum(c - 1 for c in seen.values() if c > 1)
    secs = max(1e-9, (last_commit - first_ts) / 1e9)
    arr = np.asarray(lat) if lat else np.asarray([float("nan")])
    return {
        "lines_per_s": round(committed_lines / secs, 1),
        "mb_per_s": round(committed_lines * line_bytes / secs / 1e6, 2),
        "wall_s": round(secs, 2),
        "lines_emitted": sum(len(v) for v in emitted.values()),
        "lost": lost,
        "duplicated": dup,
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
        "max_ms": round(float(arr.max()), 2),
        "mean_ms": round(statistics.fmean(lat), 2) if lat else None,
    }
