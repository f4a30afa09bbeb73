"""The control room's accounts: users, roles, sessions and the audit log (issue 16).

Every account has one role; the role and the sites or region bound to the account
decide which scans it sees (:meth:`User.can_see`) and whether it may decide
(:attr:`User.can_decide`):

========== ======================================== ============
role       sees                                     decides
========== ======================================== ============
officer    the scans of the sites bound to it       yes
supervisor the scans of every site of its region    yes
analyst    every scan (central RIAC)                yes
auditor    every scan, and the audit log            no
admin      every scan; manages accounts             no
========== ======================================== ============

Passwords are kept as argon2id hashes (``argon2-cffi``'s :class:`PasswordHasher`,
RFC 9106), rehashed at the next login when the hasher's parameters change.  Five
failed logins in a row lock the account for five minutes; a wrong name, a wrong
password, a disabled and a locked account all get the same answer (None) after the
same work (one argon2 verification), so the answer does not tell which names exist.

A session is a random token (``secrets.token_urlsafe(32)``: 256 bits) handed to the
browser once; the database keeps only its SHA-256, so a copy of the database lets
no one in.  It ends ``session_s`` after its last use, when its user logs out, is
disabled or has the password reset.

The tables (``users``, ``sessions``, ``audit_log``) are the CIR database's, schema
step 8 of :data:`central._sql.MIGRATIONS`; the audit log is append-only in the
database itself (triggers refuse UPDATE and DELETE).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from central._sql import Sql, migrate
from central.control_room._config import Site
from core.errors import ConfigError, NiiError

__all__ = [
    "LOCK_AFTER",
    "LOCK_S",
    "ROLES",
    "Accounts",
    "Session",
    "User",
]

#: The roles, in the order the interface lists them.
ROLES = ("officer", "supervisor", "analyst", "auditor", "admin")
#: The roles that see every site.
_EVERY_SITE = frozenset({"analyst", "auditor", "admin"})
#: The roles that may decide on a scan (Green, Yellow, Red).
_DECIDE = frozenset({"officer", "supervisor", "analyst"})

#: Consecutive failed logins that lock an account, and for how long (seconds): the
#: OWASP authentication cheat sheet's order of magnitude, short enough that a locked-out
#: officer waits rather than calls an administrator.
LOCK_AFTER = 5
LOCK_S = 300.0
#: A session's expiry is written at most this often (seconds): a page polls several
#: times a second and each poll need not write.
_SLIDE_EVERY_S = 10.0

_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
_MIN_PASSWORD = 10
_MAX_PASSWORD = 1024  # argon2 hashes any length; this bounds the work one login costs
_NAME_FIX = (
    "use 2 to 32 characters: lower-case letters, digits, '.', '_' and '-', starting with a letter"
)


@dataclass(frozen=True)
class User:
    """An account.

    Attributes:
        name: the login name (``^[a-z][a-z0-9._-]{1,31}$``).
        role: one of :data:`ROLES`.
        sites: the sites an officer is bound to (empty for the other roles).
        region: a supervisor's region ("" for the other roles).
        disabled: the account may not log in; its sessions ended when it was disabled.
    """

    name: str
    role: str
    sites: tuple[str, ...]
    region: str
    disabled: bool

    def can_see(self, site: Site | None) -> bool:
        """Whether this user may see the scans of ``site``.

        ``site`` None is a scanner no site lists: only the roles that see every site
        (analyst, auditor, admin) see it.  A disabled account sees nothing.
        """
        if self.disabled:
            return False
        if self.role in _EVERY_SITE:
            return True
        if site is None:
            return False
        if self.role == "officer":
            return site.name in self.sites
        if self.role == "supervisor":
            return bool(self.region) and site.region == self.region
        return False

    @property
    def can_decide(self) -> bool:
        """Whether this user may decide on a scan (officer, supervisor, analyst)."""
        return not self.disabled and self.role in _DECIDE


@dataclass(frozen=True)
class Session:
    """A logged-in user.

    Attributes:
        token: the session's secret, for the browser's cookie: known only in the answer
            of :meth:`Accounts.login` ("" in a session loaded back by its token).
        csrf: the session's anti-forgery token: a form or request that changes anything
            must carry it.
        user: who is logged in.
        expires_ns: when the session ends if unused, ns since the epoch (as last written:
            up to 10 s earlier than the sliding expiry).
    """

    token: str
    csrf: str
    user: User
    expires_ns: int


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


#: what an audit line never holds as it is: C0 controls, DEL, and the Unicode controls
#: that reorder or hide text (bidi embeddings, overrides and isolates; line and
#: paragraph separators)
_HIDING = re.compile("[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def plain(text: str) -> str:
    """``text`` with every control character written out (``\\x00``, ``\\u202e``): what
    outsiders send (a request path, a name) is audited as sent, yet cannot split,
    reorder or hide an audit line, and stores alike on SQLite and PostgreSQL (whose
    text cannot hold NUL)."""
    return _HIDING.sub(
        lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}",
        str(text),
    )


class PerMinute:
    """How many events each client caused in its current minute, for an audit log that
    anyone who reaches the port could otherwise fill: the first ``limit`` of a minute are
    written, the rest counted, and the count written once when that client's next
    minute starts. Forgets old minutes past 10 000 clients."""

    def __init__(self) -> None:
        #: client → (start of its minute, events in it), seconds
        self._seen: dict[str, tuple[float, int]] = {}

    def note(self, client: str, now_s: float, limit: int) -> tuple[bool, int]:
        """One more event of ``client`` at ``now_s``: (write it, how many of the
        client's previous minute were left out and are to be written as one count)."""
        start, n = self._seen.get(client, (now_s, 0))
        left_out = 0
        if now_s - start >= 60.0:
            left_out, start, n = max(0, n - limit), now_s, 0
        n += 1
        if len(self._seen) > 10_000:
            self._seen = {c: v for c, v in self._seen.items() if now_s - v[0] < 60.0}
        self._seen[client] = (start, n)
        return n <= limit, left_out


#: failed logins written to the audit log per client and minute (the rest are counted)
FAILED_LOGINS_AUDITED = 20


def _user(row: dict[str, Any]) -> User:
    return User(
        name=str(row["name"]),
        role=str(row["role"]),
        sites=tuple(json.loads(row["sites"] or "[]")),
        region=str(row["region"] or ""),
        disabled=row["disabled_ns"] is not None,
    )


class Accounts:
    """The accounts, sessions and audit log in the CIR's database.

    One :class:`Accounts` holds one database connection (:class:`central._sql.Sql`),
    which is not shared between threads: use an :class:`Accounts` from one thread at a
    time (the web application serializes its calls with a lock), or open one per thread.
    """

    def __init__(
        self,
        target: str | Path,
        *,
        session_s: float = 1800.0,
        clock: Callable[[], int] = time.time_ns,
        known_sites: Collection[str] | None = None,
        known_regions: Collection[str] | None = None,
        hasher: PasswordHasher | None = None,
    ) -> None:
        """Open the database ``target`` and bring its schema up to date.

        Args:
            target: a PostgreSQL URL or the path of the SQLite file (the CIR's:
                ``central._cir.database_target``).
            session_s: seconds a session lasts after its last use.
            clock: the time, ns since the epoch (tests inject their own).
            known_sites: the sites an officer may be bound to (None: not checked).
            known_regions: the regions a supervisor may be bound to (None: not checked).
            hasher: the argon2 hasher (default: ``argon2-cffi``'s RFC 9106 low-memory
                profile); tests pass a cheaper one.

        Raises:
            ConfigError: the database cannot be opened, or is newer than this program.
        """
        if session_s <= 0:
            raise ConfigError(
                f"a session of {session_s} s ends before it starts",
                fix="set session_minutes in [control_room] to 1 or more",
            )
        self.session_ns = int(session_s * 1e9)
        self._clock = clock
        #: failed logins per client and minute (_login_failed)
        self._failures = PerMinute()
        self._sites = None if known_sites is None else frozenset(known_sites)
        self._regions = None if known_regions is None else frozenset(known_regions)
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash = ""
        self.db = Sql(target)
        try:
            migrate(self.db)
        except BaseException:
            self.db.close()
            raise

    def __enter__(self) -> Accounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    # -- accounts ------------------------------------------------------------------------

    def check(self, name: str, role: str, *, sites: Iterable[str] = (), region: str = "") -> None:
        """Check a new account's settings, all but the password, as :meth:`add` does.

        Raises:
            ConfigError: the name is not a plain name, the role is unknown, an officer
                has no site or a supervisor no region, a site or region is not in the
                configuration, or sites or a region are given to a role they do not
                apply to.
            NiiError: an account of that name exists.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{name!r} is not a user name", fix=_NAME_FIX)
        if role not in ROLES:
            raise ConfigError(f"{role!r} is not a role", fix=f"choose one of {', '.join(ROLES)}")
        sites = tuple(sites)
        if role == "officer":
            if not sites:
                raise ConfigError(
                    f"officer {name} is bound to no site",
                    fix="name the site(s) the officer works at: --site SITE (repeatable)",
                )
        elif sites:
            raise ConfigError(
                f"{article(role)} is not bound to sites ({', '.join(sites)})",
                fix="leave --site out: only an officer's account names sites",
            )
        if role == "supervisor":
            if not region:
                raise ConfigError(
                    f"supervisor {name} has no region",
                    fix="name the region the supervisor oversees: --region REGION",
                )
        elif region:
            raise ConfigError(
                f"{article(role)} has no region ({region})",
                fix="leave --region out: only a supervisor's account names a region",
            )
        if self._sites is not None:
            unknown = [s for s in sites if s not in self._sites]
            if unknown:
                raise ConfigError(
                    f"no site {', '.join(map(repr, unknown))} in the control room's "
                    f"configuration (sites: {', '.join(sorted(self._sites)) or 'none'})",
                    fix="check the name, or add the site as a [[site]] table first",
                )
        if self._regions is not None and region and region not in self._regions:
            raise ConfigError(
                f"no region {region!r} in the control room's configuration "
                f"(regions: {', '.join(sorted(self._regions)) or 'none'})",
                fix="check the name: a region is the region of a [[site]] table",
            )
        if self.user(name) is not None:
            raise _exists(name)

    def check_password(self, name: str, password: str) -> None:
        """Check a new password for account ``name``.

        Raises:
            ConfigError: shorter than 10 characters, longer than 1024, or the name itself.
        """
        if not isinstance(password, str) or len(password) < _MIN_PASSWORD:
            raise ConfigError(
                f"the password of {name} is shorter than {_MIN_PASSWORD} characters",
                fix=f"choose a password of {_MIN_PASSWORD} characters or more (a phrase "
                "of several words is easy to remember)",
            )
        if len(password) > _MAX_PASSWORD:
            raise ConfigError(
                f"the password of {name} is longer than {_MAX_PASSWORD} characters",
                fix=f"choose a password of at most {_MAX_PASSWORD} characters",
            )
        if password.strip().lower() == name.lower():
            raise ConfigError(
                f"the password of {name} is the user name",
                fix="choose a password that is not the user name",
            )

    def add(
        self,
        name: str,
        role: str,
        password: str,
        *,
        sites: Iterable[str] = (),
        region: str = "",
        by: User | None = None,
    ) -> User:
        """Add an account (audited as ``user_add``, by ``by`` or the console).

        Args:
            name: the login name.
            role: one of :data:`ROLES`.
            password: at least 10 characters, not the name.
            sites: an officer's sites (at least one; each in the configuration).
            region: a supervisor's region (in the configuration).
            by: the administrator who adds it (None: the ``nii users`` console).

        Raises:
            ConfigError: a setting is invalid (see :meth:`check`, :meth:`check_password`).
            NiiError: an account of that name exists.
        """
        sites = tuple(dict.fromkeys(sites))
        self.check(name, role, sites=sites, region=region)
        self.check_password(name, password)
        hashed = self._hasher.hash(password)
        now = self._clock()
        with self.db.transaction():
            added = self.db.rowcount(
                "INSERT INTO users (name, role, sites, region, password, created_ns, "
                "changed_ns, disabled_ns, failed, locked_until_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0, NULL) ON CONFLICT (name) DO NOTHING",
                [name, role, json.dumps(list(sites)), region, hashed, now, now],
            )
            if not added:
                raise _exists(name)
            where = f" at {', '.join(sites)}" if sites else f" of {region}" if region else ""
            self._console_audit(by, "user_add", f"{name}: {role}{where}", now)
        user = self.user(name)
        assert user is not None
        return user

    def disable(self, name: str, *, by: User | None = None) -> None:
        """Stop ``name`` logging in and end its sessions (audited as ``user_disable``).

        Raises:
            NiiError: there is no account ``name``.
        """
        now = self._clock()
        with self.db.transaction():
            self._change(name, "disabled_ns = COALESCE(disabled_ns, ?)", [now], now)
            self.db.execute("DELETE FROM sessions WHERE name = ?", [name])
            self._console_audit(by, "user_disable", name, now)

    def enable(self, name: str, *, by: User | None = None) -> None:
        """Let ``name`` log in again, and lift a lock (audited as ``user_enable``).

        Raises:
            NiiError: there is no account ``name``.
        """
        now = self._clock()
        with self.db.transaction():
            self._change(name, "disabled_ns = NULL, failed = 0, locked_until_ns = NULL", [], now)
            self._console_audit(by, "user_enable", name, now)

    def reset(self, name: str, password: str, *, by: User | None = None) -> None:
        """Give ``name`` a new password, lift a lock and end its sessions (audited as
        ``user_reset``; the password is not).

        Raises:
            ConfigError: the password is too short, too long or the name.
            NiiError: there is no account ``name``.
        """
        self.require(name)
        self.check_password(name, password)
        hashed = self._hasher.hash(password)
        now = self._clock()
        with self.db.transaction():
            self._change(name, "password = ?, failed = 0, locked_until_ns = NULL", [hashed], now)
            self.db.execute("DELETE FROM sessions WHERE name = ?", [name])
            self._console_audit(by, "user_reset", name, now)

    def users(self) -> list[User]:
        """Every account, by name."""
        return [_user(r) for r in self.db.rows("SELECT * FROM users ORDER BY name")]

    def user(self, name: str) -> User | None:
        """The account ``name``, or None."""
        row = self.db.one("SELECT * FROM users WHERE name = ?", [name])
        return None if row is None else _user(row)

    def require(self, name: str) -> User:
        """The account ``name``.

        Raises:
            NiiError: there is no account ``name``.
        """
        user = self.user(name)
        if user is None:
            raise _no_user(name)
        return user

    def _change(self, name: str, sets: str, params: list[Any], now: int) -> None:
        n = self.db.rowcount(
            f"UPDATE users SET {sets}, changed_ns = ? WHERE name = ?", [*params, now, name]
        )
        if not n:
            raise _no_user(name)

    def _console_audit(self, by: User | None, action: str, detail: str, now: int) -> None:
        self._insert_audit(
            now,
            by.name if by else "console",
            by.role if by else "console",
            action,
            None,
            detail,
            "",
        )

    # -- logging in ----------------------------------------------------------------------

    def login(self, name: str, password: str, *, client: str = "") -> Session | None:
        """Log ``name`` in with ``password``; audited as ``login`` or ``login_failed``
        (with the reason, never the password).

        Args:
            name: the login name as typed.
            password: the password as typed.
            client: who asks (the remote address), for the audit log.

        Returns:
            A new session (with its token), or None: no such account, a wrong password,
            the account disabled or locked. Each costs one argon2 verification, so the
            time taken does not tell which. The fifth wrong password in a row locks the
            account for :data:`LOCK_S` seconds.
        """
        now = self._clock()
        row = None
        if isinstance(name, str) and _NAME.match(name):
            row = self.db.one("SELECT * FROM users WHERE name = ?", [name])
        if not isinstance(password, str) or len(password) > _MAX_PASSWORD:
            password = ""
        if row is None:
            self._verify(self._dummy(), password)
            # a password typed into the name field is not written to the audit log
            who = name if isinstance(name, str) and _NAME.match(name) else "(not a user name)"
            self._login_failed(now, who, "", "no such user", client)
            return None
        user = _user(row)
        ok = self._verify(str(row["password"]), password)
        locked_until = row["locked_until_ns"]
        if user.disabled:
            self._failed(user, "account disabled", client, now)
            return None
        if locked_until is not None and locked_until > now:
            self._failed(user, "account locked", client, now)
            return None
        if not ok:
            self._wrong_password(user, client, now)
            return None
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires = now + self.session_ns
        sets = "failed = 0, locked_until_ns = NULL"
        params: list[Any] = []
        if self._hasher.check_needs_rehash(str(row["password"])):
            sets += ", password = ?"  # hashed before the transaction: it takes a while
            params.append(self._hasher.hash(password))
        with self.db.transaction():
            self.db.execute("DELETE FROM sessions WHERE expires_ns <= ?", [now])
            self.db.execute(f"UPDATE users SET {sets} WHERE name = ?", [*params, user.name])
            self.db.execute(
                "INSERT INTO sessions (token_hash, name, csrf, created_ns, seen_ns, "
                "expires_ns, client) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [_token_hash(token), user.name, csrf, now, now, expires, client],
            )
            self._insert_audit(now, user.name, user.role, "login", None, "", client)
        return Session(token=token, csrf=csrf, user=user, expires_ns=expires)

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(hashed, password))
        except (VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        """A hash of a random password with this hasher's parameters: what an unknown
        name's password is checked against, to take as long as a known one's."""
        if not self._dummy_hash:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _failed(self, user: User, reason: str, client: str, now: int) -> None:
        self._login_failed(now, user.name, user.role, reason, client)

    def _login_failed(self, now: int, name: str, role: str, reason: str, client: str) -> None:
        """Audit a failed login, at most :data:`FAILED_LOGINS_AUDITED` a minute per client
        (anyone who reaches the port can fail to log in, and the audit log is
        append-only; :class:`PerMinute`). Lock-out counts every failure all the same."""
        write, left_out = self._failures.note(client, now / 1e9, FAILED_LOGINS_AUDITED)
        if left_out:
            self._insert_audit(
                now, "(many)", "", "login_failed", None,
                f"{left_out} more failed login(s) from this client in the minute before, "
                "not written one by one",
                client,
            )  # fmt: skip
        if write:
            self._insert_audit(now, name, role, "login_failed", None, reason, client)

    def _wrong_password(self, user: User, client: str, now: int) -> None:
        """Count a wrong password; the LOCK_AFTER-th in a row locks the account."""
        with self.db.transaction():
            self.db.execute("UPDATE users SET failed = failed + 1 WHERE name = ?", [user.name])
            failed = int(self.db.value("SELECT failed FROM users WHERE name = ?", [user.name]) or 0)
            reason = "wrong password"
            if failed >= LOCK_AFTER:
                self.db.execute(
                    "UPDATE users SET failed = 0, locked_until_ns = ? WHERE name = ?",
                    [now + int(LOCK_S * 1e9), user.name],
                )
                reason += f" ({failed} in a row): locked for {LOCK_S / 60:g} minutes"
            self._failed(user, reason, client, now)

    def session(self, token: str) -> Session | None:
        """The session of ``token`` (its ``token`` field ""), its expiry moved to
        ``session_s`` from now; None when the token is unknown, the session expired or
        its user is disabled."""
        if not isinstance(token, str) or not token or len(token) > 256:
            return None
        now = self._clock()
        key = _token_hash(token)
        row = self.db.one(
            "SELECT s.csrf, s.seen_ns, s.expires_ns, u.* FROM sessions s "
            "JOIN users u ON u.name = s.name WHERE s.token_hash = ?",
            [key],
        )
        if row is None:
            return None
        user = _user(row)
        expires = int(row["expires_ns"])
        if expires <= now or user.disabled:
            self.db.execute("DELETE FROM sessions WHERE token_hash = ?", [key])
            return None
        if now - int(row["seen_ns"]) >= _SLIDE_EVERY_S * 1e9:
            expires = now + self.session_ns
            self.db.execute(
                "UPDATE sessions SET seen_ns = ?, expires_ns = ? WHERE token_hash = ?",
                [now, expires, key],
            )
        return Session(token="", csrf=str(row["csrf"]), user=user, expires_ns=expires)

    def alive(self, token: str) -> bool:
        """Whether the session of ``token`` still stands (known, not expired, its user
        not disabled), without moving its expiry: for a stream the session opened,
        which must end with it (an open stream is no sign of a user at work)."""
        if not isinstance(token, str) or not token or len(token) > 256:
            return False
        row = self.db.one(
            "SELECT s.expires_ns, u.disabled_ns FROM sessions s "
            "JOIN users u ON u.name = s.name WHERE s.token_hash = ?",
            [_token_hash(token)],
        )
        return (
            row is not None
            and int(row["expires_ns"]) > self._clock()
            and row["disabled_ns"] is None
        )

    def logout(self, token: str, *, client: str = "") -> None:
        """End the session of ``token`` (audited as ``logout``; an unknown token: nothing)."""
        if not isinstance(token, str) or not token:
            return
        key = _token_hash(token)
        now = self._clock()
        with self.db.transaction():
            row = self.db.one(
                "SELECT u.name, u.role FROM sessions s JOIN users u ON u.name = s.name "
                "WHERE s.token_hash = ?",
                [key],
            )
            if row is None:
                return
            self.db.execute("DELETE FROM sessions WHERE token_hash = ?", [key])
            self._insert_audit(now, row["name"], row["role"], "logout", None, "", client)

    # -- the audit log -------------------------------------------------------------------

    def audit(
        self,
        user: User,
        action: str,
        *,
        ref: int | None = None,
        detail: str = "",
        client: str = "",
    ) -> None:
        """Add a row to the audit log: ``user`` did ``action`` (e.g. ``view``,
        ``decide``) on scan ``ref`` (None: on no scan), now."""
        self._insert_audit(self._clock(), user.name, user.role, action, ref, detail, client)

    def _insert_audit(
        self, ts_ns: int, name: str, role: str, action: str, ref: int | None, detail: str,
        client: str,
    ) -> None:  # fmt: skip
        self.db.execute(
            "INSERT INTO audit_log (ts_ns, name, role, action, ref, detail, client) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                ts_ns,
                plain(name),
                plain(role),
                plain(action),
                None if ref is None else int(ref),
                plain(detail),
                plain(client),
            ],
        )

    def audit_rows(
        self,
        *,
        name: str | None = None,
        action: str | None = None,
        ref: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Rows of the audit log, newest first.

        Args:
            name: only this user's.
            action: only this action's.
            ref: only those about this scan.
            since_ns: only those at or after this time (ns since the epoch).
            until_ns: only those before this time.
            limit: at most this many (1 to 10,000).

        Returns:
            Dicts with ``id``, ``ts_ns``, ``name``, ``role``, ``action``, ``ref``
            (None: no scan), ``detail`` and ``client``.
        """
        where: list[str] = []
        params: list[Any] = []
        for col, op, val in (
            ("name", "=", name),
            ("action", "=", action),
            ("ref", "=", ref),
            ("ts_ns", ">=", since_ns),
            ("ts_ns", "<", until_ns),
        ):
            if val is not None:
                where.append(f"{col} {op} ?")
                params.append(val)
        sql = "SELECT id, ts_ns, name, role, action, ref, detail, client FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts_ns DESC, id DESC LIMIT ?"
        params.append(max(1, min(int(limit), 10_000)))
        return self.db.rows(sql, params)


def article(role: str) -> str:
    """``role`` with its article: "an officer", "a supervisor"."""
    return f"an {role}" if role[:1] in "aeiou" else f"a {role}"


def _exists(name: str) -> NiiError:
    return NiiError(
        f"user {name} exists",
        fix=f"choose another name, or give it a new password: nii users reset {name}",
    )


def _no_user(name: str) -> NiiError:
    return NiiError(f"no user {name!r}", fix="check the name: nii users list")
