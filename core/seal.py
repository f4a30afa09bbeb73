"""Sealed blocks: the unit the edge seals, spools and sends, and the CIR keeps for years.

A sealed block is stored exactly as the edge made it, so its signature stays
verifiable and its image stays encrypted at rest (R1). Layout, little-endian::

    header   (HEADER, 192 bytes, fixed)
    meta     (UTF-8 JSON: edge, scanner, scan id, kind, lines ...; signed, in clear)
    index    (n x INDEX_ENTRY: line_no, flags, emission ts, link seq; signed, in clear)
    cipher   (AES-256-GCM of the plaintext payload, tag appended)
    sig      (64 bytes Ed25519 over header + meta + index)

The header carries ``sha256(cipher)``, so the signature covers the cipher text
without hashing it twice. ``block_hash = sha256(header + meta + index + sig)``
and every header carries the hash of the previous block of the same scanner:
a hash chain per scanner, so no block can be dropped, replaced or reordered
without the CIR noticing.

Encryption is to the CIR's X25519 public key: the edge holds an ephemeral X25519
key (rotated per scan and every ``ROTATE_BLOCKS`` blocks, never written to
disk), and each block gets its own AES key from HKDF over the shared secret with
a fresh random salt, plus a random nonce. The edge keeps no key that can
decrypt what it has spooled once the ephemeral key has rotated.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.errors import IntegrityError, ProtocolError
from core.messages import check_doc

MAGIC = b"NSB1"
VERSION = 1
HKDF_INFO = b"nii-sealed-block-v1"
ROTATE_BLOCKS = 4096

#: magic, version, kind, reserved, seq, created_ns, prev_hash, eph_pub, salt, nonce,
#: meta_len, index_len, cipher_len, cipher_sha256, reserved
HEADER = struct.Struct("<4sBBHQQ32s32s16s12sIIQ32s28s")
assert HEADER.size == 192
#: line_no, flags, emission ts_ns, data-link seq
INDEX_ENTRY = struct.Struct("<IIQQ")
SIG_LEN = 64


class BlockKind(enum.IntEnum):
    """What a sealed block carries."""

    DATA = 1  # detector lines (calibration and image) of one scan
    SCAN_START = 2  # the scanner's scan-start record (JSON)
    SCAN_END = 3  # the scanner's scan-end record (JSON)
    GAP = 4  # data the edge could not get: which, and why (an alarm in the chain)


def genesis_hash(scanner: str) -> bytes:
    """The ``prev_hash`` of the first block of a scanner's chain."""
    return hashlib.sha256(b"nii-genesis:" + scanner.encode()).digest()


class IndexEntry(NamedTuple):
    """One line of a block's index (``INDEX_ENTRY``), signed and in clear.

    A named tuple, not a dataclass: a block of 64 lines makes 64 of them on every
    parse, and a frozen dataclass costs several times more to build.
    """

    line_no: int
    flags: int
    ts_ns: int
    link_seq: int


@dataclass(slots=True)
class Block:
    """A parsed sealed block. ``raw`` is the exact sealed bytes."""

    kind: BlockKind
    seq: int
    created_ns: int
    prev_hash: bytes
    eph_pub: bytes
    salt: bytes
    nonce: bytes
    meta: dict[str, Any]
    index: list[IndexEntry]
    cipher: memoryview
    signature: bytes
    signed: memoryview
    cipher_sha256: bytes
    meta_raw: bytes
    index_raw: bytes
    raw: bytes | memoryview

    @property
    def hash(self) -> bytes:
        h = hashlib.sha256(self.signed)
        h.update(self.signature)
        return h.digest()

    @property
    def scanner(self) -> str:
        return str(self.meta.get("scanner", ""))

    @property
    def edge(self) -> str:
        return str(self.meta.get("edge", ""))


def _aad(meta: bytes, index: bytes, seq: int) -> bytes:
    return struct.pack("<Q", seq) + meta + index


class Sealer:
    """Seals blocks for one scanner stream. Not thread-safe; one per scanner."""

    def __init__(self, sign_key: Ed25519PrivateKey, cir_public: X25519PublicKey) -> None:
        self._sign = sign_key
        self._cir_pub = cir_public
        self._cir_pub_raw = cir_public.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._eph_pub = b""
        self._shared = b""
        self._uses = 0
        self.rotate()

    def rotate(self) -> None:
        """Start a new ephemeral key; the old private key is forgotten."""
        eph = X25519PrivateKey.generate()
        self._eph_pub = eph.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._shared = eph.exchange(self._cir_pub)
        self._uses = 0

    def seal(
        self,
        *,
        kind: BlockKind,
        seq: int,
        prev_hash: bytes,
        meta: dict[str, Any],
        index: list[tuple[int, int, int, int]] | None,
        payload: bytes | bytearray | memoryview,
        created_ns: int,
    ) -> tuple[bytes, bytes]:
        """Return ``(sealed_bytes, block_hash)``."""
        if self._uses >= ROTATE_BLOCKS:
            self.rotate()
        self._uses += 1
        meta_b = json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()
        index_b = b"".join(INDEX_ENTRY.pack(*e) for e in index or ())
        salt = os.urandom(16)
        nonce = os.urandom(12)
        key = _derive(self._shared, salt, self._eph_pub, self._cir_pub_raw)
        cipher = AESGCM(key).encrypt(nonce, bytes(payload), _aad(meta_b, index_b, seq))
        header = HEADER.pack(
            MAGIC,
            VERSION,
            int(kind),
            0,
            seq,
            created_ns,
            prev_hash,
            self._eph_pub,
            salt,
            nonce,
            len(meta_b),
            len(index_b),
            len(cipher),
            hashlib.sha256(cipher).digest(),
            b"\0" * 28,
        )
        signed = header + meta_b + index_b
        sig = self._sign.sign(signed)
        h = hashlib.sha256(signed)
        h.update(sig)
        return b"".join((header, meta_b, index_b, cipher, sig)), h.digest()


