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
import logging
import time
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

log = logging.getLogger("nii.central")

#: ZeroMQ heartbeats on the ROUTER: a dead or partitioned edge is dropped within seconds
#: (issue 13, kind 6); TCP keepalive backs them up below ZeroMQ
ZMQ_HEARTBEAT_IVL_MS = 1000
ZMQ_HEARTBEAT_TIMEOUT_MS = 3000
ZMQ_HEARTBEAT_TTL_MS = 3000
TCP_KEEPALIVE_IDLE_S = 1
TCP_KEEPALIVE_INTVL_S = 1
TCP_KEEPALIVE_CNT = 3


#: one log line per this many seconds while the keyring cannot answer
KEYRING_LOG_S = 30.0


class _Keyring:
    """The CurveZMQ side of enrollment: ZAP asks it about every connecting key.

    The callback never raises: pyzmq's authenticator task ends on the first
    exception, and every connection after it would hang unanswered. A key that
    cannot be checked (the CIR's database out of reach) is refused for now; the
    edge connects again and is let in once the database answers.
    """

    def __init__(self, allow: Callable[[str], bool], clock: Callable[[], float] = time.monotonic):
        self.allow = allow
        self.clock = clock
        self._logged = -1e18
        self.failures = 0

    def callback(self, domain: str, key: bytes) -> bool:
        z85 = key.decode() if isinstance(key, bytes) else str(key)
        try:
            return bool(self.allow(z85))
        except Exception as exc:  # the CIR cannot say who is enrolled now
            self.failures += 1
            now = self.clock()
            if now - self._logged >= KEYRING_LOG_S:
                self._logged = now
                log.warning(
                    "cannot check CurveZMQ key %s… against the enrolled edges (%s: %s); "
                    "refused until the CIR answers (%d such refusal(s) so far)",
                    z85[:12],
                    type(exc).__name__,
                    str(exc)[:200],
                    self.failures,
                )
            return False


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
