"""The ZAP keyring of central's ROUTER never raises (pyzmq's authenticator would stop)."""

from __future__ import annotations

import logging

import pytest

from central._sockets import _Keyring


def test_a_key_that_cannot_be_checked_is_refused_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]

    def allow(z85: str) -> bool:
        raise ConnectionError("the database server is gone")

    ring = _Keyring(allow, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="nii.central"):
        assert ring.callback("*", b"K" * 40) is False
        assert ring.callback("*", b"K" * 40) is False  # within the log window: one line
        now[0] = 100.0
        assert ring.callback("*", b"K" * 40) is False
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "refused until the CIR answers" in lines[0]
    assert ring.failures == 3


def test_the_keyring_answers_as_allow_does() -> None:
    ring = _Keyring(lambda z85: z85.startswith("good"))
    assert ring.callback("*", b"good-key") is True
    assert ring.callback("*", b"bad-key") is False
