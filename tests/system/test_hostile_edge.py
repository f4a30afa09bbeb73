"""An enrolled edge that sends hostile messages never stops central (issue 13, kind 9).

A second, enrolled edge key plays a faulty or compromised edge box over a real
CurveZMQ DEALER: each bad message is refused with a ``bad_message`` alarm that
names it, central keeps answering it, and a real edge streaming a real
simulated scanner stores every line of every scan meanwhile. Also: alarms
forged for the real edge's scanner are refused, a connection named after the
real edge (routing id ``edge-t/scanner1``) is refused and takes none of its
replies, and the tail of a burst of bad messages is alarmed when its window
closes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from central._aggregator import ALARM_BURST
from core.keys import EdgeKey
from core.messages import Alarm, Hello, Welcome, decode
from tests.system._cluster import Cluster, wait_until
from tests.system.test_live_path import assert_all_lines_in_cir, run_until_done

pytestmark = pytest.mark.system

HOSTILE = "edge-h"
THIEF = "edge-x"  # another enrolled key, connecting under the real edge's routing id
SCAN_LINES = 300


def _hb(state: Any) -> list[bytes]:
    return [b"HB", json.dumps({"sender": f"{HOSTILE}/x1", "boot": "0a", "state": state}).encode()]


#: each a message one enrolled edge sent and that stopped central before (issue 13)
BAD: dict[str, list[bytes]] = {
    "hello scanner list": [
        b"HELLO",
        json.dumps(
            {"edge": HOSTILE, "scanner": ["x1"], "head_seq": -1, "head_hash": "", "boot": "0a"}
        ).encode(),
    ],
    "heartbeat state string": _hb("up"),
    "uptime 1e400": [
        b"HB",
        b'{"sender": "edge-h/x1", "boot": "0a", "state": {"uptime": {"t": 1e400}}}',
    ],
    "uptime 2**70": _hb({"uptime": {"scanner": "x1", "entries": [[2**70, "up", ""]]}}),
    "alarm details string": [
        b"ALARM",
        json.dumps({"scanner": "x1", "kind": "k", "message": "m", "details": "s"}).encode(),
    ],
    "header nested 5000 deep": [b"ALARM", b"[" * 5000 + b"]" * 5000],
    "unknown type": [b"HELLO2", b"{}"],
    "one frame": [b"HELLO"],
    "block without its block": [b"BLOCK", b'{"scanner": "x1", "seq": 0}'],
    "block of garbage": [b"BLOCK", b'{"scanner": "x1", "seq": 0}', b"\0" * 300],
    "an ack from an edge": [b"ACK", b'{"scanner": "x1", "seq": 3, "boot": "0a"}'],
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.enroll()
    yield c
    c.stop_all()


def _hostile(
    c: Cluster,
    ctx: zmq.Context[zmq.Socket[bytes]],
    edge: str = HOSTILE,
    routing_id: str = f"{HOSTILE}/x1/0a",
) -> zmq.Socket[bytes]:
    key = EdgeKey.generate(edge)
    key.save(c.keys)
    r = c.nii("central", "enroll", "--config", str(c.central_toml), str(c.keys / f"{edge}.pub"))
    assert r.returncode == 0, r.stderr
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTING_ID, routing_id.encode())
    sock.curve_secretkey = key.curve_secret
    sock.curve_publickey = key.curve_public
    sock.curve_serverkey = c.cir_key.curve_public
    sock.connect(c.listen)
    return sock


def _still_answers(sock: zmq.Socket[bytes], polls: int = 20) -> bool:
    hello = Hello(edge=HOSTILE, scanner="x1", head_seq=-1, head_hash="", boot="0a")
    sock.send_multipart(hello.frames())
    for _ in range(polls):  # other replies (none expected) are skipped
        if not sock.poll(500):
            continue
        msg, _ = decode(sock.recv_multipart())
        if isinstance(msg, Welcome):
            return True
    return False


def test_hostile_messages_are_refused_and_central_serves_on(cluster: Cluster) -> None:
    sims = cluster.start_sim(
        "--scan-lines", str(SCAN_LINES), "--scans", "2",
        "--interval", "0.5", "--line-rate", "500", "--seed", "13",
        scanners=1,
    )  # fmt: skip
    cluster.start_central()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        sock = _hostile(cluster, ctx)
        assert _still_answers(sock), "central does not answer an enrolled edge"
        cluster.write_edge_config(sims)
        cluster.start_edge()
        for name, frames in BAD.items():
            sock.send_multipart(frames)
            assert _still_answers(sock), f"central stopped answering after: {name}"
            assert cluster.procs["central"].poll() is None, f"central exited after: {name}"
        # a flood of one kind of alarm is bounded: the CIR keeps a burst, not every one
        lie = Hello(edge="edge-t", scanner="x1", head_seq=-1, head_hash="", boot="0a")
        for _ in range(3 * ALARM_BURST):
            sock.send_multipart(lie.frames())
        assert _still_answers(sock)
        # the tail of the burst of bad messages is told when its window closes
        wait_until(
            lambda: any(
                f"more message(s) from {HOSTILE}" in m for _, _, m in cluster.alarms("bad_message")
            ),
            30,
            "the count of the suppressed bad messages",
        )
        # alarms forged for the real edge's scanner are refused
        wait_until(
            lambda: cluster.sql("SELECT 1 FROM streams WHERE scanner = 'scanner1'"),
            30,
            "scanner1's stream in the CIR",
        )
        for kind in ("safety_clear", "scan_incomplete"):
            lie_alarm = Alarm(scanner="scanner1", kind=kind, message="forged by " + HOSTILE)
            sock.send_multipart(lie_alarm.frames())
        # a connection (of another enrolled key) named after the real edge is refused, and
        # answered nothing: it takes none of the real edge's replies
        thief = _hostile(cluster, ctx, THIEF, routing_id=f"{cluster.edge_id}/scanner1")
        assert not _still_answers(thief, polls=6), "central answered a stolen routing id"
        thief.close()
        sock.close()
    finally:
        ctx.term()
    wait_until(
        lambda: any(HOSTILE in m for _, _, m in cluster.alarms("bad_message")),
        20,
        "a bad_message alarm naming the hostile edge",
    )
    run_until_done(cluster, ["scanner1"], 2)
    assert_all_lines_in_cir(cluster, "scanner1", 2)
    honest = [m for _, _, m in cluster.alarms("bad_message") if HOSTILE not in m and THIEF not in m]
    assert not honest, f"central refused messages of the real edge: {honest}"
    wait_until(lambda: cluster.alarms("identity"), 10, "identity alarms in the CIR")
    assert len(cluster.alarms("identity")) <= ALARM_BURST
    assert cluster.procs["central"].poll() is None
    log = (cluster.logs / "central.log").read_text()
    assert "Traceback" not in log and "this is a bug" not in log
    assert f"refused a message from {HOSTILE}" in log
    # no forged alarm reached the CIR as scanner1's; the refusals name the sender
    forged = cluster.sql("SELECT kind FROM alarms WHERE message LIKE 'forged by%'")
    assert not forged, f"central stored alarms forged for scanner1: {forged}"
    bad = [m for _, _, m in cluster.alarms("bad_message")]
    assert any("bound to edge" in m and HOSTILE in m for m in bad), bad
    assert any("routing id" in m and THIEF in m for m in bad), bad
