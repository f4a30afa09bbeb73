"""The customs Risk Management System's API (R6, R8, R9, R12; issue 16, item 5).

The RMS is a machine client of the control room, authenticated by a bearer token
(``[risk_system] tokens``: a file of ``NAME SHA256HEX`` lines that ``nii risk token
add NAME`` appends to). It

* **submits Goods Declarations with their selection** (``POST /api/risk/v1/gds``):
  per GD its number, version (1, then each amendment), declarant, containers (ISO
  6346 numbers, check digit checked), goods items (HS code, description, weights, as
  the ATR's GD model checks them), the selection tier and channel, and the ATT flag.
  A version is stored once and kept (``risk_gds``, append-only); the same version
  sent again is ``unchanged``, a different document under a stored version is a 409,
  and so is a version that skips one (customs amendments are numbered one after
  another: version 1, then 2, …; a gap means an amendment the CIR never got);
* **receives what happened** as an ordered list of events: ``GET
  /api/risk/v1/events?after=CURSOR&limit=N`` (polling), or POSTed to ``[risk_system]
  webhook`` in the same order, each POST signed (HMAC-SHA256 over the body) — ATR
  verdicts, officers' decisions (local, override, adjudication; a Red one is a
  Physical Examination Mandate), ATT results and HOLDs, HOLD releases;
* **looks up** what the CIR holds for a GD (``GET /api/risk/v1/gds/{gd_number}``) or a
  container (``GET /api/risk/v1/scans?gd=&container=``).

The events come from the CIR's ``risk_events`` outbox (schema step 10), which
triggers fill in the same transaction as each verdict, ATT result and decision: its
id is the cursor, and ids are handed out in commit order on both engines, so a
poller that asks for the events after the last cursor it got never misses one and
never gets one twice. The webhook delivers at least once: its cursor is written to
the CIR (``risk_webhook``) only after the RMS answered 2xx, so after a crash or a
restart the last batch may come again; receivers drop events whose ``id`` they have
(``central.control_room._risk_webhook``; docs/risk-api.md, decision 0021). The
documents and the OpenAPI document are in ``central.control_room._risk_models``.

Every operation takes only its own query parameters, each at most once (any other is
a 400 that changes nothing). Every call is written to the audit log as ``risk:NAME``
(role ``risk``); an event poll that returns nothing at most once a minute per client.
TIP projections never reach the RMS: verdicts are the ATR's own, and a projection
never becomes a decision.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from central._coverage import normalise_container
from central._sql import Sql
from central.control_room._accounts import PerMinute, User
from central.control_room._decisions import canonical
from central.control_room._http import read_capped
from central.control_room._risk_models import (
    API,
    EVENTS_MAX,
    GD_NUMBER,
    MAX_BODY,
    SCANS_MAX,
    EventOut,
    EventsOut,
    EventsQuery,
    GdIn,
    GdOut,
    ScansOut,
    ScansQuery,
    SubmitIn,
    SubmitOut,
    openapi,
)
from core.errors import ConfigError

if TYPE_CHECKING:
    from central.control_room._app import ControlRoomApp

log = logging.getLogger("nii.control_room.risk")

__all__ = [
    "API",
    "EVENTS_MAX",
    "EVENT_TYPES",
    "MAX_BODY",
    "TokenFile",
    "events_after",
    "last_cursor",
    "openapi",
    "routes",
    "selection_for",
    "store_gds",
]

#: A GD found by container number is one received before the scan started or at most
#: this long after (s): the RMS selects before the truck reaches the scanner, and may
#: send the list late by a few hours; a GD received later is a later shipment in the
#: same container (containers are reused).
SELECTION_LATE_S = 6 * 3600.0
#: ... and at most this long before it (s): an import container waits days at the port,
#: an ATT container's exit scan at the border comes days to weeks after its entry scan;
#: a scan later than that is of another shipment in the same container.
SELECTION_EARLY_S = 45 * 86400.0
#: How often an event poll that found nothing is written to the audit log, per client (s).
EMPTY_POLL_AUDIT_S = 60.0
#: refusals of calls without a valid token written to the audit log per client and
#: minute; the rest are counted, and the count written once the minute is over
UNKNOWN_AUDIT_PER_MIN = 20
#: the clock of those minutes (monotonic seconds)
_clock = time.monotonic
#: What a token looks like: a prefix that secret scanners and people recognise, then
#: 256 random bits (``secrets.token_urlsafe(32)``).
TOKEN_PREFIX = "nii_rms_"
_TOKEN_NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

EVENT_TYPES = ("atr.verdict", "decision", "att.result", "att.hold", "att.released")

# -- tokens ----------------------------------------------------------------------------


class TokenFile:
    """The RMS's API tokens: a text file of ``NAME SHA256HEX`` lines (``#`` comments).

    Only the SHA-256 of each token is kept, so the file lets no one in. It is read
    again when it changes, so a token added or revoked counts from the next request.
    A file that does not exist holds no token: :meth:`names` is [] (``nii risk token
    list``), :meth:`add` makes it, and :meth:`check` refuses to say (a ConfigError: the
    API answers 503, since a missing file is a setup mistake, not a revoked token).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[tuple[str, bytes]] = []

    def _load(self, *, missing_ok: bool = True) -> list[tuple[str, bytes]]:
        """The entries, read again if the file changed; [] when there is no file and
        ``missing_ok``.

        Raises:
            ConfigError: the file is missing (unless ``missing_ok``) or cannot be read,
                or a line is not ``NAME SHA256HEX``.
        """
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._entries = None, []
            if missing_ok:
                return []
            raise ConfigError(
                f"the risk-system tokens file {self.path} does not exist: no token is valid",
                fix="make it with a token for the RMS: nii risk token add NAME --config "
                "control-room.toml (or correct [risk_system] tokens)",
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"cannot read the risk-system tokens {self.path}: {exc}",
                fix="check the file's permissions ([risk_system] tokens)",
            ) from exc
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            self._entries = self._parse()
            self._stamp = stamp
        return self._entries

    def _parse(self) -> list[tuple[str, bytes]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read the risk-system tokens {self.path}: {exc}",
                fix="check the file's permissions ([risk_system] tokens)",
            ) from exc
        out: list[tuple[str, bytes]] = []
        for no, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or not _TOKEN_NAME.match(parts[0]) or not _HEX64.match(parts[1]):
                raise ConfigError(
                    f"{self.path}:{no}: not a 'NAME SHA256HEX' line",
                    fix="remove the line, and add tokens with nii risk token add NAME",
                )
            out.append((parts[0], bytes.fromhex(parts[1])))
        return out

    def check(self, token: str) -> str | None:
        """The name of ``token``, or None when no line holds its SHA-256. Every line is
        compared, in constant time each (``hmac.compare_digest``).

        Raises:
            ConfigError: the file is missing or unreadable, or has a bad line.
        """
        entries = self._load(missing_ok=False)
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for name, h in entries:
            if hmac.compare_digest(digest, h) and found is None:
                found = name
        return found

    def names(self) -> list[str]:
        """The names of the tokens, in the file's order (a name may have several).

        Raises:
            ConfigError: the file is unreadable or has a bad line.
        """
        return [n for n, _ in self._load()]

    def add(self, name: str) -> str:
        """A new random token for ``name``: its SHA-256 is appended to the file (made,
        mode 0600, if missing); the token itself is returned, and kept nowhere.

        Raises:
            ConfigError: ``name`` is not a plain name, or the file cannot be written or
                has a bad line.
        """
        if not _TOKEN_NAME.match(name):
            raise ConfigError(
                f"{name!r} is not a token name",
                fix="use 2 to 32 characters: lower-case letters, digits, '.', '_' and '-', "
                "starting with a letter (e.g. weboc-rms)",
            )
        self._load()  # refuse to append to a file with bad lines
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        line = f"{name} {hashlib.sha256(token.encode()).hexdigest()}\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise ConfigError(
                f"cannot write the risk-system tokens {self.path}: {exc}",
                fix="check that its folder exists and is writable",
            ) from exc
        return token

    def revoke(self, name: str) -> int:
        """Remove every token of ``name``; how many there were. The file is replaced
        whole (written beside it, then renamed), so a reader never sees half of it.

        Raises:
            ConfigError: the file cannot be read or written, or has a bad line.
        """
        entries = self._load()
        gone = sum(1 for n, _ in entries if n == name)
        if not gone:
            return 0
        keep = "".join(f"{n} {h.hex()}\n" for n, h in entries if n != name)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(keep)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            raise ConfigError(
                f"cannot write the risk-system tokens {self.path}: {exc}",
                fix="check that its folder is writable",
            ) from exc
        return gone


