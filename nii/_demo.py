"""``nii demo``: the whole live path on loopback, with embedded defaults.

Creates keys and configuration under one folder, enrolls the demo edge, starts
the central aggregator, simulated scanners and the edge daemon as separate
processes (as in the field), and prints the control-room feed.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import uvloop

from central import Cir
from central._feed import tail
from core.errors import ConfigError, NiiError
from core.keys import CirKey, EdgeKey, EdgePublic
from core.locks import hold
from core.net import free_port
from nii._demo_site import (
    detached,
    drill,
    edge_mqtt_lines,
    scanner_safety_lines,
    start_broker,
)

EDGE_ID = "edge-demo"
#: the demo's control-room accounts: login name → (role, password, options)
DEMO_USERS = {
    "officer": ("officer", "demo-officer", {"sites": ("demo-port",)}),
    "supervisor": ("supervisor", "demo-supervisor", {"region": "demo-region"}),
    "analyst": ("analyst", "demo-analyst", {}),
    "auditor": ("auditor", "demo-auditor", {}),
    "admin": ("admin", "demo-admin-pw", {}),
}


def control_room(base: Path, central_toml: Path, feed: str, scanners: int) -> str:
    """Write the demo's ``control-room.toml`` (one site with every simulated scanner,
    port 8080 when it is free) and its accounts (:data:`DEMO_USERS`, made once);
    returns the file's path."""
    from central._cir import database_target
    from central.control_room._accounts import Accounts

    port = 8080
    try:
        import socket

        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    except OSError:
        port = free_port()
    toml = base / "control-room.toml"
    names = ", ".join(f'"scanner{i + 1}"' for i in range(scanners))
    toml.write_text(
        "[control_room]\n"
        f'listen = "127.0.0.1:{port}"\n'
        f'central = "{central_toml.name}"\n'
        f'feeds = ["{feed}"]\n'
        'signing_key = "keys/control-room.sign"\n'
        "tip_rate = 0.05\n"
        "# the simulator's record of what it put in each scan: a demo only\n"
        'demo_truth = "sim/truth.jsonl"\n\n'
        "[[site]]\n"
        'name = "demo-port"\n'
        'region = "demo-region"\n'
        f"scanners = [{names}]\n"
    )
    with Accounts(database_target(base / "cir"), known_sites=["demo-port"],
                  known_regions=["demo-region"]) as accounts:  # fmt: skip
        for name, (role, password, opts) in DEMO_USERS.items():
            if accounts.user(name) is None:
                accounts.add(name, role, password, **opts)  # type: ignore[arg-type]
    return str(toml)


DRILL = "\n  safety drill:          door-a of scanner1 opens 8 s into the feed, for 3 s"


def _nii(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "nii", *args]


