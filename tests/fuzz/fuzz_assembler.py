"""Fuzz target: the edge's scan assembler (edge._assembler) on any stream of link items.

The input is read as a program: each opcode byte and its operands make one item
from the data link (LINE, SCAN_START with arbitrary record bytes, SCAN_END, a
LinkGap, a LinkEpoch) or a clock step, fed in order to a
:class:`~edge._assembler.ScanAssembler` with a fake clock. Invariants: every
block names its session, every GAP its cause and scan, a DATA block's index
and payload agree with its meta, and nothing but the project's errors escapes.
"""

from __future__ import annotations

from core.seal import BlockKind
from drivers import GapCause, LinkEpoch, LinkGap, Packet, PacketType
from edge._assembler import BlockOut, ScanAssembler

NOW_S = 1_800_000_000.0
_TS = (int(NOW_S * 1e9), 0, int(NOW_S * 1e3), -1, 2**63 - 1)
_CAUSES = list(GapCause)

SEEDS: list[bytes] = [
    bytes([1, 0, 14]) + b'{"channels": 4}' + bytes([0, 0, 0, 4, 0, 0] * 3) + bytes([2, 0]),
    bytes([1, 1, 40]) + b"[" * 40 + bytes([0, 1, 0, 4, 0, 0, 0, 1, 0, 3, 0, 0]),
    bytes([0, 0, 5, 4, 0, 1, 3, 10, 20, 1, 2, 4, 7, 0, 5, 200]),
    bytes([0, 1, 2, 255]) + b"x" * 255 + bytes([0, 2, 1, 4, 0, 0]),
]


def one_input(data: bytes) -> None:
    """Run the program in ``data`` through one assembler.

    Raises:
        AssertionError: an output broke an invariant above.
    """
    t = [0.0]
    asm = ScanAssembler(
        block_lines=1 + (data[0] % 8 if data else 0),
        block_ms=20.0,
        att_role="entry",
        clock=lambda: t[0],
        wall_clock=lambda: NOW_S,
    )
    seq = 0
    pos = 1

    def byte() -> int:
        nonlocal pos
        b = data[pos] if pos < len(data) else 0
        pos += 1
        return b

    outs = []
    ops = 0
    while pos < len(data) and ops < 24:  # short programs: more of them per second
        ops += 1
        op = byte() % 8
        if op == 0:
            scan, line_no, ch, flags = byte() % 4, byte(), byte() % 8, byte() % 16
            size = 4 * ch if byte() % 4 else byte()
            ts = _TS[byte() % len(_TS)]
            p = Packet(PacketType.LINE, seq, ts, scan, line_no, ch, flags, bytes(size))
            outs += asm.feed(p)
            seq += 1
        elif op in (1, 2):
            scan, n = byte() % 4, byte()
            record = data[pos : pos + n]
            pos += n
            if n == 255:  # a record nested deeper than Python's stack
                record = b"[" * 100_000
            kind = PacketType.SCAN_START if op == 1 else PacketType.SCAN_END
            outs += asm.feed(Packet(kind, seq, _TS[0], scan, 0, 0, 0, record))
            seq += 1
        elif op == 3:
            n, cause, scan = byte() % 16, byte(), byte() % 5 - 1
            outs += asm.feed(LinkGap(seq, seq + n - 1, "gap", _CAUSES[cause % 3], scan))
            seq += n
        elif op == 4:
            seq = byte() % 3
            outs += asm.feed(LinkEpoch(f"s{byte()}", asm.session, seq, "SN", "restart"))
        elif op == 5:
            t[0] += byte() / 1000.0
            outs += asm.tick()
        elif op == 6:
            outs += asm.flush()
        else:
            asm.reset(f"r{byte()}")
    for o in outs:
        if not isinstance(o, BlockOut):
            continue
        m = o.meta
        assert m["link_session"] == o.link_session, m
        if o.kind == BlockKind.GAP:
            assert m["cause"] in {"lost", "violation", "restart"} and "scan_id" in m, m
        elif o.kind == BlockKind.DATA:
            assert m["n_lines"] == len(o.index) > 0, m
            assert len(o.payload) == 4 * m["channels"] * m["n_lines"], m
