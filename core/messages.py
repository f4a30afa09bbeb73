"""Control messages between edge and central: small typed dataclasses on the wire.

Each ZeroMQ message is ``[type, json-header, *raw]``: a type tag, a JSON header
(the dataclass fields, plus ``id`` and ``ts_ns``), and for BLOCK the sealed
block bytes as its own frame, sent without copying.

An authenticated peer is still untrusted input: :func:`decode` checks every
field of every message against its type and range (``FIELD_RULES``) and
refuses anything else with one :class:`~core.errors.ProtocolError`, never
another exception. The bounds (``MAX_HEADER_BYTES``, ``MAX_TEXT``,
``MAX_DOC_DEPTH``, ``MAX_DOC_ITEMS``) are far above what a well-behaved edge
sends (a heartbeat with its uptime log replay is a few kB).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from core.errors import ProtocolError

_ids = itertools.count(1)

#: largest JSON header frame accepted, bytes (parsing cost and memory stay bounded)
MAX_HEADER_BYTES = 1 << 20
#: longest free-text field (alarm message, NACK reason), characters
MAX_TEXT = 4096
#: deepest nesting of a free-form document (heartbeat state, alarm details)
MAX_DOC_DEPTH = 8
#: most values (dict entries and list items, all levels) in one free-form document
MAX_DOC_ITEMS = 20_000
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

#: an edge or scanner id, as core.keys.check_id allows (1-64 of letters, digits, ``_.-``)
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: a heartbeat sender: ``central`` or ``<edge>/<scanner>``
SENDER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?")
#: a boot id: random hex chosen per process start
BOOT_RE = re.compile(r"[0-9a-f]{1,64}")
#: a chain hash in hex (SHA-256), or empty where none is known yet
HASH_RE = re.compile(r"([0-9a-f]{64})?")


def _now() -> int:
    return time.time_ns()


# -- field rules ---------------------------------------------------------------------------
Rule = Callable[[str, Any], Any]


def _int(lo: int = INT64_MIN, hi: int = INT64_MAX) -> Rule:
    def check(name: str, v: Any) -> int:
        if type(v) is not int:  # bool is an int subclass: refused too
            raise ProtocolError(f"{name} must be an integer, not {type(v).__name__}")
        if not lo <= v <= hi:
            raise ProtocolError(f"{name} = {v} is outside {lo}..{hi}")
        return v

    return check


def _bool(name: str, v: Any) -> bool:
    if type(v) is not bool:
        raise ProtocolError(f"{name} must be true or false, not {type(v).__name__}")
    return v


def _text(max_len: int = MAX_TEXT) -> Rule:
    def check(name: str, v: Any) -> str:
        if type(v) is not str:
            raise ProtocolError(f"{name} must be a string, not {type(v).__name__}")
        if len(v) > max_len:
            raise ProtocolError(f"{name} is longer than {max_len} characters")
        _utf8(name, v)
        return v

    return check


def _pattern(rx: re.Pattern[str], what: str, *, empty: bool = False) -> Rule:
    def check(name: str, v: Any) -> str:
        if type(v) is not str:
            raise ProtocolError(f"{name} must be a string, not {type(v).__name__}")
        if (v == "" and empty) or rx.fullmatch(v):
            return v
        raise ProtocolError(f"{name} {v[:80]!r} is not {what}")

    return check


def _utf8(name: str, s: str) -> None:
    try:
        s.encode()
    except UnicodeError as exc:  # lone surrogates from a JSON \ud800 escape
        raise ProtocolError(f"{name} is not valid Unicode text") from exc


def check_doc(name: str, v: Any) -> dict[str, Any]:
    """Check a free-form JSON object from outside.

    Args:
        name: What the object is, for the error message.
        v: The parsed JSON value.

    Returns:
        ``v`` itself, when it is a dict nested at most ``MAX_DOC_DEPTH`` deep, with at
        most ``MAX_DOC_ITEMS`` values, strings of at most ``MAX_TEXT`` characters that
        encode as UTF-8, integers within 64 bits and finite floats.

    Raises:
        ProtocolError: Any of these does not hold.
    """
    if type(v) is not dict:
        raise ProtocolError(f"{name} must be an object, not {type(v).__name__}")
    count = 0
    stack: list[tuple[Any, int]] = [(v, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DOC_DEPTH:
                raise ProtocolError(f"{name} is nested deeper than {MAX_DOC_DEPTH}")
            count += len(node)
            if count > MAX_DOC_ITEMS:
                raise ProtocolError(f"{name} has more than {MAX_DOC_ITEMS} values")
            if isinstance(node, dict):
                for k, x in node.items():
                    _check_leaf(name, k)
                    stack.append((x, depth + 1))
            else:
                stack.extend((x, depth + 1) for x in node)
        else:
            _check_leaf(name, node)
    return v


def _check_leaf(name: str, x: Any) -> None:
    if isinstance(x, str):
        if len(x) > MAX_TEXT:
            raise ProtocolError(f"{name} holds a string longer than {MAX_TEXT} characters")
        _utf8(name, x)
    elif type(x) is int:
        if not INT64_MIN <= x <= INT64_MAX:
            raise ProtocolError(f"{name} holds an integer outside 64 bits")
    elif type(x) is float and not math.isfinite(x):
        raise ProtocolError(f"{name} holds a number that is not finite")


_ID = _pattern(ID_RE, "an id (1-64 letters, digits, '_', '.', '-')")
_ID_OR_EMPTY = _pattern(ID_RE, "an id (1-64 letters, digits, '_', '.', '-')", empty=True)
_BOOT = _pattern(BOOT_RE, "a boot id (1-64 lowercase hex digits)")
_HASH = _pattern(HASH_RE, "a SHA-256 hash in lowercase hex", empty=True)
_SEQ = _int(-1)  # a sequence number; -1 means none / unknown
_NONNEG = _int(0)


# -- messages ------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Message:
    """Base: every message has a type tag, an id and a timestamp.

    Attributes:
        id: Sender-chosen message number, >= 0.
        ts_ns: Sender's wall clock when the message was made, ns since the epoch, >= 0.
    """

    TYPE: ClassVar[bytes] = b""
    FIELD_RULES: ClassVar[dict[str, Rule]] = {"id": _NONNEG, "ts_ns": _NONNEG}
    id: int = field(default_factory=lambda: next(_ids))
    ts_ns: int = field(default_factory=_now)

    def frames(self, *raw: Any) -> list[Any]:
        """Return ``[TYPE, json-header, *raw]``, ready for ``send_multipart``."""
        return [self.TYPE, json.dumps(asdict(self), separators=(",", ":")).encode(), *raw]


@dataclass(kw_only=True)
class Hello(Message):
    """Edge → central on (re)connect: who I am and where my chain stands."""

    TYPE: ClassVar[bytes] = b"HELLO"
    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        **Message.FIELD_RULES,
        "edge": _ID,
        "scanner": _ID,
        "head_seq": _SEQ,
        "head_hash": _HASH,
        "boot": _BOOT,
    }
    edge: str
    scanner: str
    head_seq: int  # last sealed seq, -1 if none
    head_hash: str  # hex
    boot: str  # random per edge process start


@dataclass(kw_only=True)
class Welcome(Message):
    """Central → edge: what the CIR has durably committed for this scanner."""

    TYPE: ClassVar[bytes] = b"WELCOME"
    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        **Message.FIELD_RULES,
        "scanner": _ID,
        "last_seq": _SEQ,
        "last_hash": _HASH,
        "link_next_seq": _SEQ,
        "boot": _BOOT,
    }
    scanner: str
    last_seq: int  # -1 if nothing yet
    last_hash: str  # hex, genesis hash if nothing yet
    link_next_seq: int  # data-link seq after the last committed block, -1 if unknown
    boot: str  # random per central process start


@dataclass(kw_only=True)
class BlockMsg(Message):
    """Edge → central: one sealed block (raw bytes in the next frame)."""

    TYPE: ClassVar[bytes] = b"BLOCK"
    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        **Message.FIELD_RULES,
        "scanner": _ID,
        "seq": _NONNEG,
    }
    scanner: str
    seq: int


@dataclass(kw_only=True)
class Ack(Message):
    """Central → edge: every block up to ``seq`` is durably in the CIR."""

    TYPE: ClassVar[bytes] = b"ACK"
    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        **Message.FIELD_RULES,
        "scanner": _ID,
        "seq": _SEQ,
        "boot": _BOOT,
    }
    scanner: str
    seq: int
    boot: str


@dataclass(kw_only=True)
class Nack(Message):
    """Central → edge: block ``seq`` was refused; ``expected`` is the next seq wanted."""

    TYPE: ClassVar[bytes] = b"NACK"
    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        **Message.FIELD_RULES,
        "scanner": _ID_OR_EMPTY,
        "seq": _SEQ,
        "expected": _SEQ,
        "reason": _text(),
        "fatal": _bool,
        "elsewhere": _bool,
    }
    scanner: str
    seq: int
    expected: int
    reason: str
    fatal: bool = False  # true for integrity failures: resending will not help
    #: this aggregator does not hold the scanner's stream lease: say hello again, to the
    #: next aggregator endpoint if this one keeps answering so (central._leases)
    elsewhere: bool = False


@dataclass(kw_only=True)
class Heartbeat(Message):
    """Both ways, every second or so; carries the sender's boot id and a state summary."""

    TYPE: ClassVar[bytes] = b"HB"
    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        **Message.FIELD_RULES,
        "sender": _pattern(SENDER_RE, "'central' or '<edge>/<scanner>'"),
        "boot": _BOOT,
        "state": check_doc,
    }
    sender: str
    boot: str
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Alarm(Message):
    """Edge → central: something a person must know (spool full, data lost, fault)."""

    TYPE: ClassVar[bytes] = b"ALARM"
    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        **Message.FIELD_RULES,
        "scanner": _ID_OR_EMPTY,
        "kind": _ID,
        "message": _text(),
        "details": check_doc,
    }
    scanner: str
    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


