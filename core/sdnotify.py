"""The systemd notify protocol, in the few lines of stdlib it takes.

Both daemons run as ``Type=notify`` units with ``WatchdogSec=``: they tell
systemd when they are ready, what they are doing and that they are still
alive, and systemd restarts a daemon whose pings stop. The ``sdnotify``
package does this too but is unmaintained, and the protocol is tiny: newline
separated ``KEY=value`` assignments in one datagram to the unix socket named
by ``$NOTIFY_SOCKET`` (a leading ``@`` names the abstract namespace).

Outside systemd (``$NOTIFY_SOCKET`` unset: a developer's shell, the tests) a
:class:`Notifier` does nothing. A failing socket never raises into the
daemon: telling systemd is best effort, the daemon's work is not; the first
failure is logged at warning, later ones at debug.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

__all__ = ["Notifier", "watchdog_loop"]

_log = logging.getLogger(__name__)


class Notifier:
    """Sends state changes and watchdog pings to the service manager.

    The environment is read once, at construction, so a daemon builds one
    ``Notifier`` at start and passes it around. ``environ`` defaults to
    :data:`os.environ`; pass a mapping to decide explicitly (tests do).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given, that is whether systemd listens."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments in one datagram.

        Returns True when the datagram was handed to the socket, False when
        notification is disabled or the socket failed (logged, never raised).
        """
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Non-blocking: a full queue at the service manager must not
                # stall the daemon's event loop; the ping is dropped instead.
                sock.setblocking(False)
                sock.sendto(payload, self._address)
        except OSError as exc:
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            _log.log(level, "could not notify systemd at %r: %s", self._address, exc)
            return False
        return True

    def ready(self) -> bool:
        """Tell systemd that start-up finished: dependent units may start now."""
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        """Set the one-line status shown by ``systemctl status``.

        Line breaks are replaced by spaces, so that a status text can never
        smuggle in another assignment such as ``READY=1``.
        """
        line = " ".join(text.splitlines())
        return self.notify(f"STATUS={line}")

    def stopping(self) -> bool:
        """Tell systemd that an orderly shutdown began."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Ping the watchdog: the daemon is alive and healthy."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """The watchdog timeout in seconds, or None when no watchdog is set.

        Read from ``$WATCHDOG_USEC``. When ``$WATCHDOG_PID`` is set and names
        another process, the watchdog is not ours (the variables leaked from
        a parent) and None is returned. Malformed values also give None.
        """
        if self._address is None or not self._watchdog_usec:
            return None
        if self._watchdog_pid:
            try:
                pid = int(self._watchdog_pid)
            except ValueError:
                return None
            if pid != os.getpid():
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 1_000_000


def _socket_address(value: str) -> str | None:
    """The address to send to, from ``$NOTIFY_SOCKET``; None when unusable.

    A leading ``@`` stands for the NUL byte that starts an abstract-namespace
    address; anything other than an absolute path or ``@name`` is ignored.
    """
    if len(value) > 1 and value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


async def watchdog_loop(notifier: Notifier, healthy: Callable[[], bool]) -> None:
    """Ping the watchdog at half its interval while ``healthy()`` holds.

    Run it as a task for the life of the daemon and cancel it at shutdown.
    Because the pings come from the event loop, a loop that is stuck stops
    them; a daemon that reports itself unhealthy stops them too, and in both
    cases systemd restarts the unit once ``WatchdogSec=`` passes. If
    ``healthy()`` recovers in time the pings resume. A ``healthy()`` that
    raises counts as unhealthy. Returns at once when no watchdog is set.
    """
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    period = interval / 2
    while True:
        try:
            ok = healthy()
        except Exception:
            _log.exception("health check raised; withholding the watchdog ping")
            ok = False
        if ok:
            notifier.watchdog()
        await asyncio.sleep(period)
