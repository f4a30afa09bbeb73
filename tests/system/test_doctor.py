"""``nii doctor`` against a real central, a simulated scanner and a real site broker.

First everything is right and every check passes. Then the setup is broken the
ways technicians break it: a key that was never enrolled, a serial device that
is not there, a data port nobody listens on, a key file others can read, and
everything fails with its own line and fix.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.keys import CirKey, EdgeKey
from core.net import free_port
from tests.system._cluster import Cluster, wait_until
from tests.system.test_safety import Mosquitto

pytestmark = pytest.mark.system


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop_all()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(c.log_tail(40))


def doctor(c: Cluster, config: Path) -> tuple[int, dict[str, str], str]:
    """Run ``nii doctor``; returns the exit status, each check's status, and the text."""
    t0 = time.monotonic()
    r = c.nii("doctor", "--config", str(config), "--timeout", "2", timeout=30)
    took = time.monotonic() - t0
    assert took < 15, f"nii doctor took {took:.1f} s"
    status = {}
    for line in r.stdout.splitlines():
        word, _, rest = line.partition("  ")
        if word in ("PASS", "WARN", "FAIL"):
            status[rest.strip().split("  ")[0]] = word
    return r.returncode, status, r.stdout + r.stderr


def test_all_pass_then_broken_setups_fail(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    mosq: Mosquitto | None = None
    if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists():
        mosq = Mosquitto(tmp_path)
        mosq.start()
    try:
        c.enroll()
        sims = c.start_sim("--interval", "1000", scanners=1)
        c.start_central()
        c.write_edge_config(sims)
        if mosq is not None:
            c.edge_toml.write_text(
                c.edge_toml.read_text().replace(
                    "heartbeat_s = 0.5\n",
                    f'heartbeat_s = 0.5\n\n[edge.mqtt]\nbroker = "127.0.0.1:{mosq.port}"\n',
                )
            )
        os.chmod(c.keys / f"{c.edge_id}.key", 0o600)
        # the edge daemon runs too: the doctor must not disturb it
        c.start_edge()
        wait_until(
            lambda: c.edge_status().get("scanners", {}).get("scanner1", {}).get("connected"),
            30,
            "the edge to connect to central",
        )

        def welcomed() -> bool:
            return doctor(c, c.edge_toml)[1].get("enrollment") == "PASS"

        wait_until(welcomed, 30, "central to welcome the doctor", poll=0.2)
        rc, st, out = doctor(c, c.edge_toml)
        assert rc == 0, out
        expected = {
            "config",
            "edge key",
            "CIR public key",
            "serial scanner1",
            "data link scanner1",
            "site broker",
            "central",
            "enrollment",
            "clock",
            "state_dir",
            "disk",
        }
        assert set(st) == expected, out
        assert set(st.values()) == {"PASS"}, out
        if mosq is not None:
            assert "accepted an MQTT connection" in out
        assert "11 checks: 11 pass, 0 warn, 0 fail" in out
        assert c.procs["edge"].poll() is None
        assert c.edge_status()["scanners"]["scanner1"]["connected"] is True

        # broken: a fresh key nobody enrolled, readable by others; no serial device;
        # a data port nobody listens on; the broker gone
        stranger = EdgeKey.generate("edge-x")
        stranger.save(c.keys)
        os.chmod(c.keys / "edge-x.key", 0o644)
        bad = c.base / "bad.toml"
        text = (
            c.edge_toml.read_text()
            .replace(f'id = "{c.edge_id}"', 'id = "edge-x"')
            .replace(f"keys/{c.edge_id}.key", "keys/edge-x.key")
            .replace(sims[0]["serial"], str(c.base / "no-such-tty"))
            .replace(f":{sims[0]['data_port']}", f":{free_port()}")
        )
        if mosq is not None:
            text = text.replace(f":{mosq.port}", f":{free_port()}")
        bad.write_text(text)
        rc, st, out = doctor(c, bad)
        assert rc == 1, out
        assert st["config"] == "PASS"
        assert st["edge key"] == "FAIL" and "mode 0644" in out and "chmod 0600" in out
        assert st["serial scanner1"] == "FAIL" and "no-such-tty does not exist" in out
        assert st["data link scanner1"] == "FAIL" and "Connection refused" in out
        assert st["central"] == "PASS"
        assert st["enrollment"] == "FAIL", out
        assert "not enrolled" in out and "nii central enroll" in out
        assert st["clock"] == "FAIL"
        if mosq is not None:
            assert st["site broker"] == "FAIL"

        # the right key, but another central's cir.pub: the handshake gets no answer
        other = c.base / "other"
        CirKey.generate().save(other)
        wrong_cir = c.base / "wrong-cir.toml"
        wrong_cir.write_text(c.edge_toml.read_text().replace("keys/cir.pub", "other/cir.pub"))
        rc, st, out = doctor(c, wrong_cir)
        assert rc == 1 and st["central"] == "PASS" and st["enrollment"] == "FAIL", out
        assert "did not answer the CurveZMQ handshake" in out

        # central down: unreachable, told apart from not enrolled
        c.kill("central")
        rc, st, out = doctor(c, c.edge_toml)
        assert rc == 1
        assert st["central"] == "FAIL" and "cannot connect" in out, out
        assert "systemctl status nii-central" in out
    finally:
        if mosq is not None:
            mosq.stop()
