"""One scan → one verdict: calibrated attenuations in, located findings out."""
# ruff: noqa: RUF002

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from core.calibration import MaterialCalibration, MaterialClass, MaterialMap
from core.scanner_cal import ScannerCalibration

from ._containers import declared_size_differs, model_for
from ._declaration import parse_gd, resolve
from ._gd import gd_consistency, load_features, tuned_profile
from ._image import bin_image, binning, check_pair, locate_container
from ._library import ImageLibrary, describe
from ._model import AtrInputError, Category, Finding, Level, Verdict, level_of
from ._physical import PhysicalImage, check_fit, to_physical
from ._profiles import RED_AT
from .detectors import DETECTORS, UNIFORM_RED_AT, Context, Scene, one_per_object, same_object

F32 = npt.NDArray[np.float32]

_MC: MaterialCalibration | None = None


def _materials() -> MaterialCalibration:
    global _MC
    if _MC is None:
        _MC = MaterialCalibration.default()
    return _MC


def material_map(phys: PhysicalImage) -> MaterialMap:
    """The material map of a scan in reference-equivalent attenuation (lines, channels).

    Pixels opaque to the scanner that took the scan (``phys.opaque``) are impenetrable
    with no Z_eff: beyond its range a pixel's ratio is the noise of its last photons.
    """
    mm = _materials().classify(phys.a_hi, phys.a_lo, smooth=None)
    if phys.opaque is not None and phys.opaque.any():
        mm.material[phys.opaque] = int(MaterialClass.IMPENETRABLE)
        mm.zeff[phys.opaque] = 0.0
    return mm


