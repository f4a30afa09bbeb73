"""The enrolled edges in memory (central._enrolled): read by a thread, never by the
event loop, so a database that hangs does not hang the aggregator."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, cast

from central._cir import Cir
from central._enrolled import EnrolledKeys
from central._sql import Sql
from core.keys import EdgeKey


def _until(cond: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_an_enrollment_and_a_revocation_take_effect_within_a_refresh(tmp_path: Path) -> None:
    cir = Cir(tmp_path / "cir")
    a = EdgeKey.generate("edge-a")
    cir.enroll(a.public)
    keys = EnrolledKeys(lambda: Sql(tmp_path / "cir" / "cir.sqlite"), refresh_s=0.2)
    try:
        za = a.public.curve_public.decode()
        assert keys.get(za)["id"] == "edge-a"  # type: ignore[index]
        b = EdgeKey.generate("edge-b")
        zb = b.public.curve_public.decode()
        assert keys.get(zb) is None
        cir.enroll(b.public)
        assert _until(lambda: keys.get(zb) is not None)
        cir.revoke("edge-a")
        assert _until(lambda: (keys.get(za) or {}).get("revoked_ns") is not None)
    finally:
        keys.close()
        cir.close()


class _Hanging:
    """A connection whose reads hang once ``hang`` is set (a paused database server)."""

    def __init__(self, rows: list[dict[str, Any]], hang: threading.Event) -> None:
        self._rows, self._hang = rows, hang
        self.release = threading.Event()

    def rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        if self._hang.is_set():
            self.release.wait(30)
        return self._rows

    def close(self) -> None:
        pass


def test_a_read_that_hangs_leaves_the_last_copy_in_use_at_once() -> None:
    hang = threading.Event()
    conn = _Hanging([{"curve_public": "K", "id": "edge-a", "revoked_ns": None}], hang)
    keys = EnrolledKeys(lambda: cast(Sql, conn), refresh_s=0.05)
    try:
        hang.set()  # the next read hangs in the thread
        t = time.monotonic()
        for _ in range(100):
            assert keys.get("K") is not None
            assert keys.get("unknown") is None  # asks for a read; does not wait for it
        assert time.monotonic() - t < 1.0
    finally:
        conn.release.set()
        keys.close()
