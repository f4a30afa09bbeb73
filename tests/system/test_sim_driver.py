"""The LSP-1 driver against a real simulated scanner: real pty, real TCP, real faults."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.errors import DriverError
from drivers import (
    ControlEvent,
    DataLink,
    LineFlags,
    LinkGap,
    Packet,
    PacketType,
    ScannerControl,
)
from drivers.lsp import LspControl, LspDataLink
from firmware_sim import FaultConfig, SimConfig, SimScanner

pytestmark = pytest.mark.system

DEADLINE = 10.0


def config(tmp_path: Path, **kw: object) -> SimConfig:
    base: dict[str, object] = {
        "channels": 32,
        "line_rate": 20000.0,
        "scan_lines": 200,
        "scans": 1,
        "interval_s": 0.01,
        "emit_log": tmp_path / "emit.log",
        "serial_link": tmp_path / "scanner1.tty",
        "status_interval_s": 0.2,
    }
    base.update(kw)
    return SimConfig(**base)  # type: ignore[arg-type]


async def collect(
    link: LspDataLink,
    last_scan: int,
    *,
    next_seq: int = 0,
    on_item: Callable[[Packet | LinkGap, int], None] | None = None,
) -> list[Packet | LinkGap]:
    """Everything the link yields up to the SCAN_END of ``last_scan``."""
    out: list[Packet | LinkGap] = []

    async def run() -> None:
        async with contextlib.aclosing(link.packets(next_seq)) as items:
            async for item in items:
                out.append(item)
                if on_item is not None:
                    on_item(item, len(out))
                if (
                    isinstance(item, Packet)
                    and item.type is PacketType.SCAN_END
                    and item.scan_id == last_scan
                ):
                    return

    try:
        await asyncio.wait_for(run(), DEADLINE)
    finally:
        await link.close()
    return out


def emit_log(path: Path) -> list[tuple[int, int, int, str]]:
    rows = []
    for text in path.read_text().splitlines():
        scan_id, line_no, flags, digest = text.split()
        rows.append((int(scan_id), int(line_no), int(flags), digest))
    return rows


def received_lines(items: list[Packet | LinkGap]) -> list[tuple[int, int, int, str]]:
    return [
        (p.scan_id, p.line_no, p.flags, hashlib.sha256(p.payload).hexdigest())
        for p in items
        if isinstance(p, Packet) and p.type is PacketType.LINE
    ]


def assert_complete(items: list[Packet | LinkGap], log: Path, first_seq: int = 0) -> None:
    """In order, no gap, nothing twice, bit-identical with what the scanner emitted."""
    assert not [i for i in items if isinstance(i, LinkGap)]
    seqs = [p.seq for p in items if isinstance(p, Packet)]
    assert seqs == list(range(first_seq, first_seq + len(seqs)))
    assert received_lines(items) == emit_log(log)


async def test_short_scan_arrives_in_order_and_bit_identical(tmp_path: Path) -> None:
    async with SimScanner(config(tmp_path)) as sim:
        link = LspDataLink("127.0.0.1", sim.data_port)
        assert isinstance(link, DataLink)
        sim.arm()
        items = await collect(link, last_scan=1)
    assert_complete(items, tmp_path / "emit.log")
    packets = [p for p in items if isinstance(p, Packet)]
    assert [p.type for p in packets[:1] + packets[-1:]] == [
        PacketType.SCAN_START,
        PacketType.SCAN_END,
    ]
    lines = packets[1:-1]
    assert [p.flags for p in lines[:16]] == [LineFlags.CALIB_DARK] * 8 + [LineFlags.CALIB_AIR] * 8
    image = lines[16:]
    assert [p.line_no for p in image] == list(range(200))
    assert image[0].flags == LineFlags.FIRST and image[-1].flags == LineFlags.LAST
    assert all(len(p.payload) == 4 * 32 and p.channels == 32 for p in lines)
    start = packets[0].payload.decode()
    assert '"lines": 200' in start and '"energies_kev": [6000, 4000]' in start
    assert b'"status": "complete"' in packets[-1].payload
    assert link.stats.packets == len(packets) and link.stats.bad_crc == 0


async def test_corrupt_and_dropped_packets_are_recovered(tmp_path: Path) -> None:
    faults = FaultConfig(corrupt_fraction=0.05, drop_fraction=0.05)
    async with SimScanner(config(tmp_path, scans=3, faults=faults, instant=True, seed=3)) as sim:
        link = LspDataLink("127.0.0.1", sim.data_port, stall_timeout_s=0.3)
        sim.arm()
        items = await collect(link, last_scan=3)
        assert sim.stats["corrupted"] > 0 and sim.stats["dropped"] > 0
    assert_complete(items, tmp_path / "emit.log")
    assert link.stats.bad_crc + link.stats.bad_header > 0
    assert link.stats.resumes > 0
    assert link.stats.gaps == 0


async def test_link_drop_and_stall_reconnect_and_resume(tmp_path: Path) -> None:
    cfg = config(tmp_path, scans=2, scan_lines=400, line_rate=5000.0)
    async with SimScanner(cfg) as sim:
        link = LspDataLink("127.0.0.1", sim.data_port, stall_timeout_s=0.2, backoff_initial_s=0.01)

        def chaos(item: Packet | LinkGap, n: int) -> None:
            if n == 100:
                sim.inject("link_drop")
            elif n == 300:
                sim.inject("stall", 0.5)

        sim.arm()
        items = await collect(link, last_scan=2, on_item=chaos)
    assert_complete(items, tmp_path / "emit.log")
    assert link.stats.reconnects >= 2
    assert link.stats.stalls >= 1


async def test_what_the_scanner_no_longer_holds_is_a_gap(tmp_path: Path) -> None:
    cfg = config(tmp_path, scan_lines=600, buffer_s=0.001, instant=True, emit_log=None)
    async with SimScanner(cfg) as sim:
        sim.arm()
        await asyncio.wait_for(sim.wait_scans(1), DEADLINE)
        oldest, head = sim.oldest_seq, sim.head_seq
        assert oldest > 0
        link = LspDataLink("127.0.0.1", sim.data_port)
        items = await collect(link, last_scan=1)
    gap = items[0]
    assert isinstance(gap, LinkGap) and (gap.first_seq, gap.last_seq) == (0, oldest - 1)
    assert [p.seq for p in items[1:] if isinstance(p, Packet)] == list(range(oldest, head))
    assert link.stats.gaps == 1 and link.stats.lost_packets == oldest


async def test_connection_refused_then_scanner_appears(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = LspDataLink("127.0.0.1", port, backoff_initial_s=0.01, backoff_max_s=0.05)
    task = asyncio.create_task(collect(link, last_scan=1))
    while link.stats.reconnects < 2:
        await asyncio.wait_for(asyncio.sleep(0.01), DEADLINE)
    async with SimScanner(config(tmp_path, data_port=port)) as sim:
        sim.arm()
        items = await asyncio.wait_for(task, DEADLINE)
    assert_complete(items, tmp_path / "emit.log")


async def test_serial_commands_survive_corrupted_bytes(tmp_path: Path) -> None:
    cfg = config(tmp_path, auto=False, faults=FaultConfig(serial_corrupt_fraction=0.15), seed=5)
    async with SimScanner(cfg) as sim:
        ctl = LspControl(str(tmp_path / "scanner1.tty"), reply_timeout_s=0.1, retries=10)
        assert isinstance(ctl, ScannerControl)
        await ctl.open()
        try:
            sim.inject("serial_corrupt", 2)  # the first two replies arrive broken
            ident = await ctl.identify()
            assert (ident.vendor, ident.channels, ident.energies_kev) == (
                "OpenNII",
                32,
                (6000, 4000),
            )
            assert ctl.stats["timeouts"] >= 2
            status = await ctl.status()
            assert (status.state, status.armed, status.scanning) == ("idle", False, False)
            with pytest.raises(DriverError, match="not armed"):
                await ctl.start_scan(77, 50)
            await ctl.arm()
            assert (await ctl.status()).state == "armed"
            await ctl.start_scan(77, 50)
            await asyncio.wait_for(sim.wait_scans(1), DEADLINE)
            assert (await ctl.status()).scan_id is None
            seen: list[ControlEvent] = []

            async def until_status() -> None:
                async for event in ctl.events():
                    seen.append(event)
                    if event.kind == "STATUS" and event.fields[0] == "armed":
                        return

            await asyncio.wait_for(until_status(), DEADLINE)
            for _ in range(40):  # enough traffic that the 15 % corruption shows
                await ctl.status()
        finally:
            await ctl.close()
    assert ctl.stats["bad_checksum"] + ctl.stats["bad_frame"] > 0
    assert sim.stats["scans"] == 1


async def test_scan_events_on_the_serial_link(tmp_path: Path) -> None:
    async with SimScanner(config(tmp_path, auto=False)) as sim:
        ctl = LspControl(sim.serial_path)
        await ctl.open()
        try:
            await ctl.arm()
            await ctl.start_scan(9, 20)
            kinds: list[tuple[str, list[str]]] = []

            async def until_end() -> None:
                async for event in ctl.events():
                    if event.kind in ("SCAN_START", "SCAN_END"):
                        kinds.append((event.kind, event.fields))
                    if event.kind == "SCAN_END":
                        return

            await asyncio.wait_for(until_end(), DEADLINE)
            assert kinds == [("SCAN_START", ["9"]), ("SCAN_END", ["9", "20", "complete"])]
            await ctl.start_scan(10, 100_000)  # 5 s at 20000 lines/s: stop it half way
            assert (await ctl.status()).scan_id == 10
            await ctl.stop_scan()
            kinds.clear()
            await asyncio.wait_for(until_end(), DEADLINE)
            assert kinds[-1][0] == "SCAN_END" and kinds[-1][1][::2] == ["10", "aborted"]
            sim.inject("interlock")
            with pytest.raises(DriverError, match="refused ARM"):
                await ctl.arm()
            assert (await ctl.status()).state == "interlock"
            await ctl.reset()
            assert (await ctl.status()).state == "idle"
        finally:
            await ctl.close()


async def test_absent_serial_device_names_the_path_and_the_fix(tmp_path: Path) -> None:
    path = str(tmp_path / "no-such.tty")
    ctl = LspControl(path)
    with pytest.raises(DriverError) as err:
        await ctl.open()
    assert path in err.value.message
    assert "dialout" in err.value.fix and "serial" in err.value.fix


async def test_silent_scanner_is_reported(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        ctl = LspControl(os.ttyname(slave), reply_timeout_s=0.05, retries=2)
        await ctl.open()
        try:
            with pytest.raises(DriverError, match="not answering") as err:
                await ctl.identify()
            assert "powered" in err.value.fix
        finally:
            await ctl.close()
    finally:
        os.close(master)
        os.close(slave)


async def test_sim_command_line_serves_until_sigint(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    status_file = tmp_path / "status.json"
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim",
        "sim",
        "--scanners",
        "2",
        "--channels",
        "16",
        "--line-rate",
        "5000",
        "--scan-lines",
        "50",
        "--interval",
        "0.05",
        "--armed",
        "--serial-dir",
        str(tmp_path),
        "--status-file",
        str(status_file),
        cwd=root,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def started() -> dict[str, Any]:
            while not status_file.exists():
                await asyncio.sleep(0.02)
            return dict(json.loads(status_file.read_text()))

        doc = await asyncio.wait_for(started(), DEADLINE)
        assert doc["pid"] == proc.pid
        first, second = doc["scanners"]
        assert first["serial"] == str(tmp_path / "scanner1.tty") and first["channels"] == 16
        ctl = LspControl(first["serial"])
        await ctl.open()
        try:
            assert (await ctl.identify()).channels == 16
        finally:
            await ctl.close()
        link = LspDataLink(second["data_host"], second["data_port"])
        items = await collect(link, last_scan=1)
        assert [p.scan_id for p in items if isinstance(p, Packet)][-1] == 1
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
        assert proc.returncode == 0, err.decode()
        assert not status_file.exists() and not (tmp_path / "scanner1.tty").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_dead_channels_read_zero(tmp_path: Path) -> None:
    faults = FaultConfig(dead_channels=(3, 31))
    async with SimScanner(config(tmp_path, scan_lines=20, faults=faults, instant=True)) as sim:
        link = LspDataLink("127.0.0.1", sim.data_port)
        sim.arm()
        items = await collect(link, last_scan=1)
    lines = [p for p in items if isinstance(p, Packet) and p.type is PacketType.LINE]
    assert len(lines) == 8 + 8 + 20
    for p in lines:
        samples = memoryview(p.payload).cast("H")
        assert [samples[c] for c in (3, 31, 35, 63)] == [0, 0, 0, 0]
        assert samples[4] > 0 and samples[36] > 0
