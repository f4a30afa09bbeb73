"""Uptime accounting (R3): a scripted day on injected clocks gives the exact availability.

The day has agreed maintenance, a scan, a fault, a site interlock, a 10-minute
network partition, lost heartbeats, a central restart, an edge wall-clock jump
(and its correction) and an edge crash with a reboot. The edge's state log and
central's tracker are the real classes; only the clocks and the message
delivery between them are scripted.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from central._uptime import (
    Sla,
    UptimeStore,
    UptimeTracker,
    build_timeline,
    fiscal_year_of,
    format_table,
    period,
    report,
)
from drivers import ControlEvent
from edge._uptime import ScannerStateTracker, StateLog

PKT = dt.timezone(dt.timedelta(hours=5))
DAY0 = dt.datetime(2025, 7, 14, tzinfo=PKT).timestamp()
H = 3600.0


class EdgeClock:
    """The edge box's clocks: monotonic (reset by a reboot) and a wall clock that may jump."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall_offset = DAY0 - self.mono

    def mono_ns(self) -> int:
        return round(self.mono * 1e9)

    def wall_ns(self) -> int:
        return round((self.mono + self.wall_offset) * 1e9)


def status(state: str) -> ControlEvent:
    return ControlEvent("STATUS", [state, "1", str(int(state == "scanning")), "-", "-"], "")


