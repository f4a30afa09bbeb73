"""Control messages between edge and central: small typed dataclasses on the wire.

Each ZeroMQ message is ``[type, json-header, *raw]``: a type tag, a JSON header
(the dataclass fields, plus ``id`` and ``ts_ns``), and for BLOCK the sealed
block bytes as its own frame, sent without copying.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from core.errors import ProtocolError

_ids = itertools.count(1)


def _now() -> int:
    return time.time_ns()


@dataclass(kw_only=True)
class Message:
    """Base: every message has a type tag, an id and a timestamp."""

    TYPE: ClassVar[bytes] = b""
    id: int = field(default_factory=lambda: next(_ids))
    ts_ns: int = field(default_factory=_now)

    def frames(self, *raw: Any) -> list[Any]:
        return [self.TYPE, json.dumps(asdict(self), separators=(",", ":")).encode(), *raw]


@dataclass(kw_only=True)
class Hello(Message):
    """Edge → central on (re)connect: who I am and where my chain stands."""

    TYPE: ClassVar[bytes] = b"HELLO"
    edge: str
    scanner: str
    head_seq: int  # last sealed seq, -1 if none
    head_hash: str  # hex
    boot: str  # random per edge process start


@dataclass(kw_only=True)
class Welcome(Message):
    """Central → edge: what the CIR has durably committed for this scanner."""

    TYPE: ClassVar[bytes] = b"WELCOME"
    scanner: str
    last_seq: int  # -1 if nothing yet
    last_hash: str  # hex, genesis hash if nothing yet
    link_next_seq: int  # data-link seq after the last committed block, -1 if unknown
    boot: str  # random per central process start


@dataclass(kw_only=True)
class BlockMsg(Message):
    """Edge → central: one sealed block (raw bytes in the next frame)."""

    TYPE: ClassVar[bytes] = b"BLOCK"
    scanner: str
    seq: int


@dataclass(kw_only=True)
class Ack(Message):
    """Central → edge: every block up to ``seq`` is durably in the CIR."""

    TYPE: ClassVar[bytes] = b"ACK"
    scanner: str
    seq: int
    boot: str


@dataclass(kw_only=True)
class Nack(Message):
    """Central → edge: block ``seq`` was refused; ``expected`` is the next seq wanted."""

    TYPE: ClassVar[bytes] = b"NACK"
    scanner: str
    seq: int
    expected: int
    reason: str
    fatal: bool = False  # true for integrity failures: resending will not help


@dataclass(kw_only=True)
class Heartbeat(Message):
    """Both ways, every second or so; carries the sender's boot id and a state summary."""

    TYPE: ClassVar[bytes] = b"HB"
    sender: str
    boot: str
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Alarm(Message):
    """Edge → central: something a person must know (spool full, data lost, fault)."""

    TYPE: ClassVar[bytes] = b"ALARM"
    scanner: str
    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


_TYPES: dict[bytes, type[Message]] = {
    c.TYPE: c for c in (Hello, Welcome, BlockMsg, Ack, Nack, Heartbeat, Alarm)
}


def decode(frames: list[Any]) -> tuple[Message, list[Any]]:
    """Parse ``[type, header, *raw]``; raises :class:`ProtocolError` on anything odd."""
    if len(frames) < 2:
        raise ProtocolError("message has fewer than two frames")
    tag = bytes(frames[0])
    cls = _TYPES.get(tag)
    if cls is None:
        raise ProtocolError(f"unknown message type {tag[:16]!r}")
    try:
        doc = json.loads(bytes(frames[1]))
        if not isinstance(doc, dict):
            raise ValueError("header is not an object")
        names = {f.name for f in fields(cls)}
        msg = cls(**{k: v for k, v in doc.items() if k in names})
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"bad {tag.decode(errors='replace')} header: {exc}") from exc
    return msg, list(frames[2:])