def analyze(
    a_hi: npt.ArrayLike,
    a_lo: npt.ArrayLike,
    line_mm: float,
    channel_mm: float,
    gd: dict[str, Any] | None = None,
    *,
    scan: str = "",
    scanner: ScannerCalibration | None = None,
    library: ImageLibrary | None = None,
) -> Verdict:
    """Analyse one dual-energy scan given as attenuations −ln T, (lines, channels) each.

    ``line_mm`` is the pixel size along travel, ``channel_mm`` the channel
    pitch at the vehicle's centre plane; ``gd`` the Goods Declaration (fields
    of :class:`._declaration.GoodsDeclaration`: ``hs_code``, ``commodity``,
    ``gross_weight_kg``, ``container_type``, ``declared_empty`` ...), when there
    is one; ``scanner`` the calibration of the scanner that took the scan
    (:mod:`core.scanner_cal`), without which the reference scanner is assumed;
    ``library`` the site's image library (``_library.load_library``): learned
    profiles for the commodity check and the confirmed scans the verdict's
    ``similar`` lists (none without it).

    Raises:
        AtrInputError: images, pixel size or GD that cannot be analysed.
    """
    t0 = time.perf_counter()
    if gd:
        parse_gd(gd)  # a misspelt or impossible GD is refused before any work
    hi, lo = check_pair(a_hi, a_lo)
    fl, fc = binning(line_mm, channel_mm)
    lines, channels = hi.shape
    if min(lines // fl, channels // fc) < MIN_WORK_PX:
        raise AtrInputError(
            f"the image covers only {lines * line_mm:.0f} x {channels * channel_mm:.0f} mm"
            f" ({lines} lines of {line_mm} mm, {channels} channels of {channel_mm} mm):"
            " too little to hold a container",
            fix="check the pixel size (--pixel-mm ALONG_TRAVEL HEIGHT, mm at the container)"
            " and export the full scan",
        )
    if lines * line_mm > MAX_SCAN_MM[0] or channels * channel_mm > MAX_SCAN_MM[1]:
        raise AtrInputError(
            f"at {line_mm:g} x {channel_mm:g} mm a pixel the image is"
            f" {lines * line_mm / 1000:.1f} m long and {channels * channel_mm / 1000:.1f} m high:"
            f" no container scanner covers more than {MAX_SCAN_MM[0] / 1000:.0f} x"
            f" {MAX_SCAN_MM[1] / 1000:.1f} m",
            fix="give --pixel-mm in mm at the container, along travel first, then height "
            "(e.g. --pixel-mm 5 4, not 50 40 or 4 5)",
        )
    b_hi, b_lo = bin_image(hi, fl, fc), bin_image(lo, fl, fc)
    if scanner is not None:
        check_fit(b_hi, b_lo, scanner, fl * fc)
    phys = to_physical(b_hi, b_lo, scanner, fl * fc)
    return analyze_binned(
        phys.a_hi, phys.a_lo, fl, fc, line_mm, channel_mm, gd, scan=scan, t0=t0, phys=phys,
        calibration_error=scanner.fit_error.get("areal_density_rel_rms", 0.0) if scanner else 0.0,
        library=library,
    )  # fmt: skip


def analyze_binned(
    b_hi: F32,
    b_lo: F32,
    fl: int,
    fc: int,
    line_mm: float,
    channel_mm: float,
    gd: dict[str, Any] | None = None,
    *,
    scan: str = "",
    t0: float | None = None,
    phys: PhysicalImage | None = None,
    calibration_error: float = 0.0,
    library: ImageLibrary | None = None,
) -> Verdict:
    """The analysis proper, on images already binned by (fl, fc) (see :func:`analyze`).

    ``b_hi``/``b_lo`` are reference-equivalent attenuations; ``phys`` their physical
    units (computed with the reference scanner's calibration when not given).
    """
    if t0 is None:
        t0 = time.perf_counter()
    if phys is None:
        phys = to_physical(b_hi, b_lo, None)
    mm = material_map(phys)
    frame = locate_container(b_hi, fl, fc, line_mm, channel_mm)
    if not frame.found:
        # never a wrong length silently used: every figure hangs on the container's frame
        raise AtrInputError(
            f"no container found in the scan: {frame.reason}",
            fix="check --pixel-mm (mm at the container: along travel first, then height) "
            "and that the export holds the whole container, front wall to doors",
        )
    sc = Scene.build(
        b_hi,
        mm.material,
        mm.zeff,
        frame,
        rho=phys.areal_density,
        opaque=phys.opaque if phys.short_range else None,
    )
    gd = dict(gd or {})
    decl = parse_gd(gd) if gd else None
    declared = decl.container_model if decl else None
    model = model_for(declared, frame.length_mm())
    load = load_features(sc, calibration_error, phys.calibrated)
    goods = resolve(decl) if decl is not None and not decl.declared_empty else None
    heading = goods.heading if goods is not None and goods.expectation is not None else ""
    learned = library.expectation(heading) if library is not None and heading else None
    checks, gd_findings, metal_cargo = gd_consistency(
        sc, gd, model, calibration_error=calibration_error, calibrated=phys.calibrated,
        load=load, learned=learned,
    )  # fmt: skip
    checks["scanner"] = phys.scanner
    if decl is not None and declared_size_differs(declared, frame.length_mm()):
        gd_findings.append(
            sc.finding(
                Category.GD_MISMATCH,
                0.9,
                f"declared a {declared} container, the image shows a {frame.size} one"
                f" ({frame.length_mm():.0f} mm): a wrong declaration, or a wrong --pixel-mm",
                (0, 0, sc.a.shape[0], sc.a.shape[1]),
            )
        )
    findings: list[Finding] = list(gd_findings)
    context = Context(metal_cargo=metal_cargo)
    for detector in DETECTORS:
        findings += detector.detect(sc, context)
    # a container declared empty that is not: its load is judged as what it looks like
    judged = tuned_profile(decl)
    if decl is not None and decl.declared_empty and checks.get("looks_like"):
        judged = str(checks["looks_like"])
    findings = [
        f
        for f in (
            _rescale(f, gd if f.category == Category.NOT_EMPTY else {"declared_commodity": judged})
            for f in findings
        )
        if f.level != Level.GREEN
    ]
    findings = _explain(one_per_object(findings))
    container = {
        "model": model.code,
        "found": frame.found,
        "front_px": frame.front * fl,
        "back_px": frame.back * fl,
        "floor_px": frame.floor * fc,
        "length_mm": round(frame.length_mm()),
        "iso_size": frame.size,
        "reason": frame.reason,
    }
    descriptor = describe(sc, load)
    similar = library.similar(heading, descriptor) if library is not None else []
    return Verdict.of(
        findings,
        gd_checks=checks,
        container=container,
        elapsed_ms=(time.perf_counter() - t0) * 1000.0,
        scan=scan,
        similar=[s.to_dict() for s in similar],
        library={
            "heading": heading,
            "profile_version": library.version if learned is not None and library else 0,
            "load": {k: round(v, 4) for k, v in asdict(load).items()},
            "descriptor": list(descriptor),
        },
    )


#: Fewest working pixels (about 11 mm each) the image must have both ways: 180 mm.
MIN_WORK_PX = 16
#: Largest scene a container scanner images, mm (along travel, height): a tractor with
#: a 45 ft trailer and margins is under 25 m, a high cube on a trailer under 4.5 m high.
MAX_SCAN_MM = (30000.0, 6500.0)


#: Categories of compact objects found by their excess over the cargo around them.
OBJECT_CATEGORIES = frozenset(
    {
        Category.DENSE_OBJECT,
        Category.HIGH_Z_OBJECT,
        Category.IMPENETRABLE_OBJECT,
        Category.FIREARM,
        Category.ORGANIC_IN_METAL,
    }
)
#: Categories of structural concealment (layers and compartments of the container).
STRUCTURAL_CATEGORIES = frozenset({Category.FALSE_WALL, Category.DOUBLE_FLOOR})
#: The false-wall detector compares the compartment with this much of the cargo behind it.
FALSE_WALL_BEHIND_MM = 1200.0
#: At most this many object findings per scan stay red; the others are shown yellow.
MAX_RED_OBJECTS = 3
#: An object finding scoring under this share of the scan's strongest red located finding
#: is shown yellow: the examiner goes first where the image is surest.
RED_SHARE = 0.5
#: Findings with a place in the container (not the GD comparisons of the whole load).
LOCATED_CATEGORIES = OBJECT_CATEGORIES | STRUCTURAL_CATEGORIES | {Category.UNDECLARED_VEHICLE}


def _inside(f: Finding, box: list[int]) -> bool:
    """Whether the centre of ``f``'s pixel box lies in ``box`` (both [c0, r0, c1, r1])."""
    if len(f.bbox_px) != 4 or len(box) != 4:
        return False
    cx = (f.bbox_px[0] + f.bbox_px[2]) / 2
    cy = (f.bbox_px[1] + f.bbox_px[3]) / 2
    return box[0] <= cx < box[2] and box[1] <= cy < box[3]


def _overlap(a: list[int], b: list[int]) -> bool:
    """Whether two pixel boxes [c0, r0, c1, r1] intersect."""
    return (
        len(a) == 4 and len(b) == 4 and a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
    )


def _explain(findings: list[Finding]) -> list[Finding]:
    """Let the strongest explanation stand, so an analyst is sent to the right place.

    Where a red vehicle and a red false wall or double floor overlap, the
    stronger finding stays red and the other shows yellow: the ends of such a
    layer can look like wheels, and a car's underbody fills the gaps between
    the packages round it down to the floor.  A false
    wall with a red vehicle right behind it shows only yellow: the load in
    front of a car is denser than the car's space behind it.  Object
    findings inside a red undeclared vehicle are its engine, wheels and frame,
    those inside a red false wall or double floor are the goods it hides: the
    vehicle or the layer explains them and they are dropped.  Two organic
    regions in metal cargo that stand on the floor a wheelbase apart are the
    tyres of a vehicle (:func:`_tyre_pairs`).  Of the remaining object
    findings only the :data:`MAX_RED_OBJECTS` strongest stay red, and only
    those scoring at least :data:`RED_SHARE` of the strongest red located
    finding; the others are shown yellow (still listed, for review): a scan
    with a dozen red regions sends nobody anywhere.
    """
    # one object, one finding: a dense or high-Z blob that is also impenetrable keeps the
    # stronger of its two findings (the impenetrable one on a tie)
    solid = [f for f in findings if f.category == Category.IMPENETRABLE_OBJECT]
    blobs = [f for f in findings if f.category in (Category.DENSE_OBJECT, Category.HIGH_Z_OBJECT)]
    weaker = {id(b if b.score <= w.score else w) for w in solid for b in blobs if same_object(w, b)}
    findings = [f for f in findings if id(f) not in weaker]
    findings += _tyre_pairs(findings)
    # a red vehicle over a red false wall or double floor: the stronger explains the other
    # (the ends of a layer can look like wheels; a car's underbody fills the gaps between
    # the packages round it down to the floor)
    red_layers = [
        f for f in findings if f.category in STRUCTURAL_CATEGORIES and f.level == Level.RED
    ]
    for car in [
        f for f in findings if f.category == Category.UNDECLARED_VEHICLE and f.level == Level.RED
    ]:
        over = [g for g in red_layers if _overlap(car.bbox_px, g.bbox_px)]
        if any(g.score >= car.score for g in over):
            car.level = Level.YELLOW
        for g in over if car.level == Level.RED else []:
            g.level = Level.YELLOW
            g.reason += " (or the vehicle over it)"
    cars_mm = [
        f.bbox_mm
        for f in findings
        if f.level == Level.RED and f.category == Category.UNDECLARED_VEHICLE
    ]
    for f in findings:
        near = any(0.0 <= c[0] - f.bbox_mm[2] <= FALSE_WALL_BEHIND_MM for c in cars_mm)
        if f.category == Category.FALSE_WALL and f.level == Level.RED and near:
            # the goods in front end at a vehicle: the contrast is the car's empty space
            f.level = Level.YELLOW
            f.reason += " (or the goods in front of the vehicle behind it)"
    # what a red vehicle holds is its engine, wheels and frame; what a red false wall or
    # double floor holds is the goods it hides
    cars = [
        f.bbox_px
        for f in findings
        if f.level == Level.RED and f.category == Category.UNDECLARED_VEHICLE
    ]
    kept = [
        f
        for f in findings
        if not (f.category in OBJECT_CATEGORIES and any(_inside(f, v) for v in cars))
    ]
    kept += _floor_layer(kept)
    layers = [
        f.bbox_px for f in kept if f.level == Level.RED and f.category in STRUCTURAL_CATEGORIES
    ]
    kept = [
        f
        for f in kept
        if not (f.category in OBJECT_CATEGORIES and any(_inside(f, v) for v in layers))
    ]
    kept = _merge_organic(kept)
    reds = sorted(
        (f for f in kept if f.category in OBJECT_CATEGORIES and f.level == Level.RED),
        key=lambda f: -f.score,
    )
    strongest = max(
        (f.score for f in kept if f.level == Level.RED and f.category in LOCATED_CATEGORIES),
        default=0.0,
    )
    for i, f in enumerate(reds):
        if i >= MAX_RED_OBJECTS or f.score < RED_SHARE * strongest:
            f.level = Level.YELLOW
    return kept


#: Organic regions in metal cargo less than this far apart (mm, both ways) are one mass.
ORGANIC_JOIN_MM = 300.0


def _merge_organic(findings: list[Finding]) -> list[Finding]:
    """Organic regions in metal cargo close together as one finding: one package, in pieces.

    A package among metal goods shows where the metal lets it: a strip
    through a gap between coils, a corner beside a plate.  Regions less than
    :data:`ORGANIC_JOIN_MM` apart are outlined together (the strongest
    region's score and measures, the box round them all), so the examiner
    is sent to the package, once.
    """
    cat = Category.ORGANIC_IN_METAL
    pieces = [f for f in findings if f.category == cat]
    groups: list[list[Finding]] = []
    for f in sorted(pieces, key=lambda f: -f.score):
        near = [g for g in groups if any(_gap_mm(f, h) <= ORGANIC_JOIN_MM for h in g)]
        for g in near[1:]:
            near[0].extend(g)
            groups.remove(g)
        if near:
            near[0].append(f)
        else:
            groups.append([f])
    merged: list[Finding] = []
    for g in groups:
        top = max(g, key=lambda f: f.score)
        if len(g) > 1:
            top.bbox_px = [
                min(f.bbox_px[0] for f in g),
                min(f.bbox_px[1] for f in g),
                max(f.bbox_px[2] for f in g),
                max(f.bbox_px[3] for f in g),
            ]
            top.bbox_mm = [
                min(f.bbox_mm[0] for f in g),
                min(f.bbox_mm[1] for f in g),
                max(f.bbox_mm[2] for f in g),
                max(f.bbox_mm[3] for f in g),
            ]
            top.size_mm = [top.bbox_mm[2] - top.bbox_mm[0], top.bbox_mm[3] - top.bbox_mm[1]]
            top.reason = (
                f"organic mass over {top.size_mm[0]:.0f} x {top.size_mm[1]:.0f} mm inside"
                f" metal cargo, seen in {len(g)} regions"
            )
        merged.append(top)
    return [f for f in findings if f.category != cat] + merged


def _gap_mm(f: Finding, g: Finding) -> float:
    """The larger of the two gaps (mm, along travel and up) between two findings' boxes."""
    a, b = f.bbox_mm, g.bbox_mm
    return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3], 0.0)


