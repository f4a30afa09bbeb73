"""The data link's asyncio shell: socket options and a scanner that never says SESSION."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from drivers.lsp import LspDataLink
from drivers.lsp._link import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE_S,
    KEEPALIVE_INTERVAL_S,
    USER_TIMEOUT_MS,
    set_keepalive,
)

DEADLINE = 10.0


def options(sock: socket.socket) -> tuple[int, int, int, int, int]:
    tcp = socket.IPPROTO_TCP
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
        sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
        sock.getsockopt(tcp, socket.TCP_KEEPCNT),
        sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
    )


def test_keepalive_notices_a_dead_peer_within_seconds() -> None:
    with socket.socket() as sock:
        set_keepalive(sock)
        assert options(sock) == (1, 1, 1, 3, 5000)
    # silence, then 3 unanswered probes a second apart: about 4 s; sent data: 5 s
    assert KEEPALIVE_IDLE_S + KEEPALIVE_COUNT * KEEPALIVE_INTERVAL_S <= 5
    assert USER_TIMEOUT_MS <= 5000
    set_keepalive(None)  # no socket (a transport without one): nothing to do


async def test_a_scanner_without_session_is_a_failed_connection() -> None:
    """A server that accepts and says nothing (an LSP-1 scanner without SESSION)."""
    conns: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()  # the link must not send RESUME before a SESSION
            assert reader.at_eof()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = LspDataLink("127.0.0.1", port, connect_timeout_s=0.1, backoff_initial_s=0.01)
    items: list[object] = []

    async def read() -> None:
        async for item in link.packets(0):
            items.append(item)

    task = asyncio.create_task(read())
    seen: list[tuple[int, int, int, int, int]] = []
    try:

        async def until_two_failures() -> None:
            while link.stats.no_session < 2:
                writer = link._writer  # the link's own socket, while it waits for SESSION
                if writer is not None and not seen:
                    seen.append(options(writer.get_extra_info("socket")))
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until_two_failures(), DEADLINE)
    finally:
        await link.close()
        await asyncio.wait_for(task, DEADLINE)
        server.close()
        await server.wait_closed()
    assert items == []
    assert seen == [(1, 1, 1, 3, 5000)]  # keepalive on the data link's socket
    assert link.stats.reconnects >= 1 and link.stats.resumes == 0
    assert link.session == ""
