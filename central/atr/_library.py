"""Site-learned commodity profiles and the image library (SOP 5.4).

Officers confirm verdicts (``nii atr confirm REF green|yellow|red``); each
confirmation keeps a snapshot of what the ATR measured of the scan: the
resolved HS heading, its :class:`~._commodity.LoadFeatures` and a compact
image descriptor (:func:`describe`).  From the green-confirmed scans of a
heading this module learns a profile (:func:`learn`) and blends it with the HS
table's prior (:func:`blended`); the commodity check uses the blend once a
heading has :data:`MIN_CONFIRMED` green scans, the prior until then.  Each
verdict lists the scans of its heading most like it (:meth:`ImageLibrary.similar`).

The rules are pure functions of typed values; the SQLite side is
``_store.LibraryStore`` (writes) and :func:`load_library` (reads, creates
nothing).  The method, its constants and why they are what they are:
docs/atr.md, "Site-learned profiles and the image library".
"""
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import dataclasses
import getpass
import itertools
import logging
import math
import statistics
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from central._sql import Sql, is_sql_error
from core.calibration import MaterialClass
from core.errors import ConfigError, NiiError

from ._commodity import CLASS_NOISE, DENSITY_SIGMA_FLOOR, WIDTH_FILL_MIN, LoadFeatures
from ._hs import HS_TABLE, HsExpectation
from ._model import Level
from ._store import LibraryStore, confirmation_rows, library_state, profile_docs

if TYPE_CHECKING:
    from .detectors import Scene

log = logging.getLogger("nii.central.atr")

__all__ = [
    "DESCRIPTOR_BLOCKS",
    "DESCRIPTOR_LEN",
    "MIN_CONFIRMED",
    "SIMILAR_K",
    "Confirmation",
    "ImageLibrary",
    "LearnedProfile",
    "LibraryError",
    "Similar",
    "blended",
    "changes",
    "confirm",
    "describe",
    "descriptor_of",
    "learn",
    "live_library",
    "load_library",
    "parse_level",
    "similarity",
]

#: Green-confirmed scans of a heading from which its learned profile is used (below: the
#: HS table's prior alone).  20 gives the median and the MAD a standard error of about
#: a quarter of the spread (1.25 σ/√n for the median), small beside the ranges' 2 σ.
MIN_CONFIRMED = 20
#: Pseudo-count of the prior in the blend: the learned bounds weigh n / (n + PRIOR_WEIGHT_N),
#: so at MIN_CONFIRMED scans the learned and prior bounds count alike, at 180 the
#: learned 90 %.
PRIOR_WEIGHT_N = 20
#: A learned range is the median ± this many robust σ (2 σ: 95 % of honest loads inside;
#: the check then adds the scan's own σ before anything is red, as for the prior).
SPREAD_K = 2.0
#: MAD to σ for normally distributed values (1 / Φ⁻¹(3/4)).
MAD_TO_SIGMA = 1.4826
#: Floor of a learned Z_eff spread (1 σ): the effective-Z map's own noise over a load, the
#: floor ``_commodity._fit`` uses for one scan.
ZEFF_SIGMA_FLOOR = 0.5
#: Most similar scans a verdict lists.
SIMILAR_K = 5
#: Descriptor distance at which similarity is 0.5 (RMS over the blocks of normalised
#: differences: a tenth of a share, of the density scale or of the mean profile).
SIMILAR_HALF = 0.1
#: Bins of the areal-density profile along travel (front wall to doors) and up (roof to
#: floor): fixed counts, so containers of any length and scanners of any pitch compare.
TRAVEL_BINS = 16
HEIGHT_BINS = 8
#: Bulk density and Z_eff scales of the descriptor (g/cm³; iron's Z).
DENSITY_SCALE = 1.0
ZEFF_SCALE = 26.0
#: The descriptor's blocks in order (name, length); each block weighs the same in the
#: distance whatever its length.
DESCRIPTOR_BLOCKS: tuple[tuple[str, int], ...] = (
    ("shares", 4),  # organic, inorganic, metal of the classified load; impenetrable
    ("density", 1),  # bulk density / DENSITY_SCALE
    ("zeff", 3),  # Z_eff quartiles / ZEFF_SCALE
    ("fill", 1),  # fill fraction
    ("travel", TRAVEL_BINS),  # areal density along travel / its mean
    ("height", HEIGHT_BINS),  # areal density from roof to floor / its mean
)
DESCRIPTOR_LEN = sum(n for _, n in DESCRIPTOR_BLOCKS)

