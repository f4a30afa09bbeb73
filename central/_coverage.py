"""Selection coverage (R6): did the scanners scan what the Risk Management System selected?

SOP 2.4 caps the **risk-based** selection of a terminal at 30 % of the manifested
volume of the *previous* period, and SOP 2.4 / 4.2.3 demand that **every**
Afghan Transit Trade (ATT) container is scanned at its port of entry and at its
port or border of exit. The RMS produces the selection list; the CIR knows which
containers were scanned. This module joins the two per terminal and period.

The selection list (JSON, ``format = "nii-rms-selection/1"``; ``docs/coverage.md``
is the reference for RMS integrators)::

    {
      "format": "nii-rms-selection/1",
      "period": "month",                 # month | fiscal | day: what volumes are given for
      "tz": "Asia/Karachi",              # optional; for times without an offset
      "volumes": [                       # manifested containers per terminal and period
        {"terminal": "KICT", "period": "2025-06", "manifested": 1000}
      ],
      "selections": [                    # one per selected container movement
        {"container": "MSCU1234565", "gd": "KAPE-HC-1234-01072025", "terminal": "KICT",
         "tier": "high", "att": false, "direction": "entry",
         "time": "2025-07-01T08:00:00+05:00"}
      ],
      "scanners": {"KICT": ["kict-1"]}   # optional: which scanners serve which terminal
    }

Rules, so the figures can be checked by hand:

* **risk-based** = a selection that is not ATT (tier high, targeted or random);
  ATT containers are scanned under their own 100 % mandate, outside the cap;
* a selection belongs to the period (of the file's kind, in ``tz``) holding its
  ``time``; identical rows (container, GD, terminal, direction, time) count once;
* a selection is **scanned** when the CIR holds a ``complete`` or ``incomplete``
  scan of that container number that started in the selection's window: from
  ``time - tolerance`` to the next selection of the same container (minus the
  tolerance), so an ATT container's exit is not covered by its entry scan. With
  ``scanners`` given for the terminal, only scans by those scanners count.
  Aborted scans (a safety trip) do not count;
* ``selected / previous manifested`` must be ≤ 30 %; ATT coverage at entry and at
  exit must be 100 %. A missing previous volume makes the cap check ``n/a``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from central._sql import Sql, is_postgres_url, is_sql_error
from central._uptime import Period, _zone, period
from core.errors import ConfigError

FORMAT = "nii-rms-selection/1"
TIERS = ("high", "targeted", "random")
DIRECTIONS = ("entry", "exit")
KINDS = ("day", "month", "fiscal")
RISK_CAP = 0.30
#: Scan statuses that count as a scan of the container (``aborted`` does not).
SCANNED_STATUSES = ("complete", "incomplete")
_DOC = "see docs/coverage.md for the selection list format"


@dataclass(frozen=True)
class Selection:
    """One container movement the RMS selected for NII."""

    container: str
    gd: str
    terminal: str
    tier: str
    att: bool
    direction: str
    time: float  # epoch seconds


@dataclass
class SelectionList:
    """The parsed selection list: the period kind, volumes, selections, scanner map."""

    kind: str
    tz: dt.tzinfo
    volumes: dict[tuple[str, str], int]  # (terminal, period label) → manifested containers
    selections: list[Selection]
    scanners: dict[str, list[str]] = field(default_factory=dict)

    def period_of(self, t: float) -> Period:
        """The period of the file's kind holding epoch ``t``."""
        d = dt.datetime.fromtimestamp(t, self.tz).date()
        spec = {"day": d.isoformat(), "month": d.strftime("%Y-%m")}.get(self.kind)
        if spec is None:
            spec = f"FY{d.year if d.month >= 7 else d.year - 1}"
        return period(spec, t, self.tz)

    def previous(self, p: Period) -> Period:
        """The period just before ``p``."""
        return self.period_of(p.start - 1.0)


@dataclass(frozen=True)
class Scan:
    """A scan of a container as the CIR records it."""

    ref: int
    scanner: str
    container: str
    status: str
    started: float  # epoch seconds


