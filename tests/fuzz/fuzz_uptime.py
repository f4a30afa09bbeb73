"""Fuzz target: the ``uptime`` document of an edge's heartbeat (``parse_uptime``).

An enrolled edge is still untrusted: whatever JSON its heartbeat carries,
``central._uptime.parse_uptime`` accepts it as a typed report or refuses it with
a ``ProtocolError``; nothing else may escape (no OverflowError, RecursionError,
TypeError). Accepted reports are checked against the rules they promise.
"""

from __future__ import annotations

import json
from typing import Any

from central._uptime import AHEAD_S, EARLIEST_S, STATES, parse_uptime

_NOW_S = 1_790_000_000.0  # a fixed "now" (2026-09): the target stays deterministic
_A = int((_NOW_S - 600) * 1e9)

SEEDS: list[bytes] = [
    json.dumps(
        {
            "scanner": "scanner1",
            "log": "0a1b",
            "entries": [[1, "b", 0, _A, "ready", ""], [2, "b", 60_000_000_000, _A, "fault", "F"]],
        }
    ).encode(),
    b'{"scanner": "s", "log": "l", "entries": [[1, "b", 1e400, 0, "ready", ""]]}',
    b'{"scanner": "s", "log": "l", "entries": [[1180591620717411303424, "b", 0, 0, "up", ""]]}',
]


def one_input(data: bytes) -> None:
    """Decode ``data`` as JSON (bytes that are not JSON are no input) and parse it.

    Raises:
        ProtocolError: the document was refused (an accepted outcome).
        AssertionError: an accepted report breaks one of its own rules.
    """
    try:
        doc: Any = json.loads(data)
    except (ValueError, RecursionError):
        return  # not JSON: central's wire decoder refuses it before this point
    rep = parse_uptime(doc, _NOW_S)
    for e in rep.entries:
        assert e.state in STATES, e
        assert EARLIEST_S <= e.at <= _NOW_S + AHEAD_S, e
        assert isinstance(e.seq, int) and 1 <= e.seq < 2**63, e
