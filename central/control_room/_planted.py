"""A demo's ground truth beside each scan: what the simulator planted (a demo only).

``nii sim --truth-log FILE`` appends one JSON line per scan (scanner, scan id,
container, load, concealment, whether the GD tells the truth, and each planted
object's box in image pixels). With ``demo_truth`` in ``[control_room]`` the
viewer shows it beside the scan so a person can judge the ATR; a real control
room has no such file, and no setting shows it. A file still missing
:data:`MISSING_AFTER_S` after the start is logged once (a wrong path, or a
simulator started without ``--truth-log``): the viewer would show nothing planted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("nii.control_room")

__all__ = ["Planted"]

#: the most bytes read from the truth log at once (a demo makes a few kB per scan)
READ_AT_ONCE = 8 * 1024 * 1024
#: how long after the start a missing truth log is worth a warning (s): the simulator
#: writes its first line when its first scan starts, seconds after ``nii demo`` starts
MISSING_AFTER_S = 60.0


class Planted:
    """Follows the simulator's truth log (appended to while the demo runs).

    Args:
        path: the truth log (``demo_truth``).
        clock: seconds, monotonic (injectable for tests): when it was made is the start.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._offset = 0
        self._by_scan: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._clock = clock
        self._started = clock()
        self._seen = self._warned = False

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read(READ_AT_ONCE)
        except OSError as exc:
            # no scan yet: nothing planted to show; still none after a minute: say so once
            late = self._clock() - self._started >= MISSING_AFTER_S
            if not self._seen and not self._warned and late:
                self._warned = True
                log.warning(
                    "demo_truth %s: still not readable %.0f s after the start (%s): the "
                    "viewer shows nothing planted; check the path against nii sim "
                    "--truth-log",
                    self.path,
                    MISSING_AFTER_S,
                    exc.strerror or exc,
                )
            return
        self._seen = True
        end = chunk.rfind(b"\n") + 1  # a line being written is read next time
        for raw in chunk[:end].splitlines():
            try:
                doc = json.loads(raw)
                key = (str(doc["scanner"]), int(doc["scan_id"]))
            except (ValueError, KeyError, TypeError):
                log.warning("%s: a line that is not a scan's truth is skipped", self.path)
                continue
            self._by_scan.setdefault(key, []).append(doc)
        self._offset += end

    def of(self, scanner: str, scan_id: int, container: str | None) -> dict[str, Any] | None:
        """What was planted in ``scanner``'s scan ``scan_id`` of ``container`` (the latest
        such scan: a restarted simulator counts its scans from 1 again)."""
        self._read()
        for doc in reversed(self._by_scan.get((scanner, scan_id), [])):
            if container is None or doc.get("container") in (None, container):
                return doc
        return None
