"""Operations around the data path of an edge: safety, scanner state log, metrics.

:class:`Operations` attaches to the daemon's scanner channels through their
hooks (``may_arm``, ``event_listeners``, ``heartbeat_listeners``,
``heartbeat_extra``), so the data path itself stays as it is:

* a :class:`~edge._uptime.ScannerStateTracker` per scanner, fed by the driver's
  events and the safety verdict, its log replayed to central in heartbeats;
* with ``[edge.mqtt]``: one :class:`~edge._safety.SafetyMonitor` and a
  :class:`~edge._safety.SafetyGuard` per scanner that gates every arming;
* with ``metrics = "HOST:PORT"``: a Prometheus endpoint (``edge._metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from core.config import EdgeConfig
from edge._channel import ScannerChannel
from edge._safety import SafetyGuard, SafetyMonitor
from edge._uptime import ScannerStateTracker, StateLog

log = logging.getLogger("nii.edge")


class Operations:
    """Safety, state tracking and metrics for the channels of one edge daemon."""

    def __init__(self, cfg: EdgeConfig, channels: list[ScannerChannel]) -> None:
        self.cfg = cfg
        self.channels = {ch.cfg.id: ch for ch in channels}
        self.statelog = StateLog(cfg.state_dir / "uptime.sqlite")
        self.trackers: dict[str, ScannerStateTracker] = {}
        self.guards: dict[str, SafetyGuard] = {}
        self.monitor: SafetyMonitor | None = None
        if cfg.mqtt is not None:
            self.monitor = SafetyMonitor(cfg.mqtt, [ch.cfg for ch in channels], edge_id=cfg.id)
        for sid, ch in self.channels.items():
            tr = ScannerStateTracker(
                sid, self.statelog, maintenance_flag=cfg.state_dir / f"{sid}.maintenance"
            )
            self.trackers[sid] = tr
            ch.event_listeners.append(tr.on_event)
            ch.heartbeat_listeners.append(tr.on_central_heartbeat)
            ch.heartbeat_extra = tr.heartbeat_state
            if self.monitor is not None:
                safety = self.monitor.scanners[sid]
                guard = SafetyGuard(ch, safety, scanning=_scanning(tr))
                safety.on_change.insert(0, tr.set_safe)
                self.guards[sid] = guard
                ch.may_arm = guard.may_arm
                ch.wants_armed = guard.wants_armed
        self.metrics_server: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> list[asyncio.Task[None]]:
        """Start the background tasks (the daemon cancels them on stop)."""
        self._tasks = [asyncio.create_task(self._tick(), name="state tick")]
        if self.monitor is not None:
            self._tasks.append(asyncio.create_task(self.monitor.run(), name="safety monitor"))
        if self.cfg.metrics:
            from edge._metrics import serve_metrics

            self.metrics_server = serve_metrics(self.cfg.metrics, self)
        return self._tasks

    async def _tick(self) -> None:
        while True:
            for tr in self.trackers.values():
                tr.tick()
            await asyncio.sleep(1.0)

    def status(self, scanner: str) -> dict[str, Any]:
        """The scanner state and safety summary for ``status.json``."""
        tr = self.trackers[scanner]
        out: dict[str, Any] = {"state": tr.state, "state_cause": tr.cause}
        if self.monitor is not None:
            s = self.monitor.scanners[scanner]
            out["safety"] = {
                "safe": s.safe,
                "causes": s.causes,
                "broker_connected": s.link_up,
                "trips": self.guards[scanner].trips,
            }
        return out

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for g in self.guards.values():
            await g.close()
        for tr in self.trackers.values():
            with contextlib.suppress(Exception):
                tr.stopping()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        self.statelog.close()


def _scanning(tr: ScannerStateTracker) -> Callable[[], bool]:
    return lambda: tr.driver_state == "scanning"  # the overlay already says interlock


__all__ = ["Operations"]
