"""Fuzz target: a site sensor's MQTT payload as the edge's safety state machine reads it.

Any bytes a sensor (or anyone on the site broker) publishes must leave
``ScannerSafety.report`` with a verdict, never an exception: a payload that is
not a well-formed, plausible reading makes the scanner unsafe, not the edge fail.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from core.config import ScannerConfig
from edge._safety import ScannerSafety

logging.getLogger("nii.edge.safety").setLevel(logging.CRITICAL)  # one warning per input
_WALL = 1_790_000_000.0
_CFG = ScannerConfig(
    id="scanner1",
    serial=Path("/dev/null"),
    data_host="h",
    data_port=1,
    interlocks=["plc"],
    dosimeters=["zone-a"],
)

SEEDS: list[bytes] = [
    b"\x00" + json.dumps({"kind": "plc", "state": "closed", "ts": _WALL}).encode(),
    b"\x01" + json.dumps({"usvh": 0.1, "ts": _WALL}).encode(),
    b"\x00" + json.dumps({"kind": "door", "state": "open", "ts": _WALL * 1e3}).encode(),
    b"\x01" + b'{"usvh": 1e400, "ts": 1e400}',
    b"\x01" + b'{"usvh": 1' + b"0" * 400 + b"}",
    b"\x00" + b"[" * 3000 + b"]" * 3000,
]


def one_input(data: bytes) -> None:
    """The first byte picks the group (interlock or dose), the rest is the payload.

    Raises:
        AssertionError: the verdict is not a bool with its causes, or a payload with a
            reason to be unsafe left the scanner safe.
    """
    if not data:
        return
    s = ScannerSafety(_CFG, settle_s=0.0, clock=lambda: 100.0, wall=lambda: _WALL)
    s.link(True)
    s.report("interlock", "plc", SEEDS[0][1:])
    s.report("dose", "zone-a", SEEDS[1][1:])
    assert s.evaluate()
    group = ("interlock", "dose")[data[0] % 2]
    name = "plc" if group == "interlock" else "zone-a"
    s.report(group, name, data[1:])
    safe = s.evaluate()
    assert isinstance(safe, bool) and safe == (not s.causes), (safe, s.causes)