# -- storing GDs -------------------------------------------------------------------------


class Refused(Exception):
    """A request the API answers with an error: ``status`` (HTTP, 4xx or 503),
    ``message`` (the ``{"error"}`` text) and extra ``headers``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


def _gd_doc(gd: GdIn) -> dict[str, Any]:
    return gd.model_dump(mode="json")


def store_gds(db: Sql, gds: Sequence[GdIn], *, client: str, now_ns: int) -> list[dict[str, Any]]:
    """Store each GD version that is not stored yet, all in one transaction.

    Args:
        db: a connection to the CIR's database (schema step 10).
        gds: validated GDs, each (gd_number, version) once.
        client: who sent them (``risk:NAME``), kept with each row.
        now_ns: the time they were received, ns since the epoch.

    Returns:
        Per GD, in order: ``{"gd_number", "version", "status": "stored" | "unchanged",
        "received_ns"}`` (``unchanged``: that version was stored before with the same
        document; its first ``received_ns``).

    Raises:
        Refused: 409 when a version is stored with another document, or when a version
            skips one: version ``n`` is taken when it is 1 or version ``n - 1`` is
            stored or in the same submission (nothing of the submission is stored then).
    """
    out: list[dict[str, Any]] = []
    with db.transaction():
        top = _check_sequence(db, gds)
        for gd in gds:
            doc = _gd_doc(gd)
            text = canonical(doc).decode()
            digest = hashlib.sha256(text.encode()).hexdigest()
            gid = db.value(
                "INSERT INTO risk_gds (gd_number, version, received_ns, client, tier, channel, "
                "att, sha256, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (gd_number, version) DO NOTHING RETURNING id",
                [
                    gd.gd_number,
                    gd.version,
                    now_ns,
                    client,
                    gd.selection.tier,
                    gd.selection.channel,
                    int(gd.att),
                    digest,
                    text,
                ],
            )
            if gid is not None:
                db.insert(
                    "risk_gd_containers",
                    [
                        {"gd": int(gid), "container": c.number, "received_ns": now_ns}
                        for c in gd.containers
                    ],
                )
                out.append(
                    {
                        "gd_number": gd.gd_number,
                        "version": gd.version,
                        "status": "stored",
                        "received_ns": now_ns,
                    }
                )
                continue
            have = db.one(
                "SELECT sha256, received_ns FROM risk_gds WHERE gd_number = ? AND version = ?",
                [gd.gd_number, gd.version],
            )
            assert have is not None
            if have["sha256"] != digest:
                raise Refused(
                    409,
                    f"GD {gd.gd_number} version {gd.version} was received before with "
                    "another content; nothing of this submission was stored (an amendment "
                    f"is the next version: {top[gd.gd_number] + 1})",
                )
            first = int(have["received_ns"])
            out.append(
                {
                    "gd_number": gd.gd_number,
                    "version": gd.version,
                    "status": "unchanged",
                    "received_ns": first,
                }
            )
    return out


def _check_sequence(db: Sql, gds: Sequence[GdIn]) -> dict[str, int]:
    """The highest version of each GD number once ``gds`` are stored.

    Raises:
        Refused: 409 when a version of ``gds`` skips one (neither 1, nor one more than
            a version stored or given before it in ``gds``, in version order).
    """
    numbers = sorted({g.gd_number for g in gds})
    top = {n: 0 for n in numbers}
    for row in db.rows(
        "SELECT gd_number, MAX(version) AS v FROM risk_gds "
        f"WHERE gd_number IN ({_in(len(numbers))}) GROUP BY gd_number",
        numbers,
    ):
        top[str(row["gd_number"])] = int(row["v"])
    for g in sorted(gds, key=lambda g: (g.gd_number, g.version)):
        have = top[g.gd_number]
        if g.version > have + 1:
            holds = f"versions 1 to {have}" if have else "no version of it"
            raise Refused(
                409,
                f"GD {g.gd_number} version {g.version} skips a version: the next one is "
                f"version {have + 1} (the CIR holds {holds}); send the versions in "
                "between first, or in the same submission; nothing of this submission "
                "was stored",
            )
        top[g.gd_number] = max(have, g.version)
    return top


# -- reading events -----------------------------------------------------------------------


def _in(n: int) -> str:
    return ", ".join("?" for _ in range(n))


def _decision_out(row: Mapping[str, Any]) -> dict[str, Any]:
    doc = json.loads(row["doc"])
    return {
        "id": int(row["id"]),
        "kind": row["kind"],
        "verdict": row["verdict"],
        "mandate": row["verdict"] == "red",
        "by": row["name"],
        "role": row["role"],
        "created_ns": int(row["created_ns"]),
        "reason": row["reason"],
        "corrects": None if row["corrects"] is None else int(row["corrects"]),
        "doc": doc if isinstance(doc, dict) else {},
        "signature": row["signature"],
        "key_id": row["key_id"],
    }


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _att_out(doc: Mapping[str, Any], ref_b: int, *, held: bool | None = None) -> dict[str, Any]:
    ref_a = doc.get("ref_a")
    return {
        "ref_a": ref_a if isinstance(ref_a, int) and not isinstance(ref_a, bool) else None,
        "ref_b": int(ref_b),
        "result": str(doc.get("result", "")),
        "hold": bool(doc.get("hold")),
        "status": _opt_str(doc.get("status")),
        "reason": _opt_str(doc.get("reason")),
        "seal_a": _opt_str(doc.get("seal_a")),
        "seal_b": _opt_str(doc.get("seal_b")),
        "held": held,
    }


def _verdict_level(v: Any) -> str:
    return v if v in ("green", "yellow", "red") else "none"


def events_after(db: Sql, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The events after cursor ``after``, oldest first, at most ``limit``.

    Args:
        db: a connection to the CIR's database (schema step 10).
        after: the last cursor the reader has (0: from the first event).
        limit: the most events to return (1 or more).

    Returns:
        The events (:class:`~central.control_room._risk_models.EventOut` as JSON-ready
        dicts: what a poll answers and the webhook POSTs) and whether more follow.
    """
    rows = db.rows(
        "SELECT id, source, ref, source_id, created_ns, result, n, doc FROM risk_events "
        "WHERE id > ? ORDER BY id LIMIT ?",
        [int(after), int(limit) + 1],
    )
    more = len(rows) > limit
    rows = rows[:limit]
    refs = sorted({int(r["ref"]) for r in rows})
    scans = {
        int(s["ref"]): s
        for s in (
            db.rows(
                "SELECT ref, scanner, scan_id, container, gd_number FROM scans "
                f"WHERE ref IN ({_in(len(refs))})",
                refs,
            )
            if refs
            else []
        )
    }
    ids = [int(r["source_id"]) for r in rows if r["source"] == "decision"]
    decided = {
        int(d["id"]): d
        for d in (
            db.rows(f"SELECT * FROM decisions WHERE id IN ({_in(len(ids))})", ids) if ids else []
        )
    }
    out = []
    for r in rows:
        ref, src, sid, ns = int(r["ref"]), str(r["source"]), int(r["source_id"]), r["created_ns"]
        scan = scans.get(ref, {})
        ev: dict[str, Any] = {
            "cursor": int(r["id"]),
            "ref": ref,
            "scanner": scan.get("scanner"),
            "scan_id": scan.get("scan_id"),
            "container": scan.get("container"),
            "gd_number": scan.get("gd_number"),
            "created_ns": int(ns),
        }
        if src == "verdict":
            ev.update(id=f"verdict-{ref}-{ns}", type="atr.verdict")
            ev["verdict"] = {"verdict": _verdict_level(r["result"]), "findings": int(r["n"] or 0)}
        elif src == "att":
            try:
                doc = json.loads(r["doc"] or "{}")
            except ValueError:
                doc = {}
            doc = doc if isinstance(doc, dict) else {}
            doc.setdefault("result", r["result"])
            doc["hold"] = bool(r["n"])
            ev.update(id=f"att-{ref}-{ns}", type="att.hold" if r["n"] else "att.result")
            ev["att"] = _att_out(doc, ref)
        elif src == "decision":
            d = decided.get(sid)
            if d is None:  # pragma: no cover - decisions are never deleted (triggers)
                log.error("risk event %s names decision %s, which is not there", r["id"], sid)
                continue
            ev.update(
                id=f"decision-{sid}", type="att.released" if d["kind"] == "release" else "decision"
            )
            ev["decision"] = _decision_out(d)
        else:  # pragma: no cover - the triggers write these three only
            continue
        out.append(EventOut.model_validate(ev).model_dump(mode="json"))
    return out, more


