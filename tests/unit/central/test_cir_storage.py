"""The CIR on a full file system (issue 13, kind 4): one typed error, nothing half-done.

A real tmpfs of a few MiB is mounted as the CIR folder (root only; skipped
elsewhere) and filled up; a commit must raise StorageError naming the path and
the free space (not SQLite's "cannot rollback - no transaction is active"),
leave no partial blob under a block's name and nothing in the index, and the
same batch must commit once space returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.faults import Tmpfs, fill
from central._cir import Cir
from central._ingest import Ingest, Work
from core.errors import StorageError
from core.messages import BlockMsg
from core.seal import Opener
from tests.unit.central._chain import IDENT, SCANNER, Rig


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only: the test fails otherwise, it never skips)."""
    with Tmpfs(tmp_path / "cir", 4 << 20) as fs:
        yield fs.path


def _stage(r: Rig, cir: Cir, ingest: Ingest, block: tuple[int, bytes]) -> Work:
    work = Work()
    seq, raw = block
    ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
    assert work.staged
    return work


def test_full_disk_raises_storage_error_and_commits_once_space_returns(small_fs: Path) -> None:
    r = Rig()
    cir = Cir(small_fs)
    ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
    try:
        first = _stage(r, cir, ingest, r.start(1, lines=64, channels=512))
        cir.commit(first.staged, ingest.streams, {k: ingest.scans[k] for k in first.scans}, [])
        ingest.committed(first)
        work = _stage(r, cir, ingest, r.data(1, list(range(64)), channels=512))
        streams = dict(ingest.streams)
        scans = {k: ingest.scans[k] for k in work.scans}
        alarms = [cir.alarm_row("", "", "x", "m" * 1000) for _ in range(3000)]
        filler = fill(small_fs)
        for _ in range(2):  # the same batch twice: the cause stays visible each time
            with pytest.raises(StorageError) as err:
                cir.commit(work.staged, streams, scans, alarms)
            assert err.value.path == str(small_fs) and 0 <= err.value.free_bytes < 65536
            assert "no transaction is active" not in err.value.message
            assert err.value.fix
        with pytest.raises(StorageError):  # SQLite itself out of space, blobs not involved
            cir.commit([], {}, {}, alarms)
        assert not list(small_fs.rglob("*.part"))
        h = work.staged[0].hash
        assert not cir.blob_path(h).exists() and cir.block_hash(SCANNER, 1) is None
        filler.unlink()
        cir.commit(work.staged, streams, scans, alarms[:10])
        assert cir.block_hash(SCANNER, 1) == h
        assert cir.read_block(h.hex()).hash == h
    finally:
        cir.close()
