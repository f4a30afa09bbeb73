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
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from central._blobs import BlobMissing
from central._cir import Cir, signed_fields
from central._scanbook import ScanBook, scan_record
from central._shape import (
    BYTES_PER_CHANNEL,
    CALIB_FLAGS,
    ScanShape,
    record_channels,
    record_lines,
)
from core.errors import IntegrityError, NiiError
from core.keys import EdgePublic
from core.seal import Block, BlockKind, Opener, genesis_hash, verify

#: a blob's name as the index keeps it: the block's SHA-256, 64 lower-case hex digits
_BLOCK_HASH = re.compile(r"[0-9a-f]{64}")


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


def verify_stream(cir: Cir, scanner: str, opener: Opener | None = None) -> ChainReport:
    """Check a scanner's whole chain in the CIR, block by block (:func:`verified_block`):
    continuity, links, digests, signatures, and that each index row says what its signed
    block says.

    With ``opener`` (the CIR key), each of the scanner's ``scans`` rows is also checked
    against its signed blocks (:class:`ScanTally`): container, GD, start and end
    records, line and block counts and a status of ``complete`` are what the blocks
    say, so a row edited behind the CIR's back (another container number, a scan made
    to look complete) does not pass as evidence.
    """
    # the stream's head as its row says it (not Cir.stream, which refuses a head that
    # disagrees with the blocks: that is for verify to report, not to stop on)
    stream = cir.sql.one("SELECT edge, last_seq FROM streams WHERE scanner = ?", [scanner])
    rep = ChainReport(scanner, str(stream["edge"]) if stream else "")
    keys = ChainKeys(cir)
    tallies: dict[int, ScanTally] = {}
    # the rows before the blocks: on a live CIR a row is then never newer than the
    # blocks walked (a scan opened since is not checked; an open one only in part)
    scans = (
        cir.sql.rows("SELECT * FROM scans WHERE scanner = ? ORDER BY ref", [scanner])
        if opener is not None
        else []
    )
    expect = 0
    for row in cir.stream_blocks(scanner):
        rep.blocks += 1
        seq = row["seq"]
        if type(seq) is not int:  # SQLite keeps what is written: text, a real, a NULL
            rep.problems.append(
                f"{scanner}: a block row whose seq is {seq!r}, no sequence number (the row "
                "was edited behind the CIR's back)"
            )
            continue
        if rep.first_seq < 0:
            rep.first_seq = seq
        rep.last_seq = seq
        if seq != expect:
            rep.problems.append(f"seq {seq}: expected {expect} (blocks missing)")
        expect = seq + 1
        try:
            block = verified_block(cir, keys, row)
        except NiiError as exc:
            rep.problems.append(exc.message)
            continue
        ref = row.get("scan_ref")
        if opener is not None and ref is not None:
            tally = tallies.setdefault(int(ref), ScanTally(int(ref)))
            try:
                tally.add(block, opener)
            except NiiError as exc:
                rep.problems.append(f"{scanner} seq {seq}: {exc.message}")
    # on a live CIR blocks commit while they are walked: the head read before the walk
    # may not be beyond its last block, the head read after it not short of it
    after = cir.sql.one("SELECT last_seq FROM streams WHERE scanner = ?", [scanner])
    for head, wrong in ((stream, _beyond), (after, _short)):
        if head is not None and wrong(head["last_seq"], rep.last_seq):
            rep.problems.append(
                f"stream head says {head['last_seq']!r}, blocks end at {rep.last_seq}"
            )
            break
    shut = sum(len(t.shut) for t in tallies.values())
    if shut and not any(t.opened for t in tallies.values()):
        held = [
            s
            for s in scans
            if _row_record(s.get("start_record")) not in ({}, None)
            or _row_record(s.get("end_record")) not in ({}, None)
        ]
        if held:  # one problem, not one per scan: every row would look forged
            rep.problems.append(
                f"{scanner}: none of its {shut} record block(s) decrypts with the CIR key "
                f"given, yet {len(held)} scan row(s) hold their records: the key is not this "
                "CIR's (scan rows not checked)"
            )
            return rep
    newest = max((int(scan["ref"]) for scan in scans), default=0)
    for scan in scans:
        ref = int(scan["ref"])
        tally = tallies.get(ref) or ScanTally(ref)
        found = tally.problems(scan, latest=ref == newest)
        rep.problems += [f"{scanner} scan ref {ref}: {p}" for p in found]
    return rep


