"""A whole installation in a temporary folder: central, simulators and edge as processes.

Each part runs as in the field, as its own ``nii`` process on real sockets and a
real pty; the test talks to them only through files, sockets and signals.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from central import Cir
from central._reader import Line, iter_lines
from core.keys import CirKey, EdgeKey
from core.net import free_port
from core.seal import Opener


def wait_until(cond: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    """Poll ``cond`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def start_tail(cluster: Cluster) -> tuple[subprocess.Popen[str], Path]:
    """``nii control-room tail`` on the cluster's feed, printing into a file (it flushes
    each event): the process and the file."""
    log = cluster.base / "tail.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "nii", "control-room", "tail",
             "--feed", cluster.feed, "--no-previews"],
            cwd=cluster.base, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    return proc, log


class Cluster:
    def __init__(
        self,
        base: Path,
        *,
        edge_id: str = "edge-t",
        database: str = "",
        s3: Any = None,
    ) -> None:
        """``database`` (a PostgreSQL URL) and ``s3`` (a ``nii._local_servers`` object
        store) make it a national CIR; default the embedded one (SQLite and files)."""
        self.base = base
        self.database = database
        self.s3 = s3
        self.edge_id = edge_id
        self.keys = base / "keys"
        self.cir_key = CirKey.generate()
        self.cir_key.save(self.keys)
        self.edge_key = EdgeKey.generate(edge_id)
        self.edge_key.save(self.keys)
        self.listen = f"tcp://127.0.0.1:{free_port()}"
        self.feed = f"tcp://127.0.0.1:{free_port()}"
        self.central_toml = base / "central.toml"
        #: aggregator name → (configuration, listen endpoint); the edge lists them all
        self.aggregators: dict[str, tuple[Path, str]] = {
            "central": (self.central_toml, self.listen)
        }
        self.feeds = {"central": self.feed}  # aggregator name → its live feed
        national = ""
        if database:
            national += f'cir = "{database}"\n'
        if s3 is not None:
            national += (
                f'blobs = "s3://{s3.extra["bucket"]}/{base.name}"\n'
                f's3_endpoint = "{s3.url}"\ns3_credentials = "{s3.extra["credentials"]}"\n'
            )
        self._national = national
        self.central_toml.write_text(
            f'[central]\nlisten = "{self.listen}"\nfeed = "{self.feed}"\n'
            'state_dir = "cir"\nkey = "keys/cir.key"\npreview_hz = 5\n' + national
        )
        self.logs = base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.status_file = base / "sim" / "status.json"
        self.emit_dir = base / "emit"
        self.edge_toml = base / "edge.toml"

    # -- processes -----------------------------------------------------------------------
    def nii(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-P", "-m", "nii", *args],
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        old = self.procs.get(name)
        assert old is None or old.poll() is not None, f"{name} is already running"
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(
            [sys.executable, "-P", "-m", "nii", *args],
            cwd=self.base,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        self.procs[name] = p
        return p

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[name]
        p.send_signal(sig)
        p.wait(timeout=20)

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def log_tail(self, n: int = 30) -> str:
        out = []
        for f in sorted(self.logs.glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()[-n:]
            out.append(f"== {f.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def enroll(self) -> None:
        r = self.nii(
            "central",
            "enroll",
            "--create",  # a new installation: the CIR is made here, before central runs
            "--config",
            str(self.central_toml),
            str(self.keys / f"{self.edge_id}.pub"),
        )
        assert r.returncode == 0, r.stderr

    def start_central(self, name: str = "central") -> None:
        self.start(name, "central", "--config", str(self.aggregators[name][0]))

    def add_aggregator(self, name: str, **settings: Any) -> Path:
        """Another aggregator on the same national CIR (its own ports and local state);
        ``settings`` (TOML values) go into its ``[central]`` table."""
        assert self.database, "aggregators share a CIR only on PostgreSQL"
        listen, feed = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        toml = self.base / f"{name}.toml"
        toml.write_text(
            f'[central]\nlisten = "{listen}"\nfeed = "{feed}"\nstate_dir = "cir-{name}"\n'
            'key = "keys/cir.key"\npreview_hz = 5\n'
            + self._national
            + "".join(f"{k} = {v}\n" for k, v in settings.items())
        )
        self.aggregators[name] = (toml, listen)
        self.feeds[name] = feed
        return toml

    def start_sim(self, *args: str, scanners: int = 2, name: str = "sim") -> list[dict[str, Any]]:
        """Start a ``nii sim`` process; ``name`` tells a second one (its own folder) apart."""
        folder = self.base / name
        status = self.status_file if name == "sim" else folder / "status.json"
        emit = self.emit_dir if name == "sim" else self.emit_dir / name
        status.unlink(missing_ok=True)
        self.start(
            name,
            "sim",
            "--scanners",
            str(scanners),
            "--serial-dir",
            str(folder),
            "--status-file",
            str(status),
            "--emit-log-dir",
            str(emit),
            *args,
        )
        wait_until(status.exists, 60, f"the simulators' status file ({name})")
        scanners_doc: list[dict[str, Any]] = json.loads(status.read_text())["scanners"]
        return scanners_doc

    def write_edge_config(self, scanners: list[dict[str, Any]], **extra: Any) -> None:
        """One ``[[scanner]]`` per simulated scanner; ``extra`` settings (TOML values) go
        into each, and a scanner's own ``id`` and ``settings`` (TOML values) win."""
        lines = [
            "[edge]",
            f'id = "{self.edge_id}"',
            f'key = "keys/{self.edge_id}.key"',
            'cir_public = "keys/cir.pub"',
            "central = " + json.dumps([ep for _, ep in self.aggregators.values()])
            if len(self.aggregators) > 1
            else f'central = "{self.listen}"',
            'state_dir = "edge"',
            "heartbeat_s = 0.5",
            "",
        ]
        for s in scanners:
            settings = {**extra, **s.get("settings", {})}
            lines += [
                "[[scanner]]",
                f'id = "{s.get("id", s["name"])}"',
                f'serial = "{s["serial"]}"',
                f'data = "{s["data_host"]}:{s["data_port"]}"',
                *[f"{k} = {v}" for k, v in settings.items()],
                "",
            ]
        self.edge_toml.write_text("\n".join(lines))

    def commission(self, model: str | None = None, *, detector_seed: int = 1) -> str:
        """Commission a simulated scanner model (its wedge scan and calibration file, as
        ``nii sim wedges`` + ``nii atr calibrate``); the TOML value for ``calibration =``
        (a path relative to the edge configuration)."""
        from nii._demo import commission

        path = commission(self.base / "commissioning", model, detector_seed=detector_seed)
        return json.dumps(path.relative_to(self.base).as_posix())

    def start_edge(self) -> None:
        self.start("edge", "edge", "--config", str(self.edge_toml))

    # -- looking at results --------------------------------------------------------------
    def emitted(self, scanner: str) -> list[tuple[int, int, int, str]]:
        f = self.emit_dir / f"{scanner}.emit.log"
        if not f.exists():
            return []
        out = []
        for line in f.read_text().splitlines():
            p = line.split()
            if len(p) == 4:
                out.append((int(p[0]), int(p[1]), int(p[2]), p[3]))
        return out

    def open_cir(self) -> Cir:
        """The CIR central writes, on whichever engines this cluster uses."""
        from central._cir import open_cir
        from core.config import CentralConfig

        return open_cir(CentralConfig.load(self.central_toml))

    def committed(self, scanner: str) -> list[Line]:
        cir = self.open_cir()
        try:
            return list(iter_lines(cir, Opener(self.cir_key.x25519_private), scanner))
        finally:
            cir.close()

    def committed_keys(self, scanner: str) -> list[tuple[int, int, int, str]]:
        return [
            (ln.scan_id, ln.line_no, ln.flags, hashlib.sha256(ln.payload).hexdigest())
            for ln in self.committed(scanner)
        ]

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.database:
            from central._sql import Sql

            pg = Sql(self.database)
            try:
                return [tuple(r.values()) for r in pg.rows(query, args)]
            except Exception:  # not made yet
                return []
            finally:
                pg.close()
        db = self.base / "cir" / "cir.sqlite"
        if not db.exists():
            return []
        con = sqlite3.connect(db, timeout=10)
        try:
            return con.execute(query, args).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()

    def scans(self, scanner: str) -> list[tuple[Any, ...]]:
        return self.sql(
            "SELECT scan_id, status, lines_received, lines_planned, gaps FROM scans "
            "WHERE scanner = ? ORDER BY ref",
            scanner,
        )

    def finished_scans(self, scanner: str) -> int:
        return len([s for s in self.scans(scanner) if s[1] != "scanning"])

    def edge_status(self) -> dict[str, Any]:
        f = self.base / "edge" / "status.json"
        try:
            doc: dict[str, Any] = json.loads(f.read_text())
            return doc
        except (OSError, ValueError):
            return {}

    def alarms(self, kind: str | None = None) -> list[tuple[Any, ...]]:
        if kind:
            return self.sql("SELECT kind, scanner, message FROM alarms WHERE kind = ?", kind)
        return self.sql("SELECT kind, scanner, message FROM alarms")
