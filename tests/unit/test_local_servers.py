"""Our own PostgreSQL server on loopback (for ``nii demo --national`` and the national CIR's
tests): it starts from the installed binaries, keeps what it committed across a restart,
and says plainly when it cannot start."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from core.errors import NiiError
from nii._local_servers import start_postgres


def test_postgres_keeps_a_commit_across_a_restart(postgres_server: Any) -> None:
    import psycopg

    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t (x int)")
        conn.execute("INSERT INTO t VALUES (42)")
        assert conn.execute("SHOW fsync").fetchone() == ("on",)
    base = Path(tempfile.mkdtemp(prefix="nii-test-pg-restart-"))
    try:
        first = start_postgres(base, database="again")
        with psycopg.connect(first.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (7)")
        first.stop()
        second = start_postgres(base, database="again")
        try:
            with psycopg.connect(second.url) as conn:
                assert conn.execute("SELECT x FROM t").fetchall() == [(7,)]
        finally:
            second.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_folder_the_server_cannot_reach_is_said_not_a_traceback(tmp_path: Path) -> None:
    """Run as root, the server runs as nobody: a folder under a closed one is refused
    with the reason (a user's own server reaches their own folders)."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    if os.geteuid() != 0:
        start_postgres(closed / "pg").stop()
        return
    with pytest.raises(NiiError, match="cannot reach") as err:
        start_postgres(closed / "pg")
    assert "/tmp" in err.value.fix
