"""Run one fuzz target: ``python -m tests.fuzz.run NAME [--runs N] [--seconds S]``.

A target is a module ``tests/fuzz/fuzz_<NAME>.py`` with ``one_input(data: bytes)``
that feeds one generated input to the code under test. The runner drives it with
atheris (coverage-guided libFuzzer), the project's modules instrumented for
coverage. An exception from the project's error tree (``core.errors.NiiError``)
is an accepted refusal; any other exception is a crash: the runner prints the
input in hex and the traceback, writes the input to ``<crash-dir>/crash-<name>-
<sha256[:16]>``, and exits with status 1. A run that reaches ``--runs`` inputs or
``--seconds`` prints one summary line (inputs, inputs/s, refusals) and exits 0.

A target may define ``SEEDS: list[bytes]`` (valid or near-valid inputs): they
start the corpus, so mutations begin from messages the code accepts.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
#: packages whose code is instrumented for coverage guidance
INSTRUMENTED = ["core", "edge", "central", "drivers", "firmware_sim", "tests.fuzz"]


def targets() -> list[str]:
    """Names of the fuzz targets present: ``fuzz_<name>.py`` in this folder, sorted."""
    return sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))


def load(name: str, *, instrument: bool = True) -> ModuleType:
    """Import the target ``fuzz_<name>`` (instrumented by atheris when ``instrument``).

    Raises:
        SystemExit: no such target (status 2, with the list of targets).
    """
    if name not in targets():
        print(f"error: no fuzz target {name!r} (tests/fuzz/fuzz_{name}.py)", file=sys.stderr)
        print(f"fix: pick one of: {', '.join(targets()) or 'none yet'}", file=sys.stderr)
        raise SystemExit(2)
    if not instrument:
        return importlib.import_module(f"tests.fuzz.fuzz_{name}")
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        return importlib.import_module(f"tests.fuzz.fuzz_{name}")


class Driver:
    """Calls ``one_input`` once per input; counts; stops at a budget; reports crashes.

    Args:
        name: the target's name (for messages and crash files).
        one_input: the target's entry point.
        runs: stop after this many inputs (0: no limit).
        seconds: stop after this many seconds (0: no limit).
        crash_dir: where a crashing input is written.
    """

    def __init__(
        self,
        name: str,
        one_input: Callable[[bytes], None],
        *,
        runs: int,
        seconds: float,
        crash_dir: Path,
    ) -> None:
        from core.errors import NiiError

        self.name = name
        self.one_input = one_input
        self.runs = runs
        self.seconds = seconds
        self.crash_dir = crash_dir
        self.refusal: type[BaseException] = NiiError
        self.n = 0
        self.refused = 0
        self.t0 = time.monotonic()

    def __call__(self, data: bytes) -> None:
        """One input: a refusal counts, a crash ends the process with status 1."""
        try:
            self.one_input(data)
        except self.refusal:
            self.refused += 1
        except KeyboardInterrupt:
            print(self.summary().replace("0 crashes", "interrupted"), flush=True)
            os._exit(130)
        except BaseException:  # anything else is the finding
            self.crash(data)
        self.n += 1
        if (self.runs and self.n >= self.runs) or (
            self.seconds and self.n % 256 == 0 and time.monotonic() - self.t0 >= self.seconds
        ):
            self.finish()

    def crash(self, data: bytes) -> None:
        """Print the input and traceback, keep the input in a file, exit 1."""
        tb = traceback.format_exc()
        self.crash_dir.mkdir(parents=True, exist_ok=True)
        f = self.crash_dir / f"crash-{self.name}-{hashlib.sha256(data).hexdigest()[:16]}"
        f.write_bytes(data)
        print(
            f"CRASH in fuzz_{self.name} after {self.n} inputs\ninput ({len(data)} bytes, hex): "
            f"{data.hex()}\n{tb}written to {f}\n"
            f"replay: python -m tests.fuzz.run {self.name} --replay {f}",
            file=sys.stderr,
            flush=True,
        )
        sys.stdout.flush()
        os._exit(1)

    def summary(self) -> str:
        """One line: inputs, seconds, inputs/s, refusals."""
        dt = max(1e-9, time.monotonic() - self.t0)
        return (
            f"fuzz_{self.name}: {self.n} inputs in {dt:.1f} s ({self.n / dt:.0f} inputs/s), "
            f"{self.refused} refused with a NiiError, 0 crashes"
        )

    def finish(self) -> None:
        """Print the summary and end the process with status 0 (libFuzzer never returns)."""
        print(self.summary(), flush=True)
        sys.stderr.flush()
        os._exit(0)


def _corpus(module: ModuleType) -> list[str]:
    seeds = getattr(module, "SEEDS", None) or []
    if not seeds:
        return []
    d = Path(tempfile.mkdtemp(prefix="nii-fuzz-corpus-"))
    for i, s in enumerate(seeds):
        (d / f"seed-{i}").write_bytes(bytes(s))
    return [str(d)]


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and fuzz (never returns normally when fuzzing)."""
    p = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__)
    p.add_argument("name", nargs="?", help="target: tests/fuzz/fuzz_<NAME>.py")
    p.add_argument("--runs", type=int, default=0, help="inputs to try (0: no limit)")
    p.add_argument("--seconds", type=float, default=0.0, help="time budget (0: no limit)")
    p.add_argument("--crash-dir", default="var/fuzz", help="where crashing inputs go")
    p.add_argument("--replay", type=Path, help="run one saved input (a crash file) and exit")
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    args = p.parse_args(argv)
    if args.list:
        print("\n".join(targets()))
        return 0
    if not args.name:
        p.error("give a target NAME (see --list)")
    if args.runs < 0 or args.seconds < 0:
        p.error("--runs and --seconds are counts: 0 or more")
    if args.replay is not None:
        module = load(args.name, instrument=False)
        d = Driver(args.name, module.one_input, runs=1, seconds=0, crash_dir=Path(args.crash_dir))
        d(args.replay.read_bytes())
        return 0
    if not args.runs and not args.seconds:
        args.runs = 1_000_000
    import atheris

    module = load(args.name)
    driver = Driver(
        args.name,
        module.one_input,
        runs=args.runs,
        seconds=args.seconds,
        crash_dir=Path(args.crash_dir),
    )
    corpus = _corpus(module)
    # libFuzzer writes its own artifacts (slow units, leaks) beside the crash files,
    # not into the working directory
    Path(args.crash_dir).mkdir(parents=True, exist_ok=True)
    prefix = f"-artifact_prefix={Path(args.crash_dir)}/"
    atheris.Setup([sys.argv[0], "-rss_limit_mb=4096", prefix, *corpus], driver)
    atheris.Fuzz()
    driver.finish()  # libFuzzer ended by itself (e.g. an exhausted corpus): still report
    return 0


if __name__ == "__main__":
    sys.exit(main())
