"""Officers' decisions and the regions they marked, signed and append-only (R8, R9, R10).

A decision is one of Green (release), Yellow (assessment review) or Red (a
Physical Examination Mandate, **PEM**, citing the scan's image and the marked
regions). Who may decide what:

* a **local officer** decides on the scans of the sites bound to the account; a
  later decision by an officer corrects an earlier officer's decision;
* a **regional supervisor** may override any local decision of the region's
  sites (kind ``override``);
* a **central RIAC analyst** adjudicates (kind ``adjudication``); neither an
  officer nor a supervisor may change an adjudicated scan;
* auditors and administrators never decide.

An exit scan that the ATT comparison put on **HOLD** (a Contravening Unit: seal
changed or the load differs from the entry scan, ``central.atr._transit``) is
released only by a central RIAC analyst, with a reason (kind ``release``); until
then an officer or a supervisor may only order its examination (Red).

Release (Green) and assessment (Yellow) wait until the scan is no longer being
scanned; a Red mandate may be ordered at once. A decision that changes another
user's gives its reason. Before a Red mandate the officer marks at least one
suspect region on the image.
Each mark is an **annotation** in one documented form (the training-data export
reads the same):

``{"ref", "scanner", "scan_id", "box_px": [col0, row0, col1, row1] (end-exclusive,
columns are image lines, rows detector channels), "box_mm": [x0, y0, x1, y1] (x
along travel from the first image line, y down from the top channel), "category",
"note", "by", "created_ns", "decision", "verdict"}``.

A decision's document (``doc``) names the scan, its container and GD number, the
ATR's verdict, the marks, who and when, the decision it corrects, and the hash of
the scan's last committed block (``image_block``: the chain head that seals
every line of the image the officer looked at). The document is signed with the
control room's Ed25519 key (``core.keys.ServiceSignKey``) over its canonical JSON
(sorted keys, no spaces); ``key_id`` names the key. Rows are never updated or
deleted (the database refuses): a correction is a new decision whose
``corrects`` points at the old one.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Sequence
from typing import Any

from central._sql import Sql
from central.control_room._accounts import article
from core.errors import NiiError
from core.keys import ServiceSignKey

__all__ = [
    "CATEGORIES",
    "KINDS",
    "VERDICTS",
    "DecisionRefused",
    "Decisions",
    "canonical",
    "decisions_of",
]

VERDICTS = ("green", "yellow", "red")
KINDS = ("local", "override", "adjudication", "release")
#: the fewest characters of reason a HOLD is released with
RELEASE_REASON = 10
#: what a marked region is (the ATR's categories, in an officer's words)
CATEGORIES = (
    "weapon",
    "explosive",
    "narcotics",
    "dense object",
    "high-Z object",
    "concealment",
    "undeclared goods",
    "other",
)
_RANK = {"officer": 0, "supervisor": 1, "analyst": 2}
_KIND = {"officer": "local", "supervisor": "override", "analyst": "adjudication"}


class DecisionRefused(NiiError):
    """The user may not make this decision (role, an adjudicated scan, no mark)."""


def canonical(doc: dict[str, Any]) -> bytes:
    """The bytes a decision's signature covers: JSON, sorted keys, no spaces, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Decisions:
    """The ``decisions`` and ``annotations`` tables of the CIR (schema step 8).

    Args:
        db: a connection to the CIR's database (used from one thread at a time).
        key: the control room's signing key.
    """

    def __init__(self, db: Sql, key: ServiceSignKey) -> None:
        self.db, self.key = db, key

    def for_ref(self, ref: int) -> list[dict[str, Any]]:
        """Every decision on scan ``ref``, oldest first, each with its document."""
        return decisions_of(self.db, ref)

    def latest(self, refs: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The newest decision of each of ``refs`` that has one."""
        if not refs:
            return {}
        marks = ", ".join("?" for _ in refs)
        rows = self.db.rows(
            f"SELECT * FROM decisions WHERE id IN (SELECT MAX(id) FROM decisions "
            f"WHERE ref IN ({marks}) GROUP BY ref)",
            list(refs),
        )
        return {int(r["ref"]): _public(r) for r in rows}

    def annotations(self, ref: int) -> list[dict[str, Any]]:
        rows = self.db.rows("SELECT doc FROM annotations WHERE ref = ? ORDER BY id", [ref])
        return [json.loads(r["doc"]) for r in rows]

    def decide(
        self,
        *,
        scan: dict[str, Any],
        name: str,
        role: str,
        verdict: str,
        reason: str,
        marks: Sequence[dict[str, Any]],
        pixel_mm: tuple[float, float],
        atr_verdict: str,
        image_block: str,
        corrects: int | None = None,
        hold: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Record one decision on ``scan`` (its ``scans`` row) and its marks, signed.

        ``marks`` are ``{"box_px", "category", "note"}`` (checked by the caller
        against the image's size); ``pixel_mm`` is (along travel, height) in mm;
        ``hold`` the scan's ATT document when the comparison put it on HOLD. With
        ``dry_run`` every check is made and nothing is written (``{"kind"}`` is
        returned): what the control room asks before it scores a Threat Image
        Projection, so that a decision that would be refused scores nothing.

        Returns:
            The stored decision (``id``, ``kind``, ``doc``, ``signature``, ``key_id``).

        Raises:
            DecisionRefused: ``role`` may not decide, the scan was decided by a higher
                role, a Red decision without a mark, or ``corrects`` is not this
                scan's latest decision.
        """
        if role not in _RANK:
            raise DecisionRefused(f"{article(role)} does not decide on scans",
                                  fix="an officer, a supervisor or an analyst decides")  # fmt: skip
        if verdict not in VERDICTS:
            raise DecisionRefused(f"no verdict {verdict!r}", fix="green, yellow or red")
        if verdict == "red" and not marks:
            raise DecisionRefused(
                "a Red decision (a Physical Examination Mandate) cites the suspect region",
                fix="mark the region and its nature on the image first",
            )
        ref = int(scan["ref"])
        if verdict != "red" and scan.get("status") == "scanning":
            raise DecisionRefused(
                f"scan {ref} is still being scanned: release and assessment wait for the "
                "whole image",
                fix="decide once the scan is complete; a Red mandate may be ordered now",
            )
        with self.db.transaction():
            if self.db.postgres:  # two control rooms deciding on one scan: one at a time
                self.db.execute("SELECT pg_advisory_xact_lock(?)", [ref])
            last = self.db.one(
                "SELECT id, role, name FROM decisions WHERE ref = ? ORDER BY id DESC LIMIT 1",
                [ref],
            )
            if last is not None and _RANK.get(str(last["role"]), 0) > _RANK[role]:
                raise DecisionRefused(
                    f"scan {ref} was decided by {article(str(last['role']))}; "
                    f"{article(role)} cannot change it",
                    fix="ask the central RIAC" if last["role"] == "analyst" else
                    "ask the regional supervisor",
                )  # fmt: skip
            # ``corrects`` is the decision the user saw (None: none): one taken meanwhile
            # by someone else is never replaced unseen
            if (None if last is None else int(last["id"])) != corrects:
                seen = "no decision" if corrects is None else f"decision {corrects}"
                raise DecisionRefused(
                    f"scan {ref} was decided meanwhile: you saw {seen}, the latest is "
                    + ("none" if last is None else f"decision {last['id']}"),
                    fix="reload the scan and decide on what is there now",
                )
            if last is not None and str(last["name"]) != name and not meaningful(reason):
                raise DecisionRefused(
                    f"scan {ref} was decided by {last['name']}: a change of another "
                    "officer's decision gives its reason",
                    fix="write why in the reason",
                )
            kind = _KIND[role]
            held = hold is not None and not self.db.value(
                "SELECT COUNT(*) FROM decisions WHERE ref = ? AND kind = 'release'", [ref]
            )
            if held and verdict != "red":
                why = str((hold or {}).get("reason") or "the ATT comparison")
                if role != "analyst":
                    raise DecisionRefused(
                        f"scan {ref} is a Contravening Unit on HOLD ({why}): only a central "
                        "RIAC analyst releases it",
                        fix="order an examination (Red), or ask the central RIAC",
                    )
                if meaningful(reason) < RELEASE_REASON:
                    raise DecisionRefused(
                        f"scan {ref} is on HOLD: a release gives its reason",
                        fix=f"write why the HOLD is released ({RELEASE_REASON} characters "
                        "at least)",
                    )
                kind = "release"
            if dry_run:
                return {"kind": kind}
            now = time.time_ns()
            lx, cy = pixel_mm
            marked = [
                {
                    "box_px": [int(v) for v in m["box_px"]],
                    "box_mm": [
                        round(m["box_px"][0] * lx),
                        round(m["box_px"][1] * cy),
                        round(m["box_px"][2] * lx),
                        round(m["box_px"][3] * cy),
                    ],
                    "category": str(m["category"]),
                    "note": str(m.get("note", "")),
                }
                for m in marks
            ]
            doc = {
                "ref": ref,
                "scanner": scan["scanner"],
                "scan_id": scan["scan_id"],
                "container": scan.get("container"),
                "gd_number": scan.get("gd_number"),
                "verdict": verdict,
                "mandate": verdict == "red",
                "kind": kind,
                "by": name,
                "role": role,
                "created_ns": now,
                "reason": reason,
                "corrects": corrects,
                "atr_verdict": atr_verdict,
                "image_block": image_block,
                "marks": marked,
            }
            if hold is not None:
                doc["hold"] = {"ref_a": hold.get("ref_a"), "status": hold.get("status"),
                               "reason": hold.get("reason"), "held": held}  # fmt: skip
            signature = self.key.sign(canonical(doc))
            row = {
                "ref": ref,
                "verdict": verdict,
                "kind": kind,
                "name": name,
                "role": role,
                "created_ns": now,
                "reason": reason,
                "corrects": corrects,
                "doc": json.dumps(doc),
                "signature": signature,
                "key_id": self.key.key_id,
            }
            did = int(
                self.db.value(
                    f"INSERT INTO decisions ({', '.join(row)}) "
                    f"VALUES ({', '.join('?' for _ in row)}) RETURNING id",
                    list(row.values()),
                )
            )
            for m in marked:
                note = {
                    **m,
                    "ref": ref,
                    "scanner": scan["scanner"],
                    "scan_id": scan["scan_id"],
                    "by": name,
                    "created_ns": now,
                    "decision": did,
                    "verdict": verdict,
                }
                self.db.insert(
                    "annotations",
                    [{"ref": ref, "decision": did, "name": name, "created_ns": now,
                      "doc": json.dumps(note)}],
                )  # fmt: skip
        return {"id": did, "kind": kind, "doc": doc, "signature": signature,
                "key_id": self.key.key_id}  # fmt: skip


def meaningful(text: str) -> int:
    """How many characters of ``text`` say something: letters, digits, punctuation and
    symbols (not white space, nor invisible format characters such as U+200B)."""
    return sum(1 for ch in text if unicodedata.category(ch)[0] in "LNPS")


def rank(role: str) -> int:
    """How far ``role`` decides: -1 never, 0 officer, 1 supervisor, 2 analyst."""
    return _RANK.get(role, -1)


def decisions_of(db: Sql, ref: int) -> list[dict[str, Any]]:
    """Every decision on scan ``ref``, oldest first (a CIR made before schema step 8
    has none)."""
    if "decisions" not in db.tables():
        return []
    rows = db.rows("SELECT * FROM decisions WHERE ref = ? ORDER BY id", [ref])
    return [_public(r) for r in rows]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(row["doc"])
    return {
        "id": int(row["id"]),
        "ref": int(row["ref"]),
        "verdict": row["verdict"],
        "kind": row["kind"],
        "by": row["name"],
        "role": row["role"],
        "created_ns": int(row["created_ns"]),
        "reason": row["reason"],
        "corrects": row["corrects"],
        "marks": doc.get("marks", []),
        "mandate": bool(doc.get("mandate")),
        "hold": doc.get("hold"),
        "signature": row["signature"],
        "key_id": row["key_id"],
    }
