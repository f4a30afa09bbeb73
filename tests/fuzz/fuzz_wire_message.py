"""Fuzz target: ``core.messages.decode`` on frame lists built from the input.

The first input byte chooses how the frames are made: a known type tag with a
mutation of a valid header of that type, a known tag with raw bytes as header,
a random tag, deep nesting, or huge numbers. ``decode`` must accept the frames
or raise ``ProtocolError``; anything else escapes as a crash.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from core.errors import NiiError
from core.messages import (
    TAGS,
    Ack,
    Alarm,
    BlockMsg,
    Heartbeat,
    Hello,
    Message,
    Nack,
    Welcome,
    decode,
)

_H = "ab" * 32
_VALID: list[Message] = [
    Hello(id=1, ts_ns=1, edge="edge-1", scanner="s1", head_seq=-1, head_hash=_H, boot="0f"),
    Welcome(id=1, ts_ns=1, scanner="s1", last_seq=4, last_hash=_H, link_next_seq=9, boot="a1"),
    BlockMsg(id=1, ts_ns=1, scanner="s1", seq=0),
    Ack(id=1, ts_ns=1, scanner="s1", seq=3, boot="a1"),
    Nack(id=1, ts_ns=1, scanner="s1", seq=3, expected=2, reason="gap", fatal=True),
    Heartbeat(id=1, ts_ns=1, sender="edge-1/s1", boot="0f", state={"lines": 3, "l": {"r": 0}}),
    Alarm(id=1, ts_ns=1, scanner="s1", kind="data_lost", message="m", details={"n": [1, 2]}),
]
_HEADERS = [json.loads(m.frames()[1]) for m in _VALID]
_ODD: list[Any] = [
    None,
    True,
    False,
    -1,
    -2,
    0,
    2**63,
    2**70,
    -(2**64),
    1e400,
    -0.0,
    "",
    "s1",
    "x" * 70,
    "\ud800",
    [],
    {},
    [1],
    {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
]


def _mutate(header: dict[str, Any], data: bytes) -> bytes:
    doc = dict(header)
    names = list(doc)
    for i in range(0, len(data) - 1, 2):
        op, arg = data[i], data[i + 1]
        name = names[arg % len(names)]
        if op % 4 == 0:
            doc.pop(name, None)
        elif op % 4 == 1:
            doc[name] = _ODD[arg % len(_ODD)]
        elif op % 4 == 2:
            doc[name] = data[i + 2 :].decode("utf-8", "surrogateescape")[:64]
        else:
            doc["x" + str(arg)] = _ODD[op % len(_ODD)]
    try:
        return json.dumps(doc).encode()
    except (UnicodeError, ValueError):
        return json.dumps(header).encode() + data


def frames_from(data: bytes) -> list[Any]:
    """Build a frame list (type, header, raw...) from fuzzer bytes."""
    if not data:
        return []
    mode, rest = data[0], data[1:]
    k = (rest[0] if rest else 0) % len(_VALID)
    tag = _VALID[k].TYPE
    if mode % 6 == 0:
        return [tag, _mutate(_HEADERS[k], rest[1:]), rest[:8]]
    if mode % 6 == 1:
        return [tag, rest[1:]]
    if mode % 6 == 2:
        return [rest[:6], rest[6:]]
    if mode % 6 == 3:
        depth = 1 + int.from_bytes(rest[:2] or b"\0", "little") * 2
        return [tag, b'{"state": ' + b"[" * depth + b"]" * depth + b"}"]
    if mode % 6 == 4:
        digits = rest[1:].hex().encode() or b"9"
        return [
            tag,
            _mutate(_HEADERS[k], b"")[:-1]
            + b', "seq": '
            + digits.replace(b"a", b"9")[:6000]
            + b"}",
        ]
    return [TAGS[k % len(TAGS)], *[rest[i : i + 7] for i in range(0, len(rest), 7)]]


#: near-valid starting points: each valid header as it is (mode 1 carries it raw)
SEEDS: list[bytes] = [bytes([1, k]) + h for k, h in enumerate(m.frames()[1] for m in _VALID)]


def one_input(data: bytes) -> None:
    """Decode one generated frame list; only a NiiError may escape as a refusal."""
    with contextlib.suppress(NiiError):
        decode(frames_from(data))


if __name__ == "__main__":  # a quick run without the runner
    import os
    import random

    for _ in range(50_000):
        one_input(os.urandom(random.randint(0, 300)))
