"""The live ATR's work queue on both engines (``central._atr_queue``): claims, their
expiry, fencing of a stale worker, exactly one result per scan under concurrent
claimers, failures, the backlog, and publishing each done item once.

Times come from an injected clock (ns) unless a test races real threads."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central._atr_queue import ALARM_SKIPPED, ClaimLost, WorkQueue, enqueue
from central._sql import Sql, migrate
from central.atr._store import verdict_statement
from core.messages import BlockMsg
from core.seal import Opener
from tests.unit.central._chain import IDENT, SCANNER, Rig

S = 1_000_000_000  # ns


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "cir.sqlite")
    return str(request.getfixturevalue("pg_database"))


class Clock:
    def __init__(self) -> None:
        self.t = 1_000 * S

    def __call__(self) -> int:
        return self.t


@pytest.fixture
def dbs(target: str) -> Iterator[list[Sql]]:
    """Three connections to one fresh CIR database: as three processes have."""
    conns = [Sql(target) for _ in range(3)]
    migrate(conns[0])
    yield conns
    for c in conns:
        c.close()


def _queue(db: Sql, name: str, clock: Clock, **kw: Any) -> WorkQueue:
    return WorkQueue(db, name, claim_s=10.0, clock=clock, **kw)


def _fill(db: Sql, refs: range) -> None:
    with db.transaction():
        enqueue(db, refs, 0)


def _verdict(ref: int) -> tuple[str, tuple[Any, ...]]:
    sql, args = verdict_statement(
        {"ref": ref, "scanner": "s1", "scan_id": ref, "verdict": "green", "findings": []}
    )
    return sql + " DO NOTHING", args


def test_claims_take_the_oldest_free_item_one_worker_each(dbs: list[Sql]) -> None:
    clock = Clock()
    _fill(dbs[0], range(1, 4))
    _fill(dbs[0], range(2, 3))  # queued again: left as it is
    a, b = _queue(dbs[1], "a", clock), _queue(dbs[2], "b", clock)
    ca, cb, cc = a.claim(), b.claim(), a.claim()
    assert ca is not None and cb is not None and cc is not None
    assert [(c.ref, c.worker, c.attempt) for c in (ca, cb, cc)] == [
        (1, "a", 1),
        (2, "b", 1),
        (3, "a", 1),
    ]
    assert ca.until_ns == clock.t + 10 * S
    assert b.claim() is None  # all held
    assert a.waiting() == 3


def test_a_claim_runs_out_unless_renewed_and_goes_to_another(dbs: list[Sql]) -> None:
    clock = Clock()
    _fill(dbs[0], range(1, 2))
    a, b = _queue(dbs[1], "a", clock), _queue(dbs[2], "b", clock)
    claim = a.claim()
    assert claim is not None
    clock.t += 8 * S
    renewed = a.renew(claim)
    assert renewed is not None and renewed.until_ns == clock.t + 10 * S
    clock.t += 8 * S  # 16 s after the claim, 8 after the renewal: still a's
    assert b.claim() is None
    clock.t += 2 * S  # a was killed: no renewal; its claim ran out
    taken = b.claim()
    assert taken is not None and (taken.ref, taken.worker, taken.attempt) == (1, "b", 2)
    assert a.renew(claim) is None  # a's claim is gone for good


def test_a_stale_worker_cannot_store_a_second_verdict(dbs: list[Sql]) -> None:
    """a claims, stalls past its claim; b takes the item and stores its verdict; a's
    transaction finds b's claim (or the item done) and rolls back: one verdict."""
    clock = Clock()
    _fill(dbs[0], range(7, 8))
    a, b = _queue(dbs[1], "a", clock), _queue(dbs[2], "b", clock)
    stale = a.claim()
    assert stale is not None
    clock.t += 11 * S
    fresh = b.claim()
    assert fresh is not None and fresh.attempt == 2
    with pytest.raises(ClaimLost, match="b claimed it since"):
        a.complete(stale, [_verdict(7)], [("atr.verdict", {"ref": 7, "by": "a"})])
    assert dbs[0].rows("SELECT ref FROM verdicts") == []  # rolled back
    b.complete(fresh, [_verdict(7)], [("atr.verdict", {"ref": 7, "by": "b"})])
    with pytest.raises(ClaimLost, match="done already"):
        a.complete(stale, [_verdict(7)])
    # the same worker name claiming again later holds a newer token than its old claim
    assert dbs[0].rows("SELECT ref FROM verdicts") == [{"ref": 7}]
    row = a.item(7)
    assert row is not None and row["claimed_by"] == "b" and row["done_ns"] == clock.t
    assert json.loads(row["feed"]) == [["atr.verdict", {"ref": 7, "by": "b"}]]
    assert a.fail(stale, "too late") is False  # no effect either


def test_the_verdicts_table_keeps_one_verdict_per_scan(dbs: list[Sql]) -> None:
    sql, args = _verdict(3)
    for _ in range(2):
        with dbs[0].transaction():
            dbs[0].execute(sql, args)
    plain = sql.removesuffix(" ON CONFLICT (ref) DO NOTHING")
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        dbs[0].execute(plain, args)
    assert dbs[0].value("SELECT count(*) AS n FROM verdicts") == 1


