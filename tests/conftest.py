"""Suite-wide fixtures: fail any async test that leaks asyncio tasks."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio


@pytest_asyncio.fixture
async def _no_leaked_tasks() -> AsyncIterator[None]:
    before = set(asyncio.all_tasks())
    yield
    for _ in range(3):  # let cancelled tasks finish their clean-up
        await asyncio.sleep(0)
    me = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if t is not me and not t.done()]
    for t in leaked:
        t.cancel()
    if leaked:
        pytest.fail(f"test leaked {len(leaked)} asyncio task(s): {[t.get_name() for t in leaked]}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fn = getattr(item, "function", None)
        if fn is not None and inspect.iscoroutinefunction(fn):
            item.fixturenames.insert(0, "_no_leaked_tasks")  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can print logs on failure."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


def _local_server(start: Any, prefix: str) -> Iterator[Any]:
    """A server of ``nii._local_servers`` in a folder of its own, removed afterwards."""
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix=prefix))
    server = start(base)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """A SeaweedFS object store of our own on loopback, for the whole session
    (``nii._local_servers.start_s3``; ``weed`` comes with the dev install)."""
    from nii._local_servers import start_s3

    yield from _local_server(start_s3, "nii-test-s3-")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A PostgreSQL server of our own on loopback, for the whole session
    (``nii._local_servers.start_postgres``; Debian's postgresql, .ci/run installs it)."""
    from nii._local_servers import start_postgres

    yield from _local_server(start_postgres, "nii-test-pg-")


@pytest.fixture
def pg_database(postgres_server: Any) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL server."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return str(postgres_server.url).rsplit("/", 1)[0] + f"/{name}"
