"""How big the aggregator's next batch may be: small enough to be acknowledged soon.

An edge that hears no acknowledgement for its blocks in flight for ``stall_s``
(three heartbeats, 3 s by default) takes central for stuck: it says hello again
and resends its window, or, with several aggregators, fails over to the next.
A batch is received, verified (staging) and then committed while the next one
is staged, so a block waits about one staging and one commit before its ACK.
With one fixed size (64 MB) that is well under a second on the embedded CIR
but two to four seconds on a slow object store, and the edges took a busy
central for a dead one (``docs/performance.md``, the CIR's engines).

:class:`BatchBudget` (a pure core, ``STYLE.md``) learns, for staging and for
committing, the time a batch takes as ``fixed + per_byte * bytes`` (a least-
squares fit over the recent batches, older ones weighing less) and sizes the
next batch so that each phase takes about ``target_s``.  Where a phase's fixed
cost alone is more than half the target (a slow fsync), shrinking would cost
throughput and gain no latency, so the batch is then sized to add half the
target on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BATCH_TARGET_S", "MIN_BATCH_BYTES", "BatchBudget", "PhaseFit"]

#: each phase of a batch (staging, committing) should take about this long, seconds
BATCH_TARGET_S = 0.25
#: never fewer bytes a batch than this (a block of a wide detector is a few MB)
MIN_BATCH_BYTES = 4 * 2**20
#: each new batch weighs this much more than the one before it in the fit
_DECAY = 0.85


@dataclass
class PhaseFit:
    """``seconds = fixed + per_byte * bytes`` for one phase, fitted by weighted least
    squares over the batches seen (older ones decayed by ``_DECAY`` per batch)."""

    n: float = 0.0
    sb: float = 0.0
    st: float = 0.0
    sbb: float = 0.0
    sbt: float = 0.0

    def observe(self, nbytes: int, seconds: float) -> None:
        """One batch of ``nbytes`` took ``seconds``."""
        if nbytes <= 0 or not seconds >= 0:
            return
        b = float(nbytes)
        self.n = self.n * _DECAY + 1.0
        self.sb = self.sb * _DECAY + b
        self.st = self.st * _DECAY + seconds
        self.sbb = self.sbb * _DECAY + b * b
        self.sbt = self.sbt * _DECAY + b * seconds

    def fit(self) -> tuple[float, float] | None:
        """(fixed seconds, seconds per byte), or None before any batch.  Batches all of
        one size cannot tell the two apart: all of it is then taken as per byte."""
        if self.n <= 0 or self.sb <= 0:
            return None
        den = self.n * self.sbb - self.sb * self.sb
        if den > 1e-9 * self.sbb * self.n:
            per_byte = (self.n * self.sbt - self.sb * self.st) / den
            if per_byte > 0:
                fixed = (self.st - per_byte * self.sb) / self.n
                if fixed >= 0:
                    return fixed, per_byte
                return 0.0, self.st / self.sb  # a negative intercept: noise
        return 0.0, max(self.st, 1e-9) / self.sb

    def bytes_for(self, target_s: float) -> float | None:
        """The batch size that takes about ``target_s`` (see the module docstring)."""
        f = self.fit()
        if f is None:
            return None
        fixed, per_byte = f
        return max(target_s - fixed, target_s / 2) / per_byte


class BatchBudget:
    """The byte limit of the aggregator's next batch.

    Args:
        ceiling: the most bytes a batch may take whatever the rates.
        target_s: the time each phase of a batch should take.
        floor: the fewest bytes a batch is limited to.
    """

    def __init__(
        self, ceiling: int, *, target_s: float = BATCH_TARGET_S, floor: int = MIN_BATCH_BYTES
    ) -> None:
        self.ceiling, self.target_s, self.floor = ceiling, target_s, min(floor, ceiling)
        self.stage = PhaseFit()
        self.commit = PhaseFit()

    def limit(self) -> int:
        """Bytes the next batch may take (four times the floor until a batch was
        measured: the first batch after a start meets the backlog of every edge)."""
        sizes = [s for s in (p.bytes_for(self.target_s) for p in (self.stage, self.commit)) if s]
        if not sizes:
            return min(self.ceiling, 4 * self.floor)
        return int(min(self.ceiling, max(self.floor, min(sizes))))