#: Each element's weight in the squared distance: 1 / (its block's length × the blocks).
_WEIGHTS = np.concatenate(
    [np.full(n, 1.0 / (n * len(DESCRIPTOR_BLOCKS))) for _, n in DESCRIPTOR_BLOCKS]
)
_CLASSES = (MaterialClass.ORGANIC, MaterialClass.INORGANIC, MaterialClass.METAL)


class LibraryError(NiiError):
    """A confirmation or profile command the CIR cannot answer (unknown scan, bad word)."""


def parse_level(word: str) -> Level:
    """The verdict an officer confirms: ``green``, ``yellow`` or ``red`` (any case).

    Raises:
        LibraryError: any other word.
    """
    try:
        return Level(word.strip().lower())
    except ValueError:
        raise LibraryError(
            f"{word!r} is not a verdict",
            fix="confirm with green, yellow or red: nii atr confirm REF green",
        ) from None


@dataclass(frozen=True, slots=True)
class Confirmation:
    """One officer's confirmation of a verdict, as stored (never changed afterwards).

    Attributes:
        id: Its row id in ``confirmations``.
        ref: The scan's ref in the CIR.
        verdict: What the officer confirmed.
        atr_verdict: What the ATR said.
        by: Who confirmed (OS user or ``--by``).
        created_ns: When, ns since the epoch.
        note: Free text.
        corrects: The id of the confirmation this one corrects, or None.
        heading: The HS table row the verdict resolved the goods to ("" for none).
        load: The load's features as the verdict measured them (None: an old verdict).
        descriptor: The scan's image descriptor (:func:`describe`); () when none.
        profile_version: The profile version the verdict used (0: the prior).
    """

    id: int
    ref: int
    verdict: Level
    atr_verdict: str
    by: str
    created_ns: int
    note: str
    corrects: int | None
    heading: str
    load: LoadFeatures | None
    descriptor: tuple[float, ...]
    profile_version: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Confirmation:
        """From a ``confirmations`` row (``_store.confirmation_rows``)."""
        load = row.get("load")
        return cls(
            int(row["id"]),
            int(row["ref"]),
            Level(row["verdict"]),
            str(row["atr_verdict"]),
            str(row["by"]),
            int(row["created_ns"]),
            str(row["note"]),
            None if row.get("corrects") is None else int(row["corrects"]),
            str(row["heading"]),
            LoadFeatures(**load) if isinstance(load, dict) else None,
            tuple(float(v) for v in row.get("descriptor") or ()),
            int(row.get("profile_version") or 0),
        )


def current(confirmations: Iterable[Confirmation]) -> dict[int, Confirmation]:
    """The standing confirmation of each scan: its latest (corrections replace)."""
    out: dict[int, Confirmation] = {}
    for c in sorted(confirmations, key=lambda c: c.id):
        out[c.ref] = c
    return out


# -- the descriptor ----------------------------------------------------------------------
def _resample(profile: np.ndarray, bins: int) -> list[float]:
    """``profile`` averaged into ``bins`` equal parts and divided by its mean (shape only)."""
    p = np.asarray(profile, dtype=np.float64)
    if p.size == 0:
        return [0.0] * bins
    edges = np.linspace(0, p.size, bins + 1)
    parts = [
        float(p[int(a) : max(int(a) + 1, math.ceil(b))].mean())
        for a, b in itertools.pairwise(edges)
    ]
    mean = float(np.mean(parts))
    if mean <= 1e-9:
        return [0.0] * bins
    return [round(v / mean, 4) for v in parts]


def descriptor_of(
    load: LoadFeatures,
    zeff_quartiles: tuple[float, float, float],
    travel: Sequence[float] | np.ndarray,
    height: Sequence[float] | np.ndarray,
) -> tuple[float, ...]:
    """The image descriptor from the load's features and two areal-density profiles.

    Args:
        load: The load's features (shares, bulk density, fill).
        zeff_quartiles: 25th, 50th and 75th percentile of Z_eff over the load.
        travel: Mean areal density (g/cm², any length) along travel, front to doors.
        height: Mean areal density (g/cm², any length) from the roof down to the floor.

    Returns:
        :data:`DESCRIPTOR_LEN` floats in the order of :data:`DESCRIPTOR_BLOCKS`, each
        roughly 0–1 (profiles: 1 = their mean).
    """
    shares = [load.share(c) for c in _CLASSES] + [load.impenetrable]
    dens = [min(3.0, load.bulk_density_g_cm3 / DENSITY_SCALE)]
    zq = [q / ZEFF_SCALE for q in zeff_quartiles]
    out = shares + dens + zq + [load.fill_fraction]
    out += _resample(np.asarray(travel), TRAVEL_BINS) + _resample(np.asarray(height), HEIGHT_BINS)
    return tuple(round(float(v), 4) for v in out)


