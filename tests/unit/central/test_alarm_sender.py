"""Every alarm a person reads names the edge that raised it (hostile enrolled edge review).

An enrolled edge could raise alarms for another edge's scanner; central now
refuses them, and the feed and ``nii cir alarms`` show the sending edge so an
edge-level alarm can be told apart from one of the scanner's own edge.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from central._cir import Cir
from central._feed import format_event
from core.keys import CirKey


def test_feed_alarm_line_names_the_sending_edge() -> None:
    doc = {"kind": "safety_clear", "scanner": "scanner1", "edge": "hostile", "message": "m"}
    assert "scanner1 (edge hostile): m" in format_event(b"alarm", doc)
    assert format_event(b"alarm", {**doc, "edge": ""}).endswith("scanner1: m")


def test_nii_cir_alarms_names_the_sending_edge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nii.__main__ import main

    CirKey.generate().save(tmp_path / "keys")
    (tmp_path / "central.toml").write_text('[central]\nkey = "keys/cir.key"\nstate_dir = "cir"\n')
    cir = Cir(tmp_path / "cir")
    try:
        row = cir.alarm_row("scanner1", "hostile", "safety_clear", "all clear")
        cir.commit([], {}, {}, [row])
    finally:
        cir.close()
    assert main(["cir", "alarms", "--config", str(tmp_path / "central.toml")]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split()[2:5] == ["safety_clear", "scanner1", "hostile"]
