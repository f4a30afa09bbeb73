"""A simulated LSP-1 line scanner: serial control on a pty, detector lines over TCP.

Timing runs on the monotonic clock: one pump task per scanner wakes every
``tick_s``, emits the lines that are due into the replay ring and writes each
client's backlog in one batch. ``instant`` drops the real-time pacing (for tests)
and paces on the slowest client instead, so nothing falls out of the ring.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import secrets
import time
import tty
import zlib
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from core import iso6346
from core.errors import ConfigError
from drivers.lsp.wire import (
    ACK,
    CRC,
    EVT,
    HEADER,
    MAGIC,
    MAX_CHANNELS,
    NAK,
    REQUEST,
    REQUEST_MAGIC,
    REQUEST_SIZE,
    STS,
    VERSION,
    Command,
    LineFlags,
    PacketType,
    RequestKind,
    SerialDecoder,
    SessionInfo,
    State,
    encode_frame,
    pack_session,
)
from firmware_sim._source import ImageSource, ScanImage, SyntheticSource

__all__ = ["FAULT_KINDS", "FaultConfig", "SimConfig", "SimScanner"]

log = logging.getLogger("nii.sim")

FAULT_KINDS = (
    "corrupt",
    "drop",
    "stall",
    "link_drop",
    "serial_corrupt",
    "fault",
    "interlock",
    "dead_channel",
    "oversized_record",
    "channels_change",
    "zero_channels",
    "out_of_order",
    "unplug",
    "disarm",
)
"""What :meth:`SimScanner.inject` can do at run time."""

OVERSIZE_PAD = 70_000
"""Bytes of padding the ``oversized_record`` fault adds to a SCAN_START record
(over the 64 KiB LSP-1 limit)."""
CHANNELS_CUT = 16
"""Channels the ``channels_change`` fault takes off each following line."""

_MAX_BATCH = 512  # packets per write per client and tick: bounds what a go-back-N throws away
_INSTANT_BATCH = 256  # lines emitted per pump round in instant mode

Entry = tuple[bytes, bytes | memoryview, bytes]


@dataclass(slots=True)
class FaultConfig:
    """Faults the simulator injects by itself, drawn from the scanner's seed."""

    corrupt_fraction: float = 0.0
    """Fraction of data link packets sent with a few bytes flipped."""
    drop_fraction: float = 0.0
    """Fraction of packets skipped on their first send (a RESUME gets them back)."""
    stall_every_s: float = 0.0
    """Mean time between data link stalls (0: never)."""
    stall_s: float = 0.0
    """How long each stall lasts."""
    link_drop_every_s: float = 0.0
    """Mean time between dropped TCP connections (0: never)."""
    dead_channels: tuple[int, ...] = ()
    """Detector channels that always read 0."""
    serial_corrupt_fraction: float = 0.0
    """Fraction of serial frames sent with one byte flipped."""


@dataclass(slots=True)
class SimConfig:
    """One simulated scanner."""

    name: str = "scanner1"
    channels: int = 1536
    line_rate: float = 500.0
    """Image lines per second (calibration lines come at the same rate)."""
    scan_lines: int = 1000
    """Image lines per automatic scan (a 40 ft container is about 3000)."""
    scans: int = 0
    """Automatic scans to run once armed (0: forever)."""
    interval_s: float = 2.0
    """Pause between the end of one scan and the start of the next."""
    auto: bool = True
    """Once armed, scan by itself (trucks driving through); START also triggers a scan."""
    buffer_s: float = 10.0
    """Replay ring depth, in seconds of packets at ``line_rate``."""
    seed: int = 0
    instant: bool = False
    """Emit lines as fast as the slowest client takes them (unit tests)."""
    source: ImageSource | None = None
    """Image source; a :class:`SyntheticSource` if None."""
    faults: FaultConfig = field(default_factory=FaultConfig)
    emit_log: str | os.PathLike[str] | None = None
    #: write each line's SHA-256 to the emit log (``-`` instead when off: cheaper, for
    #: benchmarks that only count lines)
    emit_log_hash: bool = True
    #: append what each scan holds (``ScanImage.truth``) here, one JSON line per scan
    truth_log: str | os.PathLike[str] | None = None
    """Append ``scan_id line_no flags sha256(payload)`` per LINE packet when first emitted."""
    serial_link: str | os.PathLike[str] | None = None
    """Symlink made to the pty slave, so the driver opens a stable path."""
    data_host: str = "127.0.0.1"
    data_port: int = 0
    """0: pick a free port (see :attr:`SimScanner.data_port`)."""
    dark_lines: int = 8
    air_lines: int = 8
    tick_s: float = 0.004
    status_interval_s: float = 1.0
    energies_kev: tuple[int, int] = (6000, 4000)
    vendor: str = "OpenNII"
    model: str = "LSP-SIM"
    serial_number: str = ""
    firmware: str = "1.0.0"
    high_water_bytes: int = 1 << 20
    """Backlog in a client's socket beyond which the scanner stops writing to it."""
    container_base: int = 0
    """Added to the six-digit serial of the container number an image source's Goods
    Declaration gives, its ISO 6346 check digit made anew (``nii sim`` gives its
    scanner N (N-1) x 100 000), so two scanners of one site never scan the same
    container, while scanner N of an ATT exit simulator still scans the containers of
    the entry's scanner N."""


