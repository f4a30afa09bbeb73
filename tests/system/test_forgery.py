"""Forged, altered and replayed blocks, and unenrolled edges, against a real central.

The test plays a misbehaving edge over a real CurveZMQ DEALER socket: every bad
block must be refused with a NACK, alarmed, and leave the CIR's blocks unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.keys import EdgeKey
from core.messages import Ack, BlockMsg, Heartbeat, Hello, Nack, Welcome, decode
from core.seal import HEADER, BlockKind, Sealer, genesis_hash
from tests.system._cluster import Cluster, wait_until

pytestmark = pytest.mark.system

SCANNER = "scanner9"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    c.enroll()
    c.start_central()
    yield c
    c.stop_all()


class FakeEdge:
    def __init__(
        self, c: Cluster, key: EdgeKey, ctx: zmq.asyncio.Context, boot: str | None = None
    ) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # an edge process's routing id ends with its boot id (edge/scanner/boot)
        rid = f"{key.id}/{SCANNER}" + (f"/{boot}" if boot else "")
        self.sock.setsockopt(zmq.ROUTING_ID, rid.encode())
        self.sock.curve_secretkey = key.curve_secret
        self.sock.curve_publickey = key.curve_public
        self.sock.curve_serverkey = c.cir_key.curve_public
        self.sock.connect(c.listen)
        self.key = key
        self.sealer = Sealer(key.sign_private, c.cir_key.public.x25519_public)

    def seal(
        self, seq: int, prev: bytes, *, line: int = 0, sign: Any = None
    ) -> tuple[bytes, bytes]:
        sealer = self.sealer if sign is None else Sealer(sign, self.sealer._cir_pub)
        return sealer.seal(
            kind=BlockKind.DATA,
            seq=seq,
            prev_hash=prev,
            meta={
                "edge": self.key.id,
                "scanner": SCANNER,
                "kind": "data",
                "scan_id": 1,
                "channels": 4,
                "n_lines": 1,
            },
            index=[(line, 0, time.time_ns(), seq)],
            payload=bytes(range(16)),
            created_ns=time.time_ns(),
        )

    async def request(self, frames: list[Any], timeout: float = 5.0) -> Any:
        """Send ``frames``; the first answer that is not a heartbeat (central answers
        a HELLO with one at once, and with its WELCOME after its commit), or None."""
        await self.sock.send_multipart(frames)
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            if not await self.sock.poll(int(left * 1000) + 1):
                return None
            msg, _ = decode(await self.sock.recv_multipart())
            if not isinstance(msg, Heartbeat):
                return msg
        return None

    async def send_block(self, seq: int, raw: bytes) -> Any:
        return await self.request(BlockMsg(scanner=SCANNER, seq=seq).frames(raw))


def cir_blocks(c: Cluster) -> list[tuple[Any, ...]]:
    return c.sql("SELECT scanner, seq, hash FROM blocks ORDER BY seq")


async def test_bad_blocks_are_refused_alarmed_and_change_nothing(cluster: Cluster) -> None:
    ctx = zmq.asyncio.Context()
    try:
        edge = FakeEdge(cluster, cluster.edge_key, ctx)
        w = await edge.request(
            Hello(edge=edge.key.id, scanner=SCANNER, head_seq=-1, head_hash="", boot="7e").frames(),
            timeout=10,
        )
        assert isinstance(w, Welcome) and w.last_seq == -1

        good0, h0 = edge.seal(0, genesis_hash(SCANNER))
        ack = await edge.send_block(0, good0)
        assert isinstance(ack, Ack) and ack.seq == 0
        baseline = cir_blocks(cluster)
        assert [b[1] for b in baseline] == [0]

        good1, _ = edge.seal(1, h0, line=1)
        flipped_cipher = bytearray(good1)
        flipped_cipher[-80] ^= 0x01  # inside the cipher text
        flipped_meta = bytearray(good1)
        flipped_meta[HEADER.size + 3] ^= 0x20  # inside the signed JSON metadata
        forged, _ = edge.seal(1, h0, line=1, sign=Ed25519PrivateKey.generate())
        replay, _ = edge.seal(0, genesis_hash(SCANNER), line=7)
        broken, _ = edge.seal(1, bytes(32), line=1)

        cases = [
            ("flipped bit in cipher text", 1, bytes(flipped_cipher), "digest"),
            ("flipped bit in metadata", 1, bytes(flipped_meta), ("signature", "malformed")),
            ("bad signature", 1, forged, "signature"),
            ("replayed sequence number", 0, replay, "replay"),
            ("broken chain", 1, broken, "chain"),
        ]
        for i, (what, seq, raw, reason) in enumerate(cases, start=1):
            reply = await edge.send_block(seq, raw)
            assert isinstance(reply, Nack), f"{what}: expected a NACK, got {reply!r}"
            assert reply.fatal, what
            reasons = reason if isinstance(reason, tuple) else (reason,)
            assert reply.reason.split(":")[0] in reasons, f"{what}: {reply.reason}"
            assert cir_blocks(cluster) == baseline, f"{what} changed the CIR"
            wait_until(
                lambda i=i: len(cluster.alarms("block_rejected")) >= i,  # type: ignore[misc]
                5,
                f"the alarm for {what}",
            )

        # the honest next block is still accepted: the stream was not disturbed
        ack = await edge.send_block(1, good1)
        assert isinstance(ack, Ack) and ack.seq == 1
        r = cluster.nii("cir", "verify", "--config", str(cluster.central_toml))
        assert r.returncode == 0, r.stdout
    finally:
        ctx.destroy(linger=0)


async def test_unenrolled_and_revoked_edges_are_refused(cluster: Cluster) -> None:
    ctx = zmq.asyncio.Context()
    try:
        stranger = FakeEdge(cluster, EdgeKey.generate("edge-x"), ctx)
        reply = await stranger.request(
            Hello(edge="edge-x", scanner=SCANNER, head_seq=-1, head_hash="", boot="0a").frames(),
            timeout=1.5,
        )
        assert reply is None, "an unenrolled edge got an answer"
        wait_until(lambda: cluster.alarms("connection_refused"), 5, "a refusal alarm")
        wait_until(
            lambda: "refused connection" in (cluster.logs / "central.log").read_text(),
            5,
            "the refusal in the central log",
        )

        # enrolled: answered; then revoked: a new connection is refused
        edge = FakeEdge(cluster, cluster.edge_key, ctx)
        hello = Hello(edge=edge.key.id, scanner=SCANNER, head_seq=-1, head_hash="", boot="7e")
        assert isinstance(await edge.request(hello.frames(), timeout=10), Welcome)
        r = cluster.nii("central", "revoke", "--config", str(cluster.central_toml), edge.key.id)
        assert r.returncode == 0, r.stderr
        # on the open connection, revocation takes effect within a second: from then on
        # every block is refused and nothing more reaches the CIR
        prev, seq = genesis_hash(SCANNER), 0
        deadline = time.monotonic() + 5
        while True:
            raw, h = edge.seal(seq, prev, line=seq)
            reply = await edge.send_block(seq, raw)
            if not isinstance(reply, Ack):
                break
            assert time.monotonic() < deadline, "blocks still accepted 5 s after revocation"
            prev, seq = h, seq + 1
        assert isinstance(reply, Nack) and reply.fatal and "revoked" in reply.reason
        assert all(b[1] < seq for b in cir_blocks(cluster))
        again = FakeEdge(cluster, cluster.edge_key, ctx)
        assert await again.request(hello.frames(), timeout=1.5) is None
    finally:
        ctx.destroy(linger=0)
