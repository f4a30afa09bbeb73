"""Small network helpers shared by the command line, the daemons, the demo and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

__all__ = ["close_monitor", "free_port", "handshake_monitor", "send_nowait", "watch_handshake"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host`` (bind to port 0, then release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def send_nowait(sock: zmq.Socket[Any], frames: Sequence[Any]) -> bool:
    """Send ``frames`` without blocking; False when the socket would block or failed.

    On a ``zmq.asyncio`` socket ``send_multipart(..., NOBLOCK)`` does not raise
    ``zmq.Again``: it returns a future holding it, which, never awaited, ends as
    "Future exception was never retrieved" with a traceback in the log (once per
    try, e.g. every 0.5 s while central refuses the edge). This helper retrieves
    that outcome in every case.
    """
    try:
        r = sock.send_multipart(list(frames), flags=zmq.NOBLOCK)
    except zmq.ZMQError:
        return False
    if isinstance(r, asyncio.Future):
        if r.done():
            return not r.cancelled() and r.exception() is None
        r.add_done_callback(_retrieve)
    return True


def _retrieve(f: asyncio.Future[Any]) -> None:
    if not f.cancelled():
        f.exception()


_HANDSHAKE = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
)


async def watch_handshake(
    sock: zmq.asyncio.Socket,
    endpoint: str,
    edge_id: str,
    log: logging.Logger,
    *,
    on_refused: Callable[[str], None] | None = None,
    repeat_s: float = 60.0,
    monitor: zmq.asyncio.Socket | None = None,
) -> None:
    """Log why central refuses this socket's CurveZMQ handshake, until cancelled.

    A refused key ("not enrolled at central …", with the command that enrolls
    it) is logged once at ERROR, again every ``repeat_s`` while it lasts, and
    its end ("accepted") once at INFO. ``on_refused(reason)`` runs on every
    refusal; ``on_refused("")`` when a handshake succeeds again.

    Args:
        sock: the edge's DEALER socket (connected or about to be).
        endpoint: central's address, for the message.
        edge_id: this edge's id, for the message.
        log: where to log.
        on_refused: optional callback, see above.
        repeat_s: how often a lasting refusal is logged again, s.
        monitor: the socket's :func:`handshake_monitor`, made before it connected (else
            one is made here, and a handshake refused before that is not seen); the
            caller closes it.
    """
    mon = monitor if monitor is not None else sock.get_monitor_socket(_HANDSHAKE)
    refused_at: float | None = None
    try:
        while True:
            ev = parse_monitor_message(await mon.recv_multipart())
            kind = ev["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if refused_at is not None:
                    log.info("central %s accepts edge %s now", endpoint, edge_id)
                    refused_at = None
                    if on_refused is not None:
                        on_refused("")
                continue
            if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                why = (
                    f"not enrolled at central {endpoint}: it refused the key of edge "
                    f"{edge_id} (status {ev['value']}); fix: enroll it there with 'nii "
                    f"central enroll --config central.toml {edge_id}.pub', or check that "
                    "cir_public is that central's key"
                )
            else:
                why = (
                    f"CurveZMQ handshake with central {endpoint} failed; fix: check that "
                    "cir_public is that central's public key"
                )
            now = time.monotonic()
            if refused_at is None or now - refused_at >= repeat_s:
                log.error("%s", why)
                refused_at = now
            if on_refused is not None:
                on_refused(why)
    finally:
        if monitor is None:
            close_monitor(sock, mon)


def handshake_monitor(sock: zmq.asyncio.Socket) -> zmq.asyncio.Socket:
    """A monitor of ``sock``'s CurveZMQ handshakes, for :func:`watch_handshake`: make it
    before ``sock`` connects, so that a refusal at the first connection is seen."""
    return sock.get_monitor_socket(_HANDSHAKE)


def close_monitor(sock: zmq.asyncio.Socket, mon: zmq.asyncio.Socket) -> None:
    """Stop and close a :func:`handshake_monitor` of ``sock``."""
    with contextlib.suppress(zmq.ZMQError):  # the socket may be closed already
        sock.disable_monitor()
    mon.close(linger=0)
