"""LSP-1 serial control logic: identify, arm, scan, stop, and listen for events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import serial

from core.errors import DriverError
from drivers._interface import ControlEvent, ScannerIdentity, ScannerStatus
from drivers.lsp._io import ACK, EVT, NAK, STS, Command, SerialDecoder, encode_frame

__all__ = ["LspControl"]

_FIX_ABSENT = (
    "Check the serial cable and that the scanner is powered, that this user is in the "
    "`dialout` group, and the `serial` path in the config."
)
_FIX_SILENT = (
    "The scanner is not answering: check that it is powered and its control cable is "
    "plugged in, and that it runs at 115200 8N1."
)
_EVENT_QUEUE = 1024


class LspControl:
    """Serial control and status link of an LSP-1 scanner (pyserial, non-blocking).

    One request at a time; each is retried ``retries`` times (every command is
    idempotent on the scanner, so a lost reply costs only time). Unsolicited
    ``EVT`` and ``STS`` frames go to :meth:`events`. Bad bytes are skipped up to the
    next ``$`` and counted in :attr:`stats`.
    """

    def __init__(
        self,
        path: str,
        *,
        baudrate: int = 115200,
        reply_timeout_s: float = 0.5,
        retries: int = 3,
    ) -> None:
        self.path = path
        self.baudrate = baudrate
        self.reply_timeout_s = reply_timeout_s
        self.retries = max(1, retries)
        self._serial: serial.Serial | None = None
        self._decoder = SerialDecoder()
        self.stats: dict[str, int] = self._decoder.stats
        self.stats.update({"naks": 0, "timeouts": 0, "events_dropped": 0})
        self._lock = asyncio.Lock()
        self._waiting: tuple[str, asyncio.Future[list[str]]] | None = None
        self._events: asyncio.Queue[ControlEvent | None] = asyncio.Queue(_EVENT_QUEUE)
        self._broken: DriverError | None = None
        self.busy = False
        """Whether the last :meth:`open` failed because another process holds the device."""

    def __repr__(self) -> str:
        return f"LspControl({self.path})"

    async def open(self) -> None:
        """Open the serial device by its path, for this process alone.

        Raises:
            DriverError: the device is absent or unusable, or another process holds
                it (then :attr:`busy` is True).
        """
        if self._serial is not None:
            return
        self.busy = False
        try:
            # exclusive: a second process on the same device is refused (issue 13, kind 5)
            port = serial.Serial(
                self.path, self.baudrate, timeout=0, write_timeout=1.0, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            if "exclusively lock" in str(exc):
                self.busy = True
                raise DriverError(
                    f"another process holds the scanner's serial device {self.path}",
                    fix="Stop the other process using it (another nii edge on the same "
                    "configuration?) or point `serial` at this scanner's own device.",
                ) from exc
            raise DriverError(
                f"cannot open the scanner's serial device {self.path}: {exc}", fix=_FIX_ABSENT
            ) from exc
        port.reset_input_buffer()
        self._serial = port
        self._broken = None
        # events of the handle that went away (and its end-of-stream mark) are stale
        self._events = asyncio.Queue(_EVENT_QUEUE)
        asyncio.get_running_loop().add_reader(port.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            data = port.read(4096)
        except (serial.SerialException, OSError) as exc:
            self._fail(DriverError(f"serial device {self.path} went away: {exc}", fix=_FIX_ABSENT))
            return
        if not data:
            return
        for fields in self._decoder.feed(data):
            self._dispatch(fields)

    def _dispatch(self, fields: list[str]) -> None:
        head = fields[0]
        if head in (ACK, NAK) and len(fields) >= 2:
            waiting = self._waiting
            if waiting is not None and waiting[0] == fields[1] and not waiting[1].done():
                waiting[1].set_result(fields)
            return
        if head == EVT and len(fields) >= 2:
            event = ControlEvent(fields[1], fields[2:], ",".join(fields))
        elif head == STS:
            event = ControlEvent("STATUS", fields[1:], ",".join(fields))
        else:
            self.stats["bad_frame"] += 1
            return
        if self._events.full():
            self._events.get_nowait()
            self.stats["events_dropped"] += 1
        self._events.put_nowait(event)

    def _fail(self, error: DriverError) -> None:
        self._broken = error
        self._detach()
        waiting = self._waiting
        if waiting is not None and not waiting[1].done():
            waiting[1].set_exception(error)
        if self._events.full():
            self._events.get_nowait()
        self._events.put_nowait(None)

    def _detach(self) -> None:
        port, self._serial = self._serial, None
        if port is None:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(port.fileno())
        port.close()

    async def request(self, *fields: object) -> list[str]:
        """Send one command and return the fields of its ACK (after ``ACK,<cmd>``)."""
        cmd = str(fields[0])
        frame = encode_frame(*fields)
        loop = asyncio.get_running_loop()
        async with self._lock:
            for _ in range(self.retries):
                port = self._serial
                if port is None:
                    raise self._broken or DriverError(
                        f"control link {self.path} is not open",
                        fix="Call open() before sending commands.",
                    )
                fut: asyncio.Future[list[str]] = loop.create_future()
                self._waiting = (cmd, fut)
                try:
                    port.write(frame)
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can lose a
                    # cancellation that races with the reply
                    async with asyncio.timeout(self.reply_timeout_s):
                        reply = await fut
                except TimeoutError:
                    self.stats["timeouts"] += 1
                    continue
                except (serial.SerialException, OSError) as exc:
                    error = DriverError(
                        f"cannot write to serial device {self.path}: {exc}", fix=_FIX_ABSENT
                    )
                    self._fail(error)
                    raise error from exc
                finally:
                    self._waiting = None
                if reply[0] == NAK:
                    self.stats["naks"] += 1
                    reason = ",".join(reply[2:]) or "no reason given"
                    raise DriverError(
                        f"scanner on {self.path} refused {cmd}: {reason}",
                        fix="Check the scanner's state (status) and clear faults with reset.",
                    )
                return reply[2:]
        raise DriverError(
            f"scanner on {self.path} is not answering: no reply to {cmd} after "
            f"{self.retries} tries of {self.reply_timeout_s:g} s",
            fix=_FIX_SILENT,
        )

    async def identify(self) -> ScannerIdentity:
        f = await self.request(Command.IDN)
        try:
            return ScannerIdentity(
                vendor=f[0],
                model=f[1],
                serial=f[2],
                firmware=f[3],
                channels=int(f[4]),
                energies_kev=tuple(int(x) for x in f[5:7]),
            )
        except (IndexError, ValueError) as exc:
            raise DriverError(
                f"scanner on {self.path} sent a malformed IDN reply: {f}",
                fix="Check that the scanner speaks LSP-1 (firmware version).",
            ) from exc

    async def status(self) -> ScannerStatus:
        f = await self.request(Command.STS)
        return parse_status(f, self.path)

    async def arm(self) -> None:
        await self.request(Command.ARM)

    async def disarm(self) -> None:
        await self.request(Command.DISARM)

    async def start_scan(self, scan_id: int, lines: int) -> None:
        await self.request(Command.START, scan_id, lines)

    async def stop_scan(self) -> None:
        await self.request(Command.STOP)

    async def beam_off(self) -> None:
        await self.request(Command.BEAM, "OFF")

    async def reset(self) -> None:
        await self.request(Command.RESET)

    async def events(self) -> AsyncGenerator[ControlEvent, None]:
        """Unsolicited events (SCAN_START, SCAN_END, FAULT, STATUS) until closed."""
        while True:
            event = await self._events.get()
            if event is None:
                if self._broken is not None:
                    raise self._broken
                return
            yield event

    async def close(self) -> None:
        self._detach()
        waiting = self._waiting
        if waiting is not None and not waiting[1].done():
            waiting[1].cancel()
        if self._events.full():
            self._events.get_nowait()
        self._events.put_nowait(None)


def parse_status(f: list[str], path: str = "") -> ScannerStatus:
    """A :class:`ScannerStatus` from the fields of ``ACK,STS`` or ``STS`` (after the head)."""
    try:
        state, armed, scanning, scan_id, faults = f[:5]
        return ScannerStatus(
            state=state,
            armed=armed == "1",
            scanning=scanning == "1",
            scan_id=None if scan_id == "-" else int(scan_id),
            faults=[] if faults == "-" else faults.split(";"),
            raw=",".join(f),
        )
    except ValueError as exc:
        raise DriverError(
            f"scanner on {path} sent a malformed status: {f}",
            fix="Check that the scanner speaks LSP-1 (firmware version).",
        ) from exc
