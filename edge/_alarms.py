"""The alarm gate: one alarm per kind per :data:`REPEAT_S`, the repeats counted (pure).

A pure core (no sockets, no tasks, an injectable clock; ``STYLE.md``) between a
channel's :meth:`~edge._channel.ScannerChannel.alarm` and the wire. In the field
test a channel refused by central raised ``chain_fork`` 364 times in 100 s; one
such storm must neither flood the control room nor crowd out the alarms that
matter. Rules, each unit-tested in ``tests/unit/edge/test_alarms.py``:

* the first alarm of a kind passes at once;
* another of the same kind within :data:`REPEAT_S` of the last one that passed is
  held back and counted (the latest one held is kept);
* once :data:`REPEAT_S` has passed, :meth:`AlarmGate.due` gives the latest held
  one, with ``repeated`` (how many were held) in its details, so the last word
  of every kind (``safety_clear`` after ``unsafe``) always reaches central, the
  held ones in the order they were raised;
* an alarm of a kind whose window has passed goes out at once, carrying the
  count of those held before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["REPEAT_S", "AlarmGate", "GatedAlarm"]

REPEAT_S = 10.0
"""At most one alarm of a kind per this many seconds (s); the others are counted."""


@dataclass(slots=True)
class GatedAlarm:
    """An alarm let through the gate."""

    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Kind:
    last_sent: float
    held: int = 0
    latest: GatedAlarm | None = None
    latest_at: float = 0.0


class AlarmGate:
    """Rate limit of one channel's alarms, per kind (pure).

    Args:
        every_s: the shortest time between two alarms of one kind (s).
        clock: monotonic seconds.
    """

    def __init__(
        self, every_s: float = REPEAT_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every_s = every_s
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}
        self.held_total = 0

    def offer(self, kind: str, message: str, details: dict[str, Any]) -> GatedAlarm | None:
        """An alarm is raised. Returns it (maybe with ``repeated``) to send now, or None."""
        now = self._clock()
        k = self._kinds.get(kind)
        if k is None:
            self._kinds[kind] = _Kind(last_sent=now)
            return GatedAlarm(kind, message, dict(details))
        if now - k.last_sent < self.every_s:
            k.held += 1
            k.latest = GatedAlarm(kind, message, dict(details))
            k.latest_at = now
            self.held_total += 1
            return None
        out = GatedAlarm(kind, message, dict(details))
        if k.held:
            out.details["repeated"] = k.held
        k.last_sent, k.held, k.latest = now, 0, None
        return out

    def due(self) -> list[GatedAlarm]:
        """The latest held alarm of each kind whose window has passed (``repeated`` set).

        In the order they were raised, so the last word of related kinds
        (``control_link_down``, ``control_link_up``) comes last.
        """
        now = self._clock()
        out: list[GatedAlarm] = []
        for k in sorted(self._kinds.values(), key=lambda k: k.latest_at):
            if k.latest is not None and now - k.last_sent >= self.every_s:
                a = k.latest
                a.details["repeated"] = k.held
                a.message = f"{a.message} (repeated {k.held} times in {self.every_s:.0f} s)"
                out.append(a)
                k.last_sent, k.held, k.latest = now, 0, None
        return out