def test_two_claimers_at_once_judge_each_scan_exactly_once(dbs: list[Sql]) -> None:
    """Two threads, each its own connection and the database's clock, drain 40 items."""
    n = 40
    _fill(dbs[0], range(1, n + 1))
    done: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(db: Sql, name: str) -> None:
        q = WorkQueue(db, name, claim_s=30.0)
        try:
            start.wait()
            while (claim := q.claim()) is not None:
                q.complete(claim, [_verdict(claim.ref)], [("atr.verdict", {"ref": claim.ref})])
                done[name].append(claim.ref)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(dbs[i + 1], w)) for i, w in enumerate("ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(done["a"] + done["b"]) == list(range(1, n + 1))  # none twice, none missed
    assert dbs[0].value("SELECT count(*) AS n FROM verdicts") == n
    assert dbs[0].value("SELECT max(attempts) AS m FROM atr_work") == 1


def test_a_failing_item_goes_back_then_is_given_up_with_an_alarm(dbs: list[Sql]) -> None:
    clock = Clock()
    _fill(dbs[0], range(5, 6))
    q = _queue(dbs[1], "a", clock, max_attempts=2)
    first = q.claim()
    assert first is not None
    assert q.fail(first, "ValueError: bad scan") is False  # back in the queue at once
    second = q.claim()
    assert second is not None and second.attempt == 2
    assert q.fail(second, "ValueError: bad scan") is True
    assert q.claim() is None
    row = q.item(5)
    assert row is not None and row["done_ns"] == clock.t and "2 times" in row["error"]
    (alarm,) = dbs[0].rows("SELECT kind, message, details FROM alarms")
    assert alarm["kind"] == ALARM_SKIPPED and "ref 5" in alarm["message"]
    assert json.loads(alarm["details"])["ref"] == 5
    (done,) = q.take_unpublished()
    assert done.ref == 5 and [t for t, _ in done.feed] == ["alarm"]


def test_an_item_whose_workers_keep_dying_is_given_up(dbs: list[Sql]) -> None:
    clock = Clock()
    _fill(dbs[0], range(1, 3))
    q = _queue(dbs[1], "a", clock, max_attempts=2)
    for _ in range(2):  # claimed, then the worker is killed: the claim runs out
        claim = q.claim()
        assert claim is not None and claim.ref == 1
        clock.t += 11 * S
    nxt = q.claim()  # item 1 is given up on the way; item 2 is next
    assert nxt is not None and nxt.ref == 2
    row = q.item(1)
    assert row is not None and row["done_ns"] is not None and "2 times" in row["error"]
    assert [r["kind"] for r in dbs[0].rows("SELECT kind FROM alarms")] == [ALARM_SKIPPED]


def test_the_newest_items_beyond_the_backlog_are_skipped_with_alarms(dbs: list[Sql]) -> None:
    clock = Clock()
    _fill(dbs[0], range(1, 7))
    q = _queue(dbs[1], "a", clock, max_backlog=3)
    claim = q.claim()
    assert claim is not None and claim.ref == 1
    assert q.waiting() == 3  # 1 (claimed), 2, 3; 4, 5, 6 skipped
    alarms = dbs[0].rows("SELECT kind, message FROM alarms ORDER BY id")
    assert [a["kind"] for a in alarms] == [ALARM_SKIPPED] * 3
    assert "ref 4" in alarms[0]["message"] and "3 scans behind" in alarms[0]["message"]
    q.complete(claim)
    assert q.claim() is not None and q.waiting() == 2  # nothing more skipped


def test_each_done_item_is_published_once_by_whichever_aggregator_asks(
    dbs: list[Sql],
) -> None:
    clock = Clock()
    _fill(dbs[0], range(1, 4))
    w = _queue(dbs[0], "w", clock)
    for _ in range(3):
        c = w.claim()
        assert c is not None
        w.complete(c, [], [("atr.verdict", {"ref": c.ref})])
    a, b = _queue(dbs[1], "agg-a", clock), _queue(dbs[2], "agg-b", clock)
    got_a = a.take_unpublished(limit=2)
    got_b = b.take_unpublished()
    assert [d.ref for d in got_a] == [1, 2] and [d.ref for d in got_b] == [3]
    assert got_a[0].feed == [("atr.verdict", {"ref": 1})]
    item = a.item(1)
    assert item is not None and item["feed"] is None  # the CIR keeps them in their tables
    assert a.take_unpublished() == [] and b.take_unpublished() == []


def test_the_commit_that_finishes_a_scan_queues_it(tmp_path: Path, target: str) -> None:
    """Enqueued in Cir.commit's transaction: a commit that fails queues nothing."""
    from central._cir import Cir
    from central._ingest import Ingest, Work
    from core.keys import EdgePublic

    database = "" if target.endswith(".sqlite") else target
    r = Rig()
    cir = Cir(tmp_path / "cir", database=database)
    try:
        cir.enroll(EdgePublic("edge-1", r.sign.public_key(), b"0" * 40))
        ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
        work = Work()
        for seq, raw in (r.start(1, lines=2), r.data(1, [0, 1]), r.end(1)):
            ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
        assert work.finished == {1}
        scans = {k: ingest.scans[k] for k in work.scans}
        cir.commit(work.staged, ingest.streams, scans, [], atr=work.finished)
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            cir.commit(work.staged, ingest.streams, {}, [], atr={99})
        rows = cir.sql.rows("SELECT scan_ref, attempts, done_ns FROM atr_work")
        assert rows == [{"scan_ref": 1, "attempts": 0, "done_ns": None}]
    finally:
        cir.close()