def last_cursor(db: Sql) -> int:
    """The cursor of the newest event (0 when there is none)."""
    return int(db.value("SELECT COALESCE(MAX(id), 0) AS m FROM risk_events") or 0)


# -- what the CIR holds for a GD or a scan --------------------------------------------------


def _selection_out(row: Mapping[str, Any], matched_by: str, listed: bool | None) -> dict[str, Any]:
    return {
        "gd_number": row["gd_number"],
        "version": int(row["version"]),
        "tier": row["tier"],
        "channel": row["channel"],
        "att": bool(row["att"]),
        "scan_required": bool(row["att"]) or row["tier"] != "none",
        "received_ns": int(row["received_ns"]),
        "matched_by": matched_by,
        "container_listed": listed,
    }


def selection_for(db: Sql, scan: Mapping[str, Any]) -> dict[str, Any] | None:
    """The RMS's selection of a scan: what the viewer shows beside the GD.

    Call it on the database thread (it reads the CIR through ``db``).

    Args:
        db: a connection to the CIR's database (``app.cir.sql``; schema step 10).
        scan: the scan's ``scans`` row (``gd_number``, ``container``, ``started_ns``).

    Returns:
        None when the RMS sent no GD for it; else ``{"gd_number", "version", "tier"
        ("high" | "targeted" | "random" | "none"), "channel" ("green" | "yellow" |
        "red"), "att" (bool), "scan_required" (bool), "received_ns",
        "matched_by" ("gd_number" | "container"), "container_listed" (bool | None)}``:
        the newest version of the GD whose number the scan carries; else of the newest
        GD naming the scan's container that was received at most
        :data:`SELECTION_EARLY_S` before the scan started and at most
        :data:`SELECTION_LATE_S` after (without ``started_ns``: the newest).

        ``container_listed`` says whether that version lists the scan's container:
        always true when matched by container; **false when the GD number the scan
        carries belongs to a GD that names other containers** (a mistyped GD number at
        the gate, or a container swapped: the selection shown is another container's,
        and the officer must be warned); None when the scan has no container number.
    """
    container = scan.get("container")
    box = normalise_container(container) if isinstance(container, str) and container else ""
    gd = scan.get("gd_number")
    if isinstance(gd, str) and gd:
        row = db.one(
            "SELECT id, gd_number, version, tier, channel, att, received_ns FROM risk_gds "
            "WHERE gd_number = ? ORDER BY version DESC LIMIT 1",
            [gd],
        )
        if row is not None:
            listed = None
            if box:
                listed = bool(
                    db.value(
                        "SELECT COUNT(*) AS n FROM risk_gd_containers "
                        "WHERE gd = ? AND container = ?",
                        [int(row["id"]), box],
                    )
                )
            return _selection_out(row, "gd_number", listed)
    if box:
        started = scan.get("started_ns")
        since, until = 0, 2**62
        if isinstance(started, int):
            since = started - int(SELECTION_EARLY_S * 1e9)
            until = started + int(SELECTION_LATE_S * 1e9)
        row = db.one(
            "SELECT g.gd_number, g.version, g.tier, g.channel, g.att, g.received_ns "
            "FROM risk_gd_containers c JOIN risk_gds g ON g.id = c.gd "
            "WHERE c.container = ? AND c.received_ns BETWEEN ? AND ? "
            "ORDER BY c.gd DESC LIMIT 1",
            [box, since, until],
        )
        if row is not None:
            return _selection_out(row, "container", True)
    return None


