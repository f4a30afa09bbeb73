"""The simulator's session: a new boot id and a counter from 0 on every start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from drivers import Packet, PacketType
from drivers.lsp._io import PacketDecoder, parse_session
from firmware_sim import SimScanner

DEADLINE = 10.0


async def first_packet(port: int) -> Packet:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        dec = PacketDecoder()
        while True:
            data = await asyncio.wait_for(reader.read(65536), DEADLINE)
            assert data, "the simulator closed the connection"
            items = dec.feed(data)
            if items:
                item = items[0]
                assert isinstance(item, Packet)
                return item
    finally:
        writer.close()
        await writer.wait_closed()


async def test_every_start_is_a_new_session_counting_from_zero(tmp_path: Path) -> None:
    sim = SimScanner(channels=8, auto=False, instant=True, serial_link=tmp_path / "s.tty")
    await sim.start()
    try:
        sim.start_scan(lines=5)
        await asyncio.wait_for(sim.wait_scans(1), DEADLINE)
        first = parse_session((await first_packet(sim.data_port)).payload)
        assert (first.session, first.head_seq, first.oldest_seq) == (sim.boot_id, 1 + 16 + 5 + 1, 0)
        assert first.serial == "SIM0000-scanner1"
        port = sim.data_port
    finally:
        await sim.stop()
    sim.config.data_port = port  # the same port again
    await sim.start()
    try:
        pkt = await first_packet(sim.data_port)
        assert pkt.type is PacketType.SESSION and pkt.seq == 0
        again = parse_session(pkt.payload)
        assert again.session == sim.boot_id != first.session
        assert (again.head_seq, again.oldest_seq) == (0, 0)
        assert (tmp_path / "s.tty").is_symlink()
    finally:
        await sim.stop()
