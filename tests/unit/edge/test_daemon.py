"""What the edge daemon tells systemd: READY=1, STATUS= and the watchdog (edge._daemon)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edge._daemon import EdgeDaemon


def chan(sid: str, identified: bool, waiting: str = "", storage: Any = None) -> Any:
    return SimpleNamespace(
        cfg=SimpleNamespace(id=sid),
        identified=identified,
        waiting_for=waiting,
        storage_error=storage,
        beat=time.monotonic(),
    )


def daemon(*channels: Any) -> EdgeDaemon:
    d = object.__new__(EdgeDaemon)
    d.channels = list(channels)
    d.cfg = SimpleNamespace(id="e1")  # type: ignore[assignment]
    d._loop_beat = time.monotonic()
    d._runs = []
    d._status_failing = False
    return d


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self) -> bool:
        self.sent.append("READY=1")
        return True

    def status(self, text: str) -> bool:
        self.sent.append(f"STATUS={text}")
        return True


def test_status_says_what_the_unit_waits_for_then_what_it_serves() -> None:
    a = chan("scanner1", False, "scanner1: serial device /dev/ttyX absent")
    b = chan("scanner2", True)
    d = daemon(a, b)
    assert d.status_text() == "waiting for scanner1: serial device /dev/ttyX absent"
    a.identified, a.waiting_for = True, ""
    assert d.status_text() == "serving 2 scanners"
    b.storage_error = object()
    assert d.status_text() == "serving 2 scanners (scanner2: spool cannot write)"
    b.storage_error, b.waiting_for = None, "scanner2: control link down"
    assert d.status_text() == "serving 2 scanners (scanner2: control link down)"


async def test_ready_only_once_every_scanner_answered() -> None:
    a, b = chan("scanner1", False, "scanner1: opening"), chan("scanner2", True)
    d = daemon(a, b)
    rec = Recorder()
    task = asyncio.create_task(d._announce(rec))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0.05)
        assert rec.sent == ["STATUS=waiting for scanner1: opening"]
        a.identified, a.waiting_for = True, ""
        end = time.monotonic() + 3
        while "READY=1" not in rec.sent:
            assert time.monotonic() < end, rec.sent
            await asyncio.sleep(0.05)
        assert rec.sent[-2:] == ["READY=1", "STATUS=serving 2 scanners"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_watchdog_is_fed_only_while_every_channel_makes_its_rounds() -> None:
    a, b = chan("scanner1", True), chan("scanner2", False)  # absent: still fed
    d = daemon(a, b)
    assert d.healthy()
    b.beat = time.monotonic() - 6  # a task of scanner2 is dead: its rounds stopped
    assert not d.healthy()
    b.beat = time.monotonic()
    d._loop_beat = time.monotonic() - 6  # the event loop was stuck
    assert not d.healthy()
    d._loop_beat = time.monotonic()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    done.set_result(None)
    d._runs = [done]  # type: ignore[list-item]
    assert not d.healthy()  # a channel's run() ended


def test_status_json_on_a_full_disk_is_one_warning_per_streak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = daemon()
    d.cfg = SimpleNamespace(id="e1", state_dir=tmp_path / "gone")  # type: ignore[assignment]
    d.ops = None
    with caplog.at_level(logging.INFO, logger="nii.edge"):
        d.write_status()
        d.write_status()
        assert len([r for r in caplog.records if "cannot write" in r.message]) == 1
        (tmp_path / "gone").mkdir()
        d.write_status()
    assert (tmp_path / "gone" / "status.json").exists()
    assert any("written again" in r.message for r in caplog.records)
