# ruff: noqa: RUF002
"""Cargo scans of any scanner model, written as case folders a portable ATR reads.

A case folder holds ``high.tiff`` and ``low.tiff`` (uint16, flat-field
calibrated transmission × 65535, rows = detector channels with the top of the
scene at row 0, columns = lines along travel) and ``case.json``:

- ``pixel_mm``: [along travel, height] in mm at the vehicle's centre plane;
- ``scanner``: the scanner model's name;
- ``gd``: the Goods Declaration in a neutral form (``commodity``, ``hs_code``
  of four digits, ``gross_weight_kg``, ``container_type`` ``20ft``/``40ft``/
  ``45ft``, ``declared_empty``);
- ``truth``: ``kind`` and ``findings`` [{``category``, ``bbox_mm``
  [left, top, right, bottom] in mm from the image's left and top edges}];
- ``actual_commodity``, ``actual_gross_kg``;
- ``pair_of``: for the exit scan (Scan B) of an ATT transit, the folder name
  of its entry scan (Scan A), else null.

The layout is the one of the independent sample cases kept with the project's
shared samples (their README); nothing else of them is used here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

from ._cargo import CONCEALMENTS, Scenario, object_mass_kg
from ._geometry import Fan, SceneObject
from ._models import SCANNER_MODELS, ScannerModel, scanner_model
from ._source import PhysicsScan, PhysicsSource, build_scenario
from ._transit import BELT_SPEED_RANGE, TAMPER_KINDS, tamper

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]

#: The category a finding of each concealment is reported under.
CATEGORIES: dict[str, str] = {
    "false wall": "false_wall",
    "double floor": "double_floor",
    "high-density block": "dense_block",
    "organic in metal": "organic_in_metal",
    "high-Z block": "high_z",
    "firearms": "gun_like",
    "vehicle": "vehicle",
}
#: What ``export_case(kind=...)`` accepts besides a concealment or its category.
PLAIN_KINDS = ("clean", "lie", "empty", "att")
#: Neutral container types of the ISO codes.
CONTAINER_TYPES = {"20GP": "20ft", "20HC": "20ft", "40GP": "40ft", "40HC": "40ft", "45HC": "45ft"}


def flat_field(scan: PhysicsScan, status: npt.NDArray[np.int8]) -> tuple[F32, F32]:
    """Calibrated transmissions (T_high, T_low), each (lines, channels) float32.

    T = (counts − dark) / (air − dark) per channel from the scan's own
    calibration lines, as a scanner's preprocessing makes them; the channels
    the array's map marks bad (``status`` != 0) are filled from their nearest
    good neighbours (linear across channels).
    """
    out = []
    good = np.nonzero(status == 0)[0]
    for img, dark, air in (
        (scan.img_hi, scan.dark_hi, scan.air_hi),
        (scan.img_lo, scan.dark_lo, scan.air_lo),
    ):
        d = dark.astype(np.float64).mean(axis=0)
        a = air.astype(np.float64).mean(axis=0)
        span = np.where(a - d > 1.0, a - d, 1.0)
        t = (img.astype(np.float64) - d) / span
        if 0 < good.size < t.shape[1]:
            bad = np.nonzero(status != 0)[0]
            for row in t:
                row[bad] = np.interp(bad, good, row[good])
        out.append(t.astype(np.float32))
    return out[0], out[1]


def to_u16(t: npt.NDArray[np.floating[Any]]) -> U16:
    """Transmission (lines, channels) → uint16 image (channels, lines): rint(T × 65535), clipped."""
    return np.ascontiguousarray(np.rint(np.clip(t, 0.0, 1.0) * 65535.0).astype(np.uint16).T)


def ensure_folder(folder: Path) -> None:
    """Make ``folder`` (and its parents) before anything is simulated for it.

    Raises:
        ConfigError: it cannot be made, or it is not a folder one can write in.
    """
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"{folder} is a file, not a folder",
            fix="Give --out a folder (it is created if missing).",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"cannot write to {folder}: {exc.strerror or exc}",
            fix="Give an --out directory you can write to (it is created if missing).",
        ) from exc


def write_images(folder: Path, high: U16, low: U16, doc: dict[str, Any], doc_name: str) -> None:
    """Write ``high.tiff``, ``low.tiff`` (16-bit, OpenCV) and ``doc_name`` (JSON) to ``folder``.

    Raises:
        ConfigError: the folder cannot be made or written.
    """
    import cv2  # OpenCV writes 16-bit TIFF; tifffile is not a dependency

    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"{folder} is a file, not a folder",
            fix="Give --out a folder (it is created if missing).",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, img in (("high.tiff", high), ("low.tiff", low)):
            if not cv2.imwrite(str(folder / name), img):
                raise OSError(f"OpenCV could not write {folder / name}")
        (folder / doc_name).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    except (OSError, cv2.error) as exc:
        raise ConfigError(
            f"cannot write to {folder}: {exc}",
            fix="Give an --out directory you can write to (it is created if missing).",
        ) from exc


def kind_of(kind: str) -> str:
    """The canonical case kind: a plain kind, or the concealment a kind or category names.

    Raises:
        ConfigError: not a kind ``export_case`` knows.
    """
    if kind in PLAIN_KINDS or kind in CONCEALMENTS:
        return kind
    for concealment, category in CATEGORIES.items():
        if kind == category:
            return concealment
    known = [*PLAIN_KINDS, *CATEGORIES.values()]
    raise ConfigError(
        f"unknown case kind {kind!r}",
        fix=f"Use one of: {', '.join(known)} (or a concealment: {', '.join(CONCEALMENTS)}).",
    )


def _neutral_gd(gd: dict[str, Any]) -> dict[str, Any]:
    declared = str(gd.get("declared_commodity", "empty"))
    hs = "".join(ch for ch in str(gd.get("hs_code", "")) if ch.isdigit())[:4]
    code = str(gd.get("container_type", ""))
    return {
        "commodity": declared,
        "hs_code": hs,
        "gross_weight_kg": round(float(gd.get("gross_weight_kg", 0.0))),
        "container_type": CONTAINER_TYPES.get(code, code),
        "declared_empty": declared == "empty",
    }


def _bbox_mm(boxes: Sequence[tuple[float, ...]], fan: Fan, length_mm: float) -> list[float] | None:
    """[left, top, right, bottom] mm from the image's edges of the union of scene boxes."""
    if not boxes:
        return None
    pitch = fan.pitch_mm()
    ys: list[float] = []
    rows: list[float] = []
    for x0, x1, y0, y1, z0, z1 in boxes:
        ys += [y0, y1]
        rows += [(fan.channel_of(x, z) + 0.5) * pitch for x in (x0, x1) for z in (z0, z1)]
    height = fan.channels * pitch
    left, right = max(0.0, min(ys)), min(length_mm, max(ys))
    top, bottom = max(0.0, min(rows)), min(height, max(rows))
    return [round(left, 1), round(top, 1), round(right, 1), round(bottom, 1)]


