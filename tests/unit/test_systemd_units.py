"""The shipped systemd units verify cleanly and carry the hardening they claim.

``systemd-analyze verify`` exits 0 even when it ignores an unknown key or a
bad value, so any line it prints counts as a failure here. The units are
verified exactly as shipped: ``ExecStart=/usr/bin/env nii ...`` names an
executable that exists on every host, so nothing in them is substituted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT_DIR = Path(__file__).resolve().parents[2] / "systemd"

# Unit file -> the name to verify it under (a template needs an instance).
VERIFIED = {
    "nii-central.service": "nii-central.service",
    "nii-edge@.service": "nii-edge@scanner1.service",
    "nii-atr-worker@.service": "nii-atr-worker@1.service",
    "nii.target": "nii.target",
}

SERVICES = ["nii-central.service", "nii-edge@.service", "nii-atr-worker@.service"]

# Keys every service must carry, with their exact value.
COMMON = {
    "Type": "notify",
    "NotifyAccess": "main",
    "Restart": "on-failure",
    "User": "nii",
    "Group": "nii",
    "ConfigurationDirectory": "nii",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "LockPersonality": "yes",
    "SystemCallFilter": "@system-service",
    "CapabilityBoundingSet": "",
}

# Keys every service must carry with some value.
PRESENT = ["WatchdogSec", "RestartSec", "LimitNOFILE"]

PER_UNIT = {
    "nii-central.service": {
        "ExecStart": "/usr/bin/env nii central --config /etc/nii/central.toml",
        "StateDirectory": "nii/central",
        "PrivateDevices": "yes",
    },
    "nii-edge@.service": {
        "ExecStart": "/usr/bin/env nii edge --config /etc/nii/edge-%i.toml",
        "StateDirectory": "nii/edge-%i",
        "SupplementaryGroups": "dialout",
        "DevicePolicy": "closed",
        # an absent scanner delays READY=1; a restart cannot bring it back (decision 0009)
        "TimeoutStartSec": "infinity",
    },
    "nii-atr-worker@.service": {
        "ExecStart": "/usr/bin/env nii atr worker --config /etc/nii/central.toml --id %H-%i",
        "StateDirectory": "nii/atr-%i",
        "PrivateDevices": "yes",
    },
}


def _tool(name: str) -> str:
    """The path of a systemd tool; a failure, not a skip, when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: install the Debian package `systemd` "
            "(apt-get install systemd); CI installs it and these checks must run"
        )
    return path


def _verify(directory: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""}
    return subprocess.run(
        [_tool("systemd-analyze"), "verify", str(directory / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _parse(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file: key -> every value it is given, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"line continuations are not used: {raw!r}"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment before any section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """A copy of every shipped unit, so that verify resolves their references."""
    for path in UNIT_DIR.iterdir():
        if path.suffix in {".service", ".target"}:
            shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_every_shipped_unit_is_verified() -> None:
    shipped = {p.name for p in UNIT_DIR.iterdir() if p.suffix in {".service", ".target"}}
    assert shipped == set(VERIFIED)


@pytest.mark.parametrize("unit", sorted(VERIFIED))
def test_unit_verifies_without_a_word(unit_dir: Path, unit: str) -> None:
    result = _verify(unit_dir, VERIFIED[unit])
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stderr == "", result.stderr
    assert result.stdout == "", result.stdout


def test_verify_reports_an_unknown_key(unit_dir: Path) -> None:
    """The check above can fail: verify does speak up about a bad unit."""
    unit = unit_dir / "nii-central.service"
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nNoSuchKey=yes\n", 1))
    result = _verify(unit_dir, "nii-central.service")
    assert "NoSuchKey" in result.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_service_carries_its_hardening(unit: str) -> None:
    service = _parse((UNIT_DIR / unit).read_text())["Service"]
    for key, value in {**COMMON, **PER_UNIT[unit]}.items():
        assert service.get(key) == [value], f"{unit}: {key}={service.get(key)}"
    for key in PRESENT:
        assert key in service, f"{unit}: {key}= missing"


@pytest.mark.parametrize("unit", SERVICES)
def test_service_allows_jit(unit: str) -> None:
    """numba compiles to writable, executable memory: the key would kill it."""
    service = _parse((UNIT_DIR / unit).read_text())["Service"]
    assert "MemoryDenyWriteExecute" not in service


def test_edge_may_open_only_serial_devices() -> None:
    service = _parse((UNIT_DIR / "nii-edge@.service").read_text())["Service"]
    assert "PrivateDevices" not in service  # it would hide the ttys
    assert set(service["DeviceAllow"]) == {"char-ttyS rw", "char-ttyUSB rw", "char-ttyACM rw"}


@pytest.mark.parametrize("unit", SERVICES)
def test_service_joins_the_target(unit: str) -> None:
    sections = _parse((UNIT_DIR / unit).read_text())
    assert sections["Unit"]["PartOf"] == ["nii.target"]
    assert sections["Install"]["WantedBy"] == ["nii.target"]
    assert "StartLimitIntervalSec" in sections["Unit"]
    assert "StartLimitBurst" in sections["Unit"]


def test_sysusers_file_creates_the_user(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            _tool("systemd-sysusers"),
            "--dry-run",
            f"--root={tmp_path}",
            str(UNIT_DIR / "nii.sysusers"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Creating user 'nii'" in result.stderr + result.stdout