@dataclass(slots=True)
class _Plan:
    scan_id: int
    lines: int
    rows: memoryview  # flat bytes of the packed image, row after row
    row_bytes: int
    calib: list[tuple[int, int, bytes]]  # (flags, line_no, payload)
    t0: float
    done: asyncio.Event
    k: int = 0  # next line to emit, calibration lines first
    abort: str | None = None
    cut: int = 0  # channels left off every line from here on (fault)
    zero_at: int = -1  # plan index of a line sent with 0 channels (fault)
    swap_at: int = -1  # image line whose number is swapped with the next one's (fault)

    @property
    def total(self) -> int:
        return len(self.calib) + self.lines


class _DataConn(asyncio.Protocol):
    """One client on the data link; streams from ``pos`` once the client sent RESUME."""

    def __init__(self, sim: SimScanner) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.pos: int | None = None
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not an asyncio.Transport subclass; it has the same API.
        self.transport = transport  # type: ignore[assignment]
        self.sim._conns.add(self)
        self.sim.stats["connections"] += 1
        transport.write(pack_session(self.sim.session_info(), time.time_ns()))  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.sim._conns.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while len(buf) >= REQUEST_SIZE:
            if buf[:4] != REQUEST_MAGIC:
                nxt = buf.find(REQUEST_MAGIC, 1)
                del buf[: nxt if nxt > 0 else max(0, len(buf) - 3)]
                continue
            _, kind, seq = REQUEST.unpack_from(buf)
            del buf[:REQUEST_SIZE]
            if kind == RequestKind.RESUME:
                self.pos = seq
                self.sim.stats["resumes"] += 1
                self.sim._flush(self)