def _beyond(head: Any, last: int) -> bool:
    return type(head) is not int or head > last


def _short(head: Any, last: int) -> bool:
    return type(head) is not int or head < last


class ScanTally:
    """What one scan's signed blocks say of it, gathered in chain order; compared with
    its ``scans`` row by :meth:`problems`.

    The counts follow the ingest's own rules (``central._ingest``): a scan's first block
    is its SCAN_START block when it has one (its record fixes the scan's shape), its
    image and calibration lines are those that fit that shape (``central._shape``),
    and it is ``complete`` only when its SCAN_END record says so, no GAP touched it,
    every block fitted and every planned image line arrived.
    """

    def __init__(self, ref: int) -> None:
        self.ref = ref
        self.blocks = 0
        self.first_seq = -1
        self.last_seq = -1
        self.gap_blocks = 0
        self.start: dict[str, Any] | None = None  # None: no SCAN_START block
        self.end: dict[str, Any] | None = None  # None: no SCAN_END block
        self.shape: ScanShape | None = None
        self.image_lines = 0
        self.calib_lines = 0
        #: record blocks ("scan-start", "scan-end") that did not decrypt, and those that did
        self.shut: list[str] = []
        self.opened = 0

    def add(self, block: Block, opener: Opener) -> list[bool]:
        """Count one verified block of the scan; for a DATA block, which of its lines fit
        the scan's shape (one bool per index entry; [] for other kinds).

        Raises:
            IntegrityError: a SCAN_START block that is not the scan's first, or a record
                block that does not decrypt.
        """
        self.blocks += 1
        if self.first_seq < 0:
            self.first_seq = block.seq
        self.last_seq = block.seq
        if block.kind == BlockKind.SCAN_START:
            if self.blocks != 1:
                raise IntegrityError(
                    f"a scan-start block filed under scan ref {self.ref} after its first block",
                    reason="row",
                )
            self.start = self._record(opener, block, "scan-start")
        if self.shape is None:
            rec = self.start or {}
            self.shape = ScanShape(record_channels(rec), record_lines(rec))
        if block.kind == BlockKind.SCAN_END:
            self.end = self._record(opener, block, "scan-end")
        elif block.kind == BlockKind.GAP:
            self.gap_blocks += 1
        elif block.kind == BlockKind.DATA:
            mask, _ = self.shape.fit(block.meta.get("channels"), block.index, len(block.cipher))
            for e, ok in zip(block.index, mask, strict=True):
                if ok:
                    if e.flags & CALIB_FLAGS:
                        self.calib_lines += 1
                    else:
                        self.image_lines += 1
            return mask
        return []

    def problems(self, scan: dict[str, Any], *, latest: bool = True) -> list[str]:
        """How the ``scans`` row ``scan`` differs from what its signed blocks say; [] when
        it does not.  ``latest``: the row is its scanner's newest, the only one that may
        still be open (``scanning``); an open row's counts and end are not checked, as
        its blocks may have moved on since it was read."""
        out: list[str] = []
        held = [
            name
            for name, col in (("scan-start", "start_record"), ("scan-end", "end_record"))
            if name in self.shut and _row_record(scan.get(col)) not in ({}, None)
        ]
        if held:
            # the ingest, which filed {} for a record it could not open, opened these:
            # the key given is not the one the edges seal to (or the row was forged)
            return [
                f"its {' and '.join(held)} block does not decrypt with the CIR key given, "
                "yet its row holds the record: is this the CIR's own key?"
            ]
        start = self.start if self.start is not None else {}
        signed = ScanBook.new(
            self.ref, str(scan["scanner"]), scan["scan_id"], "", 0, self.first_seq, start
        )
        if _row_record(scan.get("start_record")) != start:
            out.append(
                "its start record differs from the signed scan-start block"
                if self.start is not None
                else "it has a start record but no scan-start block"
            )
        for name in ("container", "gd_number", "lines_planned"):
            if scan.get(name) != getattr(signed, name):
                out.append(f"{name} {scan.get(name)!r} (signed: {getattr(signed, name)!r})")
        if scan.get("status") == "scanning":
            if latest:
                # still open: its row was read before the blocks that came since (rows are
                # read first), so its counts and end are checked once it is closed
                return out
            out.append("status 'scanning', yet a later scan of its scanner has started")
        row_end = scan.get("end_record")
        if self.end is None and row_end is not None:
            out.append("it has an end record but no scan-end block")
        elif self.end is not None and (row_end is None or _row_record(row_end) != self.end):
            out.append("its end record differs from the signed scan-end block")
        counts = {
            "blocks": self.blocks,
            "lines_received": self.image_lines,
            "calib_lines": self.calib_lines,
        }
        if self.blocks:
            counts.update(first_seq=self.first_seq, last_seq=self.last_seq)
        for name, want in counts.items():
            if scan.get(name) != want:
                out.append(f"{name} {scan.get(name)!r} (signed blocks: {want})")
        gaps = scan.get("gaps")
        if type(gaps) is not int or gaps < self.gap_blocks:
            out.append(f"gaps {gaps!r}, yet {self.gap_blocks} GAP block(s) are filed under it")
        status = scan.get("status")
        if status == "complete" and not self._complete(signed.lines_planned):
            out.append("status 'complete', which its signed blocks do not bear out")
        elif (
            status not in ("complete", "scanning")
            and gaps == 0
            and self._complete(signed.lines_planned)
        ):
            # the ingest's own rule (central._ingest): nothing kept such a scan incomplete
            out.append(f"status {status!r}, yet its signed blocks show it complete")
        return out

    def _complete(self, planned: int) -> bool:
        return (
            self.end is not None
            and self.end.get("status") == "complete"
            and self.gap_blocks == 0
            and (self.shape is None or self.shape.violations == 0)
            and self.image_lines == planned
        )

    def _record(self, opener: Opener, block: Block, name: str) -> dict[str, Any]:
        """A record block's record, as the ingest filed it: {} when it does not decrypt
        or parse (the ingest alarmed ``bad_record`` then)."""
        try:
            plain = opener.open(block)
        except NiiError:
            self.shut.append(name)
            return {}
        self.opened += 1
        try:
            return scan_record(plain)
        except (NiiError, ValueError, RecursionError):
            return {}


