"""Every ``nii`` command and subcommand prints its help (a stray ``%`` in a help text breaks it)."""

from __future__ import annotations

import argparse
from typing import Any

from nii.__main__ import build_parser


def _walk(
    p: argparse.ArgumentParser, path: str = "nii"
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, p)]
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += _walk(sub, f"{path} {name}")
    return out


def test_every_help_renders() -> None:
    parsers = _walk(build_parser())
    names = {n for n, _ in parsers}
    for expected in ("nii central enroll", "nii cir show", "nii bench live", "nii sim", "nii qa"):
        assert expected in names
    for name, p in parsers:
        text = p.format_help()
        assert text.startswith("usage:"), name


def _fix_texts() -> list[tuple[str, str]]:
    """Every ``fix=`` text in the source (f-strings with their fields as ``X``), by file."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out: list[tuple[str, str]] = []
    for pkg in ("core", "central", "edge", "nii", "bench", "drivers", "firmware_sim"):
        for f in sorted((root / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text())):
                value: ast.expr | None = None
                if isinstance(node, ast.keyword) and node.arg == "fix":
                    value = node.value
                elif (  # nii doctor's Check(name, status, detail, fix)
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Check"
                    and len(node.args) >= 4
                ):
                    value = node.args[3]
                if value is None:
                    continue
                parts: list[str] = []
                for n in ast.walk(value):
                    if isinstance(n, ast.Constant) and isinstance(n.value, str):
                        parts.append(n.value)
                    elif isinstance(n, ast.FormattedValue):
                        parts.append("X")
                where = f"{f.relative_to(root)}:{getattr(node, 'lineno', 0)}"
                out.append((where, "".join(parts)))
    return out


def _check_command(words: list[str], p: argparse.ArgumentParser) -> str | None:
    """None if ``nii words…`` names an existing command, else what is wrong."""
    for w in words:
        if w.startswith("-") or (not w.isidentifier() and not w.replace("-", "").isalpha()):
            return None  # options and values: the command path ends here
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        positional = [a for a in p._actions if not a.option_strings and a.choices and not subs]
        if subs:
            if w not in subs[0].choices:
                return f"no command {w!r} (known: {', '.join(subs[0].choices)})"
            p = subs[0].choices[w]
        elif positional:
            if w not in positional[0].choices:  # type: ignore[operator]
                return f"{w!r} is not one of {positional[0].choices}"
            return None
        else:
            return None
    return None


def test_every_fix_that_names_a_command_names_one_that_exists() -> None:
    import re

    parser = build_parser()
    texts = _fix_texts()
    assert len(texts) > 50  # the scan found the fixes
    named = 0
    for where, text in texts:
        for m in re.finditer(r"(?<![\w/.:-])nii ((?:[a-z][\w-]*\s?)+)", text):
            words = m.group(1).split()
            named += 1
            problem = _check_command(words, parser)
            assert problem is None, f"{where}: fix names 'nii {' '.join(words)}': {problem}"
    assert named > 10


def test_version_is_not_a_usage_error(capsys: Any) -> None:
    import pytest

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("nii ")


def _commands(p: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_a_command_loads_only_its_own_package_yet_every_command_is_known() -> None:
    from nii.__main__ import _OWN, _REGISTRARS, _command

    every = _commands(build_parser())
    added = {n for names, _ in _REGISTRARS for n in names}
    # a command some package adds that the lazy table does not name would vanish
    assert every == _OWN | added
    for name in sorted(every):
        assert _command(["--debug", name]) == _command([name, "--help"]) == name
        assert name in _commands(build_parser(name))
    assert _commands(build_parser("sim")) == _OWN | {"sim"}
    assert _command(["no-such-command"]) is None
    assert _command([]) is None
    assert _command(["--help"]) is None  # the list of every command
    assert _command(["--version"]) == ""
