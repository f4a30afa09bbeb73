"""Prometheus metrics of the central aggregator (``metrics = "127.0.0.1:9100"`` in ``[central]``).

Counts come from :class:`~central._aggregator.CentralStats` on each scrape; line
latency (scanner emission → durable in the CIR) is observed into a histogram
as the aggregator records it. ``nii_atr_latency_seconds`` is there from the
start, so dashboards and alerts need no change when ATR comes in.
"""

from __future__ import annotations

import time
from collections import deque
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

from central._uptime import STATES, UptimeStore, account, build_timeline, period
from core.errors import ConfigError

if TYPE_CHECKING:
    from central._aggregator import Central

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ATR_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class ObservedDeque(deque[float]):
    """The aggregator's latency deque (ms), also feeding a histogram (s) on each append."""

    def __init__(self, hist: Any, maxlen: int) -> None:
        super().__init__(maxlen=maxlen)
        self.hist = hist

    def append(self, x: float) -> None:
        super().append(x)
        self.hist.observe(x / 1e3)


class CentralCollector(Collector):
    """Reads the aggregator's counters and the uptime tracker on each scrape."""

    def __init__(self, central: Central, cache_s: float = 30.0) -> None:
        self.central = central
        self.cache_s = cache_s
        self._acct: tuple[float, list[Metric]] = (0.0, [])

    def collect(self) -> Iterator[Metric]:
        c = self.central
        st = c.stats
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
        for sid, live in dict(c.uptime.live).items():
            for s in STATES:
                state.add_metric([sid, s], 1.0 if live.get("state") == s else 0.0)
        yield state
        yield from self._accounts()

    def _accounts(self) -> list[Metric]:
        """Availability from the replayed state logs (cached: it reads the uptime store)."""
        now = time.time()
        if now - self._acct[0] < self.cache_s:
            return self._acct[1]
        up = self.central.uptime
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
        store = UptimeStore(up.store.target)  # this runs in the HTTP thread: its own connection
        try:
            tls = {sid: build_timeline(store.rows(sid), now=now) for sid in store.scanners()}
            since = {sid: store.commissioned(sid) for sid in tls}  # nothing before it counts
        finally:
            store.close()
        for sid, tl in tls.items():
            for spec in ("day", "month", "fiscal"):
                p = period(spec, now, up.sla.tz)
                a = account(sid, tl, up.sla, p, now, since=since[sid])
                if spec == "fiscal":
                    avail.add_metric([sid], a.available_s)
                    obs.add_metric([sid], a.base_s)
                if a.availability is not None:
                    ratio.add_metric([sid, spec], a.availability)
        self._acct = (now, [avail, obs, ratio])
        return self._acct[1]


def attach(central: Central) -> CollectorRegistry:
    """Make the registry of ``central`` and hook the latency histogram into it."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(CentralCollector(central))
    lat = Histogram(
        "nii_central_line_latency_seconds",
        "From a line's emission at the scanner to its commit in the CIR",
        buckets=LATENCY_BUCKETS,
        registry=reg,
    )
    atr_latency = Histogram(
        "nii_atr_latency_seconds",
        "From scan end to the ATR verdict",
        ["model"],
        buckets=ATR_BUCKETS,
        registry=reg,
    )
    if central.atr is not None:  # the family exists even with live ATR switched off
        central.atr.latency = atr_latency
    old = central.latencies_ms
    central.latencies_ms = ObservedDeque(lat, maxlen=old.maxlen or 200_000)
    central.latencies_ms.extend(old)
    return reg


def serve_metrics(central: Central) -> Any:
    """Serve ``central.cfg.metrics`` (HOST:PORT) in a thread; returns the server."""
    addr = central.cfg.metrics
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"metrics = {addr!r} is not HOST:PORT",
            fix='write e.g. metrics = "127.0.0.1:9100" in [central]',
        )
    try:
        server, _ = start_http_server(int(port), addr=host.strip("[]"), registry=attach(central))
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {addr}: {exc.strerror}",
            fix="choose a free port for metrics in the [central] table",
        ) from exc
    return server


__all__ = ["CentralCollector", "ObservedDeque", "attach", "serve_metrics"]