@dataclass
class OrphanReport:
    """What the blobs that no index row names are (:func:`judge_orphans`)."""

    #: sealed blocks beyond their chain's head, or another sealing of a sequence number
    #: the chain holds: a batch cut short before its index committed (harmless)
    cut_short: list[str] = field(default_factory=list)
    #: files that are no sealed block (a write cut by a power loss, or foreign): nothing
    #: refers to them
    unsealed: list[str] = field(default_factory=list)
    #: what the blobs prove was deleted from the index, one line per scanner
    deleted: list[str] = field(default_factory=list)


#: how long a batch may take from its blobs being stored to its index committing, ns
IN_FLIGHT_NS = 600 * 10**9
#: the most blocks of one scanner that can be on their way in at once: two batches of
#: central._aggregator.MAX_BATCH_MSGS
IN_FLIGHT_BLOCKS = 1024


def _row_of(cir: Cir, block: Block) -> Any:
    return cir.sql.one(
        "SELECT hash FROM blocks WHERE scanner = ? AND seq = ?", [block.scanner, block.seq]
    )


def judge_orphans(cir: Cir, names: list[str]) -> OrphanReport:
    """Tell the orphans still on their way in from the blobs of committed blocks whose
    index rows were deleted. A sealed block names its scanner and sequence number:

    * at or below its chain's head with no row for that number: a row deleted;
    * beyond the head (or of a scanner with no chain): a batch still committing if its
      edge sealed it less than :data:`IN_FLIGHT_NS` ago and there are no more of them
      than :data:`IN_FLIGHT_BLOCKS`; else the chain's last rows (or the whole chain)
      were deleted, or a batch was cut short and its edge has not resent it yet
      (after an outage an edge resends old blocks: verify again once it has);
    * a block whose sequence number has a row of another hash: a batch cut short and
      sealed again (harmless).

    Reads each orphan once; a CIR emptied of its rows makes every blob an orphan.
    """
    rep = OrphanReport()
    now_ns = time.time_ns()
    heads = {
        str(r["scanner"]): r["last_seq"]
        for r in cir.sql.rows("SELECT scanner, last_seq FROM streams")
    }
    below: dict[str, list[int]] = {}
    beyond: dict[str, list[tuple[int, int, str]]] = {}
    for name in names:
        try:
            block = cir.read_block(name)
        except BlobMissing:
            continue  # removed since it was listed
        except IntegrityError:
            rep.unsealed.append(name)
            continue
        if _row_of(cir, block) is not None:
            rep.cut_short.append(name)  # sealed again under the same number
            continue
        head = heads.get(block.scanner)
        if block.scanner in heads and (type(head) is not int or block.seq <= head):
            below.setdefault(block.scanner, []).append(block.seq)
        else:
            beyond.setdefault(block.scanner, []).append((block.seq, block.created_ns, name))
    gone: dict[str, list[int]] = {}
    for scanner, got in beyond.items():
        young = all(now_ns - created < IN_FLIGHT_NS for _, created, _ in got)
        if young and len(got) <= IN_FLIGHT_BLOCKS:
            rep.cut_short += [name for _, _, name in got]
        else:
            gone[scanner] = [seq for seq, _, _ in got]
    for scanner, seqs in sorted(below.items()):
        seqs.sort()
        rep.deleted.append(
            f"{len(seqs)} committed block(s) of {scanner} ({_span(seqs)}) are in the blob "
            f"store, but its chain's head is seq {heads[scanner]} and has no row for them: "
            "their index rows were deleted"
        )
    for scanner, seqs in sorted(gone.items()):
        seqs.sort()
        where = (
            "the CIR has no chain of that scanner"
            if scanner not in heads
            else f"its chain ends at seq {heads[scanner]}"
        )
        rep.deleted.append(
            f"{len(seqs)} sealed block(s) of {scanner or '(no scanner)'} ({_span(seqs)}) are "
            f"in the blob store with no row, and {where}: the rows were deleted (or the "
            "database restored to an earlier point), unless a batch was cut short and its "
            "edge has not resent it yet (verify again once central has run with that edge)"
        )
    return rep


