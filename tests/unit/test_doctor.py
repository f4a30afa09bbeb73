"""``nii doctor`` checks that need no peers: config errors, serial permissions, key modes, disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.config import EdgeConfig
from core.keys import CirKey, EdgeKey
from nii._doctor import check_disk, check_keys, check_serial, format_checks, run_checks


def edge(tmp_path: Path, **scanner: str) -> EdgeConfig:
    EdgeKey.generate("edge-a").save(tmp_path / "keys")
    CirKey.generate().save(tmp_path / "keys")
    extra = "".join(f"{k} = {v}\n" for k, v in scanner.items())
    path = tmp_path / "edge.toml"
    path.write_text(
        '[edge]\nid = "edge-a"\nkey = "keys/edge-a.key"\ncir_public = "keys/cir.pub"\n'
        'state_dir = "var"\n\n[[scanner]]\nid = "scanner1"\nserial = "/dev/null"\n'
        f'data = "127.0.0.1:9"\n{extra}'
    )
    return EdgeConfig.load(path)


def test_config_error_is_one_fail_with_its_fix(tmp_path: Path) -> None:
    bad = tmp_path / "edge.toml"
    bad.write_text("[edge]\nid = 'a b'\n")
    checks = run_checks(bad)
    assert [(c.name, c.status) for c in checks] == [("config", "FAIL")]
    assert "invalid edge id" in checks[0].detail and checks[0].fix
    assert "fix: " in format_checks(checks)
    assert run_checks(tmp_path / "missing.toml")[0].detail.endswith("does not exist")


def test_serial_without_permission_names_the_devices_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = edge(tmp_path)
    (ok,) = check_serial(cfg)
    assert ok.status == "PASS"
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    (c,) = check_serial(cfg)
    group = __import__("grp").getgrgid(os.stat("/dev/null").st_gid).gr_name
    assert c.status == "FAIL" and f"group {group}" in c.detail
    assert f"usermod -aG {group}" in c.fix and "SupplementaryGroups=dialout" in c.fix


def test_serial_that_is_not_a_tty(tmp_path: Path) -> None:
    cfg = edge(tmp_path)
    cfg.scanners[0].serial = tmp_path
    (c,) = check_serial(cfg)
    assert c.status == "FAIL" and "not a character device" in c.detail


@pytest.mark.parametrize(("mode", "status"), [(0o600, "PASS"), (0o640, "PASS"), (0o644, "FAIL")])
def test_key_mode(tmp_path: Path, mode: int, status: str) -> None:
    cfg = edge(tmp_path)
    os.chmod(cfg.key, mode)
    key, cir = check_keys(cfg)
    assert (key.status, cir.status) == (status, "PASS"), key


def test_key_for_another_edge_and_missing_cir_pub(tmp_path: Path) -> None:
    cfg = edge(tmp_path)
    EdgeKey.generate("edge-b").save(tmp_path / "keys")
    cfg.key = tmp_path / "keys" / "edge-b.key"
    (tmp_path / "keys" / "cir.pub").unlink()
    key, cir = check_keys(cfg)
    assert key.status == "FAIL" and "key of edge 'edge-b'" in key.detail
    assert cir.status == "FAIL" and "copy cir.pub" in cir.fix


def test_disk_counts_every_spool(tmp_path: Path) -> None:
    small = edge(tmp_path)
    state, disk = check_disk(small)
    assert state.status == "WARN" and "does not exist yet" in state.detail
    assert disk.status == "PASS"
    small.state_dir.mkdir()
    small.scanners[0].spool_max_mb = 1e12  # an exabyte: no disk has that
    state, disk = check_disk(small)
    assert state.status == "PASS"
    assert disk.status == "FAIL" and "lower spool_max_mb" in disk.fix


def test_every_listed_aggregator_is_checked_by_name(tmp_path: Path) -> None:
    from core.net import free_port
    from nii._doctor import check_central

    a, b = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cfg = edge(tmp_path)
    cfg.centrals = (a, b)
    checks = {c.name: c for c in check_central(cfg, 1.0)}
    assert {f"central {a}", f"central {b}", f"enrollment {a}", f"clock {b}"} <= set(checks)
    assert checks[f"central {b}"].status == "FAIL"
    assert "cannot connect to " + b in checks[f"central {b}"].detail