def _scan_out(app: ControlRoomApp, row: Mapping[str, Any]) -> dict[str, Any]:
    """One scan as a lookup shows it (on the database thread)."""
    from central.control_room import _att_view

    ref = int(row["ref"])
    db = app.cir.sql
    v = db.one("SELECT verdict, findings, model FROM verdicts WHERE ref = ?", [ref])
    last = db.one("SELECT * FROM decisions WHERE ref = ? ORDER BY id DESC LIMIT 1", [ref])
    att = _att_view.att_for(db, ref)
    att_out = None
    if att is not None and att.get("ref_b") is not None:
        released = bool(
            db.value(
                "SELECT COUNT(*) AS n FROM decisions WHERE ref = ? AND kind = 'release'",
                [int(att["ref_b"])],
            )
        )
        att_out = _att_out(att, int(att["ref_b"]), held=bool(att.get("hold")) and not released)
    site = app.site(str(row["scanner"]))
    return {
        "ref": ref,
        "scanner": str(row["scanner"]),
        "scan_id": row.get("scan_id"),
        "container": row.get("container"),
        "gd_number": row.get("gd_number"),
        "status": row.get("status"),
        "started_ns": row.get("started_ns"),
        "finished_ns": row.get("finished_ns"),
        "site": site.name if site else None,
        "atr": None
        if v is None
        else {
            "verdict": _verdict_level(v["verdict"]),
            "findings": int(v["findings"]),
            "model": _opt_str(v["model"]),
        },
        "decision": None if last is None else _decision_out(last),
        "att": att_out,
        "selection": selection_for(db, row),
    }


