"""Prometheus metrics of an edge daemon (``metrics = "127.0.0.1:9101"`` in ``[edge]``).

Counters are read from the live objects on each scrape (the pipeline stages
already count what they handle), so the data path carries no metrics code.
``nii_scanner_available_seconds_total`` and ``nii_scanner_observed_seconds_total``
let a recording rule compute the SLA ratio (``docs/prometheus/rules.yml``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from core.errors import ConfigError
from edge._uptime import STATES

if TYPE_CHECKING:
    from edge._ops import Operations

#: Buckets for latencies from a millisecond to ten seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)


class EdgeCollector(Collector):
    """Reads the channels, state trackers and safety monitor of one edge on each scrape."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def collect(self) -> Iterator[Metric]:
        ops = self.ops
        edge = ops.cfg.id
        state = GaugeMetricFamily(
            "nii_scanner_state",
            "1 for the scanner's current state",
            labels=["edge", "scanner", "state"],
        )
        avail = CounterMetricFamily(
            "nii_scanner_available_seconds",
            "Seconds the scanner was ready or scanning",
            labels=["edge", "scanner"],
        )
        obs = CounterMetricFamily(
            "nii_scanner_observed_seconds",
            "Seconds the edge observed the scanner",
            labels=["edge", "scanner"],
        )
        for sid, tr in ops.trackers.items():
            for st in STATES:
                state.add_metric([edge, sid, st], 1.0 if tr.state == st else 0.0)
            avail.add_metric([edge, sid], tr.available_s)
            obs.add_metric([edge, sid], tr.observed_s)
        yield from (state, avail, obs)

        closed = GaugeMetricFamily(
            "nii_interlock_closed",
            "1 while the interlock input is in its safe state",
            labels=["edge", "scanner", "sensor", "kind"],
        )
        changed = GaugeMetricFamily(
            "nii_interlock_last_change_timestamp_seconds",
            "When the interlock input last changed (epoch seconds)",
            labels=["edge", "scanner", "sensor"],
        )
        dose = GaugeMetricFamily(
            "nii_dose_rate_usvh", "Area dose rate, µSv/h", labels=["edge", "scanner", "sensor"]
        )
        safe = GaugeMetricFamily(
            "nii_scanner_safe",
            "1 while every interlock is closed and fresh, dose under limit",
            labels=["edge", "scanner"],
        )
        trips = CounterMetricFamily(
            "nii_safety_trips", "Changes to unsafe", labels=["edge", "scanner"]
        )
        broker = GaugeMetricFamily(
            "nii_site_broker_connected",
            "1 while connected to the site MQTT broker",
            labels=["edge"],
        )
        if ops.monitor is not None:
            broker.add_metric([edge], 1.0 if ops.monitor.connected.is_set() else 0.0)
            for sid, s in ops.monitor.scanners.items():
                safe.add_metric([edge, sid], 1.0 if s.safe else 0.0)
                trips.add_metric([edge, sid], float(ops.guards[sid].trips))
                for (group, name), r in sorted(s.readings.items()):
                    if group == "dose":
                        if r.usvh is not None:
                            dose.add_metric([edge, sid, name], r.usvh)
                    else:
                        closed.add_metric([edge, sid, name, r.kind], 1.0 if r.ok else 0.0)
                        changed.add_metric([edge, sid, name], r.changed_wall)
        yield from (closed, changed, dose, safe, trips, broker)

        fams: dict[str, Any] = {
            name: CounterMetricFamily(f"nii_edge_{name}", help_, labels=["edge", "scanner"])
            for name, help_ in (
                ("lines", "Image lines read from the data link"),
                ("blocks_sealed", "Blocks sealed and spooled"),
                ("blocks_sent", "Blocks sent to central (resends included)"),
                ("blocks_acked", "Blocks acknowledged by central (durably in the CIR)"),
                ("blocks_rejected", "Blocks central refused (NACK)"),
                ("lost_packets", "Data-link packets lost for good"),
                ("violations", "Data-link packets refused as outside the protocol"),
                ("ts_implausible", "Packets whose scanner timestamp was not plausible"),
                ("scanner_restarts", "New scanner sessions (link epochs)"),
                ("storage_pauses", "Times the spool could not write and the link paused"),
                ("control_outages", "Times the control link went down"),
                ("task_crashes", "Channel tasks that crashed and were restarted"),
            )
        }
        depth = GaugeMetricFamily(
            "nii_edge_spool_depth_blocks", "Blocks waiting in the spool", labels=["edge", "scanner"]
        )
        spool_bytes = GaugeMetricFamily(
            "nii_edge_spool_bytes", "Bytes waiting in the spool", labels=["edge", "scanner"]
        )
        connected = GaugeMetricFamily(
            "nii_edge_central_connected", "1 while central answers", labels=["edge", "scanner"]
        )
        control_up = GaugeMetricFamily(
            "nii_edge_control_up", "1 while the control link answers", labels=["edge", "scanner"]
        )
        storage_ok = GaugeMetricFamily(
            "nii_edge_spool_writable", "1 while the spool can write", labels=["edge", "scanner"]
        )
        stage = SummaryMetricFamily(
            "nii_edge_stage_seconds",
            "Time spent per pipeline stage and item",
            labels=["edge", "scanner", "stage"],
        )
        for sid, ch in ops.channels.items():
            cs = ch.stats
            values = {
                "lines": cs.lines,
                "blocks_sealed": cs.blocks_sealed,
                "blocks_sent": cs.blocks_sent,
                "blocks_acked": cs.blocks_acked,
                "blocks_rejected": cs.nacks,
                "lost_packets": cs.lost_packets,
                "violations": cs.asm.violations,
                "ts_implausible": cs.asm.ts_implausible,
                "scanner_restarts": cs.asm.epochs,
                "storage_pauses": cs.storage_pauses,
                "control_outages": cs.control_outages,
                "task_crashes": cs.task_crashes,
            }
            for name, v in values.items():
                fams[name].add_metric([edge, sid], float(v))
            depth.add_metric([edge, sid], float(ch.spool.depth))
            spool_bytes.add_metric([edge, sid], float(ch.spool.bytes_used))
            connected.add_metric([edge, sid], 1.0 if ch.connected else 0.0)
            control_up.add_metric([edge, sid], 1.0 if ch.control_up else 0.0)
            storage_ok.add_metric([edge, sid], 0.0 if ch.storage_error else 1.0)
            for name, sg in cs.stages.items():
                stage.add_metric([edge, sid, name], count_value=sg.handled, sum_value=sg.seconds)
        yield from fams.values()
        yield from (depth, spool_bytes, connected, control_up, storage_ok, stage)


