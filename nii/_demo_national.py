"""``nii demo --national``: two aggregators on one national CIR, and a failover.

Starts, on loopback and from the project's own binaries, a PostgreSQL server
(metadata) and a SeaweedFS S3 gateway (blobs), two ``nii central`` processes
sharing them, four simulated scanners and one edge that lists both aggregators.
The scanners start spread over the two aggregators; after ``kill_after_s`` the
first aggregator is killed (SIGKILL) in the middle of its scans, and the feed
shows its scanners' edge moving to the other one (``central_failover``) and
their scans finishing there, nothing lost (``nii cir verify`` afterwards).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import uvloop

from central._cir import open_cir
from central._feed import tail
from core.config import CentralConfig
from core.errors import ConfigError
from core.keys import CirKey, EdgeKey, EdgePublic
from core.locks import hold
from core.net import free_port
from nii._demo import EDGE_ID, _nii, _stop, _wait_file, commission, nii_command, write_edge_config
from nii._demo_site import detached
from nii._local_servers import LocalServer, closed_to_nobody, start_postgres, start_s3

AGGREGATORS = ("riac-a", "riac-b")
SCANNERS = 4


def run_national_demo(base: Path, *, seconds: float = 0, kill_after_s: float = 20.0) -> int:
    """Run the national demo in ``base`` until Ctrl-C (or ``seconds``); the exit status.

    Raises:
        ConfigError: ``seconds`` < 0 or ``kill_after_s`` <= 0.
        LockedError: a demo already runs in ``base``.
        NiiError: PostgreSQL or SeaweedFS is not installed or does not start.
    """
    if seconds < 0 or kill_after_s <= 0:
        raise ConfigError(
            f"seconds must be >= 0 and --kill-after > 0 (got {seconds:g}, {kill_after_s:g})",
            fix="e.g. nii demo --national --kill-after 20",
        )
    base = base.resolve()
    lock = hold(base, "a demo", name="demo")
    try:
        return _run(base, seconds, kill_after_s)
    finally:
        lock.release()


def postgres_dir(base: Path) -> Path:
    """The PostgreSQL cluster's folder: in the demo folder, unless the server (run as
    'nobody' under root) could not reach it there; then one of its own under the
    system's temporary folder, kept for the next run of the same demo folder."""
    if closed_to_nobody(base) is None:
        return base / "postgres"
    tag = hashlib.sha256(str(base).encode()).hexdigest()[:10]
    where = Path(tempfile.gettempdir()) / f"nii-demo-postgres-{tag}"
    return where


def _configs(base: Path, pg: LocalServer, s3: LocalServer) -> dict[str, tuple[Path, str, str]]:
    """Keys, one configuration per aggregator, the edge enrolled in the national CIR;
    aggregator name → (configuration, listen endpoint, feed endpoint)."""
    keys = base / "keys"
    if not (keys / "cir.key").exists():
        CirKey.generate().save(keys, force=True)
    if not (keys / f"{EDGE_ID}.key").exists():
        EdgeKey.generate(EDGE_ID).save(keys, force=True)
    out = {}
    for name in AGGREGATORS:
        listen, feed = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        toml = base / f"{name}.toml"
        toml.write_text(
            "[central]\n"
            f'name = "{name}"\n'
            f'listen = "{listen}"\n'
            f'feed = "{feed}"\n'
            f'state_dir = "{name}"\n'
            'key = "keys/cir.key"\n'
            "preview_hz = 1\n"
            f'cir = "{pg.url}"\n'
            f'blobs = "s3://{s3.extra["bucket"]}/demo"\n'
            f's3_endpoint = "{s3.url}"\n'
            f's3_credentials = "{s3.extra["credentials"]}"\n'
        )
        out[name] = (toml, listen, feed)
    cir = open_cir(CentralConfig.load(out[AGGREGATORS[0]][0]), create=True)
    try:
        if cir.edge(EDGE_ID) is None:
            cir.enroll(EdgePublic.load(keys / f"{EDGE_ID}.pub"), note="national demo")
    finally:
        cir.close()
    return out