def _gd_scans(app: ControlRoomApp, gd_number: str, versions: list[dict[str, Any]]) -> list[Any]:
    """The scans of a GD: those that carry its number, and those of its containers that
    carry no GD number and whose selection is this GD."""
    cir = app.cir
    rows = {int(r["ref"]): r for r in cir.find_scans(gd_number=gd_number, limit=SCANS_MAX)}
    # the scans that selection_for can give this GD: started from SELECTION_LATE_S before
    # the first version naming the container came to SELECTION_EARLY_S after the last
    window: dict[str, tuple[int, int]] = {}
    for v in versions:
        t = int(v["received_ns"])
        for c in v["declaration"]["containers"]:
            lo, hi = window.get(c["number"], (t, t))
            window[c["number"]] = (min(lo, t), max(hi, t))
    late, early = int(SELECTION_LATE_S * 1e9), int(SELECTION_EARLY_S * 1e9)
    for number, (first, last) in window.items():
        found = cir.find_scans(
            container=number, since_ns=first - late, until_ns=last + early + 1, limit=SCANS_MAX
        )
        for r in found:
            if r.get("gd_number") or int(r["ref"]) in rows:
                continue
            sel = selection_for(cir.sql, r)
            if sel is not None and sel["gd_number"] == gd_number:
                rows[int(r["ref"])] = r
    return [rows[k] for k in sorted(rows)][:SCANS_MAX]


