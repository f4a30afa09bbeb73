"""``nii bench faults``: field faults against a whole installation, measured from outside.

Each scenario starts a fresh installation in a temporary folder (one ``nii
central``, one ``nii sim --scanners 2``, one ``nii edge``: real processes on real
ptys, TCP and ZeroMQ sockets, SQLite files), lets the scanners scan, applies one
fault (a restarted scanner, a serial device removed and brought back, a full disk
at the edge or at central, a network partition, a SIGKILL), ends it, and then
compares what the simulators emitted (their emit logs, a SHA-256 per line) with
what the CIR holds, line by line, decrypted. What the numbers mean is in
``docs/reliability.md``.

The fault tools (:class:`Tmpfs`, :func:`fill`, :func:`free`,
:class:`BlackholeProxy`, :class:`VethLink`, :class:`SocatLink`) live here, beside the scenarios, so
that the installed ``nii bench faults`` has them; the system tests import them
through ``tests/system/_faults.py``.

Processes that exit without being told to are counted and restarted after
:data:`RESTART_S`, as systemd does in the field (``Restart=on-failure``,
``RestartSec=5s`` in ``systemd/``).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from central import Sql, is_sql_error
from core.errors import ConfigError, NiiError
from core.keys import CirKey, EdgeKey
from core.net import free_port

#: s before a process that exited by itself is started again (systemd's RestartSec=5s)
RESTART_S = 5.0
#: s after a fault ends within which every affected scanner must commit again (issue 13)
RECOVERY_TARGET_S = 5.0
#: s without a new emitted line after which a simulator counts as no longer scanning
STALL_S = 15.0
#: alarm kinds that account for lines inside a GAP block ("data_lost" and its kin)
GAP_ALARM_WORDS = ("lost", "violation", "incomplete", "gap")

SCENARIOS = (
    "scanner_restart",
    "scanner_restart_edge_down",
    "device_replug",
    "disk_full_edge",
    "disk_full_central",
    "partition",
    "partition_veth",
    "sigkill_central",
    "sigkill_edge",
)


class FaultToolError(NiiError):
    """A fault could not be set up (no root for a mount, socat missing, a port taken)."""


# ======================================================================================
# Fault tools
# ======================================================================================
class Tmpfs:
    """A small tmpfs mounted on ``path``, so that a process's folder can be filled.

    Args:
        path: the folder to mount on (created if missing).
        size_bytes: the file system's size, bytes.

    Raises:
        FaultToolError: not root (a tmpfs mount needs CAP_SYS_ADMIN in the initial
            namespace; ``unshare`` does not reach other processes), or mount failed.
    """

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = Path(path)
        self.size_bytes = int(size_bytes)
        self.mounted = False

    def mount(self) -> Tmpfs:
        """Mount it; returns self."""
        if os.geteuid() != 0:
            raise FaultToolError(
                f"mounting a tmpfs on {self.path} needs root",
                fix="run the disk-full scenarios as root (e.g. in the CI container or a VM)",
            )
        self.path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes},mode=0755", "tmpfs",
             str(self.path)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if r.returncode != 0:
            raise FaultToolError(
                f"mount -t tmpfs on {self.path} failed: {r.stderr.strip()}",
                fix="run as root in a namespace that may mount (docker: --privileged)",
            )
        self.mounted = True
        return self

    def umount(self) -> None:
        """Unmount (lazily if still busy); a no-op when not mounted."""
        if not self.mounted:
            return
        r = subprocess.run(["umount", str(self.path)], capture_output=True, check=False)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)
        self.mounted = False

    def __enter__(self) -> Tmpfs:
        return self.mount()

    def __exit__(self, *exc: object) -> None:
        self.umount()


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still put on ``path``'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave_bytes: int = 0) -> Path:
    """Fill ``path``'s file system until only ``leave_bytes`` are free.

    Args:
        path: a folder on the file system to fill.
        leave_bytes: bytes to leave free (0: none at all).

    Returns:
        The filler file; :func:`free` gives the space back.
    """
    f = Path(path) / f".nii-fill-{uuid.uuid4().hex[:8]}"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        size = max(0, free_bytes(path) - leave_bytes)
        if size:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError:
                size = 0
        if leave_bytes == 0:  # take what others freed or the allocation left, to the byte
            off = size
            for chunk in (1 << 20, 1 << 16, 4096, 512, 1):
                buf = b"\0" * chunk
                while True:
                    try:
                        n = os.pwrite(fd, buf, off)
                    except OSError:
                        break
                    off += n
    finally:
        os.close(fd)
    return f


def free(filler: Path) -> None:
    """Give back the space a :func:`fill` took (remove its filler file)."""
    with contextlib.suppress(FileNotFoundError):
        Path(filler).unlink()


class _Pair:
    """One proxied connection: client side ``a``, target side ``b``, a buffer each way."""

    def __init__(self, a: socket.socket, b: socket.socket) -> None:
        self.a, self.b = a, b
        self.to_b = bytearray()
        self.to_a = bytearray()
        self.a_eof = self.b_eof = False
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for s in (self.a, self.b):
            with contextlib.suppress(OSError):
                s.close()


class BlackholeProxy:
    """A TCP proxy on loopback that can stop forwarding without closing anything.

    While partitioned it neither accepts, reads nor writes: bytes stay where they
    are and nothing arrives either way, as with a pulled cable or a downed veth;
    no FIN or RST is sent. :meth:`heal` resumes forwarding what was held.

    Args:
        listen_port: port to listen on at 127.0.0.1 (0: a free one; see ``port``).
        target: ``(host, port)`` to forward each connection to.
    """

    _MAX_BUF = 4 << 20

    def __init__(self, listen_port: int, target: tuple[str, int]) -> None:
        self.target = target
        self._ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", listen_port))
        self._ls.listen(64)
        self._ls.setblocking(False)
        self.port: int = self._ls.getsockname()[1]
        self._pairs: list[_Pair] = []
        self._partitioned = threading.Event()
        self._stop = threading.Event()
        self.connections = 0
        self._t = threading.Thread(target=self._loop, name="blackhole-proxy", daemon=True)
        self._t.start()

    @property
    def partitioned(self) -> bool:
        """Whether forwarding is stopped."""
        return self._partitioned.is_set()

    def partition(self) -> None:
        """Stop forwarding in both directions (nothing is closed)."""
        self._partitioned.set()

    def heal(self) -> None:
        """Forward again, starting with what was held."""
        self._partitioned.clear()

    def close(self) -> None:
        """Stop the proxy and close every connection."""
        self._stop.set()
        self._t.join(timeout=5)
        for p in self._pairs:
            p.close()
        with contextlib.suppress(OSError):
            self._ls.close()

    def _accept(self) -> None:
        try:
            a, _ = self._ls.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            b = socket.create_connection(self.target, timeout=2)
        except OSError:
            a.close()
            return
        for s in (a, b):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pairs.append(_Pair(a, b))
        self.connections += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._partitioned.is_set():
                self._stop.wait(0.02)
                continue
            rd: list[Any] = [self._ls]
            wr: list[socket.socket] = []
            for p in self._pairs:
                if not p.a_eof and len(p.to_b) < self._MAX_BUF:
                    rd.append(p.a)
                if not p.b_eof and len(p.to_a) < self._MAX_BUF:
                    rd.append(p.b)
                if p.to_b:
                    wr.append(p.b)
                if p.to_a:
                    wr.append(p.a)
            try:
                r, w, _ = select.select(rd, wr, [], 0.02)
            except (OSError, ValueError):
                self._pairs = [p for p in self._pairs if not p.closed]
                continue
            if self._partitioned.is_set():
                continue  # the cable went between select and now: move nothing
            for p in list(self._pairs):
                self._pump(p, r, w)
            if self._ls in r:
                self._accept()
            self._pairs = [p for p in self._pairs if not p.closed]

    def _pump(self, p: _Pair, r: list[Any], w: list[Any]) -> None:
        for src, buf, eof_attr in ((p.a, p.to_b, "a_eof"), (p.b, p.to_a, "b_eof")):
            if src in r:
                try:
                    data = src.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    buf += data
                else:
                    setattr(p, eof_attr, True)
        for dst, buf in ((p.b, p.to_b), (p.a, p.to_a)):
            if dst in w and buf:
                try:
                    n = dst.send(buf)
                    del buf[:n]
                except BlockingIOError:
                    pass
                except OSError:
                    p.close()
                    return
        # a side that ended: pass the end on once its bytes are through
        if p.a_eof and not p.to_b:
            with contextlib.suppress(OSError):
                p.b.shutdown(socket.SHUT_WR)
        if p.b_eof and not p.to_a:
            with contextlib.suppress(OSError):
                p.a.shutdown(socket.SHUT_WR)
        if p.a_eof and p.b_eof and not p.to_a and not p.to_b:
            p.close()


class SocatLink:
    """A serial device behind a stable name that can be removed and brought back.

    ``socat`` makes a new pty with a symlink ``link`` and relays it to ``device``
    (the simulator's pty); :meth:`remove` ends socat, so the name vanishes as with
    a USB re-enumeration or a pulled cable; :meth:`restore` brings it back (a new
    pty behind the same name).

    Args:
        link: the stable name the edge opens.
        device: the pty the scanner (simulator) serves.

    Raises:
        FaultToolError: socat is missing or the link did not appear within 5 s.
    """

    def __init__(self, link: Path, device: Path) -> None:
        self.link = Path(link)
        self.device = Path(device)
        self.proc: subprocess.Popen[bytes] | None = None
        if shutil.which("socat") is None:
            raise FaultToolError(
                "socat is not installed", fix="install socat (apt-get install socat)"
            )

    def start(self) -> SocatLink:
        """Start relaying; returns self once ``link`` exists."""
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["socat", f"PTY,link={self.link},raw,echo=0", f"OPEN:{self.device},raw,echo=0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 5
        while not self.link.exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise FaultToolError(
                    f"socat did not make {self.link} (relaying {self.device})",
                    fix="check that the simulator's pty exists and socat can open it",
                )
            time.sleep(0.01)
        return self

    def remove(self) -> None:
        """End socat: the link and its pty vanish."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    def restore(self) -> SocatLink:
        """Bring the device back behind the same name."""
        return self.start()

    def alive(self) -> bool:
        """Whether socat still relays."""
        return self.proc is not None and self.proc.poll() is None


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise FaultToolError(
            f"ip {' '.join(args)} failed: {r.stderr.strip()}",
            fix="run as root where network namespaces may be made (docker: --privileged)",
        )


class VethLink:
    """A network namespace joined to this one by a veth pair: a cable that can be pulled.

    A process started with :meth:`prefix` runs in the namespace and is reached at
    ``ns_ip``; :meth:`partition` takes the host end down (``ip link set … down``), so
    packets go nowhere and TCP retransmits with its own back-off, as with the issue's
    veth reproduction; :meth:`heal` brings it up again.

    Raises:
        FaultToolError: not root, or ``ip`` could not make the namespace or the pair.
    """

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns = f"nii-f-{tag}"
        self.host_if, self.ns_if = f"niih{tag}", f"niin{tag}"
        net = 1 + int(tag, 16) % 250
        self.host_ip, self.ns_ip = f"10.213.{net}.1", f"10.213.{net}.2"
        self.made = False

    def up(self) -> VethLink:
        """Make the namespace and the pair; returns self."""
        if os.geteuid() != 0:
            raise FaultToolError(
                "a veth partition needs root", fix="run it as root, or use the proxy scenario"
            )
        _ip("netns", "add", self.ns)
        self.made = True
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.ns)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            for cmd in (
                ("addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if),
                ("link", "set", self.ns_if, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("netns", "exec", self.ns, "ip", *cmd)
        except BaseException:
            self.close()
            raise
        return self

    def prefix(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.ns]

    def partition(self) -> None:
        """Pull the cable: the host end goes down."""
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        """Plug it back in."""
        _ip("link", "set", self.host_if, "up")

    def close(self) -> None:
        """Remove the pair and the namespace (its processes should be gone)."""
        if not self.made:
            return
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
        self.made = False


def _free_port_pair() -> int:
    """A port p with p and p + 1 free on loopback (a simulator's two data ports)."""
    for _ in range(200):
        p = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise FaultToolError("no two adjacent free ports", fix="free some loopback ports")


# ======================================================================================
# An installation and its scenarios
# ======================================================================================
@dataclass
class Sizing:
    """How big and how long a scenario is.

    Attributes:
        scan_lines: image lines per scan.
        line_rate: lines per second per scanner.
        channels: detector channels per line.
        interval_s: seconds between scans.
        buffer_s: the simulators' replay buffer, s (a scanner's own memory).
        outage_s: how long a restarted scanner, a removed device or a killed process
            stays away, s.
        full_s: how long a disk stays full, s.
        partition_s: how long the network partition lasts, s.
        post_s: seconds of scanning after the fault has ended.
        slack_s: more scanning, s, as room for a slow start (processes, first HELLO).
        wait_s: how long to wait for progress after the fault before calling it none.
        scans: scans per scanner (0: as many as the fault's timeline needs).
        seed: the simulators' seed.
    """

    scan_lines: int = 300
    line_rate: float = 500.0
    channels: int = 256
    interval_s: float = 0.3
    buffer_s: float = 30.0
    outage_s: float = 3.0
    full_s: float = 5.0
    partition_s: float = 20.0
    post_s: float = 6.0
    slack_s: float = 8.0
    wait_s: float = 60.0
    scans: int = 0
    seed: int = 21

    @property
    def scan_s(self) -> float:
        """Seconds from one scan's start to the next's (16 calibration lines included)."""
        return (self.scan_lines + 16) / self.line_rate + self.interval_s

    def scans_for(self, seconds: float) -> int:
        """Scans per scanner that keep the scanners busy for ``seconds`` (or ``scans``)."""
        return self.scans or max(2, math.ceil(seconds / self.scan_s))


@dataclass
class Result:
    """What one scenario measured (see docs/reliability.md for each field)."""

    expected: int = 0
    committed: int = 0
    lost: int = 0
    gap_lines: int = 0
    duplicated: int = 0
    forged: int = 0
    unexpected_exits: int = 0
    recovery_s: float | None = None
    gap_blocks: int = 0
    timings: dict[str, float | None] = field(default_factory=dict)
    alarms: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether it met the issue's targets."""
        return (
            self.lost == 0
            and self.duplicated == 0
            and self.forged == 0
            and self.unexpected_exits == 0
            and self.recovery_s is not None
            and self.recovery_s <= RECOVERY_TARGET_S
            and all(t is not None and t <= RECOVERY_TARGET_S for t in self.timings.values())
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: the fields, fault-specific times beside them, and ``passed``."""
        d = asdict(self)
        d.update(d.pop("timings"))
        return {**d, "passed": self.passed}


def _nii(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "nii", *args]


class Installation:
    """Central, two simulated scanners and an edge in ``base``, as real processes.

    Args:
        base: an empty folder for keys, configurations, state, logs and emit logs.
        sizing: scan sizes and fault lengths.
        say: where progress lines go.
        edge_tmpfs / cir_tmpfs: bytes of tmpfs to mount on the edge's ``state_dir``
            or the CIR folder (0: none).
        proxy: route edge → central through a :class:`BlackholeProxy`.
        veth: run central in a network namespace behind a :class:`VethLink`.
        fixed_ports: give the simulators fixed data ports (to restart on the same).
        socat_scanner: put this scanner's serial device behind a :class:`SocatLink`.
    """

    EDGE_ID = "edge-f"

    def __init__(
        self,
        base: Path,
        sizing: Sizing,
        *,
        say: Callable[[str], None] = lambda s: None,
        edge_tmpfs: int = 0,
        cir_tmpfs: int = 0,
        proxy: bool = False,
        veth: bool = False,
        fixed_ports: bool = False,
        socat_scanner: str = "",
    ) -> None:
        self.base = Path(base)
        self.sizing = sizing
        self.say = say
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.args: dict[str, list[str]] = {}
        self.told: set[str] = set()  # processes we stopped on purpose
        self.restart_at: dict[str, float] = {}
        self.exits: list[str] = []
        self.notes: list[str] = []
        self.mounts: list[Tmpfs] = []
        self.proxy: BlackholeProxy | None = None
        self.veth: VethLink | None = None
        self.prefixes: dict[str, list[str]] = {}
        self.socat: SocatLink | None = None
        self.socat_scanner = socat_scanner
        self.logs = self.base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.emit_dir = self.base / "emit"
        self.cir_dir = self.base / "cir"
        self.edge_dir = self.base / "edge"
        self.status_file = self.base / "sim" / "status.json"
        self.sim_runs = 0
        self.sim_scans = 0
        #: extra fault-specific times, s (None: never happened), each held to the target
        self.timings: dict[str, float | None] = {}
        self._emit_seen = (-1, time.monotonic())
        self.sim_emit_start: dict[str, int] = {}
        self.scanners: list[dict[str, Any]] = []
        self.central_host = "127.0.0.1"
        self.central_port = free_port()
        self.central_toml = self.base / "central.toml"
        self.edge_toml = self.base / "edge.toml"
        try:
            self._prepare(edge_tmpfs, cir_tmpfs, proxy, veth)
        except BaseException:
            self.close()
            raise
        self.edge_central = (
            f"tcp://127.0.0.1:{self.proxy.port}"
            if self.proxy
            else f"tcp://{self.central_host}:{self.central_port}"
        )
        self.data_port_base = _free_port_pair() if fixed_ports else 0

    def _prepare(self, edge_tmpfs: int, cir_tmpfs: int, proxy: bool, veth: bool) -> None:
        """Mounts, keys, the enrolled CIR, central's configuration, the proxy or veth."""
        if edge_tmpfs:
            self.mounts.append(Tmpfs(self.edge_dir, edge_tmpfs).mount())
        if cir_tmpfs:
            self.mounts.append(Tmpfs(self.cir_dir, cir_tmpfs).mount())
        keys = self.base / "keys"
        self.cir_key = CirKey.generate()
        self.cir_key.save(keys)
        edge_key = EdgeKey.generate(self.EDGE_ID)
        edge_key.save(keys)
        from central import Cir

        cir = Cir(self.cir_dir)
        try:
            cir.enroll(edge_key.public)
        finally:
            cir.close()
        if veth:
            self.veth = VethLink()
            self.veth.up()
            self.central_host = self.veth.ns_ip
            self.prefixes["central"] = self.veth.prefix()
        self.central_toml.write_text(
            f'[central]\nlisten = "tcp://{self.central_host}:{self.central_port}"\n'
            f'feed = "tcp://{self.central_host}:{free_port()}"\n'
            'state_dir = "cir"\nkey = "keys/cir.key"\npreview_hz = 1\natr = false\n'
        )
        if proxy:
            self.proxy = BlackholeProxy(0, (self.central_host, self.central_port))

    # -- processes ---------------------------------------------------------------------
    def start(self, name: str, *args: str) -> None:
        """Start ``nii <args>`` as process ``name`` (its log in logs/<name>.log)."""
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise FaultToolError(f"{name} is already running", fix="stop it first")
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        self.procs[name] = subprocess.Popen(
            [*self.prefixes.get(name, []), *_nii(*args)],
            cwd=self.base,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        self.args[name] = list(args)
        self.told.discard(name)
        self.restart_at.pop(name, None)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to ``name`` and wait for it to end (a stop we asked for)."""
        p = self.procs.get(name)
        self.told.add(name)
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.exits.append(f"{name} did not end within 20 s of signal {sig}: killed")

    def supervise(self) -> None:
        """Count processes that ended by themselves; restart edge/central after RESTART_S."""
        now = time.monotonic()
        for name, p in self.procs.items():
            rc = p.poll()
            if rc is None or name in self.told:
                continue
            if name not in self.restart_at:
                tail = self.log_tail(name, 3).replace("\n", " | ")
                self.exits.append(f"{name} exited by itself with status {rc}: {tail}")
                self.say(f"  ! {name} exited by itself (status {rc})")
                self.restart_at[name] = now + RESTART_S if name in ("edge", "central") else math.inf
            elif now >= self.restart_at[name]:
                self.say(f"  restarting {name} (as systemd would)")
                self.start(name, *self.args[name])

    def hold(self, seconds: float) -> None:
        """Let ``seconds`` pass while supervising (the length of a fault)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.supervise()
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def wait_for(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``cond`` (supervising) until truthy; None after ``timeout`` s, with a note."""
        end = time.monotonic() + timeout
        while True:
            self.supervise()
            v = cond()
            if v:
                return v
            if time.monotonic() > end:
                self.say(f"  timed out after {timeout:.0f} s waiting for {what}")
                return None
            time.sleep(0.05)

    def log_tail(self, name: str, n: int = 20) -> str:
        """The last ``n`` lines of a process's log."""
        f = self.logs / f"{name}.log"
        try:
            return "\n".join(f.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def start_central(self) -> None:
        """Start ``nii central``."""
        self.start("central", "central", "--config", str(self.central_toml))

    def start_sim(self, scans: int, seed: int) -> None:
        """Start ``nii sim --scanners 2`` for ``scans`` scans each; waits for its status."""
        s = self.sizing
        self.status_file.unlink(missing_ok=True)
        for name in ("scanner1", "scanner2"):
            self.sim_emit_start[name] = self.emit_count(name)
        self.start(
            "sim", "sim", "--scanners", "2",
            "--channels", str(s.channels), "--line-rate", str(s.line_rate),
            "--scan-lines", str(s.scan_lines), "--scans", str(scans),
            "--interval", str(s.interval_s), "--buffer", str(s.buffer_s),
            "--seed", str(seed), "--serial-dir", "sim", "--status-file", str(self.status_file),
            "--emit-log-dir", str(self.emit_dir), "--data-port-base", str(self.data_port_base),
        )  # fmt: skip
        self.sim_runs += 1
        self.sim_scans = scans
        if not self.wait_for(self.status_file.exists, 60, "the simulators' status file"):
            raise FaultToolError("the simulators did not start", fix=f"see {self.logs / 'sim.log'}")
        self.scanners = json.loads(self.status_file.read_text())["scanners"]

    def serial_of(self, scanner: dict[str, Any]) -> str:
        """The serial device path the edge is given for ``scanner``."""
        if scanner["name"] != self.socat_scanner:
            return str(scanner["serial"])
        if self.socat is None:
            device = Path(os.path.realpath(self.base / scanner["serial"]))
            self.socat = SocatLink(self.base / "dev" / f"{scanner['name']}.tty", device).start()
        return str(self.socat.link.relative_to(self.base))

    def start_edge(self) -> None:
        """Write edge.toml for the running simulators (first time) and start ``nii edge``."""
        if not self.edge_toml.exists():
            lines = [
                "[edge]",
                f'id = "{self.EDGE_ID}"',
                f'key = "keys/{self.EDGE_ID}.key"',
                'cir_public = "keys/cir.pub"',
                f'central = "{self.edge_central}"',
                'state_dir = "edge"',
                "heartbeat_s = 0.5",
                "",
            ]
            for sc in self.scanners:
                lines += [
                    "[[scanner]]",
                    f'id = "{sc["name"]}"',
                    f'serial = "{self.serial_of(sc)}"',
                    f'data = "{sc["data_host"]}:{sc["data_port"]}"',
                    "",
                ]
            self.edge_toml.write_text("\n".join(lines))
        self.start("edge", "edge", "--config", str(self.edge_toml))

    def close(self, *, keep: bool = False) -> None:
        """Stop every process, socat and the proxy; unmount every tmpfs.

        Args:
            keep: copy each tmpfs's files to ``<folder>.kept`` before unmounting.
        """
        self.stop_all()
        if self.socat is not None:
            self.socat.remove()
        if self.proxy is not None:
            self.proxy.close()
        if self.veth is not None:
            self.veth.close()
        for m in reversed(self.mounts):
            if keep and m.mounted:
                shutil.copytree(m.path, m.path.with_name(m.path.name + ".kept"),
                                dirs_exist_ok=True)  # fmt: skip
            m.umount()

    def stop_all(self) -> None:
        """SIGTERM every process still running (a stop we asked for); SIGKILL after 15 s."""
        for name in self.procs:
            self.told.add(name)
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # -- what is where -----------------------------------------------------------------
    def emit_count(self, scanner: str) -> int:
        """Lines in a scanner's emit log so far."""
        f = self.emit_dir / f"{scanner}.emit.log"
        try:
            with f.open("rb") as fh:
                return sum(buf.count(b"\n") for buf in iter(lambda: fh.read(1 << 20), b""))
        except OSError:
            return 0

    def sim_ended(self) -> bool:
        """Whether the simulator is through: every scan emitted, or no line for STALL_S s."""
        if self.sim_done():
            return True
        n = self.emit_count("scanner1") + self.emit_count("scanner2")
        now = time.monotonic()
        if n != self._emit_seen[0]:
            self._emit_seen = (n, now)
        return now - self._emit_seen[1] > STALL_S

    def sim_done(self) -> bool:
        """Whether the running simulator has emitted every line of all its scans."""
        want = self.sim_scans * (self.sizing.scan_lines + 16)
        return all(
            self.emit_count(n) - self.sim_emit_start.get(n, 0) >= want
            for n in ("scanner1", "scanner2")
        )

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run a read-only query on the CIR's index; [] while it cannot be read."""
        path = self.cir_dir / "cir.sqlite"
        if not path.exists():
            return []
        try:
            db = Sql(path, read_only=True, timeout_s=5)
        except ConfigError:
            return []
        try:
            return [tuple(r.values()) for r in db.rows(query, args)]
        except Exception as exc:
            if not is_sql_error(exc):
                raise
            return []
        finally:
            db.close()

    def committed_lines(self) -> int:
        """Detector lines in the CIR's data blocks (all scanners)."""
        rows = self.sql("SELECT COALESCE(SUM(n_lines), 0) FROM blocks WHERE kind = 'data'")
        return int(rows[0][0]) if rows else 0

    def first_commit_after(self, scanner: str, t_ns: int) -> int | None:
        """``committed_ns`` of the scanner's first data block committed after ``t_ns``."""
        rows = self.sql(
            "SELECT MIN(committed_ns) FROM blocks WHERE scanner = ? AND kind = 'data' "
            "AND committed_ns > ?",
            scanner,
            t_ns,
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def edge_holds(self, device: str) -> bool:
        """Whether the edge process has ``device`` (a resolved path) open, per /proc."""
        p = self.procs.get("edge")
        if p is None or p.poll() is not None:
            return False
        fds = Path(f"/proc/{p.pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fds.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == device:
                        return True
        return False

    def has_data(self, scanner: str) -> bool:
        """Whether the scanner has a data block in the CIR."""
        return self.first_commit_after(scanner, 0) is not None


# -- the faults ------------------------------------------------------------------------
# Each applies its fault to a running installation, ends it, and returns the scanners
# it affected; the caller takes the fault's end as the moment it returns.
def _scanner_restart(inst: Installation) -> list[str]:
    inst.say("  stopping nii sim mid-scan (both scanners power-cycled)")
    inst.stop("sim", signal.SIGTERM)
    inst.hold(inst.sizing.outage_s)
    s = inst.sizing
    inst.say("  starting nii sim again on the same ports (a new session, counters from 0)")
    inst.start_sim(s.scans_for(s.post_s + s.slack_s), s.seed + 1000)
    return ["scanner1", "scanner2"]


def _scanner_restart_edge_down(inst: Installation) -> list[str]:
    s = inst.sizing
    inst.say(f"  SIGKILL edge; the scanners scan into their buffers for {s.outage_s:g} s")
    inst.stop("edge", signal.SIGKILL)
    inst.hold(s.outage_s)
    inst.say("  nii sim stopped and started again: what the edge had not read is gone")
    inst.stop("sim", signal.SIGTERM)
    inst.start_sim(s.scans_for(s.post_s + s.slack_s), s.seed + 1000)
    inst.start_edge()
    return ["scanner1", "scanner2"]


def _device_replug(inst: Installation) -> list[str]:
    assert inst.socat is not None
    if not inst.edge_holds(os.path.realpath(inst.socat.link)):
        inst.notes.append("the edge did not hold the serial device open before the fault")
    inst.say(f"  removing {inst.socat.link.name} for {inst.sizing.outage_s:g} s")
    inst.socat.remove()
    inst.hold(inst.sizing.outage_s)
    inst.socat.restore()
    restored = time.monotonic()
    device = os.path.realpath(inst.socat.link)
    inst.say("  device back; waiting for the edge to open it again")
    if inst.wait_for(partial(inst.edge_holds, device), 30, "the edge to reopen the device"):
        inst.timings["reopen_s"] = round(time.monotonic() - restored, 2)
    else:
        inst.timings["reopen_s"] = None
    return [inst.socat_scanner]


def _disk_full(folder: Callable[[Installation], Path]) -> Callable[[Installation], list[str]]:
    def fault(inst: Installation) -> list[str]:
        path = folder(inst)
        filler = fill(path)
        inst.say(f"  {path.name}/ full ({free_bytes(path)} B free) for {inst.sizing.full_s:g} s")
        inst.hold(inst.sizing.full_s)
        free(filler)
        return ["scanner1", "scanner2"]

    return fault


def _partition(inst: Installation) -> list[str]:
    cable = inst.proxy or inst.veth
    assert cable is not None
    how = "blackhole proxy" if inst.proxy else "veth link down"
    inst.say(f"  edge <-> central partitioned ({how}) for {inst.sizing.partition_s:g} s")
    cable.partition()
    inst.hold(inst.sizing.partition_s)
    cable.heal()
    return ["scanner1", "scanner2"]


def _sigkill(name: str) -> Callable[[Installation], list[str]]:
    def fault(inst: Installation) -> list[str]:
        inst.say(f"  SIGKILL {name}; down for {inst.sizing.outage_s:g} s")
        inst.stop(name, signal.SIGKILL)
        inst.hold(inst.sizing.outage_s)
        inst.start_central() if name == "central" else inst.start_edge()
        return ["scanner1", "scanner2"]

    return fault


@dataclass(frozen=True)
class Scenario:
    """One fault kind: how to set up the installation and the fault itself."""

    name: str
    fault: Callable[[Installation], list[str]]
    setup: dict[str, Any]
    length: Callable[[Sizing], float]


_TMPFS_BYTES = 256 << 20

SCENARIO_TABLE: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("scanner_restart", _scanner_restart, {"fixed_ports": True},
                 lambda z: z.outage_s),
        Scenario("scanner_restart_edge_down", _scanner_restart_edge_down,
                 {"fixed_ports": True}, lambda z: z.outage_s),
        Scenario("device_replug", _device_replug, {"socat_scanner": "scanner1"},
                 lambda z: z.outage_s),
        Scenario("disk_full_edge", _disk_full(lambda i: i.edge_dir),
                 {"edge_tmpfs": _TMPFS_BYTES}, lambda z: z.full_s),
        Scenario("disk_full_central", _disk_full(lambda i: i.cir_dir),
                 {"cir_tmpfs": _TMPFS_BYTES}, lambda z: z.full_s),
        Scenario("partition", _partition, {"proxy": True}, lambda z: z.partition_s),
        Scenario("partition_veth", _partition, {"veth": True}, lambda z: z.partition_s),
        Scenario("sigkill_central", _sigkill("central"), {}, lambda z: z.outage_s),
        Scenario("sigkill_edge", _sigkill("edge"), {}, lambda z: z.outage_s),
    )
}  # fmt: skip


def run_scenario(
    name: str,
    sizing: Sizing,
    base: Path,
    *,
    say: Callable[[str], None] = lambda s: None,
    keep: bool = False,
) -> tuple[Result, Installation]:
    """Run one scenario in the empty folder ``base``; every process is stopped after.

    Args:
        name: one of :data:`SCENARIOS`.
        sizing: sizes and lengths.
        base: an empty folder (kept; the caller removes it).
        say: progress lines.
        keep: keep the files of a tmpfs too (copied beside it before unmounting).

    Returns:
        The measured result, and the (closed) installation to look at further.

    Raises:
        ConfigError: an unknown scenario.
        FaultToolError: the fault could not be set up (no root for tmpfs, no socat).
    """
    if name not in SCENARIO_TABLE:
        raise ConfigError(f"no fault scenario {name!r}", fix=f"pick one of: {', '.join(SCENARIOS)}")
    sc = SCENARIO_TABLE[name]
    say(f"[{name}] starting an installation in {base}")
    inst = Installation(base, sizing, say=say, **sc.setup)
    res = Result()
    try:
        inst.start_central()
        # warm-up + fault + scanning after it, with room for a slow start
        busy_s = sc.length(sizing) + sizing.post_s + sizing.slack_s
        inst.start_sim(sizing.scans_for(busy_s), sizing.seed)
        inst.start_edge()
        for s in ("scanner1", "scanner2"):
            if not inst.wait_for(partial(inst.has_data, s), 60, f"{s}'s first data block"):
                res.notes.append(f"{s} committed nothing before the fault")
        inst.hold(1.5 * sizing.scan_s)  # into the next scan: the fault lands mid-scan
        affected = sc.fault(inst)
        fault_end = time.time_ns()
        say("  fault over; waiting for progress")
        if inst.sim_done():
            res.notes.append("the scanners ended their scans before the fault did: more --scans")
        for s in affected:
            t = inst.wait_for(
                partial(inst.first_commit_after, s, fault_end), sizing.wait_s, f"{s} to commit"
            )
            if t is None:
                res.notes.append(
                    f"{s}: no data block committed within {sizing.wait_s:g} s of the fault's end"
                )
                res.recovery_s = None
                break
            rec = round((t - fault_end) / 1e9, 2)
            res.recovery_s = rec if res.recovery_s is None else max(res.recovery_s, rec)
        say(f"  recovery {res.recovery_s} s; waiting for the scans to end")
        if not inst.wait_for(inst.sim_ended, 40 + inst.sim_scans * sizing.scan_s * 2,
                             "the simulators to emit every scan"):  # fmt: skip
            res.notes.append("the simulators did not emit all their scans")
        elif not inst.sim_done():
            res.notes.append(
                f"the simulators stopped scanning for {STALL_S:g} s before their last scan "
                "(not armed again?)"
            )
        _settle(inst)
        inst.stop_all()
        res.timings = dict(inst.timings)
        res.unexpected_exits = len([e for e in inst.exits if "exited by itself" in e])
        res.notes += inst.notes + inst.exits
        _analyse(inst, res)  # before close(): a tmpfs takes its files with it
    finally:
        inst.close(keep=keep)
    say(
        f"  expected {res.expected}, committed {res.committed}, lost {res.lost}, "
        f"gap lines {res.gap_lines}, duplicated {res.duplicated}, "
        f"unexpected exits {res.unexpected_exits}, recovery {res.recovery_s} s"
    )
    return res, inst


def _settle(inst: Installation, quiet_s: float = 10.0, cap_s: float = 120.0) -> None:
    """Wait until the CIR holds as many lines as were emitted, or stops growing."""
    end = time.monotonic() + cap_s
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        inst.supervise()
        emitted = inst.emit_count("scanner1") + inst.emit_count("scanner2")
        got = inst.committed_lines()
        if got >= emitted:
            return
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            inst.say(f"  the CIR stopped at {got} of {emitted} lines")
            return
        time.sleep(0.1)


# -- counting ---------------------------------------------------------------------------
LineKey = tuple[int, int, int, str]  # scan_id, line_no, flags, sha256(payload)


def emitted_lines(emit_dir: Path, scanner: str) -> list[LineKey]:
    """A scanner's emitted lines in emission order, from its emit log(s)."""
    out: list[LineKey] = []
    f = emit_dir / f"{scanner}.emit.log"
    if not f.exists():
        return out
    for line in f.read_text().splitlines():
        p = line.split()
        if len(p) == 4:
            out.append((int(p[0]), int(p[1]), int(p[2]), p[3]))
    return out


@dataclass
class Chain:
    """A scanner's chain in the CIR: lines with the chain position of their block."""

    lines: list[tuple[LineKey, int]] = field(default_factory=list)
    gaps: list[int] = field(default_factory=list)  # chain positions (seq) of GAP blocks
    unreadable: int = 0


def read_chain(cir_dir: Path, cir_key: CirKey, scanner: str) -> Chain:
    """Decrypt a scanner's data blocks; note where its GAP blocks are."""
    from central import Cir
    from core.seal import BlockKind, Opener

    ch = Chain()
    if not (cir_dir / "cir.sqlite").exists():
        return ch
    cir = Cir(cir_dir, create=False)
    opener = Opener(cir_key.x25519_private)
    try:
        for row in cir.stream_blocks(scanner):
            pos = int(row["seq"])
            if row["kind"] == "gap":
                ch.gaps.append(pos)
                continue
            if row["kind"] != "data":
                continue
            try:
                block = cir.read_block(row["hash"])
                if block.kind != BlockKind.DATA or not block.index:
                    continue
                plain = opener.open(block)
            except (NiiError, OSError):
                ch.unreadable += 1
                continue
            size = len(plain) // len(block.index)
            sid = int(block.meta.get("scan_id", -1))
            for i, e in enumerate(block.index):
                digest = hashlib.sha256(plain[i * size : (i + 1) * size]).hexdigest()
                ch.lines.append(((sid, e.line_no, e.flags, digest), pos))
    finally:
        cir.close()
    return ch


@dataclass
class Count:
    """One scanner's line accounting."""

    expected: int = 0
    committed: int = 0
    lost: int = 0
    gap_lines: int = 0
    duplicated: int = 0
    forged: int = 0


def count_lines(emitted: list[LineKey], chain: Chain, gap_alarm: bool) -> Count:
    """Line by line: which emitted lines the chain holds, once, bit-identical.

    An emitted line that is not in the chain is a *gap line* when a GAP block lies in
    the chain between the blocks of the nearest committed lines emitted before and
    after it (and the scanner has a data-loss alarm): the chain says, at that place,
    that data is missing and why. Otherwise it is *lost*.

    Args:
        emitted: the scanner's lines in emission order.
        chain: the scanner's chain as read from the CIR.
        gap_alarm: whether the CIR holds a data-loss alarm for this scanner.
    """
    c = Count(expected=len(emitted), committed=len(chain.lines))
    where: dict[LineKey, list[int]] = {}
    for key, pos in chain.lines:
        where.setdefault(key, []).append(pos)
    want = Counter(emitted)
    for key, positions in where.items():
        extra = len(positions) - want.get(key, 0)
        if key not in want:
            c.forged += len(positions)
        elif extra > 0:
            c.duplicated += extra
    # each emitted occurrence takes one committed copy, in order; the rest are missing
    taken: Counter[LineKey] = Counter()
    pos_of: list[int | None] = []
    for key in emitted:
        ps = where.get(key, [])
        i = taken[key]
        if i < len(ps):
            pos_of.append(ps[i])
            taken[key] += 1
        else:
            pos_of.append(None)
    gaps = sorted(chain.gaps)
    prev: list[int] = []
    last = -1
    for p in pos_of:
        prev.append(last)
        if p is not None:
            last = p
    nxt = math.inf
    for i in range(len(pos_of) - 1, -1, -1):
        p = pos_of[i]
        if p is not None:
            nxt = p
            continue
        lo = prev[i]
        k = bisect.bisect_right(gaps, lo)
        if gap_alarm and k < len(gaps) and gaps[k] < nxt:
            c.gap_lines += 1
        else:
            c.lost += 1
    return c


def _analyse(inst: Installation, res: Result) -> None:
    alarms = inst.sql("SELECT scanner, kind FROM alarms")
    res.alarms = dict(Counter(f"{s or 'central'}:{k}" for s, k in alarms))
    for scanner in ("scanner1", "scanner2"):
        emitted = emitted_lines(inst.emit_dir, scanner)
        chain = read_chain(inst.cir_dir, inst.cir_key, scanner)
        gap_alarm = any(
            s == scanner and any(w in str(k) for w in GAP_ALARM_WORDS) for s, k in alarms
        )
        c = count_lines(emitted, chain, gap_alarm)
        res.expected += c.expected
        res.committed += c.committed
        res.lost += c.lost
        res.gap_lines += c.gap_lines
        res.duplicated += c.duplicated
        res.forged += c.forged
        res.gap_blocks += len(chain.gaps)
        if chain.unreadable:
            res.notes.append(f"{scanner}: {chain.unreadable} data blocks could not be read")


# ======================================================================================
# The command
# ======================================================================================
def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``nii bench faults``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "faults",
        help="field faults (restart, replug, disk full, partition, SIGKILL) vs 2 scanners",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="repeatable; all")
    p.add_argument("--lines", type=int, default=Sizing.scan_lines, help="image lines per scan")
    p.add_argument(
        "--scans", type=int, default=0, help="scans per scanner (0: what the fault needs)"
    )
    p.add_argument("--line-rate", type=float, default=Sizing.line_rate, help="lines/s")
    p.add_argument("--channels", type=int, default=Sizing.channels)
    p.add_argument(
        "--partition-s", type=float, default=Sizing.partition_s, help="partition length, s"
    )
    p.add_argument("--outage-s", type=float, default=Sizing.outage_s, help="outage length, s")
    p.add_argument("--full-s", type=float, default=Sizing.full_s, help="disk-full length, s")
    p.add_argument("--post-s", type=float, default=Sizing.post_s, help="scanning after, s")
    p.add_argument("--keep", action="store_true", help="keep the working folders")
    p.set_defaults(func=run)
    return p


def _positive(name: str, v: float) -> None:
    if not v > 0 or not math.isfinite(v):
        raise ConfigError(f"{name} must be a positive number, not {v!r}", fix=f"give {name} > 0")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A SIGTERM to the bench unwinds like Ctrl-C, so every clean-up runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(args: argparse.Namespace) -> int:
    """Run the chosen scenarios; print progress to stderr and one JSON line last."""
    if args.scans < 0:
        raise ConfigError(f"--scans must be 0 or more, not {args.scans}", fix="give --scans 0")
    for n in ("lines", "line_rate", "channels", "partition_s", "outage_s", "full_s", "post_s"):
        _positive(f"--{n.replace('_', '-')}", float(getattr(args, n)))
    sizing = Sizing(
        scan_lines=args.lines,
        line_rate=args.line_rate,
        channels=args.channels,
        partition_s=args.partition_s,
        outage_s=args.outage_s,
        full_s=args.full_s,
        post_s=args.post_s,
        scans=args.scans,
    )
    names = list(dict.fromkeys(args.scenario or SCENARIOS))

    def say(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    t0 = time.monotonic()
    out: dict[str, Any] = {}
    with _sigterm_as_interrupt():
        for name in names:
            base = Path(tempfile.mkdtemp(prefix=f"nii-faults-{name}-"))
            try:
                res, _ = run_scenario(name, sizing, base, say=say, keep=args.keep)
                out[name] = res.as_dict()
            except FaultToolError as exc:
                say(f"[{name}] could not run: {exc} ({exc.fix})")
                out[name] = {"error": str(exc), "fix": exc.fix, "passed": False}
            finally:
                if args.keep:
                    say(f"  kept {base}")
                else:
                    shutil.rmtree(base, ignore_errors=True)
    doc = {
        "scenarios": out,
        "targets": {
            "lost": 0,
            "duplicated": 0,
            "forged": 0,
            "unexpected_exits": 0,
            "recovery_s": RECOVERY_TARGET_S,
        },
        "sizing": asdict(sizing),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        "wall_s": round(time.monotonic() - t0, 1),
    }
    print(json.dumps(doc))
    return 0
