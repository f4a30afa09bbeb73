"""Is a device's timestamp believable? One rule for every device input.

Scanners, PLCs and site sensors carry their own clocks, and a device's clock
can be wrong in every way a clock can: not set after a power cut (1970), set to
another time zone, counting in milliseconds where seconds are expected, or
simply drifting. A reading judged fresh by its own timestamp can then stay
"fresh" for ever. Every device input that carries a time goes through
:func:`implausible`; a reading whose time is not plausible is treated as stale
(unsafe, where safety depends on it), and the reason is logged.
"""

from __future__ import annotations

import math

__all__ = ["AHEAD_S", "BEHIND_S", "implausible"]

AHEAD_S = 5.0
"""How far a device's clock may run ahead of the edge's (s). NTP keeps a site's
clocks within milliseconds; 5 s allows for a device that syncs once a day."""

BEHIND_S = 24 * 3600.0
"""How far in the past a timestamp may lie (s) before it is taken for a wrong
clock rather than an old reading (a day: the oldest retained MQTT message a
site broker would sensibly replay)."""


def implausible(
    ts_s: float, now_s: float, *, ahead_s: float = AHEAD_S, behind_s: float = BEHIND_S
) -> str | None:
    """Why the device timestamp ``ts_s`` cannot be believed at ``now_s``, or None.

    Args:
        ts_s: the device's timestamp, seconds since the Unix epoch (UTC).
        now_s: this host's wall clock, same units.
        ahead_s: tolerance for a device clock ahead of ours, s.
        behind_s: how old a timestamp may be, s.

    Returns:
        None if plausible, else one short reason for the log (it names the
        likely fault: not a number, milliseconds or nanoseconds, ahead, far past).
    """
    if not isinstance(ts_s, int | float) or isinstance(ts_s, bool):
        return f"timestamp {ts_s!r} is not a number"
    try:
        ts_s = float(ts_s)  # an int beyond a float's range (JSON 10**400) overflows
    except OverflowError:
        return "timestamp is too large to be a time"
    if not math.isfinite(ts_s):
        return f"timestamp {ts_s!r} is not finite"
    d = ts_s - now_s
    if d > ahead_s:
        for scale, unit in ((1e9, "nanoseconds"), (1e6, "microseconds"), (1e3, "milliseconds")):
            if abs(ts_s / scale - now_s) < max(behind_s, 3600.0):
                return f"timestamp {ts_s:.0f} looks like {unit}, not seconds"
        return f"timestamp is {d:.1f} s ahead of this host's clock (tolerance {ahead_s:g} s)"
    if -d > behind_s:
        return f"timestamp is {-d / 3600:.1f} h in the past (device clock not set?)"
    return None
