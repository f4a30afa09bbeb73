"""The live ATR's work queue in the CIR: one item per finished scan, one worker at a time.

The rules, on either engine of ``central._sql`` (the ``atr_work`` table, schema step 4):

* **Enqueue** (:func:`enqueue`) in the very transaction that commits a scan's end
  (``Cir.commit``): a finished scan is in the queue exactly when it is in the CIR, even
  if the aggregator dies right after the commit.
* **Claim** (:meth:`WorkQueue.claim`): the oldest item not done that nobody holds, or
  whose holder's claim ran out (``claimed_until_ns``, on the database's clock: one
  clock for every host).  On PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED``, so
  workers on any number of hosts take different items without waiting on each other;
  on SQLite the claim is one ``BEGIN IMMEDIATE`` transaction (the whole database is
  locked while it runs).  Each claim adds one to ``attempts``, which is the claim's
  fencing token: a worker whose claim ran out and was taken holds an older one.
* **Renew** (:meth:`WorkQueue.renew`): the holder pushes ``claimed_until_ns`` on while it
  works; a killed worker stops renewing and its item goes to the next claimer once the
  claim runs out.
* **Complete** (:meth:`WorkQueue.complete`): the worker's writes (the verdict, an ATT
  result, their alarms) and "done" in one transaction that first checks, the row locked,
  that the claim is still the worker's (holder and token).  A stale worker's transaction
  finds another's claim and rolls back (:class:`ClaimLost`); the verdicts table's key
  (one row per scan) stops a second verdict even so.
* **Fail** (:meth:`WorkQueue.fail`): the item goes back to the queue, or, at its
  ``max_attempts``-th claim (a worker killed that often counts too), it is marked done
  with the error and an ``atr_skipped`` alarm row.
* **Backlog**: with more than ``max_backlog`` items waiting (claimed ones included), the
  newest beyond that are marked done unanalysed with an ``atr_skipped`` alarm, as the
  in-process ATR always did: evidence is stored at once, a verdict minutes late is not
  a live verdict (``nii cir dicos`` analyses such a scan on demand).
* **Publish** (:meth:`WorkQueue.take_unpublished`): what a done item puts on the live
  feed is kept with it (``feed``: JSON ``[[topic, document], …]``); an aggregator takes
  the done items nobody published yet (one statement: each is taken by one aggregator
  only) and sends them on its feed (decision 0019).

Nothing here opens sockets or threads; the clock is injectable (ns, default the
database's), so each rule is driven in ``tests/unit/central/test_atr_queue.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from central._sql import Sql
from core.errors import NiiError

#: Seconds a claim lasts without renewal: a killed worker's item waits this long at most.
CLAIM_S = 10.0
#: Claims of one item before it is given up (a worker killed on it counts as one).
MAX_ATTEMPTS = 3
#: Alarm kind of a finished scan stored without a live verdict.
ALARM_SKIPPED = "atr_skipped"

#: ``(topic, document)`` messages for the live feed.
Feed = list[tuple[str, dict[str, Any]]]
#: ``(sql, parameters)`` statements run inside the completing transaction.
Statements = Sequence[tuple[str, Sequence[Any]]]


@dataclass(frozen=True)
class Claim:
    """One worker's hold on one item: ``attempt`` is its fencing token (the item's
    ``attempts`` when it was claimed); ``until_ns`` when it runs out unless renewed."""

    ref: int
    worker: str
    attempt: int
    until_ns: int


class ClaimLost(NiiError):
    """The item is no longer this worker's: its claim ran out and another took it, or it
    was done meanwhile.  Nothing of this worker's result was written."""

    def __init__(self, claim: Claim, why: str) -> None:
        super().__init__(
            f"the ATR work item of scan ref {claim.ref} is no longer {claim.worker}'s: {why}",
            fix="nothing to do: the worker holding it now stores its verdict",
        )
        self.claim = claim


def enqueue(db: Sql, refs: Iterable[int], now_ns: int) -> None:
    """Queue scans ``refs`` for the ATR (an item already there is left as it is).

    Call it inside the transaction that commits the scans' end blocks.
    """
    db.executemany(
        "INSERT INTO atr_work (scan_ref, enqueued_ns, attempts) VALUES (?, ?, 0) "
        "ON CONFLICT (scan_ref) DO NOTHING",
        [(int(r), now_ns) for r in sorted(set(refs))],
    )


@dataclass(frozen=True)
class Done:
    """A done item as :meth:`WorkQueue.take_unpublished` hands it over."""

    ref: int
    done_ns: int
    error: str | None
    feed: Feed


