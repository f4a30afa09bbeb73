"""Central's ROUTER notices a dead edge within seconds (issue 13, kind 6)."""

from __future__ import annotations

from pathlib import Path

import zmq

from central._aggregator import Central
from central._sockets import (
    TCP_KEEPALIVE_CNT,
    TCP_KEEPALIVE_IDLE_S,
    TCP_KEEPALIVE_INTVL_S,
    ZMQ_HEARTBEAT_IVL_MS,
    ZMQ_HEARTBEAT_TIMEOUT_MS,
    ZMQ_HEARTBEAT_TTL_MS,
)
from core.config import CentralConfig
from core.keys import CirKey
from core.net import free_port


async def test_router_sets_heartbeats_and_keepalive(tmp_path: Path) -> None:
    CirKey.generate().save(tmp_path)
    (tmp_path / "central.toml").write_text(
        f'[central]\nlisten = "tcp://127.0.0.1:{free_port()}"\n'
        f'feed = "tcp://127.0.0.1:{free_port()}"\nstate_dir = "cir"\nkey = "cir.key"\n'
        "atr = false\n"
    )
    c = Central(CentralConfig.load(tmp_path / "central.toml"))
    c.open()
    try:
        r = c.router
        assert r is not None
        assert r.getsockopt(zmq.HEARTBEAT_IVL) == ZMQ_HEARTBEAT_IVL_MS == 1000
        assert r.getsockopt(zmq.HEARTBEAT_TIMEOUT) == ZMQ_HEARTBEAT_TIMEOUT_MS == 3000
        assert r.getsockopt(zmq.HEARTBEAT_TTL) == ZMQ_HEARTBEAT_TTL_MS == 3000
        assert r.getsockopt(zmq.TCP_KEEPALIVE) == 1
        assert r.getsockopt(zmq.TCP_KEEPALIVE_IDLE) == TCP_KEEPALIVE_IDLE_S == 1
        assert r.getsockopt(zmq.TCP_KEEPALIVE_INTVL) == TCP_KEEPALIVE_INTVL_S == 1
        assert r.getsockopt(zmq.TCP_KEEPALIVE_CNT) == TCP_KEEPALIVE_CNT == 3
    finally:
        c.close()
