"""Selection coverage (R6): an RMS list and a CIR with known scans give exact figures.

Two terminals, June and July 2025 (Asia/Karachi, UTC+5): the port KICT (entry)
and the border TORKHAM (exit). The scans exercise every rule: an aborted scan,
a scan an hour before the selection (too early) and one ten minutes before
(within the tolerance), an ATT container whose entry scan must not cover its
exit, a scan by another terminal's scanner, a selection at 23:30 on 30 June
local time (June, although it is still 30 June in UTC either way), a duplicate row.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from central import Cir, database_target
from central._coverage import (
    Scan,
    SelectionList,
    cir_scans,
    coverage,
    format_table,
    load_selection,
)
from core.config import CentralConfig
from core.errors import ConfigError
from nii.__main__ import main

PKT = dt.timezone(dt.timedelta(hours=5))


def t(day: str, hhmm: str) -> str:
    return f"2025-{day}T{hhmm}:00+05:00"


def ns(day: str, hhmm: str) -> int:
    return int(dt.datetime.fromisoformat(t(day, hhmm)).timestamp()) * 10**9


def sel(container: str, terminal: str, tier: str, when: str, **kw: Any) -> dict[str, Any]:
    return {
        "container": container,
        "gd": f"GD-{container}",
        "terminal": terminal,
        "tier": tier,
        "att": kw.get("att", False),
        "direction": kw.get("direction", "entry"),
        "time": when,
    }


SELECTION: dict[str, Any] = {
    "format": "nii-rms-selection/1",
    "period": "month",
    "tz": "Asia/Karachi",
    "volumes": [
        {"terminal": "KICT", "period": "2025-06", "manifested": 100},
        {"terminal": "KICT", "period": "2025-07", "manifested": 120},
        {"terminal": "TORKHAM", "period": "2025-06", "manifested": 20},
        {"terminal": "TORKHAM", "period": "2025-07", "manifested": 10},
    ],
    "scanners": {"KICT": ["kict-1"], "TORKHAM": ["torkham-1"]},
    "selections": [
        # KICT, July, risk-based: 6 distinct (one duplicate row), 3 scanned
        sel("RISK0000001", "KICT", "high", t("07-01", "08:00")),
        sel("RISK0000001", "KICT", "high", t("07-01", "08:00")),  # duplicate row
        sel("RISK0000002", "KICT", "targeted", t("07-01", "09:00")),
        sel("RISK0000003", "KICT", "random", t("07-01", "10:00")),  # aborted scan only
        sel("RISK0000004", "KICT", "high", t("07-01", "11:00")),  # never scanned
        sel("RISK0000005", "KICT", "targeted", t("07-01", "12:00")),  # scanned 1 h before
        sel("risk 000000-6", "KICT", "random", t("07-01", "13:00")),  # 10 min before; spelling
        # TORKHAM, July: 7 risk-based, none scanned: 7 / 20 = 35 % > 30 %
        *[sel(f"TORK000000{i}", "TORKHAM", "targeted", t("07-02", "08:00")) for i in range(7)],
        # ATT
        sel("ATTU0000001", "KICT", "high", t("07-02", "08:00"), att=True),
        sel("ATTU0000001", "TORKHAM", "high", t("07-05", "10:00"), att=True, direction="exit"),
        sel("ATTU0000002", "KICT", "high", t("07-03", "08:00"), att=True),
        sel("ATTU0000002", "TORKHAM", "high", t("07-06", "10:00"), att=True, direction="exit"),
        sel("ATTU0000003", "KICT", "high", t("07-04", "08:00"), att=True),
        sel("ATTU0000003", "TORKHAM", "high", t("07-07", "10:00"), att=True, direction="exit"),
        sel("ATTU0000004", "KICT", "high", t("06-30", "23:30"), att=True),
        sel("ATTU0000005", "TORKHAM", "high", t("07-08", "10:00"), att=True, direction="exit"),
    ],
}

SCANS = [
    # (scanner, container, status, started_ns)
    ("kict-1", "RISK0000001", "complete", ns("07-01", "08:20")),
    ("kict-1", "RISK0000002", "incomplete", ns("07-01", "09:20")),
    ("kict-1", "RISK0000003", "aborted", ns("07-01", "10:20")),
    ("kict-1", "RISK0000005", "complete", ns("07-01", "11:00")),
    ("kict-1", "RISK0000006", "complete", ns("07-01", "12:50")),
    ("kict-1", "ATTU0000001", "complete", ns("07-02", "08:05")),
    ("torkham-1", "ATTU0000001", "complete", ns("07-05", "10:02")),
    ("kict-1", "ATTU0000002", "complete", ns("07-03", "08:05")),
    ("torkham-1", "ATTU0000003", "complete", ns("07-07", "10:30")),
    ("kict-1", "ATTU0000004", "complete", ns("06-30", "23:40")),
    ("kict-1", "ATTU0000005", "complete", ns("07-08", "10:30")),  # wrong terminal's scanner
]


@pytest.fixture(params=["sqlite", "postgresql"])
def site(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """A central.toml whose CIR holds ``SCANS`` (on SQLite or on PostgreSQL), and the
    selection list beside it."""
    database = "" if request.param == "sqlite" else str(request.getfixturevalue("pg_database"))
    cir = Cir(tmp_path / "cir", database=database)
    try:
        cir.wsql.insert(
            "scans",
            [
                {
                    "ref": ref,
                    "scanner": scanner,
                    "scan_id": ref,
                    "container": container,
                    "status": status,
                    "started_ns": started,
                }
                for ref, (scanner, container, status, started) in enumerate(SCANS, 1)
            ],
        )
    finally:
        cir.close()
    conf = tmp_path / "central.toml"
    conf.write_text(
        '[central]\nstate_dir = "cir"\nkey = "keys/cir.key"\n'
        + (f'cir = "{database}"\n' if database else "")
    )
    path = tmp_path / "rms.json"
    path.write_text(json.dumps(SELECTION))
    return conf, path


def site_scans(conf: Path, sl: SelectionList) -> dict[str, list[Scan]]:
    cfg = CentralConfig.load(conf)
    return cir_scans(database_target(cfg.state_dir, cfg.cir), {s.container for s in sl.selections})


def rows(site: tuple[Path, Path]) -> dict[tuple[str, str], Any]:
    conf, path = site
    sl = load_selection(path)
    return {(r.terminal, r.period): r for r in coverage(sl, site_scans(conf, sl))}


def test_exact_figures(site: tuple[Path, Path]) -> None:
    r = rows(site)
    assert list(r) == [
        ("KICT", "2025-06"),
        ("KICT", "2025-07"),
        ("TORKHAM", "2025-06"),
        ("TORKHAM", "2025-07"),
    ]
    k7 = r[("KICT", "2025-07")]
    assert (k7.manifested, k7.prev_period, k7.prev_manifested) == (120, "2025-06", 100)
    assert k7.risk_selected == 6
    assert k7.by_tier == {"high": 2, "targeted": 2, "random": 2}
    assert k7.risk_scanned == 3  # 1 (complete), 2 (incomplete), 6 (10 min early)
    assert k7.selected_share_prev == pytest.approx(0.06)
    assert k7.scanned_share == pytest.approx(0.025)
    assert k7.cap_ok is True
    assert (k7.att_selected, k7.att_scanned) == ({"entry": 3, "exit": 0}, {"entry": 2, "exit": 0})
    assert [s.container for s in k7.att_missing] == ["ATTU0000003"]
    assert k7.status == "ATT MISSING"

    t7 = r[("TORKHAM", "2025-07")]
    assert (t7.risk_selected, t7.risk_scanned) == (7, 0)
    assert t7.selected_share_prev == pytest.approx(0.35)
    assert t7.scanned_share == 0.0
    assert t7.cap_ok is False
    assert (t7.att_selected["exit"], t7.att_scanned["exit"]) == (4, 2)
    assert t7.att_coverage("exit") == pytest.approx(0.5)
    assert [s.container for s in t7.att_missing] == ["ATTU0000002", "ATTU0000005"]
    assert t7.status == "OVER 30 %, ATT MISSING"

    k6 = r[("KICT", "2025-06")]  # 23:30 on 30 June in Karachi is June
    assert (k6.manifested, k6.prev_manifested, k6.selected_share_prev) == (100, None, None)
    assert (k6.att_selected["entry"], k6.att_scanned["entry"]) == (1, 1)
    assert k6.status == "OK (cap n/a)"
    assert r[("TORKHAM", "2025-06")].risk_selected == 0


def test_tolerance_and_period_filter(site: tuple[Path, Path]) -> None:
    conf, path = site
    sl = load_selection(path)
    scans = site_scans(conf, sl)
    strict = coverage(sl, scans, tolerance_s=0.0, only_period="2025-07")
    assert [(r.terminal, r.period) for r in strict] == [("KICT", "2025-07"), ("TORKHAM", "2025-07")]
    assert strict[0].risk_scanned == 2  # the scan 10 min early no longer counts
    loose = coverage(sl, scans, tolerance_s=2 * 3600.0, only_period="2025-07")
    assert loose[0].risk_scanned == 4  # now the scan 1 h early counts too


def test_cap_boundary_is_inclusive(tmp_path: Path) -> None:
    doc = {
        "format": "nii-rms-selection/1",
        "volumes": [{"terminal": "T", "period": "2025-06", "manifested": 10}],
        "selections": [sel(f"C{i}", "T", "random", t("07-01", "08:00")) for i in range(3)],
    }
    path = tmp_path / "rms.json"
    path.write_text(json.dumps(doc))
    (r,) = [x for x in coverage(load_selection(path), {}) if x.period == "2025-07"]
    assert r.selected_share_prev == pytest.approx(0.3)
    assert r.cap_ok is True
    assert r.manifested is None and r.scanned_share is None


def test_cli_table_json_csv(site: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    conf, path = site
    out_csv = conf.parent / "out" / "coverage.csv"
    args = ["coverage", "report", "--config", str(conf), "--selection", str(path)]
    assert main([*args, "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "OVER 30 %, ATT MISSING" in text
    assert "ATT containers missing a scan (3):" in text
    assert "TORKHAM    exit  ATTU0000005  GD GD-ATTU0000005  2025-07-08 10:00" in text
    with open(out_csv) as f:
        table = list(csv.DictReader(f))
    k7 = next(x for x in table if x["terminal"] == "KICT" and x["period"] == "2025-07")
    assert k7["risk_selected"] == "6" and k7["selected_share_of_prev_manifested"] == "0.060000"
    with open(out_csv.with_name("coverage-att-missing.csv")) as f:
        missing = list(csv.DictReader(f))
    assert [(m["container"], m["direction"]) for m in missing] == [
        ("ATTU0000003", "entry"),
        ("ATTU0000002", "exit"),
        ("ATTU0000005", "exit"),
    ]
    assert main([*args, "--json", "--period", "2025-07"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["terminal"] for r in doc["rows"]] == ["KICT", "TORKHAM"]
    assert doc["rows"][1]["att"]["exit"] == {"selected": 4, "scanned": 2, "coverage": 0.5}
    assert doc["rows"][1]["cap_ok"] is False


def test_format_table_lists_nothing_missing_when_complete(tmp_path: Path) -> None:
    path = tmp_path / "rms.json"
    path.write_text(json.dumps({"format": "nii-rms-selection/1", "volumes": [], "selections": []}))
    sl = load_selection(path)
    assert "missing" not in format_table(coverage(sl, {}), sl.tz)


@pytest.mark.parametrize(
    ("mutate", "message", "fix"),
    [
        (lambda d: "{not json", "is not valid JSON: line 1 column 2", "export it again"),
        (lambda d: [], "top level: must be a JSON object", "wrap the lists"),
        (lambda d: {**d, "format": "v0"}, "format: is 'v0'", '"format": "nii-rms-selection/1"'),
        (lambda d: {**d, "period": "week"}, "period: is 'week'", "day, month, fiscal"),
        (lambda d: {k: v for k, v in d.items() if k != "volumes"}, "volumes: missing", "add"),
        (
            lambda d: {
                **d,
                "volumes": [{"terminal": "K", "period": "2025-07-01", "manifested": 1}],
            },
            "volumes[0].period: '2025-07-01' is not a month period",
            '"2025-07"',
        ),
        (
            lambda d: {**d, "volumes": [{"terminal": "K", "period": "2025-07", "manifested": -1}]},
            "volumes[0].manifested: must be a whole number",
            '"manifested": 12000',
        ),
        (
            lambda d: {**d, "selections": [{**d["selections"][0], "tier": None}]},
            "selections[0] (container RISK0000001): has no 'tier'",
            'add "tier"',
        ),
        (
            lambda d: {**d, "selections": [{**d["selections"][0], "tier": "urgent"}]},
            "selections[0] (container RISK0000001).tier: is 'urgent'",
            "high, targeted, random",
        ),
        (
            lambda d: {**d, "selections": [{**d["selections"][0], "att": "yes"}]},
            ".att: must be true or false",
            "Afghan Transit Trade",
        ),
        (
            lambda d: {**d, "selections": [{**d["selections"][0], "direction": "in"}]},
            ".direction: is 'in'",
            "entry",
        ),
        (
            lambda d: {**d, "selections": [{**d["selections"][0], "time": "1 July"}]},
            ".time: '1 July' is not an ISO 8601 time",
            "2025-07-01T08:00:00+05:00",
        ),
        (lambda d: {**d, "scanners": {"K": "k1"}}, "scanners: must map", '"scanners"'),
    ],
)
def test_errors_name_the_problem_and_the_fix(
    tmp_path: Path, mutate: Any, message: str, fix: str
) -> None:
    doc = mutate(json.loads(json.dumps(SELECTION)))
    path = tmp_path / "rms.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(ConfigError) as e:
        load_selection(path)
    assert message in e.value.message
    assert fix in e.value.fix
    assert "docs/coverage.md" in e.value.fix


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "central.toml"
    conf.write_text('[central]\nstate_dir = "cir"\nkey = "keys/cir.key"\n')
    (tmp_path / "rms.json").write_text("[1,")
    rc = main(["coverage", "report", "--config", str(conf), "--selection", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and "fix: pass --selection" in err
    rc = main(
        ["coverage", "report", "--config", str(conf), "--selection", str(tmp_path / "rms.json")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "is not valid JSON" in err and "fix:" in err
    (tmp_path / "rms.json").write_text(json.dumps(SELECTION))
    rc = main(
        ["coverage", "report", "--config", str(conf), "--selection", str(tmp_path / "rms.json")]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "no CIR database" in err
