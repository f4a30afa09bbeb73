"""Threat Image Projection in the control room (R14): a threat shown, never stored as real.

A share of the scans (``tip_rate`` in ``[control_room]``) is shown to the users
who decide (officers, supervisors, analysts) with a threat projected into the
image: a signature of :mod:`central.atr._tip` (a firearm, a lead block, a
narcotics block) is added to the scan's attenuation where the container's cargo
is (transmissions multiply, attenuations add), and what the ATR says of the
projected image there is listed among the ATR's findings, so the projection
looks exactly as a real threat would, in the pixels and in the findings.

Which scans: an HMAC-SHA256 of the scan's ref under a secret kept beside the
signing key (``<signing_key>.tip``, made once, mode 0600) decides, and places the
threat, so the choice holds across restarts and nobody can tell it from the ref.
A projection is placed as the scan starts, before any of its lines is drawn, so
that the threat is in the image from the first strip on, as a real one would be
(an image that changed once the scan was complete would tell): it rests on the
floor, in the middle half of where the container lay in the scanner's previous
scans (no TIP on a scanner without one). It is kept in the CIR's ``tip`` table
(schema step 9). What the ATR says of it is made once the scan's own verdict is
in, on the projected image, and merged into the verdict in the ATR's own order.

Scoring: when a user who was shown a projection submits a decision,

* a mark that covers at least :data:`HIT_COVER` of the projected box, and is at most
  :data:`HIT_AREA` times its size, is a **hit**: no decision is recorded (a TIP never
  leads to a mandate), the projection is revealed and the user decides again on
  the real image;
* otherwise it is a **miss**, scored once the decision is recorded (a decision
  refused for another reason scores nothing): it was made on the real scan's
  evidence, its marks are the user's own; the projection is revealed.

Either way one row goes into ``tip_scores`` (one per user and scan) and the user
is shown the real image from then on; a later mark on the revealed projection is
refused. Auditors and administrators always see the real image. Decisions and
annotations never hold a projection, so a training-data export of the
annotations never contains one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from central._sql import Sql
from central.atr._tip import Signature, library, project
from core.errors import ConfigError

__all__ = ["HIT_COVER", "Projection", "Tip", "load_secret"]

F32 = npt.NDArray[np.float32]

#: share of the projected box a mark must cover for the user to have found the threat
HIT_COVER = 0.25
#: the largest mark, in multiples of the projected box's area, that can find it
HIT_AREA = 8.0
#: lines beyond those already read that a late placement leaves free (the viewer's
#: strips read a few lines of context on each side)
LATE_MARGIN = 16
#: how far above the container's floor a projected threat rests (mm)
FLOOR_GAP_MM = 20.0
#: how long "no projection in this scan" is believed before the CIR is asked again (s)
NONE_FOR_S = 5.0
_LEVELS = {"none": -1, "green": 0, "yellow": 1, "red": 2}


def load_secret(path: Path) -> bytes:
    """The TIP secret in ``path``; a new one (32 random bytes, mode 0600) if none.

    Raises:
        ConfigError: the file cannot be read or written, or is not 64 hex digits.
    """
    path = Path(path)
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read or make the TIP secret: {exc.strerror}",
            fix="check the folder of signing_key in control-room.toml",
        ) from None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            f"{path}: the TIP secret is not 64 hexadecimal digits",
            fix="remove the file: the control room makes a new one",
        )
    return raw


@dataclass
class Projection:
    """One scan's projected threat: the signature, its box in the scan's pixels
    ([col0, row0, col1, row1], end-exclusive: columns are image lines, rows channels),
    the pixel size it was made for and what the ATR says of it."""

    ref: int
    signature: str
    box_px: list[int]
    line_mm: float
    channel_mm: float
    findings: list[dict[str, Any]] = field(default_factory=list)
    placed_ns: int = 0
    #: whether :attr:`findings` were made (after the scan's own verdict)
    judged: bool = False

    def patch(self) -> Signature:
        for sig in library(self.line_mm, self.channel_mm):
            if sig.name == self.signature:
                return sig
        raise KeyError(self.signature)  # pragma: no cover - names come from library()

    def add_to(self, a_hi: F32, a_lo: F32, col0: int) -> tuple[F32, F32]:
        """``a_hi``/``a_lo`` (columns ``col0``.., channels) with the threat added where
        the slice overlaps it (copies; the inputs are left as they are)."""
        c0, r0, c1, r1 = self.box_px
        lo, hi = max(c0, col0), min(c1, col0 + a_hi.shape[0])
        if lo >= hi:
            return a_hi, a_lo
        sig = self.patch()
        out_hi, out_lo = a_hi.copy(), a_lo.copy()
        rows = min(r1, a_hi.shape[1]) - r0
        # only the box changes (the scanner's range caps what it adds, as in
        # central.atr._tip.project): a pixel outside it stays as the scan has it
        for out, patch in ((out_hi, sig.a_hi), (out_lo, sig.a_lo)):
            box = out[lo - col0 : hi - col0, r0 : r0 + rows]
            box += patch[lo - c0 : hi - c0, :rows]
            np.minimum(box, 11.5, out=box)
        return out_hi, out_lo

    def covered_by(self, box: list[int]) -> float:
        """Share of the projected box that ``box`` covers (0 to 1)."""
        c0, r0, c1, r1 = self.box_px
        w = max(0, min(c1, box[2]) - max(c0, box[0]))
        h = max(0, min(r1, box[3]) - max(r0, box[1]))
        return (w * h) / max(1, (c1 - c0) * (r1 - r0))

    def found_by(self, box: list[int]) -> bool:
        """Whether a mark ``box`` finds the projection: it covers at least
        :data:`HIT_COVER` of it and is at most :data:`HIT_AREA` times its size (a mark
        over the whole image finds nothing)."""
        c0, r0, c1, r1 = self.box_px
        area = max(1, (box[2] - box[0]) * (box[3] - box[1]))
        return self.covered_by(box) >= HIT_COVER and area <= HIT_AREA * (c1 - c0) * (r1 - r0)


class Tip:
    """The control room's TIP: which scans, where, what is shown, and the scores.

    Args:
        db: the CIR's database (from the control room's database thread only).
        secret: the HMAC key that chooses and places projections.
        rate_of: the share of a scanner's scans shown with a projection (0 to 1).
    """

    def __init__(self, db: Sql, secret: bytes, rate_of: Callable[[str], float]) -> None:
        self.db, self.secret, self.rate_of = db, secret, rate_of
        self._placed: dict[int, Projection | None] = {}
        #: scans without a projection, and when that was read (another control room on
        #: the same CIR may place one: asked again after NONE_FOR_S)
        self._none: dict[int, float] = {}

    def _draw(self, ref: int, what: str) -> float:
        mac = hmac.new(self.secret, f"{what}:{ref}".encode(), hashlib.sha256).digest()
        return int.from_bytes(mac[:8], "big") / 2.0**64

    def chosen(self, ref: int, scanner: str) -> bool:
        """Whether scan ``ref`` of ``scanner`` is one to show with a projection."""
        rate = self.rate_of(scanner)
        return rate > 0 and self._draw(ref, "tip") < rate

    def get(self, ref: int) -> Projection | None:
        """The projection placed in scan ``ref``, if any."""
        if ref in self._placed:
            return self._placed[ref]
        if time.monotonic() - self._none.get(ref, -1e18) < NONE_FOR_S:
            return None
        row = self.db.one("SELECT * FROM tip WHERE ref = ?", [ref])
        proj = None
        if row is None:
            if len(self._none) > 100_000:
                self._none.clear()
            self._none[ref] = time.monotonic()
        if row is not None:
            doc = json.loads(row["doc"])
            proj = Projection(
                ref=ref,
                signature=str(row["signature"]),
                box_px=[int(v) for v in json.loads(row["box_px"])],
                line_mm=float(doc["line_mm"]),
                channel_mm=float(doc["channel_mm"]),
                placed_ns=int(row["placed_ns"]),
            )
            self._placed[ref] = proj
        return proj

    def place(
        self,
        scan: dict[str, Any],
        frame: dict[str, Any] | None,
        channels: int,
        line_mm: float,
        channel_mm: float,
        drawn: int = 0,
    ) -> Projection | None:
        """Place the projection of a chosen scan as it starts (once).

        ``frame`` is where the container lay in the scanner's last scans (a verdict's
        ``container_frame``: ``front_px``, ``back_px``, ``floor_px``): the threat goes
        into the middle half of that length, resting on that floor, so that it is in
        the image from the scan's first lines on, as a real threat would be.

        ``drawn`` is how many of the scan's lines may have been drawn already (a
        placement after the scan started, when the scanner's last verdict came late):
        the threat goes only where no line has been shown yet.

        Returns the projection (also one placed before), or None: not chosen, no
        container frame of this scanner to place it by, or too late in the scan.
        """
        ref = int(scan["ref"])
        got = self.get(ref)
        if got is not None or not self.chosen(ref, str(scan["scanner"])):
            return got
        if not frame or not frame.get("found") or channels <= 0:
            return None
        sigs = library(line_mm, channel_mm)
        sig = sigs[int(self._draw(ref, "signature") * len(sigs)) % len(sigs)]
        nl, nc = sig.a_hi.shape
        front, back = int(frame["front_px"]), int(frame["back_px"])
        floor = min(int(frame.get("floor_px") or channels - 1), channels - 1)
        span = back - front
        lo_c, hi_c = front + span // 4, back - span // 4 - nl
        r1 = floor - max(1, round(FLOOR_GAP_MM / channel_mm))  # resting on the floor
        r0 = r1 - nc
        if hi_c <= lo_c or r0 < 0:
            return None
        c0 = lo_c + int(self._draw(ref, "column") * (hi_c - lo_c))
        if c0 < drawn + LATE_MARGIN:
            return None  # lines there may have been shown without it: none in this scan
        box = [c0, r0, c0 + nl, r1]
        doc = {"line_mm": line_mm, "channel_mm": channel_mm, "frame": frame}
        with contextlib.suppress(Exception), self.db.transaction():
            self.db.execute(
                "INSERT INTO tip (ref, signature, box_px, placed_ns, doc) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (ref) DO NOTHING",
                [ref, sig.name, json.dumps(box), time.time_ns(), json.dumps(doc)],
            )
        self._placed.pop(ref, None)
        self._none.pop(ref, None)
        return self.get(ref)

    def judge(
        self, proj: Projection, scan: dict[str, Any], verdict: dict[str, Any], a_hi: F32, a_lo: F32
    ) -> None:
        """What the ATR says of the projected image at the projection (once the scan's
        own verdict is in): kept with the projection (in memory: the same each time)."""
        if proj.judged:
            return
        proj.findings = _findings_at(scan, verdict, a_hi, a_lo, proj, proj.patch())
        proj.judged = True

    def scores_of(self, name: str, refs: list[int]) -> set[int]:
        """Which of ``refs`` user ``name`` was already scored on."""
        if not refs:
            return set()
        marks = ", ".join("?" for _ in refs)
        rows = self.db.rows(
            f"SELECT ref FROM tip_scores WHERE name = ? AND ref IN ({marks})", [name, *refs]
        )
        return {int(r["ref"]) for r in rows}

    def score_of(self, ref: int, name: str) -> dict[str, Any] | None:
        row = self.db.one("SELECT * FROM tip_scores WHERE ref = ? AND name = ?", [ref, name])
        return None if row is None else _score(row, self.get(ref))

    def shown_to(self, ref: int, name: str, decides: bool) -> Projection | None:
        """The projection ``name`` is shown in scan ``ref`` (None: the real image)."""
        if not decides:
            return None
        proj = self.get(ref)
        if proj is None or self.score_of(ref, name) is not None:
            return None
        return proj

    def score(
        self, proj: Projection, name: str, role: str, marks: list[list[int]]
    ) -> dict[str, Any]:
        """Score ``name`` on ``proj`` from the boxes they marked; returns the score.

        A second score of one user on one scan is refused by the database; the first
        is returned instead.
        """
        cover = max((proj.covered_by(b) for b in marks), default=0.0)
        hit = any(proj.found_by(b) for b in marks)
        detail = f"marked {100 * cover:.0f} % of the projected {proj.signature}" + (
            "" if hit or cover < HIT_COVER else " with a mark far larger than it"
        )
        with contextlib.suppress(Exception), self.db.transaction():
            self.db.execute(
                "INSERT INTO tip_scores (ref, name, role, hit, signature, scored_ns, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ref, name) DO NOTHING",
                [proj.ref, name, role, int(hit), proj.signature, time.time_ns(), detail],
            )
        got = self.score_of(proj.ref, name)
        assert got is not None
        return got


def display_verdict(verdict: dict[str, Any] | None, proj: Projection | None) -> Any:
    """The verdict as the user is shown it: with the projection's findings merged."""
    if verdict is None or proj is None or not proj.findings or verdict.get("error"):
        return verdict
    out = dict(verdict)
    # in the ATR's own order (the worst level first, then the highest score)
    out["findings"] = sorted(
        list(verdict.get("findings") or []) + [dict(f) for f in proj.findings],
        key=lambda f: (-_LEVELS.get(str(f.get("level")), -1), -float(f.get("score") or 0.0)),
    )
    worst = max((str(f.get("level")) for f in out["findings"]), key=lambda v: _LEVELS.get(v, -1))
    if _LEVELS.get(worst, -1) > _LEVELS.get(str(verdict.get("verdict")), -1):
        out["verdict"] = worst
    return out