class Day:
    """Drives one edge (tracker + state log) and central (tracker) through a day."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = EdgeClock()
        self.t = 0.0  # seconds since the start of the day (true time)
        self.boot()
        self.central: UptimeTracker | None = UptimeTracker(tmp / "central")
        self.driver = "armed"
        self.delivered = True
        self.beats = 0

    def boot(self) -> None:
        c = self.clock
        self.log = StateLog(self.tmp / "edge-uptime.sqlite", mono_ns=c.mono_ns, wall_ns=c.wall_ns)
        self.edge = ScannerStateTracker(
            "scanner1", self.log, clock=lambda: c.mono, status_timeout_s=5.0, mark_s=60.0
        )

    def exchange(self) -> None:
        self.beats += 1
        if not self.delivered or self.central is None or self.beats % 7 == 0:  # lost heartbeats
            return
        self.central.on_heartbeat(b"id", "edge-a", self.edge.heartbeat_state())
        self.edge.on_central_heartbeat(self.central.reply(b"id"))

    def run_to(self, t: float) -> None:
        """Advance to ``t`` in 1-minute steps: status reports, ticks, heartbeats."""
        while self.t < t:
            step = min(60.0, t - self.t)
            self.t += step
            self.clock.mono += step
            if self.driver:
                self.edge.on_event(status(self.driver))
            self.edge.tick()
            self.exchange()


def test_scripted_day_gives_exact_availability(tmp_path: Path) -> None:
    d = Day(tmp_path)
    flag = tmp_path / "scanner1.maintenance"
    d.edge.maintenance_flag = flag
    d.edge.on_event(status("armed"))
    d.edge.tick()
    d.run_to(2 * H)
    flag.touch()  # agreed maintenance 02:00-03:00
    d.edge.tick()  # the edge looks at the flag every second
    d.run_to(3 * H)
    flag.unlink()
    d.edge.tick()
    d.run_to(8 * H)
    d.driver = "scanning"
    d.run_to(8 * H + 600)
    d.driver = "armed"
    d.run_to(10 * H)
    d.driver = "fault"  # 10:00-10:30 fault
    d.run_to(10.5 * H)
    d.driver = "armed"
    d.run_to(12 * H)
    d.clock.wall_offset += H  # the edge's wall clock jumps an hour ahead ...
    d.run_to(13 * H)
    d.edge.set_safe(False, ["interlock door-a (door) is open"])  # 13:00-13:12 site unsafe
    d.run_to(13 * H + 720)
    d.edge.set_safe(True, [])
    d.run_to(14 * H)
    d.clock.wall_offset -= H  # ... and NTP corrects it
    d.run_to(16 * H)
    d.delivered = False  # 16:00-16:10 network partition: the edge keeps its record
    d.run_to(16 * H + 600)
    d.delivered = True
    d.run_to(18 * H)
    assert d.central is not None
    d.central.close()  # 18:00-18:02 central restarts
    d.central = None
    d.run_to(18 * H + 120)
    d.central = UptimeTracker(tmp_path / "central")
    d.run_to(20 * H)
    d.log.close()  # 20:00 the edge box crashes; back at 20:05 after a reboot
    d.t += 300
    d.clock.mono = 50.0  # the monotonic clock restarts with the machine
    d.clock.wall_offset = DAY0 + d.t - d.clock.mono
    d.boot()
    d.edge.on_event(status(d.driver))  # the scanner reports at once
    d.run_to(24 * H + 120)  # a little past midnight so every entry of the day is delivered

    sla = Sla(tz=PKT, maintenance=[("scanner1", DAY0 + 2 * H, DAY0 + 3 * H)])
    d.central.sla = sla
    p = period("2025-07-14", DAY0, PKT)
    a = d.central.account("scanner1", p, now=DAY0 + 24 * H + 120)
    assert a.scheduled_s == pytest.approx(24 * H)
    assert a.maintenance_s == pytest.approx(H)
    assert a.by_state["fault"] == pytest.approx(1800, abs=1e-6)
    assert a.by_state["interlock"] == pytest.approx(720, abs=1e-6)
    assert a.by_state["offline"] == pytest.approx(300, abs=1e-6)  # only the edge crash
    assert a.by_state["scanning"] == pytest.approx(600, abs=1e-6)
    assert a.by_state["maintenance"] == pytest.approx(0.0, abs=1e-6)  # all of it was agreed
    assert a.available_s == pytest.approx(82800 - 2820, abs=1e-6)
    assert a.availability == pytest.approx((82800 - 2820) / 82800, abs=1e-12)
    d.central.close()
    d.log.close()


def test_partition_counts_as_offline_until_the_edge_replays(tmp_path: Path) -> None:
    d = Day(tmp_path)
    d.edge.on_event(status("armed"))
    d.run_to(H)
    d.delivered = False
    d.run_to(H + 600)
    assert d.central is not None
    now = DAY0 + H + 600
    p = period("2025-07-14", DAY0, PKT)
    d.central.sla = Sla(tz=PKT)
    during = d.central.account("scanner1", p, now=now)
    # central has heard nothing for 10 minutes: beyond the live grace, it is offline for now
    assert during.by_state["offline"] > 0
    d.delivered = True
    d.run_to(H + 900)
    after = d.central.account("scanner1", p, now=DAY0 + H + 900)
    assert after.by_state["offline"] == pytest.approx(0.0, abs=1e-6)
    d.central.close()
    d.log.close()


def test_projection_alarm_once_per_period(tmp_path: Path) -> None:
    alarms: list[tuple[str, str]] = []
    d = Day(tmp_path)
    assert d.central is not None
    d.central.alarm = lambda scanner, edge, kind, message, **kw: alarms.append((kind, message))
    d.central.sla = Sla(tz=PKT)
    d.edge.on_event(status("armed"))
    d.run_to(H)
    d.driver = "fault"
    d.run_to(H + 300)  # 5 min of fault in 65 min: 92 %, but only an hour observed
    assert d.central.check_projection(DAY0 + H + 300) == [] and alarms == []
    d.driver = "armed"
    d.run_to(23 * H)
    d.driver = "fault"
    d.run_to(24 * H + 60)  # a day and a minute observed, 96 % available
    now = DAY0 + 24 * H + 60
    low = d.central.check_projection(now)
    assert {a.period.label for a in low} == {"2025-07", "FY2025-26"}
    assert [k for k, _ in alarms] == ["sla_projection", "sla_projection"]
    assert d.central.check_projection(now) == []  # once per scanner and period
    d.central.close()
    d.log.close()


def test_periods_and_fiscal_year() -> None:
    assert fiscal_year_of(dt.date(2025, 6, 30)) == 2024
    assert fiscal_year_of(dt.date(2025, 7, 1)) == 2025
    p = period("fiscal", DAY0, PKT)
    assert p.label == "FY2025-26"
    assert p.end - p.start == 365 * 86400
    assert period("2025-07", DAY0, PKT).end - period("2025-07", DAY0, PKT).start == 31 * 86400
    assert period("FY2023-24", DAY0, PKT).end - period("FY2023", DAY0, PKT).start == 366 * 86400


def test_scheduled_hours_and_overlapping_boots() -> None:
    sla = Sla(tz=PKT, hours=(6 * 60, 22 * 60))
    assert sum(b - a for a, b in sla.scheduled(DAY0, DAY0 + 86400)) == 16 * H
    rows = [  # boot b overlaps boot a's tail: the later boot wins
        ("L", 1, "a", 0, int(DAY0 * 1e9), "ready", ""),
        ("L", 2, "a", int(100e9), int(DAY0 * 1e9), "ready", "mark"),
        ("L", 3, "b", 0, int((DAY0 + 50) * 1e9), "fault", ""),
        ("L", 4, "b", int(100e9), int((DAY0 + 50) * 1e9), "fault", "mark"),
    ]
    tl = build_timeline(rows, now=DAY0 + 1000)
    assert [(iv.start - DAY0, iv.end - DAY0, iv.state) for iv in tl] == [
        (0, 50, "ready"),
        (50, 150, "fault"),
    ]


def test_report_writes_table_csv_and_png(tmp_path: Path) -> None:
    store = UptimeStore(tmp_path / "uptime.sqlite")
    anchor = int(DAY0 * 1e9)
    entries = [[1, "b", 0, anchor, "ready", ""]]
    entries += [[i + 1, "b", int(i * 60e9), anchor, "ready", "mark"] for i in range(1, 180)]
    entries += [[i + 1, "b", int(i * 60e9), anchor, "fault", "F100"] for i in range(180, 241)]
    store.ingest({"scanner": "scanner1", "log": "L", "entries": entries})
    sla = Sla(tz=PKT)
    accounts, csv_path, png_path = report(
        store, sla, spec="2025-07-14", out_dir=tmp_path, now=DAY0 + 4 * H
    )
    assert csv_path.read_text().splitlines()[0].startswith("scanner,period,")
    assert png_path.stat().st_size > 5000
    table = format_table(accounts, sla)
    assert "scanner1" in table and "BREACH" in table
    store.close()


def test_control_link_down_is_fault_until_it_is_back(tmp_path: Path) -> None:
    c = EdgeClock()
    log = StateLog(tmp_path / "e.sqlite", mono_ns=c.mono_ns, wall_ns=c.wall_ns)
    tr = ScannerStateTracker("scanner1", log, clock=lambda: c.mono)
    tr.on_event(status("armed"))
    assert tr.state == "ready"
    tr.on_event(ControlEvent("LINK_DOWN", ["/dev/ttyUSB0 vanished"], ""))
    assert tr.state == "fault" and tr.cause == "control link down: /dev/ttyUSB0 vanished"
    c.mono += 10.0  # no status for longer than the timeout: still fault, not offline
    tr.tick()
    assert tr.state == "fault"
    tr.on_event(ControlEvent("LINK_UP", [], ""))
    tr.on_event(status("armed"))
    assert tr.state == "ready"
    states = [e[4] for e in log.pending("scanner1")]
    assert states == ["offline", "ready", "fault", "offline", "ready"]  # back, then heard
    log.close()


def test_state_moves_only_once_it_is_written(tmp_path: Path) -> None:
    c = EdgeClock()
    log = StateLog(tmp_path / "e.sqlite", mono_ns=c.mono_ns, wall_ns=c.wall_ns)
    tr = ScannerStateTracker("scanner1", log, clock=lambda: c.mono)
    tr.on_event(status("armed"))
    log.db.execute(
        "CREATE TRIGGER full BEFORE INSERT ON entries BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    tr.on_event(status("fault"))  # must not raise into the channel's listener loop
    assert tr.state == "ready" and "disk full" in tr.write_error
    assert not log.db.in_transaction
    log.db.execute("DROP TRIGGER full")
    tr.tick()
    assert tr.state == "fault" and tr.write_error == ""
    assert [e[4] for e in log.pending("scanner1")] == ["offline", "ready", "fault"]
    log.close()
