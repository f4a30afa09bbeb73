"""Wire messages: every field of every message is checked at the boundary."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import ProtocolError
from core.messages import (
    MAX_DOC_DEPTH,
    MAX_HEADER_BYTES,
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

H = "ab" * 32
VALID: list[Message] = [
    Hello(edge="edge-1", scanner="s1", head_seq=-1, head_hash="", boot="0f"),
    Hello(edge="edge-1", scanner="s1", head_seq=7, head_hash=H, boot="0f"),
    Welcome(scanner="s1", last_seq=-1, last_hash=H, link_next_seq=-1, boot="a1"),
    BlockMsg(scanner="s1", seq=0),
    Ack(scanner="s1", seq=3, boot="a1"),
    Nack(scanner="s1", seq=3, expected=2, reason="gap", fatal=False),
    Heartbeat(sender="edge-1/s1", boot="0f", state={"lines": 3, "link": {"resumes": 0}}),
    Heartbeat(sender="central", boot="a1"),
    Alarm(scanner="s1", kind="data_lost", message="lost 3 packets", details={"n": 3}),
]


def with_field(msg: Message, name: str, value: Any) -> list[bytes]:
    doc = json.loads(msg.frames()[1])
    doc[name] = value
    return [msg.TYPE, json.dumps(doc).encode()]


@pytest.mark.parametrize("msg", VALID, ids=lambda m: type(m).__name__)
def test_valid_messages_round_trip(msg: Message) -> None:
    got, extra = decode(msg.frames(b"raw"))
    assert got == msg and extra == [b"raw"]


@pytest.mark.parametrize(
    ("msg", "name", "value"),
    [
        (VALID[0], "scanner", ["s1"]),  # the HELLO of issue 13
        (VALID[0], "edge", "../etc"),
        (VALID[0], "edge", "x" * 65),
        (VALID[0], "head_seq", -2),
        (VALID[0], "head_seq", True),
        (VALID[0], "head_seq", 1.5),
        (VALID[0], "head_seq", 2**70),
        (VALID[0], "head_hash", "zz"),
        (VALID[0], "boot", "doctor"),
        (VALID[0], "id", -1),
        (VALID[0], "ts_ns", "now"),
        (VALID[2], "last_seq", None),
        (VALID[3], "seq", -1),
        (VALID[4], "seq", "3"),
        (VALID[5], "fatal", 1),
        (VALID[5], "reason", "r" * 5000),
        (VALID[6], "state", "up"),  # the heartbeat of issue 13
        (VALID[6], "state", [1]),
        (VALID[6], "sender", "a/b/c"),
        (VALID[8], "details", "string"),  # the ALARM of issue 13
        (VALID[8], "details", {"x": "\ud800"}),
        (VALID[8], "details", {"x": 2**64}),
        (VALID[8], "kind", ""),
        (VALID[8], "message", {"a": 1}),
    ],
)
def test_a_field_out_of_type_or_range_is_refused(msg: Message, name: str, value: Any) -> None:
    with pytest.raises(ProtocolError, match=name):
        decode(with_field(msg, name, value))


def test_missing_field_is_refused() -> None:
    with pytest.raises(ProtocolError, match="scanner"):
        decode([b"ACK", b'{"seq": 1, "boot": "a"}'])


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"scanner": "s1", "seq": 1, "boot": "a", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"scanner": "s1", "seq": ' + b"9" * 5000 + b', "boot": "a"}',
        b'{"scanner": "s1", "seq": 1e400, "boot": "a"}',
        b'{"scanner": "s1", "seq": NaN, "boot": "a"}',
        b'{"scanner": "s\\ud800", "seq": 1, "boot": "a"}',
        b"\xff\xfe{}",
        b"",
        b"null",
        b" " * (MAX_HEADER_BYTES + 1),
    ],
)
def test_hostile_headers_raise_only_protocol_error(header: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode([b"ACK", header])


def test_documents_are_bounded_in_depth() -> None:
    deep: Any = 1
    for _ in range(MAX_DOC_DEPTH):
        deep = [deep]
    with pytest.raises(ProtocolError, match="deeper"):
        decode(with_field(VALID[8], "details", {"d": deep}))
    ok: Any = 1
    for _ in range(MAX_DOC_DEPTH - 2):
        ok = [ok]
    decode(with_field(VALID[8], "details", {"d": ok}))


@pytest.mark.parametrize(
    "frames",
    [[], [b"ACK"], [b"NOPE", b"{}"], [object(), b"{}"], [b"ACK", 5], "ACK"],
)
def test_frames_that_are_not_a_message(frames: Any) -> None:
    with pytest.raises(ProtocolError):
        decode(frames)
