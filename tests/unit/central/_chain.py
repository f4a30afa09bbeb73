"""A tiny in-memory edge and CIR for driving central's ingest core without processes."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from central._cir import StreamState
from central._ingest import EnrolledEdge, Ingest, Work
from core.messages import BlockMsg
from core.seal import Block, BlockKind, Opener, Sealer, genesis_hash

EDGE = "edge-1"
SCANNER = "s1"
CH = 8
#: the routing id of the Rig's edge process: ``edge/scanner/boot``, as edges name theirs
BOOT = "aa"
IDENT = f"{EDGE}/{SCANNER}/{BOOT}".encode()


@dataclass
class MemStore:
    """What central reads from the CIR, as dicts: filled by ``commit``."""

    streams: dict[str, StreamState] = field(default_factory=dict)
    scans: dict[int, dict[str, Any]] = field(default_factory=dict)
    hashes: dict[tuple[str, int], bytes] = field(default_factory=dict)
    kinds: dict[tuple[str, int], tuple[str, int | None, str]] = field(default_factory=dict)
    #: scan ref -> its committed DATA blocks, in chain order
    data_blocks: dict[int, list[Block]] = field(default_factory=dict)

    def stream(self, scanner: str) -> StreamState | None:
        st = self.streams.get(scanner)
        return None if st is None else StreamState(**vars(st))

    def scan(self, ref: int) -> dict[str, Any] | None:
        row = self.scans.get(ref)
        return None if row is None else dict(row)

    def block_hash(self, scanner: str, seq: int) -> bytes | None:
        return self.hashes.get((scanner, seq))

    def next_scan_ref(self) -> int:
        return max(self.scans, default=0) + 1

    def scan_data_blocks(self, scan_ref: int) -> list[Block]:
        return list(self.data_blocks.get(scan_ref, []))

    def gap_tail(self, scanner: str) -> list[tuple[int, int | None, str]]:
        out: list[tuple[int, int | None, str]] = []
        for (name, seq), (kind, scan_id, cause) in sorted(self.kinds.items(), reverse=True):
            if name != scanner:
                continue
            if kind != "gap":
                break
            out.append((seq, scan_id if scan_id is not None and scan_id >= 0 else None, cause))
        return out[::-1]


class Rig:
    """An enrolled edge sealing a chain, and an Ingest core with an in-memory CIR."""

    def __init__(self, sign: Ed25519PrivateKey | None = None) -> None:
        self.sign = sign or Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
        self.cir = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
        self.sealer = Sealer(self.sign, self.cir.public_key())
        pub = self.sign.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.edge = EnrolledEdge(EDGE, base64.b64encode(pub).decode())
        self.store = MemStore()
        self.alarms: list[tuple[str, str, dict[str, Any]]] = []
        self.ingest = Ingest(self.store, Opener(self.cir).open, self._alarm)
        self.seq = 0
        self.prev = genesis_hash(SCANNER)
        self.link = 0
        self.line = 0

    def _alarm(self, scanner: str, edge: str, kind: str, message: str, **details: Any) -> None:
        self.alarms.append((kind, message, details))

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.alarms]

    def seal(
        self,
        kind: BlockKind,
        meta: dict[str, Any],
        index: list[tuple[int, int, int, int]],
        payload: bytes,
        *,
        seq: int | None = None,
        advance: bool = True,
    ) -> tuple[int, bytes]:
        seq = self.seq if seq is None else seq
        raw, h = self.sealer.seal(
            kind=kind,
            seq=seq,
            prev_hash=self.prev,
            meta={"edge": EDGE, "scanner": SCANNER, **meta},
            index=index,
            payload=payload,
            created_ns=1_000 + seq,
        )
        if advance:
            self.seq = seq + 1
            self.prev = h
        return seq, raw

    def start(self, scan_id: int, lines: int = 4, channels: int = CH) -> tuple[int, bytes]:
        rec = {"scan_id": scan_id, "lines": lines, "channels": channels, "container": "C1"}
        self.link += 1
        return self.seal(
            BlockKind.SCAN_START,
            {"kind": "scan_start", "scan_id": scan_id},
            [(0, 0, 1, self.link)],
            json.dumps(rec).encode(),
        )

    def data(
        self, scan_id: int, line_nos: list[int], channels: int = CH, flags: int = 0
    ) -> tuple[int, bytes]:
        index = []
        for n in line_nos:
            self.link += 1
            index.append((n, flags, 1, self.link))
        payload = bytes(len(line_nos) * channels * 4)
        return self.seal(
            BlockKind.DATA,
            {"kind": "data", "scan_id": scan_id, "channels": channels},
            index,
            payload,
        )

    def end(self, scan_id: int, status: str = "complete") -> tuple[int, bytes]:
        self.link += 1
        return self.seal(
            BlockKind.SCAN_END,
            {"kind": "scan_end", "scan_id": scan_id},
            [(0, 0, 2, self.link)],
            json.dumps({"status": status}).encode(),
        )

    def gap(self, scan_id: int | None, cause: str = "lost", n: int = 10) -> tuple[int, bytes]:
        first = self.link + 1
        self.link += n
        meta: dict[str, Any] = {"kind": "gap", "first_seq": first, "last_seq": self.link}
        meta["reason"] = "test"
        meta["cause"] = cause
        if scan_id is not None:
            meta["scan_id"] = scan_id
        return self.seal(BlockKind.GAP, meta, [], b"")

    def send(
        self, seq_raw: tuple[int, bytes], *, commit: bool = True, ident: bytes = IDENT
    ) -> Work:
        seq, raw = seq_raw
        work = Work()
        self.ingest.message(work, ident, self.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
        if commit:
            self.commit(work)
        return work

    def commit(self, work: Work) -> None:
        for s in work.staged:
            self.store.hashes[(s.block.scanner, s.block.seq)] = s.hash
            sid = s.block.meta.get("scan_id")
            self.store.kinds[(s.block.scanner, s.block.seq)] = (
                s.block.kind.name.lower(),
                sid if type(sid) is int else None,
                str(s.block.meta.get("cause", "lost")),
            )
            ref = s.block.meta.get("_scan_ref")
            if s.block.kind == BlockKind.DATA and ref is not None:
                self.store.data_blocks.setdefault(ref, []).append(s.block)
        for name in work.streams_touched:
            self.store.streams[name] = StreamState(**vars(self.ingest.streams[name]))
        for r in work.scans:
            self.store.scans[r] = self.ingest.scans[r].row()
        self.ingest.committed(work)

    def scan_rows(self) -> list[dict[str, Any]]:
        return [self.store.scans[r] for r in sorted(self.store.scans)]


def committed_cir(
    state: Any, blobs: Any = None, database: str = ""
) -> tuple[Any, Rig, list[bytes]]:
    """A real CIR in folder ``state`` (blob store ``blobs``, default files; metadata in
    ``database``, default SQLite) holding one complete scan of the Rig's enrolled edge:
    start, four lines, end.  Returns the CIR, the Rig and the three blocks' hashes."""
    from central._cir import Cir
    from core.keys import EdgePublic

    r = Rig()
    cir = Cir(state, blobs=blobs, database=database)
    cir.enroll(EdgePublic(EDGE, r.sign.public_key(), b"0" * 40))
    ingest = Ingest(cir, Opener(r.cir).open, r._alarm)
    hashes = []
    for seq, raw in (r.start(1, lines=4), r.data(1, [0, 1, 2, 3]), r.end(1)):
        work = Work()
        ingest.message(work, IDENT, r.edge, BlockMsg(scanner=SCANNER, seq=seq), [raw])
        cir.commit(work.staged, ingest.streams, {k: ingest.scans[k] for k in work.scans}, [])
        ingest.committed(work)
        hashes += [s.hash for s in work.staged]
    return cir, r, hashes
