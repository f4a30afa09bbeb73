"""Reading the CIR back: verify chains, decrypt lines, assemble scans.

Used by ``nii cir verify`` (the evidence check a court would ask for: every
block's signature, digest and chain link, from the genesis of each scanner)
and ``nii cir export`` (image arrays of one scan).

A scan is read through its shape (``central._shape``): only the lines that fit
the channel count its start record fixed, in increasing line order, make its
arrays; the rest stay in the CIR as evidence and read as missing, so every
product works on every stored scan (a channel change half-way, lines out of
order, no lines at all, no end record).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from central._cir import Cir, signed_fields
from central._shape import BYTES_PER_CHANNEL, ScanShape, record_channels, record_lines
from core.errors import IntegrityError, NiiError
from core.keys import EdgePublic
from core.seal import Block, BlockKind, Opener, genesis_hash, verify


@dataclass
class ChainReport:
    scanner: str
    edge: str
    blocks: int = 0
    first_seq: int = -1
    last_seq: int = -1
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_stream(cir: Cir, scanner: str) -> ChainReport:
    """Check a scanner's whole chain in the CIR, block by block (:func:`verified_block`):
    continuity, links, digests, signatures, and that each index row says what its signed
    block says."""
    stream = cir.stream(scanner)
    rep = ChainReport(scanner, stream.edge if stream else "")
    keys = ChainKeys(cir)
    expect = 0
    for row in cir.stream_blocks(scanner):
        rep.blocks += 1
        seq = row["seq"]
        if rep.first_seq < 0:
            rep.first_seq = seq
        rep.last_seq = seq
        if seq != expect:
            rep.problems.append(f"seq {seq}: expected {expect} (blocks missing)")
        expect = seq + 1
        try:
            verified_block(cir, keys, row)
        except NiiError as exc:
            rep.problems.append(exc.message)
    if stream is not None and stream.last_seq != rep.last_seq:
        rep.problems.append(f"stream head says {stream.last_seq}, blocks end at {rep.last_seq}")
    return rep


class ChainKeys:
    """The enrolled signing key of each scanner's stream, looked up once per read."""

    def __init__(self, cir: Cir) -> None:
        self.cir = cir
        self._keys: dict[str, Any] = {}
        self._scans: dict[int, tuple[str, int] | None] = {}

    def scan_of(self, ref: int) -> tuple[str, int] | None:
        """``(scanner, scan_id)`` of the scan row ``ref``, or None: there is none."""
        if ref not in self._scans:
            row = self.cir.scan(ref)
            self._scans[ref] = None if row is None else (row["scanner"], row["scan_id"])
        return self._scans[ref]

    def key(self, scanner: str) -> Any:
        """The Ed25519 public key of the edge that writes ``scanner``'s stream.

        Raises:
            IntegrityError: the scanner has no stream, or its edge is not enrolled.
        """
        if scanner not in self._keys:
            stream = self.cir.stream(scanner)
            edge = self.cir.edge(stream.edge) if stream else None
            if edge is None:
                raise IntegrityError(
                    f"scanner {scanner!r} has no enrolled edge in the CIR: its blocks cannot "
                    "be verified",
                    reason="edge",
                )
            self._keys[scanner] = EdgePublic.from_b64(edge["sign_public"])
        return self._keys[scanner]


def verified_block(cir: Cir, keys: ChainKeys, row: dict[str, Any]) -> Block:
    """The block of index ``row``, verified as evidence before anything of it is used.

    Checked: the blob is the block the row names (its hash), the enrolled edge signed
    it, it is the row's scanner, sequence number and kind, it links to the block
    before it in the chain (or to the chain's genesis), and the scan the row files a
    scan's block under (``scan_ref``) is a scan of that scanner with the signed scan
    id (a GAP block may be filed under the scan it cut, of another id).

    Raises:
        central._blobs.BlobMissing: the blob is gone.
        IntegrityError: any check fails; the message says which and where.
    """
    where = f"{row['scanner']} seq {row['seq']}"
    try:
        block = cir.read_block(row["hash"])
    except IntegrityError as exc:
        raise IntegrityError(f"{where}: {exc.message}", reason=exc.reason) from exc
    try:
        verify(block, keys.key(row["scanner"]))
    except IntegrityError as exc:
        raise IntegrityError(f"{where}: {exc.message}", reason=exc.reason) from exc
    if block.scanner != row["scanner"] or block.seq != row["seq"]:
        raise IntegrityError(
            f"{where}: the blob is {block.scanner} seq {block.seq}", reason="sequence"
        )
    if block.kind.name.lower() != row["kind"]:
        raise IntegrityError(
            f"{where}: the index says {row['kind']}, the signed block is {block.kind.name.lower()}",
            reason="kind",
        )
    signed = signed_fields(block)
    changed = [k for k, v in signed.items() if row.get(k) != v]
    if changed:
        diff = ", ".join(f"{k} {row.get(k)!r} (signed: {signed[k]!r})" for k in changed)
        raise IntegrityError(
            f"{where}: the index row differs from the signed block: {diff}", reason="row"
        )
    ref = row.get("scan_ref")
    if ref is not None and block.kind != BlockKind.GAP:
        sid = block.meta.get("scan_id")
        want = (block.scanner, sid if type(sid) is int else -1)
        got = keys.scan_of(int(ref))
        if got != want:
            raise IntegrityError(
                f"{where}: the index files this block under scan ref {ref} "
                + ("(no such scan)" if got is None else f"({got[0]} scan {got[1]})")
                + f"; the signed block is {want[0]} scan {want[1]}",
                reason="row",
            )
    prev = (
        genesis_hash(row["scanner"])
        if row["seq"] == 0
        else cir.block_hash(row["scanner"], row["seq"] - 1)
    )
    if prev is not None and block.prev_hash != prev:
        raise IntegrityError(f"{where}: chain broken (prev_hash mismatch)", reason="chain")
    return block


