"""One process per state directory: a lock file held for the life of the process.

Two edge daemons on one state directory share a spool and a state log and
take each other's place at central; two centrals on one CIR write the same
database. Each daemon therefore takes :func:`hold` on its state directory at
start. The lock is an ``fcntl.flock`` on ``<dir>/<name>.lock``: the kernel
drops it when the process ends in any way (even SIGKILL), so a stale lock file
never blocks a restart. The file names the pid and command of the holder, so
the refusal can say which process to look at.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from pathlib import Path

from core.errors import ConfigError

__all__ = ["DirLock", "LockedError", "hold"]


class LockedError(ConfigError):
    """Another live process holds the lock (``pid`` is its pid when known)."""

    def __init__(self, message: str, fix: str = "", *, pid: int | None = None) -> None:
        super().__init__(message, fix)
        self.pid = pid


class DirLock:
    """A held lock on one directory; :meth:`release` (or process exit) lets it go."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Unlock and close (the file stays; an unlocked file means nothing)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(path: Path) -> tuple[int | None, str]:
    """The pid and command written into the lock file ``path`` (None, "" if unreadable)."""
    try:
        first, _, rest = path.read_text().partition("\n")
        return int(first.strip()), rest.strip()
    except (OSError, ValueError):
        return None, ""


def hold(directory: Path, what: str, *, name: str = "nii", create: bool = True) -> DirLock:
    """Take the lock of ``directory`` for this process, or refuse.

    Args:
        directory: the state directory (an edge's ``state_dir``, central's CIR,
            a demo folder); created when missing if ``create``.
        what: what runs there, for the message (e.g. "an edge daemon").
        name: the lock file's name without ``.lock``; one directory may have
            several (e.g. ``demo`` around a ``central`` lock).
        create: create ``directory`` when it does not exist.

    Returns:
        The held :class:`DirLock`; keep a reference for as long as the process
        should hold it.

    Raises:
        LockedError: another process holds it; the message names its pid and
            command, the fix says how to stop it.
        ConfigError: the directory or the lock file cannot be created or opened.
    """
    directory = Path(directory)
    path = directory / f"{name}.lock"
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the lock file {path}: {exc.strerror or exc}",
            fix="check the state directory: it must exist and be writable",
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid, cmd = holder(path)
        who = f"process {pid}" if pid else "another process"
        if cmd:
            who += f" ({cmd})"
        raise LockedError(
            f"{what} already runs on {directory}: {who} holds {path.name}",
            fix=f"stop it first (kill {pid}), or use another state directory"
            if pid
            else "stop the other process first, or use another state directory",
            pid=pid,
        ) from None
    except OSError as exc:
        os.close(fd)
        raise ConfigError(
            f"cannot lock {path}: {exc.strerror or exc}",
            fix="use a state directory on a local file system",
        ) from exc
    cmd = " ".join(["nii", *sys.argv[1:]])[:200].replace("\n", " ")
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{cmd}\n".encode(), 0)
    return DirLock(path, fd)