@dataclass
class Coverage:
    """Figures for one terminal and one period."""

    terminal: str
    period: str
    manifested: int | None
    prev_period: str
    prev_manifested: int | None
    risk_selected: int = 0
    risk_scanned: int = 0
    by_tier: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    att_selected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    att_scanned: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    att_missing: list[Selection] = field(default_factory=list)

    @property
    def selected_share_prev(self) -> float | None:
        """Risk-based selections over the previous period's manifested volume (cap: 30 %)."""
        if not self.prev_manifested:
            return None
        return self.risk_selected / self.prev_manifested

    @property
    def scanned_share(self) -> float | None:
        """Risk-based scans over this period's manifested volume."""
        if not self.manifested:
            return None
        return self.risk_scanned / self.manifested

    def att_coverage(self, direction: str) -> float | None:
        n = self.att_selected[direction]
        return self.att_scanned[direction] / n if n else None

    @property
    def cap_ok(self) -> bool | None:
        share = self.selected_share_prev
        return None if share is None else share <= RISK_CAP + 1e-12

    @property
    def att_ok(self) -> bool:
        return not self.att_missing

    @property
    def status(self) -> str:
        problems = []
        if self.cap_ok is False:
            problems.append("OVER 30 %")
        if not self.att_ok:
            problems.append("ATT MISSING")
        if problems:
            return ", ".join(problems)
        return "OK" if self.cap_ok else "OK (cap n/a)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "terminal": self.terminal,
            "period": self.period,
            "manifested": self.manifested,
            "prev_period": self.prev_period,
            "prev_manifested": self.prev_manifested,
            "risk_selected": self.risk_selected,
            "risk_selected_by_tier": dict(self.by_tier),
            "risk_scanned": self.risk_scanned,
            "selected_share_of_prev_manifested": self.selected_share_prev,
            "risk_cap": RISK_CAP,
            "cap_ok": self.cap_ok,
            "scanned_share_of_manifested": self.scanned_share,
            "att": {
                d: {
                    "selected": self.att_selected[d],
                    "scanned": self.att_scanned[d],
                    "coverage": self.att_coverage(d),
                }
                for d in DIRECTIONS
            },
            "att_ok": self.att_ok,
            "att_missing": [_sel_dict(s, self.terminal) for s in self.att_missing],
            "status": self.status,
        }


def _sel_dict(s: Selection, _terminal: str = "") -> dict[str, Any]:
    return {
        "container": s.container,
        "gd": s.gd,
        "terminal": s.terminal,
        "direction": s.direction,
        "tier": s.tier,
        "time": dt.datetime.fromtimestamp(s.time, dt.UTC).isoformat(),
    }


# -- reading the selection list ---------------------------------------------------------------
def _bad(path: Path, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"selection list {path}: {where}: {problem}", fix=f"{fix}; {_DOC}")


def normalise_container(value: str) -> str:
    """Container numbers compare without spaces or dashes, in capitals (ISO 6346 style)."""
    return "".join(ch for ch in value.upper() if ch.isalnum())


