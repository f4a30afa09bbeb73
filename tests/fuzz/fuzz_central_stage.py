"""Fuzz target: central's ingest core fed by an enrolled edge.

Each input is a little program: every op either seals a new block on the edge's
real key (scan start, data with a chosen channel count and line numbers, scan
end, GAP with a chosen cause and scan id, or one with meta fields of odd
types), or resends an earlier block, skips a sequence number, breaks the chain,
flips bytes of a block, or sends a wire message built from raw bytes. Every
frame goes through ``core.messages.decode`` and ``central._ingest.Ingest``
exactly as central stages it. Only a NiiError may escape; a fresh core and
in-memory CIR per input keep inputs independent.
"""

from __future__ import annotations

import json
from typing import Any

from central._ingest import Ingest, Work
from core.errors import NiiError
from core.messages import BlockMsg, Heartbeat, decode
from core.seal import BlockKind
from tests.fuzz.fuzz_wire_message import frames_from
from tests.unit.central._chain import EDGE, IDENT, SCANNER, MemStore, Rig

_RIG = Rig()  # the keys and sealer, made once
_ODD: list[Any] = [None, True, -1, 0, 2**70, 1.5, "x", [], {}, {"a": [1]}, "\ud800"]

SEEDS = [
    bytes([0, 1, 1, 8, 0, 1, 2, 3, 2, 1, 0]),  # start, data, end
    bytes([0, 1, 3, 2, 1, 0, 4, 3, 0, 0, 5]),  # start, gap, start of scan 5
    bytes([0, 1, 1, 240, 0, 1, 1, 8, 5, 5, 2, 1, 0]),
]


def _fresh() -> tuple[Rig, list[tuple[int, bytes]]]:
    r = _RIG
    r.store = MemStore()
    r.alarms = []
    r.ingest = Ingest(r.store, r.ingest.open_block, r._alarm, preview_hz=1e9)
    r.seq, r.link = 0, 0
    from core.seal import genesis_hash

    r.prev = genesis_hash(SCANNER)
    return r, []


def _stage(r: Rig, frames: list[Any]) -> None:
    try:
        msg, extra = decode(frames)
        work = Work()
        if isinstance(msg, Heartbeat):  # as central stages it (central._aggregator._stage)
            r.ingest.heartbeat(work, IDENT, r.edge, msg)
        else:
            r.ingest.message(work, IDENT, r.edge, msg, extra)
        r.commit(work)
    except NiiError:
        pass


def one_input(data: bytes) -> None:
    """Run one op program against a fresh ingest core; only a NiiError may escape."""
    r, sent = _fresh()
    i = 0
    ops = 0
    while i < len(data) and ops < 12:
        ops += 1
        op = data[i] % 9
        a = data[i + 1] if i + 1 < len(data) else 0
        b = data[i + 2] if i + 2 < len(data) else 0
        i += 3
        block: tuple[int, bytes] | None = None
        if op == 0:
            block = r.start(a % 8, lines=b % 16, channels=(b % 3 + 1) * 4)
        elif op == 1:
            lines = [(a + k * (1 if b % 4 else -1)) % 32 for k in range(b % 5)]
            block = r.data(a % 8, lines, channels=(b % 3 + 1) * 4, flags=(a >> 4) % 4)
        elif op == 2:
            block = r.end(a % 8, status=("complete", "aborted", "incomplete")[b % 3])
        elif op == 3:
            block = r.gap((a % 9) - 1, cause=("lost", "violation", "restart", "?")[b % 4])
        elif op == 4:  # meta fields of odd types
            meta = {"kind": "data", "scan_id": _ODD[a % len(_ODD)], "channels": _ODD[b % len(_ODD)]}
            try:
                block = r.seal(BlockKind(1 + a % 4), meta, [(b, a % 4, 1, 1)], bytes(b % 40))
            except (ValueError, UnicodeError):
                block = None
        elif op == 5 and sent:  # resend an earlier block
            block = sent[a % len(sent)]
        elif op == 6:  # skip a sequence number / break the chain
            if a % 2:
                r.seq += 1 + b % 3
            else:
                r.prev = bytes([b]) * 32
            continue
        elif op == 7 and sent:  # flip a byte of an earlier block
            seq, raw = sent[a % len(sent)]
            buf = bytearray(raw)
            buf[(a * 256 + b) % len(buf)] ^= 1 + b % 255
            block = (seq, bytes(buf))
        else:  # a raw wire message
            _stage(r, frames_from(data[i : i + 40]))
            i += 40
            continue
        if block is None:
            continue
        sent.append(block)
        seq, raw = block
        header = {"scanner": SCANNER if b % 7 else EDGE, "seq": seq}
        _stage(r, [BlockMsg.TYPE, json.dumps(header).encode(), raw])


if __name__ == "__main__":  # a quick run without the runner
    import os
    import random

    for s in SEEDS:
        one_input(s)
    for _ in range(5_000):
        one_input(os.urandom(random.randint(0, 60)))
