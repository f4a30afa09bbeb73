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


def case_png_into_missing_folder(c: Cluster) -> list[str]:
    c.enroll()
    return ["cir", "show", "--config", str(c.central_toml), "1", "--png", "no/such/dir/a.png"]


def case_width_zero(c: Cluster) -> list[str]:
    return ["cir", "show", "--config", str(c.central_toml), "1", "--png", "a.png", "--width", "0"]


def case_export_into_missing_folder(c: Cluster) -> list[str]:
    c.enroll()
    return ["cir", "export", "--config", str(c.central_toml), "1", "--out", "no/dir/x.npz"]


def case_dicos_out_on_a_file(c: Cluster) -> list[str]:
    c.enroll()
    (c.base / "afile").write_text("x")
    return ["cir", "dicos", "--config", str(c.central_toml), "1", "--out", "afile"]


def case_keys_out_on_a_file(c: Cluster) -> list[str]:
    (c.base / "afile").write_text("x")
    return ["keys", "edge", "--id", "edge-b", "--out", "afile"]


def case_qa_input_missing(c: Cluster) -> list[str]:
    return ["qa", "--input", "nope.uff"]


def case_enroll_mistyped_state_dir(c: Cluster) -> list[str]:
    (c.base / "other.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "nowhere"\n')
    return ["central", "enroll", "--config", "other.toml", str(c.keys / f"{c.edge_id}.pub")]


def case_revoke_mistyped_state_dir(c: Cluster) -> list[str]:
    (c.base / "other.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "nowhere"\n')
    return ["central", "revoke", "--config", "other.toml", c.edge_id]


def case_uptime_unknown_scanner(c: Cluster) -> list[str]:
    import time

    from central._uptime import UptimeStore

    store = UptimeStore(c.base / "cir" / "cir.sqlite")
    a = int((time.time() - 600) * 1e9)
    store.ingest({"scanner": "scanner1", "log": "L", "entries": [[1, "b", 0, a, "ready", ""]]})
    store.close()
    return ["uptime", "report", "--config", str(c.central_toml), "--scanner", "UNKNOWN"]


def case_uptime_without_a_record(c: Cluster) -> list[str]:
    (c.base / "other.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "nowhere"\n')
    return ["uptime", "report", "--config", "other.toml"]


def case_demo_no_scanners(c: Cluster) -> list[str]:
    return ["demo", "--dir", "nowhere", "--scanners", "0"]


def case_bench_no_scanners(c: Cluster) -> list[str]:
    return ["bench", "live", "--scanners", "0", "--seconds", "1"]


def case_feed_unknown_host(c: Cluster) -> list[str]:
    return ["control-room", "tail", "--feed", "tcp://no-such-host.invalid:7601"]


def case_missing_edge_config(c: Cluster) -> list[str]:
    return ["edge", "--config", "nope.toml"]


def case_commission_in_the_future(c: Cluster) -> list[str]:
    from central._uptime import UptimeStore

    UptimeStore(c.base / "cir" / "cir.sqlite").close()
    return [
        "uptime",
        "commission",
        "--config",
        str(c.central_toml),
        "--scanner",
        "scanner1",
        "--at",
        "2999-01-01T00:00",
    ]


def case_commission_unknown_scanner(c: Cluster) -> list[str]:
    from central._uptime import UptimeStore

    UptimeStore(c.base / "cir" / "cir.sqlite").close()
    return ["uptime", "commission", "--config", str(c.central_toml), "--scanner", "ghost"]


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
    "PNG into a missing folder": (case_png_into_missing_folder, "does not exist"),
    "width 0": (case_width_zero, "0 is out of range"),
    "export into a missing folder": (case_export_into_missing_folder, "does not exist"),
    "DICOS --out on a file": (case_dicos_out_on_a_file, "is a file, not a folder"),
    "keys --out on a file": (case_keys_out_on_a_file, "is a file, not a folder"),
    "QA input missing": (case_qa_input_missing, "nope.uff does not exist"),
    "enroll with a mistyped state_dir": (case_enroll_mistyped_state_dir, "there is no CIR in"),
    "revoke with a mistyped state_dir": (case_revoke_mistyped_state_dir, "there is no CIR in"),
    "uptime of an unknown scanner": (case_uptime_unknown_scanner, "known: scanner1"),
    "uptime without a record": (case_uptime_without_a_record, "no uptime record"),
    "demo without scanners": (case_demo_no_scanners, "0 is out of range"),
    "bench without scanners": (case_bench_no_scanners, "--scanners 0 is out of range"),
    "feed host unknown": (case_feed_unknown_host, "is not known"),
    "missing edge config": (case_missing_edge_config, "does not exist"),
    "commissioned in the future": (case_commission_in_the_future, "is in the future"),
    "commission an unknown scanner": (case_commission_unknown_scanner, "is known to this CIR"),
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
    assert "nii config --example" not in out, out  # a command that does not exist
    if name in ("missing config", "missing edge config"):
        kind = "central" if name == "missing config" else "edge"
        assert f"'nii config {kind} > nope.toml'" in out, out


def test_version_and_broken_pipe(tmp_path: Path) -> None:
    import subprocess
    import sys

    c = Cluster(tmp_path)
    r = c.nii("--version")
    assert r.returncode == 0 and r.stdout.startswith("nii "), r.stderr
    c.enroll()
    # 'nii cir scans | head -0': the reader is gone before anything is written
    p = subprocess.Popen(
        [sys.executable, "-P", "-m", "nii", "cir", "scans", "--config", str(c.central_toml)],
        cwd=c.base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=60) == 141, err  # as a Unix tool ended by SIGPIPE
    assert err == "", err


def test_unenrolled_edge_and_second_daemons(tmp_path: Path) -> None:
    """An edge central refuses says so (no traceback); a second edge or central is refused."""
    from tests.system._cluster import wait_until

    c = Cluster(tmp_path)  # the edge's key is never enrolled
    try:
        c.start_central()
        wait_until(lambda: (c.base / "cir" / "cir.sqlite").exists(), 30, "central's CIR")
        scanners = c.start_sim(scanners=1)
        c.write_edge_config(scanners)
        c.start_edge()
        log = c.logs / "edge.log"
        wait_until(
            lambda: "not enrolled at central" in log.read_text(errors="replace"),
            30,
            "the edge to say it is not enrolled",
        )
        text = log.read_text(errors="replace")
        assert "nii central enroll" in text, text
        assert "Traceback" not in text and "never retrieved" not in text, text

        edge_pid = c.procs["edge"].pid
        r = c.nii("edge", "--config", str(c.edge_toml), timeout=30)
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.startswith("error: an edge daemon already runs on"), r.stderr
        assert f"process {edge_pid}" in r.stderr and "fix: " in r.stderr, r.stderr

        central_pid = c.procs["central"].pid
        r = c.nii("central", "--config", str(c.central_toml), timeout=30)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"process {central_pid}" in r.stderr and "fix: " in r.stderr, r.stderr
        assert c.procs["edge"].poll() is None and c.procs["central"].poll() is None
    finally:
        c.stop_all()


def test_tail_says_when_nothing_answers(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.system._cluster import wait_until

    c = Cluster(tmp_path)
    c.enroll()
    err = c.logs / "tail.err"
    with open(err, "wb") as f:
        tail = subprocess.Popen(
            [sys.executable, "-P", "-m", "nii", "control-room", "tail", "--feed", c.feed],
            cwd=c.base,
            stdout=subprocess.DEVNULL,
            stderr=f,
        )
    try:
        wait_until(lambda: "nothing answers at" in err.read_text(), 20, "the tail to say so")
        assert tail.poll() is None  # it keeps trying
        c.start_central()
        wait_until(lambda: "answers now" in err.read_text(), 30, "the tail to hear central")
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=20) == 0
        assert "Traceback" not in err.read_text()
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
        c.stop_all()
