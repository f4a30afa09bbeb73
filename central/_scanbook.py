"""One scan's book: what the ingest keeps of a scan until its row is committed.

A scan's bookkeeping, field for field the CIR's ``scans`` table
(``central._sql``, schema steps 1 and 7), kept by ``central._ingest.Ingest`` while
the scan's blocks arrive and written by ``central._cir.Cir.commit`` with them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.messages import check_doc

__all__ = ["ScanBook", "gd_number", "scan_record"]


@dataclass(slots=True)
class ScanBook:
    """A scan as the ingest books it; :meth:`row` is its row of the ``scans`` table."""

    ref: int  #: the CIR's own number of the scan (1, 2, …; a sequence when shared)
    scanner: str
    scan_id: int  #: the scanner's scan number; -1 when the blocks named none
    container: str  #: container number from the start record, "" if none
    gd_number: str | None  #: the start record's ``gd.gd_number`` (a string), else None
    status: str  #: scanning | complete | incomplete | aborted | lost
    started_ns: int  #: first line's (or block's) time, ns since the epoch
    finished_ns: int | None  #: end record's time, or when it was closed; None while open
    lines_planned: int  #: image lines the start record announced (0: no record)
    lines_received: int  #: image lines in the CIR that fit the scan's shape
    calib_lines: int  #: dark and air lines that fit
    lines_emitted: int | None  #: what the end record says the scanner emitted
    blocks: int  #: blocks of the chain that belong to the scan
    first_seq: int  #: chain seq of its first block
    last_seq: int  #: chain seq of its last block
    gaps: int  #: GAP blocks that touched it
    start_record: str  #: the start record, JSON
    end_record: str | None  #: the end record, JSON; None without one

    @classmethod
    def new(
        cls,
        ref: int,
        scanner: str,
        scan_id: Any,
        status: str,
        started_ns: int,
        seq: int,
        record: Mapping[str, Any],
    ) -> ScanBook:
        """A scan opened by its first block (``seq``) and start ``record`` ({} if none)."""
        lines = record.get("lines", 0)
        return cls(
            ref=ref,
            scanner=scanner,
            scan_id=scan_id if type(scan_id) is int else -1,  # -1: the block named none
            container=str(record.get("container", ""))[:256],
            gd_number=gd_number(record),
            status=status,
            started_ns=started_ns,
            finished_ns=None,
            lines_planned=lines if type(lines) is int and 0 <= lines < 1 << 40 else 0,
            lines_received=0,
            calib_lines=0,
            lines_emitted=None,
            blocks=0,
            first_seq=seq,
            last_seq=seq,
            gaps=0,
            start_record=json.dumps(record),
            end_record=None,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScanBook:
        """The book of a scan row read back from the CIR (columns it lacks stay unset)."""
        values: dict[str, Any] = {f.name: row.get(f.name) for f in dataclasses.fields(cls)}
        return cls(**values)

    def row(self) -> dict[str, Any]:
        """Its row of the ``scans`` table (a copy)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def feed_doc(self) -> dict[str, Any]:
        """What the live feed says of it (``scan.started``, ``scan.finished``)."""
        return {
            k: getattr(self, k)
            for k in (
                "ref",
                "scanner",
                "scan_id",
                "container",
                "status",
                "started_ns",
                "finished_ns",
                "lines_planned",
                "lines_received",
                "gaps",
            )
        }


def gd_number(record: Mapping[str, Any]) -> str | None:
    """The Goods Declaration number a scan-start record carries (``gd.gd_number``, a
    string, cut to 256 characters), or None: what the CIR indexes for audit queries."""
    gd = record.get("gd")
    value = gd.get("gd_number") if isinstance(gd, dict) else None
    return value[:256] if isinstance(value, str) else None


def scan_record(plain: bytes) -> dict[str, Any]:
    """A scan-start or scan-end record from its block's decrypted payload (JSON).

    Central files what this returns in the ``scans`` row (``start_record``,
    ``end_record``); ``nii cir verify`` reads the signed block again through it and
    compares.

    Raises:
        ValueError: not JSON (``json.JSONDecodeError``, ``UnicodeDecodeError``).
        RecursionError: nested too deep.
        core.errors.ProtocolError: not a JSON object within ``check_doc``'s bounds.
    """
    return check_doc("scan record", json.loads(plain))