def load_selection(path: Path) -> SelectionList:
    """Parse and check a selection list; any mistake is one :class:`ConfigError` with a fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"selection list {path} does not exist",
            fix="pass --selection with the RMS export (JSON)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read selection list {path}: {exc}", fix="check the file's permissions"
        ) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"selection list {path} is not valid JSON: line {exc.lineno} column {exc.colno}: "
            f"{exc.msg}",
            fix=f"correct the file or export it again from the RMS; {_DOC}",
        ) from exc
    if not isinstance(doc, dict):
        raise _bad(path, "top level", "must be a JSON object", "wrap the lists in an object")
    if doc.get("format") != FORMAT:
        raise _bad(
            path,
            "format",
            f"is {doc.get('format')!r}, expected {FORMAT!r}",
            f'add "format": "{FORMAT}"',
        )
    kind = doc.get("period", "month")
    if kind not in KINDS:
        raise _bad(path, "period", f"is {kind!r}", f"use one of {', '.join(KINDS)}")
    tz_name = doc.get("tz", "Asia/Karachi")
    if not isinstance(tz_name, str):
        raise _bad(path, "tz", f"is {tz_name!r}", 'write an IANA name, e.g. "Asia/Karachi"')
    tz = _zone(tz_name)
    sl = SelectionList(kind=kind, tz=tz, volumes={}, selections=[])
    for i, v in enumerate(_list(path, doc, "volumes")):
        where = f"volumes[{i}]"
        terminal = _text(path, where, v, "terminal")
        label = _text(path, where, v, "period")
        try:
            p = period(label, 0.0, tz)
        except ConfigError:
            p = None
        if p is None or sl.period_of(p.start).label != p.label or p.label != label:
            example = {"day": "2025-07-14", "month": "2025-07", "fiscal": "FY2025-26"}[kind]
            raise _bad(
                path,
                f"{where}.period",
                f"{label!r} is not a {kind} period",
                f'write it like "{example}", or change the top-level "period"',
            )
        n = v.get("manifested")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _bad(
                path,
                f"{where}.manifested",
                f"must be a whole number of containers ≥ 0, got {n!r}",
                'write e.g. "manifested": 12000',
            )
        if (terminal, label) in sl.volumes:
            raise _bad(path, where, f"{terminal} {label} appears twice", "keep one entry")
        sl.volumes[(terminal, label)] = n
    seen: set[Selection] = set()
    for i, s in enumerate(_list(path, doc, "selections")):
        where = f"selections[{i}]"
        if isinstance(s, dict) and isinstance(s.get("container"), str):
            where += f" (container {s['container']})"
        container = normalise_container(_text(path, where, s, "container"))
        gd = _text(path, where, s, "gd")
        terminal = _text(path, where, s, "terminal")
        tier = _text(path, where, s, "tier")
        if tier not in TIERS:
            raise _bad(path, f"{where}.tier", f"is {tier!r}", f"use one of {', '.join(TIERS)}")
        att = s.get("att")
        if not isinstance(att, bool):
            raise _bad(
                path,
                f"{where}.att",
                f"must be true or false, got {att!r}",
                'write "att": true for Afghan Transit Trade containers, else false',
            )
        direction = _text(path, where, s, "direction")
        if direction not in DIRECTIONS:
            raise _bad(
                path,
                f"{where}.direction",
                f"is {direction!r}",
                "use entry (import, ATT port of entry) or exit (export, ATT border of exit)",
            )
        when = _text(path, where, s, "time")
        try:
            d = dt.datetime.fromisoformat(when)
        except ValueError:
            raise _bad(
                path,
                f"{where}.time",
                f"{when!r} is not an ISO 8601 time",
                'write e.g. "2025-07-01T08:00:00+05:00"',
            ) from None
        t = (d if d.tzinfo else d.replace(tzinfo=tz)).timestamp()
        sel = Selection(container, gd, terminal, tier, att, direction, t)
        if sel not in seen:
            seen.add(sel)
            sl.selections.append(sel)
    scanners = doc.get("scanners", {})
    if not isinstance(scanners, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in scanners.values()
    ):
        raise _bad(
            path,
            "scanners",
            "must map each terminal to a list of scanner ids",
            'write e.g. "scanners": {"KICT": ["kict-1", "kict-2"]}, or leave it out',
        )
    sl.scanners = {str(k): list(v) for k, v in scanners.items()}
    return sl


def _list(path: Path, doc: dict[str, Any], key: str) -> list[Any]:
    val = doc.get(key)
    if not isinstance(val, list):
        raise _bad(
            path,
            key,
            "missing" if val is None else f"must be a list, got {type(val).__name__}",
            f'add "{key}": [...]',
        )
    return val


def _text(path: Path, where: str, obj: Any, key: str) -> str:
    if not isinstance(obj, dict):
        raise _bad(path, where, "must be a JSON object", "write each entry as {...}")
    val = obj.get(key)
    if val is None:
        raise _bad(path, where, f"has no {key!r}", f'add "{key}": "..."')
    if not isinstance(val, str) or not val.strip():
        raise _bad(path, f"{where}.{key}", f"must be a non-empty string, got {val!r}", "quote it")
    return val.strip()


# -- reading the CIR --------------------------------------------------------------------------
def cir_scans(target: Path | str, containers: set[str]) -> dict[str, list[Scan]]:
    """Scans of ``containers`` in the CIR, by container number.

    Args:
        target: the CIR's database: its SQLite file (opened read-only) or a PostgreSQL
            URL (``central._cir.database_target``).
        containers: container numbers as :func:`normalise_container` writes them.

    Raises:
        ConfigError: there is no CIR database at ``target``, or it cannot be read.
    """
    if not is_postgres_url(target) and not Path(target).exists():
        raise ConfigError(
            f"no CIR database at {target}",
            fix="point --config at the central configuration whose state_dir holds cir.sqlite",
        )
    db = Sql(target, read_only=True)
    try:
        rows = db.rows(
            "SELECT ref, scanner, container, status, started_ns FROM scans "
            "WHERE container IS NOT NULL AND container != ''"
        )
    except Exception as exc:
        if not is_sql_error(exc):
            raise
        raise ConfigError(
            f"cannot read the scans of the CIR at {db.location}: {exc}",
            fix="check that it is the CIR's database and readable by this user",
        ) from exc
    finally:
        db.close()
    out: dict[str, list[Scan]] = defaultdict(list)
    for r in rows:
        c = normalise_container(str(r["container"]))
        if c in containers:
            out[c].append(
                Scan(
                    int(r["ref"]),
                    str(r["scanner"]),
                    c,
                    str(r["status"]),
                    int(r["started_ns"] or 0) / 1e9,
                )
            )
    return out


# -- the report -------------------------------------------------------------------------------
def coverage(
    sl: SelectionList,
    scans: dict[str, list[Scan]],
    *,
    tolerance_s: float = 900.0,
    only_period: str | None = None,
) -> list[Coverage]:
    """Figures per terminal and period (see the module docstring for the rules)."""
    by_container: dict[str, list[Selection]] = defaultdict(list)
    for s in sl.selections:
        by_container[s.container].append(s)
    scanned: dict[Selection, bool] = {}
    for container, sels in by_container.items():
        sels.sort(key=lambda s: s.time)
        for i, s in enumerate(sels):
            lo = s.time - tolerance_s
            hi = sels[i + 1].time - tolerance_s if i + 1 < len(sels) else float("inf")
            allowed = sl.scanners.get(s.terminal)
            scanned[s] = any(
                lo <= sc.started < hi
                and sc.status in SCANNED_STATUSES
                and (allowed is None or sc.scanner in allowed)
                for sc in scans.get(container, [])
            )
    rows: dict[tuple[str, str], Coverage] = {}

    def row(terminal: str, p: Period) -> Coverage:
        key = (terminal, p.label)
        if key not in rows:
            prev = sl.previous(p)
            rows[key] = Coverage(
                terminal,
                p.label,
                sl.volumes.get(key),
                prev.label,
                sl.volumes.get((terminal, prev.label)),
            )
        return rows[key]

    for terminal, label in sl.volumes:
        row(terminal, period(label, 0.0, sl.tz))
    for s in sl.selections:
        r = row(s.terminal, sl.period_of(s.time))
        if s.att:
            r.att_selected[s.direction] += 1
            if scanned[s]:
                r.att_scanned[s.direction] += 1
            else:
                r.att_missing.append(s)
        else:
            r.risk_selected += 1
            r.by_tier[s.tier] += 1
            r.risk_scanned += scanned[s]
    out = sorted(rows.values(), key=lambda r: (r.terminal, period(r.period, 0.0, sl.tz).start))
    for r in out:
        r.att_missing.sort(key=lambda s: (s.time, s.container))
    if only_period is not None:
        out = [r for r in out if r.period == only_period]
    return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _num(v: int | None) -> str:
    return "n/a" if v is None else str(v)


def _att(r: Coverage, d: str) -> str:
    n = r.att_selected[d]
    return "—" if n == 0 else f"{r.att_scanned[d]}/{n} {_pct(r.att_coverage(d))}"


def format_table(rows: list[Coverage], tz: dt.tzinfo) -> str:
    """The report as a text table, then every ATT container missing a scan."""
    head = (
        f"{'terminal':<10} {'period':<10} {'manifest':>8} {'prev':>8} {'risk sel':>8} "
        f"{'sel/prev':>8} {'scanned':>7} {'scan/man':>8} {'ATT entry':>14} {'ATT exit':>14}"
        "  status"
    )
    out = [head]
    for r in rows:
        out.append(
            f"{r.terminal:<10} {r.period:<10} {_num(r.manifested):>8} "
            f"{_num(r.prev_manifested):>8} {r.risk_selected:>8} "
            f"{_pct(r.selected_share_prev):>8} {r.risk_scanned:>7} {_pct(r.scanned_share):>8} "
            f"{_att(r, 'entry'):>14} {_att(r, 'exit'):>14}  {r.status}"
        )
    out.append(
        f"cap: risk-based selections ≤ {RISK_CAP:.0%} of the previous period's manifested "
        "volume (SOP 2.4); ATT: 100 % at entry and exit"
    )
    missing = [s for r in rows for s in r.att_missing]
    if missing:
        out.append("")
        out.append(f"ATT containers missing a scan ({len(missing)}):")
        for s in missing:
            when = dt.datetime.fromtimestamp(s.time, tz).strftime("%Y-%m-%d %H:%M")
            out.append(f"  {s.terminal:<10} {s.direction:<5} {s.container:<12} GD {s.gd}  {when}")
    return "\n".join(out)


CSV_FIELDS = (
    "terminal",
    "period",
    "manifested",
    "prev_period",
    "prev_manifested",
    "risk_selected",
    "high",
    "targeted",
    "random",
    "selected_share_of_prev_manifested",
    "risk_scanned",
    "scanned_share_of_manifested",
    "att_entry_selected",
    "att_entry_scanned",
    "att_exit_selected",
    "att_exit_scanned",
    "att_missing",
    "status",
)


def write_csv(rows: list[Coverage], path: Path) -> Path:
    """One line per terminal and period; missing ATT containers go to ``<stem>-att-missing.csv``."""

    def f(v: float | None) -> str:
        return "" if v is None else f"{v:.6f}"

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_FIELDS)
        for r in rows:
            w.writerow(
                [
                    r.terminal,
                    r.period,
                    "" if r.manifested is None else r.manifested,
                    r.prev_period,
                    "" if r.prev_manifested is None else r.prev_manifested,
                    r.risk_selected,
                    *[r.by_tier[t] for t in TIERS],
                    f(r.selected_share_prev),
                    r.risk_scanned,
                    f(r.scanned_share),
                    r.att_selected["entry"],
                    r.att_scanned["entry"],
                    r.att_selected["exit"],
                    r.att_scanned["exit"],
                    len(r.att_missing),
                    r.status,
                ]
            )
    missing_path = path.with_name(f"{path.stem}-att-missing.csv")
    with open(missing_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["terminal", "period", "direction", "container", "gd", "tier", "time"])
        for r in rows:
            for s in r.att_missing:
                d = _sel_dict(s)
                w.writerow(
                    [r.terminal, r.period, s.direction, s.container, s.gd, s.tier, d["time"]]
                )
    return missing_path


def report_json(rows: list[Coverage]) -> str:
    """The report as one JSON document."""
    return json.dumps({"format": "nii-coverage/1", "rows": [r.as_dict() for r in rows]}, indent=1)


__all__ = [
    "FORMAT",
    "RISK_CAP",
    "Coverage",
    "Scan",
    "Selection",
    "SelectionList",
    "cir_scans",
    "coverage",
    "format_table",
    "load_selection",
    "normalise_container",
    "report_json",
    "write_csv",
]