def _run(base: Path, seconds: float, kill_after_s: float) -> int:
    (base / "logs").mkdir(parents=True, exist_ok=True)
    print("starting PostgreSQL and the S3 object store (SeaweedFS) on loopback …", flush=True)
    servers: list[LocalServer] = []
    procs: list[subprocess.Popen[bytes]] = []
    first: list[subprocess.Popen[bytes]] = []
    aggs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(base / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        p = subprocess.Popen(
            _nii(*args), stdout=log, stderr=subprocess.STDOUT, cwd=base, **detached()
        )
        procs.append(p)
        return p

    verified = True  # until the closing `nii cir verify` says otherwise
    try:
        pg_dir = postgres_dir(base)
        if not pg_dir.is_relative_to(base):
            print(
                f"(PostgreSQL runs as 'nobody', who cannot reach {base}: its data is in {pg_dir})"
            )
        servers.append(start_postgres(pg_dir, database="nii"))
        servers.append(start_s3(base / "s3"))
        pg, s3 = servers
        cfgs = _configs(base, pg, s3)
        for name, (toml, _, _) in cfgs.items():
            aggs[name] = start(name, "central", "--config", str(toml))
        status_file = base / "sim" / "status.json"
        status_file.unlink(missing_ok=True)
        start(
            "sim",
            "sim",
            "--scanners",
            str(SCANNERS),
            "--serial-dir",
            str(base / "sim"),
            "--status-file",
            str(status_file),
            "--scan-lines",
            "1500",
            "--interval",
            "4",
            "--source",
            "physics",
            "--seed",
            str(int(time.time()) % 100000),
        )
        calibration = commission(base / "commissioning")
        _wait_file(status_file, procs, 30)
        status = json.loads(status_file.read_text())
        edge_toml = write_edge_config(
            base, [listen for _, listen, _ in cfgs.values()], status, None, calibration
        )
        first.append(start("edge", "edge", "--config", str(edge_toml)))
        nii = nii_command()
        feeds = [feed for _, _, feed in cfgs.values()]
        one = shlex.quote(str(cfgs[AGGREGATORS[1]][0]))
        print(
            f"""
NII national demo: two aggregators ({", ".join(AGGREGATORS)}) sharing one CIR,
{SCANNERS} simulated scanners, one edge listing both aggregators.
  metadata (PostgreSQL):  {pg.url}
  blobs (S3, SeaweedFS):  {s3.url}  bucket {s3.extra["bucket"]}
  logs:                   {base / "logs"}
  live feed (both):       {nii} control-room tail {" ".join(f"--feed {f}" for f in feeds)}
  scans in the CIR:       {nii} cir scans --config {one}
  verify the evidence:    {nii} cir verify --config {one}
In {kill_after_s:.0f} s aggregator {AGGREGATORS[0]} is killed (SIGKILL) mid-scan: watch its
scanners fail over to {AGGREGATORS[1]}. Live feed follows (Ctrl-C stops the demo).
""",
            flush=True,
        )

        async def follow() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            if seconds > 0:
                loop.call_later(seconds, stop.set)

            def kill() -> None:
                victim = AGGREGATORS[0]
                print(
                    f"*** killing aggregator {victim} (SIGKILL) mid-scan; its scanners' edge "
                    f"fails over to {AGGREGATORS[1]} ***",
                    flush=True,
                )
                aggs[victim].kill()

            loop.call_later(kill_after_s, kill)

            async def watch() -> None:
                while not stop.is_set():
                    others = [p for p in procs if p is not aggs[AGGREGATORS[0]]]
                    if any(p.poll() is not None for p in others):
                        print("a demo process stopped; see the logs", flush=True)
                        stop.set()
                    await asyncio.sleep(0.5)

            w = asyncio.create_task(watch())
            await tail(feeds, previews=False, stop=stop)
            w.cancel()

        uvloop.run(follow())
    finally:
        _stop(first)
        _stop(list(reversed(procs)))
        if len(servers) == 2 and (base / f"{AGGREGATORS[1]}.toml").exists():
            # while the servers still run: every chain, across the failover, verifies
            survivor = str(base / f"{AGGREGATORS[1]}.toml")
            r = subprocess.run(
                _nii("cir", "verify", "--config", survivor),
                capture_output=True,
                text=True,
                cwd=base,
            )
            print(r.stdout.strip() or r.stderr.strip(), flush=True)
            verified = r.returncode == 0
        for server in reversed(servers):
            server.stop()
    print(f"demo stopped; its CIR's database and objects stay under {base}")
    if not verified:
        print("the CIR did not verify across the failover (above): the demo failed")
        return 1
    return 0


__all__ = ["postgres_dir", "run_national_demo"]