def _tyres(findings: list[Finding]) -> list[list[Finding]]:
    """Organic-in-metal findings grouped into tyres: rubber seen round a steel rim.

    Where plates of machinery or scrap cover part of a wheel its rubber shows
    in pieces (the two sides of the ring, with the rim between them); pieces
    whose bottoms lie within 500 mm of the floor and that lie less than
    :data:`TYRE_GAP_MM` apart along travel are one tyre if together they span
    300 to 900 mm and reach at least 300 mm above the floor (a layer on the
    floor does not).
    """
    pieces = sorted(
        (
            f
            for f in findings
            if f.category == Category.ORGANIC_IN_METAL
            and f.level != Level.GREEN
            and f.bbox_mm[1] <= 500.0
        ),
        key=lambda f: f.bbox_mm[0],
    )
    groups: list[list[Finding]] = []
    for f in pieces:
        if groups and f.bbox_mm[0] - max(g.bbox_mm[2] for g in groups[-1]) <= TYRE_GAP_MM:
            groups[-1].append(f)
        else:
            groups.append([f])
    return [
        g
        for g in groups
        if 300.0 <= max(f.bbox_mm[2] for f in g) - g[0].bbox_mm[0] <= 900.0
        and max(f.bbox_mm[3] for f in g) >= 300.0
    ]


