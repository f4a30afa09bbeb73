"""The size of the aggregator's batches follows how fast it stages and commits
(central._batching)."""

from __future__ import annotations

import pytest

from central._batching import MIN_BATCH_BYTES, BatchBudget, PhaseFit

MB = 2**20


def test_the_fit_finds_the_fixed_and_per_byte_cost() -> None:
    f = PhaseFit()
    for b in (1, 8, 3, 20, 5, 12):
        f.observe(b * MB, 0.02 + b * MB * 10e-9)  # 20 ms + 10 ns a byte
    fit = f.fit()
    assert fit is not None
    fixed, per_byte = fit
    assert fixed == pytest.approx(0.02, abs=1e-6)
    assert per_byte == pytest.approx(10e-9, rel=1e-6)
    # 250 ms: 230 ms of bytes at 10 ns
    assert f.bytes_for(0.25) == pytest.approx(0.23 / 10e-9, rel=1e-6)


def test_batches_of_one_size_are_taken_as_all_per_byte() -> None:
    f = PhaseFit()
    for _ in range(5):
        f.observe(10 * MB, 0.5)
    assert f.fit() == (0.0, pytest.approx(0.5 / (10 * MB)))


def test_a_slow_object_store_gets_batches_it_commits_in_the_target_time() -> None:
    budget = BatchBudget(64 * MB, target_s=0.25)
    assert budget.limit() == 4 * MIN_BATCH_BYTES  # nothing measured yet
    for b in (16, 10, 6, 8, 5):
        budget.stage.observe(b * MB, b * MB * 4e-9)  # staging at 250 MB/s
        budget.commit.observe(b * MB, 0.01 + b * MB / 30e6)  # committing at 30 MB/s
    lim = budget.limit()
    assert lim == pytest.approx(0.24 * 30e6, rel=0.01)  # 7.2 MB
    # a fast store: the ceiling
    fast = BatchBudget(64 * MB, target_s=0.25)
    for b in (16, 32, 64):
        fast.commit.observe(b * MB, 0.005 + b * MB / 2e9)
    assert fast.limit() == 64 * MB


def test_a_fixed_cost_above_the_target_does_not_shrink_batches_to_nothing() -> None:
    # an fsync of 400 ms on a busy disk: shrinking the batch would not make it faster
    budget = BatchBudget(64 * MB, target_s=0.25)
    for b in (4, 16, 8, 32):
        budget.commit.observe(b * MB, 0.4 + b * MB / 100e6)
    assert budget.limit() == pytest.approx(0.125 * 100e6, rel=0.01)  # half the target


def test_older_batches_weigh_less_so_the_limit_follows_a_change() -> None:
    budget = BatchBudget(64 * MB, target_s=0.25)
    for _ in range(10):
        for b in (8, 16):
            budget.commit.observe(b * MB, b * MB / 200e6)
    before = budget.limit()
    for _ in range(10):  # the object store slows down to a tenth
        for b in (8, 16):
            budget.commit.observe(b * MB, b * MB / 20e6)
    after = budget.limit()
    assert after < before / 5
    assert after >= MIN_BATCH_BYTES


def test_nonsense_observations_change_nothing() -> None:
    f = PhaseFit()
    f.observe(0, 1.0)
    f.observe(-5, 1.0)
    f.observe(MB, float("nan"))
    assert f.fit() is None


def test_heartbeats_go_ahead_of_commits_only_while_commits_work() -> None:
    from central._commit import COMMIT_STUCK_S, CommitPipeline

    p = CommitPipeline.__new__(CommitPipeline)  # only its health: no CIR needed
    p.writing_since, p.in_trouble = None, False
    assert p.healthy(now=100.0)
    p.writing_since = 100.0
    assert p.healthy(now=100.0 + COMMIT_STUCK_S - 0.1)
    assert not p.healthy(now=100.0 + COMMIT_STUCK_S + 0.1)  # a stuck batch
    p.writing_since, p.in_trouble = 100.0, True
    assert not p.healthy(now=100.5)  # a batch retried for want of storage


def test_a_paused_process_is_not_taken_for_stuck_storage() -> None:
    from types import SimpleNamespace

    from central._commit import COMMIT_STUCK_S, CommitPipeline

    p = CommitPipeline.__new__(CommitPipeline)  # only the stuck check: no CIR needed
    raised: list[str] = []
    p.storage_trouble = lambda exc: raised.append(exc.message)  # type: ignore[method-assign]
    p.cir = SimpleNamespace(  # type: ignore[assignment]
        blobs=SimpleNamespace(location="b"), wsql=SimpleNamespace(location="w")
    )
    p.writing_since, p._stuck_alarmed, p._last_check = 100.0, False, 100.0
    # the process was stopped for 15 s (SIGSTOP, a suspended machine) mid-commit: the
    # first check after it is late, and that time is not the storage's
    p.check_stuck(now=115.0)
    assert not raised
    for t in (115.5, 116.0, 116.5):
        p.check_stuck(now=t)
    assert not raised
    # checked every half second, the commit then waits on: that is the storage
    t = 116.5
    while t < 115.0 + COMMIT_STUCK_S + 1.0:
        t += 0.5
        p.check_stuck(now=t)
    assert len(raised) == 1 and "a commit has waited" in raised[0], raised
