"""Sealed blocks: round trip, and every kind of tampering is caught."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from core.errors import IntegrityError
from core.seal import (
    HEADER,
    INDEX_ENTRY,
    Block,
    BlockKind,
    Opener,
    Sealer,
    genesis_hash,
    parse,
    verify,
)


@pytest.fixture
def keys() -> tuple[Ed25519PrivateKey, X25519PrivateKey]:
    return Ed25519PrivateKey.generate(), X25519PrivateKey.generate()


def make(
    sign: Ed25519PrivateKey, cir: X25519PrivateKey, seq: int = 0, payload: bytes = b"\x01\x02" * 64
) -> tuple[bytes, bytes]:
    return Sealer(sign, cir.public_key()).seal(
        kind=BlockKind.DATA,
        seq=seq,
        prev_hash=genesis_hash("s1"),
        meta={"edge": "e1", "scanner": "s1", "scan_id": 3},
        index=[(0, 0, 1, 10), (1, 8, 2, 11)],
        payload=payload,
        created_ns=time.time_ns(),
    )


def bare(s: Sealer, seq: int, payload: bytes) -> Block:
    """A block with no metadata and no index: only the cipher side matters."""
    raw, _ = s.seal(
        kind=BlockKind.DATA,
        seq=seq,
        prev_hash=bytes(32),
        meta={},
        index=[],
        payload=payload,
        created_ns=0,
    )
    return parse(raw)


def test_round_trip(keys: tuple[Ed25519PrivateKey, X25519PrivateKey]) -> None:
    sign, cir = keys
    raw, h = make(sign, cir, payload=b"abc" * 100)
    b = parse(raw)
    verify(b, sign.public_key())
    assert b.hash == h and b.seq == 0 and b.kind == BlockKind.DATA
    assert b.meta == {"edge": "e1", "scanner": "s1", "scan_id": 3}
    assert [(e.line_no, e.flags, e.link_seq) for e in b.index] == [(0, 0, 10), (1, 8, 11)]
    assert Opener(cir).open(b) == b"abc" * 100
    assert b"abc" * 10 not in raw  # encrypted at rest


def test_every_block_has_its_own_key_material(
    keys: tuple[Ed25519PrivateKey, X25519PrivateKey],
) -> None:
    sign, cir = keys
    s = Sealer(sign, cir.public_key())
    a = bare(s, 0, b"same")
    b = bare(s, 0, b"same")
    assert a.salt != b.salt and a.nonce != b.nonce and bytes(a.cipher) != bytes(b.cipher)


@pytest.mark.parametrize(
    "where",
    ["header-seq", "header-prev", "meta", "index", "cipher", "signature"],
)
def test_any_flipped_bit_is_caught(
    keys: tuple[Ed25519PrivateKey, X25519PrivateKey], where: str
) -> None:
    sign, cir = keys
    raw = bytearray(make(sign, cir)[0])
    meta_len = int.from_bytes(
        raw[HEADER.size - 28 - 32 - 8 - 8 : HEADER.size - 28 - 32 - 8 - 4], "little"
    )
    offset = {
        "header-seq": 8,
        "header-prev": 30,
        "meta": HEADER.size + 2,
        "index": HEADER.size + meta_len + INDEX_ENTRY.size + 1,
        "cipher": len(raw) - 64 - 5,
        "signature": len(raw) - 3,
    }[where]
    raw[offset] ^= 0x04
    with pytest.raises(IntegrityError):
        b = parse(bytes(raw))
        verify(b, sign.public_key())
        Opener(cir).open(b)


def test_wrong_signer_and_wrong_cir_key(keys: tuple[Ed25519PrivateKey, X25519PrivateKey]) -> None:
    sign, cir = keys
    b = parse(make(sign, cir)[0])
    with pytest.raises(IntegrityError, match="signature"):
        verify(b, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(IntegrityError, match="decrypt"):
        Opener(X25519PrivateKey.generate()).open(b)


@pytest.mark.parametrize("raw", [b"", b"NSB1" + bytes(300), b"XXXX" + bytes(300)])
def test_garbage_is_malformed(raw: bytes) -> None:
    with pytest.raises(IntegrityError):
        parse(raw)


def test_rotation_forgets_old_key(keys: tuple[Ed25519PrivateKey, X25519PrivateKey]) -> None:
    sign, cir = keys
    s = Sealer(sign, cir.public_key())
    first = bare(s, 0, b"x")
    s.rotate()
    second = bare(s, 1, b"y")
    assert first.eph_pub != second.eph_pub
    opener = Opener(cir)
    assert opener.open(first) == b"x" and opener.open(second) == b"y"


def with_meta(raw: bytes, meta_b: bytes) -> bytes:
    """``raw`` with its meta JSON replaced by ``meta_b`` (lengths kept consistent)."""
    fields = list(HEADER.unpack_from(raw, 0))
    meta_len, index_len = fields[10], fields[11]
    rest = raw[HEADER.size + meta_len :]
    fields[10] = len(meta_b)
    assert index_len % INDEX_ENTRY.size == 0
    return HEADER.pack(*fields) + meta_b + rest


@pytest.mark.parametrize(
    "meta_b",
    [
        b"[" * 5000 + b"]" * 5000,  # RecursionError in the JSON parser
        b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}",  # deeper than a block's meta goes
        b"[1, 2]",
        b'"text"',
        b'{"scanner": ["s1"]}',
        b'{"scan_id": "3"}',
        b'{"scan_id": true}',
        b'{"channels": 1.5}',
        b'{"first_seq": 1e400}',
        b'{"reason": NaN}',
        b'{"reason": "\\udc00"}',
        b'{"seq": ' + b"1" * 5000 + b"}",
        b"\xff\xff",
        b"{" + b" " * (70 * 1024) + b"}",
    ],
)
def test_hostile_meta_is_malformed(
    keys: tuple[Ed25519PrivateKey, X25519PrivateKey], meta_b: bytes
) -> None:
    raw = with_meta(make(*keys)[0], meta_b)
    with pytest.raises(IntegrityError) as err:
        parse(raw)
    assert err.value.reason == "malformed"


def test_spliced_valid_meta_still_parses(keys: tuple[Ed25519PrivateKey, X25519PrivateKey]) -> None:
    sign, cir = keys
    raw = with_meta(make(sign, cir)[0], b'{"scanner": "s1", "scan_id": null, "extra": [1]}')
    b = parse(raw)
    assert b.scanner == "s1" and b.meta["scan_id"] is None
    with pytest.raises(IntegrityError, match="signature"):
        verify(b, sign.public_key())