def _derive(shared: bytes, salt: bytes, eph_pub: bytes, cir_pub: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=HKDF_INFO + eph_pub + cir_pub
    ).derive(shared)


def parse(raw: bytes | memoryview) -> Block:
    """Parse the layout of a sealed block; checks lengths and the cipher digest.

    Raises :class:`IntegrityError` with ``reason`` ``malformed`` or ``digest``.
    The signature is checked by :func:`verify`.
    """
    mv = memoryview(raw)
    if len(mv) < HEADER.size + SIG_LEN:
        raise IntegrityError("sealed block too short", reason="malformed")
    (
        magic,
        version,
        kind,
        _r,
        seq,
        created_ns,
        prev_hash,
        eph_pub,
        salt,
        nonce,
        meta_len,
        index_len,
        cipher_len,
        cipher_sha,
        _r2,
    ) = HEADER.unpack_from(mv, 0)
    if magic != MAGIC or version != VERSION:
        raise IntegrityError("not a sealed block of version 1", reason="malformed")
    if index_len % INDEX_ENTRY.size:
        raise IntegrityError("index length not a whole number of entries", reason="malformed")
    end_signed = HEADER.size + meta_len + index_len
    if end_signed + cipher_len + SIG_LEN != len(mv):
        raise IntegrityError("sealed block lengths do not add up", reason="malformed")
    try:
        block_kind = BlockKind(kind)
    except ValueError as exc:
        raise IntegrityError(f"unknown block kind {kind}", reason="malformed") from exc
    meta = _parse_meta(bytes(mv[HEADER.size : HEADER.size + meta_len]))
    index = list(
        map(IndexEntry._make, INDEX_ENTRY.iter_unpack(mv[HEADER.size + meta_len : end_signed]))
    )
    cipher = mv[end_signed : end_signed + cipher_len]
    if hashlib.sha256(cipher).digest() != cipher_sha:
        raise IntegrityError("cipher text does not match its digest", reason="digest")
    return Block(
        kind=block_kind,
        seq=seq,
        created_ns=created_ns,
        prev_hash=prev_hash,
        eph_pub=eph_pub,
        salt=salt,
        nonce=nonce,
        meta=meta,
        index=index,
        cipher=cipher,
        signature=bytes(mv[-SIG_LEN:]),
        signed=mv[:end_signed],
        cipher_sha256=cipher_sha,
        meta_raw=bytes(mv[HEADER.size : HEADER.size + meta_len]),
        index_raw=bytes(mv[HEADER.size + meta_len : end_signed]),
        raw=raw,
    )


#: types of the meta fields that readers of a block use; others are carried as they are
META_FIELDS: dict[str, tuple[type, ...]] = {
    "edge": (str,),
    "scanner": (str,),
    "kind": (str,),
    "scan_id": (int, type(None)),
    "channels": (int,),
    "n_lines": (int,),
    "link_first": (int,),
    "link_last": (int,),
    "link_seq": (int,),
    "first_seq": (int,),
    "last_seq": (int,),
    "reason": (str,),
    "cause": (str,),
}
#: the meta JSON of a block is small (a few hundred bytes); anything far beyond is refused
MAX_META_BYTES = 64 * 1024


def _parse_meta(meta_b: bytes) -> dict[str, Any]:
    """Parse and check a block's meta JSON; raises IntegrityError (malformed) only."""
    if len(meta_b) > MAX_META_BYTES:
        raise IntegrityError(
            f"block metadata of {len(meta_b)} bytes exceeds {MAX_META_BYTES}", reason="malformed"
        )
    try:
        meta = check_doc("block metadata", json.loads(meta_b, parse_constant=_no_constant))
    except RecursionError as exc:
        raise IntegrityError("bad block metadata: nested too deep", reason="malformed") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        raise IntegrityError(f"bad block metadata: {str(exc)[:200]}", reason="malformed") from exc
    except ProtocolError as exc:
        raise IntegrityError(exc.message, reason="malformed") from exc
    for name, types in META_FIELDS.items():
        v = meta.get(name)
        if name in meta and (type(v) not in types):
            raise IntegrityError(
                f"block metadata field {name!r} is {type(v).__name__}, "
                f"not {' or '.join(t.__name__ for t in types)}",
                reason="malformed",
            )
    return meta


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def verify(block: Block, sign_public: Ed25519PublicKey) -> None:
    """Check the block's Ed25519 signature against the edge's enrolled key."""
    try:
        sign_public.verify(block.signature, block.signed)
    except InvalidSignature as exc:
        raise IntegrityError("bad signature", reason="signature") from exc


class Opener:
    """Decrypts blocks with the CIR's private key (central side only)."""

    def __init__(self, cir_private: X25519PrivateKey) -> None:
        self._priv = cir_private
        self._pub_raw = cir_private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self._shared: dict[bytes, bytes] = {}

    def open(self, block: Block) -> bytes:
        shared = self._shared.get(block.eph_pub)
        if shared is None:
            if len(self._shared) > 4096:
                self._shared.clear()
            shared = self._priv.exchange(X25519PublicKey.from_public_bytes(block.eph_pub))
            self._shared[block.eph_pub] = shared
        key = _derive(shared, block.salt, block.eph_pub, self._pub_raw)
        try:
            return AESGCM(key).decrypt(
                block.nonce, bytes(block.cipher), _aad(block.meta_raw, block.index_raw, block.seq)
            )
        except InvalidTag as exc:
            raise IntegrityError("block does not decrypt", reason="cipher") from exc
