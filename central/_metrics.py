"""Prometheus metrics of the central aggregator (``metrics = "127.0.0.1:9100"`` in ``[central]``).

The metrics know the aggregator only through a read-only :class:`CentralView`
given at construction: its counters (:class:`~central._stats.CentralStats`, read
on each scrape), the scanners' states as last heard, and where the uptime
records are. Line latency (scanner emission → durable in the CIR) and ATR
latency (scan end → verdict) are histograms the aggregator observes into
(:class:`CentralMetrics`); ``nii_atr_latency_seconds`` is there even with the
live ATR off, so dashboards need no change when it is switched on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from central._stats import CentralStats
from central._uptime import STATES, Sla, UptimeStore, account, build_timeline, period
from core.errors import ConfigError

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ATR_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class CentralView:
    """What the metrics may read of a running aggregator; nothing here changes it.

    Attributes:
        stats: the aggregator's counters (its own object: read, never written, here).
        live_states: scanner id → its state document as last heard (a copy per call).
        uptime_target: where the uptime records are (``UptimeStore``'s target: the
            CIR's database, a path or a PostgreSQL URL).
        sla: the SLA the availability is accounted against.
    """

    stats: CentralStats
    live_states: Callable[[], Mapping[str, Mapping[str, Any]]]
    uptime_target: Any
    sla: Sla


class CentralCollector(Collector):
    """Reads the aggregator's counters and the uptime records on each scrape."""

    def __init__(self, view: CentralView, cache_s: float = 30.0) -> None:
        self.view = view
        self.cache_s = cache_s
        self._acct: tuple[float, list[Metric]] = (0.0, [])

    def collect(self) -> Iterator[Metric]:
        st = self.view.stats
        for name, help_, v in (
            ("blocks_committed", "Blocks durably in the CIR", st.blocks_committed),
            ("lines_committed", "Image lines durably in the CIR", st.lines_committed),
            ("bytes_committed", "Sealed bytes durably in the CIR", st.bytes_committed),
            ("duplicates", "Blocks received again (already in the CIR)", st.duplicates),
            ("out_of_order", "Blocks ahead of their chain (NACKed for a resend)", st.out_of_order),
            (
                "refused_connections",
                "Connections from keys not enrolled or revoked",
                st.refused_connections,
            ),
            (
                "bad_messages",
                "Messages refused from enrolled edges (malformed, or naming another edge)",
                st.bad_messages,
            ),
            (
                "storage_failures",
                "CIR writes that failed for want of space or an I/O error (retried)",
                st.storage_failures,
            ),
            (
                "uptime_skipped",
                "Heartbeats whose uptime was not stored: not the scanner's live writer",
                st.uptime_skipped,
            ),
        ):
            f = CounterMetricFamily(f"nii_central_{name}", help_)
            f.add_metric([], float(v))
            yield f
        rej = CounterMetricFamily(
            "nii_central_blocks_rejected", "Blocks refused, by reason", labels=["reason"]
        )
        for reason in ("identity", "signature", "chain", "replay", "integrity"):
            rej.add_metric([reason], float(st.rejected.get(reason, 0)))
        for reason, n in st.rejected.items():
            if reason not in ("identity", "signature", "chain", "replay", "integrity"):
                rej.add_metric([reason], float(n))
        yield rej
        commit = SummaryMetricFamily("nii_central_commit_seconds", "Group commits into the CIR")
        commit.add_metric([], count_value=st.commits, sum_value=st.commit_seconds)
        yield commit
        state = GaugeMetricFamily(
            "nii_scanner_state",
            "1 for the scanner's state as last heard",
            labels=["scanner", "state"],
        )
        for sid, live in self.view.live_states().items():
            for s in STATES:
                state.add_metric([sid, s], 1.0 if live.get("state") == s else 0.0)
        yield state
        yield from self._accounts()

    def _accounts(self) -> list[Metric]:
        """Availability from the replayed state logs (cached: it reads the uptime store)."""
        now = time.time()
        if now - self._acct[0] < self.cache_s:
            return self._acct[1]
        sla = self.view.sla
        avail = CounterMetricFamily(
            "nii_scanner_available_seconds",
            "Seconds available this fiscal year, from the edges' logs",
            labels=["scanner"],
        )
        obs = CounterMetricFamily(
            "nii_scanner_observed_seconds",
            "Scheduled seconds this fiscal year less agreed maintenance",
            labels=["scanner"],
        )
        ratio = GaugeMetricFamily(
            "nii_scanner_availability_ratio",
            "Availability per period (R3 SLA: 0.98)",
            labels=["scanner", "period"],
        )
        store = UptimeStore(self.view.uptime_target)  # the HTTP thread's own connection
        try:
            tls = {sid: build_timeline(store.rows(sid), now=now) for sid in store.scanners()}
            since = {sid: store.commissioned(sid) for sid in tls}  # nothing before it counts
        finally:
            store.close()
        for sid, tl in tls.items():
            for spec in ("day", "month", "fiscal"):
                p = period(spec, now, sla.tz)
                a = account(sid, tl, sla, p, now, since=since[sid])
                if spec == "fiscal":
                    avail.add_metric([sid], a.available_s)
                    obs.add_metric([sid], a.base_s)
                if a.availability is not None:
                    ratio.add_metric([sid, spec], a.availability)
        self._acct = (now, [avail, obs, ratio])
        return self._acct[1]


class CentralMetrics:
    """The registry of one aggregator and the histograms it observes into.

    Attributes:
        registry: what ``/metrics`` serves.
        line_latency: ``nii_central_line_latency_seconds``; observe seconds.
        atr_latency: ``nii_atr_latency_seconds`` with label ``model``; observe seconds.
    """

    def __init__(self, view: CentralView) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CentralCollector(view))
        self.line_latency = Histogram(
            "nii_central_line_latency_seconds",
            "From a line's emission at the scanner to its commit in the CIR",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.atr_latency = Histogram(
            "nii_atr_latency_seconds",
            "From scan end to the ATR verdict",
            ["model"],
            buckets=ATR_BUCKETS,
            registry=self.registry,
        )
        self.server: Any = None

    def serve(self, addr: str) -> None:
        """Serve the registry on ``addr`` (HOST:PORT) in a thread.

        Raises:
            ConfigError: ``addr`` is not HOST:PORT, or that port cannot be bound.
        """
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"metrics = {addr!r} is not HOST:PORT",
                fix='write e.g. metrics = "127.0.0.1:9100" in [central]',
            )
        try:
            self.server, _ = start_http_server(
                int(port), addr=host.strip("[]"), registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {addr}: {exc.strerror}",
                fix="choose a free port for metrics in the [central] table",
            ) from exc

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


__all__ = ["CentralCollector", "CentralMetrics", "CentralView"]
