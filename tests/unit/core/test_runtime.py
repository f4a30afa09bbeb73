"""Tasks have owners: supervise restarts a crashed task with backoff (core.runtime)."""

from __future__ import annotations

import asyncio

import pytest

from core.runtime import Backoff, supervise


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_good_run() -> None:
    b = Backoff(0.5, 4.0, reset_after_s=30.0)
    assert [b.after_run(1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert b.after_run(31.0) == 0.5
    assert b.after_run(0.0) == 1.0
    b.reset()
    assert b.after_run(0.0) == 0.5


async def test_a_crashed_body_is_reported_and_restarted() -> None:
    runs: list[int] = []
    crashes: list[tuple[str, str, float]] = []

    async def body() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"boom {len(runs)}")

    await asyncio.wait_for(
        supervise(
            "t",
            body,
            on_crash=lambda n, e, d: crashes.append((n, str(e), d)),
            backoff=Backoff(0.01, 0.02),
        ),
        5.0,
    )
    assert len(runs) == 3
    assert crashes == [("t", "boom 1", 0.01), ("t", "boom 2", 0.02)]


async def test_cancellation_goes_through() -> None:
    started = asyncio.Event()

    async def body() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervise("t", body))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_base_exception_is_not_caught() -> None:
    async def body() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        await supervise("t", body)
