"""core.clock.implausible: one rule for every device timestamp."""

from __future__ import annotations

import pytest

from core.clock import AHEAD_S, BEHIND_S, implausible

NOW = 1_790_000_000.0


@pytest.mark.parametrize("ts", [NOW, NOW - 10, NOW + AHEAD_S - 0.1, NOW - BEHIND_S + 1, int(NOW)])
def test_plausible_times_pass(ts: float) -> None:
    assert implausible(ts, NOW) is None


@pytest.mark.parametrize(
    ("ts", "words"),
    [
        (NOW * 1e3, "milliseconds"),
        (NOW * 1e6, "microseconds"),
        (NOW * 1e9, "nanoseconds"),
        (NOW + 60, "ahead"),
        (0.0, "in the past"),
        (float("inf"), "not finite"),
        (float("nan"), "not finite"),
        (10**400, "too large"),
        ("1790000000", "not a number"),
        (True, "not a number"),
        (None, "not a number"),
    ],
)
def test_implausible_times_say_why(ts: object, words: str) -> None:
    reason = implausible(ts, NOW)  # type: ignore[arg-type]
    assert reason is not None and words in reason