def _truth(sc: Scenario, objects: list[SceneObject], fan: Fan, length: float) -> dict[str, Any]:
    if sc.concealment is not None:
        # one finding per truth group (each weapon lying alone, or weapons packed
        # together); objects without a group (0) make one finding together
        groups: dict[int, list[tuple[float, ...]]] = {}
        for o in objects:
            if o.kind == "concealment" and o.truth:
                groups.setdefault(o.group, []).append(o.bounds())
        cat = CATEGORIES[sc.concealment]
        boxes = [_bbox_mm(groups[g], fan, length) for g in sorted(groups)]
        return {"kind": cat, "findings": [{"category": cat, "bbox_mm": b} for b in boxes if b]}
    if sc.commodity is None:
        return {"kind": "empty", "findings": []}
    return {"kind": "clean" if sc.gd_truthful else "lie", "findings": []}


def _scan(
    model: ScannerModel,
    objects: list[SceneObject],
    length_mm: float,
    line_pitch_mm: float,
    rng: np.random.Generator,
    detector_seed: int,
) -> tuple[U16, U16, float, float, Fan]:
    src = PhysicsSource.for_model(model, detector_seed=detector_seed)
    lines = max(1, math.ceil(length_mm / line_pitch_mm))
    length = lines * line_pitch_mm
    scan = src.simulate_objects(objects, length, model.channels, lines, rng)
    t_hi, t_lo = flat_field(scan, src.channel_state(model.channels).status)
    return to_u16(t_hi), to_u16(t_lo), line_pitch_mm, length, model.fan()


