"""Field faults of the data link, through the real driver and real simulated scanners.

A scanner restarted on the same port (a new session: epoch, and a RESTART gap
for what was lost), packets that pass the CRC but break the protocol (refused
once), the simulator's protocol faults, and ``nii sim inject`` / a restarted
``nii sim`` on the same ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core.net import free_port
from drivers import GapCause, LinkEpoch, LinkGap, Packet, PacketType
from drivers.lsp import LspDataLink
from firmware_sim import SimConfig, SimScanner

pytestmark = pytest.mark.system

DEADLINE = 10.0
ROOT = Path(__file__).resolve().parents[2]

Item = Packet | LinkGap | LinkEpoch


def config(tmp_path: Path, name: str = "emit", **kw: object) -> SimConfig:
    base: dict[str, object] = {
        "channels": 32,
        "line_rate": 20000.0,
        "scan_lines": 200,
        "scans": 1,
        "interval_s": 0.01,
        "emit_log": tmp_path / f"{name}.log",
        "serial_link": tmp_path / "scanner1.tty",
        "status_interval_s": 0.2,
    }
    base.update(kw)
    return SimConfig(**base)  # type: ignore[arg-type]


class Reader:
    """Reads a link in a task; the test waits on what it has read."""

    def __init__(self, link: LspDataLink, next_seq: int = 0, session: str = "") -> None:
        self.link = link
        self.items: list[Item] = []
        self.task = asyncio.create_task(self._run(next_seq, session))

    async def _run(self, next_seq: int, session: str) -> None:
        async with contextlib.aclosing(self.link.packets(next_seq, session)) as items:
            async for item in items:
                self.items.append(item)

    async def until(self, cond: Callable[[list[Item]], bool], what: str) -> None:
        async def poll() -> None:
            while not cond(self.items):
                if self.task.done():
                    self.task.result()
                    raise AssertionError(f"the link ended before {what}")
                await asyncio.sleep(0.005)

        try:
            await asyncio.wait_for(poll(), DEADLINE)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}: {self.items[-3:]}") from None

    async def close(self) -> None:
        await self.link.close()
        await asyncio.wait_for(self.task, DEADLINE)


def ended(scan_id: int, nth: int = 1) -> Callable[[list[Item]], bool]:
    def cond(items: list[Item]) -> bool:
        ends = [
            i
            for i in items
            if isinstance(i, Packet) and i.type is PacketType.SCAN_END and i.scan_id == scan_id
        ]
        return len(ends) >= nth

    return cond


def lines_of(items: list[Item]) -> list[tuple[int, int, int, str]]:
    return [
        (p.scan_id, p.line_no, p.flags, hashlib.sha256(p.payload).hexdigest())
        for p in items
        if isinstance(p, Packet) and p.type is PacketType.LINE
    ]


def emitted(path: Path) -> list[tuple[int, int, int, str]]:
    rows = []
    for text in path.read_text().splitlines():
        scan_id, line_no, flags, digest = text.split()
        rows.append((int(scan_id), int(line_no), int(flags), digest))
    return rows


def seqs(items: list[Item]) -> list[int]:
    return [p.seq for p in items if isinstance(p, Packet)]


# ------------------------------------------------------------------ restarts (kind 1)


async def test_restart_between_scans_is_an_epoch_and_nothing_is_lost(tmp_path: Path) -> None:
    first = SimScanner(config(tmp_path, "first"))
    await first.start()
    port = first.data_port
    reader = Reader(LspDataLink("127.0.0.1", port, backoff_initial_s=0.01, backoff_max_s=0.05))
    try:
        first.arm()
        await reader.until(ended(1), "the first session's scan")
        old_session = reader.link.session
        assert old_session == first.boot_id
        await first.stop()
        async with SimScanner(config(tmp_path, "second", data_port=port)) as second:
            assert second.boot_id != old_session
            second.arm()
            await reader.until(ended(1, nth=2), "the second session's scan")
            assert reader.link.session == second.boot_id
    finally:
        await reader.close()
    items = reader.items
    assert not [i for i in items if isinstance(i, LinkGap)]
    (epoch,) = [i for i in items if isinstance(i, LinkEpoch)]
    at = items.index(epoch)
    assert (epoch.previous, epoch.next_seq, epoch.serial) == (old_session, 0, "SIM0000-scanner1")
    before, after = seqs(items[:at]), seqs(items[at:])
    assert before == list(range(len(before))) and after == list(range(len(after)))
    assert lines_of(items) == emitted(tmp_path / "first.log") + emitted(tmp_path / "second.log")
    assert reader.link.stats.epochs == 1 and reader.link.stats.gaps == 0


async def test_restart_mid_scan_is_a_restart_gap_then_the_new_session(tmp_path: Path) -> None:
    slow = {"line_rate": 500.0, "scan_lines": 5000}  # a 10 s scan, cut after 50 lines
    first = SimScanner(config(tmp_path, "first", **slow))
    await first.start()
    port = first.data_port
    reader = Reader(LspDataLink("127.0.0.1", port, backoff_initial_s=0.01, backoff_max_s=0.05))
    try:
        first.arm()
        await reader.until(lambda items: len(lines_of(items)) >= 50, "50 lines of scan 1")
        await first.stop()
        async with SimScanner(config(tmp_path, "second", data_port=port, scan_lines=100)) as sim:
            sim.arm()
            await reader.until(ended(1), "the new session's scan")
    finally:
        await reader.close()
    items = reader.items
    (gap,) = [i for i in items if isinstance(i, LinkGap)]
    (epoch,) = [i for i in items if isinstance(i, LinkEpoch)]
    at = items.index(gap)
    assert items[at + 1] is epoch
    last_old = seqs(items[:at])[-1]
    assert gap.cause is GapCause.RESTART and gap.scan_id == 1
    assert gap.first_seq == last_old + 1 and gap.last_seq >= gap.first_seq - 1
    assert "scan 1 was in progress" in gap.reason
    # what arrived of the old session is what it emitted, in order, up to the cut
    old_lines = lines_of(items[:at])
    assert old_lines == emitted(tmp_path / "first.log")[: len(old_lines)]
    new = items[at + 2 :]
    assert seqs(new) == list(range(len(seqs(new))))
    assert lines_of(new) == emitted(tmp_path / "second.log")
    assert [p.type for p in new if isinstance(p, Packet)][-1] is PacketType.SCAN_END


# ------------------------------------------------------------- violations (kind 3)


async def test_oversized_record_and_zero_channel_line_are_refused_once(tmp_path: Path) -> None:
    async with SimScanner(config(tmp_path, scans=2, scan_lines=300)) as sim:
        reader = Reader(LspDataLink("127.0.0.1", sim.data_port))
        try:
            sim.inject("oversized_record")
            sim.inject("zero_channels")
            sim.arm()
            await reader.until(ended(2), "scan 2")
        finally:
            await reader.close()
        assert sim.stats["resumes"] <= 2  # the first RESUME of each connection, no loop
    items = reader.items
    gaps = [i for i in items if isinstance(i, LinkGap)]
    assert [(g.cause, g.scan_id) for g in gaps] == [(GapCause.VIOLATION, 1)] * 2
    assert "SCAN_START record of" in gaps[0].reason and "over the 65536 limit" in gaps[0].reason
    assert "LINE with 0 channels" in gaps[1].reason
    # every sequence number accounted for once: packets and the two refused ones
    numbered = sorted(seqs(items) + [g.first_seq for g in gaps])
    assert numbered == list(range(len(numbered)))
    assert gaps[0].first_seq == 0 and gaps[1].first_seq == 1 + 16  # start, then calibration
    log = emitted(tmp_path / "emit.log")
    zero = [row for row in log if row[0] == 1 and row[3] == hashlib.sha256(b"").hexdigest()]
    assert len(zero) == 1
    assert lines_of(items) == [row for row in log if row is not zero[0]]
    scan2 = [p for p in items if isinstance(p, Packet) and p.scan_id == 2]
    assert [p.type for p in scan2[:1] + scan2[-1:]] == [PacketType.SCAN_START, PacketType.SCAN_END]
    assert len(scan2) == 1 + 16 + 300 + 1 and b'"status": "complete"' in scan2[-1].payload
    stats = reader.link.stats
    assert stats.violations == 2 and stats.resumes <= 2 and stats.gaps == 0


async def test_scan_shape_faults_arrive_as_sent(tmp_path: Path) -> None:
    async with SimScanner(config(tmp_path, scan_lines=40)) as sim:
        reader = Reader(LspDataLink("127.0.0.1", sim.data_port))
        try:
            sim.inject("out_of_order")
            sim.inject("channels_change")
            sim.arm()
            await reader.until(ended(1), "scan 1")
        finally:
            await reader.close()
    lines = [p for p in reader.items if isinstance(p, Packet) and p.type is PacketType.LINE]
    image = [p for p in lines if not p.flags & 3]
    assert [p.line_no for p in image][:3] == [1, 0, 2]  # the first two swapped
    assert {p.channels for p in lines} == {16} and all(len(p.payload) == 64 for p in lines)
    assert not [i for i in reader.items if isinstance(i, LinkGap)]


async def test_channels_change_mid_scan_takes_effect_at_the_next_line(tmp_path: Path) -> None:
    async with SimScanner(config(tmp_path, scan_lines=2000, line_rate=2000.0)) as sim:
        reader = Reader(LspDataLink("127.0.0.1", sim.data_port))
        try:
            sim.arm()
            await reader.until(lambda items: len(lines_of(items)) >= 50, "50 lines")
            sim.inject("channels_change")
            sim.inject("zero_channels")
            await reader.until(ended(1), "scan 1")
        finally:
            await reader.close()
    items = reader.items
    widths = [p.channels for p in items if isinstance(p, Packet) and p.type is PacketType.LINE]
    cut = widths.index(16)
    assert cut >= 50 and set(widths[:cut]) == {32} and set(widths[cut:]) == {16}
    (gap,) = [i for i in items if isinstance(i, LinkGap)]
    assert gap.cause is GapCause.VIOLATION and "LINE with 0 channels" in gap.reason
    assert len(widths) + 1 == 16 + 2000  # every line but the refused one


# ----------------------------------------------------- the sim process: inject, restart


def sim_args(tmp_path: Path, port: int, status: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "firmware_sim",
        "sim",
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
        "--data-port-base",
        str(port),
        "--status-file",
        str(status),
    ]


async def start_sim(tmp_path: Path, port: int, status: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        *sim_args(tmp_path, port, status),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )

    async def started() -> None:
        while not status.exists():
            if proc.returncode is not None:
                raise AssertionError("nii sim exited")
            await asyncio.sleep(0.02)

    await asyncio.wait_for(started(), DEADLINE)
    return proc


async def stop_sim(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
        assert proc.returncode == 0, err.decode()


async def nii_sim_inject(status: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "firmware_sim",
        "sim",
        "inject",
        "--status-file",
        str(status),
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), DEADLINE)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_nii_sim_restarted_on_the_same_ports_is_a_new_session(tmp_path: Path) -> None:
    port, status = free_port(), tmp_path / "status.json"
    link_path = tmp_path / "scanner1.tty"
    proc = await start_sim(tmp_path, port, status)
    reader = Reader(LspDataLink("127.0.0.1", port, backoff_initial_s=0.01, backoff_max_s=0.05))
    try:
        await reader.until(ended(1), "scan 1 of the first run")
        await stop_sim(proc)
        proc = await start_sim(tmp_path, port, status)
        await reader.until(lambda items: any(isinstance(i, LinkEpoch) for i in items), "epoch")
        await reader.until(ended(1, nth=2), "scan 1 of the second run")
        assert link_path.is_symlink() and os.path.exists(os.readlink(link_path))
    finally:
        await reader.close()
        await stop_sim(proc)
    epoch = next(i for i in reader.items if isinstance(i, LinkEpoch))
    assert epoch.next_seq == 0 and epoch.session != epoch.previous != ""


async def test_nii_sim_inject_reaches_the_running_scanner(tmp_path: Path) -> None:
    port, status = free_port(), tmp_path / "status.json"
    link_path = tmp_path / "scanner1.tty"
    proc = await start_sim(tmp_path, port, status)
    reader = Reader(LspDataLink("127.0.0.1", port))
    try:
        await reader.until(ended(1), "scan 1")
        rc, out = await nii_sim_inject(status, "--scanner", "scanner1", "oversized_record")
        assert rc == 0, out
        await reader.until(
            lambda items: any(
                isinstance(i, LinkGap) and i.cause is GapCause.VIOLATION for i in items
            ),
            "the oversized record refused",
        )
        rc, out = await nii_sim_inject(status, "unplug", "--value", "0.5")
        assert rc == 0, out

        async def link_is(present: bool) -> None:
            while link_path.is_symlink() != present:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(link_is(False), DEADLINE)
        await asyncio.wait_for(link_is(True), DEADLINE)
        rc, out = await nii_sim_inject(status, "--scanner", "scanner9", "stall")
        assert rc == 2 and "error: the simulator has no scanner 'scanner9'" in out
        assert "fix: Use one of: scanner1" in out
    finally:
        await reader.close()
        await stop_sim(proc)
    rc, out = await nii_sim_inject(status, "stall")
    assert rc == 2 and "error:" in out and "fix:" in out and "Traceback" not in out


def test_inject_status_doc(tmp_path: Path) -> None:
    from firmware_sim.cli import inject_path

    assert inject_path(tmp_path / "status.json") == tmp_path / "status.inject"
