"""Every mistake a user can make gives one clear message with its fix, and no traceback."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.system._cluster import Cluster

pytestmark = pytest.mark.system


def _edge_toml(c: Cluster, serial: str, data: str = "127.0.0.1:9", key: str = "") -> str:
    return (
        f'[edge]\nid = "{c.edge_id}"\nkey = "{key or f"keys/{c.edge_id}.key"}"\n'
        f'cir_public = "keys/cir.pub"\ncentral = "{c.listen}"\nstate_dir = "edge"\n\n'
        f'[[scanner]]\nid = "scanner1"\nserial = "{serial}"\ndata = "{data}"\n'
    )


def case_missing_config(c: Cluster) -> list[str]:
    return ["central", "--config", "nope.toml"]


def case_bad_toml(c: Cluster) -> list[str]:
    (c.base / "bad.toml").write_text("[central\nlisten = tcp://")
    return ["central", "--config", "bad.toml"]


def case_unknown_setting(c: Cluster) -> list[str]:
    (c.base / "bad.toml").write_text('[central]\nkey = "keys/cir.key"\nlisten_port = 7600\n')
    return ["central", "--config", "bad.toml"]


def case_bad_endpoint(c: Cluster) -> list[str]:
    (c.base / "bad.toml").write_text('[central]\nkey = "keys/cir.key"\nlisten = "127.0.0.1:7"\n')
    return ["central", "--config", "bad.toml"]


def case_bad_endpoint_port(c: Cluster) -> list[str]:
    (c.base / "edge.toml").write_text(
        _edge_toml(c, "/dev/null").replace(c.listen, "tcp://127.0.0.1:notaport")
    )
    return ["edge", "--config", "edge.toml"]


def case_bad_feed(c: Cluster) -> list[str]:
    return ["control-room", "tail", "--feed", "tcp://central"]


def case_missing_key(c: Cluster) -> list[str]:
    (c.base / "bad.toml").write_text('[central]\nkey = "keys/missing.key"\n')
    return ["central", "--config", "bad.toml"]


def case_wrong_kind_of_key(c: Cluster) -> list[str]:
    (c.base / "bad.toml").write_text(f'[central]\nkey = "keys/{c.edge_id}.key"\n')
    return ["central", "--config", "bad.toml"]


def case_port_in_use(c: Cluster) -> list[str]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    c.held = s  # type: ignore[attr-defined]
    port = s.getsockname()[1]
    (c.base / "bad.toml").write_text(
        f'[central]\nkey = "keys/cir.key"\nlisten = "tcp://127.0.0.1:{port}"\n'
        f'feed = "{c.feed}"\nstate_dir = "cir"\n'
    )
    return ["central", "--config", "bad.toml"]


def case_serial_absent(c: Cluster) -> list[str]:
    (c.base / "edge.toml").write_text(_edge_toml(c, "/dev/ttyNII-does-not-exist"))
    return ["edge", "--config", "edge.toml"]


def case_bad_data_address(c: Cluster) -> list[str]:
    (c.base / "edge.toml").write_text(_edge_toml(c, "/dev/null", data="scanner-host"))
    return ["edge", "--config", "edge.toml"]


def case_edge_key_mismatch(c: Cluster) -> list[str]:
    from core.keys import EdgeKey

    EdgeKey.generate("edge-other").save(c.keys)
    (c.base / "edge.toml").write_text(_edge_toml(c, "/dev/null", key="keys/edge-other.key"))
    return ["edge", "--config", "edge.toml"]


def case_no_scanner(c: Cluster) -> list[str]:
    (c.base / "edge.toml").write_text(_edge_toml(c, "x").split("[[scanner]]")[0])
    return ["edge", "--config", "edge.toml"]


def case_keys_without_id(c: Cluster) -> list[str]:
    return ["keys", "edge", "--out", "more-keys"]


def case_keys_overwrite(c: Cluster) -> list[str]:
    return ["keys", "cir", "--out", "keys"]


def case_enroll_missing_file(c: Cluster) -> list[str]:
    return ["central", "enroll", "--config", str(c.central_toml), "nobody.pub"]


def case_export_unknown_scan(c: Cluster) -> list[str]:
    c.enroll()  # the CIR exists, the scan does not
    return ["cir", "export", "--config", str(c.central_toml), "999", "--out", "x.npz"]


def case_cir_elsewhere(c: Cluster) -> list[str]:
    (c.base / "other.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "nowhere"\n')
    return ["cir", "scans", "--config", "other.toml"]


def case_bad_att_role(c: Cluster) -> list[str]:
    (c.base / "edge.toml").write_text(_edge_toml(c, "/dev/null") + 'att_role = "exitt"\n')
    return ["edge", "--config", "edge.toml"]


def case_cir_att_elsewhere(c: Cluster) -> list[str]:
    (c.base / "other.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "nowhere"\n')
    return ["cir", "att", "--config", "other.toml", "--json"]


CASES: dict[str, tuple[Callable[[Cluster], list[str]], str]] = {
    "missing config": (case_missing_config, "does not exist"),
    "bad TOML": (case_bad_toml, "not valid TOML"),
    "unknown setting": (case_unknown_setting, "unknown setting"),
    "bad endpoint": (case_bad_endpoint, "not a ZeroMQ endpoint"),
    "bad endpoint port": (case_bad_endpoint_port, "not a ZeroMQ endpoint"),
    "bad feed address": (case_bad_feed, "not a ZeroMQ endpoint"),
    "missing key": (case_missing_key, "does not exist"),
    "wrong kind of key": (case_wrong_kind_of_key, "is not a CIR private key"),
    "port in use": (case_port_in_use, "cannot bind listen"),
    "serial device absent": (case_serial_absent, "ttyNII-does-not-exist"),
    "bad data address": (case_bad_data_address, "is not HOST:PORT"),
    "edge key mismatch": (case_edge_key_mismatch, "is for 'edge-other'"),
    "no scanner": (case_no_scanner, "no [[scanner]]"),
    "keys without id": (case_keys_without_id, "needs --id"),
    "keys overwrite": (case_keys_overwrite, "refusing to overwrite"),
    "enroll missing file": (case_enroll_missing_file, "does not exist"),
    "export unknown scan": (case_export_unknown_scan, "no scan with ref 999"),
    "no CIR where config points": (case_cir_elsewhere, "there is no CIR in"),
    "bad ATT role": (case_bad_att_role, 'att_role: must be "entry" or "exit"'),
    "ATT results without a CIR": (case_cir_att_elsewhere, "there is no CIR in"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_user_error_gives_one_clear_message(tmp_path: Path, name: str) -> None:
    c = Cluster(tmp_path)
    make, expected = CASES[name]
    args = make(c)
    r = c.nii(*args, timeout=30)
    held = getattr(c, "held", None)
    if held is not None:
        held.close()
    out = r.stdout + r.stderr
    assert r.returncode == 2, f"exit {r.returncode}: {out}"
    assert "Traceback" not in out, out
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("error: ") and expected in lines[0], out
    assert any(ln.startswith("fix: ") and len(ln) > 10 for ln in lines[1:]), out
    assert not (tmp_path / "nowhere").exists(), "a read-only command created a CIR"