def describe(sc: Scene, load: LoadFeatures) -> tuple[float, ...]:
    """The image descriptor of one scan (:func:`descriptor_of` on the scene's interior).

    ``sc`` is the container's interior (``detectors.Scene``: areal density when the
    scanner is calibrated, else high-energy attenuation over μ/ρ), ``load`` its features.
    """
    from .detectors import MU_RHO_HI

    rho = sc.rho if sc.rho is not None else sc.a / MU_RHO_HI
    z = sc.zeff[sc.occupied]
    z = z[z > 0]
    q = (0.0, 0.0, 0.0)
    if z.size:
        a, b, c = (float(v) for v in np.percentile(z, [25, 50, 75]))
        q = (a, b, c)
    return descriptor_of(load, q, rho.mean(axis=1), rho.mean(axis=0))


def similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """Similarity 0–1 of two descriptors: 1 / (1 + (d / SIMILAR_HALF)²).

    ``d`` is the RMS over :data:`DESCRIPTOR_BLOCKS` of each block's RMS difference, so
    a long profile block weighs no more than the one-number density.  Descriptors of
    another length (another layout) are 0.
    """
    if len(a) != DESCRIPTOR_LEN or len(b) != DESCRIPTOR_LEN:
        return 0.0
    i = 0
    total = 0.0
    for _, n in DESCRIPTOR_BLOCKS:
        total += sum((a[j] - b[j]) ** 2 for j in range(i, i + n)) / n
        i += n
    d = math.sqrt(total / len(DESCRIPTOR_BLOCKS))
    return 1.0 / (1.0 + (d / SIMILAR_HALF) ** 2)


