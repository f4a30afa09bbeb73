"""One SQL connection for the CIR's metadata, on SQLite or PostgreSQL.

The CIR's queries are written once, in the subset of SQL both engines share, with
``?`` placeholders; :class:`Sql` runs them on either (turning ``?`` into psycopg's
``%s`` on PostgreSQL).  What differs is behind small helpers: :meth:`Sql.upsert`
(``INSERT … ON CONFLICT … DO UPDATE``, both engines), :meth:`Sql.greatest` and
:meth:`Sql.least` (``max(a, b)`` / ``GREATEST(a, b)``) and :meth:`Sql.transaction`
(``BEGIN IMMEDIATE`` on SQLite, so a writer waits for the lock at the start, not at
its first write).

This is the one module that opens SQLite: every reader and writer of the CIR's
tables (aggregator, ``nii cir …``, uptime, coverage, ATR, benchmarks) comes through
:class:`Sql`, and tells the engines' errors apart with :func:`is_sql_error` and
:func:`is_storage_error`.

Schema versions are explicit: :func:`migrate` applies the numbered steps of
:data:`MIGRATIONS` that a database has not had (``PRAGMA user_version`` on SQLite,
the ``schema_version`` table on PostgreSQL), each in its own transaction.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the PostgreSQL server cannot be reached or went away (not a
    mistake in what was asked of it)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency
        return False
    return isinstance(exc, psycopg.OperationalError)


def is_sql_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the database engine's own error (``sqlite3.Error`` or
    ``psycopg.Error``): the statement failed in the database, not in our code."""
    return isinstance(exc, sqlite3.Error) or _pg_error(exc)


