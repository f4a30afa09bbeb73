"""LSP-1 data link shell: the TCP connection and its tasks around :class:`LinkCore`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncGenerator
from typing import Any

from drivers._interface import LinkEpoch, LinkGap, LinkStats, Packet
from drivers.lsp._io import PacketDecoder, RequestKind, pack_request
from drivers.lsp._linkcore import Action, Deliver, Drop, LinkCore, SendResume

__all__ = ["LspDataLink", "set_keepalive"]

log = logging.getLogger(__name__)

_READ_SIZE = 256 * 1024

KEEPALIVE_IDLE_S = 1
"""TCP keepalive: seconds of silence before the first probe."""
KEEPALIVE_INTERVAL_S = 1
"""TCP keepalive: seconds between probes."""
KEEPALIVE_COUNT = 3
"""TCP keepalive: unanswered probes before the kernel drops the connection."""
USER_TIMEOUT_MS = 5000
"""TCP_USER_TIMEOUT: sent data unacknowledged this long (ms) drops the connection.
With the keepalive values a vanished scanner or a cut cable is noticed within
about 4-5 s, between scans too (issue 13, kind 6)."""


def set_keepalive(sock: socket.socket | None) -> None:
    """Turn on TCP keepalive and the user timeout on ``sock`` (where the OS has them).

    Args:
        sock: a connected TCP socket; None is ignored.
    """
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
            ("TCP_KEEPCNT", KEEPALIVE_COUNT),
            ("TCP_USER_TIMEOUT", USER_TIMEOUT_MS),
        ):
            opt = getattr(socket, name, None)
            if opt is not None:
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)


class LspDataLink:
    """The detector data link of an LSP-1 scanner, over TCP.

    :meth:`packets` yields every packet once, in sequence order. On a bad packet
    or a hole in the sequence it asks the scanner to go back (RESUME on the same
    connection); on a dropped or silent connection it reconnects with a capped
    exponential backoff and resumes. What the scanner can no longer replay comes
    out as a :class:`LinkGap` (cause ``LOST``), after ``gap_confirmations`` clean
    answers agree that it is gone; an intact packet outside the protocol as a
    one-packet gap (cause ``VIOLATION``); a restarted scanner as a
    :class:`LinkEpoch` (after a ``RESTART`` gap for what of the old session may
    be lost). The rules are :class:`~drivers.lsp._linkcore.LinkCore`'s; this
    class owns the socket (TCP keepalive on, see :func:`set_keepalive`).

    ``stall_timeout_s`` applies while a scan is in progress or a resume is owed;
    ``idle_timeout_s`` between scans; ``connect_timeout_s`` to connect and again
    for the scanner's SESSION packet.

    Attributes:
        stats: the link's counters (:class:`LinkStats`).
        connected: a connection is up.
        session: the scanner session followed ("" before the first SESSION);
            persist it with the position to notice a restart across edge restarts.
        serial: the scanner's serial number, as it announced it.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        stall_timeout_s: float = 2.0,
        idle_timeout_s: float = 30.0,
        connect_timeout_s: float = 2.0,
        resume_timeout_s: float = 1.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        gap_confirmations: int = 2,
        repeat_limit: int = 5,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        # the rules' settings live in the core (LinkCore checks and documents them);
        # the shell keeps them only to make a core per packets() call
        self._tuning: dict[str, Any] = {
            "stall_timeout_s": stall_timeout_s,
            "idle_timeout_s": idle_timeout_s,
            "connect_timeout_s": connect_timeout_s,
            "resume_timeout_s": resume_timeout_s,
            "backoff_initial_s": backoff_initial_s,
            "backoff_max_s": backoff_max_s,
            "gap_confirmations": gap_confirmations,
            "repeat_limit": repeat_limit,
        }
        self.stats = LinkStats()
        self.connected = False
        self.session = ""
        self.serial = ""
        self._closed = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None

    def __repr__(self) -> str:
        return f"LspDataLink({self.host}:{self.port})"

    def _core(self, next_seq: int, session: str) -> LinkCore:
        return LinkCore(
            next_seq,
            session,
            stats=self.stats,
            clock=asyncio.get_running_loop().time,
            **self._tuning,
        )

    async def packets(
        self, next_seq: int, session: str = ""
    ) -> AsyncGenerator[Packet | LinkGap | LinkEpoch, None]:
        """Yield packets in strict sequence order from ``next_seq`` on, until closed.

        Args:
            next_seq: first sequence number wanted.
            session: the scanner session ``next_seq`` belongs to ("" if unknown:
                the first announced one is adopted).

        Yields:
            :class:`Packet`, :class:`LinkGap` and :class:`LinkEpoch` items.
        """
        loop = asyncio.get_running_loop()
        core = self._core(next_seq, session)
        self.session = session
        decoder = PacketDecoder(self.stats)
        while not self._closed.is_set():
            core.connecting()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that races with completion, and the daemon cannot stop
                async with asyncio.timeout(self.connect_timeout_s):
                    reader, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError):
                await self._pause(core.connect_failed())
                continue
            set_keepalive(writer.get_extra_info("socket"))
            self._writer = writer
            self.connected = True
            decoder.reset()
            orderly = False
            try:
                actions: list[Action] = core.connected_now()
                while not self._closed.is_set():
                    # requests first: the core timed them from now, and the consumer
                    # may hold a delivery for long (a full spool pauses it)
                    for act in actions:
                        if isinstance(act, SendResume):
                            writer.write(pack_request(RequestKind.RESUME, act.seq))
                    drop: Drop | None = None
                    t0 = loop.time()
                    for act in actions:
                        if isinstance(act, Deliver):
                            self.session, self.serial = core.session, core.serial
                            yield act.item
                        elif isinstance(act, Drop):
                            drop = act
                            break
                    core.held(loop.time() - t0)
                    self.session, self.serial = core.session, core.serial
                    if drop is not None:
                        (log.warning if drop.failed else log.info)("%r: %s", self, drop.reason)
                        break
                    try:
                        async with asyncio.timeout(core.read_timeout()):
                            data = await reader.read(_READ_SIZE)
                    except TimeoutError:
                        actions = core.timed_out()
                        continue
                    if not data:
                        orderly = True
                        break
                    self.stats.bytes += len(data)
                    actions = []
                    for item in decoder.feed(data):
                        actions += core.item(item)
                    actions += core.batch_done()
            except (OSError, EOFError):
                pass
            finally:
                self.connected = False
                self._writer = None
                await _close_writer(writer)
            delay = core.disconnected(orderly)
            if delay and not self._closed.is_set():
                await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closed.wait()

    async def close(self) -> None:
        """Stop :meth:`packets` (it returns) and drop the connection."""
        self._closed.set()
        writer = self._writer
        if writer is not None:
            writer.close()


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