def _span(seqs: list[int]) -> str:
    return f"seq {seqs[0]}" if len(seqs) == 1 else f"seq {seqs[0]}..{seqs[-1]}"


def key_opens(cir: Cir, opener: Opener, tries: int = 16) -> tuple[int, int]:
    """How many of the CIR's latest record blocks (scan-start and scan-end, up to
    ``tries``) the CIR key of ``opener`` decrypts: ``(opened, tried)``.  None of several
    opened means the key is not the one the edges seal to.

    Raises:
        NiiError: a blob cannot be read.
    """
    rows = cir.sql.rows(
        "SELECT hash FROM blocks WHERE kind IN ('scan_start', 'scan_end') "
        "ORDER BY committed_ns DESC LIMIT ?",
        [tries],
    )
    opened = 0
    for row in rows:
        try:
            opener.open(cir.read_block(row["hash"]))
            opened += 1
        except IntegrityError:
            continue
    return opened, len(rows)


def _row_record(text: Any) -> Any:
    try:
        return json.loads(text or "{}")
    except (TypeError, ValueError):
        return None


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
            stream = self.cir.sql.one("SELECT edge FROM streams WHERE scanner = ?", [scanner])
            edge = self.cir.edge(str(stream["edge"])) if stream else None
            if edge is None:
                raise IntegrityError(
                    f"scanner {scanner!r} has no enrolled edge in the CIR: its blocks cannot "
                    "be verified",
                    reason="edge",
                )
            try:
                self._keys[scanner] = EdgePublic.from_b64(edge["sign_public"])
            except Exception as exc:  # the row holds no key: edited, or damaged
                raise IntegrityError(
                    f"the enrolled signing key of edge {edge.get('id')!r} "
                    f"(scanner {scanner!r}) is no Ed25519 key ({type(exc).__name__}: {exc}): "
                    "the edges table was edited or damaged, so its blocks cannot be verified",
                    reason="edge",
                ) from None
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
    h = row.get("hash")
    if not isinstance(h, str) or not _BLOCK_HASH.fullmatch(h):
        raise IntegrityError(
            f"{where}: the index row names {h!r}, no block hash (the row was edited)",
            reason="row",
        )
    try:
        block = cir.read_block(h)
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
    if ref is not None and (type(ref) is not int or ref < 1):
        raise IntegrityError(
            f"{where}: the index files this block under scan ref {ref!r}, which is no scan ref",
            reason="row",
        )
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
    try:
        prev = (
            genesis_hash(row["scanner"])
            if row["seq"] == 0
            else cir.block_hash(row["scanner"], row["seq"] - 1)
        )
    except (TypeError, ValueError):
        prev = None  # the row before names no block hash: reported as its own problem
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
    stops it rather than reading as missing or blank lines. The shape is the one the
    signed scan-start record fixes, and the scan's row must say what its blocks say
    (:class:`ScanTally`): an export names the container and GD of that row.

    Raises:
        NiiError: No such scan, or a blob is missing.
        IntegrityError: A block does not verify, parse or decrypt, or the scan's row
            differs from its signed blocks.
    """
    scan = cir.scan(ref)
    if scan is None:
        raise NiiError(f"no scan with ref {ref} in the CIR", fix="list scans with 'nii cir scans'")
    image: dict[int, bytes] = {}
    dark: list[bytes] = []
    air: list[bytes] = []
    keys = ChainKeys(cir)
    tally = ScanTally(ref)
    for row in cir.scan_blocks(ref):
        block = verified_block(cir, keys, row)
        try:
            mask = tally.add(block, opener)
        except IntegrityError as exc:
            raise IntegrityError(
                f"{row['scanner']} seq {row['seq']}: {exc.message}", reason=exc.reason
            ) from exc
        shape = tally.shape
        if block.kind != BlockKind.DATA or not any(mask) or shape is None or not shape.channels:
            continue
        try:
            plain = opener.open(block)
        except IntegrityError as exc:
            raise IntegrityError(
                f"{row['scanner']} seq {row['seq']}: {exc.message} with the CIR key given "
                "(signed and stored intact: is this the CIR's own key?)",
                fix="give central's own CIR key (central.toml: key)",
                reason=exc.reason,
            ) from exc
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
    later = cir.sql.rows(
        "SELECT ref FROM scans WHERE scanner = ? AND ref > ? LIMIT 1", [scan["scanner"], ref]
    )
    problems = tally.problems(scan, latest=not later)
    if problems:
        raise IntegrityError(
            f"scan ref {ref}: the CIR's row of the scan differs from its signed blocks: "
            + "; ".join(problems[:5]),
            fix="run 'nii cir verify' for the whole CIR, and report it: a row was changed "
            "behind the CIR's back, or the key given is not the CIR's",
            reason="row",
        )
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