class SimScanner:
    """A simulated LSP-1 scanner.

    ``async with SimScanner(cfg) as sim:`` starts the TCP data link server and the
    pty; :attr:`data_port` and :attr:`serial_path` say where to connect. Control it
    over the serial link like the real thing, or from Python (:meth:`arm`,
    :meth:`start_scan`, :meth:`inject`).
    """

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        cfg = replace(config or SimConfig(), **overrides)
        _validate(cfg)
        self.config = cfg
        self.source: ImageSource = cfg.source if cfg.source is not None else SyntheticSource()
        self.stats: dict[str, int] = {
            "packets_emitted": 0,
            "packets_sent": 0,
            "bytes_sent": 0,
            "dropped": 0,
            "corrupted": 0,
            "stalls": 0,
            "link_drops": 0,
            "resumes": 0,
            "connections": 0,
            "scans": 0,
            "serial_frames_in": 0,
            "serial_corrupted": 0,
            "serial_overruns": 0,
        }
        self._cap = max(256, int(cfg.buffer_s * cfg.line_rate))
        self._ring: list[Entry | None] = [None] * self._cap
        self._head = 0  # next seq
        self._tx_high = 0  # every seq below was sent at least once
        self._conns: set[_DataConn] = set()
        self._rng = random.Random(cfg.seed)
        self._serial_rng = random.Random(cfg.seed + 1)
        self._dead = set(cfg.faults.dead_channels)
        self._force: dict[str, int] = {"corrupt": 0, "drop": 0, "serial_corrupt": 0}
        self._stall_until = 0.0
        self._armed = False
        self._interlock = False
        self._faults: list[str] = []
        self._plan: _Plan | None = None
        self._next_id = 1
        self._last_started = -1
        self._requests: deque[tuple[int, int]] = deque()  # START requests not begun yet
        self._preparing: int | None = None  # scan whose image is being made
        self._prep_abort: str | None = None
        self._scans_done = 0
        self._auto_done = 0
        self._wake = asyncio.Event()
        self._scan_ended = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._master = -1
        self._slave = -1
        self._slave_name = ""
        self._link: Path | None = None
        self._serial_dec = SerialDecoder()
        self._emit_log: IO[str] | None = None
        self._serial_no = cfg.serial_number or f"SIM{cfg.seed:04d}-{cfg.name}"
        self.boot_id = ""
        """This run's session (boot) id, hex; new on every :meth:`start`."""
        self._pending_cut = 0
        self._unplug: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Open the data link server and the pty; a new boot id, counters from 0."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        self.boot_id = secrets.token_hex(8)
        self._ring = [None] * self._cap  # a new session counts from 0 (LSP-1)
        self._head = self._tx_high = 0
        if cfg.emit_log is not None:
            Path(cfg.emit_log).parent.mkdir(parents=True, exist_ok=True)
            self._emit_log = open(cfg.emit_log, "a", encoding="ascii")  # noqa: SIM115
        self._server = await loop.create_server(
            lambda: _DataConn(self), cfg.data_host, cfg.data_port, reuse_address=True
        )
        self._open_serial()
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"{cfg.name}-pump"),
            asyncio.create_task(self._runner(), name=f"{cfg.name}-runner"),
            asyncio.create_task(self._status_loop(), name=f"{cfg.name}-status"),
        ]
        f = cfg.faults
        if f.stall_every_s > 0 or f.link_drop_every_s > 0:
            self._tasks.append(asyncio.create_task(self._chaos(), name=f"{cfg.name}-chaos"))

    def _open_serial(self) -> None:
        """A new pty, its slave behind the configured symlink (replaced atomically)."""
        cfg = self.config
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self._slave_name = os.ttyname(self._slave)
        if cfg.serial_link is not None:
            link = Path(cfg.serial_link)
            link.parent.mkdir(parents=True, exist_ok=True)
            tmp = link.with_name(f".{link.name}.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self._slave_name)
            tmp.replace(link)
            self._link = link
        asyncio.get_running_loop().add_reader(self._master, self._on_serial)

    def _close_serial(self) -> None:
        """Close the pty and remove the symlink if it is still ours."""
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1
        if self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                if self._link.is_symlink() and os.readlink(self._link) == self._slave_name:
                    self._link.unlink()

    async def _replug(self, seconds: float) -> None:
        """After ``seconds`` unplugged, a new serial device appears behind the symlink."""
        await asyncio.sleep(seconds)
        self._open_serial()

    async def stop(self) -> None:
        """Stop the tasks, close every connection and the pty, remove the symlink."""
        tasks = [*self._tasks, *([self._unplug] if self._unplug is not None else [])]
        self._unplug = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._server is not None:
            self._server.close()
            for conn in list(self._conns):
                if conn.transport is not None:
                    conn.transport.abort()
            await self._server.wait_closed()
            self._server = None
            await asyncio.sleep(0)  # let the aborted transports finish closing
        self._close_serial()
        self._link = None
        if self._emit_log is not None:
            self._emit_log.close()
            self._emit_log = None

    async def __aenter__(self) -> SimScanner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ properties

    @property
    def data_port(self) -> int:
        """The TCP port the data link listens on."""
        if self._server is None:
            return self.config.data_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def serial_path(self) -> str:
        """The path the driver opens: the configured symlink, or the pty slave."""
        return str(self._link) if self._link is not None else self._slave_name

    @property
    def head_seq(self) -> int:
        """Sequence number the next packet will get."""
        return self._head

    @property
    def oldest_seq(self) -> int:
        """Oldest sequence number still in the replay ring."""
        return max(0, self._head - self._cap)

    def session_info(self) -> SessionInfo:
        """What the SESSION packet announces now (boot id, serial, ring bounds)."""
        return SessionInfo(self.boot_id, self._serial_no, self.oldest_seq, self._head)

    @property
    def scans_done(self) -> int:
        return self._scans_done

    @property
    def state(self) -> State:
        if self._interlock:
            return State.INTERLOCK
        if self._faults:
            return State.FAULT
        if self._busy_id() is not None:
            return State.SCANNING
        return State.ARMED if self._armed else State.IDLE

    def describe(self) -> dict[str, Any]:
        """Where to reach this scanner (for the status file)."""
        cfg = self.config
        return {
            "name": cfg.name,
            "session": self.boot_id,
            "serial_number": self._serial_no,
            "serial": self.serial_path,
            "data_host": cfg.data_host,
            "data_port": self.data_port,
            "channels": cfg.channels,
            "line_rate": cfg.line_rate,
            "scan_lines": cfg.scan_lines,
        }

    async def wait_scans(self, count: int) -> None:
        """Return once ``count`` scans have ended (complete or aborted)."""
        while self._scans_done < count:
            self._scan_ended.clear()
            await self._scan_ended.wait()

    # --------------------------------------------------------------- control

    def arm(self) -> None:
        if self._interlock or self._faults:
            raise ConfigError(
                f"{self.config.name} cannot arm in state {self.state}", fix="Reset it first."
            )
        self._armed = True
        self._wake.set()

    def disarm(self) -> None:
        self._armed = False
        self._abort("disarmed")
        self._wake.set()

    def start_scan(self, scan_id: int | None = None, lines: int | None = None) -> int:
        """Start a scan now (armed or not: this is the test hook); returns its id."""
        if self._busy_id() is not None:
            raise ConfigError(f"{self.config.name} is already scanning", fix="Stop it first.")
        sid = self._next_id if scan_id is None else scan_id
        self._begin(sid, self.config.scan_lines if lines is None else lines)
        return sid

    def stop_scan(self, reason: str = "stopped by host") -> None:
        self._abort(reason)

    def inject(self, kind: str, value: float | int | str | None = None) -> None:
        """Inject a fault now (one of :data:`FAULT_KINDS`).

        ``corrupt`` / ``drop`` (next N packets), ``stall`` (seconds),
        ``link_drop``, ``serial_corrupt`` (next N frames), ``fault`` (text),
        ``interlock``, ``dead_channel`` (index, from the next scan on);
        protocol violations sent with a correct CRC: ``oversized_record`` (the
        next SCAN_START record padded beyond 64 KiB), ``channels_change`` (from
        the next line on, the running or next scan's lines carry
        :data:`CHANNELS_CUT` fewer channels), ``zero_channels`` (the next line
        is sent with 0 channels), ``out_of_order`` (the next two image line
        numbers of the running or next scan swapped); ``unplug`` (the serial
        device disappears: pty closed, symlink removed; after ``value`` seconds,
        default 3, a new pty appears behind the same symlink); ``disarm`` (disarmed
        at the scanner, not by the host: a person at its panel, another host).

        Raises:
            ConfigError: an unknown kind, or ``unplug`` while unplugged.
        """
        if kind in ("oversized_record", "zero_channels", "out_of_order"):
            self._force[kind] = self._force.get(kind, 0) + 1
            plan = self._plan
            if plan is not None and kind != "oversized_record":
                self._place(plan)
        elif kind == "channels_change":
            if self._plan is not None:
                self._plan.cut = CHANNELS_CUT
            else:
                self._pending_cut = CHANNELS_CUT
        elif kind == "disarm":
            self.disarm()
        elif kind == "unplug":
            if self._unplug is not None and not self._unplug.done():
                raise ConfigError(
                    f"{self.config.name} is already unplugged", fix="Wait until it is back."
                )
            seconds = 3.0 if value is None else float(value)
            self._close_serial()
            self._unplug = asyncio.create_task(
                self._replug(seconds), name=f"{self.config.name}-unplug"
            )
        elif kind in ("corrupt", "drop", "serial_corrupt"):
            self._force[kind] += 1 if value is None else int(value)
        elif kind == "stall":
            self._stall(1.0 if value is None else float(value))
        elif kind == "link_drop":
            self._drop_links()
        elif kind == "fault":
            text = "injected fault" if value is None else str(value)
            self._faults.append("F100")
            self._abort(f"fault: {text}")
            self._send(EVT, "FAULT", "F100", text)
        elif kind == "interlock":
            self._interlock = True
            self._armed = False
            self._abort("interlock open")
            self._send(EVT, "FAULT", "INTERLOCK", "tunnel interlock open")
        elif kind == "dead_channel":
            self._dead.add(int(value or 0))
        else:
            raise ConfigError(
                f"unknown fault kind {kind!r}", fix=f"Use one of: {', '.join(FAULT_KINDS)}."
            )

    def _place(self, plan: _Plan) -> None:
        """Put pending ``zero_channels`` / ``out_of_order`` faults on ``plan``'s next lines."""
        force = self._force
        ncal = len(plan.calib)
        if force.get("zero_channels") and plan.zero_at < 0 and plan.k < plan.total:
            force["zero_channels"] -= 1
            plan.zero_at = max(plan.k, ncal)
        if force.get("out_of_order") and plan.swap_at < 0:
            line = max(plan.k - ncal, 0)
            if line + 1 < plan.lines:
                force["out_of_order"] -= 1
                plan.swap_at = line

    # ----------------------------------------------------------- scan engine

    def _busy_id(self) -> int | None:
        """The scan running, being prepared or asked for, if any."""
        if self._plan is not None:
            return self._plan.scan_id
        if self._preparing is not None:
            return self._preparing
        return self._requests[0][0] if self._requests else None

    async def _prepare_and_begin(self, scan_id: int, lines: int) -> None:
        """Make the image in a worker thread (a physics source may take a while; the
        other scanners in this process keep streaming), then begin the scan."""
        cfg = self.config
        self._preparing, self._prep_abort = scan_id, None
        self._next_id = max(self._next_id, scan_id + 1)
        self._last_started = scan_id
        try:
            image = await asyncio.to_thread(
                self.source.scan, cfg.seed, scan_id, cfg.channels, lines
            )
            image.packed()
        finally:
            self._preparing = None
        self._begin(scan_id, lines, image)
        if self._prep_abort is not None:
            self._abort(self._prep_abort)

    def _log_truth(self, scan_id: int, image: ScanImage) -> None:
        """One JSON line for the demo: which scan, and what the simulator put in it."""
        cfg = self.config
        doc = {
            "scanner": cfg.name,
            "scan_id": scan_id,
            "container": _renumbered(image.record, cfg.container_base).get("container"),
            "time_ns": time.time_ns(),
            **(image.truth or {}),
        }
        path = Path(cfg.truth_log or "")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(doc, separators=(",", ":")) + "\n")
        except OSError as exc:  # the demo's truth is a help, never a reason to stop scanning
            log.warning("%s: cannot write the truth log %s: %s", cfg.name, path, exc)

    def _begin(self, scan_id: int, lines: int, image: ScanImage | None = None) -> None:
        cfg = self.config
        if image is None:
            image = self.source.scan(cfg.seed, scan_id, cfg.channels, lines)
        packed = image.packed()
        if cfg.truth_log is not None and image.truth is not None:
            self._log_truth(scan_id, image)
        if packed.shape != (lines, 2 * cfg.channels):
            raise ConfigError(
                f"image source gave shape {packed.shape} for {lines} lines x {cfg.channels}"
                " channels",
                fix="Make the image source return (lines, channels) arrays.",
            )
        rng = np.random.default_rng([cfg.seed, scan_id, 1])
        dead = sorted(c for c in self._dead if 0 <= c < cfg.channels)
        calib: list[tuple[int, int, bytes]] = []
        for flag, level, n in (
            (LineFlags.CALIB_DARK, image.dark, cfg.dark_lines),
            (LineFlags.CALIB_AIR, image.air, cfg.air_lines),
        ):
            base = level.reshape(-1).astype(np.int32)
            for i in range(n):
                row = base + rng.integers(-8, 9, base.size)
                if dead:
                    row.reshape(2, -1)[:, dead] = 0
                calib.append((int(flag), i, np.clip(row, 0, 65535).astype("<u2").tobytes()))
        if dead:
            packed = packed.copy()
            packed[:, dead] = 0
            packed[:, [c + cfg.channels for c in dead]] = 0
        self._next_id = max(self._next_id, scan_id + 1)
        self._last_started = scan_id
        plan = _Plan(
            scan_id=scan_id,
            lines=lines,
            rows=memoryview(np.ascontiguousarray(packed).data).cast("B"),
            row_bytes=4 * cfg.channels,
            calib=calib,
            t0=time.monotonic(),
            done=asyncio.Event(),
            cut=self._pending_cut,
        )
        self._pending_cut = 0
        self._place(plan)
        start: dict[str, Any] = {
            "scan_id": scan_id,
            "channels": cfg.channels,
            "lines": lines,
            "dark_lines": cfg.dark_lines,
            "air_lines": cfg.air_lines,
            "container": _container_code(random.Random(f"{cfg.seed}:{scan_id}")),
            "energies_kev": list(cfg.energies_kev),
            "line_rate": cfg.line_rate,
            "started_ns": time.time_ns(),
            **_renumbered(image.record, cfg.container_base),
        }
        if self._force.get("oversized_record"):
            self._force["oversized_record"] -= 1
            start["pad"] = "x" * OVERSIZE_PAD
        self._plan = plan
        self._emit(PacketType.SCAN_START, 0, scan_id, 0, json.dumps(start).encode())
        self._send(EVT, "SCAN_START", scan_id)
        self._wake.set()

    def _abort(self, reason: str) -> None:
        self._requests.clear()
        if self._preparing is not None and self._prep_abort is None:
            self._prep_abort = reason
        if self._plan is not None and self._plan.abort is None:
            self._plan.abort = reason
            self._advance(self._plan, time.monotonic())

    def _advance(self, plan: _Plan, now: float) -> None:
        cfg = self.config
        total = plan.total
        if plan.abort is None:
            if cfg.instant:
                due = min(total, plan.k + _INSTANT_BATCH) if self._clients_keep_up() else plan.k
            else:
                due = min(total, int((now - plan.t0) * cfg.line_rate) + 1)
            ncal = len(plan.calib)
            k = plan.k
            log = self._emit_log
            while k < due:
                if k < ncal:
                    flags, line_no, payload = plan.calib[k]
                    view: bytes | memoryview = payload
                else:
                    line_no = k - ncal
                    if plan.swap_at >= 0 and line_no in (plan.swap_at, plan.swap_at + 1):
                        line_no = 2 * plan.swap_at + 1 - line_no
                    flags = 0
                    if line_no == 0:
                        flags |= LineFlags.FIRST
                    if line_no == plan.lines - 1:
                        flags |= LineFlags.LAST
                    off = line_no * plan.row_bytes
                    view = plan.rows[off : off + plan.row_bytes]
                channels = cfg.channels
                if k == plan.zero_at:
                    view, channels = b"", 0
                elif plan.cut:
                    channels = max(1, cfg.channels - plan.cut)
                    row = bytes(view)
                    half = 2 * cfg.channels
                    view = row[: 2 * channels] + row[half : half + 2 * channels]
                self._emit(PacketType.LINE, flags, plan.scan_id, line_no, view, channels)
                if log is not None:
                    digest = hashlib.sha256(view).hexdigest() if cfg.emit_log_hash else "-"
                    log.write(f"{plan.scan_id} {line_no} {int(flags)} {digest}\n")
                k += 1
            plan.k = k
            if log is not None:
                log.flush()
            if k < total:
                return
        emitted = max(0, plan.k - len(plan.calib))
        status = "complete" if plan.abort is None else "aborted"
        end = {
            "scan_id": plan.scan_id,
            "lines_emitted": emitted,
            "status": status,
            "reason": plan.abort or "",
        }
        self._emit(PacketType.SCAN_END, 0, plan.scan_id, emitted, json.dumps(end).encode())
        self._send(EVT, "SCAN_END", plan.scan_id, emitted, status)
        self._plan = None
        self._scans_done += 1
        self.stats["scans"] += 1
        plan.done.set()
        self._scan_ended.set()
        self._wake.set()

    def _clients_keep_up(self) -> bool:
        limit = self._cap // 2
        head = self._head
        return all(c.pos is None or head - c.pos < limit for c in self._conns)

    def _emit(
        self,
        ptype: int,
        flags: int,
        scan_id: int,
        line_no: int,
        payload: bytes | memoryview,
        channels: int | None = None,
    ) -> None:
        seq = self._head
        header = HEADER.pack(
            MAGIC,
            VERSION,
            ptype,
            flags,
            seq,
            time.time_ns(),
            scan_id,
            line_no,
            self.config.channels if channels is None else channels,
            0,
            len(payload),
        )
        self._ring[seq % self._cap] = (
            header,
            payload,
            CRC.pack(zlib.crc32(payload, zlib.crc32(header))),
        )
        self._head = seq + 1
        self.stats["packets_emitted"] += 1

    # -------------------------------------------------------------- data link

    def _flush(self, conn: _DataConn) -> None:
        transport = conn.transport
        pos = conn.pos
        if transport is None or pos is None or transport.is_closing():
            return
        head = self._head
        if pos >= head or time.monotonic() < self._stall_until:
            return
        if transport.get_write_buffer_size() > self.config.high_water_bytes:
            return
        pos = max(pos, head - self._cap, 0)
        end = min(head, pos + _MAX_BATCH)
        ring = self._ring
        cap = self._cap
        pieces: list[bytes | memoryview] = []
        f = self.config.faults
        force = self._force
        if not (f.corrupt_fraction or f.drop_fraction or force["corrupt"] or force["drop"]):
            for s in range(pos, end):
                pieces += ring[s % cap]  # type: ignore[arg-type]
            sent = end - pos
        else:
            sent = 0
            rng = self._rng
            tx_high = self._tx_high
            for s in range(pos, end):
                entry = ring[s % cap]
                assert entry is not None
                if s >= tx_high and (
                    force["drop"] or (f.drop_fraction and rng.random() < f.drop_fraction)
                ):
                    if force["drop"]:
                        force["drop"] -= 1
                    self.stats["dropped"] += 1
                    continue
                if force["corrupt"] or (f.corrupt_fraction and rng.random() < f.corrupt_fraction):
                    if force["corrupt"]:
                        force["corrupt"] -= 1
                    self.stats["corrupted"] += 1
                    pieces.append(_corrupt(b"".join(entry), rng))
                else:
                    pieces += entry
                sent += 1
        if end > self._tx_high:
            self._tx_high = end
        conn.pos = end
        if pieces:
            data = b"".join(pieces)
            transport.write(data)
            self.stats["packets_sent"] += sent
            self.stats["bytes_sent"] += len(data)

    def _stall(self, seconds: float) -> None:
        self._stall_until = max(self._stall_until, time.monotonic() + seconds)
        self.stats["stalls"] += 1

    def _drop_links(self) -> None:
        self.stats["link_drops"] += 1
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.abort()

    async def _pump(self) -> None:
        cfg = self.config
        while True:
            plan = self._plan
            if plan is not None:
                self._advance(plan, time.monotonic())
            for conn in list(self._conns):
                self._flush(conn)
            if cfg.instant and self._plan is not None and self._clients_keep_up():
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(cfg.tick_s)

    async def _runner(self) -> None:
        """Automatic scanning: once armed, a scan every ``interval_s``."""
        cfg = self.config
        next_at = 0.0
        while True:
            self._wake.clear()
            plan = self._plan
            if plan is not None:
                await plan.done.wait()
                next_at = time.monotonic() + cfg.interval_s
                continue
            if self._requests:
                await self._prepare_and_begin(*self._requests.popleft())
                continue
            if self._armed and cfg.auto and (cfg.scans == 0 or self._auto_done < cfg.scans):
                delay = next_at - time.monotonic()
                if delay <= 0 and not (self._faults or self._interlock):
                    self._auto_done += 1
                    await self._prepare_and_begin(self._next_id, cfg.scan_lines)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(delay, cfg.tick_s))
            else:
                await self._wake.wait()

    async def _chaos(self) -> None:
        f = self.config.faults
        rng = random.Random(self.config.seed + 2)
        now = time.monotonic()
        next_stall = now + rng.expovariate(1 / f.stall_every_s) if f.stall_every_s > 0 else None
        next_drop = (
            now + rng.expovariate(1 / f.link_drop_every_s) if f.link_drop_every_s > 0 else None
        )
        while True:
            now = time.monotonic()
            if next_stall is not None and now >= next_stall:
                self._stall(f.stall_s)
                next_stall = now + f.stall_s + rng.expovariate(1 / f.stall_every_s)
            if next_drop is not None and now >= next_drop:
                self._drop_links()
                next_drop = now + rng.expovariate(1 / f.link_drop_every_s)
            wake = min(t for t in (next_stall, next_drop) if t is not None)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    # ----------------------------------------------------------------- serial

    def _status_fields(self) -> list[object]:
        busy = self._busy_id()
        return [
            self.state,
            int(self._armed),
            int(busy is not None),
            "-" if busy is None else busy,
            ";".join(self._faults + (["INTERLOCK"] if self._interlock else [])) or "-",
        ]

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_interval_s)
            self._send(STS, *self._status_fields())

    def _send(self, *fields: object) -> None:
        if self._master < 0:
            return
        frame = encode_frame(*fields)
        rate = self.config.faults.serial_corrupt_fraction
        force = self._force
        if force["serial_corrupt"] or (rate and self._serial_rng.random() < rate):
            if force["serial_corrupt"]:
                force["serial_corrupt"] -= 1
            self.stats["serial_corrupted"] += 1
            frame = _corrupt(frame, self._serial_rng, 1)
        try:
            os.write(self._master, frame)
        except (BlockingIOError, OSError):
            self.stats["serial_overruns"] += 1

    def _on_serial(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        for fields in self._serial_dec.feed(data):
            self.stats["serial_frames_in"] += 1
            self._command(fields)

    def _command(self, f: list[str]) -> None:
        cmd = f[0]
        cfg = self.config
        if cmd == Command.IDN:
            hi, lo = cfg.energies_kev
            self._send(
                ACK, cmd, cfg.vendor, cfg.model, self._serial_no, cfg.firmware, cfg.channels, hi, lo
            )
        elif cmd == Command.STS:
            self._send(ACK, cmd, *self._status_fields())
        elif cmd == Command.ARM:
            if self._interlock or self._faults:
                self._send(NAK, cmd, f"state {self.state}")
            else:
                self.arm()
                self._send(ACK, cmd)
        elif cmd == Command.DISARM:
            self.disarm()
            self._send(ACK, cmd)
        elif cmd == Command.START:
            try:
                scan_id, lines = int(f[1]), int(f[2])
                if scan_id < 0 or not 0 < lines <= 1_000_000:
                    raise ValueError
            except (IndexError, ValueError):
                self._send(NAK, cmd, "bad arguments")
                return
            busy = self._busy_id()
            if self._interlock or self._faults:
                self._send(NAK, cmd, f"state {self.state}")
            elif not self._armed:
                self._send(NAK, cmd, "not armed")
            elif busy is not None:
                if busy == scan_id:
                    self._send(ACK, cmd, scan_id)
                else:
                    self._send(NAK, cmd, f"busy with scan {busy}")
            elif scan_id == self._last_started:
                self._send(ACK, cmd, scan_id)  # a retried START of the scan just finished
            else:
                self._requests.append((scan_id, lines))
                self._wake.set()
                self._send(ACK, cmd, scan_id)
        elif cmd == Command.STOP:
            self._abort("stopped by host")
            self._send(ACK, cmd)
        elif cmd == Command.RESET:
            self._faults.clear()
            self._interlock = False
            self._armed = False
            self._abort("reset")
            self._send(ACK, cmd)
        elif cmd == Command.BEAM:
            if f[1:] != ["OFF"]:
                self._send(NAK, cmd, "bad arguments")
            else:
                self._abort("beam off")
                self._send(ACK, cmd, "OFF")
        else:
            self._send(NAK, cmd, "unknown command")


def _corrupt(data: bytes, rng: random.Random, flips: int = 0) -> bytes:
    out = bytearray(data)
    for _ in range(flips or rng.randint(1, 3)):
        out[rng.randrange(len(out))] ^= rng.randint(1, 255)
    return bytes(out)


_OWNERS = ("MSCU", "MAEU", "CMAU", "HLXU", "TCNU", "OOLU")


def _renumbered(record: dict[str, Any], base: int) -> dict[str, Any]:
    """``record`` with its GD's container number moved on by ``base``.

    A number of ISO 6346 form (``ABCU`` + six-digit serial + check digit) gets
    ``base`` added to its serial (modulo 10⁶) and its check digit made anew (right even
    when the source's was not), so the number is one an RMS can declare; any other
    ``ABCD`` + digits has ``base`` added to its digits.
    The gate's reading (``container``) follows the declaration it matched; a record
    without a GD container number is returned as it is.
    """
    gd = record.get("gd")
    if not base or not isinstance(gd, dict):
        return record
    old = gd.get("container_number")
    if not isinstance(old, str) or len(old) < 5 or not old[4:].isdigit():
        return record
    if re.fullmatch(iso6346.PATTERN, old):
        first = f"{old[:4]}{(int(old[4:10]) + base) % 10**6:06d}"
        new = f"{first}{iso6346.check_digit(first)}"
    else:
        digits = len(old) - 4
        new = f"{old[:4]}{(int(old[4:]) + base) % 10**digits:0{digits}d}"
    out = {**record, "gd": {**gd, "container_number": new}}
    if record.get("container") == old:
        out["container"] = new
    return out


def _container_code(rng: random.Random) -> str:
    """A container number with a valid ISO 6346 check digit."""
    owner = rng.choice(_OWNERS)
    first = f"{owner}{rng.randrange(10**6):06d}"
    return f"{first}{iso6346.check_digit(first)}"


def _validate(cfg: SimConfig) -> None:
    def bad(what: str, fix: str) -> ConfigError:
        return ConfigError(f"simulator {cfg.name}: {what}", fix=fix)

    if not 1 <= cfg.channels <= MAX_CHANNELS:
        raise bad(f"channels={cfg.channels}", f"Use 1..{MAX_CHANNELS} channels.")
    if cfg.line_rate <= 0:
        raise bad(f"line_rate={cfg.line_rate}", "Use a positive line rate (lines per second).")
    if cfg.scan_lines < 1:
        raise bad(f"scan_lines={cfg.scan_lines}", "Use at least one line per scan.")
    if cfg.buffer_s <= 0 or cfg.tick_s <= 0:
        raise bad("buffer_s and tick_s must be positive", "Give positive durations in seconds.")
    f = cfg.faults
    for name in ("corrupt_fraction", "drop_fraction", "serial_corrupt_fraction"):
        if not 0.0 <= getattr(f, name) < 1.0:
            raise bad(f"{name}={getattr(f, name)}", "Give a fraction between 0 and 1.")
