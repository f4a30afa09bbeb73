"""``nii users``: the control room's accounts (add, disable, enable, reset, list).

The accounts live in the CIR's database (the one the control room's ``central``
configuration names); the sites and regions an account is bound to must be those of
the control room's configuration (``[[site]]`` tables).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from central.control_room._accounts import Accounts


def _accounts(args: argparse.Namespace) -> Accounts:
    """The accounts of the control room configured in ``args.config``.

    Raises:
        ConfigError: the configuration is missing or wrong, or the database cannot be
            opened.
    """
    from central._cir import database_target
    from central.control_room._accounts import Accounts
    from central.control_room._config import ControlRoomConfig

    cfg = ControlRoomConfig.load(Path(args.config))
    return Accounts(
        database_target(cfg.central.state_dir, cfg.central.cir),
        session_s=cfg.session_s,
        known_sites=[s.name for s in cfg.sites],
        known_regions=cfg.regions,
    )


def _password(args: argparse.Namespace, accounts: Accounts) -> str:
    """The new password of ``args.name``: one line of standard input with
    ``--password-stdin``, else typed twice at the terminal; checked.

    Raises:
        ConfigError: nothing on standard input, the two typed differ, or the password is
            too short, too long or the name.
    """
    from core.errors import ConfigError

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ConfigError(
                "no password on standard input",
                fix="write the password as one line, e.g. from a password manager: "
                "... | nii users add NAME --password-stdin",
            )
    else:
        try:
            password = getpass.getpass(f"password for {args.name}: ")
            again = getpass.getpass("the same again: ")
        except EOFError:  # no terminal and nothing more on standard input (a script)
            raise ConfigError(
                "no password typed: standard input ended",
                fix="in a script, give the password as one line on standard input with "
                "--password-stdin",
            ) from None
        if again != password:
            raise ConfigError(
                "the two passwords differ", fix="run it again and type the same password twice"
            )
    accounts.check_password(args.name, password)
    return password


def cmd_add(args: argparse.Namespace) -> int:
    """Add an account."""
    with _accounts(args) as accounts:
        sites = args.site or []
        region = args.region or ""
        accounts.check(args.name, args.role, sites=sites, region=region)  # before the prompt
        user = accounts.add(
            args.name, args.role, _password(args, accounts), sites=sites, region=region
        )
    print(f"user {user.name} added: {_bound(user.role, user.sites, user.region)}")
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    """Stop an account logging in; its sessions end."""
    with _accounts(args) as accounts:
        accounts.disable(args.name)
    print(f"user {args.name} disabled: it may not log in, and its sessions have ended")
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    """Let a disabled or locked account log in again."""
    with _accounts(args) as accounts:
        accounts.enable(args.name)
    print(f"user {args.name} enabled")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    """Give an account a new password; its sessions end."""
    with _accounts(args) as accounts:
        accounts.require(args.name)  # before the prompt
        accounts.reset(args.name, _password(args, accounts))
    print(f"user {args.name} has a new password; its sessions have ended")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print every account: name, role, what it sees, whether it is active."""
    import time

    with _accounts(args) as accounts:
        users = accounts.users()
        locked = {
            str(r["name"]): int(r["locked_until_ns"])
            for r in accounts.db.rows(
                "SELECT name, locked_until_ns FROM users WHERE locked_until_ns > ?",
                [time.time_ns()],
            )
        }
    if not users:
        print(f"no users yet: add one with nii users add NAME --role ROLE --config {args.config}")
        return 0
    rows = [("NAME", "ROLE", "SEES", "STATE")]
    rows += [
        (u.name, u.role, _bound(u.role, u.sites, u.region), _state(u.disabled, locked.get(u.name)))
        for u in users
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    return 0


def _state(disabled: bool, locked_until_ns: int | None) -> str:
    """An account's state for ``nii users list``: disabled, locked (until when), active."""
    import time

    if disabled:
        return "disabled"
    if locked_until_ns is not None:
        until = time.strftime("%H:%M:%S", time.localtime(locked_until_ns / 1e9))
        return f"locked until {until} (wrong passwords; 'nii users enable' lifts it)"
    return "active"


def _bound(role: str, sites: tuple[str, ...], region: str) -> str:
    if role == "officer":
        return f"site {', '.join(sites)}" if len(sites) == 1 else f"sites {', '.join(sites)}"
    if role == "supervisor":
        return f"region {region}"
    return "every site"


def room_action(
    subparsers: Any, name: str, helptext: str, func: Any, *, name_help: str | None
) -> Any:
    """One action of a control-room command: ``NAME`` (unless ``name_help`` is None) and
    ``--config`` (control-room.toml); returns its parser."""
    p = subparsers.add_parser(name, help=helptext)
    if name_help is not None:
        p.add_argument("name", help=name_help)
    p.add_argument(
        "--config",
        default="control-room.toml",
        help="control-room configuration (TOML; control-room.toml)",
    )
    p.set_defaults(func=func)
    return p


def register(sub: Any) -> None:
    """Add ``users`` to the ``nii`` command line."""
    from central.control_room._accounts import ROLES

    u = sub.add_parser("users", help="control-room accounts: add, disable, enable, reset, list")
    us = u.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, helptext: str, func: Any, *, named: bool = True) -> Any:
        return room_action(us, name, helptext, func, name_help="the login name" if named else None)

    a = action("add", "add an account (the password is asked twice)", cmd_add)
    a.add_argument("--role", required=True, choices=ROLES, help="what the account may do")
    a.add_argument(
        "--site", action="append", help="an officer's site (repeatable; a [[site]] name)"
    )
    a.add_argument("--region", help="a supervisor's region (a [[site]] region)")
    a.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    action("disable", "stop an account logging in and end its sessions", cmd_disable)
    action("enable", "let a disabled or locked account log in again", cmd_enable)
    r = action("reset", "give an account a new password and end its sessions", cmd_reset)
    r.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    action("list", "every account, its role and what it sees", cmd_list, named=False)


__all__ = ["register", "room_action"]
