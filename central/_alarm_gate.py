"""Rate limits on central's alarms: a faulty or hostile edge cannot flood the CIR (pure).

* :class:`AlarmWindow`: at most one alarm per sender per window, the rest counted
  and reported when the window closes (``bad_message``);
* :class:`BurstLimit`: at most ``burst`` alarms of one kind naming one edge per
  window; the next one after it says how many were dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AlarmWindow", "BurstLimit"]


@dataclass
class _Window:
    start: float
    suppressed: int
    edge: str


class AlarmWindow:
    """At most one alarm per key (a sender) every ``every_s`` seconds; the rest counted.

    A pure rate limit with an injectable clock: :meth:`hit` says whether a message
    is alarmed now, with how many were suppressed before it; :meth:`closed`, called
    periodically, hands back the counts of windows that ended with suppressed
    messages, so the tail of a burst is reported even when nothing follows it.
    """

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._w: dict[str, _Window] = {}

    def hit(self, key: str, edge: str) -> int | None:
        """None: suppressed (counted). Else alarm now; the int is the count since the
        last alarm of ``key`` that :meth:`closed` has not reported yet."""
        now = self.clock()
        w = self._w.get(key)
        if w is not None and now - w.start < self.every_s:
            w.suppressed += 1
            return None
        self._w[key] = _Window(now, 0, edge)
        return w.suppressed if w is not None else 0

    def closed(self) -> list[tuple[str, str, int]]:
        """``(key, edge, suppressed)`` of each window that ended with messages suppressed.
        Every window that ended is forgotten, so the next message of its key is alarmed
        at once, with its own text (at most two alarms per key per window)."""
        now = self.clock()
        out = []
        for key, w in list(self._w.items()):
            if now - w.start < self.every_s:
                continue
            if w.suppressed:
                out.append((key, w.edge, w.suppressed))
            del self._w[key]
        return out


class BurstLimit:
    """At most ``burst`` alarms per ``(edge, kind)`` every ``window_s`` seconds.

    :meth:`admit` returns the alarm's message and details to raise (with the count
    of the ones dropped in the last window added to the first after it), or None
    when the alarm is dropped.
    """

    def __init__(
        self, burst: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._w: dict[tuple[str, str], tuple[float, int, int]] = {}

    def admit(
        self, edge: str, kind: str, message: str, details: dict[str, Any]
    ) -> tuple[str, dict[str, Any]] | None:
        now = self.clock()
        key = (edge, kind)
        start, n, dropped = self._w.get(key, (now, 0, 0))
        if now - start > self.window_s:
            if dropped:
                message += f" ({dropped} more {kind} alarm(s) of this edge were dropped)"
                details = {**details, "dropped": dropped}
            start, n, dropped = now, 0, 0
        if n >= self.burst:
            self._w[key] = (start, n, dropped + 1)
            return None
        self._w[key] = (start, n + 1, dropped)
        return message, details
