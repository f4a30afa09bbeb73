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
    given = [t for t in tasks if t is not None]
    live = [t for t in given if not t.done()]
    try:
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
    finally:
        # retrieved, also when the caller is itself cancelled before it looks (a daemon
        # stopping as its device goes away): asyncio would print the exception with a
        # traceback at exit ("Task exception was never retrieved"); the caller re-raises
        # or logs what it needs
        for t in given:
            if t.done() and not t.cancelled():
                t.exception()


class Backoff:
    """A capped, doubling delay that starts over after a long enough good run (pure).

    Args:
        first_s: the first delay, s.
        cap_s: the longest delay, s.
        reset_after_s: a run at least this long counts as healthy: the next
            delay is ``first_s`` again.
    """

    def __init__(self, first_s: float = 0.5, cap_s: float = 10.0, reset_after_s: float = 30.0):
        self.first_s, self.cap_s, self.reset_after_s = first_s, cap_s, reset_after_s
        self._next = first_s

    def after_run(self, ran_s: float) -> float:
        """The delay before the next try, given that the last one ran ``ran_s`` seconds."""
        if ran_s >= self.reset_after_s:
            self._next = self.first_s
        delay = self._next
        self._next = min(self.cap_s, self._next * 2)
        return delay

    def reset(self) -> None:
        """Start over at ``first_s`` (the thing worked)."""
        self._next = self.first_s


async def supervise(
    name: str,
    body: Callable[[], Awaitable[None]],
    *,
    on_crash: Callable[[str, Exception, float], None] | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Run ``body()`` for ever, restarting it with backoff when it raises.

    Returns when ``body()`` returns; cancellation goes through. A body that
    raises an :class:`Exception` is restarted after the backoff's delay, and
    ``on_crash(name, exc, delay_s)`` is called first (log and alarm there). A
    :class:`BaseException` that is not an :class:`Exception` (``SystemExit``,
    ``KeyboardInterrupt``) is not caught: it takes the process down.

    Args:
        name: the task's name, for the log and ``on_crash``.
        body: makes the coroutine to run (called once per try).
        on_crash: told of each crash before the delay.
        backoff: the delays (default: 0.5 s doubling to 10 s).
    """
    backoff = backoff or Backoff()
    loop = asyncio.get_running_loop()
    while True:
        t0 = loop.time()
        try:
            await body()
            return
        except Exception as exc:  # restarted: the owner hears of it through on_crash
            delay = backoff.after_run(loop.time() - t0)
            logging.getLogger("nii").error(
                "%s crashed: %s; restarting in %.1f s", name, exc, delay, exc_info=exc
            )
            if on_crash is not None:
                on_crash(name, exc, delay)
            await asyncio.sleep(delay)
