"""One process per state directory (kind 5): the lock, its refusal, and its end with the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.locks import LockedError, hold, holder


def test_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    lock = hold(tmp_path / "edge", "an edge daemon", name="edge")
    assert holder(lock.path)[0] == os.getpid()
    with pytest.raises(LockedError) as e:
        hold(tmp_path / "edge", "an edge daemon", name="edge")
    assert e.value.pid == os.getpid()
    assert f"process {os.getpid()}" in e.value.message and "an edge daemon" in e.value.message
    assert f"kill {os.getpid()}" in e.value.fix
    lock.release()
    again = hold(tmp_path / "edge", "an edge daemon", name="edge")  # free again
    assert again.held
    again.release()


def test_locks_of_other_names_do_not_conflict(tmp_path: Path) -> None:
    with hold(tmp_path, "a demo", name="demo"), hold(tmp_path, "a central", name="central"):
        pass


def test_lock_ends_with_its_process_even_on_sigkill(tmp_path: Path) -> None:
    code = (
        "import sys, time; from core.locks import hold; "
        f"lock = hold({str(tmp_path)!r}, 'x', name='edge'); print('held', flush=True); "
        "time.sleep(60)"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        with pytest.raises(LockedError) as e:
            hold(tmp_path, "x", name="edge")
        assert e.value.pid == p.pid
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        if p.stdout is not None:
            p.stdout.close()
    hold(tmp_path, "x", name="edge").release()  # the stale file does not block a restart


def test_unwritable_place_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="cannot create the lock file"):
        hold(f / "sub", "an edge daemon")
