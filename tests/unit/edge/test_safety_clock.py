"""Site sensors with untrusted clocks (kind 7): an implausible timestamp is a stale reading."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from edge._safety import ScannerSafety
from tests.unit.test_safety import Clock, make, report, safe_site


def plc(s: ScannerSafety, ts: Any) -> None:
    s.report("interlock", "plc", json.dumps({"kind": "plc", "state": "closed", "ts": ts}).encode())


@pytest.mark.parametrize(
    ("ts", "why"),
    [
        (lambda w: w + 60.0, "ahead of this host's clock"),
        (lambda w: w * 1e3, "milliseconds"),
        (lambda w: w * 1e9, "nanoseconds"),
        (lambda w: w - 3 * 86400.0, "in the past"),
        (lambda w: 0, "in the past"),
        (lambda w: "soon", "not a number"),
        (lambda w: str(w), "not a number"),
        (lambda w: True, "not a number"),
        (lambda w: None, "not a number"),
        (lambda w: [w], "not a number"),
        (lambda w: 10**400, "too large"),
        (lambda w: 2**70, "ahead of"),
    ],
)
def test_implausible_timestamp_makes_the_sensor_stale(ts: Any, why: str) -> None:
    clock = Clock()
    s = safe_site(clock)
    plc(s, ts(clock.wall))
    assert not s.safe
    cause = next(c for c in s.causes if "interlock/plc" in c)
    assert "stale" in cause and why in cause, s.causes


def test_a_clock_ahead_stays_stale_instead_of_fresh_for_ever() -> None:
    clock = Clock()
    s = safe_site(clock)
    for _ in range(5):
        plc(s, clock.wall + 3600.0)  # a device an hour ahead: once trusted, never stale
        clock.advance(1.0)
        assert not s.evaluate()


def test_small_drift_within_tolerance_is_accepted() -> None:
    clock = Clock()
    s = safe_site(clock)
    plc(s, clock.wall + 2.0)
    assert s.safe


def test_reason_logged_once_per_change_and_recovery(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    s = safe_site(clock)
    with caplog.at_level(logging.INFO, logger="nii.edge.safety"):
        for _ in range(4):
            plc(s, clock.wall * 1e3)
        bad = [r for r in caplog.records if "counted stale" in r.getMessage()]
        assert len(bad) == 1 and "interlock/plc" in bad[0].getMessage()
        assert "milliseconds" in bad[0].getMessage()
        report(s, clock)
        clock.advance(0.1)
        assert s.evaluate()
        assert any("plausible again" in r.getMessage() for r in caplog.records)


def test_each_dosimeter_timestamp_is_checked_too() -> None:
    clock = Clock()
    s = safe_site(clock)
    s.report("dose", "zone-a", json.dumps({"usvh": 0.1, "ts": clock.wall * 1e6}).encode())
    assert not s.safe and any("dose/zone-a" in c and "microseconds" in c for c in s.causes)


def test_never_safe_on_a_first_read_with_a_bad_clock() -> None:
    clock = Clock()
    s = make(clock)
    s.link(True)
    report(s, clock, ts=clock.wall + 120.0)
    clock.advance(0.5)
    assert not s.evaluate()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"usvh": 1' + b"0" * 400 + b', "ts": 1750000000}',  # an int beyond any float
        b'{"usvh": NaN, "ts": 1750000000}',
        b"[" * 5000 + b"]" * 5000,  # deeper than the JSON parser recurses
        b'{"kind": "plc", "state": 1' + b"0" * 5000 + b"}",  # longer than int-to-str allows
        b"\xff\xfe",
    ],
)
def test_hostile_payloads_are_unsafe_never_an_exception(payload: bytes) -> None:
    clock = Clock()
    s = safe_site(clock)
    group = "dose" if b"usvh" in payload else "interlock"
    s.report(group, "zone-a" if group == "dose" else "plc", payload)
    assert not s.safe
