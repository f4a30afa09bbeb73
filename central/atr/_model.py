"""What the ATR reports: findings, verdicts and the errors a user can get.

A finding is what an analyst needs to act on (R10): where (mm from the
container's front and floor, and image pixels), how big, how dense, what
material, which category, how sure, and one line saying why.  A verdict is
the worst of its findings: green (release), yellow (assessment review) or red
(HIT: mandatory physical examination), and cites the GD fields it compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from core.errors import NiiError


class Level(StrEnum):
    """How a finding or a verdict sends the container on (the strings are the JSON values)."""

    GREEN = "green"  # release
    YELLOW = "yellow"  # assessment review
    RED = "red"  # HIT: mandatory physical examination

    @property
    def rank(self) -> int:
        """0, 1, 2 from green to red: the worse level ranks higher."""
        return _RANK[self]


_RANK = {Level.GREEN: 0, Level.YELLOW: 1, Level.RED: 2}


class Category(StrEnum):
    """What a finding is: one per detector or check (the strings are the JSON values)."""

    GD_MISMATCH = "gd mismatch"
    FALSE_WALL = "false wall"
    DOUBLE_FLOOR = "double floor"
    DENSE_OBJECT = "dense object"
    HIGH_Z_OBJECT = "high-Z object"
    IMPENETRABLE_OBJECT = "impenetrable object"
    FIREARM = "firearm-like shape"
    ORGANIC_IN_METAL = "organic in metal cargo"
    UNDECLARED_VEHICLE = "undeclared vehicle"
    NOT_EMPTY = "not empty"
    ATT_MISMATCH = "att mismatch"
    TIP = "tip"


class AtrInputError(NiiError):
    """An image pair or declaration the ATR cannot analyse (size, depth, values)."""


@dataclass(slots=True)
class Finding:
    """One suspect region or inconsistency, located on the image.

    ``bbox_mm`` is [x0, y0, x1, y1]: x along travel from the container's front
    wall, y up from its floor.  ``bbox_px`` is [col0, row0, col1, row1] in the
    full-resolution image (columns are lines, rows are channels), end-exclusive.
    """

    category: Category
    score: float
    level: Level
    reason: str
    bbox_px: list[int] = field(default_factory=list)
    bbox_mm: list[float] = field(default_factory=list)
    size_mm: list[float] = field(default_factory=list)
    mean_attenuation: float = 0.0
    mean_density_gcm2: float = 0.0
    material: str = ""
    zeff: float = 0.0
    tip: bool = False
    #: what the score is measured against, when not the detector's fixed level:
    #: "texture" (the cargo's spread round the object), whose per-commodity red
    #: thresholds are their own; not part of the verdict's JSON
    basis: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, floats rounded to what the image can tell."""
        d = asdict(self)
        d["category"] = str(self.category)
        d["level"] = str(self.level)
        d["score"] = round(self.score, 3)
        d["bbox_mm"] = [round(v, 0) for v in self.bbox_mm]
        d["size_mm"] = [round(v, 0) for v in self.size_mm]
        d["mean_attenuation"] = round(self.mean_attenuation, 3)
        d["mean_density_gcm2"] = round(self.mean_density_gcm2, 1)
        d["zeff"] = round(self.zeff, 1)
        if not self.tip:
            d.pop("tip")
        d.pop("basis")
        return d


@dataclass(slots=True)
class Verdict:
    """The ATR's answer for one scan: its level, findings, GD comparison and timing.

    ``similar`` lists the confirmed scans of the same HS heading most like this one
    (``_library.Similar.to_dict``: ref, similarity 0 to 1, confirmed verdict), empty
    without an image library; ``library`` is what a confirmation of this verdict
    keeps (heading, profile version, load features, image descriptor).
    """

    verdict: Level
    findings: list[Finding]
    gd_checks: dict[str, Any] = field(default_factory=dict)
    container: dict[str, Any] = field(default_factory=dict)
    elapsed_ms: float = 0.0
    scan: str = ""
    tip: list[dict[str, Any]] = field(default_factory=list)
    similar: list[dict[str, Any]] = field(default_factory=list)
    library: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, findings: list[Finding], **kw: Any) -> Verdict:
        """The verdict is the highest level among the findings (green when there are none)."""
        level = Level.GREEN
        for f in findings:
            if f.level.rank > level.rank:
                level = f.level
        ordered = sorted(findings, key=lambda f: (-f.level.rank, -f.score))
        return cls(level, ordered, **kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``nii atr analyze`` prints and the live feed carries)."""
        d: dict[str, Any] = {
            "verdict": str(self.verdict),
            "findings": [f.to_dict() for f in self.findings],
            "gd_checks": self.gd_checks,
            "container": self.container,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "similar": self.similar,
        }
        if self.library:
            d["library"] = self.library
        if self.scan:
            d["scan"] = self.scan
        if self.tip:
            d["tip"] = self.tip
        return d


def level_of(score: float, yellow: float = 0.5, red: float = 1.0) -> Level:
    """Map a detector score (1.0 = at the red threshold) to a level."""
    if score >= red:
        return Level.RED
    if score >= yellow:
        return Level.YELLOW
    return Level.GREEN