def export_case(
    model: str | ScannerModel,
    seed: int,
    case_id: int,
    out_dir: str | Path,
    kind: str | None = None,
    *,
    pair_model: str | ScannerModel | None = None,
    att_tamper: str | None = None,
    variety: bool = True,
    detector_seed: int = 1,
    commodity: str | None = None,
    container: str | None = None,
) -> list[Path]:
    """Simulate one cargo case on ``model`` and write it as a case folder under ``out_dir``.

    The folder is ``out_dir / f"{case_id:04d}_{truth kind}"``.  ``kind`` fixes
    what the case is: ``clean`` (truthful GD, nothing hidden), ``lie`` (the GD
    misstates commodity or weight), ``empty`` (an empty container declared
    empty), a concealment (one of :data:`CONCEALMENTS` or its category in
    :data:`CATEGORIES`), or ``att``: an ATT transit, Scan A on ``model`` and
    Scan B (folder ``..._att_exit``, ``pair_of`` naming Scan A's) on
    ``pair_model`` (default: the next model in :data:`SCANNER_MODELS`) at a
    speed 0.85–1.15 times its nominal one, with ``att_tamper`` (one of
    :data:`TAMPER_KINDS`) done to the cargo in between if given.  None draws
    the case as the live simulator does.  The same arguments give the same files.

    Args:
        model: the scanner model (name or model) of the scan (Scan A for ``att``).
        seed: the scenario seed; with ``case_id`` it fixes cargo and noise.
        case_id: the case's number (also its container and GD numbers).
        out_dir: the parent folder of the case folder(s); created if missing.
        kind: see above.
        pair_model: Scan B's model for ``att``.
        att_tamper: what was done to the cargo between Scan A and Scan B.
        variety: draw containers, vehicles and packing with the added variety.
        detector_seed: fixes the detector array of ``model`` (Scan B's is the next seed).
        commodity, container: fix the load's commodity or the container code (as
            ``build_scenario`` takes them); None draws them.

    Returns:
        The case folders written (two for ``att``).

    Raises:
        ConfigError: an unknown model, kind or tamper, or an unwritable ``out_dir``.
    """
    m = scanner_model(model)
    what = kind_of(kind) if kind is not None else None
    root = Path(out_dir)
    if att_tamper is not None and att_tamper not in TAMPER_KINDS:
        raise ConfigError(
            f"unknown ATT tamper {att_tamper!r}", fix=f"Use one of: {', '.join(TAMPER_KINDS)}."
        )
    if pair_model is not None:
        scanner_model(pair_model)
    ensure_folder(root)
    fixed: dict[str, Any] = {}
    if what in ("clean", "att"):
        fixed = {"concealment": "", "lie": False, "empty": False}
    elif what == "lie":
        fixed = {"concealment": "", "lie": True, "empty": False}
    elif what == "empty":
        fixed = {"concealment": "", "lie": False, "empty": True}
    elif what is not None:
        fixed = {"concealment": what, "lie": False, "empty": False}
    rng = np.random.default_rng([seed, case_id])
    if commodity is not None:
        fixed["commodity"] = commodity
    if container is not None:
        fixed["container"] = container
    sc = build_scenario(rng, case_id, variety=variety, **fixed)
    hi, lo, pitch, length, fan = _scan(
        m, sc.objects, sc.length_mm, m.line_pitch_mm, rng, detector_seed
    )
    truth = _truth(sc, sc.objects, fan, length)
    if what == "att":
        truth = {"kind": "att", "findings": []}
    base = {
        "gd": _neutral_gd(sc.gd),
        "actual_commodity": sc.commodity or "empty",
        "actual_gross_kg": round(sc.container.tare_kg + sc.cargo_kg),
    }
    name_a = f"{case_id:04d}_{truth['kind']}"
    doc = {
        "pixel_mm": [pitch, fan.pitch_mm()],
        **base,
        "truth": truth,
        "pair_of": None,
        "scanner": m.name,
    }
    write_images(root / name_a, hi, lo, doc, "case.json")
    if what != "att":
        return [root / name_a]
    # Scan B: the same container further on, another scanner, another speed, fresh noise
    names = list(SCANNER_MODELS)
    mb = (
        scanner_model(pair_model)
        if pair_model is not None
        else SCANNER_MODELS[names[(names.index(m.name) + 1) % len(names)]]
        if m.name in SCANNER_MODELS
        else SCANNER_MODELS[names[0]]
    )
    rng_b = np.random.default_rng([seed, case_id, 2])
    speed = float(rng_b.uniform(*BELT_SPEED_RANGE))
    objects = list(sc.objects)
    findings: list[dict[str, Any]] = []
    if att_tamper is not None:
        objects, changed = tamper(objects, sc, att_tamper, rng_b)
        inner = (sc.container.width / 2, sc.deck_z + 160.0, sc.deck_z + sc.container.height)
        box = (-inner[0], inner[0], changed[0], changed[1], inner[1], inner[2])
        findings = [{"category": f"att_{att_tamper}", "bbox_mm": None, "_box": box}]
    hi_b, lo_b, pitch_b, length_b, fan_b = _scan(
        mb, objects, sc.length_mm, mb.line_pitch_mm * speed, rng_b, detector_seed + 1
    )
    for f in findings:
        f["bbox_mm"] = _bbox_mm([f.pop("_box")], fan_b, length_b)
    if att_tamper is not None:  # what is in the container now
        kg = sum(object_mass_kg(o) for o in objects if o.kind in ("cargo", "concealment"))
        base["actual_gross_kg"] = round(sc.container.tare_kg + kg)
    doc_b = {
        "pixel_mm": [pitch_b, fan_b.pitch_mm()],
        **base,
        "truth": {"kind": "att", "findings": findings},
        "pair_of": name_a,
        "scanner": mb.name,
    }
    name_b = f"{case_id:04d}_att_exit"
    write_images(root / name_b, hi_b, lo_b, doc_b, "case.json")
    return [root / name_a, root / name_b]
