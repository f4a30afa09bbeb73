"""A short run of every fuzz target (``make fuzz`` runs each for 1 000 000 inputs).

Each target in ``tests/fuzz/fuzz_*.py`` runs in its own process under the same
runner as ``make fuzz`` for 20 000 inputs or 3 s, whichever comes first; a crash
(an exception outside ``core.errors``) fails the test with the input and the
traceback the runner printed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.run import targets

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_targets_are_found() -> None:
    assert "clock" in targets()


@pytest.mark.parametrize("name", targets())
def test_short_fuzz_run_finds_no_crash(name: str, tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", name, "--runs", "20000", "--seconds", "3",
         "--crash-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    assert f"fuzz_{name}: " in r.stdout and " 0 crashes" in r.stdout, r.stdout + r.stderr[-2000:]
    assert not list(tmp_path.iterdir()), "a crash file was written"


def test_a_crash_is_reported_with_its_input_and_kept(tmp_path: Path) -> None:
    """The runner's driver: a NiiError is a refusal, anything else ends the run with 1."""
    code = (
        "import sys; from pathlib import Path\n"
        "from core.errors import ProtocolError\n"
        "from tests.fuzz.run import Driver\n"
        "def one(data):\n"
        "    if data == b'no': raise ProtocolError('refused', fix='-')\n"
        "    if data == b'\\xde\\xad': raise ValueError('boom')\n"
        "d = Driver('t', one, runs=0, seconds=0, crash_dir=Path(sys.argv[1]))\n"
        "d(b'no'); d(b'ok')\n"
        "print(d.n, d.refused, flush=True)\n"
        "d(b'\\xde\\xad')\n"
    )
    r = _run("-c", code, str(tmp_path), cwd=ROOT)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.startswith("2 1"), r.stdout
    assert "hex): dead" in r.stderr and "ValueError: boom" in r.stderr, r.stderr
    crashes = list(tmp_path.glob("crash-t-*"))
    assert len(crashes) == 1 and crashes[0].read_bytes() == b"\xde\xad"


def test_an_unknown_target_is_one_error_and_fix() -> None:
    r = _run("-m", "tests.fuzz.run", "no_such_target", "--runs", "1", cwd=ROOT)
    assert r.returncode == 2
    assert "error: no fuzz target 'no_such_target'" in r.stderr and "fix: " in r.stderr
