"""Fuzz target: ``core.seal.parse`` (and ``verify`` on what parses).

Inputs are mutations of real sealed blocks made with ``core.seal.Sealer`` (bytes
flipped, cut, spliced; the meta JSON replaced with generated text and the
header's lengths made to agree) and plain random bytes. ``parse`` and
``verify`` must accept or raise ``IntegrityError``; anything else is a crash.
"""

from __future__ import annotations

import contextlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from core.errors import NiiError
from core.seal import HEADER, BlockKind, Sealer, genesis_hash, parse, verify

_SIGN = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_CIR = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
_PUB = _SIGN.public_key()


def _seeds() -> list[bytes]:
    s = Sealer(_SIGN, _CIR.public_key())
    out = []
    for kind, meta, index in (
        (
            BlockKind.DATA,
            {"edge": "e1", "scanner": "s1", "kind": "data", "scan_id": 3, "channels": 4},
            [(0, 0, 1, 10), (1, 8, 2, 11)],
        ),
        (BlockKind.SCAN_START, {"edge": "e1", "scanner": "s1", "scan_id": 4}, [(0, 0, 1, 12)]),
        (
            BlockKind.GAP,
            {"edge": "e1", "scanner": "s1", "kind": "gap", "first_seq": 1, "last_seq": 9},
            [],
        ),
    ):
        raw, _ = s.seal(
            kind=kind,
            seq=5,
            prev_hash=genesis_hash("s1"),
            meta=meta,
            index=index,
            payload=b"\x01\x02" * 16,
            created_ns=1,
        )
        out.append(raw)
    return out


_SEEDS = _seeds()


def _with_meta(raw: bytes, meta_b: bytes) -> bytes:
    f = list(HEADER.unpack_from(raw, 0))
    rest = raw[HEADER.size + f[10] :]
    f[10] = len(meta_b)
    return HEADER.pack(*f) + meta_b + rest


def block_from(data: bytes) -> bytes:
    """Build candidate sealed-block bytes from fuzzer bytes."""
    if len(data) < 2:
        return data
    mode, pick, rest = data[0] % 5, data[1], data[2:]
    seed = _SEEDS[pick % len(_SEEDS)]
    if mode == 0:
        return rest
    if mode == 1:  # flip bytes at chosen places
        b = bytearray(seed)
        for i in range(0, len(rest) - 2, 3):
            b[int.from_bytes(rest[i : i + 2], "little") % len(b)] ^= rest[i + 2] or 1
        return bytes(b)
    if mode == 2:  # cut or extend
        n = int.from_bytes(rest[:2] or b"\0", "little") % (len(seed) + 64)
        return (seed + rest)[:n]
    if mode == 3:  # replace the meta JSON, lengths consistent
        return _with_meta(seed, rest)
    return seed[: HEADER.size] + rest  # a valid header over random body


#: starting points: each real block whole (mode 0 carries it raw), and with a few flips
SEEDS: list[bytes] = [bytes([0, 0]) + raw for raw in _SEEDS] + [
    bytes([1, k, 0, 1, 4]) for k in range(3)
]


def one_input(data: bytes) -> None:
    """Parse (and verify) one candidate; only a NiiError may escape as a refusal."""
    with contextlib.suppress(NiiError):
        b = parse(block_from(data))
        _ = (b.scanner, b.edge, b.hash)
        verify(b, _PUB)


if __name__ == "__main__":  # a quick run without the runner
    import os
    import random

    for _ in range(50_000):
        one_input(os.urandom(random.randint(0, 600)))