def make_registry(ops: Operations) -> CollectorRegistry:
    """A registry of one edge: the collector plus the safety reaction histogram."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(EdgeCollector(ops))
    reaction = Histogram(
        "nii_safety_reaction_seconds",
        "From a change to unsafe to the scanner acknowledging beam off",
        ["edge", "scanner"],
        buckets=LATENCY_BUCKETS,
        registry=reg,
    )
    for sid, g in ops.guards.items():
        child = reaction.labels(ops.cfg.id, sid)
        g.observers.append(child.observe)
    for sid in ops.trackers:
        if sid not in ops.guards:
            reaction.labels(ops.cfg.id, sid)
    return reg


def parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"metrics = {addr!r} is not HOST:PORT", fix='write e.g. metrics = "127.0.0.1:9101"'
        )
    return host.strip("[]"), int(port)


def serve_metrics(addr: str, ops: Operations) -> Any:
    """Start the HTTP endpoint in a thread; returns the server (``shutdown()`` stops it)."""
    host, port = parse_addr(addr)
    try:
        server, _ = start_http_server(port, addr=host, registry=make_registry(ops))
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {addr}: {exc.strerror}",
            fix="choose a free port for metrics in the [edge] table",
        ) from exc
    return server


__all__ = ["LATENCY_BUCKETS", "EdgeCollector", "make_registry", "parse_addr", "serve_metrics"]
