"""Fuzz target: ``core.clock.implausible`` on device timestamps decoded from raw bytes.

A device sends its timestamp as bytes; whatever float (or int) they decode to,
``implausible`` must answer with None or a reason string, never raise.
"""

from __future__ import annotations

import struct

from core.clock import implausible

_NOW_S = 1_790_000_000.0  # a fixed "now" (2026-09): the target stays deterministic


def one_input(data: bytes) -> None:
    """Decode ``data`` as a timestamp (double, int64 or text) and judge it at a fixed now.

    Args:
        data: any bytes; the first byte picks the decoding.

    Raises:
        AssertionError: ``implausible`` returned something other than None or a str.
    """
    if not data:
        return
    mode, rest = data[0] % 3, data[1:]
    ts: float | int
    if mode == 0:
        ts = struct.unpack("<d", rest[:8].ljust(8, b"\0"))[0]
    elif mode == 1:
        ts = int.from_bytes(rest[:200], "little", signed=True)  # past a float's range too
    else:
        try:
            ts = float(rest[:40].decode("ascii", "replace"))
        except ValueError:
            return
    reason = implausible(ts, _NOW_S)
    if reason is not None and not isinstance(reason, str):
        raise AssertionError(f"implausible() returned {reason!r}")