@dataclass(frozen=True, slots=True)
class Similar:
    """One confirmed scan like the one judged.

    Attributes:
        ref: Its ref in the CIR.
        similarity: 0–1 (:func:`similarity`).
        verdict: What the officer confirmed it as.
    """

    ref: int
    similarity: float
    verdict: Level

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"ref": 12, "similarity": 0.93, "verdict": "green"}``."""
        return {
            "ref": self.ref,
            "similarity": round(self.similarity, 3),
            "verdict": str(self.verdict),
        }


# -- learned profiles --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LearnedProfile:
    """What a heading's green-confirmed scans at this site look like.

    Attributes:
        heading: The HS table row.
        n: Green-confirmed scans with features.
        used: ``n >= MIN_CONFIRMED``: the check uses it (blended with the prior).
        density_median: Median bulk density, g/cm³.
        density_sigma: Robust 1-σ: max(1.4826 MAD, median of the scans' own σ,
            ``DENSITY_SIGMA_FLOOR``), g/cm³.
        zeff_median: Median of the scans' Z_eff medians.
        zeff_sigma: Robust 1-σ of the scans' medians: max(1.4826 MAD,
            :data:`ZEFF_SIGMA_FLOOR`).
        shares: Median share of the classified load in organic, inorganic, metal.
        classes: Classes whose median share exceeds ``CLASS_NOISE``.
        version: The profiles version it was written in (0: not stored).
    """

    heading: str
    n: int
    used: bool
    density_median: float
    density_sigma: float
    zeff_median: float
    zeff_sigma: float
    shares: tuple[float, float, float]
    classes: tuple[str, ...]
    version: int = 0

    def density_range(self) -> tuple[float, float]:
        """Median ± :data:`SPREAD_K` σ, g/cm³ (as this site's scans measure it)."""
        m, s = self.density_median, self.density_sigma
        return max(0.0, m - SPREAD_K * s), m + SPREAD_K * s

    def zeff_range(self) -> tuple[float, float]:
        """Median ± :data:`SPREAD_K` σ."""
        m, s = self.zeff_median, self.zeff_sigma
        return max(0.0, m - SPREAD_K * s), m + SPREAD_K * s

    def to_doc(self) -> dict[str, Any]:
        """JSON-ready form (the ``profiles`` table's ``doc``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> LearnedProfile:
        """From :meth:`to_doc`'s form."""
        return cls(
            str(doc["heading"]),
            int(doc["n"]),
            bool(doc["used"]),
            float(doc["density_median"]),
            float(doc["density_sigma"]),
            float(doc["zeff_median"]),
            float(doc["zeff_sigma"]),
            (float(doc["shares"][0]), float(doc["shares"][1]), float(doc["shares"][2])),
            tuple(str(c) for c in doc["classes"]),
            int(doc.get("version", 0)),
        )


def _mad_sigma(values: Sequence[float], centre: float) -> float:
    return MAD_TO_SIGMA * statistics.median(abs(v - centre) for v in values)


def learn(confirmations: Iterable[Confirmation]) -> dict[str, LearnedProfile]:
    """Profiles per heading from the standing green confirmations with features.

    Only each scan's latest confirmation counts (a correction replaces); yellow and
    red are left out (what a heading looks like is learned from honest loads only).
    Headings with fewer than :data:`MIN_CONFIRMED` scans are returned with ``used``
    False.  Headings the HS table does not have are left out.
    """
    by_heading: dict[str, list[LoadFeatures]] = {}
    for c in current(confirmations).values():
        if c.verdict is Level.GREEN and c.load is not None and c.heading in HS_TABLE:
            by_heading.setdefault(c.heading, []).append(c.load)
    out: dict[str, LearnedProfile] = {}
    for heading, loads in sorted(by_heading.items()):
        dens = [x.bulk_density_g_cm3 for x in loads]
        dm = statistics.median(dens)
        ds = max(
            _mad_sigma(dens, dm),
            statistics.median(x.bulk_density_sigma_g_cm3 for x in loads),
            DENSITY_SIGMA_FLOOR,
        )
        zs_ = [x.zeff_median for x in loads]
        zm = statistics.median(zs_)
        zsig = max(_mad_sigma(zs_, zm), ZEFF_SIGMA_FLOOR)
        sh = tuple(statistics.median(x.share(c) for x in loads) for c in _CLASSES)
        classes = tuple(
            c.name.lower() for c, v in zip(_CLASSES, sh, strict=True) if v > CLASS_NOISE
        )
        out[heading] = LearnedProfile(
            heading,
            len(loads),
            len(loads) >= MIN_CONFIRMED,
            round(dm, 4),
            round(ds, 4),
            round(zm, 2),
            round(zsig, 2),
            (round(sh[0], 3), round(sh[1], 3), round(sh[2], 3)),
            classes,
        )
    return out


def blended(profile: LearnedProfile, prior: HsExpectation) -> HsExpectation | None:
    """The expectation the commodity check uses for a heading with a learned profile.

    Each bound is the weighted mean of the learned bound and the prior's (the prior's
    lower density bound in image terms, × ``WIDTH_FILL_MIN``), the learned weighing
    ``n / (n + PRIOR_WEIGHT_N)``.  The classes are the prior's and those the site's
    loads show above ``CLASS_NOISE``: learning never takes a class away.  The density
    range is in image terms (``check_commodity(..., learned=)`` applies no width
    factor).  None while the profile is below :data:`MIN_CONFIRMED`.
    """
    if not profile.used:
        return None
    w = profile.n / (profile.n + PRIOR_WEIGHT_N)
    plo, phi = prior.density_range
    llo, lhi = profile.density_range()
    dens = (w * llo + (1 - w) * plo * WIDTH_FILL_MIN, w * lhi + (1 - w) * phi)
    zlo, zhi = profile.zeff_range()
    zeff = (w * zlo + (1 - w) * prior.zeff_range[0], w * zhi + (1 - w) * prior.zeff_range[1])
    learned = {MaterialClass[c.upper()] for c in profile.classes}
    classes = tuple(c for c in _CLASSES if c in prior.classes or c in learned)
    return dataclasses.replace(
        prior,
        classes=classes,
        density_range=(round(dens[0], 3), round(dens[1], 3)),
        zeff_range=(round(zeff[0], 2), round(zeff[1], 2)),
        source=f"site-learned v{profile.version} from {profile.n} confirmed scans"
        f" ({100 * w:.0f} %), blended with {prior.source}",
    )


def changes(old: Mapping[str, LearnedProfile], new: Mapping[str, LearnedProfile]) -> list[str]:
    """One line per heading whose profile changed from ``old`` to ``new``, for the officer."""
    lines = []
    for h in sorted(set(old) | set(new)):
        a, b = old.get(h), new.get(h)
        if b is None:
            lines.append(f"{h}: no green confirmations left; the prior applies")
            continue
        lo, hi = b.density_range()
        now = f"density {lo:.2f}–{hi:.2f} g/cm³, Z_eff {b.zeff_median:.1f} (n={b.n})"
        state = "used" if b.used else f"not used yet ({b.n}/{MIN_CONFIRMED})"
        if a is None:
            lines.append(f"{h}: new, {state}: {now}")
        elif (a.n, a.density_median, a.density_sigma, a.zeff_median, a.classes) != (
            b.n,
            b.density_median,
            b.density_sigma,
            b.zeff_median,
            b.classes,
        ):
            alo, ahi = a.density_range()
            became = "" if a.used == b.used else f" (now {state})"
            lines.append(
                f"{h}: n {a.n} → {b.n}, density {alo:.2f}–{ahi:.2f} → {lo:.2f}–{hi:.2f}"
                f" g/cm³, Z_eff {a.zeff_median:.1f} → {b.zeff_median:.1f}{became}"
            )
    return lines


# -- the library in use ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ImageLibrary:
    """What the ATR consults at verdict time: the latest profiles and the confirmed scans.

    Attributes:
        version: The profiles version (0: none learned yet).
        profiles: Learned profiles by heading (those of ``version``).
        confirmed: The standing confirmations with a descriptor, by scan ref.
    """

    version: int = 0
    profiles: Mapping[str, LearnedProfile] = dataclasses.field(default_factory=dict)
    confirmed: Mapping[int, Confirmation] = dataclasses.field(default_factory=dict)

    def expectation(self, heading: str) -> HsExpectation | None:
        """The blended expectation of ``heading``; None: use the prior (none or too few)."""
        p = self.profiles.get(heading)
        prior = HS_TABLE.get(heading)
        if p is None or prior is None:
            return None
        return blended(p, prior)

    def similar(
        self,
        heading: str,
        descriptor: Sequence[float],
        k: int = SIMILAR_K,
        verdicts: frozenset[Level] = frozenset({Level.GREEN}),
        exclude: int | None = None,
    ) -> list[Similar]:
        """The ``k`` confirmed scans of ``heading`` most like ``descriptor``, most alike first.

        Only scans whose standing confirmation is in ``verdicts`` (green by default);
        ``exclude`` leaves one ref out (the scan itself).  Ties: the newer ref first.
        """
        if not heading:
            return []
        pool = [
            c
            for c in self.confirmed.values()
            if c.heading == heading
            and c.verdict in verdicts
            and c.ref != exclude
            and len(c.descriptor) == DESCRIPTOR_LEN
        ]
        if not pool or len(descriptor) != DESCRIPTOR_LEN:
            return []
        # :func:`similarity` on all of them at once
        diff = np.asarray([c.descriptor for c in pool]) - np.asarray(descriptor)
        d = np.sqrt((diff**2) @ _WEIGHTS)
        sims = 1.0 / (1.0 + (d / SIMILAR_HALF) ** 2)
        found = [Similar(c.ref, float(v), c.verdict) for c, v in zip(pool, sims, strict=True)]
        found.sort(key=lambda s: (-s.similarity, -s.ref))
        return found[:k]


def library_of(
    rows: Iterable[Mapping[str, Any]], version: int, docs: Iterable[Mapping[str, Any]]
) -> ImageLibrary:
    """An :class:`ImageLibrary` from the stored rows (``_store`` reads)."""
    confirmed = {
        ref: c for ref, c in current(Confirmation.from_row(r) for r in rows).items() if c.descriptor
    }
    profiles = {d["heading"]: LearnedProfile.from_doc(d) for d in docs}
    return ImageLibrary(version, profiles, confirmed)


_CACHE: dict[str, tuple[tuple[int, int], ImageLibrary]] = {}
_CACHE_LOCK = threading.Lock()


def load_library(path: Path | str) -> ImageLibrary:
    """The library in the CIR ``path`` (its SQLite file, or a PostgreSQL URL): read-only,
    an empty library without tables.

    Cached per CIR until a confirmation or a profile version is added.

    Raises:
        LibraryError: the CIR cannot be opened or read.
    """
    key = str(path)
    try:
        db = Sql(path, read_only=True)
    except ConfigError as exc:
        raise LibraryError(
            f"cannot open the CIR {path}: {exc.message}", fix="give the CIR's cir.sqlite with --cir"
        ) from exc
    try:
        state = library_state(db)
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
            if hit is not None and hit[0] == state:
                return hit[1]
        version, docs = profile_docs(db)
        lib = library_of(confirmation_rows(db), version, docs)
    except Exception as exc:  # the engine's own error: sqlite3.Error or psycopg.Error
        if not is_sql_error(exc):
            raise
        raise LibraryError(
            f"cannot read the image library in {path}: {exc}",
            fix="give the CIR's cir.sqlite with --cir (its state_dir holds it)",
        ) from exc
    finally:
        db.close()
    with _CACHE_LOCK:
        _CACHE[key] = (state, lib)
    return lib


def live_library(path: Path | str) -> ImageLibrary | None:
    """:func:`load_library` for the live ATR: None (and a log line) when it cannot be read,
    so a broken library never costs a scan its verdict."""
    try:
        return load_library(path)
    except LibraryError as exc:
        log.warning("ATR image library not used: %s", exc.message)
        return None


# -- commands' cores ---------------------------------------------------------------------
def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def confirm(
    store: LibraryStore,
    ref: int,
    word: str,
    *,
    by: str = "",
    note: str = "",
    now_ns: int | None = None,
) -> Confirmation:
    """Record an officer's confirmation of scan ``ref``'s verdict; a correction if one exists.

    Args:
        store: The CIR's library tables.
        ref: The scan's ref (``nii cir scans``).
        word: ``green``, ``yellow`` or ``red``.
        by: Who confirms ("" = the OS user).
        note: Free text.
        now_ns: The time to record (default: now).

    Returns:
        The stored confirmation, with the verdict's heading, load features and
        descriptor copied.

    Raises:
        LibraryError: a bad verdict word, an unknown scan, a scan without a verdict or
            whose verdict is "none".
    """
    level = parse_level(word)
    if not store.has_scan(ref):
        raise LibraryError(
            f"scan ref {ref} is not in the CIR {store.path}",
            fix="check the ref with 'nii cir scans' and which CIR is used (--cir PATH)",
        )
    doc = store.verdict(ref)
    if doc is None:
        raise LibraryError(
            f"scan ref {ref} has no ATR verdict to confirm",
            fix="wait for the live ATR's verdict (nii control-room tail shows it), then confirm",
        )
    if doc.get("verdict") not in {str(v) for v in Level}:
        raise LibraryError(
            f"scan ref {ref}: the ATR gave no verdict ({doc.get('error') or doc.get('verdict')})",
            fix="only a green, yellow or red verdict can be confirmed; scan the container again",
        )
    lib = doc.get("library") or {}
    previous = store.confirmations(ref)
    row = {
        "ref": ref,
        "verdict": str(level),
        "atr_verdict": str(doc["verdict"]),
        "by": by or _user(),
        "created_ns": time.time_ns() if now_ns is None else now_ns,
        "note": note,
        "corrects": previous[-1]["id"] if previous else None,
        "heading": str(lib.get("heading") or ""),
        "load": lib.get("load"),
        "descriptor": lib.get("descriptor"),
        "profile_version": int(lib.get("profile_version") or 0),
    }
    row["id"] = store.add_confirmation(row)
    return Confirmation.from_row(row)


def learn_and_store(store: LibraryStore, now_ns: int | None = None) -> tuple[int, list[str]]:
    """Learn the profiles from every confirmation, write them as a new version.

    Returns:
        The new version (0 when there is no green confirmation with features: nothing
        is written) and :func:`changes` from the previous version.
    """
    rows = store.confirmations()
    new = learn(Confirmation.from_row(r) for r in rows)
    _, docs = profile_docs(store.db)
    old = {d["heading"]: LearnedProfile.from_doc(d) for d in docs}
    if not new:
        return 0, changes(old, new)
    version = store.put_profiles(
        [p.to_doc() for p in new.values()], time.time_ns() if now_ns is None else now_ns
    )
    return version, changes(old, new)