def _wait_file(path: Path, procs: list[subprocess.Popen[bytes]], deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while not path.exists():
        for p in procs:
            if p.poll() is not None:
                raise NiiError(
                    f"a demo process exited early with status {p.returncode}",
                    fix=f"read the logs in {path.parent.parent}/logs",
                )
        if time.monotonic() > end:
            raise NiiError(
                f"{path} did not appear in {deadline_s:.0f} s",
                fix="check the simulator log under the demo folder's logs/",
            )
        time.sleep(0.05)


def prepare(base: Path) -> dict[str, str]:
    """Keys, configs and enrollment; returns the paths of what it made."""
    keys = base / "keys"
    if not (keys / "cir.key").exists():
        CirKey.generate().save(keys, force=True)
    if not (keys / f"{EDGE_ID}.key").exists():
        EdgeKey.generate(EDGE_ID).save(keys, force=True)
    listen, feed = free_port(), free_port()
    central_toml = base / "central.toml"
    central_toml.write_text(
        "[central]\n"
        f'listen = "tcp://127.0.0.1:{listen}"\n'
        f'feed = "tcp://127.0.0.1:{feed}"\n'
        'state_dir = "cir"\n'
        'key = "keys/cir.key"\n'
        "preview_hz = 1\n"
    )
    cir = Cir(base / "cir")
    try:
        pub = EdgePublic.load(keys / f"{EDGE_ID}.pub")
        if cir.edge(EDGE_ID) is None:
            cir.enroll(pub, note="demo")
    finally:
        cir.close()
    return {
        "central": str(central_toml),
        "feed": f"tcp://127.0.0.1:{feed}",
        "listen": f"tcp://127.0.0.1:{listen}",
    }


def _room_url(toml: str) -> str:
    from central.control_room._config import ControlRoomConfig

    cfg = ControlRoomConfig.load(Path(toml))
    return f"http://{cfg.host}:{cfg.port}/"


def commission(
    folder: Path, model: str | None = None, *, detector_seed: int = 1, seed: int = 0
) -> Path:
    """Commission a simulated scanner: its step-wedge scan and its calibration file.

    What a site does when a scanner is installed, done in this process with the
    functions behind ``nii sim wedges --model NAME --out DIR`` and ``nii atr
    calibrate --wedges DIR --out FILE`` (about 1.5 s together). A calibration
    already in ``folder`` for the same model and detector array is reused.

    Args:
        folder: where the wedge scan (``<name>-wedges/``) and the calibration
            (``<name>.json``) go; created if missing.
        model: the simulator's scanner model (``nii sim models``); None: the default.
        detector_seed: the unit's detector array, as ``nii sim --detector-seed``.
        seed: the wedge scan's noise seed.

    Returns:
        The calibration file, for ``calibration =`` in the edge's ``[[scanner]]``.

    Raises:
        ConfigError: no scanner model of that name, or ``folder`` cannot be written.
        CalibrationError: the wedge scan cannot be fitted.
    """
    import datetime as dt

    from core.scanner_cal import ScannerCalibration, fit, load_wedges
    from firmware_sim.physics import scanner_model, write_wedge_scan

    m = scanner_model(model)
    name = f"{m.name}-d{detector_seed}"
    out = folder / f"{name}.json"
    if out.exists():
        try:
            ScannerCalibration.load(out)
            return out
        except NiiError:
            pass  # damaged: commission again
    wedges = write_wedge_scan(folder / f"{name}-wedges", m, seed, detector_seed=detector_seed)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    cal = fit(load_wedges(wedges), created=created)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(cal.to_json(), indent=1) + "\n")
    tmp.replace(out)
    return out


def write_edge_config(
    base: Path,
    central: str | list[str],
    status: dict[str, object],
    mqtt_port: int | None = None,
    calibration: Path | None = None,
) -> Path:
    """The demo edge's config; with ``mqtt_port``, site safety over that broker (R5); with
    ``calibration``, every scanner's commissioning calibration (:func:`commission`);
    ``central`` one aggregator endpoint or several (the edge fails over between them)."""
    lines = [
        "[edge]",
        f'id = "{EDGE_ID}"',
        f'key = "keys/{EDGE_ID}.key"',
        'cir_public = "keys/cir.pub"',
        f"central = {json.dumps(central)}",
        'state_dir = "edge"',
        "",
        *(edge_mqtt_lines(mqtt_port) if mqtt_port else []),
    ]
    for s in status["scanners"]:  # type: ignore[attr-defined]
        lines += [
            "[[scanner]]",
            f'id = "{s["name"]}"',
            f'serial = "{s["serial"]}"',
            f'data = "{s["data_host"]}:{s["data_port"]}"',
            *(scanner_safety_lines() if mqtt_port else []),
            *([f'calibration = "{_rel(calibration, base)}"'] if calibration else []),
            "",
        ]
    path = base / "edge.toml"
    path.write_text("\n".join(lines))
    return path


def nii_command() -> str:
    """How to run ``nii`` from the user's shell, as printed in the banner.

    ``nii`` when the one on PATH is this installation's, else the path of this
    environment's ``bin/nii`` (relative to the current folder when inside it).
    """
    here = Path(sys.prefix) / "bin" / "nii"
    on_path = shutil.which("nii")
    if on_path and here.exists() and Path(on_path).resolve() == here.resolve():
        return "nii"
    if not here.exists():
        return f"{Path(sys.executable).name} -m nii"
    try:
        rel = here.relative_to(Path.cwd())
        return shlex.quote(str(rel))
    except ValueError:
        return shlex.quote(str(here))


def run_demo(base: Path, *, seconds: float = 0, scanners: int = 2) -> int:
    """Run the demo in ``base`` until Ctrl-C (or ``seconds``); returns the exit status.

    Raises:
        ConfigError: ``scanners`` < 1, or ``seconds`` < 0.
        LockedError: a demo already runs in ``base`` (it names the pid); nothing
            there is changed.
    """
    if scanners < 1 or seconds < 0:
        raise ConfigError(
            f"a demo needs at least one scanner and seconds >= 0 (got {scanners}, {seconds:g})",
            fix="e.g. nii demo --scanners 2",
        )
    base = base.resolve()
    lock = hold(base, "a demo", name="demo")  # before anything in the folder is touched
    try:
        return _run_demo(base, seconds, scanners)
    finally:
        lock.release()


