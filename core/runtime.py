"""Running a daemon: uvloop, logging, and a clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

import uvloop


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; ``stop`` is set on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await main(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run a daemon's main coroutine on uvloop until it returns or a signal stops it."""
    uvloop.run(until_signal(main))


async def cancel_and_wait(
    tasks: list[asyncio.Task[object] | None], what: str, timeout: float = 5.0
) -> None:
    """Cancel tasks and wait for them, at most ``timeout`` seconds.

    A task that swallows its cancellation (a reconnect loop around
    ``asyncio.wait_for`` can, on Python 3.11) must not keep a daemon from stopping:
    it is cancelled again, named in the log, and left behind.
    """
    live = [t for t in tasks if t is not None and not t.done()]
    for t in live:
        t.cancel()
    end = asyncio.get_running_loop().time() + timeout
    pending = set(live)
    while pending:
        left = end - asyncio.get_running_loop().time()
        if left <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(left, 0.5))
        for t in pending:
            t.cancel()  # again: a cancellation can be lost in a race with completion
    for t in pending:
        logging.getLogger("nii").warning(
            "%s: task %s did not stop in %.0f s", what, t.get_name(), timeout
        )
    for t in live:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: it was logged where it happened
