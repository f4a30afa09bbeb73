"""``nii risk token add|list|revoke``: the Risk Management System's API tokens.

The tokens file is the control room's ``[risk_system] tokens`` (one ``NAME SHA256HEX``
line per token); a token is printed once, when it is made, and only its SHA-256 is
kept. The control room reads the file again when it changes: a token added or revoked
counts from the next request.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from central.control_room._risk import TokenFile


def _tokens(args: argparse.Namespace) -> TokenFile:
    """The token file of the control room configured in ``args.config``.

    Raises:
        ConfigError: the configuration is missing or wrong, or has no ``[risk_system]``.
    """
    from central.control_room._config import ControlRoomConfig
    from central.control_room._risk import TokenFile
    from core.errors import ConfigError

    cfg = ControlRoomConfig.load(Path(args.config))
    if cfg.risk is None:
        raise ConfigError(
            f"{cfg.path} has no [risk_system] table: the risk-system API is off",
            fix='add [risk_system] with tokens = "risk-tokens" to it, then add the token',
        )
    return TokenFile(cfg.risk.tokens)


def cmd_add(args: argparse.Namespace) -> int:
    """Make a token for ``args.name``; print it once."""
    tokens = _tokens(args)
    token = tokens.add(args.name)
    print(token)
    print(
        f"token {args.name!r} added to {tokens.path}: give it to the RMS now, it is not kept "
        "(the RMS sends it as 'Authorization: Bearer TOKEN')",
        flush=True,
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print the names of the tokens."""
    tokens = _tokens(args)
    names = tokens.names()
    if not names:
        print(f"no risk-system tokens in {tokens.path}: nii risk token add NAME makes one")
    for name in names:
        print(name)
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """Remove every token of ``args.name``."""
    from core.errors import NiiError

    tokens = _tokens(args)
    gone = tokens.revoke(args.name)
    if not gone:
        raise NiiError(
            f"no risk-system token named {args.name!r} in {tokens.path}",
            fix="check the name: nii risk token list",
        )
    print(f"{gone} token(s) of {args.name!r} revoked: refused from the next request")
    return 0


def register(sub: Any) -> None:
    """Add ``risk`` to the ``nii`` command line."""
    r = sub.add_parser("risk", help="the Risk Management System's API: its tokens")
    rs = r.add_subparsers(dest="what", metavar="WHAT", required=True)
    t = rs.add_parser("token", help="the RMS's API tokens: add, list, revoke")
    ts = t.add_subparsers(dest="action", metavar="ACTION", required=True)

    from nii._users_cli import room_action

    def action(name: str, helptext: str, func: Any, *, named: bool = True) -> None:
        who = "the token's name (the RMS client, e.g. weboc-rms)"
        room_action(ts, name, helptext, func, name_help=who if named else None)

    action("add", "make a token and print it once (only its SHA-256 is kept)", cmd_add)
    action("list", "the names of the tokens", cmd_list, named=False)
    action("revoke", "remove every token of a name", cmd_revoke)


__all__ = ["register"]
