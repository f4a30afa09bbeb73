"""One scanner's path through the edge: driver → scan assembly → seal → spool → ZeroMQ.

Stages, each counting what it handled:

* **assemble**: packets from the data link, in sequence order, become blocks: the
  lines of one scan, closed on ``block_lines`` or ``block_ms`` (whichever first),
  on a change of scan, and around the scan-start and scan-end records;
* **seal**: encrypt to the CIR, sign, chain (``core.seal``);
* **spool**: durably store with the chain head and data-link position;
* **send**: DEALER → ROUTER with CurveZMQ; a block leaves the spool only on ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from core.config import EdgeConfig, ScannerConfig
from core.errors import DriverError, NiiError, ProtocolError
from core.keys import CirPublic, EdgeKey
from core.messages import Ack, Alarm, BlockMsg, Heartbeat, Hello, Nack, Welcome, decode
from core.runtime import cancel_and_wait
from core.seal import BlockKind, Sealer, genesis_hash
from drivers import DataLink, LinkGap, Packet, PacketType, ScannerControl
from edge._spool import Spool

log = logging.getLogger("nii.edge")

WINDOW_BLOCKS = 256
RELEASE_S = 0.25
CACHE_BYTES = 256 * 1024 * 1024


@dataclass
class StageStats:
    """Counters of one pipeline stage (odin-data plugin style)."""

    handled: int = 0
    rejected: int = 0
    seconds: float = 0.0


@dataclass
class ChannelStats:
    lines: int = 0
    calib_lines: int = 0
    blocks_sealed: int = 0
    blocks_sent: int = 0
    blocks_resent: int = 0
    blocks_acked: int = 0
    nacks: int = 0
    gaps: int = 0
    lost_packets: int = 0
    scans_started: int = 0
    scans_ended: int = 0
    stages: dict[str, StageStats] = field(
        default_factory=lambda: {n: StageStats() for n in ("assemble", "seal", "spool", "send")}
    )


def with_att_role(record: bytes, role: str | None) -> bytes:
    """The scan-start record as the edge forwards it: with the checkpoint's ATT role (R12).

    Without a configured ``att_role`` the scanner's bytes go on untouched (with
    its own ``att_role``, if it sends one).  With one, the configured role wins:
    it is written into the record, and a different role the scanner gave is
    kept beside it as ``att_role_scanner``.  A record that is not a JSON object
    goes on untouched (central alarms an unreadable record).
    """
    if role is None:
        return record
    try:
        doc = json.loads(record)
    except ValueError:
        return record
    if not isinstance(doc, dict):
        return record
    own = doc.get("att_role")
    if own is not None and own != role:
        doc["att_role_scanner"] = own
    doc["att_role"] = role
    return json.dumps(doc).encode()


class _Assembly:
    """Lines of the block being built."""

    __slots__ = ("channels", "index", "opened", "payloads", "scan_id")

    def __init__(self) -> None:
        self.scan_id = -1
        self.channels = 0
        self.payloads: list[bytes] = []
        self.index: list[tuple[int, int, int, int]] = []
        self.opened = 0.0


class ScannerChannel:
    """Carries one scanner's data from its driver into the CIR."""

    def __init__(
        self,
        edge: EdgeConfig,
        cfg: ScannerConfig,
        key: EdgeKey,
        cir: CirPublic,
        ctx: zmq.asyncio.Context,
        link: DataLink,
        control: ScannerControl | None,
        *,
        on_alarm: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.edge, self.cfg, self.key, self.cir = edge, cfg, key, cir
        self.link, self.control = link, control
        self.stats = ChannelStats()
        self.boot = os.urandom(8).hex()
        self._on_alarm = on_alarm
        genesis = genesis_hash(cfg.id)
        self.spool = Spool(
            Path(edge.state_dir) / f"{cfg.id}.spool.sqlite",
            max_bytes=int(cfg.spool_max_mb * 1024 * 1024),
            high_water=cfg.spool_high_water,
            genesis=genesis,
        )
        self.sealer = Sealer(key.sign_private, cir.x25519_public)
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, f"{edge.id}/{cfg.id}".encode())
        self.sock.setsockopt(zmq.RECONNECT_IVL, 100)
        self.sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self.sock.setsockopt(zmq.SNDHWM, 1000)
        self.sock.curve_secretkey = key.curve_secret
        self.sock.curve_publickey = key.curve_public
        self.sock.curve_serverkey = cir.curve_public
        self._asm = _Assembly()
        self._cache: dict[int, bytes] = {}
        self._cache_bytes = 0
        self._cursor = self.spool.state.acked_seq + 1
        self._acked = self.spool.state.acked_seq
        self._welcomed = False
        self._central_boot = ""
        self._last_heard = 0.0
        self._last_progress = time.monotonic()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._may_read = asyncio.Event()
        self._reader_task: asyncio.Task[None] | None = None
        self._disarmed_for_spool = False
        self._disarm_at_scan_end = False
        self._last_release = 0.0
        self._pending_alarms: list[Alarm] = []
        self.connected = False
        self.refused: str | None = None
        # hooks for the safety guard and the state tracker (edge._safety, edge._uptime)
        self.may_arm: Callable[[], bool] = lambda: True
        self.event_listeners: list[Callable[[Any], None]] = []
        self.heartbeat_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.heartbeat_extra: Callable[[], dict[str, Any]] = dict
        if not self.spool.fresh:
            self._may_read.set()

    # -- life cycle ----------------------------------------------------------------------
    async def run(self) -> None:
        self.sock.connect(self.edge.central)
        tasks = [
            asyncio.create_task(self._receiver(), name=f"{self.cfg.id}.receiver"),
            asyncio.create_task(self._sender(), name=f"{self.cfg.id}.sender"),
            asyncio.create_task(self._keepalive(), name=f"{self.cfg.id}.keepalive"),
            asyncio.create_task(self._flusher(), name=f"{self.cfg.id}.flusher"),
        ]
        if self.control is not None:
            tasks.append(asyncio.create_task(self._control(), name=f"{self.cfg.id}.control"))
        self._start_reader()
        try:
            await asyncio.gather(*tasks)
        finally:
            await cancel_and_wait([*tasks, self._reader_task], self.cfg.id, timeout=3.0)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.link.close()
        if self.control is not None:
            with contextlib.suppress(Exception):
                await self.control.close()
        self.sock.close(linger=0)
        self.spool.close()

    def _start_reader(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        self._asm = _Assembly()
        self._reader_task = asyncio.create_task(self._reader(), name=f"{self.cfg.id}.reader")
        self._reader_task.add_done_callback(self._reader_done)

    def _reader_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: data link reader stopped: %s", self.cfg.id, exc)
            self.alarm("reader_stopped", f"data link reader stopped: {exc}")

    def alarm(self, kind: str, message: str, **details: Any) -> None:
        log.warning("%s: ALARM %s: %s", self.cfg.id, kind, message)
        if self._on_alarm is not None:
            self._on_alarm(self.cfg.id, kind, message)
        msg = Alarm(scanner=self.cfg.id, kind=kind, message=message, details=details)
        if not self._welcomed or not self.connected:
            # keep it until central is back; a bounded queue, oldest first out
            self._pending_alarms = [*self._pending_alarms[-999:], msg]
            return
        with contextlib.suppress(zmq.ZMQError):
            self.sock.send_multipart(msg.frames(), flags=zmq.NOBLOCK)

    # -- assemble, seal, spool -----------------------------------------------------------
    async def _reader(self) -> None:
        await self._may_read.wait()
        start = self.spool.state.link_next_seq
        log.info("%s: reading the data link from packet %d", self.cfg.id, start)
        st = self.stats.stages["assemble"]
        async for item in self.link.packets(start):
            if self.spool.full:
                self._flush()
                log.warning("%s: spool full: pausing the data link", self.cfg.id)
                self._drained.clear()
                while self.spool.full:
                    await self._drained.wait()
                    self._drained.clear()
            t0 = time.perf_counter()
            if isinstance(item, LinkGap):
                self._on_gap(item)
            elif item.type == PacketType.LINE:
                self._on_line(item)
            elif item.type in (PacketType.SCAN_START, PacketType.SCAN_END):
                self._on_record(item)
            else:
                st.rejected += 1
                continue
            st.handled += 1
            st.seconds += time.perf_counter() - t0

    def _on_line(self, p: Packet) -> None:
        a = self._asm
        if a.payloads and (p.scan_id != a.scan_id or p.channels != a.channels):
            self._flush()
            a = self._asm
        if not a.payloads:
            a.scan_id, a.channels, a.opened = p.scan_id, p.channels, time.monotonic()
        a.payloads.append(p.payload)
        a.index.append((p.line_no, p.flags, p.ts_ns, p.seq))
        if p.flags & 3:
            self.stats.calib_lines += 1
        else:
            self.stats.lines += 1
        if len(a.payloads) >= self.cfg.block_lines:
            self._flush()

    def _on_record(self, p: Packet) -> None:
        self._flush()
        kind = BlockKind.SCAN_START if p.type == PacketType.SCAN_START else BlockKind.SCAN_END
        payload = p.payload
        if kind == BlockKind.SCAN_START:
            self.stats.scans_started += 1
            payload = with_att_role(payload, self.cfg.att_role)
        else:
            self.stats.scans_ended += 1
        self._seal(
            kind,
            {"kind": kind.name.lower(), "scan_id": p.scan_id, "link_seq": p.seq},
            [(p.line_no, p.flags, p.ts_ns, p.seq)],
            payload,
            p.seq + 1,
        )

    def _on_gap(self, g: LinkGap) -> None:
        self._flush()
        n = g.last_seq - g.first_seq + 1
        self.stats.gaps += 1
        self.stats.lost_packets += n
        self._seal(
            BlockKind.GAP,
            {"kind": "gap", "first_seq": g.first_seq, "last_seq": g.last_seq, "reason": g.reason},
            [],
            b"",
            g.last_seq + 1,
        )
        self.alarm(
            "data_lost",
            f"{n} data-link packets ({g.first_seq}..{g.last_seq}) are lost: {g.reason}",
            first_seq=g.first_seq,
            last_seq=g.last_seq,
        )

    def _flush(self) -> None:
        a = self._asm
        if not a.payloads:
            return
        self._asm = _Assembly()
        meta = {
            "kind": "data",
            "scan_id": a.scan_id,
            "channels": a.channels,
            "n_lines": len(a.payloads),
            "link_first": a.index[0][3],
            "link_last": a.index[-1][3],
        }
        self._seal(BlockKind.DATA, meta, a.index, b"".join(a.payloads), a.index[-1][3] + 1)

    def _seal(
        self,
        kind: BlockKind,
        meta: dict[str, Any],
        index: list[tuple[int, int, int, int]],
        payload: bytes,
        link_next: int,
    ) -> None:
        meta = {"edge": self.edge.id, "scanner": self.cfg.id, **meta}
        seq = self.spool.state.head_seq + 1
        t0 = time.perf_counter()
        sealed, h = self.sealer.seal(
            kind=kind,
            seq=seq,
            prev_hash=self.spool.state.head_hash,
            meta=meta,
            index=index,
            payload=payload,
            created_ns=time.time_ns(),
        )
        if kind == BlockKind.SCAN_END:
            self.sealer.rotate()
        t1 = time.perf_counter()
        self.spool.append(seq, int(kind), sealed, h, link_next)
        t2 = time.perf_counter()
        self.stats.blocks_sealed += 1
        self.stats.stages["seal"].handled += 1
        self.stats.stages["seal"].seconds += t1 - t0
        self.stats.stages["spool"].handled += 1
        self.stats.stages["spool"].seconds += t2 - t1
        if self._cache_bytes < CACHE_BYTES:
            self._cache[seq] = sealed
            self._cache_bytes += len(sealed)
        self._wake.set()
        if self.spool.above_high_water and self._acked > self.spool.state.acked_seq:
            self._last_release = time.monotonic()
            self._release(self._acked)  # acknowledged blocks do not count against the bound
        if self.spool.above_high_water and not self._disarmed_for_spool:
            self._disarmed_for_spool = True
            self.alarm(
                "spool_high",
                f"spool at {self.spool.bytes_used / 1e6:.1f} MB of "
                f"{self.spool.max_bytes / 1e6:.1f} MB: new scans are refused until it drains",
            )
            if self.control is not None:
                asyncio.get_running_loop().create_task(self._safe(self._refuse_new_scans()))

    async def _refuse_new_scans(self) -> None:
        """Disarm now if idle; if a scan is running, let it finish and disarm at its end."""
        assert self.control is not None
        st = await self.control.status()
        if st.scanning:
            self._disarm_at_scan_end = True
            log.info("%s: the running scan may finish; disarming at its end", self.cfg.id)
        else:
            await self.control.disarm()

    async def _flusher(self) -> None:
        period = self.cfg.block_ms / 1000.0
        while True:
            await asyncio.sleep(period / 4)
            a = self._asm
            if a.payloads and time.monotonic() - a.opened >= period:
                self._flush()

    # -- send and acknowledge ------------------------------------------------------------
    async def _sender(self) -> None:
        st = self.stats.stages["send"]
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (
                self._welcomed
                and self.refused is None
                and self._cursor <= self.spool.state.head_seq
                and self._cursor - self._acked <= WINDOW_BLOCKS
            ):
                seq = self._cursor
                raw = self._cache.get(seq)
                if raw is None:
                    raw = self.spool.get(seq)
                    if raw is None:  # acknowledged meanwhile
                        self._cursor += 1
                        continue
                    self.stats.blocks_resent += 1
                t0 = time.perf_counter()
                # copying a block into the zmq message costs less than tracking a
                # zero-copy frame through pyzmq's garbage-collector thread
                await self.sock.send_multipart(BlockMsg(scanner=self.cfg.id, seq=seq).frames(raw))
                st.handled += 1
                st.seconds += time.perf_counter() - t0
                self.stats.blocks_sent += 1
                if self._cursor == seq:
                    self._cursor = seq + 1

    async def _receiver(self) -> None:
        while True:
            frames = await self.sock.recv_multipart()
            try:
                msg, _ = decode(frames)
            except ProtocolError as exc:
                log.warning("%s: bad message from central: %s", self.cfg.id, exc)
                continue
            self._last_heard = time.monotonic()
            self.connected = True
            if isinstance(msg, Heartbeat):
                for hb_fn in self.heartbeat_listeners:
                    hb_fn(msg.state)
            if isinstance(msg, Welcome):
                self._on_welcome(msg)
            elif isinstance(msg, Ack):
                self._on_ack(msg)
            elif isinstance(msg, Nack):
                self._on_nack(msg)
            elif (
                isinstance(msg, Heartbeat) and self._central_boot and msg.boot != self._central_boot
            ):
                log.info("%s: central restarted; saying hello again", self.cfg.id)
                self._welcomed = False
                self._send_hello()

    def _on_welcome(self, w: Welcome) -> None:
        self._central_boot = w.boot
        self.refused = None
        last = w.last_seq
        if last > self.spool.state.head_seq:
            log.warning(
                "%s: the CIR is ahead of this spool (%d > %d): taking its chain head",
                self.cfg.id,
                last,
                self.spool.state.head_seq,
            )
            if not self.spool.fresh:
                self.alarm(
                    "spool_behind",
                    f"the CIR holds blocks up to {last}, this spool only to "
                    f"{self.spool.state.head_seq}; continuing from the CIR's chain head",
                )
            self.spool.adopt(last, bytes.fromhex(w.last_hash), w.link_next_seq)
            self._cache.clear()
            self._cache_bytes = 0
            self._start_reader()
        else:
            if last >= 0 and last > self.spool.state.acked_seq:
                h = self.spool.hash_at(last)
                if h is not None and h.hex() != w.last_hash:
                    self.alarm(
                        "chain_fork",
                        f"the CIR's block {last} differs from this spool's; refusing to go on",
                    )
                    self.refused = "chain fork"
                    return
            self._release(last)
            if self.spool.fresh:
                self.spool.mark_started()
        self._acked = max(self._acked, last)
        self._cursor = last + 1
        self._welcomed = True
        self._last_progress = time.monotonic()
        self._may_read.set()
        self._wake.set()
        log.info("%s: welcomed by central; the CIR holds blocks up to %d", self.cfg.id, last)
        pending, self._pending_alarms = self._pending_alarms, []
        for a in pending:
            with contextlib.suppress(zmq.ZMQError):
                self.sock.send_multipart(a.frames(), flags=zmq.NOBLOCK)

    def _drop_cached(self, seq: int) -> None:
        """Forget the in-memory copies of blocks up to ``seq`` (the CIR holds them)."""
        for s in [s for s in self._cache if s <= seq]:
            self._cache_bytes -= len(self._cache.pop(s))

    def _release(self, seq: int) -> None:
        freed = self.spool.ack(seq)
        if freed:
            self.stats.blocks_acked += freed
        self._drop_cached(seq)
        if not self.spool.full:
            self._drained.set()
        if self._disarmed_for_spool and self.spool.bytes_used < self.spool.high_water_bytes // 2:
            self._disarmed_for_spool = False
            self._disarm_at_scan_end = False
            log.info("%s: spool drained; accepting scans again", self.cfg.id)
            if self.control is not None and self.cfg.arm and self.may_arm():
                asyncio.get_running_loop().create_task(self._safe(self.control.arm()))

    def _on_ack(self, a: Ack) -> None:
        if a.seq > self._acked:
            self._acked = a.seq
            self._drop_cached(a.seq)
            # deleting from the spool is batched (one transaction per RELEASE_S), except
            # when space is short; a crash before it only means the CIR gets duplicates
            # it recognises, and the WELCOME after a restart releases them anyway
            now = time.monotonic()
            if self.spool.above_high_water or now - self._last_release >= RELEASE_S:
                self._last_release = now
                self._release(a.seq)
            self._last_progress = time.monotonic()
            if self._cursor <= a.seq:
                self._cursor = a.seq + 1
            self._wake.set()

    def _on_nack(self, n: Nack) -> None:
        self.stats.nacks += 1
        if n.fatal:
            self.refused = n.reason
            self.alarm("refused", f"central refused block {n.seq}: {n.reason}")
            return
        log.info("%s: central wants block %d (%s)", self.cfg.id, n.expected, n.reason)
        if n.expected > self.spool.state.head_seq + 1:
            self._welcomed = False
            self._send_hello()
            return
        self._cursor = max(n.expected, self._acked + 1)
        self._wake.set()

    def _send_hello(self) -> None:
        st = self.spool.state
        msg = Hello(
            edge=self.edge.id,
            scanner=self.cfg.id,
            head_seq=st.head_seq,
            head_hash=st.head_hash.hex(),
            boot=self.boot,
        )
        with contextlib.suppress(zmq.ZMQError):
            self.sock.send_multipart(msg.frames(), flags=zmq.NOBLOCK)

    async def _keepalive(self) -> None:
        hb = self.edge.heartbeat_s
        while True:
            now = time.monotonic()
            if self._acked > self.spool.state.acked_seq:
                self._last_release = now
                self._release(self._acked)
            if now - self._last_heard > 3 * hb:
                self.connected = False
            if not self._welcomed:
                self._send_hello()
            else:
                inflight = self._cursor - 1 > self._acked
                if inflight and now - self._last_progress > 3 * hb:
                    log.info("%s: no acknowledgement for %.1f s; resyncing", self.cfg.id, 3 * hb)
                    self._welcomed = False
                    self._send_hello()
                else:
                    msg = Heartbeat(
                        sender=f"{self.edge.id}/{self.cfg.id}",
                        boot=self.boot,
                        state={**self.summary(), **self.heartbeat_extra()},
                    )
                    with contextlib.suppress(zmq.ZMQError):
                        self.sock.send_multipart(msg.frames(), flags=zmq.NOBLOCK)
            await asyncio.sleep(hb if self._welcomed else min(hb, 0.5))

    # -- control link --------------------------------------------------------------------
    async def _safe(self, coro: Any) -> None:
        try:
            await coro
        except NiiError as exc:
            log.warning("%s: control: %s", self.cfg.id, exc)

    async def _control(self) -> None:
        assert self.control is not None
        ctl = self.control
        while True:
            try:
                ident = await ctl.identify()
                log.info(
                    "%s: scanner %s %s serial %s firmware %s, %d channels",
                    self.cfg.id,
                    ident.vendor,
                    ident.model,
                    ident.serial,
                    ident.firmware,
                    ident.channels,
                )
                if self.cfg.arm and not self.spool.above_high_water and self.may_arm():
                    await ctl.arm()
                async for ev in ctl.events():
                    for fn in self.event_listeners:
                        fn(ev)
                    if ev.kind == "FAULT":
                        self.alarm("scanner_fault", " ".join(ev.fields))
                    elif ev.kind in ("SCAN_START", "SCAN_END"):
                        log.info("%s: %s %s", self.cfg.id, ev.kind, ",".join(ev.fields))
                        if ev.kind == "SCAN_END" and self._disarm_at_scan_end:
                            self._disarm_at_scan_end = False
                            await ctl.disarm()
                            log.info("%s: disarmed: spool above high water", self.cfg.id)
            except DriverError as exc:
                log.warning("%s: control link: %s; retrying in 2 s", self.cfg.id, exc)
                await asyncio.sleep(2.0)

    # -- reporting -----------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "lines": s.lines,
            "blocks_sealed": s.blocks_sealed,
            "blocks_acked": s.blocks_acked,
            "spool_depth": self.spool.depth,
            "spool_bytes": self.spool.bytes_used,
            "gaps": s.gaps,
            "link": self.link.stats.as_dict(),
        }