def _run_demo(base: Path, seconds: float, scanners: int) -> int:
    (base / "logs").mkdir(parents=True, exist_ok=True)
    paths = prepare(base)
    nii = nii_command()
    feed, listen = paths["feed"], paths["listen"]
    status_file = base / "sim" / "status.json"
    status_file.unlink(missing_ok=True)
    procs: list[subprocess.Popen[bytes]] = []

    first: list[subprocess.Popen[bytes]] = []  # stopped before the others: the edge

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(base / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        p = subprocess.Popen(
            _nii(*args), stdout=log, stderr=subprocess.STDOUT, cwd=base, **detached()
        )
        procs.append(p)
        return p

    try:
        start("central", "central", "--config", paths["central"])
        room = control_room(base, Path(paths["central"]), feed, scanners)
        start("control-room", "control-room", "serve", "--config", room)
        site = start_broker(base)  # Mosquitto, else amqtt, else none (nii._demo_site)
        procs.extend(site.procs)
        if site.port is not None:
            start(
                "site",
                "site-sim",
                "--broker",
                f"127.0.0.1:{site.port}",
                "--scanners",
                str(scanners),
                "--refresh",
                "0.5",
            )
        start(
            "sim",
            "sim",
            "--scanners",
            str(scanners),
            "--serial-dir",
            str(base / "sim"),
            "--status-file",
            str(status_file),
            "--truth-log",
            str(base / "sim" / "truth.jsonl"),
            "--scan-lines",
            "1500",
            "--interval",
            "4",
            "--source",
            "physics",
            "--seed",
            str(int(time.time()) % 100000),
        )
        # commissioning while the simulator starts: the scanners' calibration (~1.5 s)
        calibration = commission(base / "commissioning")
        _wait_file(status_file, procs, 30)
        status = json.loads(status_file.read_text())
        edge_toml = write_edge_config(base, listen, status, site.port, calibration)
        first.append(start("edge", "edge", "--config", str(edge_toml)))
        accounts = "\n".join(
            f"    {role:<11} {name:<11} password {pw}" for name, (role, pw, _) in DEMO_USERS.items()
        )
        print(
            f"""
NII demo running: central aggregator, {scanners} simulated scanners (pty + TCP), one edge daemon.
  control room:          {_room_url(room)}  (open it in a browser; demo accounts:)
{accounts}
  CIR (SQLite + blobs):  {base / "cir"}
  logs:                  {base / "logs"}
  live feed:             {nii} control-room tail --feed {feed}
  scans in the CIR:      {nii} cir scans --config {_q(paths["central"])}
  verify the evidence:   {nii} cir verify --config {_q(paths["central"])}
  scanner calibration:   {nii} cir calibration scanner1 --config {_q(paths["central"])}
  scanner availability:  {nii} uptime report --config {_q(paths["central"])}
  site telemetry:        {site.note}{DRILL if site.port else ""}
Live feed follows (Ctrl-C stops the demo).
""",
            flush=True,
        )
        import asyncio

        async def follow() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGINT, stop.set)
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            if seconds > 0:
                loop.call_later(seconds, stop.set)

            async def watch() -> None:
                while not stop.is_set():
                    if any(p.poll() is not None for p in procs):
                        print("a demo process stopped; see the logs", flush=True)
                        stop.set()
                    await asyncio.sleep(0.5)

            w = asyncio.create_task(watch())
            d = asyncio.create_task(drill(site.port, at_s=8, hold_s=3)) if site.port else None
            await tail(feed, stop=stop)
            w.cancel()
            if d is not None:
                d.cancel()

        uvloop.run(follow())
    finally:
        # the edge first, while the scanners and the site broker it watches still run
        # (stopping them under it would look like a fault), then everything else
        _stop(first)
        _stop(list(reversed(procs)))
    print(
        f"demo stopped; the CIR stays in {base / 'cir'} "
        f"({nii} cir scans --config {_q(paths['central'])})"
    )
    return 0


def _stop(procs: list[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """SIGTERM each running process, then wait for each (SIGKILL after ``timeout_s``)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _rel(path: Path, base: Path) -> str:
    """``path`` as the edge configuration in ``base`` writes it: relative when inside."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _q(path: str) -> str:
    return shlex.quote(path)


__all__ = ["commission", "prepare", "run_demo", "write_edge_config"]
