"""A scan's shape, fixed by its start record: which stored lines fit it.

One rule for central's ingest and for every reader of the CIR, so what the
ingest counted as received is exactly what the products show. A line fits its
scan when its block has the scan's channel count (the SCAN_START record's
``channels``, else the first data block's), the block's cipher text is the size
that count implies, and, for an image line (``flags & 3 == 0``), its line number
is greater than every image line before it in chain order. Calibration lines
(dark, air) fit on the channel count alone. Lines that do not fit stay in the
CIR (the chain must hold) and are treated as missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.seal import IndexEntry

#: bytes per detector channel in a line's payload: high and low energy, uint16 each
BYTES_PER_CHANNEL = 4
#: AES-GCM tag appended to every block's cipher text (core.seal)
GCM_TAG = 16
#: the calibration bits of a line's flags (1 dark, 2 air)
CALIB_FLAGS = 3


def record_channels(record: dict[str, Any] | None) -> int | None:
    """The channel count a scan-start record fixes, or None when it gives none usable."""
    ch = (record or {}).get("channels")
    return ch if type(ch) is int and 0 < ch <= 1 << 20 else None


def record_lines(record: dict[str, Any] | None) -> int | None:
    """The image lines a scan-start record plans (``lines``), or None when it gives none."""
    n = (record or {}).get("lines")
    return n if type(n) is int and 0 < n <= 1 << 31 else None


@dataclass
class ScanShape:
    """The shape of one scan as its blocks arrive in chain order.

    Attributes:
        channels: The scan's channel count; None until known.
        planned: Image lines its start record plans; a line numbered at or beyond
            it does not fit. None when the record gives none.
        last_line: Highest image line number kept so far, -1 before the first.
        violations: Blocks that held at least one line that does not fit.
        problems: The first few violations, in words, for alarms.
    """

    channels: int | None = None
    planned: int | None = None
    last_line: int = -1
    violations: int = 0
    problems: list[str] = field(default_factory=list)

    def fit(
        self, block_channels: Any, index: Sequence[IndexEntry], cipher_len: int
    ) -> tuple[list[bool], str]:
        """Decide which lines of one data block fit the scan; advance the shape.

        Args:
            block_channels: The block's ``meta["channels"]`` (any JSON value).
            index: The block's index entries, in order.
            cipher_len: Length of the block's cipher text in bytes.

        Returns:
            ``(mask, problem)``: one bool per index entry (True = the line fits),
            and the first problem in words ("" when every line fits).
        """
        if not index:
            return [], ""
        if self.channels is None and type(block_channels) is int and block_channels > 0:
            self.channels = block_channels
        if block_channels != self.channels or self.channels is None:
            return self._bad(
                [False] * len(index),
                f"block has {block_channels!r} channels, the scan {self.channels}",
            )
        if cipher_len != len(index) * self.channels * BYTES_PER_CHANNEL + GCM_TAG:
            return self._bad(
                [False] * len(index),
                f"block payload of {cipher_len - GCM_TAG} bytes is not {len(index)} lines "
                f"of {self.channels} channels",
            )
        mask = []
        problem = ""
        for e in index:
            if e.flags & CALIB_FLAGS:
                mask.append(True)
            elif self.planned is not None and e.line_no >= self.planned:
                mask.append(False)
                problem = problem or (
                    f"line {e.line_no} is beyond the {self.planned} image lines the scan planned"
                )
            elif e.line_no > self.last_line:
                self.last_line = e.line_no
                mask.append(True)
            else:
                mask.append(False)
                problem = problem or (
                    f"line {e.line_no} is out of order or repeated (after line {self.last_line})"
                )
        return self._bad(mask, problem) if problem else (mask, "")

    def _bad(self, mask: list[bool], problem: str) -> tuple[list[bool], str]:
        self.violations += 1
        if len(self.problems) < 5:
            self.problems.append(problem)
        return mask, problem
