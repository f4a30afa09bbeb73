"""Which scanners' streams this aggregator holds, and for how long (pure).

Several aggregators may share one CIR (PostgreSQL and an object store, issue 15).
Each scanner's stream then has exactly one writer at a time: the aggregator that
holds its lease in the CIR's ``stream_leases`` table (``central._cir.Cir``). A lease
lasts ``ttl_s`` seconds of the database's clock and is renewed while its edge is
heard; each takeover raises the lease's fencing token, and a commit carries the
tokens of its streams, checked inside its transaction, so an aggregator that lost
a lease (paused, partitioned from the database) can never commit to that stream
again.

The book is the aggregator's memory of its leases; the shell (``central._aggregator``)
does the database calls and asks the book what to do:

* a HELLO takes the lease (:meth:`LeaseBook.took`); a token other than the last
  one this process held means another aggregator may have written the stream
  since, so what this process knew of it is forgotten and read again;
* a block of a stream not held is answered "elsewhere" (say hello again);
* every ``ttl_s / 3`` the leases whose edge was heard within ``ttl_s`` are renewed
  and the others let go (:meth:`LeaseBook.due`), so an edge that moved to another
  aggregator is taken over there within ``ttl_s``;
* a lease found taken over (:meth:`LeaseBook.lost`) is dropped.

The holder name is ``NAME#BOOT``: ``NAME`` is the aggregator (``[central] name``,
default host and listen endpoint), ``BOOT`` this process. A process that finds
its own ``NAME`` holding a lease takes it over at once: that holder was its
predecessor on the same state directory and port, which it could not have
locked or bound were that one alive.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["LeaseBook", "holder_name"]


def holder_name(name: str, listen: str) -> str:
    """This aggregator's name in the leases: ``name``, or ``HOST:LISTEN`` by default."""
    return name or f"{socket.gethostname()}:{listen}"


@dataclass
class LeaseBook:
    """The leases of one aggregator process.

    Args:
        name: the aggregator's name (:func:`holder_name`).
        boot: this process's boot id.
        ttl_s: a lease's life without renewal, seconds.
        clock: monotonic seconds.
    """

    name: str
    boot: str
    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    #: scanner → fencing token of the leases held now
    held: dict[str, int] = field(default_factory=dict)
    #: scanner → the last token this process held (kept when a lease lapses)
    _last: dict[str, int] = field(default_factory=dict)
    #: scanner → when a block or heartbeat of its stream last came
    _active: dict[str, float] = field(default_factory=dict)
    _renewed: float = -1e18

    @property
    def holder(self) -> str:
        return f"{self.name}#{self.boot}"

    def holds(self, scanner: str) -> bool:
        return scanner in self.held

    def took(self, scanner: str, token: int) -> bool:
        """The lease of ``scanner`` is this process's with ``token``. Returns whether
        what the process knew of the stream must be forgotten (another aggregator may
        have written it since this process last held it)."""
        self.held[scanner] = token
        self._active[scanner] = self.clock()
        stale = self._last.get(scanner) not in (None, token)
        self._last[scanner] = token
        return stale

    def touch(self, scanner: str) -> None:
        """A block or heartbeat of ``scanner``'s stream came: its edge is here."""
        if scanner in self.held:
            self._active[scanner] = self.clock()

    def fencing(self, scanners: Iterable[str]) -> dict[str, tuple[str, int]]:
        """``scanner → (holder, token)`` for a commit touching ``scanners``: the last
        token this process held (a lease that lapsed, untaken, still commits)."""
        return {s: (self.holder, self._last[s]) for s in scanners if s in self._last}

    def lost(self, scanners: Iterable[str]) -> None:
        """These leases were taken over: never commit to them again under the old token."""
        for s in scanners:
            self.held.pop(s, None)
            self._last.pop(s, None)
            self._active.pop(s, None)

    def due(
        self, heard: Callable[[str], float | None]
    ) -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]] | None:
        """What to renew and what to let go now, or None (not yet time).

        Args:
            heard: when a scanner's edge process was last heard (``Ingest.last_heard``).

        Returns:
            ``(renew, release)``, each ``scanner → (holder, token)``. A released lease
            leaves ``held`` at once; the caller renews the others in the CIR.
        """
        now = self.clock()
        if now - self._renewed < self.ttl_s / 3:
            return None
        self._renewed = now
        renew: dict[str, tuple[str, int]] = {}
        release: dict[str, tuple[str, int]] = {}
        for s, token in list(self.held.items()):
            last = max(self._active.get(s, -1e18), heard(s) or -1e18)
            if now - last <= self.ttl_s:
                renew[s] = (self.holder, token)
            else:
                release[s] = (self.holder, token)
                del self.held[s]
        return renew, release

    def all_held(self) -> Mapping[str, tuple[str, int]]:
        return {s: (self.holder, t) for s, t in self.held.items()}
