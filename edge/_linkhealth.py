"""Is the data link working? A pure watch over the link's counters.

The link driver recovers from every fault by itself: a damaged packet is asked
for again, a dropped connection is made again, a scanner that does not announce
its session is tried again after a backoff. Each recovery is right, but a fault
that never ends then shows only as counters climbing in ``status.json`` while
scans are lost: a corrupting cable, a switch port gone bad, a scanner whose
firmware speaks another protocol. :class:`LinkHealth` turns a fault that lasts
into one alarm when it starts and one when it ends.

The rules, each unit-tested in ``tests/unit/edge/test_linkhealth.py``; a
*window* is the last ``window_s`` seconds:

* ``data_link_damaged``: at least ``min_damaged`` damaged packets (bad CRC or
  header) arrived in the window and not one intact packet;
* ``data_link_protocol``: connections in the window did not start with a valid
  SESSION packet (``no_session`` rose) and not one packet was delivered;
* ``data_link_down``: no connection to the scanner for ``down_s`` seconds.

When packets flow again (or the connection is back, for ``data_link_down``) the
episode ends with ``data_link_ok``, naming what it was and how long it lasted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from drivers import LinkStats

__all__ = ["LinkAlarm", "LinkHealth"]


@dataclass(frozen=True, slots=True)
class LinkAlarm:
    """An alarm to raise: ``kind`` and a one-line ``message``."""

    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class _Sample:
    t: float
    packets: int
    damaged: int
    no_session: int


class LinkHealth:
    """Watches one data link's counters; :meth:`update` says when to alarm.

    Args:
        where: the link's address, for the messages (``host:port``).
        window_s: how far back the rules look, s.
        min_damaged: damaged packets in a window that, with none intact, make
            the link ``data_link_damaged``.
        down_s: how long without a connection makes it ``data_link_down``, s.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        where: str,
        *,
        window_s: float = 5.0,
        min_damaged: int = 20,
        down_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.window_s = window_s
        self.min_damaged = min_damaged
        self.down_s = down_s
        self.clock = clock
        self.fault: str | None = None
        """The alarm kind of the fault in progress, None while the link is well."""
        self._since = 0.0
        self._samples: deque[_Sample] = deque()
        self._down_since: float | None = None

    def pause(self) -> None:
        """The link is not being read (the edge holds it on purpose): forget the window,
        so that the pause itself is never taken for a fault."""
        self._samples.clear()
        self._down_since = None

    def update(self, stats: LinkStats, connected: bool) -> list[LinkAlarm]:
        """Take the link's counters now; returns the alarms to raise (usually none).

        Call it about once a second.
        """
        now = self.clock()
        s = _Sample(now, stats.packets, stats.bad_crc + stats.bad_header, stats.no_session)
        self._samples.append(s)
        while len(self._samples) > 2 and now - self._samples[1].t >= self.window_s:
            self._samples.popleft()
        first = self._samples[0]
        full = now - first.t >= self.window_s * 0.999
        good = s.packets - first.packets
        damaged = s.damaged - first.damaged
        no_session = s.no_session - first.no_session
        if connected:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now

        if self.fault is not None:
            well = good > 0 or (self.fault == "data_link_down" and connected)
            if not well:
                return []
            what, lasted = self.fault, now - self._since
            self.fault = None
            return [
                LinkAlarm(
                    "data_link_ok",
                    f"the data link at {self.where} works again after {lasted:.0f} s "
                    f"({what.removeprefix('data_link_')})",
                )
            ]
        long_down = self._down_since is not None and now - self._down_since >= self.down_s
        if (not full or good > 0) and not long_down:
            return []
        if good == 0 and damaged >= self.min_damaged:
            return self._start(
                "data_link_damaged",
                f"{damaged} damaged packets in {self.window_s:g} s and none intact from the "
                f"data link at {self.where}: the line is corrupting them (cable, network "
                "port, switch) and scans are being lost",
            )
        if good == 0 and no_session > 0:
            return self._start(
                "data_link_protocol",
                f"the scanner at {self.where} does not open its connections with a valid "
                f"SESSION packet ({no_session} in {self.window_s:g} s): not an LSP-1 scanner "
                "with sessions, or faulty firmware; nothing is read from it",
            )
        if long_down:
            assert self._down_since is not None
            return self._start(
                "data_link_down",
                f"no connection to the scanner's data link at {self.where} for "
                f"{now - self._down_since:.0f} s (scanner off, cable, address)",
                since=self._down_since,
            )
        return []

    def _start(self, kind: str, message: str, since: float | None = None) -> list[LinkAlarm]:
        self.fault = kind
        self._since = self.clock() if since is None else since
        return [LinkAlarm(kind, message)]
