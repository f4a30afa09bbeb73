"""The Central Image Repository (CIR): SQLite metadata and a blob store.

* Metadata lives in SQLite (through sqlite-utils), WAL, ``synchronous=FULL``: a
  commit is durable when it returns.
* Blobs are the sealed blocks exactly as the edge made them, content-addressed
  by their block hash (``central._blobs``: files under ``blobs/ab/cd/<hash>`` by
  default, or an S3-compatible object store). They stay encrypted at rest and
  their signatures stay verifiable for years.
* Group commit: a batch of blocks is written to the blob store and made durable
  (one ``syncfs`` for files), then one SQLite transaction records them. Only then
  does the aggregator acknowledge them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from central._blobs import BlobStore, FileBlobStore, open_blob_store
from core.config import CentralConfig
from core.errors import ConfigError, EnrollmentError, IntegrityError, NiiError, StorageError
from core.keys import EdgePublic
from core.seal import Block, parse


def signed_fields(b: Block) -> dict[str, Any]:
    """The columns of a block's index row that its signed bytes fix: what a reader checks
    a row against (``central._reader.verified_block``).  ``scan_ref`` and
    ``committed_ns`` are the CIR's own."""
    m = b.meta
    return {
        "scanner": b.scanner,
        "seq": b.seq,
        "kind": b.kind.name.lower(),
        "scan_id": m.get("scan_id"),
        "n_lines": len(b.index),
        "link_first": b.index[0].link_seq if b.index else m.get("first_seq"),
        "link_last": b.index[-1].link_seq if b.index else m.get("last_seq"),
        "prev_hash": b.prev_hash.hex(),
        "size": len(b.raw),
        "created_ns": b.created_ns,
    }


@dataclass
class StreamState:
    """Where one scanner's chain stands in the CIR."""

    scanner: str
    edge: str
    last_seq: int
    last_hash: bytes
    link_next_seq: int
    scan_ref: int | None  # the scan the next data blocks belong to
    scan_id: int | None


@dataclass
class Staged:
    """A verified block waiting for the next group commit."""

    block: Block
    hash: bytes
    committed_lines: int  # image lines
    calib_lines: int