class WorkQueue:
    """The queue's rules on one connection (one per thread, as ``Sql`` wants).

    Args:
        db: the CIR's database, its schema at step 4 or later.
        worker: this worker's name, unique among the live ones (host/pid by default in
            ``nii atr worker``).
        claim_s: how long a claim lasts without renewal, s.
        max_attempts: claims of one item before it is given up.
        max_backlog: items waiting (claimed ones included) beyond which the newest are
            skipped; 0: no limit.
        clock: ns since the epoch; default the database's (``Sql.now_ns``).
    """

    def __init__(
        self,
        db: Sql,
        worker: str,
        *,
        claim_s: float = CLAIM_S,
        max_attempts: int = MAX_ATTEMPTS,
        max_backlog: int = 0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.db = db
        self.worker = worker
        self.claim_ns = int(claim_s * 1e9)
        self.max_attempts = max(1, max_attempts)
        self.max_backlog = max_backlog
        self.clock = clock or db.now_ns

    # -- taking work -------------------------------------------------------------------------
    def claim(self) -> Claim | None:
        """Claim the oldest free item; None when there is none.

        Items beyond the backlog and items claimed ``max_attempts`` times already are
        marked done on the way, each with its ``atr_skipped`` alarm row (and that alarm
        as its feed message).
        """
        db = self.db
        now = self.clock()
        # a read first: an idle worker polls without taking SQLite's write lock
        if db.one(_FREE + " LIMIT 1", [now]) is None:
            return None
        with db.transaction():
            now = self.clock()
            self._skip_backlog(now)
            while True:
                row = db.one(
                    _FREE + " ORDER BY scan_ref LIMIT 1" + db.lock_clause(skip_locked=True),
                    [now],
                )
                if row is None:
                    return None
                ref, attempts = int(row["scan_ref"]), int(row["attempts"])
                if attempts >= self.max_attempts:
                    self._give_up(
                        ref,
                        now,
                        f"the ATR was stopped or failed on it {attempts} times"
                        + (f" (last: {row['error']})" if row["error"] else ""),
                    )
                    continue
                until = now + self.claim_ns
                db.execute(
                    "UPDATE atr_work SET claimed_by = ?, claimed_until_ns = ?, attempts = ? "
                    "WHERE scan_ref = ?",
                    [self.worker, until, attempts + 1, ref],
                )
                return Claim(ref, self.worker, attempts + 1, until)

    def renew(self, claim: Claim) -> Claim | None:
        """Push the claim's end on by ``claim_s``; None when it is no longer this worker's."""
        until = self.clock() + self.claim_ns
        n = self.db.rowcount(
            "UPDATE atr_work SET claimed_until_ns = ? "
            "WHERE scan_ref = ? AND claimed_by = ? AND attempts = ? AND done_ns IS NULL",
            [until, claim.ref, claim.worker, claim.attempt],
        )
        return Claim(claim.ref, claim.worker, claim.attempt, until) if n == 1 else None

    def release(self, claim: Claim) -> None:
        """Hand the item back at once (a worker that stops cleanly mid-scan)."""
        self.db.execute(
            "UPDATE atr_work SET claimed_until_ns = NULL "
            "WHERE scan_ref = ? AND claimed_by = ? AND attempts = ? AND done_ns IS NULL",
            [claim.ref, claim.worker, claim.attempt],
        )

    # -- finishing it ------------------------------------------------------------------------
    def complete(self, claim: Claim, statements: Statements = (), feed: Feed | None = None) -> None:
        """Run ``statements`` and mark the item done, in one transaction guarded by the
        claim; ``feed`` is kept with it for the live feed.

        Raises:
            ClaimLost: the claim is not this worker's any more; nothing was written.
        """
        db = self.db
        with db.transaction():
            now = self._guard(claim)
            for sql, args in statements:
                db.execute(sql, args)
            db.execute(
                "UPDATE atr_work SET done_ns = ?, claimed_until_ns = NULL, error = NULL, "
                "feed = ? WHERE scan_ref = ?",
                [now, _feed_text(feed or []), claim.ref],
            )

    def fail(self, claim: Claim, error: str) -> bool:
        """The worker could not make this item's result (``error``, kept with the item).

        Returns:
            True when the item was given up (done, with its ``atr_skipped`` alarm), False
            when it went back to the queue or was no longer this worker's.
        """
        db = self.db
        with db.transaction():
            try:
                now = self._guard(claim)
            except ClaimLost:
                return False
            if claim.attempt >= self.max_attempts:
                self._give_up(
                    claim.ref, now, f"the ATR failed on it {claim.attempt} times (last: {error})"
                )
                return True
            db.execute(
                "UPDATE atr_work SET claimed_until_ns = NULL, error = ? WHERE scan_ref = ?",
                [error[:2000], claim.ref],
            )
            return False

    # -- the live feed -----------------------------------------------------------------------
    def take_unpublished(self, limit: int = 64) -> list[Done]:
        """Take the done items nobody published yet, oldest first: each is handed to one
        caller only, whichever aggregator asks first (its ``feed`` is then cleared)."""
        db = self.db
        if db.one(_UNPUBLISHED + " LIMIT 1") is None:  # a read: idle polls lock nothing
            return []
        with db.transaction():
            rows = db.rows(
                "UPDATE atr_work SET published_ns = ? WHERE published_ns IS NULL AND scan_ref IN ("
                + _UNPUBLISHED
                + " ORDER BY scan_ref LIMIT ?) RETURNING scan_ref, done_ns, error, feed",
                [self.clock(), limit],
            )
            # the messages were copies of what the CIR keeps (verdicts, att, alarms): a
            # published item keeps its times only
            db.executemany(
                "UPDATE atr_work SET feed = NULL WHERE scan_ref = ?",
                [(int(r["scan_ref"]),) for r in rows],
            )
        return [
            Done(int(r["scan_ref"]), int(r["done_ns"]), r["error"], _feed_list(r["feed"]))
            for r in sorted(rows, key=lambda r: int(r["scan_ref"]))
        ]

    def waiting(self) -> int:
        """Items not done yet (claimed ones included)."""
        return int(self.db.value("SELECT count(*) AS n FROM atr_work WHERE done_ns IS NULL"))

    def item(self, ref: int) -> dict[str, Any] | None:
        """The queue row of scan ``ref`` (for tools and tests), or None."""
        return self.db.one("SELECT * FROM atr_work WHERE scan_ref = ?", [ref])

    # -- inside transactions -----------------------------------------------------------------
    def _guard(self, claim: Claim) -> int:
        """Lock the item's row and check the claim is still this worker's; the time now."""
        row = self.db.one(
            "SELECT claimed_by, attempts, done_ns FROM atr_work WHERE scan_ref = ?"
            + self.db.lock_clause(),
            [claim.ref],
        )
        if row is None:
            raise ClaimLost(claim, "no such item")
        if row["done_ns"] is not None:
            raise ClaimLost(claim, "it is done already")
        if (row["claimed_by"], int(row["attempts"])) != (claim.worker, claim.attempt):
            raise ClaimLost(
                claim, f"{row['claimed_by']} claimed it since (attempt {row['attempts']})"
            )
        return self.clock()

    def _skip_backlog(self, now: int) -> None:
        """Mark done the free items beyond the oldest ``max_backlog`` waiting ones."""
        if self.max_backlog <= 0:
            return
        rows = self.db.rows(
            "UPDATE atr_work SET done_ns = ?, error = ? "
            "WHERE done_ns IS NULL AND (claimed_until_ns IS NULL OR claimed_until_ns <= ?) "
            "AND scan_ref > (SELECT scan_ref FROM atr_work WHERE done_ns IS NULL "
            "ORDER BY scan_ref LIMIT 1 OFFSET ?) RETURNING scan_ref",
            [now, f"ATR backlog: more than {self.max_backlog} scans waiting", now,
             self.max_backlog - 1],
        )  # fmt: skip
        for r in sorted(rows, key=lambda r: int(r["scan_ref"])):
            ref = int(r["scan_ref"])
            self._alarm(
                ref,
                now,
                f"ATR is {self.max_backlog} scans behind: scan ref {ref} was stored without "
                "a live verdict",
            )

    def _give_up(self, ref: int, now: int, why: str) -> None:
        self.db.execute(
            "UPDATE atr_work SET done_ns = ?, claimed_until_ns = NULL, error = ? "
            "WHERE scan_ref = ?",
            [now, why[:2000], ref],
        )
        self._alarm(ref, now, f"scan ref {ref} was stored without a live verdict: {why}")

    def _alarm(self, ref: int, now: int, message: str) -> None:
        """An ``atr_skipped`` alarm row for item ``ref``, also kept as its feed message."""
        scanner = self.db.value("SELECT scanner FROM scans WHERE ref = ?", [ref]) or ""
        details = {"ref": ref, "fix": "analyse it on demand with 'nii cir dicos'"}
        row = {
            "ts_ns": now,
            "scanner": scanner,
            "edge": "",
            "kind": ALARM_SKIPPED,
            "message": message,
            "details": json.dumps(details),
        }
        self.db.insert("alarms", [row])
        self.db.execute(
            "UPDATE atr_work SET feed = ? WHERE scan_ref = ?",
            [_feed_text([("alarm", {**row, "details": details})]), ref],
        )


_FREE = (
    "SELECT scan_ref, attempts, error FROM atr_work WHERE done_ns IS NULL "
    "AND (claimed_until_ns IS NULL OR claimed_until_ns <= ?)"
)
_UNPUBLISHED = "SELECT scan_ref FROM atr_work WHERE done_ns IS NOT NULL AND published_ns IS NULL"


def _feed_text(feed: Feed) -> str:
    return json.dumps([[t, d] for t, d in feed], default=str)


def _feed_list(text: str | None) -> Feed:
    if not text:
        return []
    try:
        got = json.loads(text)
    except ValueError:
        return []
    return [(str(t), d) for t, d in got if isinstance(d, dict)]


__all__ = [
    "ALARM_SKIPPED",
    "CLAIM_S",
    "MAX_ATTEMPTS",
    "Claim",
    "ClaimLost",
    "Done",
    "Feed",
    "WorkQueue",
    "enqueue",
]
