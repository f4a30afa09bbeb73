"""core.net on real loopback sockets: non-blocking sends leave no stray futures; a refused
CurveZMQ handshake is logged as 'not enrolled at central' with the fix."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest
import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from core.net import free_port, send_nowait, watch_handshake


async def test_send_nowait_retrieves_the_would_block_error() -> None:
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    ctx = zmq.asyncio.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IMMEDIATE, 1)  # no peer: every send would block
    s.connect(f"tcp://127.0.0.1:{free_port()}")
    try:
        assert send_nowait(s, [b"hello"]) is False
        gc.collect()
        await asyncio.sleep(0.05)
        gc.collect()
        assert errors == [], errors  # nothing "never retrieved"
    finally:
        s.close(0)
        ctx.term()
        loop.set_exception_handler(None)


class _Nobody:
    def callback(self, domain: str, key: bytes) -> bool:
        return False


async def test_refused_handshake_is_named(caplog: pytest.LogCaptureFixture) -> None:
    server_pub, server_sec = zmq.curve_keypair()
    client_pub, client_sec = zmq.curve_keypair()
    ctx = zmq.asyncio.Context()
    auth = AsyncioAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback("*", credentials_provider=_Nobody())  # nobody is enrolled
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.curve_server = True
    router.curve_secretkey = server_sec
    router.curve_publickey = server_pub
    port = free_port()
    router.bind(f"tcp://127.0.0.1:{port}")
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.curve_secretkey = client_sec
    dealer.curve_publickey = client_pub
    dealer.curve_serverkey = server_pub
    log = logging.getLogger("test.net")
    refusals: list[str] = []
    watch = asyncio.create_task(
        watch_handshake(
            dealer, f"tcp://127.0.0.1:{port}", "edge-x", log, on_refused=refusals.append
        )
    )
    try:
        with caplog.at_level(logging.ERROR, logger="test.net"):
            await asyncio.sleep(0.05)  # the monitor is attached before connecting
            dealer.connect(f"tcp://127.0.0.1:{port}")
            async with asyncio.timeout(10):
                while not refusals:
                    await asyncio.sleep(0.02)
        assert "not enrolled at central" in refusals[0] and "edge-x" in refusals[0]
        msgs = [r.getMessage() for r in caplog.records]
        assert len(msgs) == 1 and "nii central enroll" in msgs[0], msgs
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        dealer.close(0)
        router.close(0)
        auth.stop()
        ctx.term()
