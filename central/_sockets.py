"""Central's sockets: the ROUTER the edges stream to and the PUB of the live feed.

The ROUTER takes enrolled CurveZMQ keys only (ZAP asks ``allow`` about each
connecting key), uses ZeroMQ heartbeats and TCP keepalive so a dead or
partitioned edge is dropped within seconds (issue 13, kind 6), and has
``ROUTER_HANDOVER`` off: the peer chooses its routing id, and a peer taking
over another's would receive its replies. Sends never block: a reply or feed
event that cannot go now is dropped (the edges resend, the feed is live only).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from core.config import CentralConfig
from core.errors import ConfigError
from core.keys import CirKey

__all__ = ["CentralSockets"]

#: ZeroMQ heartbeats on the ROUTER: a dead or partitioned edge is dropped within seconds
#: (issue 13, kind 6); TCP keepalive backs them up below ZeroMQ
ZMQ_HEARTBEAT_IVL_MS = 1000
ZMQ_HEARTBEAT_TIMEOUT_MS = 3000
ZMQ_HEARTBEAT_TTL_MS = 3000
TCP_KEEPALIVE_IDLE_S = 1
TCP_KEEPALIVE_INTVL_S = 1
TCP_KEEPALIVE_CNT = 3


class _Keyring:
    """The CurveZMQ side of enrollment: ZAP asks it about every connecting key."""

    def __init__(self, allow: Callable[[str], bool]) -> None:
        self.allow = allow

    def callback(self, domain: str, key: bytes) -> bool:
        return self.allow(key.decode() if isinstance(key, bytes) else str(key))


@dataclass
class CentralSockets:
    """The ZeroMQ context, authenticator, ROUTER and PUB of one aggregator."""

    ctx: zmq.asyncio.Context
    auth: AsyncioAuthenticator
    router: zmq.asyncio.Socket
    pub: zmq.asyncio.Socket

    @classmethod
    def open(
        cls,
        cfg: CentralConfig,
        key: CirKey,
        allow: Callable[[str], bool],
        *,
        on_error: Callable[[], None] = lambda: None,
    ) -> CentralSockets:
        """Bind ``cfg.listen`` (ROUTER, CurveZMQ server with ``key``) and ``cfg.feed``
        (PUB); ``allow(z85)`` says whether a connecting key may in.

        Raises:
            ConfigError: an endpoint cannot be bound (``on_error`` ran first).
        """
        ctx = zmq.asyncio.Context()
        auth = AsyncioAuthenticator(ctx)
        auth.start()
        auth.configure_curve_callback("*", credentials_provider=_Keyring(allow))
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        # no handover: a peer naming its connection after another's would take its replies
        router.setsockopt(zmq.ROUTER_HANDOVER, 0)
        router.setsockopt(zmq.RCVHWM, 10000)
        for opt, value in (
            (zmq.HEARTBEAT_IVL, ZMQ_HEARTBEAT_IVL_MS),
            (zmq.HEARTBEAT_TIMEOUT, ZMQ_HEARTBEAT_TIMEOUT_MS),
            (zmq.HEARTBEAT_TTL, ZMQ_HEARTBEAT_TTL_MS),
            (zmq.TCP_KEEPALIVE, 1),
            (zmq.TCP_KEEPALIVE_IDLE, TCP_KEEPALIVE_IDLE_S),
            (zmq.TCP_KEEPALIVE_INTVL, TCP_KEEPALIVE_INTVL_S),
            (zmq.TCP_KEEPALIVE_CNT, TCP_KEEPALIVE_CNT),
        ):
            router.setsockopt(opt, value)
        router.curve_server = True
        router.curve_secretkey = key.curve_secret
        router.curve_publickey = key.curve_public
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 10000)
        socks = cls(ctx, auth, router, pub)
        for sock, ep, what in ((router, cfg.listen, "listen"), (pub, cfg.feed, "feed")):
            try:
                sock.bind(ep)
            except zmq.ZMQError as exc:
                socks.close()
                on_error()
                raise ConfigError(
                    f"cannot bind {what} = {ep}: {exc.strerror}",
                    fix="another process holds that port, or the address is not this "
                    f"machine's; choose a free port for {what} in {cfg.path}",
                ) from exc
        return socks

    def close(self) -> None:
        self.auth.stop()
        for s in (self.router, self.pub):
            s.close(linger=0)
        self.ctx.term()

    def publish(self, topic: bytes, doc: dict[str, Any], *raw: bytes) -> None:
        """One live-feed event: ``topic``, ``doc`` as JSON, and raw frames."""
        with contextlib.suppress(zmq.ZMQError):
            self.pub.send_multipart(
                [topic, json.dumps(doc, default=str).encode(), *raw], flags=zmq.NOBLOCK
            )

    def send(self, ident: bytes, frames: list[Any]) -> None:
        """A reply to the edge connection ``ident``."""
        with contextlib.suppress(zmq.ZMQError):
            self.router.send_multipart([ident, *frames], flags=zmq.NOBLOCK)
