"""Every ``nii`` command and subcommand prints its help (a stray ``%`` in a help text breaks it)."""

from __future__ import annotations

import argparse

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
