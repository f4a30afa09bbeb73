"""The edge daemon: one process per edge box, one channel per scanner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time

import zmq
import zmq.asyncio

from core.config import EdgeConfig
from core.errors import ConfigError, DriverError
from core.keys import CirPublic, EdgeKey
from core.runtime import cancel_and_wait
from core.sdnotify import Notifier, watchdog_loop
from drivers.lsp import LspControl, LspDataLink
from edge._channel import ScannerChannel
from edge._ops import Operations

log = logging.getLogger("nii.edge")


def _check_state_dir(cfg: EdgeConfig) -> None:
    try:
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        probe = cfg.state_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"state_dir {cfg.state_dir} is not writable: {exc.strerror}",
            fix="create it and give it to the user the edge runs as, or set state_dir",
        ) from exc


class EdgeDaemon:
    """Owns the ZeroMQ context, the drivers and the scanner channels."""

    def __init__(self, cfg: EdgeConfig) -> None:
        self.cfg = cfg
        self.key = EdgeKey.load(cfg.key)
        self.cir = CirPublic.load(cfg.cir_public)
        if self.key.id != cfg.id:
            raise ConfigError(
                f"{cfg.path}: [edge] id is {cfg.id!r} but the key file {cfg.key} is for "
                f"{self.key.id!r}",
                fix="point key at this edge's own key file, or correct the id",
            )
        _check_state_dir(cfg)
        self.ctx = zmq.asyncio.Context()
        self.channels: list[ScannerChannel] = []
        self.ops: Operations | None = None  # safety, state log, metrics (edge._ops)
        self._loop_beat = time.monotonic()
        self._runs: list[asyncio.Task[None]] = []
        self._status_failing = False

    async def open(self) -> None:
        """Build every scanner's drivers and channel.

        An absent serial device does not stop the start: the channel keeps
        reopening it, and systemd hears ``READY=1`` only once every scanner has
        answered (docs/decisions/0009-edge-watchdog-and-absent-devices.md).

        Raises:
            DriverError: another process holds a scanner's serial device.
        """
        try:
            for sc in self.cfg.scanners:
                control = LspControl(str(sc.serial))
                try:
                    await control.open()
                except DriverError as exc:
                    if control.busy:
                        raise
                    log.warning("%s: %s; opening it again until it is there", sc.id, exc)
                link = LspDataLink(sc.data_host, sc.data_port)
                self.channels.append(
                    ScannerChannel(self.cfg, sc, self.key, self.cir, self.ctx, link, control)
                )
            self.ops = Operations(self.cfg, self.channels)
        except BaseException:
            await self.close()
            raise

    async def serve(self, stop: asyncio.Event) -> None:
        """Run every channel until ``stop`` is set; tell systemd how it goes.

        Raises:
            Exception: what made a channel end (a task that escaped its supervisor);
                the process then exits non-zero and systemd restarts it.
        """
        notifier = Notifier()
        runs = [asyncio.create_task(ch.run(), name=f"channel {ch.cfg.id}") for ch in self.channels]
        aux = [
            asyncio.create_task(self._beat(), name="loop beat"),
            asyncio.create_task(self._announce(notifier), name="announce"),
            asyncio.create_task(watchdog_loop(notifier, self.healthy), name="watchdog"),
            *(self.ops.start() if self.ops is not None else []),
        ]
        self._runs = runs
        log.info(
            "edge %s serving %d scanner(s) → %s", self.cfg.id, len(self.channels), self.cfg.central
        )
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *runs], return_when=asyncio.FIRST_COMPLETED)
        notifier.stopping()
        self.write_status()
        await cancel_and_wait([stopper, *runs, *aux], "edge", timeout=5.0)
        for t in done:
            if t is not stopper and not t.cancelled() and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]

    async def _announce(self, notifier: Notifier) -> None:
        """``STATUS=`` what the unit waits for or does; ``READY=1`` once every scanner answered."""
        ready = False
        last = ""
        while True:
            text = self.status_text()
            if not ready and all(ch.identified for ch in self.channels):
                ready = True
                notifier.ready()
                log.info("edge %s ready: every scanner answered", self.cfg.id)
            if text != last:
                notifier.status(text)
                last = text
            await asyncio.sleep(0.5)

    def status_text(self) -> str:
        """One line for systemd's ``STATUS=``: what is awaited or wrong, else what is served."""
        waits = [ch.waiting_for for ch in self.channels if ch.waiting_for]
        if not all(ch.identified for ch in self.channels):
            return "waiting for " + "; ".join(waits)
        trouble = [
            f"{ch.cfg.id}: spool cannot write" for ch in self.channels if ch.storage_error
        ] + [f"{w}" for w in waits]
        n = len(self.channels)
        head = f"serving {n} scanner{'s' if n != 1 else ''}"
        return head + (f" ({'; '.join(trouble)})" if trouble else "")

    async def _beat(self) -> None:
        n = 0
        while True:
            self._loop_beat = time.monotonic()
            if n % 2 == 0:
                self.write_status()
            n += 1
            await asyncio.sleep(0.5)

    def status(self) -> dict[str, object]:
        """What a technician (and ``nii doctor``) wants to see of each scanner."""
        out: dict[str, object] = {"edge": self.cfg.id, "ts": time.time(), "scanners": {}}
        for ch in self.channels:
            d = ch.summary()
            d["connected"] = ch.connected
            d["refused"] = ch.refused
            d["control_up"] = ch.control_up
            d["identified"] = ch.identified
            d["control"] = dict(getattr(ch.control, "stats", {}) or {})
            d["stages"] = {k: vars(v) for k, v in ch.stats.stages.items()}
            if self.ops is not None:
                d.update(self.ops.status(ch.cfg.id))
            out["scanners"][ch.cfg.id] = d  # type: ignore[index]
        return out

    def write_status(self) -> None:
        """Write ``state_dir/status.json`` atomically (read by tools and tests)."""
        path = self.cfg.state_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.status(), indent=1))
            os.replace(tmp, path)
        except OSError as exc:
            if not self._status_failing:  # once per streak: a full disk lasts
                log.warning("cannot write %s: %s", path, exc)
            self._status_failing = True
            with contextlib.suppress(OSError):
                tmp.unlink()  # a partial file holds space the spool needs
            return
        if self._status_failing:
            log.info("%s written again", path)
        self._status_failing = False

    def healthy(self) -> bool:
        """Whether systemd's watchdog may be fed: the loop turns and every channel makes
        its rounds with all its tasks alive (an absent scanner is no reason to starve it:
        docs/decisions/0009-edge-watchdog-and-absent-devices.md)."""
        now = time.monotonic()
        if now - self._loop_beat >= 5.0:
            return False
        if any(t.done() for t in self._runs):
            return False
        return all(now - ch.beat < 5.0 for ch in self.channels)

    async def close(self) -> None:
        if self.ops is not None:
            await self.ops.close()
            self.ops = None
        for ch in self.channels:
            await ch.close()
        self.ctx.term()


async def run_edge(cfg: EdgeConfig, stop: asyncio.Event) -> None:
    daemon = EdgeDaemon(cfg)
    await daemon.open()
    try:
        await daemon.serve(stop)
    finally:
        await daemon.close()