def is_lock_error(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (or busy): another process holds
    the file, not a fault of the file or of what was asked."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _read_only(path: Path, timeout_s: float) -> sqlite3.Connection:
    """A connection that cannot change ``path`` (``mode=ro``: no write, no checkpoint on
    close). A WAL database in a folder this user may not write (an auditor's copy, a
    read-only mount) cannot be opened so, as SQLite would make its ``-shm`` file: it
    is opened ``immutable`` then, which no one can be writing meanwhile."""
    from urllib.request import pathname2url

    url = "file:" + pathname2url(str(Path(path).absolute()))
    conn = sqlite3.connect(
        url + "?mode=ro", uri=True, timeout=timeout_s, check_same_thread=False,
        isolation_level=None,
    )  # fmt: skip
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        if os.access(Path(path).parent, os.W_OK):
            raise
        conn.close()
    return sqlite3.connect(
        url + "?mode=ro&immutable=1", uri=True, timeout=timeout_s, check_same_thread=False,
        isolation_level=None,
    )  # fmt: skip


def sqlite_fix(exc: BaseException) -> str:
    """What to do about SQLite error ``exc`` on the CIR's file: a lock held by another
    process, a damaged file and a full or unwritable disk each have their own remedy."""
    if is_lock_error(exc):
        return (
            "another process holds the CIR's database locked (a sqlite3 shell or a backup "
            "tool in exclusive mode): end it, then run this again"
        )
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return "the file is damaged or no CIR: run 'nii cir verify', restore it from its backup"
    return "check state_dir: it must exist, be writable and have free space"


def is_storage_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk under the database (or a blob) is full or failing,
    not a bug of ours: an ``OSError`` with ENOSPC, EDQUOT, EIO or EROFS, or SQLite's
    ``OperationalError`` for a full disk, an I/O error or a file it cannot open."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN):
        return True
    text = str(exc).lower()
    return "full" in text or "disk i/o" in text


def temporary_error_types() -> tuple[type[BaseException], ...]:
    """The exception classes :func:`is_temporary` looks at (for a web framework's
    handlers: SQLite's and psycopg's operational errors, and ``OSError``)."""
    kinds: list[type[BaseException]] = [sqlite3.OperationalError, OSError]
    try:
        import psycopg

        kinds.append(psycopg.OperationalError)
    except ImportError:  # pragma: no cover - a dependency
        pass
    return tuple(kinds)


def is_temporary(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be used just now (unreachable, its disk
    full or failing, or SQLite's database locked or busy): a request can be tried again,
    it is not a mistake in what was asked."""
    return is_unreachable(exc) or is_storage_error(exc) or isinstance(exc, sqlite3.OperationalError)


def is_postgres_url(spec: str | Path) -> bool:
    """Whether ``spec`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return str(spec).startswith(("postgresql://", "postgres://"))


def session_name(name: str) -> str:
    """``name`` as PostgreSQL keeps an ``application_name``: printable ASCII (others
    become ``?``), at most 63 bytes."""
    return "".join(c if " " <= c <= "~" else "?" for c in name)[:63]


#: PostgreSQL ends a session idle inside a transaction this long (ms): see Sql._pg_connect
IDLE_IN_TRANSACTION_MS = 10_000


RETRY_AFTER_DEADLINE_S = 2.0
"""After a statement ran past its deadline, how long the connection is not tried
again (s): each statement meanwhile fails at once as unreachable."""


class _Deadlines:
    """Ends the connection of a PostgreSQL statement that runs past its deadline.

    A server that stops answering without closing its connections (paused, its disk
    stalled, its machine frozen) is still acknowledged by its kernel: neither TCP's
    timeouts nor a cancel request (which goes to the same stopped server) ends a
    statement that waits on it. One thread shuts the waiting connection's socket
    down instead, so the statement fails with psycopg's OperationalError (unreachable),
    as if the server had gone: the caller's event loop goes on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, tuple[Any, float]] = {}
        self._thread: threading.Thread | None = None

    def start(self, key: int, conn: Any, deadline_s: float) -> None:
        with self._lock:
            self._running[key] = (conn, time.monotonic() + deadline_s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nii-sql-deadline")
                self._thread.daemon = True
                self._thread.start()

    def end(self, key: int) -> None:
        with self._lock:
            self._running.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self._lock:
                late = [(k, c) for k, (c, at) in self._running.items() if now > at]
                for k, _ in late:
                    del self._running[k]
            for _, conn in late:
                # a duplicate of the descriptor: shutting it down ends the socket itself,
                # and psycopg's own descriptor stays its to close
                with (
                    contextlib.suppress(Exception),
                    socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock,
                ):
                    sock.shutdown(socket.SHUT_RDWR)


_DEADLINES = _Deadlines()


class Sql:
    """One connection; not shared between threads (open one per thread)."""

    def __init__(
        self,
        target: str | Path,
        *,
        timeout_s: float = 30.0,
        read_only: bool = False,
        deadline_s: float | None = None,
    ) -> None:
        """Connect to ``target``: a PostgreSQL URL, or the path of a SQLite file
        (made if missing, unless ``read_only``; WAL, ``synchronous=FULL``).

        ``deadline_s`` (PostgreSQL): a statement, or a connection attempt, that takes
        longer fails as unreachable (psycopg's OperationalError), and for
        ``RETRY_AFTER_DEADLINE_S`` after that every statement does at once: for a
        connection that an event loop reads on (``_Deadlines``).

        Raises:
            ConfigError: the database cannot be opened or reached.
        """
        self.target = str(target)
        self.deadline_s = deadline_s
        self._retry_at = 0.0
        #: this session's name to the server (PostgreSQL's application_name; see name())
        self.application_name = "nii"
        if is_postgres_url(target):
            import psycopg

            self.dialect = POSTGRESQL
            try:
                self.conn: Any = self._pg_connect()
            except psycopg.Error as exc:
                raise ConfigError(
                    f"cannot reach the CIR's database {_safe(self.target)}: {exc}",
                    fix="check cir in [central]: the server must be up and the user may log in",
                ) from exc
        else:
            self.dialect = SQLITE
            # SQLite takes an empty file for a new database and would write a schema into
            # it: a CIR cut to nothing is said to be, and left as it is (a CIR has its
            # first page from its first moment: WAL mode writes it)
            path = Path(target)
            if path.is_file() and path.stat().st_size == 0:
                raise ConfigError(
                    f"the CIR's database {target} is empty (0 bytes): it holds no CIR "
                    "(cut short or emptied)",
                    fix="restore it from its backup (docs/scale.md); a new CIR is made "
                    "only where there is no file (remove it if this is a first start "
                    "that was cut short)",
                )
            try:
                if read_only:
                    self.conn = _read_only(path, timeout_s)
                else:
                    self.conn = sqlite3.connect(
                        target, timeout=timeout_s, check_same_thread=False, isolation_level=None
                    )
                self.conn.row_factory = sqlite3.Row
                if not read_only:
                    self.conn.execute("PRAGMA journal_mode=WAL")
                    self.conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as exc:
                raise ConfigError(
                    f"cannot open the CIR's database {target}: {exc}", fix=sqlite_fix(exc)
                ) from exc
        self._depth = 0

    @property
    def postgres(self) -> bool:
        return self.dialect == POSTGRESQL

    def _pg_connect(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        # A process stopped inside a transaction (SIGSTOP, a frozen VM, a partition) would
        # hold its row locks for good, and every other aggregator's lease take or commit on
        # those rows would wait behind it: the server ends such a session after 10 s idle
        # in a transaction (nothing here keeps one open between statements for that long).
        # One stopped in the middle of a pipeline (psycopg's executemany) is not idle to
        # the server, which waits for the rest of it: a lease taker ends that session
        # itself (central._cir.Cir.acquire_lease), found by its application_name.
        # A server that drops off the network (its packets lost, not refused) ends the
        # connection within about 30 s instead of TCP's 15 minutes: keepalive probes
        # while waiting, and tcp_user_timeout for data sent and never acknowledged
        # (libpq's connection parameters).
        return psycopg.connect(
            self.target,
            autocommit=True,
            row_factory=dict_row,
            # libpq counts whole seconds, at least 2
            connect_timeout=10 if self.deadline_s is None else max(2, round(self.deadline_s)),
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=30_000,
            application_name=self.application_name,
            options=f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
        )

    def _ensure(self) -> None:
        """Connect again after the server closed the connection (a restart, a fail-over):
        the statement that found it broken failed; the next one tries afresh."""
        if self.postgres and self._depth == 0 and (self.conn.closed or self.conn.broken):
            import psycopg

            if time.monotonic() < self._retry_at:
                raise psycopg.OperationalError(
                    f"the CIR's database {self.location} did not answer within "
                    f"{self.deadline_s:g} s; trying again shortly"
                )
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = self._pg_connect()

    @contextlib.contextmanager
    def _deadline(self) -> Iterator[None]:
        """The statement inside runs under ``deadline_s`` (PostgreSQL), if one is set."""
        if self.deadline_s is None or not self.postgres:
            yield
            return
        key = id(self)
        _DEADLINES.start(key, self.conn, self.deadline_s)
        try:
            yield
        except Exception:
            if self.conn.broken:  # ended by the watchdog (or the server went)
                self._retry_at = time.monotonic() + RETRY_AFTER_DEADLINE_S
            raise
        finally:
            _DEADLINES.end(key)

    def name(self, name: str) -> None:
        """Name this session to the server (PostgreSQL's ``application_name``, at most
        63 bytes: :func:`session_name`), now and after every reconnection; so that
        another aggregator can tell it among the server's sessions. SQLite: kept only."""
        self.application_name = session_name(name)
        if self.postgres:
            self.value("SELECT set_config('application_name', ?, false)", [self.application_name])

    @property
    def location(self) -> str:
        """The database, for messages (a PostgreSQL URL without its password, or a path)."""
        return _safe(self.target)

    def _sql(self, sql: str) -> str:
        if not self.postgres:
            return sql
        return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; the cursor (rows as mappings).

        A query (``SELECT``) outside a transaction that finds the server gone (it
        restarted since the last one) is tried once more on a fresh connection; anything
        that writes is not: whether it was applied is unknown.
        """
        self._ensure()
        try:
            with self._deadline():
                return self.conn.execute(self._sql(sql), tuple(params))
        except Exception as exc:
            if not (
                self.postgres
                and self._depth == 0
                and is_unreachable(exc)
                and sql.lstrip()[:6].upper() == "SELECT"
            ):
                raise
            self._ensure()
            with self._deadline():
                return self.conn.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each parameter row."""
        if not rows:
            return
        self._ensure()
        if self.postgres:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), [tuple(r) for r in rows])
        else:
            self.conn.executemany(sql, [tuple(r) for r in rows])

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """All rows of a query, as dicts."""
        return [dict(r) for r in self.execute(sql, params).fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row of a query as a dict, or None."""
        r = self.execute(sql, params).fetchone()
        return None if r is None else dict(r)

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        r = self.one(sql, params)
        return None if r is None else next(iter(r.values()))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Sql]:
        """All statements inside commit together or not at all (nested: one)."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        if self.postgres:
            self._ensure()
            self._depth = 1
            try:
                with self.conn.transaction():
                    yield self
            finally:
                self._depth = 0
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self
            self.conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back a failed COMMIT itself; a second ROLLBACK would
            # raise "no transaction is active" and hide the cause
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def upsert(self, table: str, rows: Sequence[dict[str, Any]], key: Sequence[str]) -> None:
        """Insert ``rows`` (dicts with the same keys), replacing the columns they name of
        a row with the same ``key``."""
        if not rows:
            return
        cols = list(rows[0])
        sets = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in key)
        verb = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
        self.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
            f"ON CONFLICT ({', '.join(key)}) {verb}",
            [[r.get(c) for c in cols] for r in rows],
        )

    def insert(
        self, table: str, rows: Sequence[dict[str, Any]], *, skip_existing: Sequence[str] = ()
    ) -> None:
        """Insert ``rows`` (dicts with the same keys).

        ``skip_existing``: the columns of a unique key; a row whose key is in the table
        already is left out (``ON CONFLICT … DO NOTHING``), not an error.
        """
        if not rows:
            return
        cols = list(rows[0])
        tail = f" ON CONFLICT ({', '.join(skip_existing)}) DO NOTHING" if skip_existing else ""
        self.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
            + tail,
            [[r.get(c) for c in cols] for r in rows],
        )

    def now_ns(self) -> int:
        """The database's clock, ns since the epoch: one clock for every aggregator
        that shares a PostgreSQL CIR, whatever their hosts' clocks say (SQLite: ours)."""
        if self.postgres:
            return int(
                self.value(
                    "SELECT (extract(epoch from clock_timestamp()) * 1000000000)::bigint AS t"
                )
            )
        return time.time_ns()

    def lock_clause(self, *, skip_locked: bool = False) -> str:
        """``FOR UPDATE`` where the engine locks rows (SQLite locks the whole database
        for a write transaction instead); with ``skip_locked``, rows another transaction
        holds are passed over (``FOR UPDATE SKIP LOCKED``: a work queue's claim)."""
        if not self.postgres:
            return ""
        return " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"

    def json_text(self, column: str, key: str) -> str:
        """SQL for the text of top-level ``key`` of the JSON document in ``column``."""
        if self.postgres:
            return f"({column}::json ->> '{key}')"
        return f"json_extract({column}, '$.{key}')"

    def greatest(self, a: str, b: str) -> str:
        """SQL for the larger of two expressions."""
        return f"GREATEST({a}, {b})" if self.postgres else f"max({a}, {b})"

    def least(self, a: str, b: str) -> str:
        """SQL for the smaller of two expressions."""
        return f"LEAST({a}, {b})" if self.postgres else f"min({a}, {b})"

    def in_transaction(self) -> bool:
        """Whether a transaction is open on this connection (begun and not yet ended)."""
        if self.postgres:
            import psycopg

            return bool(self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE)
        return bool(self.conn.in_transaction)

    def tables(self) -> set[str]:
        """The names of the tables."""
        if self.postgres:
            q = "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()"
        else:
            q = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return {str(r["name"]) for r in self.rows(q)}

    def rowcount(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; how many rows it changed."""
        return int(self.execute(sql, params).rowcount)

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(Exception):
            self.conn.close()


_PLACEHOLDER = re.compile(r"\?")


def _safe(url: str) -> str:
    """A database URL without its password."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


@dataclass(frozen=True)
class Migration:
    """One numbered schema step, per dialect."""

    version: int
    what: str
    sqlite: str
    postgresql: str


# Types: SQLite keeps what it is given; on PostgreSQL nanosecond times and sizes are BIGINT.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "the CIR: edges, streams, blocks, scans, scanner calibrations, alarms",
        sqlite="""
CREATE TABLE IF NOT EXISTS edges (
    id TEXT PRIMARY KEY, sign_public TEXT, curve_public TEXT, enrolled_ns INTEGER,
    revoked_ns INTEGER, note TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS idx_edges_curve_public ON edges (curve_public);
CREATE TABLE IF NOT EXISTS streams (
    scanner TEXT PRIMARY KEY, edge TEXT, last_seq INTEGER, last_hash TEXT,
    link_next_seq INTEGER, scan_ref INTEGER, scan_id INTEGER, updated_ns INTEGER);
CREATE TABLE IF NOT EXISTS blocks (
    scanner TEXT, seq INTEGER, kind TEXT, scan_ref INTEGER, scan_id INTEGER,
    n_lines INTEGER, link_first INTEGER, link_last INTEGER, hash TEXT, prev_hash TEXT,
    size INTEGER, created_ns INTEGER, committed_ns INTEGER, PRIMARY KEY (scanner, seq));
CREATE INDEX IF NOT EXISTS idx_blocks_scan_ref_seq ON blocks (scan_ref, seq);
CREATE TABLE IF NOT EXISTS scans (
    ref INTEGER PRIMARY KEY, scanner TEXT, scan_id INTEGER, container TEXT, status TEXT,
    started_ns INTEGER, finished_ns INTEGER, lines_planned INTEGER, lines_received INTEGER,
    calib_lines INTEGER, lines_emitted INTEGER, blocks INTEGER, first_seq INTEGER,
    last_seq INTEGER, gaps INTEGER, start_record TEXT, end_record TEXT);
CREATE INDEX IF NOT EXISTS idx_scans_scanner_scan_id ON scans (scanner, scan_id);
CREATE TABLE IF NOT EXISTS scanner_calibrations (
    scanner TEXT, sha256 TEXT, document TEXT, first_seen_ns INTEGER, last_seen_ns INTEGER,
    first_ref INTEGER, last_ref INTEGER, scans INTEGER, PRIMARY KEY (scanner, sha256));
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY, ts_ns INTEGER, scanner TEXT, edge TEXT, kind TEXT,
    message TEXT, details TEXT);
""",
        postgresql="""
CREATE TABLE IF NOT EXISTS edges (
    id TEXT PRIMARY KEY, sign_public TEXT, curve_public TEXT, enrolled_ns BIGINT,
    revoked_ns BIGINT, note TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS idx_edges_curve_public ON edges (curve_public);
CREATE TABLE IF NOT EXISTS streams (
    scanner TEXT PRIMARY KEY, edge TEXT, last_seq BIGINT, last_hash TEXT,
    link_next_seq BIGINT, scan_ref BIGINT, scan_id BIGINT, updated_ns BIGINT);
CREATE TABLE IF NOT EXISTS blocks (
    scanner TEXT, seq BIGINT, kind TEXT, scan_ref BIGINT, scan_id BIGINT,
    n_lines BIGINT, link_first BIGINT, link_last BIGINT, hash TEXT, prev_hash TEXT,
    size BIGINT, created_ns BIGINT, committed_ns BIGINT, PRIMARY KEY (scanner, seq));
CREATE INDEX IF NOT EXISTS idx_blocks_scan_ref_seq ON blocks (scan_ref, seq);
CREATE INDEX IF NOT EXISTS idx_blocks_hash ON blocks (hash);
CREATE TABLE IF NOT EXISTS scans (
    ref BIGINT PRIMARY KEY, scanner TEXT, scan_id BIGINT, container TEXT, status TEXT,
    started_ns BIGINT, finished_ns BIGINT, lines_planned BIGINT, lines_received BIGINT,
    calib_lines BIGINT, lines_emitted BIGINT, blocks BIGINT, first_seq BIGINT,
    last_seq BIGINT, gaps BIGINT, start_record TEXT, end_record TEXT);
CREATE INDEX IF NOT EXISTS idx_scans_scanner_scan_id ON scans (scanner, scan_id);
CREATE TABLE IF NOT EXISTS scanner_calibrations (
    scanner TEXT, sha256 TEXT, document TEXT, first_seen_ns BIGINT, last_seen_ns BIGINT,
    first_ref BIGINT, last_ref BIGINT, scans BIGINT, PRIMARY KEY (scanner, sha256));
CREATE TABLE IF NOT EXISTS alarms (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ts_ns BIGINT, scanner TEXT,
    edge TEXT, kind TEXT, message TEXT, details TEXT);
""",
    ),
    Migration(
        2,
        "stream leases: one writer per scanner's stream, fenced by a token",
        sqlite="""
CREATE TABLE IF NOT EXISTS stream_leases (
    scanner TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL);
""",
        postgresql="""
CREATE TABLE IF NOT EXISTS stream_leases (
    scanner TEXT PRIMARY KEY, holder TEXT NOT NULL, token BIGINT NOT NULL,
    expires_ns BIGINT NOT NULL);
""",
    ),
    Migration(
        3,
        "the live ATR: verdicts, ATT results, officers' confirmations, learned profiles",
        # as central.atr._store made them before versions were kept; "by" is quoted: it is
        # a keyword of PostgreSQL's
        sqlite="""
CREATE TABLE IF NOT EXISTS verdicts (
    ref INTEGER PRIMARY KEY, scanner TEXT NOT NULL, scan_id INTEGER, container TEXT,
    verdict TEXT NOT NULL, findings INTEGER NOT NULL, model TEXT NOT NULL,
    gd_used INTEGER NOT NULL, atr_ms REAL, latency_s REAL, created_ns INTEGER NOT NULL,
    doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS att (
    ref_b INTEGER PRIMARY KEY, ref_a INTEGER, container TEXT, seal_a TEXT, seal_b TEXT,
    result TEXT NOT NULL, hold INTEGER NOT NULL, factors TEXT NOT NULL,
    created_ns INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS att_ref_a ON att (ref_a);
CREATE INDEX IF NOT EXISTS att_container ON att (container);
CREATE TABLE IF NOT EXISTS confirmations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ref INTEGER NOT NULL, verdict TEXT NOT NULL,
    atr_verdict TEXT NOT NULL, "by" TEXT NOT NULL, created_ns INTEGER NOT NULL,
    note TEXT NOT NULL, corrects INTEGER REFERENCES confirmations (id),
    heading TEXT NOT NULL, load TEXT, descriptor TEXT, profile_version INTEGER);
CREATE INDEX IF NOT EXISTS confirmations_ref ON confirmations (ref);
CREATE TRIGGER IF NOT EXISTS confirmations_no_update BEFORE UPDATE ON confirmations
BEGIN SELECT RAISE(ABORT, 'confirmations are history: add a correction'); END;
CREATE TRIGGER IF NOT EXISTS confirmations_no_delete BEFORE DELETE ON confirmations
BEGIN SELECT RAISE(ABORT, 'confirmations are history: add a correction'); END;
CREATE TABLE IF NOT EXISTS profiles (
    version INTEGER NOT NULL, heading TEXT NOT NULL, n INTEGER NOT NULL,
    used INTEGER NOT NULL, created_ns INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (version, heading));
""",
        postgresql="""
CREATE TABLE IF NOT EXISTS verdicts (
    ref BIGINT PRIMARY KEY, scanner TEXT NOT NULL, scan_id BIGINT, container TEXT,
    verdict TEXT NOT NULL, findings BIGINT NOT NULL, model TEXT NOT NULL,
    gd_used BIGINT NOT NULL, atr_ms DOUBLE PRECISION, latency_s DOUBLE PRECISION,
    created_ns BIGINT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS att (
    ref_b BIGINT PRIMARY KEY, ref_a BIGINT, container TEXT, seal_a TEXT, seal_b TEXT,
    result TEXT NOT NULL, hold BIGINT NOT NULL, factors TEXT NOT NULL,
    created_ns BIGINT NOT NULL, doc TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS att_ref_a ON att (ref_a);
CREATE INDEX IF NOT EXISTS att_container ON att (container);
CREATE TABLE IF NOT EXISTS confirmations (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ref BIGINT NOT NULL,
    verdict TEXT NOT NULL, atr_verdict TEXT NOT NULL, "by" TEXT NOT NULL,
    created_ns BIGINT NOT NULL, note TEXT NOT NULL,
    corrects BIGINT REFERENCES confirmations (id), heading TEXT NOT NULL, load TEXT,
    descriptor TEXT, profile_version BIGINT);
CREATE INDEX IF NOT EXISTS confirmations_ref ON confirmations (ref);
CREATE OR REPLACE FUNCTION confirmations_are_history() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'confirmations are history: add a correction'; END $$;
CREATE OR REPLACE TRIGGER confirmations_no_change BEFORE UPDATE OR DELETE ON confirmations
FOR EACH ROW EXECUTE FUNCTION confirmations_are_history();
CREATE TABLE IF NOT EXISTS profiles (
    version BIGINT NOT NULL, heading TEXT NOT NULL, n BIGINT NOT NULL,
    used BIGINT NOT NULL, created_ns BIGINT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (version, heading));
""",
    ),
    Migration(
        4,
        "the ATR work queue: one item per finished scan, claimed by one worker at a time",
        # central._atr_queue: enqueued in the commit that finishes the scan; a claim is a
        # lease (claimed_until_ns) fenced by attempts; feed holds what goes on the live feed
        # once done, published_ns says it went
        sqlite="""
CREATE TABLE IF NOT EXISTS atr_work (
    scan_ref INTEGER PRIMARY KEY, enqueued_ns INTEGER NOT NULL, claimed_by TEXT,
    claimed_until_ns INTEGER, attempts INTEGER NOT NULL DEFAULT 0, done_ns INTEGER,
    error TEXT, feed TEXT, published_ns INTEGER);
CREATE INDEX IF NOT EXISTS atr_work_waiting ON atr_work (scan_ref) WHERE done_ns IS NULL;
CREATE INDEX IF NOT EXISTS atr_work_unpublished ON atr_work (scan_ref)
    WHERE done_ns IS NOT NULL AND published_ns IS NULL;
""",
        postgresql="""
CREATE TABLE IF NOT EXISTS atr_work (
    scan_ref BIGINT PRIMARY KEY, enqueued_ns BIGINT NOT NULL, claimed_by TEXT,
    claimed_until_ns BIGINT, attempts BIGINT NOT NULL DEFAULT 0, done_ns BIGINT,
    error TEXT, feed TEXT, published_ns BIGINT);
CREATE INDEX IF NOT EXISTS atr_work_waiting ON atr_work (scan_ref) WHERE done_ns IS NULL;
CREATE INDEX IF NOT EXISTS atr_work_unpublished ON atr_work (scan_ref)
    WHERE done_ns IS NOT NULL AND published_ns IS NULL;
""",
    ),
    Migration(
        5,
        "scanner uptime and SLA records: state entries, acknowledgements, alerts, "
        "commissioning (decision 0017)",
        # as central._uptime kept them in state_dir/uptime.sqlite, under an uptime_ prefix;
        # commissioning's "at" is at_s (epoch seconds)
        sqlite="""
CREATE TABLE IF NOT EXISTS uptime_entries (
    scanner TEXT NOT NULL, log TEXT NOT NULL, seq INTEGER NOT NULL, boot TEXT NOT NULL,
    mono_ns INTEGER NOT NULL, anchor_ns INTEGER NOT NULL, state TEXT NOT NULL,
    cause TEXT NOT NULL, recv_ns INTEGER NOT NULL, PRIMARY KEY (scanner, log, seq));
CREATE TABLE IF NOT EXISTS uptime_logs (
    scanner TEXT NOT NULL, log TEXT NOT NULL, acked_seq INTEGER NOT NULL,
    PRIMARY KEY (scanner, log));
CREATE TABLE IF NOT EXISTS uptime_alerts (
    scanner TEXT NOT NULL, period TEXT NOT NULL, ts_ns INTEGER NOT NULL,
    PRIMARY KEY (scanner, period));
CREATE TABLE IF NOT EXISTS uptime_commissioned (
    scanner TEXT PRIMARY KEY, at_s REAL NOT NULL, how TEXT NOT NULL, ts_ns INTEGER NOT NULL);
""",
        postgresql="""
CREATE TABLE IF NOT EXISTS uptime_entries (
    scanner TEXT NOT NULL, log TEXT NOT NULL, seq BIGINT NOT NULL, boot TEXT NOT NULL,
    mono_ns BIGINT NOT NULL, anchor_ns BIGINT NOT NULL, state TEXT NOT NULL,
    cause TEXT NOT NULL, recv_ns BIGINT NOT NULL, PRIMARY KEY (scanner, log, seq));
CREATE TABLE IF NOT EXISTS uptime_logs (
    scanner TEXT NOT NULL, log TEXT NOT NULL, acked_seq BIGINT NOT NULL,
    PRIMARY KEY (scanner, log));
CREATE TABLE IF NOT EXISTS uptime_alerts (
    scanner TEXT NOT NULL, period TEXT NOT NULL, ts_ns BIGINT NOT NULL,
    PRIMARY KEY (scanner, period));
CREATE TABLE IF NOT EXISTS uptime_commissioned (
    scanner TEXT PRIMARY KEY, at_s DOUBLE PRECISION NOT NULL, how TEXT NOT NULL,
    ts_ns BIGINT NOT NULL);
""",
    ),
    Migration(
        6,
        "scan refs from one sequence, for several aggregators on one database",
        # SQLite: one aggregator per CIR (its state-directory lock); refs follow MAX(ref)
        sqlite="",
        postgresql="""
CREATE SEQUENCE IF NOT EXISTS scan_ref_seq;
SELECT setval('scan_ref_seq', (SELECT COALESCE(MAX(ref), 0) + 1 FROM scans), false);
""",
    ),
    Migration(
        7,
        "audit queries: scans by GD number, by container, by scanner and period",
        # The GD number lives inside the start record (JSON: gd.gd_number); the ingest
        # copies it into its own column from now on, and this step fills it for the rows
        # already there (a string value only, as the ingest takes it). A start record that
        # is not valid JSON for the engine (NaN, written by Python's json) is skipped.
        sqlite="""
ALTER TABLE scans ADD COLUMN gd_number TEXT;
UPDATE scans SET gd_number = substr(json_extract(start_record, '$.gd.gd_number'), 1, 256)
WHERE json_valid(start_record) AND json_type(start_record, '$.gd.gd_number') = 'text';
CREATE INDEX IF NOT EXISTS idx_scans_gd_number ON scans (gd_number);
CREATE INDEX IF NOT EXISTS idx_scans_container ON scans (container);
CREATE INDEX IF NOT EXISTS idx_scans_scanner_started ON scans (scanner, started_ns);
""",
        postgresql="""
ALTER TABLE scans ADD COLUMN IF NOT EXISTS gd_number TEXT;
CREATE OR REPLACE FUNCTION nii_jsonb_or_null(doc TEXT) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
AS $$ BEGIN RETURN doc::jsonb; EXCEPTION WHEN others THEN RETURN NULL; END $$;
UPDATE scans SET gd_number = left(nii_jsonb_or_null(start_record) #>> '{gd,gd_number}', 256)
WHERE start_record LIKE '%gd_number%'
AND jsonb_typeof(nii_jsonb_or_null(start_record) #> '{gd,gd_number}') = 'string';
CREATE INDEX IF NOT EXISTS idx_scans_gd_number ON scans (gd_number);
CREATE INDEX IF NOT EXISTS idx_scans_container ON scans (container);
CREATE INDEX IF NOT EXISTS idx_scans_scanner_started ON scans (scanner, started_ns);
""",
    ),
    Migration(
        8,
        "the control room: users, sessions, the audit log, decisions and annotations",
        # central.control_room._accounts: users.sites is a JSON list, users.password an
        # argon2 hash, disabled_ns NULL while the account is active, failed counts the
        # consecutive failed logins; sessions.token_hash is the sha256 (hex) of the token,
        # which is never stored. The audit log, the decisions and the annotations are
        # evidence: rows are added, never changed or removed (a decision is corrected by a
        # later one that names it in corrects)
        sqlite="""
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, sites TEXT NOT NULL, region TEXT NOT NULL,
    password TEXT NOT NULL, created_ns INTEGER NOT NULL, changed_ns INTEGER NOT NULL,
    disabled_ns INTEGER, failed INTEGER NOT NULL DEFAULT 0, locked_until_ns INTEGER);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL,
    created_ns INTEGER NOT NULL, seen_ns INTEGER NOT NULL, expires_ns INTEGER NOT NULL,
    client TEXT);
CREATE INDEX IF NOT EXISTS idx_sessions_name ON sessions (name);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, name TEXT NOT NULL,
    role TEXT NOT NULL, action TEXT NOT NULL, ref INTEGER, detail TEXT NOT NULL,
    client TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_audit_log_ts ON audit_log (ts_ns);
CREATE INDEX IF NOT EXISTS idx_audit_log_name_ts ON audit_log (name, ts_ns);
CREATE INDEX IF NOT EXISTS idx_audit_log_ref ON audit_log (ref);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ref INTEGER NOT NULL, verdict TEXT NOT NULL,
    kind TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL, created_ns INTEGER NOT NULL,
    reason TEXT NOT NULL, corrects INTEGER REFERENCES decisions (id), doc TEXT NOT NULL,
    signature TEXT NOT NULL, key_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_decisions_ref ON decisions (ref);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only: record a correction'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only: record a correction'); END;
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ref INTEGER NOT NULL,
    decision INTEGER REFERENCES decisions (id), name TEXT NOT NULL,
    created_ns INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_annotations_ref ON annotations (ref);
CREATE TRIGGER IF NOT EXISTS annotations_no_update BEFORE UPDATE ON annotations
BEGIN SELECT RAISE(ABORT, 'annotations are append-only: add another'); END;
CREATE TRIGGER IF NOT EXISTS annotations_no_delete BEFORE DELETE ON annotations
BEGIN SELECT RAISE(ABORT, 'annotations are append-only: add another'); END;
""",
        # the same, and TRUNCATE refused too (a statement trigger: SQLite has no TRUNCATE)
        postgresql="""
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, sites TEXT NOT NULL, region TEXT NOT NULL,
    password TEXT NOT NULL, created_ns BIGINT NOT NULL, changed_ns BIGINT NOT NULL,
    disabled_ns BIGINT, failed BIGINT NOT NULL DEFAULT 0, locked_until_ns BIGINT);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, name TEXT NOT NULL, csrf TEXT NOT NULL,
    created_ns BIGINT NOT NULL, seen_ns BIGINT NOT NULL, expires_ns BIGINT NOT NULL,
    client TEXT);
CREATE INDEX IF NOT EXISTS idx_sessions_name ON sessions (name);
CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ts_ns BIGINT NOT NULL,
    name TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL, ref BIGINT,
    detail TEXT NOT NULL, client TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_audit_log_ts ON audit_log (ts_ns);
CREATE INDEX IF NOT EXISTS idx_audit_log_name_ts ON audit_log (name, ts_ns);
CREATE INDEX IF NOT EXISTS idx_audit_log_ref ON audit_log (ref);
CREATE OR REPLACE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
CREATE TABLE IF NOT EXISTS decisions (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ref BIGINT NOT NULL,
    verdict TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
    created_ns BIGINT NOT NULL, reason TEXT NOT NULL,
    corrects BIGINT REFERENCES decisions (id), doc TEXT NOT NULL, signature TEXT NOT NULL,
    key_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_decisions_ref ON decisions (ref);
CREATE OR REPLACE FUNCTION decisions_are_append_only() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'decisions are append-only: record a correction'; END $$;
CREATE OR REPLACE TRIGGER decisions_no_change BEFORE UPDATE OR DELETE ON decisions
FOR EACH ROW EXECUTE FUNCTION decisions_are_append_only();
CREATE OR REPLACE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
FOR EACH STATEMENT EXECUTE FUNCTION decisions_are_append_only();
CREATE TABLE IF NOT EXISTS annotations (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ref BIGINT NOT NULL,
    decision BIGINT REFERENCES decisions (id), name TEXT NOT NULL,
    created_ns BIGINT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_annotations_ref ON annotations (ref);
CREATE OR REPLACE FUNCTION annotations_are_append_only() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'annotations are append-only: add another'; END $$;
CREATE OR REPLACE TRIGGER annotations_no_change BEFORE UPDATE OR DELETE ON annotations
FOR EACH ROW EXECUTE FUNCTION annotations_are_append_only();
CREATE OR REPLACE TRIGGER annotations_no_truncate BEFORE TRUNCATE ON annotations
FOR EACH STATEMENT EXECUTE FUNCTION annotations_are_append_only();
""",
    ),
    Migration(
        9,
        "Threat Image Projection in the control room: projections and analysts' scores",
        # central.control_room._tip: one projection per scan at most (box_px in the scan's
        # image pixels, doc the signature's attenuation patch and where it went); one score
        # per user and projected scan (hit: the user marked it). Both are evidence of how
        # the image was shown and of how each analyst did: added, never changed
        sqlite="""
CREATE TABLE IF NOT EXISTS tip (
    ref INTEGER PRIMARY KEY, signature TEXT NOT NULL, box_px TEXT NOT NULL,
    placed_ns INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS tip_no_update BEFORE UPDATE ON tip
BEGIN SELECT RAISE(ABORT, 'projections are kept as placed'); END;
CREATE TRIGGER IF NOT EXISTS tip_no_delete BEFORE DELETE ON tip
BEGIN SELECT RAISE(ABORT, 'projections are kept as placed'); END;
CREATE TABLE IF NOT EXISTS tip_scores (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ref INTEGER NOT NULL, name TEXT NOT NULL,
    role TEXT NOT NULL, hit INTEGER NOT NULL, signature TEXT NOT NULL,
    scored_ns INTEGER NOT NULL, detail TEXT NOT NULL, UNIQUE (ref, name));
CREATE INDEX IF NOT EXISTS idx_tip_scores_name ON tip_scores (name, scored_ns);
CREATE TRIGGER IF NOT EXISTS tip_scores_no_update BEFORE UPDATE ON tip_scores
BEGIN SELECT RAISE(ABORT, 'TIP scores are append-only'); END;
CREATE TRIGGER IF NOT EXISTS tip_scores_no_delete BEFORE DELETE ON tip_scores
BEGIN SELECT RAISE(ABORT, 'TIP scores are append-only'); END;
""",
        postgresql="""
CREATE TABLE IF NOT EXISTS tip (
    ref BIGINT PRIMARY KEY, signature TEXT NOT NULL, box_px TEXT NOT NULL,
    placed_ns BIGINT NOT NULL, doc TEXT NOT NULL);
CREATE OR REPLACE FUNCTION tip_is_kept() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'projections and TIP scores are append-only'; END $$;
CREATE OR REPLACE TRIGGER tip_no_change BEFORE UPDATE OR DELETE ON tip
FOR EACH ROW EXECUTE FUNCTION tip_is_kept();
CREATE OR REPLACE TRIGGER tip_no_truncate BEFORE TRUNCATE ON tip
FOR EACH STATEMENT EXECUTE FUNCTION tip_is_kept();
CREATE TABLE IF NOT EXISTS tip_scores (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ref BIGINT NOT NULL,
    name TEXT NOT NULL, role TEXT NOT NULL, hit BIGINT NOT NULL, signature TEXT NOT NULL,
    scored_ns BIGINT NOT NULL, detail TEXT NOT NULL, UNIQUE (ref, name));
CREATE INDEX IF NOT EXISTS idx_tip_scores_name ON tip_scores (name, scored_ns);
CREATE OR REPLACE TRIGGER tip_scores_no_change BEFORE UPDATE OR DELETE ON tip_scores
FOR EACH ROW EXECUTE FUNCTION tip_is_kept();
CREATE OR REPLACE TRIGGER tip_scores_no_truncate BEFORE TRUNCATE ON tip_scores
FOR EACH STATEMENT EXECUTE FUNCTION tip_is_kept();
""",
    ),
    Migration(
        10,
        "the risk-system API: submitted GDs, the event outbox, the webhook's cursor",
        # central.control_room._risk: risk_gds holds every GD version the Risk Management
        # System submitted (doc: its canonical JSON, sha256 of it; an amendment is a new
        # version, a new row), risk_gd_containers the containers each names (indexed, for
        # a scan's selection). risk_events is the outbox the RMS reads and the webhook
        # sends: the triggers add one row in the same transaction as each ATR verdict
        # (source 'verdict', result the level, n the findings), ATT result ('att', result,
        # n = hold, doc the ATT document as stored) and decision ('decision', source_id
        # its id, result its kind); the rows already there are added once, oldest first.
        # Its id is the API's cursor: ids are handed out in commit order (SQLite has one
        # writer at a time), so a reader that saw id N never later finds a row below N.
        # risk_webhook keeps the last id the webhook delivered. The GDs and the outbox
        # are evidence of what the RMS sent and was told: added, never changed
        sqlite="""
CREATE TABLE IF NOT EXISTS risk_gds (
    id INTEGER PRIMARY KEY AUTOINCREMENT, gd_number TEXT NOT NULL, version INTEGER NOT NULL,
    received_ns INTEGER NOT NULL, client TEXT NOT NULL, tier TEXT NOT NULL,
    channel TEXT NOT NULL, att INTEGER NOT NULL, sha256 TEXT NOT NULL, doc TEXT NOT NULL,
    UNIQUE (gd_number, version));
CREATE TRIGGER IF NOT EXISTS risk_gds_no_update BEFORE UPDATE ON risk_gds
BEGIN SELECT RAISE(ABORT, 'submitted GDs are kept as sent: submit an amendment'); END;
CREATE TRIGGER IF NOT EXISTS risk_gds_no_delete BEFORE DELETE ON risk_gds
BEGIN SELECT RAISE(ABORT, 'submitted GDs are kept as sent: submit an amendment'); END;
CREATE TABLE IF NOT EXISTS risk_gd_containers (
    gd INTEGER NOT NULL REFERENCES risk_gds (id), container TEXT NOT NULL,
    received_ns INTEGER NOT NULL, PRIMARY KEY (gd, container));
CREATE INDEX IF NOT EXISTS idx_risk_gd_containers ON risk_gd_containers (container, gd);
CREATE TRIGGER IF NOT EXISTS risk_gd_containers_no_update BEFORE UPDATE ON risk_gd_containers
BEGIN SELECT RAISE(ABORT, 'submitted GDs are kept as sent: submit an amendment'); END;
CREATE TRIGGER IF NOT EXISTS risk_gd_containers_no_delete BEFORE DELETE ON risk_gd_containers
BEGIN SELECT RAISE(ABORT, 'submitted GDs are kept as sent: submit an amendment'); END;
CREATE TABLE IF NOT EXISTS risk_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, ref INTEGER NOT NULL,
    source_id INTEGER NOT NULL, created_ns INTEGER NOT NULL, result TEXT, n INTEGER,
    doc TEXT);
CREATE TRIGGER IF NOT EXISTS risk_events_no_update BEFORE UPDATE ON risk_events
BEGIN SELECT RAISE(ABORT, 'risk-system events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS risk_events_no_delete BEFORE DELETE ON risk_events
BEGIN SELECT RAISE(ABORT, 'risk-system events are append-only'); END;
INSERT INTO risk_events (source, ref, source_id, created_ns, result, n, doc)
SELECT source, ref, source_id, created_ns, result, n, doc FROM (
    SELECT 'verdict' AS source, ref, ref AS source_id, created_ns, verdict AS result,
    findings AS n, NULL AS doc FROM verdicts
    UNION ALL SELECT 'att', ref_b, ref_b, created_ns, result, hold, doc FROM att
    UNION ALL SELECT 'decision', ref, id, created_ns, kind, NULL, NULL FROM decisions
) AS past ORDER BY created_ns, source, source_id;
CREATE TRIGGER IF NOT EXISTS verdicts_risk_insert AFTER INSERT ON verdicts
BEGIN INSERT INTO risk_events (source, ref, source_id, created_ns, result, n)
VALUES ('verdict', NEW.ref, NEW.ref, NEW.created_ns, NEW.verdict, NEW.findings); END;
CREATE TRIGGER IF NOT EXISTS verdicts_risk_update AFTER UPDATE ON verdicts
BEGIN INSERT INTO risk_events (source, ref, source_id, created_ns, result, n)
VALUES ('verdict', NEW.ref, NEW.ref, NEW.created_ns, NEW.verdict, NEW.findings); END;
CREATE TRIGGER IF NOT EXISTS att_risk_insert AFTER INSERT ON att
BEGIN INSERT INTO risk_events (source, ref, source_id, created_ns, result, n, doc)
VALUES ('att', NEW.ref_b, NEW.ref_b, NEW.created_ns, NEW.result, NEW.hold, NEW.doc); END;
CREATE TRIGGER IF NOT EXISTS att_risk_update AFTER UPDATE ON att
BEGIN INSERT INTO risk_events (source, ref, source_id, created_ns, result, n, doc)
VALUES ('att', NEW.ref_b, NEW.ref_b, NEW.created_ns, NEW.result, NEW.hold, NEW.doc); END;
CREATE TRIGGER IF NOT EXISTS decisions_risk_insert AFTER INSERT ON decisions
BEGIN INSERT INTO risk_events (source, ref, source_id, created_ns, result)
VALUES ('decision', NEW.ref, NEW.id, NEW.created_ns, NEW.kind); END;
CREATE TABLE IF NOT EXISTS risk_webhook (
    name TEXT PRIMARY KEY, url TEXT NOT NULL, delivered INTEGER NOT NULL,
    delivered_ns INTEGER, attempts INTEGER NOT NULL, failed_ns INTEGER, error TEXT);
""",
        # the same, TRUNCATE refused too; the outbox's writers take one transaction-scoped
        # advisory lock (keys 1380533075, 10: "RISK", step 10; a key space of its own, apart
        # from the one-number locks decisions take per scan) before they add a row, so
        # that on PostgreSQL too ids are handed out in commit order
        postgresql="""
CREATE TABLE IF NOT EXISTS risk_gds (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, gd_number TEXT NOT NULL,
    version BIGINT NOT NULL, received_ns BIGINT NOT NULL, client TEXT NOT NULL,
    tier TEXT NOT NULL, channel TEXT NOT NULL, att BIGINT NOT NULL, sha256 TEXT NOT NULL,
    doc TEXT NOT NULL, UNIQUE (gd_number, version));
CREATE OR REPLACE FUNCTION risk_gds_are_kept() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'submitted GDs are kept as sent: submit an amendment'; END $$;
CREATE OR REPLACE TRIGGER risk_gds_no_change BEFORE UPDATE OR DELETE ON risk_gds
FOR EACH ROW EXECUTE FUNCTION risk_gds_are_kept();
CREATE OR REPLACE TRIGGER risk_gds_no_truncate BEFORE TRUNCATE ON risk_gds
FOR EACH STATEMENT EXECUTE FUNCTION risk_gds_are_kept();
CREATE TABLE IF NOT EXISTS risk_gd_containers (
    gd BIGINT NOT NULL REFERENCES risk_gds (id), container TEXT NOT NULL,
    received_ns BIGINT NOT NULL, PRIMARY KEY (gd, container));
CREATE INDEX IF NOT EXISTS idx_risk_gd_containers ON risk_gd_containers (container, gd);
CREATE OR REPLACE TRIGGER risk_gd_containers_no_change
BEFORE UPDATE OR DELETE ON risk_gd_containers
FOR EACH ROW EXECUTE FUNCTION risk_gds_are_kept();
CREATE OR REPLACE TRIGGER risk_gd_containers_no_truncate BEFORE TRUNCATE ON risk_gd_containers
FOR EACH STATEMENT EXECUTE FUNCTION risk_gds_are_kept();
CREATE TABLE IF NOT EXISTS risk_events (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, source TEXT NOT NULL,
    ref BIGINT NOT NULL, source_id BIGINT NOT NULL, created_ns BIGINT NOT NULL, result TEXT,
    n BIGINT, doc TEXT);
CREATE OR REPLACE FUNCTION risk_events_are_kept() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'risk-system events are append-only'; END $$;
CREATE OR REPLACE TRIGGER risk_events_no_change BEFORE UPDATE OR DELETE ON risk_events
FOR EACH ROW EXECUTE FUNCTION risk_events_are_kept();
CREATE OR REPLACE TRIGGER risk_events_no_truncate BEFORE TRUNCATE ON risk_events
FOR EACH STATEMENT EXECUTE FUNCTION risk_events_are_kept();
INSERT INTO risk_events (source, ref, source_id, created_ns, result, n, doc)
SELECT source, ref, source_id, created_ns, result, n, doc FROM (
    SELECT 'verdict' AS source, ref, ref AS source_id, created_ns, verdict AS result,
    findings AS n, NULL::text AS doc FROM verdicts
    UNION ALL SELECT 'att', ref_b, ref_b, created_ns, result, hold, doc FROM att
    UNION ALL SELECT 'decision', ref, id, created_ns, kind, NULL::bigint, NULL::text
    FROM decisions
) AS past ORDER BY created_ns, source, source_id;
CREATE OR REPLACE FUNCTION risk_event_of_verdict() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN PERFORM pg_advisory_xact_lock(1380533075, 10); INSERT INTO risk_events
(source, ref, source_id, created_ns, result, n) VALUES
('verdict', NEW.ref, NEW.ref, NEW.created_ns, NEW.verdict, NEW.findings); RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER verdicts_risk_event AFTER INSERT OR UPDATE ON verdicts
FOR EACH ROW EXECUTE FUNCTION risk_event_of_verdict();
CREATE OR REPLACE FUNCTION risk_event_of_att() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN PERFORM pg_advisory_xact_lock(1380533075, 10); INSERT INTO risk_events
(source, ref, source_id, created_ns, result, n, doc) VALUES
('att', NEW.ref_b, NEW.ref_b, NEW.created_ns, NEW.result, NEW.hold, NEW.doc); RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER att_risk_event AFTER INSERT OR UPDATE ON att
FOR EACH ROW EXECUTE FUNCTION risk_event_of_att();
CREATE OR REPLACE FUNCTION risk_event_of_decision() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN PERFORM pg_advisory_xact_lock(1380533075, 10); INSERT INTO risk_events
(source, ref, source_id, created_ns, result) VALUES
('decision', NEW.ref, NEW.id, NEW.created_ns, NEW.kind); RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER decisions_risk_event AFTER INSERT ON decisions
FOR EACH ROW EXECUTE FUNCTION risk_event_of_decision();
CREATE TABLE IF NOT EXISTS risk_webhook (
    name TEXT PRIMARY KEY, url TEXT NOT NULL, delivered BIGINT NOT NULL,
    delivered_ns BIGINT, attempts BIGINT NOT NULL, failed_ns BIGINT, error TEXT);
""",
    ),
)


def statements(script: str) -> list[str]:
    """A migration script's statements: each ends with a semicolon at the end of a line
    (a trigger's or function's body keeps its own semicolons inside a line)."""
    return [st.strip() for st in re.split(r";[ \t]*(?:\n|$)", script) if st.strip()]


def schema_version(db: Sql) -> int:
    """The database's schema version (0: none applied)."""
    if not db.postgres:
        return int(db.value("PRAGMA user_version") or 0)
    if "schema_version" not in db.tables():
        return 0
    return int(db.value("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version") or 0)


def schema_problems(db: Sql, steps: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """What is wrong with the database itself, for ``nii cir verify``: a table or a
    trigger its schema version says it has that is gone (dropped behind the CIR's
    back), a trigger it does not have, and, on SQLite, what ``PRAGMA quick_check``
    finds (a damaged page, a broken index).

    Returns:
        One line per problem (at most 10 of quick_check's); empty when it is whole.

    Raises:
        sqlite3.DatabaseError: the file is too damaged to be read at all.
    """
    have = schema_version(db)
    want: set[str] = set()
    for m in steps:
        if m.version <= have:
            script = m.postgresql if db.postgres else m.sqlite
            want |= {t.lower() for t in _CREATED.findall(script)}
    there = {t.lower() for t in db.tables()}
    problems = [
        f"table {t} is gone from the database (schema version {have} has it): dropped "
        "behind the CIR's back"
        for t in sorted(want - there)
    ]
    # the triggers keep the evidence tables append-only and feed the risk outbox: one
    # gone lets rows be changed unseen, one added can change or drop what is written
    triggers: set[str] = set()
    for m in steps:
        if m.version <= have:
            script = m.postgresql if db.postgres else m.sqlite
            triggers |= {t.lower() for t in _TRIGGER.findall(script)}
    if db.postgres:
        q = (
            "SELECT t.tgname AS name FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
        )
    else:
        q = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    have_triggers = {str(r["name"]).lower() for r in db.rows(q)}
    problems += [
        f"trigger {t} is gone (it keeps evidence append-only or feeds the risk outbox): "
        "dropped behind the CIR's back"
        for t in sorted(triggers - have_triggers)
    ]
    problems += [
        f"trigger {t} is no trigger of the CIR's schema: added behind the CIR's back (it may "
        "change or drop what is written)"
        for t in sorted(have_triggers - triggers)
    ]
    if not db.postgres:
        found = [str(r[0]) for r in db.conn.execute("PRAGMA quick_check(10)").fetchall()]
        if found != ["ok"]:
            problems += [f"the database file is damaged: {f}" for f in found]
    return problems


_CREATED = re.compile(r"CREATE TABLE IF NOT EXISTS\s+(\w+)", re.IGNORECASE)
_TRIGGER = re.compile(r"CREATE (?:OR REPLACE )?TRIGGER (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)


def check_not_newer(db: Sql, steps: Sequence[Migration] = MIGRATIONS) -> int:
    """The database's schema version, checked to be one this program knows.

    Raises:
        ConfigError: the database is newer than this program.
    """
    have = schema_version(db)
    newest = max((m.version for m in steps), default=0)
    if have > newest:
        raise ConfigError(
            f"the CIR's database {_safe(db.target)} is at schema version {have}; this "
            f"program knows up to {newest}",
            fix="upgrade this installation to the release that wrote it (or restore a backup "
            "made with this one)",
        )
    return have


def migrate(db: Sql, steps: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the steps the database has not had, in order, each in one transaction.

    A CIR made before versions were kept (SQLite, version 0 with its tables there) takes
    step 1 as it is: every statement of it is ``IF NOT EXISTS``.

    Returns:
        The versions applied.

    Raises:
        ConfigError: the database is newer than this program.
    """
    have = check_not_newer(db, steps)
    done = []
    for m in sorted(steps, key=lambda m: m.version):
        if m.version <= have:
            continue
        script = m.postgresql if db.postgres else m.sqlite
        try:
            _apply(db, m, script)
        except Exception as exc:
            if not is_sql_error(exc):
                raise
            raise ConfigError(
                f"cannot bring the CIR's database {_safe(db.target)} to schema version "
                f"{m.version}: {exc}",
                fix="the database must be writable by this user and have free space "
                "(check state_dir, or cir in [central])",
            ) from exc
        done.append(m.version)
    return done


def _pg_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency
        return False
    return isinstance(exc, psycopg.Error)


def _apply(db: Sql, m: Migration, script: str) -> None:
    """One schema step in one transaction, its version recorded with it."""
    with db.transaction():
        for stmt in statements(script):
            db.execute(stmt)
        if db.postgres:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, "
                "what TEXT, applied_ns BIGINT)"
            )
            db.execute(
                "INSERT INTO schema_version (version, what, applied_ns) "
                "VALUES (?, ?, (extract(epoch from now()) * 1e9)::bigint)",
                [m.version, m.what],
            )
        else:
            db.execute(f"PRAGMA user_version = {int(m.version)}")