# -- the HTTP side ---------------------------------------------------------------------------

T = TypeVar("T", bound=BaseModel)


def _problems(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(x) for x in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg')}")
    more = len(exc.errors()) - 5
    tail = f" (and {more} more)" if more > 0 else ""
    return "the request does not fit the schema: " + "; ".join(parts) + tail


def _check_query(request: Request, known: frozenset[str]) -> None:
    """Refuse a query parameter that the operation does not take, or one given twice.

    Raises:
        Refused: 400, naming them (at most 40 characters of each).
    """
    keys = [k for k, _ in request.query_params.multi_items()]
    unknown = sorted({k[:40] for k in keys if k not in known})
    if unknown:
        takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
        raise Refused(
            400, f"unknown query parameter(s) {', '.join(map(repr, unknown[:5]))}: {takes}"
        )
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise Refused(400, f"query parameter(s) given twice: {', '.join(twice)}")


def _params_of(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(model.model_fields)


def _query(request: Request, model: type[T]) -> T:
    """The query parameters as ``model`` (checked by :func:`_check_query` before).

    Raises:
        Refused: 400, a value that does not fit.
    """
    try:
        return model.model_validate(dict(request.query_params.multi_items()))
    except ValidationError as exc:
        raise Refused(400, _problems(exc)) from None


async def _body(request: Request) -> bytes:
    body = await read_capped(request, MAX_BODY)
    if body is None:
        raise Refused(413, f"the request body is larger than {MAX_BODY} bytes")
    return body


def _answer(doc: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(doc, separators=(",", ":"), allow_nan=False),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _client_host(request: Request) -> str:
    return request.client.host if request.client else ""


class _Api:
    """The routes' shared state: the application, the token file, quiet polls."""

    def __init__(self, app: ControlRoomApp) -> None:
        self.app = app
        risk = app.cfg.risk
        self.tokens = TokenFile(risk.tokens) if risk is not None else None
        self._quiet: dict[str, float] = {}
        #: refusals of calls without a valid token per client and minute
        self._strangers = PerMinute()
        self.spec = openapi()
        #: what is wrong with the token file, as last logged ("" when nothing)
        self._token_problem = ""

    def _token_state(self, problem: str, fix: str = "") -> None:
        """Log the token file's state when it changes (not at every request)."""
        if problem == self._token_problem:
            return
        if problem:
            log.warning("risk-system API refuses every call (503): %s (%s)", problem, fix)
        else:
            path = self.tokens.path if self.tokens is not None else None
            log.warning("risk-system API: the token file %s is readable again", path)
        self._token_problem = problem

    def _audit(self, user: User, action: str, detail: str, client: str) -> None:
        self.app.accounts.audit(user, action, detail=detail[:500], client=client)

    async def _audit_stranger(self, who: str, detail: str, client: str) -> None:
        """Audit the refusal of a call without a valid token (``who``: what it sent), at
        most :data:`UNKNOWN_AUDIT_PER_MIN` a minute per client: anyone who reaches the
        port can send them, and the audit log is append-only. What is left out is
        counted, and the count written when that client's next minute starts
        (:class:`PerMinute`)."""
        write, left_out = self._strangers.note(client, _clock(), UNKNOWN_AUDIT_PER_MIN)
        rows = [detail] if write else []
        if left_out:
            rows.insert(
                0,
                f"{left_out} more refusal(s) of calls without a valid token from this "
                "client in the minute before, not written one by one",
            )
        nobody = User(f"risk:({who})", "risk", (), "", False)
        for row in rows:
            await self.app.db(lambda row=row: self._audit(nobody, "risk_refused", row, client))

    async def call(
        self,
        request: Request,
        work: Callable[[User, str], Awaitable[tuple[int, Any]]],
        params: frozenset[str] = frozenset(),
    ) -> Response:
        """Authenticate ``request``, check that its query parameters are among
        ``params`` and each given once, run ``work(user, client)``, answer its (status,
        doc); a refusal is answered ``{"error"}`` and written to the audit log."""
        client = _client_host(request)
        what = f"{request.method} {request.url.path}"
        user: User | None = None
        try:
            user = await self.authenticate(request, client)
            _check_query(request, params)
            status, doc = await work(user, client)
            return _answer(doc, status)
        except Refused as r:
            refused = r
        if user is not None:
            who, detail = user, f"{what}: {refused.status} {refused.message}"
            await self.app.db(lambda: self._audit(who, "risk_refused", detail, client))
        return _answer({"error": refused.message}, refused.status, refused.headers)

    async def authenticate(self, request: Request, client: str) -> User:
        """The RMS client that sent ``request``.

        Raises:
            Refused: 404 without ``[risk_system]``, 401 without a valid bearer token,
                503 when the token file is missing, unreadable or has a bad line (logged
                once each time that changes).
        """
        if self.tokens is None:
            raise Refused(
                404,
                "no risk-system API here: the control room's configuration has no "
                "[risk_system] table",
            )
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        challenge = {"WWW-Authenticate": 'Bearer realm="nii-risk"'}
        if scheme.lower() != "bearer" or not token:
            what = f"{request.method} {request.url.path}"
            await self._audit_stranger("no token", f"{what}: no bearer token", client)
            raise Refused(401, "send the RMS's API token: Authorization: Bearer TOKEN", challenge)
        if len(token) > 200 or not token.isascii():
            name = None
        else:
            try:
                name = self.tokens.check(token)
            except ConfigError as exc:
                self._token_state(exc.message, exc.fix)
                missing = not self.tokens.path.exists()
                raise Refused(
                    503,
                    "the risk-system API has no token file yet: no token is valid until "
                    "the control room's administrator makes one (nii risk token add)"
                    if missing
                    else "the risk-system API's token file is unreadable or has a bad "
                    "line; it is logged at the control room",
                ) from None
            self._token_state("")
        if name is None:
            what = f"{request.method} {request.url.path}"
            await self._audit_stranger("unknown token", f"{what}: unknown token", client)
            raise Refused(401, "unknown or revoked API token", challenge)
        return User(f"risk:{name}", "risk", (), "", False)

    # -- the operations --------------------------------------------------------------------
    async def submit(self, request: Request) -> Response:
        async def work(user: User, client: str) -> tuple[int, Any]:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise Refused(415, "send the GDs as application/json")
            try:
                body = SubmitIn.model_validate_json(await _body(request))
            except ValidationError as exc:
                raise Refused(400, _problems(exc)) from None
            db = self.app.accounts.db

            def write() -> list[dict[str, Any]]:
                results = store_gds(db, body.declarations, client=user.name, now_ns=time.time_ns())
                stored = [
                    f"{r['gd_number']} v{r['version']}" for r in results if r["status"] == "stored"
                ]
                self._audit(
                    user,
                    "risk_gds",
                    f"{len(results)} GD(s), stored: {', '.join(stored) or 'none'}",
                    client,
                )
                return results

            results = await self.app.db(write)
            return 200, SubmitOut.model_validate({"results": results}).model_dump(mode="json")

        return await self.call(request, work, frozenset())

    async def events(self, request: Request) -> Response:
        async def work(user: User, client: str) -> tuple[int, Any]:
            q = _query(request, EventsQuery)
            db = self.app.accounts.db

            def read() -> dict[str, Any]:
                top = last_cursor(db)
                if q.after > top:
                    raise Refused(
                        409,
                        f"cursor {q.after} is past the last event ({top}): this CIR's "
                        "outbox is another one (a migrated CIR numbers its events anew); "
                        "poll from after=0 and drop the event ids you have",
                    )
                events, more = events_after(db, q.after, q.limit)
                cursor = events[-1]["cursor"] if events else q.after
                now = time.monotonic()
                if events or now - self._quiet.get(user.name, -1e18) >= EMPTY_POLL_AUDIT_S:
                    self._quiet[user.name] = now
                    said = f"after {q.after}: {len(events)} event(s) to {cursor}"
                    self._audit(user, "risk_events", said, client)
                return {"events": events, "cursor": cursor, "more": more}

            doc = await self.app.db(read)
            return 200, EventsOut.model_validate(doc).model_dump(mode="json")

        return await self.call(request, work, _params_of(EventsQuery))

    async def gd(self, request: Request) -> Response:
        async def work(user: User, client: str) -> tuple[int, Any]:
            number = str(request.path_params.get("gd_number", ""))
            if not re.fullmatch(GD_NUMBER, number):
                raise Refused(400, f"{number[:60]!r} is not a GD number ({GD_NUMBER})")

            def read() -> dict[str, Any] | None:
                self._audit(user, "risk_gd", number, client)
                rows = self.app.accounts.db.rows(
                    "SELECT version, received_ns, client, doc FROM risk_gds "
                    "WHERE gd_number = ? ORDER BY version",
                    [number],
                )
                versions = [
                    {
                        "version": int(r["version"]),
                        "received_ns": int(r["received_ns"]),
                        "client": r["client"],
                        "declaration": json.loads(r["doc"]),
                    }
                    for r in rows
                ]
                scans = [_scan_out(self.app, s) for s in _gd_scans(self.app, number, versions)]
                if not versions and not scans:
                    return None
                return {
                    "gd_number": number,
                    "current": versions[-1]["version"] if versions else None,
                    "versions": versions,
                    "scans": scans,
                }

            doc = await self.app.db(read)
            if doc is None:
                raise Refused(404, f"no GD {number} and no scan of it in the CIR")
            return 200, GdOut.model_validate(doc).model_dump(mode="json")

        return await self.call(request, work, frozenset())

    async def scans(self, request: Request) -> Response:
        async def work(user: User, client: str) -> tuple[int, Any]:
            q = _query(request, ScansQuery)
            if q.gd is None and q.container is None:
                raise Refused(400, "give gd=GD_NUMBER or container=NUMBER (or both)")

            def read() -> dict[str, Any]:
                self._audit(user, "risk_scans", f"gd={q.gd} container={q.container}", client)
                rows = self.app.cir.find_scans(gd_number=q.gd, container=q.container, limit=q.limit)
                return {"scans": [_scan_out(self.app, r) for r in rows]}

            doc = await self.app.db(read)
            return 200, ScansOut.model_validate(doc).model_dump(mode="json")

        return await self.call(request, work, _params_of(ScansQuery))

    async def openapi_json(self, request: Request) -> Response:
        try:
            _check_query(request, frozenset())
        except Refused as r:
            return _answer({"error": r.message}, r.status)
        return _answer(self.spec)


def routes(app: ControlRoomApp) -> list[BaseRoute]:
    """The risk-system API's routes (every one under :data:`API`)."""
    api = _Api(app)
    return [
        Route(f"{API}/openapi.json", api.openapi_json, methods=["GET"]),
        Route(f"{API}/gds", api.submit, methods=["POST"]),
        Route(f"{API}/gds/{{gd_number}}", api.gd, methods=["GET"]),
        Route(f"{API}/events", api.events, methods=["GET"]),
        Route(f"{API}/scans", api.scans, methods=["GET"]),
    ]
