"""The Central Image Repository (CIR): SQLite metadata and a blob store.

* Metadata lives in SQLite (WAL, ``synchronous=FULL``) or PostgreSQL, through
  ``central._sql.Sql``: a commit is durable when it returns.
* Blobs are the sealed blocks exactly as the edge made them, content-addressed
  by their block hash (``central._blobs``: files under ``blobs/ab/cd/<hash>`` by
  default, or an S3-compatible object store). They stay encrypted at rest and
  their signatures stay verifiable for years.
* Group commit: a batch of blocks is written to the blob store and made durable
  (one ``syncfs`` for files), then one database transaction records them. Only then
  does the aggregator acknowledge them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central._atr_queue import enqueue as enqueue_atr
from central._blobs import BlobStore, FileBlobStore, open_blob_store
from central._scanbook import ScanBook
from central._sql import (
    Sql,
    check_not_newer,
    is_sql_error,
    is_storage_error,
    is_unreachable,
    migrate,
    session_name,
)
from core.config import CentralConfig
from core.errors import ConfigError, EnrollmentError, IntegrityError, NiiError, StorageError
from core.keys import EdgePublic
from core.seal import Block, parse

log = logging.getLogger("nii.central")

#: how long a lease take waits for the lease row's lock before asking why, ms
LEASE_LOCK_WAIT_MS = 2000


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


class LeaseLost(NiiError):
    """This aggregator no longer holds the lease of a scanner's stream: another took it
    over (this one was paused, cut off or too slow to renew).  Nothing of the batch was
    committed; the edge resends it to whichever aggregator holds the lease now."""

    def __init__(self, message: str, scanners: Sequence[str]) -> None:
        super().__init__(message, fix="nothing to do: the edge fails over by itself")
        self.scanners = list(scanners)


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
        database: str = "",
        read_only: bool = False,
        read_deadline_s: float | None = None,
    ) -> None:
        """Open the CIR in ``state_dir``; with ``create=False`` it must exist already.
        ``read_only`` (with ``create=False``): nothing of it is changed, not even its
        schema brought up to date (``nii cir verify`` of an auditor's copy).

        ``database`` is a PostgreSQL URL for the metadata (default: SQLite in
        ``state_dir/cir.sqlite``); its schema is brought up to date (``central._sql``).
        ``read_deadline_s``: the longest a statement on the readers' connection
        (``sql``) may wait on PostgreSQL before it fails as unreachable.
        ``blobs`` is where the blocks are kept (``central._blobs.open_blob_store``), or
        what opens it once the CIR is found; default the files under ``state_dir/blobs``.

        Raises:
            ConfigError: no CIR where ``create=False`` wants one, or one that cannot be
                opened (``central._sql.Sql``).
        """
        self.dir = Path(state_dir)
        self.database = database
        if not database:
            db_file = self.dir / "cir.sqlite"
            if not create and not db_file.exists():
                raise ConfigError(
                    f"there is no CIR in {self.dir}",
                    fix="check state_dir in the central configuration (--config)",
                )
            # a file cut to 0 bytes is refused by central._sql.Sql
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the CIR in {self.dir}: {exc}",
                fix="check state_dir: it must exist, be writable and have free space",
            ) from exc
        target = database_target(self.dir, database)
        if read_only:  # one connection that cannot write (nii cir verify)
            self.sql = self.wsql = Sql(target, read_only=True)
            try:
                check_not_newer(self.sql)
                self.blobs: BlobStore = self._open_blobs(blobs)
            except BaseException:
                self.sql.close()
                raise
            return
        # Two connections: readers on the event loop, the writer in the commit thread.
        # WAL (SQLite) and MVCC (PostgreSQL) let readers see only committed data while a
        # batch is being written.
        # the readers' connection may run under a deadline (central's event loop reads
        # on it: a database that stops answering must not hold the loop; central._sql)
        self.sql = Sql(target, deadline_s=read_deadline_s)
        try:
            self.wsql = Sql(target)
        except BaseException:
            self.sql.close()
            raise
        try:
            migrate(self.wsql)
            self.blobs = self._open_blobs(blobs)
        except BaseException:
            self.wsql.close()
            self.sql.close()
            raise

    def _open_blobs(self, blobs: BlobStore | Callable[[], BlobStore] | None) -> BlobStore:
        """The blob store ``blobs`` names (see __init__); default the CIR folder's files."""
        if blobs is None:
            return FileBlobStore(self.dir / "blobs", self.dir)
        return blobs() if callable(blobs) else blobs

    def close(self) -> None:
        self.blobs.close()
        self.wsql.close()
        self.sql.close()

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
        with self.wsql.transaction():
            self.wsql.upsert("edges", [row], ["id"])

    def revoke(self, edge_id: str) -> None:
        if self.edge(edge_id) is None:
            raise EnrollmentError(
                f"no edge {edge_id!r} is enrolled", fix="list them with 'nii central edges'"
            )
        self.wsql.execute("UPDATE edges SET revoked_ns = ? WHERE id = ?", [time.time_ns(), edge_id])

    def edge(self, edge_id: str) -> dict[str, Any] | None:
        return self.sql.one("SELECT * FROM edges WHERE id = ?", [edge_id])

    def edge_by_curve(self, curve_z85: str) -> dict[str, Any] | None:
        return self.sql.one("SELECT * FROM edges WHERE curve_public = ?", [curve_z85])

    def edges(self) -> list[dict[str, Any]]:
        return self.sql.rows("SELECT * FROM edges ORDER BY id")

    # -- streams -------------------------------------------------------------------------
    def stream(self, scanner: str) -> StreamState | None:
        r = self.sql.one("SELECT * FROM streams WHERE scanner = ?", [scanner])
        if r is None:
            return None
        top = self.sql.value(
            "SELECT seq FROM blocks WHERE scanner = ? ORDER BY seq DESC LIMIT 1", [scanner]
        )
        if top is not None and top != r["last_seq"]:
            raise NiiError(
                f"the CIR index is inconsistent for {scanner}: stream head {r['last_seq']}, "
                f"last block {top}",
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
        rows = self.sql.rows(
            "SELECT seq, kind, scan_id, hash FROM blocks WHERE scanner = ? "
            "ORDER BY seq DESC LIMIT ?",
            [scanner, limit],
        )
        out: list[tuple[int, int | None, str]] = []
        for seq, kind, scan_id, h in (tuple(r.values()) for r in rows):
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
        h = self.sql.value("SELECT hash FROM blocks WHERE scanner = ? AND seq = ?", [scanner, seq])
        return None if h is None else bytes.fromhex(h)

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
        scans: Mapping[int, ScanBook | Mapping[str, Any]],
        alarms: list[dict[str, Any]],
        *,
        calibrations: Sequence[Mapping[str, Any]] = (),
        leases: Mapping[str, tuple[str, int]] | None = None,
        atr: Iterable[int] = (),
        blobs_written: bool = False,
    ) -> None:
        """Write blobs, sync, then record everything in one transaction.

        ``calibrations`` are the scanner calibrations the batch's scan-start records
        brought (``central._ingest.CalibrationSeen``): each adds a row to
        ``scanner_calibrations`` or moves an existing row's last sighting, in the same
        transaction as the scan rows.

        ``leases``: per scanner of the batch, the (holder, token) this aggregator was
        granted (:meth:`acquire_lease`).  Checked inside the transaction, the lease rows
        locked: an aggregator whose lease was taken over can never commit (fencing).
        None: the only aggregator (the embedded CIR).

        ``atr``: refs of the scans this batch finishes that the live ATR is to judge:
        queued for it (``central._atr_queue``) in the same transaction, so a scan in the
        CIR is never without its work item, whatever happens to this process after.

        ``blobs_written``: the caller has stored the blobs of ``staged`` already (and
        they are durable): only the transaction is left.

        Raises:
            StorageError: A blob or the transaction could not be written (disk full,
                I/O error): nothing of the batch is in the index, the cause is kept.
            LeaseLost: a lease of the batch is another's now; nothing was committed.
        """
        # Until the index row commits the block is not acknowledged: the edge resends it
        # and the same blob is written again under the same name.
        if not blobs_written:
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
        # One explicit transaction: blocks, stream heads, scans, alarms and calibrations
        # commit together or not at all (blocks without their stream head would be an
        # index the chain check cannot trust).
        db = self.wsql
        touched = sorted(
            {str(r["scanner"]) for r in rows} | {str(r["scanner"]) for r in stream_rows}
        )
        try:
            with db.transaction():
                if leases is not None:
                    self._check_leases(touched, leases)
                db.insert("blocks", rows)
                db.upsert("streams", stream_rows, ["scanner"])
                db.upsert("scans", [_scan_row(v) for v in scans.values()], ["ref"])
                db.insert("alarms", alarms)
                enqueue_atr(db, atr, now)
                if calibrations:
                    db.executemany(
                        "INSERT INTO scanner_calibrations (scanner, sha256, document, "
                        "first_seen_ns, last_seen_ns, first_ref, last_ref, scans) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, 1) "
                        "ON CONFLICT (scanner, sha256) DO UPDATE SET "
                        "last_seen_ns = "
                        + db.greatest("scanner_calibrations.last_seen_ns", "excluded.last_seen_ns")
                        + ", last_ref = "
                        + db.greatest("scanner_calibrations.last_ref", "excluded.last_ref")
                        + ", scans = scanner_calibrations.scans + 1",
                        [
                            (c["scanner"], c["sha256"], c["document"], c["seen_ns"],
                             c["seen_ns"], c["ref"], c["ref"])
                            for c in calibrations
                        ],
                    )  # fmt: skip
        except Exception as exc:
            if is_storage_error(exc):
                raise self.storage_error(exc) from exc
            if is_unreachable(exc):  # PostgreSQL down or restarting: retried, alarmed
                raise self.unreachable(exc) from exc
            raise

    def unreachable(self, exc: BaseException) -> StorageError:
        """A StorageError for the CIR's database server being down or gone (``exc``)."""
        return StorageError(
            f"cannot write the CIR's database {self.wsql.location}: {exc}",
            fix="check that the PostgreSQL server is up and reachable; central commits "
            "the waiting blocks by itself once it is",
            path=self.wsql.location,
            free_bytes=-1,
        )

    # -- leases ----------------------------------------------------------------------------
    def acquire_lease(self, scanner: str, holder: str, ttl_s: float) -> int | None:
        """Take or renew the lease of ``scanner``'s stream for ``holder`` (an aggregator:
        ``NAME#BOOT``, ``central._leases``) for ``ttl_s`` seconds of the database's clock.
        A holder with the same NAME as the current one takes it over before expiry.

        Returns:
            The fencing token: the same while ``holder`` keeps the lease, one more at
            each takeover.  None: another holder's lease has not expired.

        On PostgreSQL a process stopped inside a transaction keeps the rows it locked
        (the lease row, its streams' rows, the index entries of the blocks it was
        inserting); stopped in the middle of a pipeline, the server waits for the rest
        of it and its idle-in-transaction timeout never starts. So the take waits at
        most :data:`LEASE_LOCK_WAIT_MS` for the lease row, and whenever a lease is
        taken over, or found expired and locked, the old holder's sessions that have
        been inside one transaction for longer than that are ended
        (``pg_terminate_backend``; the sessions found by their ``application_name``,
        which central sets after the holder: :meth:`name_writer`). The old holder has
        lost the lease, so none of what it was writing could have committed. Ending
        them needs the same database role for every aggregator (or
        ``pg_signal_backend``); without, the streams wait for the stopped process.
        """
        if not self.wsql.postgres:
            return self._acquire_lease(scanner, holder, ttl_s)[0]
        try:
            token, taken_from = self._acquire_lease(scanner, holder, ttl_s)
        except Exception as exc:
            if not _lock_timeout(exc):
                raise
            stuck = self._expired_holder(scanner, holder)
            if stuck is None or not self._end_sessions_of(stuck, scanner):
                return None
            try:
                token, taken_from = self._acquire_lease(scanner, holder, ttl_s)
            except Exception as exc2:
                if not _lock_timeout(exc2):
                    raise
                return None
        if taken_from is not None:
            self._end_sessions_of(taken_from, scanner)
        return token

    def name_writer(self, holder: str) -> None:
        """Name the writer's database session after lease holder ``holder``
        (``NAME#BOOT``): a taker of an expired lease can then end it
        (:meth:`acquire_lease`)."""
        self.wsql.name(_session_of(holder))

    def _expired_holder(self, scanner: str, holder: str) -> str | None:
        """The holder of ``scanner``'s lease if ``holder`` may take it over (it expired,
        or ``holder`` succeeds it), read without waiting for its row's lock."""
        db = self.wsql
        row = db.one("SELECT holder, expires_ns FROM stream_leases WHERE scanner = ?", [scanner])
        if row is None or row["holder"] == holder:
            return None
        old = str(row["holder"])
        return old if _may_take(old, int(row["expires_ns"]), holder, db.now_ns()) else None

    def _end_sessions_of(self, old: str, scanner: str) -> bool:
        """End the sessions of lease holder ``old`` that have been inside one transaction
        for longer than :data:`LEASE_LOCK_WAIT_MS` (a healthy aggregator's transactions
        are shorter); returns whether any was ended."""
        db = self.wsql
        # PostgreSQL 14 on waits (here up to 5 s) until the session is gone, locks and all
        wait = ", 5000" if db.conn.info.server_version >= 140000 else ""
        try:
            ended = int(
                db.value(
                    f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid{wait})) AS n "
                    "FROM pg_stat_activity WHERE application_name = ? "
                    "AND pid <> pg_backend_pid() AND xact_start < clock_timestamp() - "
                    f"interval '{int(LEASE_LOCK_WAIT_MS)} milliseconds'",
                    [_session_of(old)],
                )
                or 0
            )
        except Exception as exc:
            if not is_sql_error(exc):
                raise
            log.warning(
                "the stream lease of %s was %s's, whose session is stuck in a transaction "
                "and cannot be ended: %s (give every aggregator the same database role)",
                scanner,
                old,
                exc,
            )
            return False
        if ended:
            log.warning(
                "ended %d CIR session(s) of aggregator %s, stuck in a transaction after its "
                "lease of %s expired (a process stopped mid-transaction)",
                ended,
                old,
                scanner,
            )
        return ended > 0

    def _acquire_lease(
        self, scanner: str, holder: str, ttl_s: float
    ) -> tuple[int | None, str | None]:
        """(token or None, the holder it was taken over from or None): one transaction."""
        db = self.wsql
        with db.transaction():
            if db.postgres:
                db.execute(f"SET LOCAL lock_timeout = {int(LEASE_LOCK_WAIT_MS)}")
            now = db.now_ns()
            until = now + int(ttl_s * 1e9)
            row = db.one(
                "SELECT holder, token, expires_ns FROM stream_leases WHERE scanner = ?"
                + db.lock_clause(),
                [scanner],
            )
            if row is None:
                db.execute(
                    "INSERT INTO stream_leases (scanner, holder, token, expires_ns) "
                    "VALUES (?, ?, 1, ?)",
                    [scanner, holder, until],
                )
                return 1, None
            if row["holder"] == holder:
                db.execute(
                    "UPDATE stream_leases SET expires_ns = ? WHERE scanner = ?", [until, scanner]
                )
                return int(row["token"]), None
            if not _may_take(str(row["holder"]), int(row["expires_ns"]), holder, now):
                return None, None
            token = int(row["token"]) + 1
            db.execute(
                "UPDATE stream_leases SET holder = ?, token = ?, expires_ns = ? WHERE scanner = ?",
                [holder, token, until, scanner],
            )
            return token, str(row["holder"])

    def renew_leases(self, held: Mapping[str, tuple[str, int]], ttl_s: float) -> list[str]:
        """Extend the leases ``held`` (scanner → (holder, token)) by ``ttl_s``; the
        scanners whose lease is no longer this holder's and token (taken over)."""
        db = self.wsql
        lost = []
        with db.transaction():
            until = db.now_ns() + int(ttl_s * 1e9)
            for scanner, (holder, token) in sorted(held.items()):
                n = db.rowcount(
                    "UPDATE stream_leases SET expires_ns = ? "
                    "WHERE scanner = ? AND holder = ? AND token = ?",
                    [until, scanner, holder, token],
                )
                if n == 0:
                    lost.append(scanner)
        return lost

    def release_lease(self, scanner: str, holder: str, token: int) -> bool:
        """Give the lease up at once (a clean shutdown, an edge gone): another may take
        it now. Returns False if it was no longer ``holder``'s with ``token``."""
        with self.wsql.transaction():
            n = self.wsql.rowcount(
                "UPDATE stream_leases SET expires_ns = 0 "
                "WHERE scanner = ? AND holder = ? AND token = ?",
                [scanner, holder, token],
            )
        return n > 0

    def _check_leases(self, scanners: Sequence[str], leases: Mapping[str, tuple[str, int]]) -> None:
        db = self.wsql
        lost = []
        for scanner in scanners:
            want = leases.get(scanner)
            row = db.one(
                "SELECT holder, token FROM stream_leases WHERE scanner = ?" + db.lock_clause(),
                [scanner],
            )
            if want is None or row is None or (row["holder"], int(row["token"])) != want:
                lost.append(scanner)
        if lost:
            raise LeaseLost(
                f"the stream lease of {', '.join(lost)} is no longer this aggregator's: "
                "another took it over; nothing of the batch was committed",
                lost,
            )

    @property
    def shared_refs(self) -> bool:
        """Whether several aggregators may share this CIR (PostgreSQL): every
        :meth:`next_scan_ref` then allocates a ref of its own from the database."""
        return self.sql.postgres

    def next_scan_ref(self) -> int:
        """The ref for a new scan. SQLite (one aggregator): the highest ref + 1, which the
        caller counts on from. PostgreSQL: a ref allocated from ``scan_ref_seq`` for this
        caller alone (a scan whose commit failed leaves a hole in the numbering)."""
        if self.sql.postgres:
            return int(self.sql.value("SELECT nextval('scan_ref_seq') AS r"))
        return int(self.sql.value("SELECT COALESCE(MAX(ref), 0) AS r FROM scans") or 0) + 1

    def scan(self, ref: int) -> dict[str, Any] | None:
        return self.sql.one("SELECT * FROM scans WHERE ref = ?", [ref])

    def scans(self, scanner: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        if scanner:
            return self.sql.rows(
                "SELECT * FROM scans WHERE scanner = ? ORDER BY ref DESC LIMIT ?", [scanner, limit]
            )
        return self.sql.rows("SELECT * FROM scans ORDER BY ref DESC LIMIT ?", [limit])

    def recent_scans(
        self, scanners: Sequence[str] | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` scans, of ``scanners`` only (None: every scanner; empty:
        none), newest first, without the start and end records."""
        if scanners is not None and not scanners:
            return []
        cols = (
            "ref, scanner, scan_id, container, gd_number, status, started_ns, finished_ns, "
            "lines_planned, lines_received, gaps"
        )
        if scanners is None:
            return self.sql.rows(f"SELECT {cols} FROM scans ORDER BY ref DESC LIMIT ?", [limit])
        marks = ", ".join("?" for _ in scanners)
        return self.sql.rows(
            f"SELECT {cols} FROM scans WHERE scanner IN ({marks}) ORDER BY ref DESC LIMIT ?",
            [*scanners, limit],
        )

    def find_scans(
        self,
        *,
        gd_number: str | None = None,
        container: str | None = None,
        scanners: Sequence[str] | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Scans an audit asks for: by Goods Declaration number, by container number, by
        scanners (a site's) and start time, or any of these together; oldest first.

        Every criterion is indexed (schema step 7), so each stays a few index lookups
        at millions of scans.  ``since_ns`` is inclusive, ``until_ns`` exclusive, both ns
        since the epoch on the scans' ``started_ns``; ``scanners`` empty matches none.

        Returns:
            Up to ``limit`` rows of ``scans`` without the start and end records:
            ``ref, scanner, scan_id, container, gd_number, status, started_ns,
            finished_ns, lines_received, gaps``.

        Raises:
            ValueError: no criterion given (that would be the whole table).
        """
        where: list[str] = []
        params: list[Any] = []
        if gd_number is not None:
            where.append("gd_number = ?")
            params.append(gd_number)
        if container is not None:
            where.append("container = ?")
            params.append(container)
        if scanners is not None:
            if not scanners:
                return []
            where.append(f"scanner IN ({', '.join('?' for _ in scanners)})")
            params.extend(scanners)
        if since_ns is not None:
            where.append("started_ns >= ?")
            params.append(since_ns)
        if until_ns is not None:
            where.append("started_ns < ?")
            params.append(until_ns)
        if not where:
            raise ValueError("find_scans needs at least one criterion")
        return self.sql.rows(
            "SELECT ref, scanner, scan_id, container, gd_number, status, started_ns, "
            "finished_ns, lines_received, gaps FROM scans WHERE "
            + " AND ".join(where)
            + " ORDER BY started_ns, ref LIMIT ?",
            [*params, int(limit)],
        )

    def alarm_rows(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.sql.rows("SELECT * FROM alarms ORDER BY id DESC LIMIT ?", [limit])

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
        return self.sql.rows(
            "SELECT * FROM scanner_calibrations WHERE scanner = ? "
            "ORDER BY last_ref DESC, last_seen_ns DESC",
            [scanner],
        )

    def scanner_ids(self) -> list[str]:
        """Every scanner the CIR has a stream or a scan of, sorted."""
        rows = self.sql.rows(
            "SELECT scanner FROM streams UNION SELECT DISTINCT scanner FROM scans ORDER BY 1"
        )
        return [str(r["scanner"]) for r in rows]

    # -- reading -------------------------------------------------------------------------
    def read_block(self, h: str) -> Block:
        """The block whose hash is ``h``, checked against its name.

        Raises:
            central._blobs.BlobMissing: no such blob.
            IntegrityError: the blob does not parse, or its hash is not ``h`` (it was
                replaced or damaged).
        """
        try:
            block = parse(self.blobs.get(h))
        except IntegrityError as exc:
            raise IntegrityError(
                f"blob {h} is not a sealed block ({exc.message}): replaced or damaged",
                reason=exc.reason,
            ) from exc
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
        indexed = {str(r["hash"]) for r in self.sql.rows("SELECT hash FROM blocks")}
        return sorted(n for n in self.blobs.names() if n not in indexed)

    def scan_blocks(self, scan_ref: int, after_seq: int = -1) -> Iterator[dict[str, Any]]:
        """The index rows of scan ``scan_ref``'s blocks after ``after_seq``, in order."""
        yield from self.sql.rows(
            "SELECT * FROM blocks WHERE scan_ref = ? AND seq > ? ORDER BY seq",
            [scan_ref, after_seq],
        )

    def scan_data_blocks(self, scan_ref: int) -> Iterator[Block]:
        """The committed DATA blocks filed under scan ``scan_ref``, in chain order, read
        again from their blobs (the ingest replays them after a restart to restore the
        scan's shape, ``central._shape``).

        Raises:
            central._blobs.BlobMissing: a blob is gone.
            IntegrityError: a blob is damaged or replaced.
        """
        for row in self.scan_blocks(scan_ref):
            if row["kind"] == "data":
                yield self.read_block(row["hash"])

    def stream_blocks(self, scanner: str) -> Iterator[dict[str, Any]]:
        yield from self.sql.rows("SELECT * FROM blocks WHERE scanner = ? ORDER BY seq", [scanner])


def central_blobs(cfg: CentralConfig) -> BlobStore:
    """The blob store that central's configuration names (``blobs``, ``s3_endpoint``,
    ``s3_credentials``).

    Raises:
        ConfigError: it cannot be opened (see ``central._blobs.open_blob_store``).
    """
    return open_blob_store(
        cfg.blobs, cfg.state_dir, endpoint=cfg.s3_endpoint, credentials=cfg.s3_credentials
    )


def _may_take(current: str, expires_ns: int, holder: str, now_ns: int) -> bool:
    """Whether ``holder`` may take a lease ``current`` holds until ``expires_ns``: once it
    expired, or at once when ``holder`` (``NAME#BOOT``) succeeds its own NAME's earlier
    process (central._leases: that process is gone)."""
    return expires_ns <= now_ns or current.split("#")[0] == holder.split("#")[0]


def _session_of(holder: str) -> str:
    """The ``application_name`` of lease holder ``holder``'s writer session: ``NAME#BOOT``
    as ``nii BOOT NAME``, so that the cut to 63 bytes takes the long NAME, not the BOOT
    that tells two processes of one NAME apart."""
    name, _, boot = holder.rpartition("#")
    return session_name(f"nii {boot} {name}" if name else f"nii {holder}")


def _lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL's lock_timeout (SQLSTATE 55P03, lock_not_available)."""
    return getattr(exc, "sqlstate", None) == "55P03"


def open_cir(
    cfg: CentralConfig,
    *,
    create: bool = True,
    read_only: bool = False,
    read_deadline_s: float | None = None,
) -> Cir:
    """The CIR of central's configuration: its ``state_dir`` and its blob store;
    ``read_deadline_s``: see :class:`Cir`."""
    return Cir(
        cfg.state_dir,
        create=create and not read_only,
        blobs=lambda: central_blobs(cfg),
        database=cfg.cir,
        read_only=read_only,
        read_deadline_s=read_deadline_s,
    )


def database_target(state_dir: Path, database: str = "") -> str:
    """Where the CIR's metadata is, for ``central._sql.Sql``: the PostgreSQL URL
    ``database``, or (empty) the SQLite file ``state_dir/cir.sqlite``."""
    return database or str(Path(state_dir) / "cir.sqlite")


def _scan_row(scan: ScanBook | Mapping[str, Any]) -> dict[str, Any]:
    return scan.row() if isinstance(scan, ScanBook) else dict(scan)