#: Largest gap along travel between two pieces of one tyre: a wheel's steel rim.
TYRE_GAP_MM = 400.0


def _tyre_pairs(findings: list[Finding]) -> list[Finding]:
    """Undeclared vehicles told by their tyres: rubber in metal cargo, a wheelbase apart.

    Among machinery or scrap the ring of a wheel is lost, but its rubber is
    the one organic material there: two tyres (:func:`_tyres`) whose centres
    are 2.3 to 3.0 m apart are a vehicle's wheels.  The finding spans the car
    (0.75 m before the front wheel to 0.9 m behind the rear one, 1.5 m high)
    and takes the weaker tyre's score (its strongest piece's; already scaled:
    1.0 is red).
    """
    tyres = [
        (
            (g[0].bbox_mm[0] + max(f.bbox_mm[2] for f in g)) / 2,
            max(f.score for f in g),
            max(g, key=lambda f: f.score),
        )
        for g in _tyres(findings)
    ]
    best: tuple[float, tuple[float, float, Finding], tuple[float, float, Finding]] | None = None
    for front in tyres:
        for rear in tyres:
            s = min(front[1], rear[1])
            if 2300.0 <= rear[0] - front[0] <= 3000.0 and (best is None or s > best[0]):
                best = (s, front, rear)
    if best is None:
        return []
    s, (ca, _, a), (cb, _, b) = best
    mm_px = (a.bbox_mm[2] - a.bbox_mm[0]) / max(1, a.bbox_px[2] - a.bbox_px[0])
    mm_row = (a.bbox_mm[3] - a.bbox_mm[1]) / max(1, a.bbox_px[3] - a.bbox_px[1])
    x0, x1 = ca - 750.0, cb + 900.0
    # down to the container's floor (tyres stand on it) and the floor itself
    floor_px = a.bbox_px[3] + round((a.bbox_mm[1] + 200.0) / mm_row)
    c0 = a.bbox_px[0] - round((a.bbox_mm[0] - x0) / mm_px)
    c1 = b.bbox_px[2] + round((x1 - b.bbox_mm[2]) / mm_px)
    r0 = floor_px - round(1500.0 / mm_row)
    return [
        Finding(
            category=Category.UNDECLARED_VEHICLE,
            score=s,
            level=level_of(s),
            reason=f"two tyres (organic in metal cargo) {cb - ca:.0f} mm apart: vehicle",
            bbox_px=[c0, r0, c1, floor_px],
            bbox_mm=[x0, 0.0, x1, 1500.0],
            size_mm=[x1 - x0, 1500.0],
            mean_attenuation=(a.mean_attenuation + b.mean_attenuation) / 2,
            mean_density_gcm2=(a.mean_density_gcm2 + b.mean_density_gcm2) / 2,
            material="organic",
            zeff=(a.zeff + b.zeff) / 2,
        )
    ]