_TYPES: dict[bytes, type[Message]] = {
    c.TYPE: c for c in (Hello, Welcome, BlockMsg, Ack, Nack, Heartbeat, Alarm)
}
#: every message type tag this protocol knows
TAGS: tuple[bytes, ...] = tuple(_TYPES)


def _frame_bytes(frame: Any, what: str) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, bytearray | memoryview):
        return bytes(frame)
    b = getattr(frame, "bytes", None)  # a zmq.Frame
    if isinstance(b, bytes):
        return b
    raise ProtocolError(f"{what} frame is not bytes but {type(frame).__name__}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def decode(frames: list[Any]) -> tuple[Message, list[Any]]:
    """Parse and validate one message.

    Args:
        frames: ``[type, json-header, *raw]`` as received (bytes or ``zmq.Frame``),
            without the ROUTER identity frame.

    Returns:
        ``(message, raw_frames)``: a message whose every field has passed its rule in
        ``FIELD_RULES``, and the frames after the header, untouched.

    Raises:
        ProtocolError: Fewer than two frames, an unknown type tag, a header over
            ``MAX_HEADER_BYTES``, a header that is not a JSON object, a missing
            field, or any field of the wrong type or out of its range. Never any
            other exception.
    """
    if not isinstance(frames, list | tuple) or len(frames) < 2:
        raise ProtocolError("message has fewer than two frames")
    tag = _frame_bytes(frames[0], "type")
    cls = _TYPES.get(tag)
    if cls is None:
        raise ProtocolError(f"unknown message type {tag[:16]!r}")
    name = tag.decode()
    header = _frame_bytes(frames[1], f"{name} header")
    if len(header) > MAX_HEADER_BYTES:
        raise ProtocolError(f"{name} header of {len(header)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        doc = json.loads(header, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ProtocolError(f"bad {name} header: nested too deep") from exc
    except (ValueError, TypeError, OverflowError) as exc:  # UnicodeError is a ValueError
        raise ProtocolError(f"bad {name} header: {str(exc)[:200]}") from exc
    if type(doc) is not dict:
        raise ProtocolError(f"bad {name} header: not a JSON object")
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in doc:
            continue  # a missing field with a default takes it; one without is refused below
        try:
            values[f.name] = cls.FIELD_RULES[f.name](f.name, doc[f.name])
        except ProtocolError as exc:
            raise ProtocolError(f"bad {name} header: {exc.message}") from None
    try:
        msg = cls(**values)
    except TypeError as exc:
        raise ProtocolError(f"bad {name} header: {exc}") from None
    return msg, list(frames[2:])
