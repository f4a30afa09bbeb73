"""LSP-1 data link logic: connect, resume, verify, go back N, report what is lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from drivers._interface import LinkGap, LinkStats, Packet, PacketType
from drivers.lsp._io import PacketDecoder, RequestKind, pack_request

__all__ = ["LspDataLink"]

_READ_SIZE = 256 * 1024


class LspDataLink:
    """The detector data link of an LSP-1 scanner, over TCP.

    :meth:`packets` yields every packet once, in sequence order. On a bad packet
    or a hole in the sequence it asks the scanner to go back (RESUME on the same
    connection); on a dropped or silent connection it reconnects with a capped
    exponential backoff and resumes. What the scanner can no longer replay comes
    out as a :class:`LinkGap`, after ``gap_confirmations`` clean answers agree
    that it is gone (one answer could be a packet lost on the way).

    ``stall_timeout_s`` applies while a scan is in progress or a resume is owed;
    ``idle_timeout_s`` between scans (a dead link is noticed before the next truck).
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
    ) -> None:
        self.host = host
        self.port = port
        self.stall_timeout_s = stall_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.resume_timeout_s = resume_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.gap_confirmations = max(1, gap_confirmations)
        self.stats = LinkStats()
        self.connected = False
        self._closed = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None

    def __repr__(self) -> str:
        return f"LspDataLink({self.host}:{self.port})"

    async def packets(self, next_seq: int) -> AsyncGenerator[Packet | LinkGap, None]:
        """Yield packets in strict sequence order from ``next_seq`` on, until closed."""
        stats = self.stats
        loop = asyncio.get_running_loop()
        decoder = PacketDecoder(stats)
        expected = next_seq
        max_seen = -1  # highest seq ever seen: the scanner holds everything up to it
        in_scan = False
        backoff = self.backoff_initial_s
        attempts = 0
        votes = 0  # clean resume answers that started beyond `expected`
        while not self._closed.is_set():
            if attempts:
                stats.reconnects += 1
            attempts += 1
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout_s
                )
            except (OSError, TimeoutError):
                await self._pause(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            self._writer = writer
            self.connected = True
            decoder.reset()
            delivered = False
            try:
                writer.write(pack_request(RequestKind.RESUME, expected))
                awaiting = True  # a RESUME for `expected` is owed an answer
                fresh = True  # the next good packet is the first of this connection
                clean = True  # no bad packet since the last RESUME
                resume_at = loop.time()
                prev = -1
                while not self._closed.is_set():
                    owed = in_scan or (awaiting and max_seen >= expected)
                    try:
                        async with asyncio.timeout(
                            self.stall_timeout_s if owed else self.idle_timeout_s
                        ):
                            data = await reader.read(_READ_SIZE)
                    except TimeoutError:
                        if owed:
                            stats.stalls += 1
                        break
                    if not data:
                        break
                    stats.bytes += len(data)
                    for pkt in decoder.feed(data):
                        if pkt is None:
                            clean = False
                            if not awaiting:
                                writer.write(pack_request(RequestKind.RESUME, expected))
                                stats.resumes += 1
                                awaiting, resume_at = True, loop.time()
                            continue
                        seq = pkt.seq
                        if seq > max_seen:
                            max_seen = seq
                        if seq == expected:
                            pass
                        elif seq < expected:
                            prev = seq  # a duplicate after going back
                            fresh = False
                            continue
                        else:
                            answer = fresh or (awaiting and seq <= prev)
                            prev = seq
                            fresh = False
                            if answer and clean:
                                votes += 1
                            if not (answer and clean and votes >= self.gap_confirmations):
                                if answer or not awaiting:
                                    writer.write(pack_request(RequestKind.RESUME, expected))
                                    stats.resumes += 1
                                    awaiting, clean, resume_at = True, True, loop.time()
                                continue
                            gap = LinkGap(
                                expected,
                                seq - 1,
                                f"scanner no longer holds packets {expected}..{seq - 1}",
                            )
                            stats.gaps += 1
                            stats.lost_packets += seq - expected
                            yield gap
                        expected = seq + 1
                        prev = seq
                        fresh = awaiting = False
                        clean = True
                        votes = 0
                        delivered = True
                        stats.packets += 1
                        ptype = pkt.type
                        if ptype is PacketType.SCAN_START:
                            in_scan = True
                        elif ptype is PacketType.SCAN_END:
                            in_scan = False
                        yield pkt
                    if (
                        awaiting
                        and max_seen >= expected
                        and loop.time() - resume_at > (self.resume_timeout_s)
                    ):
                        break  # the answer got lost: a fresh connection is unambiguous
            except (OSError, EOFError):
                pass
            finally:
                self.connected = False
                self._writer = None
                await _close_writer(writer)
            if delivered:
                backoff = self.backoff_initial_s
            elif not self._closed.is_set():
                await self._pause(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), delay)

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