def _floor_layer(findings: list[Finding]) -> list[Finding]:
    """Organic on the floor under metal cargo, over 1.2 m or more: a double floor.

    Where no metal stands on it the container's plywood floor, or the goods
    under a false floor, show as organic regions no higher than 200 mm above
    the floor.  Spread over 1.2 m or more of the floor they are one layer,
    reported once as a double floor (scored as its strongest region), which
    then explains the regions.
    """
    parts = [
        f
        for f in findings
        if f.category == Category.ORGANIC_IN_METAL
        and f.level != Level.GREEN
        and f.bbox_mm[3] <= 200.0
    ]
    if len(parts) < 2:
        return []
    x0 = min(f.bbox_mm[0] for f in parts)
    x1 = max(f.bbox_mm[2] for f in parts)
    if x1 - x0 < 1200.0:
        return []
    top = max(parts, key=lambda f: f.score)
    # the layer spans the floor band the double-floor detector looks at: the lowest 300 mm
    # (the hidden goods and the plate over them, spread by the fan's perspective)
    mm_row = (top.bbox_mm[3] - top.bbox_mm[1]) / max(1, top.bbox_px[3] - top.bbox_px[1])
    floor_px = top.bbox_px[3] + round(top.bbox_mm[1] / mm_row)
    px = [
        min(f.bbox_px[0] for f in parts),
        floor_px - round(300.0 / mm_row),
        max(f.bbox_px[2] for f in parts),
        floor_px,
    ]
    return [
        Finding(
            category=Category.DOUBLE_FLOOR,
            score=top.score,
            level=level_of(top.score),
            reason=f"organic layer on the floor under metal cargo over {x1 - x0:.0f} mm"
            f" ({len(parts)} regions): double floor",
            bbox_px=px,
            bbox_mm=[x0, 0.0, x1, 300.0],
            size_mm=[x1 - x0, 300.0],
            mean_attenuation=top.mean_attenuation,
            mean_density_gcm2=top.mean_density_gcm2,
            material="organic",
            zeff=top.zeff,
        )
    ]


def _rescale(f: Finding, gd: dict[str, Any]) -> Finding:
    """Divide a raw score by its red threshold (by category and declared commodity)."""
    table = UNIFORM_RED_AT if f.basis == "texture" else RED_AT.get(f.category)
    if not table:
        return f
    declared = str(gd.get("declared_commodity", "") or "")
    f.score = f.score / table.get(declared, table.get("*", 1.0))
    f.level = level_of(f.score)
    return f
