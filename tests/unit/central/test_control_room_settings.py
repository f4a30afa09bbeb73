"""What the control room says about a wrong setting or parameter: a missing
configuration file names ``nii config control-room``, a ``demo_truth`` that can never
be written is refused and one still missing after a minute is logged, and a statistics
date out of the CIR's range says the range."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from starlette.exceptions import HTTPException

from central.control_room._config import ControlRoomConfig
from central.control_room._planted import MISSING_AFTER_S, Planted
from central.control_room._stats import FIRST_DAY, LAST_DAY, Stats
from core.errors import ConfigError

# -- a missing configuration file ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["control-room", "serve", "--config", "{base}/nope.toml"],
        ["users", "list", "--config", "{base}/nope.toml"],
        ["risk", "token", "list", "--config", "{base}/nope.toml"],
    ],
)
def test_a_missing_control_room_file_suggests_its_own_example(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    from nii.__main__ import main

    assert main([a.format(base=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert f"configuration file {tmp_path}/nope.toml does not exist" in err, err
    assert f"'nii config control-room > {tmp_path}/nope.toml'" in err, err
    assert "nii config central" not in err and "nii config edge" not in err


def test_the_loader_names_the_control_room_example(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as e:
        ControlRoomConfig.load(tmp_path / "my room.toml")
    assert f"'nii config control-room > '{tmp_path}/my room.toml''" in e.value.fix


# -- demo_truth ------------------------------------------------------------------------------


def _room(base: Path, truth: str) -> Path:
    (base / "central.toml").write_text('[central]\nstate_dir = "state"\nkey = "cir.key"\n')
    toml = base / "control-room.toml"
    toml.write_text(f'[control_room]\ncentral = "central.toml"\ndemo_truth = {truth!r}\n')
    return toml


@pytest.mark.parametrize(
    ("truth", "says"),
    [
        ("/nonexistent-folder/truth.jsonl", "does not exist"),
        ("{base}/elsewhere/../../nope-{name}/truth.jsonl", "does not exist"),
        ("central.toml/truth.jsonl", "is a file"),
        (".", "is a folder"),
        ("", "non-empty string"),
    ],
)
def test_a_demo_truth_that_can_never_be_written_is_refused(
    tmp_path: Path, truth: str, says: str
) -> None:
    toml = _room(tmp_path, truth.format(base=tmp_path, name=tmp_path.name))
    with pytest.raises(ConfigError, match=r"\[control_room\] demo_truth") as e:
        ControlRoomConfig.load(toml)
    assert says in e.value.message and e.value.fix


def test_a_demo_truth_the_simulator_will_make_is_taken(tmp_path: Path) -> None:
    # the file not there yet (the simulator makes it), nor its folder under the
    # configuration's (nii demo's "sim/truth.jsonl" before its simulator started)
    for truth in ("truth.jsonl", "sim/truth.jsonl", str(tmp_path / "truth.jsonl")):
        cfg = ControlRoomConfig.load(_room(tmp_path, truth))
        assert cfg.demo_truth is not None and cfg.demo_truth.name == "truth.jsonl"


def test_a_truth_log_still_missing_after_a_minute_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    caplog.set_level(logging.WARNING, logger="nii.control_room")
    p = Planted(tmp_path / "truth.jsonl", clock=lambda: now[0])
    assert p.of("scanner1", 1, None) is None
    now[0] += MISSING_AFTER_S - 1
    assert p.of("scanner1", 1, None) is None
    assert not caplog.records  # the simulator's first scan may not have started yet
    now[0] += 2
    for _ in range(3):
        assert p.of("scanner1", 1, None) is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "truth.jsonl" in said[0] and "--truth-log" in said[0], said
    # once it was there, its absence is a rotation, not a wrong path: nothing more said
    found = Planted(tmp_path / "late.jsonl", clock=lambda: now[0])
    (tmp_path / "late.jsonl").write_text('{"scanner": "scanner1", "scan_id": 1}\n')
    assert found.of("scanner1", 1, None) == {"scanner": "scanner1", "scan_id": 1}
    (tmp_path / "late.jsonl").unlink()
    now[0] += 10 * MISSING_AFTER_S
    found.of("scanner1", 2, None)
    assert len(caplog.records) == 1


# -- the statistics' dates ----------------------------------------------------------------------


def _stats() -> Stats:
    s = Stats.__new__(Stats)
    s.tz = ZoneInfo("Asia/Karachi")
    return s


@pytest.mark.parametrize(
    "raw",
    ["9999-12-31", "2262-01-01", "1969-12-31", "0001-01-01", "9999-12-31T23:59:59",
     "2300-01-01T00:00:00+00:00", "0001-01-01T00:00:00+14:00", "1969-12-31T18:00:00+00:00"],
)  # fmt: skip
def test_a_date_outside_the_cirs_range_says_the_range(raw: str) -> None:
    with pytest.raises(HTTPException) as e:
        _stats()._instant("until", raw, end=True)
    assert e.value.status_code == 400
    assert e.value.detail == (
        f"until must be from {FIRST_DAY} to {LAST_DAY} (the CIR's time range), got {raw!r}"
    )


def test_the_first_and_last_days_are_taken() -> None:
    s, tz = _stats(), ZoneInfo("Asia/Karachi")
    assert s._instant("since", "1970-01-01", end=False) == dt.datetime(1970, 1, 1, tzinfo=tz)
    last = s._instant("until", LAST_DAY.isoformat(), end=True)
    assert last == dt.datetime(2262, 1, 1, tzinfo=tz)
    assert (last - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds() * 1e9 < 2**63
    assert s._instant("until", "2026-11-01T10:00:00", end=True).hour == 10
    with pytest.raises(HTTPException, match="must be a date"):
        s._instant("since", "2026-13-01", end=False)
