"""Copy an embedded CIR (SQLite and a folder of blobs) into a national one (PostgreSQL
and an S3-compatible object store): ``nii cir migrate``.

What is copied is read from the schema, not listed by hand: every table of the
source must have an entry in :data:`TABLES` (how it is copied, or why it is not),
and a table without one stops the migration before anything is written.  A test
holds :data:`TABLES` to what :data:`central._sql.MIGRATIONS` creates, so a later
schema step cannot be forgotten here.

The order keeps the CIR's own rule, blobs first and index after (decision 0003):
a batch of block rows is inserted only once the blobs they name are in the target
store.  So a migration cut short anywhere can be run again: a block row already in
the target says its blob is there too, every row is inserted with ``ON CONFLICT DO
NOTHING`` and read back and compared in the same transaction, and a row that the
target holds with other values stops the run (the target holds another CIR's data,
or central has written to it since).  At the end every chain of the target is
verified as ``nii cir verify`` does (``central._reader.verify_stream``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from central._blobs import BlobStore, open_blob_store
from central._cir import Cir, open_cir
from central._reader import ChainReport, verify_stream
from central._sql import Sql, is_postgres_url, is_sql_error, schema_version
from core.config import CentralConfig
from core.errors import ConfigError, NiiError
from core.keys import CirKey
from core.seal import Opener


@dataclass(frozen=True)
class TableCopy:
    """How one table is copied.

    Attributes:
        key: its primary key: the order rows are copied in and what two rows are matched
            by when the target holds one already.
        identity: a PostgreSQL identity column whose sequence must move past the copied
            ids (else the target's next insert takes an id the copy used).
        sequence: ``(name, column)``: a PostgreSQL sequence that hands out the column's
            values (``scan_ref_seq`` for scan refs), moved past the copied ones.
    """

    key: tuple[str, ...]
    identity: str = ""
    sequence: tuple[str, str] | None = None


#: Every table of the CIR's schema: how it is copied, in this order (blocks before the
#: stream heads that name their last block), or None with the reason it is not.
TABLES: dict[str, TableCopy | None] = {
    "edges": TableCopy(("id",)),
    "scans": TableCopy(("ref",), sequence=("scan_ref_seq", "ref")),
    "blocks": TableCopy(("scanner", "seq")),  # with their blobs, first
    "streams": TableCopy(("scanner",)),
    "scanner_calibrations": TableCopy(("scanner", "sha256")),
    "alarms": TableCopy(("id",), identity="id"),
    "verdicts": TableCopy(("ref",)),
    "att": TableCopy(("ref_b",)),
    # history: inserted only, ids kept, so that ``corrects`` still names the right row
    "confirmations": TableCopy(("id",), identity="id"),
    "profiles": TableCopy(("version", "heading")),
    "uptime_entries": TableCopy(("scanner", "log", "seq")),
    "uptime_logs": TableCopy(("scanner", "log")),
    "uptime_alerts": TableCopy(("scanner", "period")),
    "uptime_commissioned": TableCopy(("scanner",)),
    # the live ATR's queue: what was judged, and what still waits for a worker
    "atr_work": TableCopy(("scan_ref",)),
    # who writes a stream now: the national aggregators take leases afresh
    "stream_leases": None,
    # the control room's accounts and its evidence: inserted only, ids kept (decisions
    # before the annotations that name them)
    "users": TableCopy(("name",)),
    "audit_log": TableCopy(("id",), identity="id"),
    "decisions": TableCopy(("id",), identity="id"),
    "annotations": TableCopy(("id",), identity="id"),
    # TIP: where threats were projected, and how each analyst did
    "tip": TableCopy(("ref",)),
    "tip_scores": TableCopy(("id",), identity="id"),
    # the risk system's GDs as it sent them: inserted only, ids kept (the GDs before the
    # containers that name them)
    "risk_gds": TableCopy(("id",), identity="id"),
    "risk_gd_containers": TableCopy(("gd", "container")),
    # the risk system's event outbox is made again by the target's own triggers as the
    # verdicts, ATT results and decisions are copied (its ids are the target's commit
    # order), so the webhook's cursor into the source's outbox means nothing there: the
    # webhook starts again from the first event and the RMS drops the ones it has (by
    # event id, which names the source row and stays the same: docs/risk-api.md)
    "risk_events": None,
    "risk_webhook": None,
    # who is logged in now: users log in afresh to the control room of the national CIR
    "sessions": None,
}

#: The engines' own bookkeeping, not the CIR's data.
INTERNAL = frozenset({"sqlite_sequence", "sqlite_stat1", "schema_version"})

#: Rows per batch (one transaction on the target) and blob bytes held in memory at once.
BATCH_ROWS = 500
BATCH_BYTES = 64 << 20


class MigrationConflict(NiiError):
    """The target holds other data than the source under the same key."""


@dataclass
class MigrationReport:
    """What a migration did.

    Attributes:
        scanners: scanners (streams) of the source.
        blocks: block rows of the source.
        blob_bytes: bytes of the blobs those rows name.
        copied_blobs: blobs written to the target store by this run (0 when both are the
            same store, or when an earlier run had copied them).
        copied_bytes: their bytes.
        rows: table → rows of the source.
        inserted: table → rows this run inserted (the rest were in the target already).
        chains: the target's chains as verified afterwards.
        scan_rows_checked: whether the scan rows were checked against their blocks too
            (they need the CIR key).
        seconds: wall time of the whole run.
    """

    scanners: int = 0
    blocks: int = 0
    blob_bytes: int = 0
    copied_blobs: int = 0
    copied_bytes: int = 0
    scan_rows_checked: bool = False
    rows: dict[str, int] = field(default_factory=dict)
    inserted: dict[str, int] = field(default_factory=dict)
    chains: list[ChainReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every chain of the target verified."""
        return all(c.ok for c in self.chains)


class Progress:
    """Progress lines on a stream (stderr), at most one every ``every_s`` seconds."""

    def __init__(self, out: TextIO | None, every_s: float = 2.0) -> None:
        self.out = out
        self.every_s = every_s
        self._last = time.monotonic()

    def say(self, text: str, *, force: bool = False) -> None:
        """Print ``text`` if the last line is old enough (or ``force``)."""
        if self.out is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            print(f"migrate: {text}", file=self.out, flush=True)


def copy_plan(source: Sql) -> list[tuple[str, TableCopy]]:
    """The tables of ``source`` to copy, in :data:`TABLES` order.

    Raises:
        ConfigError: the source has a table :data:`TABLES` does not know.
    """
    have = {t for t in source.tables() if t not in INTERNAL and not t.startswith("sqlite_")}
    unknown = sorted(have - set(TABLES))
    if unknown:
        raise ConfigError(
            f"the CIR {source.location} has table(s) this migration does not know how to "
            f"copy: {', '.join(unknown)}; nothing was copied",
            fix="use the release of this platform that wrote this CIR (its migration "
            "knows its tables), or add the table to central._migrate.TABLES",
        )
    return [(t, c) for t, c in TABLES.items() if c is not None and t in have]


def columns(db: Sql, table: str) -> list[str]:
    """The column names of ``table``, in their order."""
    if db.postgres:
        rows = db.rows(
            "SELECT column_name AS name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
    else:
        rows = db.rows(f'PRAGMA table_info("{table}")')
    return [str(r["name"]) for r in rows]


def same_database(a: Sql, b: Sql) -> bool:
    """Whether two PostgreSQL connections reach the same database (however their URLs
    name it): an advisory lock one holds is refused to the other (advisory locks belong
    to one database of one server).  Two SQLite files: the same file."""
    if a.postgres != b.postgres:
        return False
    if not a.postgres:
        try:
            return Path(a.target).resolve().samefile(Path(b.target).resolve())
        except OSError:
            return False
    import secrets

    k = secrets.randbits(62)
    a.execute("SELECT pg_advisory_lock(?)", [k])
    try:
        return not bool(b.value("SELECT pg_try_advisory_lock(?) AS got", [k]))
    finally:
        b.execute("SELECT pg_advisory_unlock_all()")
        a.execute("SELECT pg_advisory_unlock(?)", [k])


def _q(name: str) -> str:
    return f'"{name}"'


def _batches(db: Sql, table: str, key: Sequence[str], n: int) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``table`` in ``key`` order, ``n`` at a time (keyset pagination)."""
    order = ", ".join(_q(k) for k in key)
    last: tuple[Any, ...] | None = None
    while True:
        where = ""
        params: list[Any] = []
        if last is not None:
            where = f"WHERE ({order}) > ({', '.join('?' for _ in key)}) "
            params = list(last)
        rows = db.rows(f"SELECT * FROM {_q(table)} {where}ORDER BY {order} LIMIT ?", [*params, n])
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][k] for k in key)


def _key(row: dict[str, Any], key: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row[k] for k in key)


def _target_rows(
    db: Sql, table: str, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The target's rows of ``table`` with these keys, by key."""
    if not keys:
        return {}
    cols = ", ".join(_q(k) for k in key)
    one = "(" + ", ".join("?" for _ in key) + ")"
    sql = f"SELECT * FROM {_q(table)} WHERE ({cols}) IN ({', '.join(one for _ in keys)})"
    rows = db.rows(sql, [v for k in keys for v in k])
    return {_key(r, key): r for r in rows}


def _differs(src: dict[str, Any], dst: dict[str, Any], cols: Sequence[str]) -> list[str]:
    return [c for c in cols if src.get(c) != dst.get(c)]


def _conflict(
    target: Sql, table: str, key: Sequence[str], row: dict[str, Any], got: dict[str, Any] | None,
    cols: Sequence[str], *, before: bool = False,
) -> MigrationConflict:  # fmt: skip
    where = f"{table} ({', '.join(key)}) = {_key(row, key)!r}"
    if got is None:
        what = "refused the row (another row holds one of its unique values)"
    else:
        diff = _differs(row, got, cols)
        what = "holds other data: " + ", ".join(
            f"{c} {str(got.get(c))[:40]!r} (this CIR: {str(row.get(c))[:40]!r})" for c in diff
        )
    return MigrationConflict(
        f"the target {target.location} {what} at {where}; "
        + (
            "nothing was copied"
            if before
            else "the rows copied before it stay, nothing of this batch was written"
        ),
        fix="migrate into an empty database and blob prefix: this one holds another CIR's "
        "data, or central has written to it since an earlier run",
    )


class _Copier:
    def __init__(
        self, source: Cir, target: Cir, *, copy_blobs: bool, progress: Progress,
        batch_rows: int, batch_bytes: int,
    ) -> None:  # fmt: skip
        self.source = source
        self.target = target
        self.copy_blobs = copy_blobs
        self.progress = progress
        self.batch_rows = batch_rows
        self.batch_bytes = batch_bytes
        self.report = MigrationReport()

    def columns_for(self, table: str) -> list[str]:
        src = columns(self.source.sql, table)
        dst = set(columns(self.target.sql, table))
        missing = [c for c in src if c not in dst]
        if missing:
            raise ConfigError(
                f"table {table} of the target {self.target.sql.location} has no column(s) "
                f"{', '.join(missing)} that the source has; nothing of it was copied",
                fix="bring both to the same release of this platform (it makes the "
                "target's schema)",
            )
        return src

    def preflight(self, plan: Sequence[tuple[str, TableCopy]]) -> None:
        """Compare, before writing anything, each table's first batch and each chain's
        head with what the target holds: a target that holds another CIR is refused
        before a single row is copied."""
        for table, spec in plan:
            cols = self.columns_for(table)
            first = next(_batches(self.source.sql, table, spec.key, self.batch_rows), [])
            got = _target_rows(self.target.sql, table, spec.key, [_key(r, spec.key) for r in first])
            for row in first:
                dst = got.get(_key(row, spec.key))
                if dst is not None and _differs(row, dst, cols):
                    raise _conflict(self.target.sql, table, spec.key, row, dst, cols, before=True)
        # blocks are hash-chained: the target's head of a chain names all before it
        for scanner in self.source.scanner_ids():
            top = self.target.sql.value(
                "SELECT MAX(seq) AS s FROM blocks WHERE scanner = ?", [scanner]
            )
            if top is None:
                continue
            mine = self.source.block_hash(scanner, int(top))
            theirs = self.target.block_hash(scanner, int(top))
            if mine != theirs:
                have = self.source.sql.value(
                    "SELECT MAX(seq) AS s FROM blocks WHERE scanner = ?", [scanner]
                )
                raise MigrationConflict(
                    f"the target {self.target.sql.location} holds another chain of scanner "
                    f"{scanner!r}: its block {top} "
                    + ("differs from this CIR's" if mine is not None else
                       f"is beyond this CIR's last ({have})")
                    + "; nothing was copied",
                    fix="migrate into an empty database and blob prefix: this one holds "
                    "another CIR's data, or central has written to it since an earlier run",
                )  # fmt: skip

    def table(self, table: str, spec: TableCopy) -> None:
        cols = self.columns_for(table)
        total = int(self.source.sql.value(f"SELECT COUNT(*) AS n FROM {_q(table)}") or 0)
        self.report.rows[table] = total
        self.report.inserted[table] = 0
        done = 0
        insert = (
            f"INSERT INTO {_q(table)} ({', '.join(_q(c) for c in cols)}) "
            f"VALUES ({', '.join('?' for _ in cols)}) ON CONFLICT DO NOTHING"
        )
        for rows in _batches(self.source.sql, table, spec.key, self.batch_rows):
            keys = [_key(r, spec.key) for r in rows]
            have = _target_rows(self.target.sql, table, spec.key, keys)
            new = []
            for row, k in zip(rows, keys, strict=True):
                dst = have.get(k)
                if dst is None:
                    new.append(row)
                elif _differs(row, dst, cols):
                    raise _conflict(self.target.sql, table, spec.key, row, dst, cols)
            if table == "blocks":
                self.report.blob_bytes += sum(int(r["size"] or 0) for r in rows)
                self.blobs(new)  # blobs first, their rows after
            if new:
                self.insert(table, spec, cols, insert, new)
            self.report.inserted[table] += len(new)
            done += len(rows)
            self.progress.say(f"{table}: {done:,} of {total:,} rows{self._bytes()}")
        if spec.identity and self.target.sql.postgres:
            col = spec.identity
            self.target.wsql.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{col}'), m) "
                f"FROM (SELECT MAX({_q(col)}) AS m FROM {_q(table)}) t WHERE m IS NOT NULL"
            )
        if spec.sequence is not None and self.target.sql.postgres:
            name, col = spec.sequence
            self.target.wsql.execute(
                f"SELECT setval('{name}', m + 1, false) "
                f"FROM (SELECT MAX({_q(col)}) AS m FROM {_q(table)}) t WHERE m IS NOT NULL"
            )
        self.progress.say(f"{table}: {total:,} rows", force=True)

    def _bytes(self) -> str:
        if not self.report.copied_bytes:
            return ""
        return f", {self.report.copied_bytes / 1e9:.2f} GB of blobs copied"

    def insert(
        self, table: str, spec: TableCopy, cols: Sequence[str], sql: str,
        rows: Sequence[dict[str, Any]],
    ) -> None:  # fmt: skip
        db = self.target.wsql
        try:
            with db.transaction():
                db.executemany(sql, [[r.get(c) for c in cols] for r in rows])
                back = _target_rows(db, table, spec.key, [_key(r, spec.key) for r in rows])
                for row in rows:
                    got = back.get(_key(row, spec.key))
                    if got is None or _differs(row, got, cols):
                        raise _conflict(db, table, spec.key, row, got, cols)
        except NiiError:
            raise
        except Exception as exc:
            if not _db_error(exc):
                raise
            first = _key(rows[0], spec.key)
            raise ConfigError(
                f"cannot copy {table} rows from {spec.key} = {first!r} on into "
                f"{db.location}: {exc}",
                fix="check the target database (up, writable, free space) and run the same "
                "command again: it carries on where it stopped",
            ) from exc

    def blobs(self, rows: Sequence[dict[str, Any]]) -> None:
        """Put the blobs of ``rows`` (block rows) into the target store, in batches of at
        most ``batch_bytes``; each read from the source is checked against its name."""
        if not self.copy_blobs:
            return
        chunk: list[tuple[bytes, bytes]] = []
        size = 0
        for row in rows:
            raw = bytes(self.source.read_block(row["hash"]).raw)
            chunk.append((bytes.fromhex(row["hash"]), raw))
            size += len(raw)
            if size >= self.batch_bytes:
                self._put(chunk)
                chunk, size = [], 0
        self._put(chunk)

    def _put(self, chunk: list[tuple[bytes, bytes]]) -> None:
        if not chunk:
            return
        self.target.blobs.put(chunk)
        self.report.copied_blobs += len(chunk)
        self.report.copied_bytes += sum(len(raw) for _, raw in chunk)


def _db_error(exc: BaseException) -> bool:
    return is_sql_error(exc)


def copy_cir(
    source: Cir,
    target: Cir,
    *,
    copy_blobs: bool = True,
    progress: TextIO | None = None,
    batch_rows: int = BATCH_ROWS,
    batch_bytes: int = BATCH_BYTES,
    opener: Opener | None = None,
) -> MigrationReport:
    """Copy every row and blob of ``source`` into ``target``, then verify every chain of
    ``target`` (and, with ``opener``, the CIR key, every scan row against its signed
    blocks).  Restartable: a run after one cut short carries on without duplicating.

    Args:
        source: the CIR to copy (nothing else may write it meanwhile).
        target: the CIR to copy into, its schema made (:class:`central._cir.Cir` does).
        copy_blobs: False when both use the same blob store (nothing to copy).
        progress: where progress lines go (stderr), at most one every 2 s; None: none.
        batch_rows: rows per transaction on the target.
        batch_bytes: blob bytes held in memory and put at once.

    Returns:
        What was copied, and the target's chains as verified.

    Raises:
        ConfigError: a table the migration does not know, a target whose schema lacks a
            column, or a target that cannot be written.
        MigrationConflict: the target holds other data under a key of the source.
        StorageError: a blob could not be written to the target store.
        IntegrityError: a source blob is not the block its row names.
    """
    t0 = time.monotonic()
    prog = Progress(progress)
    have, want = schema_version(source.sql), schema_version(target.sql)
    if have != want:
        raise ConfigError(
            f"the source CIR is at schema version {have}, the target at {want}",
            fix="bring both to the same release of this platform before migrating",
        )
    plan = copy_plan(source.sql)
    copier = _Copier(
        source, target, copy_blobs=copy_blobs, progress=prog,
        batch_rows=batch_rows, batch_bytes=batch_bytes,
    )  # fmt: skip
    copier.preflight(plan)
    for table, spec in plan:
        copier.table(table, spec)
    rep = copier.report
    rep.blocks = rep.rows.get("blocks", 0)
    scanners = [str(r["scanner"]) for r in target.sql.rows("SELECT scanner FROM streams")]
    rep.scanners = len(source.sql.rows("SELECT scanner FROM streams"))
    for s in sorted(scanners):
        prog.say(f"verifying the chain of {s} on the target", force=True)
        rep.chains.append(verify_stream(target, s, opener))
    rep.scan_rows_checked = opener is not None
    rep.seconds = time.monotonic() - t0
    return rep


def _opener(cfg: CentralConfig, err: TextIO) -> Opener | None:
    """The CIR key's opener for checking scan rows, or None (and a line on ``err``)."""
    try:
        return Opener(CirKey.load(cfg.key).x25519_private)
    except NiiError as exc:
        print(f"scan rows will not be checked (they need the CIR key): {exc.message}", file=err)
        return None


def _safe_url(url: str) -> str:
    from central._sql import _safe

    return _safe(url)


def _open_target(cfg: CentralConfig, to: str, blobs: BlobStore) -> Cir:
    """The target CIR on ``to``, its schema made; an unreachable one is one error about
    ``--to``."""
    try:
        return Cir(cfg.state_dir, blobs=blobs, database=to)
    except ConfigError as exc:
        if not exc.message.startswith("cannot reach"):
            raise
        raise ConfigError(
            " ".join(exc.message.split()),  # psycopg's reason runs over several lines
            fix="check --to: the server must be up, the database must exist and the user "
            "may log in (the password in ~/.pgpass or PGPASSWORD)",
        ) from exc


def _toml(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def migrate_command(
    cfg: CentralConfig,
    *,
    to: str,
    blobs: str | None = None,
    s3_endpoint: str | None = None,
    s3_credentials: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``nii cir migrate``: copy the CIR of ``cfg`` into the national one at ``to``
    (PostgreSQL) and ``blobs`` (``s3://bucket/prefix``; None: the blobs stay where
    ``cfg`` keeps them), verify it, and print a summary and the settings to change.

    Returns:
        0 when every chain of the target verified, 1 when one did not.

    Raises:
        ConfigError: a malformed or unreachable target, the target is the source, central
            runs on this CIR, or anything :func:`copy_cir` refuses.
        MigrationConflict: the target holds other data.
    """
    from core.locks import hold

    out = out or sys.stdout
    err = err or sys.stderr
    if not is_postgres_url(to):
        raise ConfigError(
            f"--to {to!r} is not a PostgreSQL URL",
            fix='give the national database, e.g. --to "postgresql://nii@db.example.org/nii" '
            "(the password in ~/.pgpass or PGPASSWORD)",
        )
    if blobs is not None and not (
        blobs == "file" or (blobs.startswith("s3://") and len(blobs) > 5)
    ):
        raise ConfigError(
            f"--blobs {blobs!r} is not a blob store",
            fix='give "s3://bucket/prefix" (or leave --blobs out to keep the blobs where they are)',
        )
    endpoint = cfg.s3_endpoint if s3_endpoint is None else s3_endpoint
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(
            f"--s3-endpoint {endpoint!r} is not a URL", fix="write e.g. http://127.0.0.1:8333"
        )
    creds = cfg.s3_credentials if s3_credentials is None else s3_credentials
    if not cfg.cir and not (cfg.state_dir / "cir.sqlite").exists():
        raise ConfigError(
            f"there is no CIR in {cfg.state_dir} (state_dir of {cfg.path})",
            fix="check state_dir in the central configuration (--config)",
        )
    # nothing may write the source meanwhile: central on it holds the same lock
    lock = hold(cfg.state_dir, "central (or another migration)", name="central")
    source: Cir | None = None
    target: Cir | None = None
    target_blobs: BlobStore | None = None
    try:
        source = open_cir(cfg, create=False)
        same_store = blobs is None or (blobs == cfg.blobs and endpoint == cfg.s3_endpoint)
        if not same_store:
            assert blobs is not None
            target_blobs = open_blob_store(
                blobs, cfg.state_dir, endpoint=endpoint, credentials=creds
            )
            same_store = target_blobs.location == source.blobs.location and (
                endpoint == cfg.s3_endpoint
            )
        target = _open_target(cfg, to, source.blobs if target_blobs is None else target_blobs)
        if same_database(source.sql, target.sql):
            raise ConfigError(
                f"--to {_safe_url(to)} is this configuration's CIR itself: nothing to migrate",
                fix="give another, empty database as --to",
            )
        print(
            f"migrate: {source.sql.location} + {source.blobs.location} -> "
            f"{target.sql.location} + {target.blobs.location}",
            file=err,
            flush=True,
        )
        rep = copy_cir(
            source, target, copy_blobs=not same_store, progress=err, opener=_opener(cfg, err)
        )
    finally:
        if target is not None:  # its blob store is the source's or target_blobs
            target.wsql.close()
            target.sql.close()
        if target_blobs is not None:
            target_blobs.close()
        if source is not None:
            source.close()
        lock.release()
    copied = (
        f"{rep.copied_blobs:,} blobs ({rep.copied_bytes:,} bytes) copied by this run"
        if not same_store
        else "blobs left where they are"
    )
    print(
        f"migrated {rep.scanners} scanner(s), {rep.blocks:,} blocks, {rep.blob_bytes:,} bytes "
        f"of blobs ({copied}), {sum(rep.rows.values()):,} rows "
        f"({sum(rep.inserted.values()):,} inserted by this run) in {rep.seconds:.1f} s",
        file=out,
    )
    bad = [c for c in rep.chains if not c.ok]
    for c in rep.chains:
        status = "OK" if c.ok else "FAILED"
        print(
            f"{c.scanner:<12} edge {c.edge:<12} blocks {c.blocks:>7} "
            f"seq {c.first_seq}..{c.last_seq}: {status}",
            file=out,
        )
        for p in c.problems[:20]:
            print(f"    {p}", file=out)
    if bad:
        print(
            f"{len(bad)} of {len(rep.chains)} chains failed verification on the target; "
            "run 'nii cir verify' on the source: a chain broken there is copied broken",
            file=out,
        )
        return 1
    print(
        f"all {len(rep.chains)} chains verified on the target: signatures, digests, links, "
        + ("index rows and scan rows intact" if rep.scan_rows_checked else "index rows intact"),
        file=out,
    )
    print(f"now set in [central] of {cfg.path} (and stop using {cfg.state_dir}'s CIR):", file=out)
    print(f"  cir = {_toml(_safe_url(to).replace(':***@', '@'))}", file=out)
    if not same_store and blobs is not None:
        print(f"  blobs = {_toml(blobs)}", file=out)
        if endpoint:
            print(f"  s3_endpoint = {_toml(endpoint)}", file=out)
        if creds is not None:
            print(f"  s3_credentials = {_toml(str(creds))}", file=out)
    if ":***@" in _safe_url(to):
        print("  (the password goes in ~/.pgpass or PGPASSWORD, not in central.toml)", file=out)
    return 0