def _score(row: dict[str, Any], proj: Projection | None) -> dict[str, Any]:
    return {
        "hit": bool(row["hit"]),
        "signature": row["signature"],
        "box_px": proj.box_px if proj else None,
        "scored_ns": int(row["scored_ns"]),
        "detail": row["detail"],
    }


def _findings_at(
    scan: dict[str, Any],
    verdict: dict[str, Any],
    a_hi: F32,
    a_lo: F32,
    proj: Projection,
    sig: Signature,
) -> list[dict[str, Any]]:
    """What the ATR finds where the threat is projected (the findings that overlap it and
    are not the real scan's own), as the verdict lists findings."""
    from central.atr._analyze import analyze
    from central.atr._live import live_calibration, live_gd
    from central.atr._model import AtrInputError

    try:
        record = json.loads(scan.get("start_record") or "{}")
    except ValueError:
        record = {}
    record = record if isinstance(record, dict) else {}
    c0, r0 = proj.box_px[0], proj.box_px[1]
    hi, lo, _ = project(a_hi, a_lo, sig, c0, r0)
    scanner, _, _ = live_calibration(record)
    try:
        v = analyze(
            hi, lo, proj.line_mm, proj.channel_mm, live_gd(record), scanner=scanner
        ).to_dict()
    except (AtrInputError, ValueError):
        return []
    real = {tuple(f.get("bbox_px") or ()) for f in verdict.get("findings") or []}
    out = []
    for f in v.get("findings") or []:
        b = f.get("bbox_px") or []
        if len(b) != 4 or tuple(b) in real or proj.covered_by(list(b)) <= 0:
            continue
        f = {k: v for k, v in f.items() if k != "tip"}
        out.append(f)
    return out