class Cir:
    """The repository: enrollment, streams, blocks, scans, alarms."""

    def __init__(
        self,
        state_dir: Path,
        *,
        create: bool = True,
        blobs: BlobStore | Callable[[], BlobStore] | None = None,
    ) -> None:
        """Open the CIR in ``state_dir``; with ``create=False`` it must exist already.

        ``blobs`` is where the blocks are kept (``central._blobs.open_blob_store``), or
        what opens it once the CIR is found; default the files under ``state_dir/blobs``.
        """
        self.dir = Path(state_dir)
        if not create and not (self.dir / "cir.sqlite").exists():
            raise ConfigError(
                f"there is no CIR in {self.dir}",
                fix="check state_dir in the central configuration (--config)",
            )
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.dir / "cir.sqlite"
            # Two connections: readers on the event loop, the writer in the commit thread.
            # WAL lets readers see only committed data while a batch is being written.
            self.db = sqlite_utils.Database(sqlite3.connect(path, timeout=30))
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.wdb = sqlite_utils.Database(
                sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            )
            self.wdb.execute("PRAGMA synchronous=FULL")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the CIR in {self.dir}: {exc}",
                fix="check state_dir: it must exist, be writable and have free space",
            ) from exc
        try:
            if blobs is None:
                self.blobs: BlobStore = FileBlobStore(self.dir / "blobs", self.dir)
            else:
                self.blobs = blobs() if callable(blobs) else blobs
        except BaseException:
            self.wdb.close()
            self.db.close()
            raise
        self._schema()

    def close(self) -> None:
        self.blobs.close()
        self.wdb.close()
        self.db.close()

    def _schema(self) -> None:
        db = self.db
        if "edges" not in db.table_names():
            db.table("edges").create(
                {
                    "id": str,
                    "sign_public": str,
                    "curve_public": str,
                    "enrolled_ns": int,
                    "revoked_ns": int,
                    "note": str,
                },
                pk="id",
            )
            db.table("edges").create_index(["curve_public"], unique=True)
        if "streams" not in db.table_names():
            db.table("streams").create(
                {
                    "scanner": str,
                    "edge": str,
                    "last_seq": int,
                    "last_hash": str,
                    "link_next_seq": int,
                    "scan_ref": int,
                    "scan_id": int,
                    "updated_ns": int,
                },
                pk="scanner",
            )
        if "blocks" not in db.table_names():
            db.table("blocks").create(
                {
                    "scanner": str,
                    "seq": int,
                    "kind": str,
                    "scan_ref": int,
                    "scan_id": int,
                    "n_lines": int,
                    "link_first": int,
                    "link_last": int,
                    "hash": str,
                    "prev_hash": str,
                    "size": int,
                    "created_ns": int,
                    "committed_ns": int,
                },
                pk=("scanner", "seq"),
            )
            db.table("blocks").create_index(["scan_ref", "seq"])
        if "scans" not in db.table_names():
            db.table("scans").create(
                {
                    "ref": int,
                    "scanner": str,
                    "scan_id": int,
                    "container": str,
                    "status": str,
                    "started_ns": int,
                    "finished_ns": int,
                    "lines_planned": int,
                    "lines_received": int,
                    "calib_lines": int,
                    "lines_emitted": int,
                    "blocks": int,
                    "first_seq": int,
                    "last_seq": int,
                    "gaps": int,
                    "start_record": str,
                    "end_record": str,
                },
                pk="ref",
            )
            db.table("scans").create_index(["scanner", "scan_id"])
        if "scanner_calibrations" not in db.table_names():
            # each scanner's calibrations (R: ATR in physical units), one row per distinct
            # document, kept as the scan-start records bring them (docs/atr.md)
            db.table("scanner_calibrations").create(
                {
                    "scanner": str,
                    "sha256": str,
                    "document": str,
                    "first_seen_ns": int,
                    "last_seen_ns": int,
                    "first_ref": int,
                    "last_ref": int,
                    "scans": int,
                },
                pk=("scanner", "sha256"),
            )
        if "alarms" not in db.table_names():
            db.table("alarms").create(
                {
                    "id": int,
                    "ts_ns": int,
                    "scanner": str,
                    "edge": str,
                    "kind": str,
                    "message": str,
                    "details": str,
                },
                pk="id",
            )

    # -- enrollment ----------------------------------------------------------------------
    def enroll(self, pub: EdgePublic, note: str = "") -> None:
        existing = self.edge(pub.id)
        other = self.edge_by_curve(pub.curve_public.decode())
        if other is not None and other["id"] != pub.id:
            raise EnrollmentError(
                f"this CurveZMQ key is already enrolled as edge {other['id']!r}",
                fix="create a fresh key pair for the new edge with 'nii keys edge'",
            )
        row = {
            "id": pub.id,
            "sign_public": pub.sign_public_b64,
            "curve_public": pub.curve_public.decode(),
            "enrolled_ns": time.time_ns(),
            "revoked_ns": None,
            "note": note,
        }
        if (
            existing is not None
            and existing["revoked_ns"] is None
            and (
                existing["sign_public"] != row["sign_public"]
                or existing["curve_public"] != row["curve_public"]
            )
        ):
            raise EnrollmentError(
                f"edge {pub.id!r} is already enrolled with other keys",
                fix=f"revoke it first ('nii central revoke {pub.id}') if the box was replaced",
            )
        self.db.table("edges").upsert(row, pk="id")

    def revoke(self, edge_id: str) -> None:
        if self.edge(edge_id) is None:
            raise EnrollmentError(
                f"no edge {edge_id!r} is enrolled", fix="list them with 'nii central edges'"
            )
        self.db.table("edges").update(edge_id, {"revoked_ns": time.time_ns()})

    def edge(self, edge_id: str) -> dict[str, Any] | None:
        rows = list(self.db.table("edges").rows_where("id = ?", [edge_id]))
        return rows[0] if rows else None

    def edge_by_curve(self, curve_z85: str) -> dict[str, Any] | None:
        rows = list(self.db.table("edges").rows_where("curve_public = ?", [curve_z85]))
        return rows[0] if rows else None

    def edges(self) -> list[dict[str, Any]]:
        return list(self.db.table("edges").rows_where(order_by="id"))

    # -- streams -------------------------------------------------------------------------
    def stream(self, scanner: str) -> StreamState | None:
        rows = list(self.db.table("streams").rows_where("scanner = ?", [scanner]))
        if not rows:
            return None
        r = rows[0]
        top = self.db.execute(
            "SELECT seq, hash FROM blocks WHERE scanner = ? ORDER BY seq DESC LIMIT 1", [scanner]
        ).fetchone()
        if top is not None and top[0] != r["last_seq"]:
            raise NiiError(
                f"the CIR index is inconsistent for {scanner}: stream head {r['last_seq']}, "
                f"last block {top[0]}",
                fix="stop central and run 'nii cir verify'; restore the index from backup",
            )
        return StreamState(
            r["scanner"],
            r["edge"],
            r["last_seq"],
            bytes.fromhex(r["last_hash"]),
            r["link_next_seq"],
            r["scan_ref"],
            r["scan_id"],
        )

    def gap_tail(self, scanner: str, limit: int = 10_000) -> list[tuple[int, int | None, str]]:
        """``(seq, scan_id, cause)`` of the GAP blocks at the head of a scanner's chain
        (after its last block of another kind, at most ``limit`` looked at), oldest first.
        The cause is read from the GAP block's meta; ``lost`` when its blob is unreadable
        (as an edge that names no cause means)."""
        rows = self.db.execute(
            "SELECT seq, kind, scan_id, hash FROM blocks WHERE scanner = ? "
            "ORDER BY seq DESC LIMIT ?",
            [scanner, limit],
        )
        out: list[tuple[int, int | None, str]] = []
        for seq, kind, scan_id, h in rows:
            if kind != "gap":
                break
            try:
                cause = str(self.read_block(h).meta.get("cause", "lost"))
            except NiiError:
                cause = "lost"
            sid = scan_id if isinstance(scan_id, int) and scan_id >= 0 else None
            out.append((int(seq), sid, cause))
        return out[::-1]

    def block_hash(self, scanner: str, seq: int) -> bytes | None:
        row = self.db.execute(
            "SELECT hash FROM blocks WHERE scanner = ? AND seq = ?", [scanner, seq]
        ).fetchone()
        return None if row is None else bytes.fromhex(row[0])

    # -- commit --------------------------------------------------------------------------
    def blob_path(self, h: bytes | str) -> Path:
        """The file of blob ``h``, where the blobs are files (the embedded CIR).

        Raises:
            TypeError: the blobs are in an object store.
        """
        if not isinstance(self.blobs, FileBlobStore):
            raise TypeError(f"the blobs are in {self.blobs.location}, not in files")
        return self.blobs.path(h)

    def free_bytes(self) -> int:
        """Free space for this process on the CIR's file system, bytes; -1 if unknown."""
        try:
            st = os.statvfs(self.dir)
        except OSError:
            return -1
        return st.f_bavail * st.f_frsize

    def storage_error(self, exc: BaseException) -> StorageError:
        """A StorageError for ``exc`` naming the CIR folder and its free space."""
        free = self.free_bytes()
        return StorageError(
            f"cannot write the CIR in {self.dir}: {exc} ({free} bytes free)",
            fix="free space on that file system (or fix its I/O error); central resumes "
            "by itself once the write succeeds",
            path=str(self.dir),
            free_bytes=free,
        )

    def commit(
        self,
        staged: list[Staged],
        streams: dict[str, StreamState],
        scans: Mapping[int, Mapping[str, Any]],
        alarms: list[dict[str, Any]],
        *,
        calibrations: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Write blobs, sync, then record everything in one transaction.

        ``calibrations`` are the scanner calibrations the batch's scan-start records
        brought (``central._ingest.CalibrationSeen``): each adds a row to
        ``scanner_calibrations`` or moves an existing row's last sighting, in the same
        transaction as the scan rows.

        Raises:
            StorageError: A blob or the transaction could not be written (disk full,
                I/O error): nothing of the batch is in the index, the cause is kept.
        """
        # Until the index row commits the block is not acknowledged: the edge resends it
        # and the same blob is written again under the same name.
        self.blobs.put([(s.hash, s.block.raw) for s in staged])
        now = time.time_ns()
        rows = [
            {
                **signed_fields(s.block),
                "scan_ref": s.block.meta.get("_scan_ref"),
                "hash": s.hash.hex(),
                "committed_ns": now,
            }
            for s in staged
        ]
        stream_rows = [
            {
                "scanner": st.scanner,
                "edge": st.edge,
                "last_seq": st.last_seq,
                "last_hash": st.last_hash.hex(),
                "link_next_seq": st.link_next_seq,
                "scan_ref": st.scan_ref,
                "scan_id": st.scan_id,
                "updated_ns": now,
            }
            for st in streams.values()
        ]
        # One explicit transaction in plain SQL: sqlite-utils' own write helpers commit
        # on their own, which would split a group commit (blocks without their stream
        # head) if the process died in between.
        conn = self.wdb.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table, items, replace in (
                ("blocks", rows, False),
                ("streams", stream_rows, True),
                ("scans", list(scans.values()), True),
                ("alarms", alarms, False),
            ):
                if not items:
                    continue
                cols = list(items[0])
                verb = "INSERT OR REPLACE" if replace else "INSERT"
                conn.executemany(
                    f"{verb} INTO {table} ({', '.join(cols)}) "
                    f"VALUES ({', '.join('?' for _ in cols)})",
                    [tuple(it.get(c) for c in cols) for it in items],
                )
            if calibrations:
                conn.executemany(
                    "INSERT INTO scanner_calibrations (scanner, sha256, document, "
                    "first_seen_ns, last_seen_ns, first_ref, last_ref, scans) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 1) "
                    "ON CONFLICT (scanner, sha256) DO UPDATE SET "
                    "last_seen_ns = max(last_seen_ns, excluded.last_seen_ns), "
                    "last_ref = max(last_ref, excluded.last_ref), scans = scans + 1",
                    [
                        (
                            c["scanner"],
                            c["sha256"],
                            c["document"],
                            c["seen_ns"],
                            c["seen_ns"],
                            c["ref"],
                            c["ref"],
                        )
                        for c in calibrations
                    ],
                )
            conn.execute("COMMIT")
        except BaseException as exc:
            # SQLite may have rolled back a failed COMMIT itself; a second ROLLBACK would
            # raise "no transaction is active" and hide the cause.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError | OSError) and is_storage_error(exc):
                raise self.storage_error(exc) from exc
            raise

    def next_scan_ref(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(ref), 0) FROM scans").fetchone()
        return int(row[0]) + 1

    def scan(self, ref: int) -> dict[str, Any] | None:
        rows = list(self.db.table("scans").rows_where("ref = ?", [ref]))
        return rows[0] if rows else None

    def scans(self, scanner: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        where, args = ("scanner = ?", [scanner]) if scanner else (None, [])
        return list(
            self.db.table("scans").rows_where(where, args, order_by="ref desc", limit=limit)
        )

    def alarm_rows(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(self.db.table("alarms").rows_where(order_by="id desc", limit=limit))

    def alarm_row(
        self, scanner: str, edge: str, kind: str, message: str, **details: Any
    ) -> dict[str, Any]:
        row = {
            "ts_ns": time.time_ns(),
            "scanner": scanner,
            "edge": edge,
            "kind": kind,
            "message": message,
            "details": json.dumps(details, default=str),
        }
        return row

    def calibrations(self, scanner: str) -> list[dict[str, Any]]:
        """A scanner's calibrations as its scans brought them, the current one first.

        Each row: ``scanner``, ``sha256``, ``document`` (JSON text), ``first_seen_ns``,
        ``last_seen_ns``, ``first_ref``, ``last_ref`` (scan refs) and ``scans`` (how
        many scans brought it). The current calibration is the one the scanner's latest
        scan brought.
        """
        return list(
            self.db.table("scanner_calibrations").rows_where(
                "scanner = ?", [scanner], order_by="last_ref desc, last_seen_ns desc"
            )
        )

    def scanner_ids(self) -> list[str]:
        """Every scanner the CIR has a stream or a scan of, sorted."""
        rows = self.db.execute(
            "SELECT scanner FROM streams UNION SELECT DISTINCT scanner FROM scans ORDER BY 1"
        ).fetchall()
        return [str(r[0]) for r in rows]

    # -- reading -------------------------------------------------------------------------
    def read_block(self, h: str) -> Block:
        """The block whose hash is ``h``, checked against its name.

        Raises:
            central._blobs.BlobMissing: no such blob.
            IntegrityError: the blob does not parse, or its hash is not ``h`` (it was
                replaced or damaged).
        """
        block = parse(self.blobs.get(h))
        if block.hash.hex() != str(h).lower():
            raise IntegrityError(
                f"blob {h} holds another block (hash {block.hash.hex()}): replaced or damaged",
                reason="hash",
            )
        return block

    def orphan_blobs(self) -> list[str]:
        """Names of blobs no index row names, sorted: written by a batch whose transaction
        never committed (a crash or a full disk in between).  Harmless: the edge resent
        those blocks; ``nii cir verify`` reports them."""
        indexed = {str(r[0]) for r in self.db.execute("SELECT hash FROM blocks")}
        return sorted(n for n in self.blobs.names() if n not in indexed)

    def scan_blocks(self, scan_ref: int) -> Iterator[dict[str, Any]]:
        yield from self.db.table("blocks").rows_where("scan_ref = ?", [scan_ref], order_by="seq")

    def stream_blocks(self, scanner: str) -> Iterator[dict[str, Any]]:
        yield from self.db.table("blocks").rows_where("scanner = ?", [scanner], order_by="seq")


def central_blobs(cfg: CentralConfig) -> BlobStore:
    """The blob store that central's configuration names (``blobs``, ``s3_endpoint``,
    ``s3_credentials``).

    Raises:
        ConfigError: it cannot be opened (see ``central._blobs.open_blob_store``).
    """
    return open_blob_store(
        cfg.blobs, cfg.state_dir, endpoint=cfg.s3_endpoint, credentials=cfg.s3_credentials
    )


def open_cir(cfg: CentralConfig, *, create: bool = True) -> Cir:
    """The CIR of central's configuration: its ``state_dir`` and its blob store."""
    return Cir(cfg.state_dir, create=create, blobs=lambda: central_blobs(cfg))


def is_storage_error(exc: BaseException) -> bool:
    """Whether an error says the disk is full or failing (not a bug of ours)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return True
    text = str(exc).lower()
    return "full" in text or "disk i/o" in text
