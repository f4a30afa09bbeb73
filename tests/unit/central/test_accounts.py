"""The control room's accounts (issue 16): users, logins, sessions and the audit log in
the CIR's database, on a real SQLite file (and once on a real PostgreSQL server of our
own), with a cheap argon2 hasher and an injected clock; and ``nii users``."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from central._sql import Sql
from central.control_room import _accounts
from central.control_room._accounts import LOCK_AFTER, LOCK_S, ROLES, Accounts, User
from central.control_room._config import Site
from core.errors import ConfigError, NiiError

T0 = 1_800_000_000 * 10**9
S = 10**9
PASSWORD = "correct horse battery"
WRONG = "Tr0ub4dor&3x"


def cheap() -> PasswordHasher:
    """argon2id at its smallest cost: the same code path, a thousandth of the time."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * S)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "cir.sqlite")
    return str(request.getfixturevalue("pg_database"))


def open_accounts(target: str, clock: Clock, **kw: Any) -> Accounts:
    kw.setdefault("hasher", cheap())
    return Accounts(
        target,
        session_s=60.0,
        clock=clock,
        known_sites={"port-a", "port-b"},
        known_regions={"north"},
        **kw,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def acc(tmp_path: Path, clock: Clock) -> Any:
    a = open_accounts(str(tmp_path / "cir.sqlite"), clock)
    yield a
    a.close()


def test_the_same_life_of_an_account_on_both_engines(database: str, clock: Clock) -> None:
    a = open_accounts(database, clock)
    try:
        ana = a.add("ana", "officer", PASSWORD, sites=["port-a"])
        assert ana == User("ana", "officer", ("port-a",), "", False)
        # wrong, wrong ... locked; then the right password is refused too, until it passes
        for _ in range(LOCK_AFTER):
            assert a.login("ana", "not the password", client="10.0.0.9") is None
        assert a.login("ana", PASSWORD) is None
        clock.advance(LOCK_S + 1)
        s = a.login("ana", PASSWORD, client="10.0.0.9")
        assert s is not None and s.user == ana and s.token and s.csrf
        back = a.session(s.token)
        assert back is not None and back.user == ana and back.csrf == s.csrf and back.token == ""
        # the session slides while used, and ends unused
        clock.advance(50)
        assert a.session(s.token) is not None
        clock.advance(50)
        assert a.session(s.token) is not None  # 100 s after login, 50 s after its last use
        clock.advance(61)
        assert a.session(s.token) is None
        # a new password ends the sessions
        s2 = a.login("ana", PASSWORD)
        assert s2 is not None
        a.reset("ana", "another good password")
        assert a.session(s2.token) is None and a.login("ana", PASSWORD) is None
        assert a.login("ana", "another good password") is not None
        # the token itself is in no row
        db = a.db
        assert db.one("SELECT * FROM sessions WHERE token_hash = ?", [s2.token]) is None
        # the audit log says what happened, newest first, and is append-only
        a.audit(ana, "view", ref=7, detail="image", client="10.0.0.9")
        rows = a.audit_rows(name="ana")
        assert rows[0]["action"] == "view" and rows[0]["ref"] == 7
        failed = [r["detail"] for r in a.audit_rows(action="login_failed")]
        assert "wrong password (5 in a row): locked for 5 minutes" in failed
        assert "account locked" in failed
        for sql in ("UPDATE audit_log SET detail = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="append-only"):
                db.execute(sql)
        assert a.audit_rows(action="view")[0]["detail"] == "image"
    finally:
        a.close()


def test_add_list_disable_enable(acc: Accounts) -> None:
    acc.add("ana", "officer", PASSWORD, sites=["port-a", "port-b", "port-a"])
    acc.add("bo", "supervisor", PASSWORD, region="north")
    acc.add("cy", "auditor", PASSWORD)
    assert [u.name for u in acc.users()] == ["ana", "bo", "cy"]
    assert acc.user("ana") == User("ana", "officer", ("port-a", "port-b"), "", False)
    assert acc.user("bo") == User("bo", "supervisor", (), "north", False)
    assert acc.user("nobody") is None
    acc.disable("bo")
    assert acc.require("bo").disabled and acc.login("bo", PASSWORD) is None
    acc.enable("bo")
    assert not acc.require("bo").disabled and acc.login("bo", PASSWORD) is not None
    changes = [(r["action"], r["name"], r["detail"]) for r in acc.audit_rows(name="console")]
    assert changes[:2] == [("user_enable", "console", "bo"), ("user_disable", "console", "bo")]
    assert ("user_add", "console", "ana: officer at port-a, port-b") in changes
    for verb in (acc.disable, acc.enable, acc.require):
        with pytest.raises(NiiError, match="no user 'zed'") as e:
            verb("zed")
        assert "nii users list" in e.value.fix


def test_the_stored_password_is_an_argon2_hash(acc: Accounts) -> None:
    acc.add("ana", "analyst", PASSWORD)
    stored = acc.db.value("SELECT password FROM users WHERE name = 'ana'")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)


def test_a_hash_of_older_parameters_is_renewed_at_login(tmp_path: Path, clock: Clock) -> None:
    target = str(tmp_path / "cir.sqlite")
    with open_accounts(target, clock) as a:
        a.add("ana", "analyst", PASSWORD)
        old = a.db.value("SELECT password FROM users")
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    with open_accounts(target, clock, hasher=stronger) as a:
        assert a.login("ana", "wrong password!") is None
        assert a.db.value("SELECT password FROM users") == old  # only a right one rehashes
        assert a.login("ana", PASSWORD) is not None
        new = a.db.value("SELECT password FROM users")
        assert new != old and not stronger.check_needs_rehash(new)
        assert a.login("ana", PASSWORD) is not None


def test_wrong_unknown_and_disabled_logins_are_one_answer_and_audited(
    acc: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    acc.add("ana", "officer", PASSWORD, sites=["port-a"])
    acc.add("bo", "analyst", PASSWORD)
    acc.disable("bo")
    verified: list[str] = []
    real = acc._verify

    def verify(hashed: str, password: str) -> bool:
        verified.append(hashed)
        return real(hashed, password)

    monkeypatch.setattr(acc, "_verify", verify)
    assert acc.login("ana", WRONG) is None
    assert acc.login("nobody", PASSWORD) is None
    assert acc.login("bo", PASSWORD) is None
    assert acc.login(PASSWORD, PASSWORD) is None  # the password typed as the name
    assert len(verified) == 4  # each one argon2 verification, whether the name exists or not
    rows = acc.audit_rows(action="login_failed")
    assert [(r["name"], r["detail"]) for r in reversed(rows)] == [
        ("ana", "wrong password"),
        ("nobody", "no such user"),
        ("bo", "account disabled"),
        ("(not a user name)", "no such user"),
    ]
    everything = str(acc.db.rows("SELECT * FROM audit_log"))
    assert PASSWORD not in everything and WRONG not in everything


def test_failed_logins_are_audited_a_few_a_minute_per_client_and_counted(
    acc: Accounts, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone who reaches the port can fail to log in: the append-only audit log takes a
    few such rows a minute per client, and one counting the rest."""
    monkeypatch.setattr(_accounts, "FAILED_LOGINS_AUDITED", 3)
    monkeypatch.setattr(acc, "_verify", lambda hashed, password: False)  # fast
    for i in range(5):
        assert acc.login(f"nobody{i}", WRONG, client="10.0.0.9") is None
    assert acc.login("nobody", WRONG, client="10.0.0.7") is None  # another client
    rows = acc.audit_rows(action="login_failed")
    assert sorted(r["client"] for r in rows) == ["10.0.0.7"] + ["10.0.0.9"] * 3
    clock.advance(61)
    assert acc.login("nobody", WRONG, client="10.0.0.9") is None
    newest = acc.audit_rows(action="login_failed")[:2]
    assert any("2 more failed login(s)" in r["detail"] for r in newest), newest


def test_five_failures_lock_for_five_minutes_and_a_success_clears_the_count(
    acc: Accounts, clock: Clock
) -> None:
    acc.add("ana", "officer", PASSWORD, sites=["port-a"])
    for _ in range(LOCK_AFTER - 1):
        assert acc.login("ana", "wrong password") is None
    assert acc.login("ana", PASSWORD) is not None  # the count starts again
    for _ in range(LOCK_AFTER - 1):
        assert acc.login("ana", "wrong password") is None
    assert acc.login("ana", PASSWORD) is not None
    for _ in range(LOCK_AFTER):
        assert acc.login("ana", "wrong password") is None
    clock.advance(LOCK_S - 1)
    assert acc.login("ana", PASSWORD) is None
    assert acc.audit_rows(action="login_failed", limit=1)[0]["detail"] == "account locked"
    clock.advance(2)
    assert acc.login("ana", PASSWORD) is not None
    # enable lifts a lock early, as reset does
    for _ in range(LOCK_AFTER):
        acc.login("ana", "wrong password")
    acc.enable("ana")
    assert acc.login("ana", PASSWORD) is not None


def test_sessions_expire_slide_and_end(acc: Accounts, clock: Clock) -> None:
    acc.add("ana", "officer", PASSWORD, sites=["port-a"])
    s = acc.login("ana", PASSWORD, client="10.0.0.9")
    assert s is not None and s.expires_ns == T0 + 60 * S
    row = acc.db.one("SELECT * FROM sessions")
    assert row is not None and s.token not in str(row) and row["client"] == "10.0.0.9"
    clock.advance(5)
    got = acc.session(s.token)
    assert got is not None and got.expires_ns == T0 + 60 * S  # written at most every 10 s
    clock.advance(10)
    got = acc.session(s.token)
    assert got is not None and got.expires_ns == clock.now + 60 * S
    clock.advance(60)
    assert acc.session(s.token) is None
    assert acc.db.value("SELECT COUNT(*) AS n FROM sessions") == 0
    for bad in ("", "x" * 1000, "not a token"):
        assert acc.session(bad) is None
    # logout ends it, and is audited
    s = acc.login("ana", PASSWORD)
    assert s is not None
    acc.logout(s.token, client="10.0.0.9")
    acc.logout(s.token)  # again: nothing
    assert acc.session(s.token) is None
    assert [r["action"] for r in acc.audit_rows(name="ana", limit=2)] == ["logout", "login"]
    # disable ends the sessions
    s = acc.login("ana", PASSWORD)
    assert s is not None
    acc.disable("ana")
    assert acc.session(s.token) is None


def test_audit_rows_are_searchable(acc: Accounts, clock: Clock) -> None:
    ana = acc.add("ana", "officer", PASSWORD, sites=["port-a"])
    bo = acc.add("bo", "analyst", PASSWORD)
    start = clock.now
    for i in range(6):
        clock.advance(1)
        acc.audit(ana if i % 2 else bo, "view", ref=i, detail=f"d{i}")
    acc.audit(bo, "decide", ref=3, detail="red")
    assert [r["ref"] for r in acc.audit_rows(name="ana")] == [5, 3, 1]
    assert [r["detail"] for r in acc.audit_rows(ref=3)] == ["red", "d3"]
    assert [r["ref"] for r in acc.audit_rows(action="view", limit=2)] == [5, 4]
    since, until = start + 2 * S, start + 4 * S
    assert [r["ref"] for r in acc.audit_rows(since_ns=since, until_ns=until)] == [2, 1]
    row = acc.audit_rows(action="decide")[0]
    assert row["name"] == "bo" and row["role"] == "analyst" and row["client"] == ""
    assert set(row) == {"id", "ts_ns", "name", "role", "action", "ref", "detail", "client"}


def test_decisions_and_annotations_are_append_only(tmp_path: Path, acc: Accounts) -> None:
    acc.audit(User("ana", "officer", ("port-a",), "", False), "view", ref=1)
    db = Sql(tmp_path / "cir.sqlite")
    try:
        db.execute(
            "INSERT INTO decisions (ref, verdict, kind, name, role, created_ns, reason, doc, "
            "signature, key_id) VALUES (1, 'red', 'decision', 'ana', 'officer', 1, 'r', '{}', "
            "'s', 'k')"
        )
        db.execute(
            "INSERT INTO annotations (ref, decision, name, created_ns, doc) "
            "VALUES (1, 1, 'ana', 1, '{}')"
        )
        for table in ("decisions", "annotations", "audit_log"):
            for sql in (f"UPDATE {table} SET ref = 2", f"DELETE FROM {table}"):
                with pytest.raises(Exception, match="append-only"):
                    db.execute(sql)
        assert db.value("SELECT COUNT(*) AS n FROM decisions") == 1
    finally:
        db.close()


@pytest.mark.parametrize(
    ("name", "role", "password", "kw", "says", "fix"),
    [
        ("Ana", "officer", PASSWORD, {"sites": ["port-a"]}, "not a user name", "lower-case"),
        ("a", "analyst", PASSWORD, {}, "not a user name", "2 to 32"),
        ("ana", "boss", PASSWORD, {}, "not a role", "officer, supervisor"),
        ("ana", "officer", PASSWORD, {}, "bound to no site", "--site"),
        ("ana", "officer", PASSWORD, {"sites": ["port-z"]}, "no site 'port-z'", "[[site]]"),
        ("ana", "supervisor", PASSWORD, {}, "has no region", "--region"),
        ("ana", "supervisor", PASSWORD, {"region": "south"}, "no region 'south'", "[[site]]"),
        ("ana", "analyst", PASSWORD, {"sites": ["port-a"]}, "not bound to sites", "leave"),
        (
            "ana",
            "officer",
            PASSWORD,
            {"sites": ["port-a"], "region": "north"},
            "an officer has no",
            "leave",
        ),
        ("ana", "analyst", "short", {}, "shorter than 10", "10 characters"),
        ("ana.lyst", "analyst", "ana.lyst", {}, "shorter than 10", "10"),
        ("analyst.one", "analyst", "Analyst.One", {}, "is the user name", "not the user"),
    ],
)
def test_a_bad_account_is_one_error_with_a_fix(
    acc: Accounts, name: str, role: str, password: str, kw: Any, says: str, fix: str
) -> None:
    with pytest.raises(ConfigError, match=says) as e:
        acc.add(name, role, password, **kw)
    assert fix in e.value.fix and e.value.fix
    assert acc.users() == []


def test_an_existing_name_is_refused_with_the_reset_command(acc: Accounts) -> None:
    acc.add("ana", "analyst", PASSWORD)
    with pytest.raises(NiiError, match="user ana exists") as e:
        acc.add("ana", "auditor", "some other password")
    assert "nii users reset ana" in e.value.fix
    with pytest.raises(ConfigError, match="shorter"):
        acc.reset("ana", "short")
    with pytest.raises(NiiError, match="no user"):
        acc.reset("zed", PASSWORD)


def test_who_sees_and_who_decides() -> None:
    a, b = Site("port-a", "north", ("s1",)), Site("port-b", "south", ("s2",))
    officer = User("ana", "officer", ("port-a",), "", False)
    supervisor = User("bo", "supervisor", (), "south", False)
    assert [officer.can_see(x) for x in (a, b, None)] == [True, False, False]
    assert [supervisor.can_see(x) for x in (a, b, None)] == [False, True, False]
    for role in ("analyst", "auditor", "admin"):
        assert all(User("x", role, (), "", False).can_see(x) for x in (a, b, None))
    assert [User("x", r, (), "", False).can_decide for r in ROLES] == [
        True, True, True, False, False,
    ]  # fmt: skip
    off = User("ana", "officer", ("port-a",), "", True)
    assert not off.can_see(a) and not off.can_decide


# -- nii users ---------------------------------------------------------------------------


@pytest.fixture
def room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A control-room configuration whose CIR is a SQLite file in tmp_path/cir."""
    monkeypatch.setattr(_accounts, "PasswordHasher", cheap)
    (tmp_path / "cir").mkdir()
    (tmp_path / "central.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "cir"\n')
    cfg = tmp_path / "control-room.toml"
    cfg.write_text(
        '[control_room]\ncentral = "central.toml"\n\n'
        '[[site]]\nname = "port-a"\nregion = "north"\nscanners = ["scanner1"]\n'
    )
    return cfg


def nii_users(cfg: Path, *argv: str, stdin: str = "") -> int:
    from nii._users_cli import register

    parser = argparse.ArgumentParser(prog="nii")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["users", argv[0], "--config", str(cfg), *argv[1:]])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.StringIO(stdin))
        return int(args.func(args))


def test_nii_users(room: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert nii_users(room, "list") == 0
    assert "no users yet" in capsys.readouterr().out
    add = ("add", "ana", "--role", "officer", "--site", "port-a", "--password-stdin")
    assert nii_users(room, *add, stdin=PASSWORD + "\n") == 0
    assert "user ana added: site port-a" in capsys.readouterr().out
    assert (
        nii_users(room, "add", "bo", "--role", "auditor", "--password-stdin", stdin=PASSWORD) == 0
    )
    assert nii_users(room, "disable", "bo") == 0
    capsys.readouterr()
    assert nii_users(room, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "SEES", "STATE"]
    assert lines[1].split() == ["ana", "officer", "site", "port-a", "active"]
    assert lines[2].split() == ["bo", "auditor", "every", "site", "disabled"]
    assert nii_users(room, "enable", "bo") == 0
    assert nii_users(room, "reset", "ana", "--password-stdin", stdin="a new long password\n") == 0
    with Accounts(room.parent / "cir" / "cir.sqlite", hasher=cheap()) as a:
        assert a.login("ana", "a new long password") is not None
        assert a.login("bo", PASSWORD) is not None
        for _ in range(5):
            assert a.login("bo", "not the password") is None
    capsys.readouterr()
    assert nii_users(room, "list") == 0  # the administrator sees the lock-out
    assert "locked until" in capsys.readouterr().out.splitlines()[2]


def test_nii_users_asks_twice_and_checks_before_asking(
    room: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(typed))
    with pytest.raises(ConfigError, match="differ") as e:
        nii_users(room, "add", "ana", "--role", "analyst")
    assert e.value.fix
    typed = iter([PASSWORD, PASSWORD])
    assert nii_users(room, "add", "ana", "--role", "analyst") == 0

    def no_prompt(prompt: str = "") -> str:
        raise AssertionError("asked for a password before the settings were checked")

    monkeypatch.setattr("getpass.getpass", no_prompt)
    with pytest.raises(ConfigError, match="no site 'port-z'"):
        nii_users(room, "add", "cy", "--role", "officer", "--site", "port-z")
    with pytest.raises(ConfigError, match="no region 'south'"):
        nii_users(room, "add", "cy", "--role", "supervisor", "--region", "south")
    with pytest.raises(NiiError, match="user ana exists"):
        nii_users(room, "add", "ana", "--role", "analyst")
    with pytest.raises(NiiError, match="no user 'zed'"):
        nii_users(room, "reset", "zed")
    with pytest.raises(ConfigError, match="no password on standard input"):
        nii_users(room, "reset", "ana", "--password-stdin", stdin="\n")
    with pytest.raises(ConfigError, match="shorter"):
        nii_users(room, "reset", "ana", "--password-stdin", stdin="short\n")

    def ended(prompt: str = "") -> str:  # a script: no terminal, standard input at its end
        raise EOFError

    monkeypatch.setattr("getpass.getpass", ended)
    with pytest.raises(ConfigError, match="no password typed") as e:
        nii_users(room, "add", "dee", "--role", "analyst")
    assert "--password-stdin" in e.value.fix


def test_nii_users_without_a_configuration_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        nii_users(tmp_path / "nowhere.toml", "list")
    assert e.value.fix
