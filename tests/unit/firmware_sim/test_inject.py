"""``nii sim inject``: reaching a running simulator through its FIFO, and refusing mistakes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from firmware_sim import FAULT_KINDS, SimScanner
from firmware_sim.cli import _InjectFifo, inject, inject_path, write_status

DEADLINE = 10.0


async def test_inject_through_the_fifo_reaches_the_scanner(tmp_path: Path) -> None:
    status = tmp_path / "sim" / "status.json"
    async with SimScanner(channels=8, auto=False) as sim:
        fifo = _InjectFifo(inject_path(status), {"scanner1": sim})
        try:
            write_status(status, [sim])
            doc = json.loads(status.read_text())
            assert doc["inject"] == str(inject_path(status))
            assert doc["scanners"][0]["session"] == sim.boot_id != ""
            inject(status, "scanner1", "stall", "0.2")
            inject(status, "scanner1", "link_drop")
            inject(status, "scanner1", "dead_channel", "not a number")  # refused, sim goes on

            async def applied() -> None:
                while sim.stats["link_drops"] < 1:
                    await asyncio.sleep(0.005)

            await asyncio.wait_for(applied(), DEADLINE)
            assert sim.stats["stalls"] == 1
        finally:
            fifo.close()
    assert not inject_path(status).exists()


def test_inject_refuses_mistakes_and_sends_nothing(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    with pytest.raises(ConfigError, match="unknown fault kind") as err:
        inject(status, "scanner1", "explode")
    assert "unplug" in err.value.fix
    with pytest.raises(ConfigError, match="no running simulator's status"):
        inject(status, "scanner1", "stall")
    status.write_text('{"pid": 1, "scanners": [{"name": "scanner1"}]}')
    with pytest.raises(ConfigError, match="no scanner 'scanner2'"):
        inject(status, "scanner2", "stall")
    with pytest.raises(ConfigError, match="cannot reach the simulator") as err:
        inject(status, "scanner1", "stall")  # no FIFO: the simulator is not running
    assert "still runs" in err.value.fix


def test_fault_kinds_include_the_protocol_faults() -> None:
    for kind in ("oversized_record", "channels_change", "zero_channels", "out_of_order", "unplug"):
        assert kind in FAULT_KINDS


async def test_unknown_kind_and_double_unplug_are_refused(tmp_path: Path) -> None:
    link = tmp_path / "s.tty"
    async with SimScanner(channels=8, auto=False, serial_link=link) as sim:
        with pytest.raises(ConfigError, match="unknown fault kind"):
            sim.inject("explode")
        sim.inject("unplug", 0.2)
        assert not link.exists() and sim.state == "idle"
        with pytest.raises(ConfigError, match="already unplugged"):
            sim.inject("unplug")

        async def back() -> None:
            while not link.exists():
                await asyncio.sleep(0.005)

        await asyncio.wait_for(back(), DEADLINE)
        assert link.is_symlink()
    assert not link.exists()
