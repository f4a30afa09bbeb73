"""The central aggregator: ROUTER in, CIR commit, ACK out, live feed.

One asyncio task receives and verifies; a second commits batches in a worker
thread (blob writes, one ``syncfs``, one SQLite transaction), so receiving and
verifying the next batch overlaps the disk work of the last. A block is
acknowledged only after its batch committed.

Checks on every block, in order, each a reason a block is refused and alarmed
while the CIR stays unchanged: the sending CurveZMQ key is enrolled and not
revoked; the block parses and its cipher digest holds; it names the edge that
sent it; its Ed25519 signature is the edge's; its sequence number is the next
one of its scanner's chain (a lower one with other content is a replay); its
``prev_hash`` is the hash of the block before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator

from central._cir import Cir, Staged, StreamState
from central._metrics import serve_metrics
from central._uptime import Sla, UptimeTracker
from core.config import CentralConfig
from core.errors import ConfigError, IntegrityError, NiiError, ProtocolError
from core.keys import CirKey, EdgePublic
from core.messages import Ack, Alarm, BlockMsg, Heartbeat, Hello, Nack, Welcome, decode
from core.sdnotify import Notifier, watchdog_loop
from core.seal import Block, BlockKind, Opener, genesis_hash, parse, verify

log = logging.getLogger("nii.central")

MAX_BATCH_MSGS = 512
MAX_BATCH_BYTES = 64 * 1024 * 1024


@dataclass
class CentralStats:
    blocks_committed: int = 0
    lines_committed: int = 0
    bytes_committed: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    out_of_order: int = 0
    commits: int = 0
    commit_seconds: float = 0.0
    refused_connections: int = 0


class _Keyring:
    """The CurveZMQ side of enrollment: ZAP asks it about every connecting key."""

    def __init__(self, central: Central) -> None:
        self.central = central

    def callback(self, domain: str, key: bytes) -> bool:
        z85 = key.decode() if isinstance(key, bytes) else str(key)
        row = self.central.edge_row(z85)
        if row is None or row["revoked_ns"] is not None:
            why = "revoked" if row is not None else "not enrolled"
            self.central.refused(z85, why, row["id"] if row else "")
            return False
        return True


class Central:
    """The aggregator process."""

    def __init__(self, cfg: CentralConfig) -> None:
        self.cfg = cfg
        self.key = CirKey.load(cfg.key)
        self.cir = Cir(cfg.state_dir)
        self.opener = Opener(self.key.x25519_private)
        self.boot = os.urandom(8).hex()
        self.stats = CentralStats()
        self.latencies_ms: deque[float] = deque(maxlen=200_000)
        self._edges: dict[str, dict[str, Any] | None] = {}
        self._edges_loaded = 0.0
        self._sign_keys: dict[str, Any] = {}
        self._streams: dict[str, StreamState] = {}
        self._scans: dict[int, dict[str, Any]] = {}
        self._next_ref = self.cir.next_scan_ref()
        self._last_preview: dict[str, float] = {}
        self._refusals_logged: dict[str, float] = {}
        self._pending_alarms: list[dict[str, Any]] = []
        self._inflight_hash: dict[tuple[str, int], bytes] = {}
        self._loop_beat = time.monotonic()
        self.ctx: zmq.asyncio.Context | None = None
        self.router: zmq.asyncio.Socket | None = None
        self.pub: zmq.asyncio.Socket | None = None
        self.auth: AsyncioAuthenticator | None = None
        # R3: scanner state logs replayed by the edges, SLA accounting (central._uptime)
        self.uptime = UptimeTracker(cfg.state_dir, alarm=self._alarm, sla=Sla.load(_sla_file(cfg)))
        self.metrics_server: Any = None
        from central.atr._live import LiveAtr  # here: numba loads only where central runs

        self.atr = (
            LiveAtr(
                self.cir.dir,
                self.key.x25519_private,
                self._publish,
                max_backlog=cfg.atr_max_backlog,
                alarm=self._alarm,
            )
            if cfg.atr
            else None
        )

    # -- enrollment lookups --------------------------------------------------------------
    def edge_row(self, curve_z85: str) -> dict[str, Any] | None:
        now = time.monotonic()
        if now - self._edges_loaded > 1.0:
            self._edges.clear()
            self._edges_loaded = now
        if curve_z85 not in self._edges:
            self._edges[curve_z85] = self.cir.edge_by_curve(curve_z85)
        return self._edges[curve_z85]

    def refused(self, z85: str, why: str, edge_id: str) -> None:
        self.stats.refused_connections += 1
        now = time.monotonic()
        if now - self._refusals_logged.get(z85, -1e9) < 10.0:
            return
        self._refusals_logged[z85] = now
        msg = f"refused connection from CurveZMQ key {z85[:12]}…: {why}"
        log.warning("%s%s", msg, f" (edge {edge_id})" if edge_id else "")
        self._alarm("", edge_id, "connection_refused", msg, key=z85, why=why)

    def _alarm(self, scanner: str, edge: str, kind: str, message: str, **details: Any) -> None:
        row = self.cir.alarm_row(scanner, edge, kind, message, **details)
        self._pending_alarms.append(row)
        self._publish(b"alarm", {**row, "details": details})

    # -- sockets -------------------------------------------------------------------------
    def open(self) -> None:
        self.ctx = zmq.asyncio.Context()
        self.auth = AsyncioAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve_callback("*", credentials_provider=_Keyring(self))
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.setsockopt(zmq.RCVHWM, 10000)
        self.router.curve_server = True
        self.router.curve_secretkey = self.key.curve_secret
        self.router.curve_publickey = self.key.curve_public
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.setsockopt(zmq.SNDHWM, 10000)
        for sock, ep, what in (
            (self.router, self.cfg.listen, "listen"),
            (self.pub, self.cfg.feed, "feed"),
        ):
            try:
                sock.bind(ep)
            except zmq.ZMQError as exc:
                self.close()
                raise ConfigError(
                    f"cannot bind {what} = {ep}: {exc.strerror}",
                    fix="another process holds that port, or the address is not this "
                    f"machine's; choose a free port for {what} in {self.cfg.path}",
                ) from exc

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        for s in (self.router, self.pub):
            if s is not None:
                s.close(linger=0)
        self.router = self.pub = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
            self.metrics_server = None
        if self.atr is not None:
            self.atr.close()
        self.uptime.close()
        self.cir.close()

    def _publish(self, topic: bytes, doc: dict[str, Any], *raw: bytes) -> None:
        if self.pub is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self.pub.send_multipart(
                [topic, json.dumps(doc, default=str).encode(), *raw], flags=zmq.NOBLOCK
            )

    # -- main loop -----------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event) -> None:
        assert self.router is not None
        notifier = Notifier()
        aux = [
            asyncio.create_task(self._beat(), name="loop beat"),
            asyncio.create_task(watchdog_loop(notifier, self.healthy), name="watchdog"),
            asyncio.create_task(self.uptime.watch(), name="sla watch"),
        ]
        if self.cfg.metrics and self.metrics_server is None:
            self.metrics_server = serve_metrics(self)
        notifier.ready()
        log.info(
            "central listening on %s, live feed on %s, CIR in %s",
            self.cfg.listen,
            self.cfg.feed,
            self.cfg.state_dir,
        )
        main = asyncio.create_task(self._receive_loop())
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([main, stopper], return_when=asyncio.FIRST_COMPLETED)
            if main in done:
                main.result()
        finally:
            notifier.stopping()
            for t in [main, stopper, *aux]:
                t.cancel()
            for t in [main, stopper, *aux]:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    async def _beat(self) -> None:
        n = 0
        while True:
            self._loop_beat = time.monotonic()
            if n % 4 == 0:  # every 2 s: the feed is alive, and what central has done
                st = self.stats
                self._publish(
                    b"central.status",
                    {
                        "boot": self.boot,
                        "blocks_committed": st.blocks_committed,
                        "lines_committed": st.lines_committed,
                        "duplicates": st.duplicates,
                        "rejected": sum(st.rejected.values()),
                    },
                )
            n += 1
            await asyncio.sleep(0.5)

    def healthy(self) -> bool:
        return time.monotonic() - self._loop_beat < 5.0

    async def _receive_loop(self) -> None:
        router = self.router
        assert router is not None
        commit_task: asyncio.Task[None] | None = None
        while True:
            if not await router.poll(500):
                if self._pending_alarms and commit_task is None:
                    commit_task = asyncio.create_task(self._commit(_Work()))
                elif commit_task is not None and commit_task.done():
                    try:
                        commit_task.result()
                    except Exception as exc:
                        log.error("CIR commit failed: %s; edges will resend", exc)
                        self._reset_state()
                    commit_task = None
                continue
            batch = [await router.recv_multipart(copy=False)]
            size = sum(len(f) for f in batch[0])
            while (
                len(batch) < MAX_BATCH_MSGS
                and size < MAX_BATCH_BYTES
                and int(router.get(zmq.EVENTS)) & zmq.POLLIN
            ):
                frames = await router.recv_multipart(copy=False)
                batch.append(frames)
                size += sum(len(f) for f in frames)
            work = self._stage(batch)
            if commit_task is not None:
                try:
                    await commit_task
                except Exception as exc:  # a failed commit: forget tentative state
                    log.error("CIR commit failed: %s; edges will resend", exc)
                    self._reset_state()
                    work = _Work()
                commit_task = None
            if work.staged or work.alarms or work.hellos or work.scans:
                commit_task = asyncio.create_task(self._commit(work))
                # let the next batch be received and verified while this one commits
            else:
                self._reply(work)

    def _reset_state(self) -> None:
        self._inflight_hash.clear()
        self._streams.clear()
        self._scans.clear()
        self._next_ref = self.cir.next_scan_ref()

    async def _commit(self, work: _Work) -> None:
        t0 = time.perf_counter()
        alarms, self._pending_alarms = self._pending_alarms, []
        # copies: the event loop goes on staging the next batch on the live states while
        # this one is written in the worker thread
        streams = {s: dataclasses.replace(self._streams[s]) for s in work.streams_touched}
        scans = {r: dict(self._scans[r]) for r in work.scans}
        await asyncio.to_thread(self.cir.commit, work.staged, streams, scans, alarms)
        now_ns = time.time_ns()
        self.stats.commits += 1
        self.stats.commit_seconds += time.perf_counter() - t0
        for s in work.staged:
            self.stats.blocks_committed += 1
            self.stats.bytes_committed += len(s.block.raw)
            if s.block.kind == BlockKind.DATA:
                self.stats.lines_committed += s.committed_lines
                for e in s.block.index:
                    self.latencies_ms.append((now_ns - e.ts_ns) / 1e6)
        for r in work.finished:
            self._scans.pop(r, None)
        if self.atr is not None:  # ATR verdicts, read back after this commit
            self.atr.scans_committed(work.finished)
        for k in work.staged_hash:
            self._inflight_hash.pop(k, None)
        self._reply(work)

    def _reply(self, work: _Work) -> None:
        router = self.router
        assert router is not None
        for (ident, scanner), seq in work.acks.items():
            self._send(ident, Ack(scanner=scanner, seq=seq, boot=self.boot).frames())
        for ident, nack in work.nacks:
            self._send(ident, nack.frames())
        for ident, scanner in work.hellos:
            st = self._streams.get(scanner) or self._load_stream(scanner)
            self._send(
                ident,
                Welcome(
                    scanner=scanner,
                    last_seq=st.last_seq if st else -1,
                    last_hash=(st.last_hash if st else genesis_hash(scanner)).hex(),
                    link_next_seq=st.link_next_seq if st else -1,
                    boot=self.boot,
                ).frames(),
            )
        for ident in work.heartbeats:
            self._send(
                ident,
                Heartbeat(
                    sender="central",
                    boot=self.boot,
                    state={"blocks": self.stats.blocks_committed, **self.uptime.reply(ident)},
                ).frames(),
            )
        for topic, doc, raw in work.feed:
            self._publish(topic, doc, *raw)

    def _send(self, ident: bytes, frames: list[Any]) -> None:
        assert self.router is not None
        with contextlib.suppress(zmq.ZMQError):
            self.router.send_multipart([ident, *frames], flags=zmq.NOBLOCK)

    # -- staging: verify and bookkeeping -------------------------------------------------
    def _load_stream(self, scanner: str) -> StreamState | None:
        st = self._streams.get(scanner)
        if st is None:
            st = self.cir.stream(scanner)
            if st is not None:
                self._streams[scanner] = st
                if st.scan_ref is not None and st.scan_ref not in self._scans:
                    row = self.cir.scan(st.scan_ref)
                    if row is not None:
                        self._scans[st.scan_ref] = row
        return st

    def _stage(self, batch: list[list[Any]]) -> _Work:
        work = _Work()
        for frames in batch:
            ident = bytes(frames[0])
            try:
                msg, extra = decode(frames[1:])
            except ProtocolError as exc:
                log.warning("bad message from %r: %s", ident[:64], exc)
                continue
            user = frames[1].get("User-Id") if hasattr(frames[1], "get") else None
            edge = self.edge_row(user) if user else None
            if edge is None or edge["revoked_ns"] is not None:
                if isinstance(msg, BlockMsg):
                    work.nacks.append(
                        (
                            ident,
                            Nack(
                                scanner=msg.scanner,
                                seq=msg.seq,
                                expected=-1,
                                reason="edge not enrolled or revoked",
                                fatal=True,
                            ),
                        )
                    )
                continue
            if isinstance(msg, BlockMsg):
                if not extra:
                    continue
                self._stage_block(work, ident, edge, msg, extra[0])
            elif isinstance(msg, Hello):
                st = self._load_stream(msg.scanner)
                if msg.edge != edge["id"]:
                    self._alarm(
                        msg.scanner,
                        edge["id"],
                        "identity",
                        f"edge {edge['id']} said hello as {msg.edge!r}",
                    )
                    continue
                if st is not None and st.edge != edge["id"]:
                    work.nacks.append(
                        (
                            ident,
                            Nack(
                                scanner=msg.scanner,
                                seq=-1,
                                expected=-1,
                                fatal=True,
                                reason=f"scanner {msg.scanner} is bound to edge {st.edge}",
                            ),
                        )
                    )
                    continue
                work.hellos.append((ident, msg.scanner))
            elif isinstance(msg, Heartbeat):
                work.heartbeats.append(ident)
                self.uptime.on_heartbeat(ident, edge["id"], msg.state)
            elif isinstance(msg, Alarm):
                self._alarm(msg.scanner, edge["id"], msg.kind, msg.message, **msg.details)
        work.alarms = bool(self._pending_alarms)
        return work

    def _reject(
        self, work: _Work, ident: bytes, edge: str, msg: BlockMsg, reason: str, message: str
    ) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        log.warning("refused block %s/%d from edge %s: %s", msg.scanner, msg.seq, edge, message)
        self._alarm(
            msg.scanner,
            edge,
            "block_rejected",
            f"block {msg.seq} refused: {message}",
            reason=reason,
            seq=msg.seq,
        )
        work.nacks.append(
            (
                ident,
                Nack(
                    scanner=msg.scanner,
                    seq=msg.seq,
                    expected=-1,
                    reason=f"{reason}: {message}",
                    fatal=True,
                ),
            )
        )

    def _stage_block(
        self, work: _Work, ident: bytes, edge: dict[str, Any], msg: BlockMsg, frame: Any
    ) -> None:
        edge_id = edge["id"]
        try:
            block = parse(frame.buffer if hasattr(frame, "buffer") else bytes(frame))
            if block.edge != edge_id or block.scanner != msg.scanner or block.seq != msg.seq:
                raise IntegrityError(
                    f"block claims edge {block.edge!r} scanner {block.scanner!r} seq "
                    f"{block.seq}, but came from edge {edge_id!r} as {msg.scanner}/{msg.seq}",
                    reason="identity",
                )
            key = self._sign_keys.get(edge["sign_public"])
            if key is None:
                key = self._sign_keys[edge["sign_public"]] = EdgePublic.from_b64(
                    edge["sign_public"]
                )
            verify(block, key)
        except IntegrityError as exc:
            self._reject(work, ident, edge_id, msg, exc.reason, exc.message)
            return
        st = self._load_stream(block.scanner)
        if st is None:
            st = StreamState(
                block.scanner, edge_id, -1, genesis_hash(block.scanner), -1, None, None
            )
            self._streams[block.scanner] = st
        if st.edge != edge_id:
            self._reject(
                work,
                ident,
                edge_id,
                msg,
                "identity",
                f"scanner {block.scanner} is bound to edge {st.edge}",
            )
            return
        h = block.hash
        if block.seq <= st.last_seq:
            known = self._inflight_hash.get((block.scanner, block.seq)) or self.cir.block_hash(
                block.scanner, block.seq
            )
            if known == h:
                self.stats.duplicates += 1
                work.ack(ident, block.scanner, st.last_seq)
            else:
                self._reject(
                    work,
                    ident,
                    edge_id,
                    msg,
                    "replay",
                    f"sequence number {block.seq} is already taken by another block",
                )
            return
        if block.seq > st.last_seq + 1:
            self.stats.out_of_order += 1
            work.nacks.append(
                (
                    ident,
                    Nack(
                        scanner=block.scanner, seq=block.seq, expected=st.last_seq + 1, reason="gap"
                    ),
                )
            )
            return
        if block.prev_hash != st.last_hash:
            self._reject(
                work,
                ident,
                edge_id,
                msg,
                "chain",
                "its prev_hash is not the hash of the block before it",
            )
            return
        self._accept(work, ident, st, block, h)

    def _accept(self, work: _Work, ident: bytes, st: StreamState, block: Block, h: bytes) -> None:
        kind = block.kind
        if kind == BlockKind.DATA:
            image_lines = sum(1 for e in block.index if not e.flags & 3)
            calib = len(block.index) - image_lines
        else:
            image_lines = calib = 0
        ref = st.scan_ref
        scan_id = block.meta.get("scan_id")
        if kind == BlockKind.SCAN_START:
            record = self._open_record(block)
            ref = self._new_scan(st, block, record)
            work.feed.append((b"scan.started", self._scan_doc(ref), ()))
        elif kind in (BlockKind.DATA, BlockKind.SCAN_END) and (
            ref is None or st.scan_id != scan_id
        ):
            ref = self._new_scan(st, block, {})
            self._scans[ref]["status"] = "scanning"
            self._alarm(
                block.scanner,
                st.edge,
                "no_start_record",
                f"scan {scan_id} has no scan-start record in the CIR",
            )
        if ref is not None and ref in self._scans:
            s = self._scans[ref]
            s["blocks"] += 1
            s["last_seq"] = block.seq
            s["lines_received"] += image_lines
            s["calib_lines"] += calib
            work.scans.add(ref)
        if kind == BlockKind.DATA:
            self._maybe_preview(work, block, ref)
        elif kind == BlockKind.SCAN_END and ref is not None:
            self._close_scan(work, st, block, ref)
        elif kind == BlockKind.GAP:
            if ref is not None and ref in self._scans:
                self._scans[ref]["gaps"] += 1
            self._alarm(
                block.scanner,
                st.edge,
                "data_lost",
                f"the edge could not get data-link packets {block.meta.get('first_seq')}"
                f"..{block.meta.get('last_seq')}: {block.meta.get('reason')}",
            )
        block.meta["_scan_ref"] = ref
        st.last_seq = block.seq
        st.last_hash = h
        if block.index:
            st.link_next_seq = block.index[-1].link_seq + 1
        elif "last_seq" in block.meta:
            st.link_next_seq = int(block.meta["last_seq"]) + 1
        work.staged.append(Staged(block, h, image_lines, calib))
        work.staged_hash[(block.scanner, block.seq)] = h
        self._inflight_hash[(block.scanner, block.seq)] = h
        work.streams_touched.add(block.scanner)
        work.ack(ident, block.scanner, block.seq)

    def _open_record(self, block: Block) -> dict[str, Any]:
        try:
            doc = json.loads(self.opener.open(block))
            return doc if isinstance(doc, dict) else {}
        except (NiiError, ValueError) as exc:
            self._alarm(
                block.scanner,
                block.edge,
                "bad_record",
                f"scan record in block {block.seq} unreadable: {exc}",
            )
            return {}

    def _new_scan(self, st: StreamState, block: Block, record: dict[str, Any]) -> int:
        ref = self._next_ref
        self._next_ref += 1
        ts = block.index[0].ts_ns if block.index else block.created_ns
        self._scans[ref] = {
            "ref": ref,
            "scanner": block.scanner,
            "scan_id": block.meta.get("scan_id"),
            "container": str(record.get("container", "")),
            "status": "scanning",
            "started_ns": ts,
            "finished_ns": None,
            "lines_planned": int(record.get("lines", 0) or 0),
            "lines_received": 0,
            "calib_lines": 0,
            "lines_emitted": None,
            "blocks": 0,
            "first_seq": block.seq,
            "last_seq": block.seq,
            "gaps": 0,
            "start_record": json.dumps(record),
            "end_record": None,
        }
        st.scan_ref = ref
        st.scan_id = block.meta.get("scan_id")
        return ref

    def _close_scan(self, work: _Work, st: StreamState, block: Block, ref: int) -> None:
        s = self._scans.get(ref)
        if s is None:
            return
        record = self._open_record(block)
        s["end_record"] = json.dumps(record)
        s["finished_ns"] = block.index[0].ts_ns if block.index else block.created_ns
        s["lines_emitted"] = record.get("lines_emitted")
        complete = (
            record.get("status") == "complete"
            and s["gaps"] == 0
            and s["lines_received"] == s["lines_planned"]
        )
        if complete:
            s["status"] = "complete"
        else:
            s["status"] = "aborted" if record.get("status") == "aborted" else "incomplete"
            self._alarm(
                block.scanner,
                st.edge,
                "scan_incomplete",
                f"scan {s['scan_id']} (ref {ref}) is {s['status']}: {s['lines_received']} of "
                f"{s['lines_planned']} lines, {s['gaps']} gap(s)"
                + (f", {record.get('reason')}" if record.get("reason") else ""),
            )
        st.scan_ref = None
        st.scan_id = None
        work.finished.add(ref)
        work.feed.append((b"scan.finished", self._scan_doc(ref), ()))

    def _scan_doc(self, ref: int) -> dict[str, Any]:
        s = self._scans[ref]
        return {
            k: s[k]
            for k in (
                "ref",
                "scanner",
                "scan_id",
                "container",
                "status",
                "started_ns",
                "finished_ns",
                "lines_planned",
                "lines_received",
                "gaps",
            )
        }

    def _maybe_preview(self, work: _Work, block: Block, ref: int | None) -> None:
        if self.cfg.preview_hz <= 0:
            return
        now = time.monotonic()
        if now - self._last_preview.get(block.scanner, 0.0) < 1.0 / self.cfg.preview_hz:
            return
        self._last_preview[block.scanner] = now
        ch = int(block.meta.get("channels", 0))
        n = len(block.index)
        try:
            plain = self.opener.open(block)
        except IntegrityError as exc:
            self._alarm(
                block.scanner, block.edge, "bad_block", f"block {block.seq} does not decrypt: {exc}"
            )
            return
        if ch <= 0 or len(plain) != n * ch * 4:
            return
        arr = np.frombuffer(plain, dtype="<u2").reshape(n, 2, ch)[:, 0, :]
        step = max(1, ch // 192)
        preview = (arr[:, ::step] >> 8).astype(np.uint8)
        doc = {
            "scan_ref": ref,
            "scanner": block.scanner,
            "scan_id": block.meta.get("scan_id"),
            "seq": block.seq,
            "first_line": block.index[0].line_no,
            "lines": n,
            "shape": list(preview.shape),
            "mean_high": float(arr.mean()),
        }
        work.feed.append((b"scan.block", doc, (preview.tobytes(),)))


@dataclass
class _Work:
    """What one received batch asks of the commit and of the replies."""

    staged: list[Staged] = field(default_factory=list)
    staged_hash: dict[tuple[str, int], bytes] = field(default_factory=dict)
    streams_touched: set[str] = field(default_factory=set)
    scans: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    acks: dict[tuple[bytes, str], int] = field(default_factory=dict)
    nacks: list[tuple[bytes, Nack]] = field(default_factory=list)
    hellos: list[tuple[bytes, str]] = field(default_factory=list)
    heartbeats: list[bytes] = field(default_factory=list)
    feed: list[tuple[bytes, dict[str, Any], tuple[bytes, ...]]] = field(default_factory=list)
    alarms: bool = False

    def ack(self, ident: bytes, scanner: str, seq: int) -> None:
        k = (ident, scanner)
        if seq > self.acks.get(k, -1):
            self.acks[k] = seq


def _sla_file(cfg: CentralConfig) -> Path | None:
    """``sla.toml`` beside the central configuration, if there is one (see central._uptime)."""
    p = Path(cfg.path).parent / "sla.toml"
    return p if p.exists() else None


async def run_central(cfg: CentralConfig, stop: asyncio.Event) -> None:
    central = Central(cfg)
    central.open()
    try:
        await central.serve(stop)
    finally:
        central.close()
