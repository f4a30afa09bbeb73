"""The lease keeper (central._commit.LeaseKeeper) when the CIR's storage fails under it:
a full disk or a database gone is logged and alarmed as storage trouble, and the keeper
goes on renewing; anything else is a bug and ends the task (central stops, loudly)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from central._cir import Cir
from central._commit import LeaseKeeper
from central._leases import LeaseBook
from core.errors import StorageError


class FailingRenewals:
    """A real CIR whose lease renewals raise ``exc`` (what SQLite raises on a full disk)."""

    def __init__(self, cir: Cir, exc: Exception) -> None:
        self.cir, self.exc, self.renewals = cir, exc, 0

    def renew_leases(self, held: Any, ttl_s: float) -> list[str]:
        self.renewals += 1
        raise self.exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cir, name)


class Heard:
    def last_heard(self, scanner: str) -> float:
        return time.monotonic()


async def _run_keeper(cir: FailingRenewals, troubles: list[StorageError], rounds: int) -> None:
    book = LeaseBook("agg", "boot", ttl_s=0.06)
    book.took("s1", 1)
    keeper = LeaseKeeper(
        cir,  # type: ignore[arg-type]
        book,
        Heard(),  # type: ignore[arg-type]
        wlock=asyncio.Lock(),
        storage_trouble=troubles.append,
    )
    task = asyncio.create_task(keeper.loop())
    deadline = time.monotonic() + 10
    while cir.renewals < rounds and not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    done = task.done()
    task.cancel()
    if done:
        await task  # raises what ended it
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_full_disk_under_the_renewals_is_storage_trouble_not_the_end(tmp_path: Path) -> None:
    cir = Cir(tmp_path / "cir")
    try:
        failing = FailingRenewals(cir, sqlite3.OperationalError("database or disk is full"))
        troubles: list[StorageError] = []
        asyncio.run(_run_keeper(failing, troubles, rounds=3))
        assert failing.renewals >= 3  # still renewing after the first failure
        assert troubles and "cir" in troubles[0].path
    finally:
        cir.close()


def test_a_bug_under_the_renewals_ends_the_keeper(tmp_path: Path) -> None:
    cir = Cir(tmp_path / "cir")
    try:
        failing = FailingRenewals(cir, KeyError("holder"))
        troubles: list[StorageError] = []
        with pytest.raises(KeyError):
            asyncio.run(_run_keeper(failing, troubles, rounds=3))
        assert failing.renewals == 1 and not troubles
    finally:
        cir.close()


class Leases:
    """A CIR that grants every lease: the same token while ``renew`` is set (the lease
    row still names this aggregator), else the next one."""

    def __init__(self) -> None:
        self.token, self.renew = 10, False

    def acquire_lease(self, scanner: str, holder: str, ttl_s: float) -> int:
        if not self.renew:
            self.token += 1
        return self.token


class Forgets:
    def __init__(self) -> None:
        self.forgot: list[str] = []

    def forget(self, scanner: str) -> None:
        self.forgot.append(scanner)


async def test_a_lease_taken_anew_forgets_what_staging_read_of_the_stream() -> None:
    # another aggregator may commit to the stream until the lease is taken here: the
    # head the HELLO's staging read is then behind the CIR, and a WELCOME with it made
    # the edge's blocks be refused as a gap for ever (seen after an object-store stall)
    from central._ingest import Work

    book = LeaseBook("agg", "boot", ttl_s=3.0)
    ingest, cir = Forgets(), Leases()
    keeper = LeaseKeeper(
        cir,  # type: ignore[arg-type]
        book,
        ingest,  # type: ignore[arg-type]
        wlock=asyncio.Lock(),
        storage_trouble=lambda exc: None,
    )

    def hello_work(head: int) -> Work:
        work = Work()
        work.hellos = [(b"e/s1/b", "s1"), (b"e/s1/b", "s1")]  # an outage queues several
        work.heads["s1"] = (head, b"\0" * 32, 7)  # read at staging, before the take
        return work

    work = hello_work(1312)
    await keeper.hellos(work)
    assert ingest.forgot == ["s1"] and "s1" not in work.heads  # read again for the WELCOME
    assert [s for _, s in work.hellos] == ["s1", "s1"]
    # held all along since (the same token): nobody else wrote, nothing to forget
    ingest.forgot.clear()
    cir.renew = True
    work = hello_work(1400)
    await keeper.hellos(work)
    assert ingest.forgot == [] and work.heads["s1"][0] == 1400
    # let go meanwhile (its edge went quiet), then taken again: forgotten again
    book.held.pop("s1")
    work = hello_work(1400)
    await keeper.hellos(work)
    assert ingest.forgot == ["s1"]
