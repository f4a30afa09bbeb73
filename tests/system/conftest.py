"""System-test fixtures: a cluster of real ``nii`` processes in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system._cluster import Cluster


def _running(c: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """``c`` enrolled, stopped afterwards; its logs are printed when the test failed."""
    c.enroll()
    yield c
    c.stop_all()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(c.log_tail())


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """An enrolled cluster, stopped afterwards; its logs are printed when the test failed."""
    yield from _running(Cluster(tmp_path), request)


@pytest.fixture(params=["embedded", "national"])
def any_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """An enrolled cluster on the embedded CIR (SQLite and files) and on the national one
    (PostgreSQL and an S3-compatible object store, servers of our own)."""
    if request.param == "national":
        c = Cluster(
            tmp_path,
            database=request.getfixturevalue("pg_database"),
            s3=request.getfixturevalue("s3_server"),
        )
    else:
        c = Cluster(tmp_path)
    yield from _running(c, request)
