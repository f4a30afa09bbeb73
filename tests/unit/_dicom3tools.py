"""Validation of DICOS output with Debian's dicom3tools (``dciodvfy``), shared by the tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def dciodvfy(path: Path) -> list[str]:
    """The lines ``dciodvfy`` prints on ``path``; the test fails if it is not installed."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail(
            "dciodvfy not found: install Debian's dicom3tools (apt-get install dicom3tools) "
            "to validate DICOS output"
        )
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60, check=False)
    return (proc.stdout + proc.stderr).splitlines()
