"""The systemd notify protocol against a real unix datagram socket.

Each test plays the service manager: it binds a datagram socket (a path, or a
name in the abstract namespace), hands its address to a Notifier the way
systemd does through ``$NOTIFY_SOCKET``, and reads what arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import select
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

from core.sdnotify import Notifier, watchdog_loop

DEADLINE_S = 5.0


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, str]]:
    """A bound, non-blocking datagram socket and its ``$NOTIFY_SOCKET`` value."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    with contextlib.ExitStack() as stack:
        stack.callback(sock.close)
        if request.param == "path":
            # A short directory of its own: unix socket paths are limited to
            # 107 bytes, which a deep pytest tmp_path can exceed.
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="nii-"))
            address = os.path.join(directory, "notify")
            sock.bind(address)
            yield sock, address
        else:
            name = f"nii-test-{uuid.uuid4().hex}"
            sock.bind("\0" + name)
            yield sock, "@" + name


def _recv(sock: socket.socket, timeout: float = DEADLINE_S) -> bytes:
    """The next datagram, or a test failure once ``timeout`` passes."""
    readable, _, _ = select.select([sock], [], [], timeout)
    if not readable:
        pytest.fail(f"no datagram within {timeout} s")
    return sock.recv(4096)


def _pending(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued on ``sock``, without waiting."""
    out: list[bytes] = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


async def _arecv(sock: socket.socket) -> bytes:
    """The next datagram, awaited on the running loop with a deadline."""
    async with asyncio.timeout(DEADLINE_S):
        return await asyncio.get_running_loop().sock_recv(sock, 4096)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_sends_each_state_to_the_socket(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled

    assert notifier.ready()
    assert _recv(sock) == b"READY=1"
    assert notifier.status("streaming to central")
    assert _recv(sock) == b"STATUS=streaming to central"
    assert notifier.watchdog()
    assert _recv(sock) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert _recv(sock) == b"STOPPING=1"


def test_status_cannot_inject_other_assignments(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    Notifier({"NOTIFY_SOCKET": address}).status("spool full\nREADY=1")
    assert _recv(sock) == b"STATUS=spool full READY=1"


def test_reads_the_process_environment_by_default(
    manager: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, address = manager
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert Notifier().ready()
    assert _recv(sock) == b"READY=1"


def test_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")

    def no_socket(*args: object, **kwargs: object) -> None:
        raise AssertionError("a disabled Notifier opened a socket")

    monkeypatch.setattr(socket, "socket", no_socket)
    for notifier in (Notifier(), Notifier({})):
        assert not notifier.enabled
        assert not notifier.ready()
        assert not notifier.status("idle")
        assert not notifier.watchdog()
        assert not notifier.stopping()
        assert notifier.watchdog_interval() is None


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({}, None),
    ],
    ids=["usec", "own-pid", "other-pid", "bad-pid", "zero", "bad-usec", "unset"],
)
def test_watchdog_interval(extra: dict[str, str], expected: float | None) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "@nii-unused", **extra})
    assert notifier.watchdog_interval() == expected


def test_socket_errors_are_logged_once_and_never_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with tempfile.TemporaryDirectory(prefix="nii-") as directory:
        notifier = Notifier({"NOTIFY_SOCKET": os.path.join(directory, "gone")})
        with caplog.at_level(logging.DEBUG, logger="core.sdnotify"):
            assert not notifier.ready()
            assert not notifier.watchdog()
            assert not notifier.status("still here")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "could not notify systemd" in warnings[0].getMessage()


async def test_watchdog_loop_returns_without_a_watchdog() -> None:
    async with asyncio.timeout(DEADLINE_S):
        await watchdog_loop(Notifier({}), lambda: True)
        await watchdog_loop(Notifier({"NOTIFY_SOCKET": "@nii-unused"}), lambda: True)


class _TimedNotifier(Notifier):
    """Records when each watchdog ping leaves, free of the receiver's delays."""

    def __init__(self, environ: dict[str, str]) -> None:
        super().__init__(environ)
        self.sent: list[float] = []

    def watchdog(self) -> bool:
        self.sent.append(time.monotonic())
        return super().watchdog()


async def test_watchdog_loop_pings_at_half_the_interval(
    manager: tuple[socket.socket, str],
) -> None:
    sock, address = manager
    notifier = _TimedNotifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
    task = asyncio.create_task(watchdog_loop(notifier, lambda: True))
    try:
        for _ in range(4):
            assert await _arecv(sock) == b"WATCHDOG=1"
    finally:
        await _cancel(task)
    gaps = [b - a for a, b in itertools.pairwise(notifier.sent[:4])]
    # Half of 0.4 s is 0.2 s: never early (a sleep does not end before its
    # time, bar clock granularity), late only by scheduling noise: the median, as
    # one gap can be stretched by a machine busy with the system tests (0.65 s seen)
    assert all(gap >= 0.19 for gap in gaps), gaps
    assert sorted(gaps)[len(gaps) // 2] < 0.35, gaps


async def test_watchdog_loop_withholds_pings_while_unhealthy(
    manager: tuple[socket.socket, str],
) -> None:
    sock, address = manager
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})
    answers: asyncio.Queue[bool] = asyncio.Queue()
    state = {"healthy": True}

    def healthy() -> bool:
        answers.put_nowait(state["healthy"])
        return state["healthy"]

    task = asyncio.create_task(watchdog_loop(notifier, healthy))
    try:
        assert await _arecv(sock) == b"WATCHDOG=1"

        state["healthy"] = False
        _pending(sock)  # pings sent before the switch are already queued
        unhealthy_checks = 0
        async with asyncio.timeout(DEADLINE_S):
            while unhealthy_checks < 3:
                if not await answers.get():
                    unhealthy_checks += 1
        assert _pending(sock) == []

        state["healthy"] = True
        assert await _arecv(sock) == b"WATCHDOG=1"
    finally:
        await _cancel(task)


async def test_watchdog_loop_treats_a_raising_check_as_unhealthy(
    manager: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, address = manager
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "100000"})
    raised = asyncio.Event()

    def healthy() -> bool:
        raised.set()
        raise RuntimeError("health probe broke")

    task = asyncio.create_task(watchdog_loop(notifier, healthy))
    try:
        async with asyncio.timeout(DEADLINE_S):
            await raised.wait()
    finally:
        await _cancel(task)
    assert _pending(sock) == []
    assert any("withholding the watchdog ping" in r.getMessage() for r in caplog.records)
