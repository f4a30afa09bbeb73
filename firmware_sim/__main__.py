"""``python -m firmware_sim sim ...``: the simulator without the platform's command line."""

from __future__ import annotations

import argparse
import sys

from firmware_sim import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