@dataclass(frozen=True)
class Line:
    scan_ref: int | None
    scan_id: int
    line_no: int
    flags: int
    ts_ns: int
    link_seq: int
    payload: bytes


def iter_lines(cir: Cir, opener: Opener, scanner: str) -> Iterator[Line]:
    """Every detector line of a scanner in chain order, decrypted."""
    for row in cir.stream_blocks(scanner):
        if row["kind"] != "data":
            continue
        yield from _block_lines(cir, opener, row)


def _block_lines(cir: Cir, opener: Opener, row: dict[str, Any]) -> Iterator[Line]:
    block = cir.read_block(row["hash"])
    if block.kind != BlockKind.DATA:
        return
    plain = opener.open(block)
    n = len(block.index)
    if n == 0 or len(plain) % n:
        return
    size = len(plain) // n
    for i, e in enumerate(block.index):
        yield Line(
            row["scan_ref"],
            int(block.meta.get("scan_id", -1)),
            e.line_no,
            e.flags,
            e.ts_ns,
            e.link_seq,
            plain[i * size : (i + 1) * size],
        )


def _start_record(scan: dict[str, Any]) -> dict[str, Any]:
    try:
        doc = json.loads(scan.get("start_record") or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def scan_arrays(cir: Cir, opener: Opener, ref: int) -> dict[str, np.ndarray]:
    """Assemble one scan from the lines that fit its shape.

    Args:
        cir: The repository.
        opener: Decrypts blocks with the CIR key.
        ref: The scan's ref (``nii cir scans``).

    Returns:
        ``image_high``/``image_low``, ``dark_*`` and ``air_*`` as (channels, lines)
        uint16 arrays (each only when the scan has such lines) and ``line_no``
        (int64, the image lines' numbers, increasing). Lines off the scan's shape
        are left out (read as missing).

    Every block of the scan, whatever its kind, is verified first
    (:func:`verified_block`): an export is evidence, and a block that does not verify
    stops it rather than reading as missing or blank lines.

    Raises:
        NiiError: No such scan, or a blob is missing.
        IntegrityError: A block does not verify, parse or decrypt.
    """
    scan = cir.scan(ref)
    if scan is None:
        raise NiiError(f"no scan with ref {ref} in the CIR", fix="list scans with 'nii cir scans'")
    image: dict[int, bytes] = {}
    dark: list[bytes] = []
    air: list[bytes] = []
    rec = _start_record(scan)
    shape = ScanShape(record_channels(rec), record_lines(rec))
    keys = ChainKeys(cir)
    for row in cir.scan_blocks(ref):
        block = verified_block(cir, keys, row)
        if block.kind != BlockKind.DATA:
            continue
        mask, _ = shape.fit(block.meta.get("channels"), block.index, len(block.cipher))
        if not any(mask) or shape.channels is None:
            continue
        plain = opener.open(block)
        size = shape.channels * BYTES_PER_CHANNEL
        for i, (e, ok) in enumerate(zip(block.index, mask, strict=True)):
            if not ok:
                continue
            payload = plain[i * size : (i + 1) * size]
            if e.flags & 1:
                dark.append(payload)
            elif e.flags & 2:
                air.append(payload)
            else:
                image[e.line_no] = payload
    out: dict[str, np.ndarray] = {}

    def stack(lines: list[bytes], name: str) -> None:
        if not lines:
            return
        arr = np.frombuffer(b"".join(lines), dtype="<u2").reshape(len(lines), 2, -1)
        out[f"{name}_high"] = arr[:, 0, :].T.copy()
        out[f"{name}_low"] = arr[:, 1, :].T.copy()

    order = sorted(image)
    stack([image[i] for i in order], "image")
    stack(dark, "dark")
    stack(air, "air")
    out["line_no"] = np.asarray(order, dtype=np.int64)
    return out
