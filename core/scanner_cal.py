"""Per-scanner dual-energy calibration from a commissioning step-wedge scan.

When a scanner is installed the site scans a test object of step wedges of
known materials and thicknesses (polyethylene, aluminium, steel, lead).  Each
step gives, for that scanner's spectra and detector, the attenuations
(A_high, A_low) = (−ln T_high, −ln T_low) of a known areal density ρt (g/cm²)
of a known effective atomic number Z.  :func:`fit` turns the steps into a
:class:`ScannerCalibration`:

* per material, the curves A_high(ρt) and R(A_high) with R = A_high / A_low
  (at MeV energies pair production grows with Z and photon energy while
  Compton scattering falls with energy, so R rises with Z at a given
  attenuation);
* the inverse map (A_high, A_low) → (ρt, Z_eff): at the pixel's A_high the
  materials' R values are interpolated in log Z to the pixel's R, and ρt is
  read off the same interpolation between the materials' ρt(A_high) curves
  (:meth:`ScannerCalibration.decompose`);
* the forward map (ρt, Z_eff) → (A_high, A_low) (:meth:`ScannerCalibration.forward`),
  which lets images of any calibrated scanner be expressed as the attenuation a
  reference scanner would have measured through the same matter;
* the noise model σ²(A) = a + b·e^A per energy (photon statistics grow as
  1/T, electronic noise is constant), fitted on the steps' pixel spread, and
  the highest usable attenuation (beyond it the low-energy image is noise:
  impenetrable);
* the fit's own error, by leaving each step out in turn.

Effective Z of a compound is its electron-weighted mean Z (the ratio of pair
production to Compton scattering per electron grows about linearly with Z at
MeV energies); atomic weights are IUPAC's standard atomic weights (2021,
abridged to four figures).

The wedge scan's format (``wedges.json`` beside ``high.tiff`` and
``low.tiff``) is described in ``docs/atr.md`` ("Scanner calibration").
"""
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from core.calibration import MaterialCalibration, box_smooth
from core.errors import NiiError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

#: Identifier of the JSON document :meth:`ScannerCalibration.to_json` writes.
FORMAT = "nii-scanner-calibration/1"

#: Standard atomic weights (IUPAC 2021, four figures) of the elements a test object is made of.
ATOMIC_WEIGHT: dict[int, float] = {
    1: 1.008, 5: 10.81, 6: 12.011, 7: 14.007, 8: 15.999, 9: 18.998, 11: 22.990,
    12: 24.305, 13: 26.982, 14: 28.085, 15: 30.974, 16: 32.06, 17: 35.45, 19: 39.098,
    20: 40.078, 22: 47.867, 24: 51.996, 25: 54.938, 26: 55.845, 27: 58.933, 28: 58.693,
    29: 63.546, 30: 65.38, 40: 91.224, 42: 95.95, 47: 107.87, 48: 112.41, 50: 118.71,
    51: 121.76, 53: 126.90, 56: 137.33, 64: 157.25, 73: 180.95, 74: 183.84, 78: 195.08,
    79: 196.97, 82: 207.2, 83: 208.98, 92: 238.03,
}  # fmt: skip

#: Per-pixel 1-σ of A_low above which a step is too dark to use (the ATR averages
#: ~8 pixels: 0.35 becomes ~0.12, still far below the R differences between materials).
USABLE_SIGMA_LO = 0.35
#: Share of pixels at zero counts above which a step is impenetrable.
USABLE_ZERO_SHARE = 0.005
#: Fewest pixels a step's box must hold.
MIN_STEP_PIXELS = 30
#: A_high of the working look-up tables' axis, and R's range.
LUT_A_MAX = 16.0
LUT_R = (0.55, 1.25)
LUT_SHAPE = (321, 701)  # (A_high nodes, R nodes)
#: Areal density axis of the forward table, g/cm², and its node count.
FWD_RHO_MAX = 500.0
FWD_SHAPE = (401, 121)  # (ρt nodes, log Z nodes)
#: Transmission floor when converting 16-bit images (one count of 65535).
T_FLOOR = 1.0 / 65535.0


#: Mass attenuation A_high / ρt (cm²/g) a step of any element may show in a 2.5–9 MeV
#: bremsstrahlung spectrum.  NIST XCOM (Berger et al., NBSIR 87-3597, physics.nist.gov/xcom)
#: gives μ/ρ ≈ 0.02–0.06 cm²/g for Z 1–92 at 1–6 MeV (hydrogen-rich plastics ≈ 0.07 at
#: 1 MeV); the bounds leave a factor 2 each way for the spectra's soft part, scatter and
#: beam hardening.  Outside them the areal densities are in the wrong unit.
MU_RHO_RANGE = (0.01, 0.12)
#: A typical MeV mass attenuation (cm²/g), to say how many times a unit is off.
MU_RHO_TYPICAL = 0.04
#: R = A_high / A_low through matter at MeV energies: below 1 (the low energy attenuates
#: more), 0.75–0.98 on the scanners seen; outside this range the pair is not two energies.
R_RANGE = (0.6, 1.0)
#: Leave-one-out Z_eff error (RMS of ln(Z_read / Z_true)) above which a fit is refused:
#: ln 2, a factor 2.  The test object's neighbouring materials are a factor 2–3 apart in Z
#: (polyethylene 5.3, aluminium 13, steel 25.6, lead 82), so beyond it a typical step is
#: read as its neighbour and the calibration cannot tell materials apart.  Honest scans give
#: 0.01–0.14 (steps the energies cannot place left out, :func:`_leave_one_out`); swapped or
#: identical energies give 1.6.
MAX_ZEFF_LOG_RMS = math.log(2.0)
#: Correlation of the two energies' pixel noise within the steps above which the low image
#: is the high one rescaled: each energy's detector counts its own photons (≈ 0 expected).
MAX_NOISE_CORRELATION = 0.7
#: :meth:`ScannerCalibration.misfit`: pixels with material information have A_high above
#: this; R further than ``MISFIT_SIGMAS`` σ outside the calibrated band counts, σ being the
#: noise model's plus a systematic floor (the fit's own R scatter between neighbouring
#: steps, ≈ 0.002–0.004 on the scans seen).
MISFIT_A_MIN = 0.5
MISFIT_SIGMAS = 4.0
MISFIT_R_FLOOR = 0.004


class CalibrationError(NiiError):
    """A wedge scan or a scanner calibration file that cannot be used."""


def effective_z(fractions_by_z: Mapping[int, float]) -> float:
    """Electron-weighted mean atomic number of a compound.

    Args:
        fractions_by_z: weight fraction of each element, by atomic number (sums to ~1).

    Raises:
        CalibrationError: an element without a standard atomic weight here, or no mass.
    """
    num = 0.0
    den = 0.0
    for z, w in fractions_by_z.items():
        if z not in ATOMIC_WEIGHT:
            raise CalibrationError(
                f"element Z={z} has no atomic weight in the calibration's table",
                fix="describe the wedge with common elements (H, C, O, Al, Fe, Cu, Sn, W, Pb, ...)",
            )
        electrons = w * z / ATOMIC_WEIGHT[z]
        num += electrons * z
        den += electrons
    if den <= 0.0:
        raise CalibrationError(
            "a wedge material has no elements with positive weight fractions",
            fix="give weight_fractions_by_Z with fractions that sum to 1",
        )
    return num / den


def document_sha256(doc: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a calibration document in canonical JSON (sorted keys, no spaces).

    The same calibration gives the same digest wherever it travels (edge
    configuration, scan-start records, the CIR's ``scanner_calibrations`` table, UFF
    packages), however its JSON was spaced.
    """
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- the wedge scan -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WedgeStep:
    """One step of the test object: material, thickness, areal density and its image box.

    ``bbox`` is [col0, row0, col1, row1] in pixels, end-exclusive; columns are scan
    lines, rows detector channels (the layout of ``nii atr analyze``'s images).
    """

    material: str
    thickness_mm: float
    areal_density: float  # g/cm²
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class WedgeScan:
    """A commissioning scan: its transmissions and what the test object holds."""

    scanner: str
    pixel_mm: tuple[float, float]
    materials: dict[str, float]  # name → effective Z
    steps: tuple[WedgeStep, ...]
    t_hi: F32  # transmission (rows = channels, cols = lines), 0–1
    t_lo: F32
    digest: str  # SHA-256 of the wedge description and both images


_LAYOUT_FIX = (
    "give the test object's description in the documented layout "
    "(docs/atr.md, 'Scanner calibration')"
)

#: The fields of ``wedges.json``: top level, per material, per step.
WEDGES_FIELDS = ("scanner", "pixel_mm", "materials", "steps")
MATERIAL_FIELDS = ("density_g_cm3", "weight_fractions_by_Z")
STEP_FIELDS = ("material", "thickness_mm", "areal_density_g_cm2", "bbox_px")
#: Pixel sizes a cargo scanner has, mm (detector channels 1–10 mm, line pitch 1–15 mm on the
#: scanners we know; a margin of 2× each way).  Outside: cm or inches instead of mm.
PIXEL_MM_RANGE = (0.5, 20.0)
#: Weight fractions of a material must sum to 1 within this (rounded analyses).
FRACTION_SUM_TOLERANCE = 0.02
#: Longest scanner name (it travels in every scan record and verdict).
NAME_MAX = 64


def _need(cond: bool, what: str, fix: str = _LAYOUT_FIX) -> None:
    if not cond:
        raise CalibrationError(f"wedges.json: {what}", fix=fix)


def _number(v: object, what: str, lo: float = 0.0) -> float:
    _need(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= lo,
        f"{what} must be a number ≥ {lo:g}, got {v!r}",
        fix=f"write {what} as a plain number (no quotes, no unit) ≥ {lo:g}",
    )
    return float(v)  # type: ignore[arg-type]


def _known_fields(obj: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    """Refuse a field ``known`` does not list, naming the nearest known one."""
    for key in obj:
        if key in known:
            continue
        near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        _need(
            False,
            f"unknown field {key!r} {where}{hint}",
            fix=f"rename it to {near[0]!r}" if near else "the fields are " + ", ".join(known),
        )


def check_scanner_name(name: object, what: str = "scanner name") -> str:
    """A scanner name as recorded: 1–:data:`NAME_MAX` printable characters, blanks trimmed.

    Raises:
        CalibrationError: not a string, empty, too long, or with control characters.
    """
    fix = f"name the scanner with 1–{NAME_MAX} printable characters, e.g. 'gate-2-east'"
    if not isinstance(name, str) or not name.strip():
        raise CalibrationError(f"{what} is empty", fix=fix)
    text = name.strip()
    if len(text) > NAME_MAX:
        raise CalibrationError(f"{what} has {len(text)} characters, more than {NAME_MAX}", fix=fix)
    if not text.isprintable():
        raise CalibrationError(f"{what} {text!r} holds control characters", fix=fix)
    return text


def parse_wedges(
    doc: object, shape: tuple[int, int]
) -> tuple[str, tuple[float, float], dict[str, float], tuple[WedgeStep, ...]]:
    """Validate a ``wedges.json`` document against an image of ``shape`` (rows, cols).

    Returns:
        scanner name, pixel size (along travel, height) mm, materials (name → Z_eff), steps.

    Raises:
        CalibrationError: a missing, unknown or malformed field, a pixel size outside
            :data:`PIXEL_MM_RANGE`, weight fractions that do not sum to 1, a step box that
            is empty, reversed or outside the image, an areal density that disagrees with
            density × thickness, or a material without steps.
    """
    _need(isinstance(doc, dict), "not a JSON object")
    assert isinstance(doc, dict)
    _known_fields(doc, WEDGES_FIELDS, "at the top level")
    for key in WEDGES_FIELDS:
        _need(key in doc, f"no {key!r} field", fix=f"add {key!r} ({_LAYOUT_FIX})")
    try:
        scanner = check_scanner_name(doc.get("scanner"), "wedges.json: 'scanner'")
    except CalibrationError as exc:
        raise CalibrationError(exc.message, fix=exc.fix + " (or give --scanner-name)") from exc
    px = doc.get("pixel_mm")
    _need(
        isinstance(px, list) and len(px) == 2,
        "'pixel_mm' must be [along travel, height]",
        fix='e.g. "pixel_mm": [5.0, 4.0] (line pitch, channel pitch in mm)',
    )
    assert isinstance(px, list)
    pixel = (_number(px[0], "pixel_mm[0]"), _number(px[1], "pixel_mm[1]"))
    lo_px, hi_px = PIXEL_MM_RANGE
    for k, v in enumerate(pixel):
        _need(
            lo_px <= v <= hi_px,
            f"pixel_mm[{k}] = {v:g} mm is outside {lo_px:g}–{hi_px:g} mm of any cargo scanner",
            fix="give pixel_mm in millimetres (cm × 10, inches × 25.4)",
        )
    mats_doc = doc.get("materials")
    _need(
        isinstance(mats_doc, dict) and len(mats_doc) >= 2,
        "'materials' must name ≥ 2 materials",
        fix="describe each wedge material: {name: {density_g_cm3, weight_fractions_by_Z}}",
    )
    assert isinstance(mats_doc, dict)
    materials: dict[str, float] = {}
    density: dict[str, float] = {}
    for name, m in mats_doc.items():
        _need(
            isinstance(m, dict),
            f"material {name!r} must be an object",
            fix='e.g. {"density_g_cm3": 7.85, "weight_fractions_by_Z": {"26": 0.98, "6": 0.02}}',
        )
        _known_fields(m, MATERIAL_FIELDS, f"in material {name!r}")
        density[name] = _number(m.get("density_g_cm3"), f"{name}.density_g_cm3", 0.01)
        fr = m.get("weight_fractions_by_Z")
        _need(
            isinstance(fr, dict) and bool(fr),
            f"{name}.weight_fractions_by_Z must be an object",
            fix='e.g. "weight_fractions_by_Z": {"26": 0.98, "6": 0.02}',
        )
        try:
            fractions = {int(z): _number(w, f"{name} fraction of Z={z}") for z, w in fr.items()}
        except ValueError as exc:
            raise CalibrationError(
                f"wedges.json: {name}.weight_fractions_by_Z keys must be atomic numbers",
                fix='e.g. {"26": 0.98, "6": 0.02}',
            ) from exc
        total = sum(fractions.values())
        _need(
            abs(total - 1.0) <= FRACTION_SUM_TOLERANCE,
            f"{name}.weight_fractions_by_Z sum to {total:.3g}, not 1",
            fix=f"give every element of {name} with its weight fraction (they sum to 1 "
            f"± {FRACTION_SUM_TOLERANCE:g}); percentages ÷ 100",
        )
        materials[name] = effective_z(fractions)
    steps_doc = doc.get("steps")
    _need(
        isinstance(steps_doc, list) and len(steps_doc) >= 6,
        "'steps' must list the steps (≥ 3 per material, air steps included)",
        fix="list every step: {material, thickness_mm, areal_density_g_cm2, bbox_px}",
    )
    assert isinstance(steps_doc, list)
    rows, cols = shape
    steps: list[WedgeStep] = []
    for k, s in enumerate(steps_doc):
        _need(
            isinstance(s, dict),
            f"step {k} must be an object",
            fix="each step is {material, thickness_mm, areal_density_g_cm2, bbox_px}",
        )
        _known_fields(s, STEP_FIELDS, f"in step {k}")
        for key in STEP_FIELDS:
            _need(key in s, f"step {k} has no {key!r}", fix=f"add {key!r} to step {k}")
        mat = s.get("material")
        _need(
            isinstance(mat, str) and mat in materials,
            f"step {k}: material {mat!r} is not among 'materials'",
            fix="name one of " + ", ".join(repr(m) for m in materials),
        )
        t = _number(s.get("thickness_mm"), f"step {k} thickness_mm")
        rho_t = _number(s.get("areal_density_g_cm2"), f"step {k} areal_density_g_cm2")
        expect = density[str(mat)] * t / 10.0
        _need(
            abs(rho_t - expect) <= 0.02 * expect + 0.05,
            f"step {k}: areal density {rho_t:g} g/cm² is not density × thickness ({expect:.3g})",
            fix="areal_density_g_cm2 = density_g_cm3 × thickness_mm / 10; check the step's "
            "material and thickness",
        )
        box = s.get("bbox_px")
        _need(
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in box),
            f"step {k}: bbox_px must be four integers [col0, row0, col1, row1]",
            fix="give the step's box in image pixels, end-exclusive: [col0, row0, col1, row1]",
        )
        assert isinstance(box, list)
        c0, r0, c1, r1 = box
        _need(
            c0 < c1 and r0 < r1,
            f"step {k}: bbox_px {box} is empty or reversed",
            fix="[col0, row0, col1, row1] with col1 > col0 and row1 > row0 (end-exclusive)",
        )
        _need(
            min(c0, r0) >= 0 and c1 <= cols and r1 <= rows,
            f"step {k}: bbox_px {box} lies outside the {cols} × {rows} image",
            fix="columns are scan lines, rows detector channels: check the box against the image",
        )
        steps.append(WedgeStep(str(mat), t, rho_t, (c0, r0, c1, r1)))
    for name in materials:
        n = sum(1 for st in steps if st.material == name and st.areal_density > 0)
        _need(
            n > 0,
            f"material {name!r} has no steps of non-zero thickness in 'steps'",
            fix=f"list {name}'s steps, or drop {name!r} from 'materials'",
        )
    return scanner, pixel, materials, tuple(steps)


def _read_tiff(path: Path) -> F32:
    if not path.is_file():
        raise CalibrationError(
            f"{path}: no such file", fix="a wedge folder holds high.tiff and low.tiff"
        )
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2 or img.dtype != np.uint16:
        raise CalibrationError(
            f"{path}: not a 16-bit single-channel image",
            fix="export the commissioning scan as 16-bit TIFF, transmission × 65535",
        )
    return np.asarray(img, dtype=np.float32) / np.float32(65535.0)


def load_wedges(folder: str | Path) -> WedgeScan:
    """Read a commissioning scan folder: ``wedges.json``, ``high.tiff``, ``low.tiff``.

    Raises:
        CalibrationError: a missing or unreadable file, or a malformed description.
    """
    d = Path(folder)
    if not d.is_dir():
        raise CalibrationError(
            f"{d}: not a folder", fix="give the folder of the commissioning scan (--wedges DIR)"
        )
    try:
        raw = (d / "wedges.json").read_bytes()
        doc = json.loads(raw)
    except OSError as exc:
        raise CalibrationError(
            f"{d / 'wedges.json'}: cannot read: {exc.strerror or exc}",
            fix="the folder must hold wedges.json beside high.tiff and low.tiff",
        ) from exc
    except ValueError as exc:
        raise CalibrationError(
            f"{d / 'wedges.json'}: not JSON ({exc})", fix="repair or re-export the file"
        ) from exc
    hi = _read_tiff(d / "high.tiff")
    lo = _read_tiff(d / "low.tiff")
    if hi.shape != lo.shape:
        raise CalibrationError(
            f"{d}: high.tiff {hi.shape} and low.tiff {lo.shape} differ in size",
            fix="both energies of the same commissioning scan",
        )
    scanner, pixel, materials, steps = parse_wedges(doc, (hi.shape[0], hi.shape[1]))
    h = hashlib.sha256(raw)
    h.update(hi.tobytes())
    h.update(lo.tobytes())
    return WedgeScan(scanner, pixel, materials, steps, hi, lo, h.hexdigest())


# --- the calibration ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MaterialCurve:
    """One material's measured steps, thinnest first (air step excluded)."""

    name: str
    z: float
    areal_density: tuple[float, ...]  # g/cm²
    a_hi: tuple[float, ...]
    a_lo: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Decomposition:
    """Per-pixel physical quantities of a dual-energy image, (lines, channels) float32.

    ``areal_density`` in g/cm² along the ray; ``zeff`` the effective atomic number
    (0 where the pixel is too thin to tell); ``impenetrable`` where A_high exceeds
    the calibration's usable range (``areal_density`` is then a lower bound).
    """

    areal_density: F32
    zeff: F32
    impenetrable: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ScannerCalibration:
    """A scanner's map between (A_high, A_low) and (areal density, Z_eff); see the module doc.

    Build it with :func:`fit` from a commissioning scan, or :meth:`from_json`.
    """

    scanner: str
    curves: tuple[MaterialCurve, ...]  # lightest Z first
    a_max: float  # highest usable A_high (impenetrable beyond)
    noise_hi: tuple[float, float]  # σ²(A) = a + b·e^A, per pixel
    noise_lo: tuple[float, float]
    fit_error: dict[str, float]
    source: dict[str, Any]

    # -- persistence --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The calibration as a JSON-ready document (``format`` = :data:`FORMAT`)."""
        return {
            "format": FORMAT,
            "scanner": self.scanner,
            "a_max": round(self.a_max, 4),
            "noise": {"high": list(self.noise_hi), "low": list(self.noise_lo)},
            "materials": [
                {
                    "name": c.name,
                    "z_eff": round(c.z, 3),
                    "areal_density_g_cm2": list(c.areal_density),
                    "a_high": [round(v, 5) for v in c.a_hi],
                    "a_low": [round(v, 5) for v in c.a_lo],
                }
                for c in self.curves
            ],
            "fit_error": {k: round(v, 4) for k, v in self.fit_error.items()},
            "source": self.source,
        }

    @classmethod
    def from_json(cls, doc: object, where: str = "scanner calibration") -> ScannerCalibration:
        """Validate and load a document written by :meth:`to_json`.

        Every field is checked before any is used: numbers are JSON numbers (not
        strings), finite and in range (z_eff in (1, 100]; areal densities > 0 and
        A_high > 0, both strictly rising; A_low > A_high with R in :data:`R_RANGE`;
        noise coefficients and fit errors ≥ 0), the steps' mass attenuation is one some
        element has at MeV (:data:`MU_RHO_RANGE`) and the materials' R order agrees
        with their Z (:func:`physics_problem`).

        Raises:
            CalibrationError: another format, or a field missing, mistyped or out of range.
        """
        fix = "give a file written by 'nii atr calibrate --wedges DIR --out FILE'"

        def need(cond: bool, what: str) -> None:
            if not cond:
                raise CalibrationError(f"{where}: {what}", fix=fix)

        def num(v: object, what: str) -> float:
            need(
                isinstance(v, (int, float)) and not isinstance(v, bool),
                f"malformed field: {what} must be a number, got {v!r}",
            )
            need(math.isfinite(float(v)), f"{what} is not finite ({v!r})")  # type: ignore[arg-type]
            return float(v)  # type: ignore[arg-type]

        def nums(v: object, what: str) -> tuple[float, ...]:
            need(isinstance(v, list), f"{what} must be a list of numbers")
            assert isinstance(v, list)
            return tuple(num(x, f"{what}[{i}]") for i, x in enumerate(v))

        need(isinstance(doc, dict), "not a JSON object")
        assert isinstance(doc, dict)
        need(doc.get("format") == FORMAT, f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        for key in ("scanner", "a_max", "noise", "materials"):
            need(key in doc, f"missing or malformed field ({key!r} is missing)")
        try:
            scanner = check_scanner_name(doc["scanner"], "'scanner'")
        except CalibrationError as exc:
            raise CalibrationError(f"{where}: {exc.message}", fix=fix) from exc
        a_max = num(doc["a_max"], "a_max")
        need(0.5 < a_max <= LUT_A_MAX, f"a_max {a_max} is outside 0.5–{LUT_A_MAX}")
        noise = doc["noise"]
        need(isinstance(noise, dict), "missing or malformed field ('noise' must be an object)")
        assert isinstance(noise, dict)
        coef: dict[str, tuple[float, float]] = {}
        for energy in ("high", "low"):
            c = nums(noise.get(energy), f"noise.{energy}")
            need(len(c) == 2, f"noise.{energy} must be [a, b] of σ² = a + b·e^A")
            need(min(c) >= 0.0, f"noise.{energy} coefficients must be ≥ 0, got {list(c)}")
            coef[energy] = (c[0], c[1])
        mats = doc["materials"]
        need(isinstance(mats, list) and len(mats) >= 2, "needs at least two materials")
        assert isinstance(mats, list)
        curves: list[MaterialCurve] = []
        for i, m in enumerate(mats):
            need(isinstance(m, dict), f"materials[{i}] must be an object")
            assert isinstance(m, dict)
            name = m.get("name")
            need(isinstance(name, str) and bool(name.strip()), f"materials[{i}] has no name")
            assert isinstance(name, str)
            need(name not in {c.name for c in curves}, f"material {name!r} is given twice")
            for key in ("z_eff", "areal_density_g_cm2", "a_high", "a_low"):
                need(key in m, f"missing or malformed field (material {name!r} has no {key!r})")
            z = num(m["z_eff"], f"{name}.z_eff")
            need(1.0 < z <= 100.0, f"material {name!r}: z_eff {z:g} is outside (1, 100]")
            rho = nums(m["areal_density_g_cm2"], f"{name}.areal_density_g_cm2")
            hi = nums(m["a_high"], f"{name}.a_high")
            lo = nums(m["a_low"], f"{name}.a_low")
            need(
                len(rho) == len(hi) == len(lo) >= 2,
                f"material {name!r}: unequal or too short step lists",
            )
            need(
                rho[0] > 0 and all(b > a for a, b in itertools.pairwise(rho)),
                f"material {name!r}: areal densities must be > 0 and rise step by step",
            )
            need(
                hi[0] > 0 and all(b > a for a, b in itertools.pairwise(hi)),
                f"material {name!r}: attenuations must be > 0 and rise with thickness",
            )
            for h, lw, r in zip(hi, lo, rho, strict=True):
                need(
                    lw > 0 and R_RANGE[0] <= h / lw < R_RANGE[1],
                    f"material {name!r} at {r:g} g/cm²: A_high / A_low = "
                    f"{h / lw if lw > 0 else math.inf:.3g}, outside {R_RANGE[0]:g}–"
                    f"{R_RANGE[1]:g} (at MeV energies the low energy attenuates more)",
                )
            curves.append(MaterialCurve(name, z, rho, hi, lo))
        curves.sort(key=lambda c: c.z)
        fit_doc = doc.get("fit_error", {})
        need(isinstance(fit_doc, dict), "'fit_error' must be an object")
        assert isinstance(fit_doc, dict)
        fit_error: dict[str, float] = {}
        for k, v in fit_doc.items():
            fit_error[str(k)] = num(v, f"fit_error.{k}")
            need(fit_error[str(k)] >= 0.0, f"fit_error.{k} must be ≥ 0, got {v!r}")
        source = doc.get("source", {})
        need(isinstance(source, dict), "'source' must be an object")
        assert isinstance(source, dict)
        if "pixel_mm" in source:
            px = nums(source["pixel_mm"], "source.pixel_mm")
            need(
                len(px) == 2 and all(PIXEL_MM_RANGE[0] <= v <= PIXEL_MM_RANGE[1] for v in px),
                f"source.pixel_mm {list(px)} must be two sizes in "
                f"{PIXEL_MM_RANGE[0]:g}–{PIXEL_MM_RANGE[1]:g} mm",
            )
        problem = physics_problem(curves)
        need(problem is None, str(problem))
        return cls(
            scanner=scanner,
            curves=tuple(curves),
            a_max=a_max,
            noise_hi=coef["high"],
            noise_lo=coef["low"],
            fit_error=fit_error,
            source=dict(source),
        )

    @property
    def channel_mm(self) -> float | None:
        """The detector channel pitch (mm) of the commissioning scan, ``source.pixel_mm[1]``.

        None for a calibration that does not record it.
        """
        px = self.source.get("pixel_mm")
        if isinstance(px, list) and len(px) == 2 and isinstance(px[1], (int, float)):
            return float(px[1])
        return None

    @classmethod
    def load(cls, path: str | Path) -> ScannerCalibration:
        """Read a calibration file.

        Raises:
            CalibrationError: unreadable, not JSON, or not a calibration.
        """
        p = Path(path)
        try:
            doc = json.loads(p.read_text())
        except OSError as exc:
            raise CalibrationError(
                f"{p}: cannot read: {exc.strerror or exc}",
                fix="give the file written by 'nii atr calibrate' (--scanner FILE)",
            ) from exc
        except ValueError as exc:
            raise CalibrationError(
                f"{p}: not JSON ({exc})", fix="re-run 'nii atr calibrate'"
            ) from exc
        return cls.from_json(doc, str(p))

    # -- the maps -------------------------------------------------------------------------
    def _tables(self) -> tuple[F32, F32, F32, F32]:
        cached = _TABLES.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1]
        tables = _build_tables(self)
        _TABLES[id(self)] = (self, tables)
        return tables

    def decompose(
        self,
        a_hi: npt.ArrayLike,
        a_lo: npt.ArrayLike,
        r_window: int = 1,
        lo_limit: float | None = None,
    ) -> Decomposition:
        """Areal density and Z_eff of every pixel.

        Args:
            a_hi, a_lo: attenuations −ln T at both energies, same shape (any 2-D layout).
            r_window: side of the box (pixels, odd) over which both attenuations are
                averaged before their ratio is taken: a scanner whose energies separate
                materials less than its noise needs more pixels to tell them
                (:meth:`separation`); A_high itself is not smoothed.
            lo_limit: A_low beyond which a pixel is impenetrable (:meth:`usable_lo`);
                None: beyond the commissioning scan's thickest steps (``a_max`` or
                :attr:`a_lo_max`).  Between those steps and ``lo_limit`` the material
                curves are extrapolated.

        Returns:
            :class:`Decomposition` of the same shape.
        """
        hi = np.ascontiguousarray(a_hi, dtype=np.float32)
        lo = np.ascontiguousarray(a_lo, dtype=np.float32)
        z_lut, rho_lut, _, _ = self._tables()
        na, nr = LUT_SHAPE
        da = LUT_A_MAX / (na - 1)
        dr = (LUT_R[1] - LUT_R[0]) / (nr - 1)
        r: F32 = np.asarray(hi / np.maximum(lo, np.float32(1e-4)), dtype=np.float32)
        if r_window > 1 and min(hi.shape) > r_window:
            r = self._smooth_ratio(hi, lo, r, r_window)
        my = np.clip(hi / np.float32(da), 0, na - 1).astype(np.float32)
        mx = np.clip((r - np.float32(LUT_R[0])) / np.float32(dr), 0, nr - 1).astype(np.float32)
        zeff = _remap(z_lut, mx, my)
        rho = _remap(rho_lut, mx, my)
        thin = hi < np.float32(self.a_thin)
        zeff[thin] = 0.0
        # beyond the usable range the low-energy image is noise: R says nothing of Z
        if lo_limit is None:
            imp = (hi > np.float32(self.a_max)) | (lo > np.float32(self.a_lo_max))
        else:
            imp = lo > np.float32(lo_limit)
        zeff[imp] = 0.0
        return Decomposition(rho, zeff, imp)

    def _smooth_ratio(self, hi: F32, lo: F32, r: F32, window: int) -> F32:
        """R averaged over ``window``² pixels as a material, not as a number.

        R depends on thickness as well as on material (the beam hardens), so the mean R
        of a thin pixel among thick ones is not the R of the thin pixel's material: in
        scrap steel the thin pixels would read organic.  Each pixel's R is therefore
        taken as its place ``t`` between the lightest material's R and steel's at its own
        A_high, ``t`` is averaged over the box weighted by how surely each pixel tells
        the two apart ((R_steel − R_light)² / σ_R², so thin and impenetrable pixels count
        little), and the centre pixel's R is that mean ``t`` at the centre's A_high.
        """
        light = self.curves[0]
        metal = min(self.curves, key=lambda c: abs(c.z - 26.0))
        a = hi.astype(np.float64)
        r_l = np.interp(a, *_curve_fns(light)[:2])
        r_m = np.interp(a, *_curve_fns(metal)[:2])
        v = r_m - r_l
        a_c = np.clip(a, 0.05, self.a_max)
        lo_c = np.maximum(lo.astype(np.float64), 0.05)
        var_r = np.square(r.astype(np.float64)) * (
            np.square(self.sigma_a(a_c, "high").astype(np.float64) / a_c)
            + np.square(self.sigma_a(lo_c, "low").astype(np.float64) / lo_c)
        )
        w = np.square(v) / np.maximum(var_r, 1e-12)
        w[(a > self.a_max) | (lo > self.a_lo_max) | (a < self.a_thin)] = 0.0
        num = box_smooth((w * (r - r_l) / np.where(v != 0, v, 1.0)).astype(np.float32),
                         window, window)  # fmt: skip
        den = box_smooth(w.astype(np.float32), window, window)
        t = np.where(den > 0, num / np.maximum(den, np.float32(1e-30)), 0.0)
        smooth = r_l + t * v
        return np.where(den > 0, smooth, r).astype(np.float32)

    def separation(self, a: float = 2.0, pixels: int = 1) -> float:
        """How many noise σ of R part the lightest material from steel-like metal at A_high ``a``.

        ``pixels`` is how many image pixels each value averages.  The ratio of two
        scanners' separations says how many more pixels one needs to tell materials
        apart as surely as the other (σ falls as 1/√pixels).
        """
        light = self.curves[0]
        metal = min(self.curves, key=lambda c: abs(c.z - 26.0))
        r_light = float(np.interp(a, *_curve_fns(light)[:2]))
        r_metal = float(np.interp(a, *_curve_fns(metal)[:2]))
        r = 0.5 * (r_light + r_metal)
        s_hi = float(self.sigma_a(a, "high", pixels))
        s_lo = float(self.sigma_a(a / r, "low", pixels))
        sigma_r = r * math.hypot(s_hi / a, s_lo / (a / r))
        return abs(r_metal - r_light) / max(sigma_r, 1e-9)

    def misfit(self, a_hi: npt.ArrayLike, a_lo: npt.ArrayLike, pixels: int = 1) -> float:
        """Share of material pixels whose R this calibration's materials cannot explain.

        A pixel carries material information when A_high lies between
        :data:`MISFIT_A_MIN` and :attr:`a_max`.  Its R = A_high / A_low is explained
        when it lies within the band the calibrated materials span at that A_high
        (from the lowest to the highest material curve, each flat beyond its steps),
        give or take :data:`MISFIT_SIGMAS` σ_R, with σ_R the noise model's for means
        over ``pixels`` pixels combined with :data:`MISFIT_R_FLOOR`.  Another
        scanner's image read through this calibration gives a large share; the
        scanner's own, a share near 0.

        Args:
            a_hi, a_lo: attenuations −ln T at both energies, same shape (any layout).
            pixels: how many image pixels each value averages (≥ 1).

        Returns:
            The share in [0, 1]; 0.0 when no pixel carries material information.
        """
        hi = np.asarray(a_hi, dtype=np.float64).ravel()
        lo = np.asarray(a_lo, dtype=np.float64).ravel()
        with np.errstate(invalid="ignore"):
            m = np.isfinite(hi) & np.isfinite(lo) & (lo > 0)
            m &= (hi > MISFIT_A_MIN) & (hi < self.a_max)
        if not m.any():
            return 0.0
        h, lw = hi[m], lo[m]
        r = h / lw
        band = np.stack([_r_at(c, h) for c in self.curves])
        s_hi = self.sigma_a(h, "high", pixels).astype(np.float64)
        s_lo = self.sigma_a(lw, "low", pixels).astype(np.float64)
        sigma = np.sqrt(np.square(r * np.hypot(s_hi / h, s_lo / lw)) + MISFIT_R_FLOOR**2)
        off = (r < band.min(axis=0) - MISFIT_SIGMAS * sigma) | (
            r > band.max(axis=0) + MISFIT_SIGMAS * sigma
        )
        return float(np.mean(off))

    @property
    def a_lo_max(self) -> float:
        """Highest usable A_low: the usable steps' largest."""
        return max(max(c.a_lo) for c in self.curves)

    def usable_lo(self, sigma: float, pixels: int = 1) -> float:
        """A_low at which the low image's noise (means over ``pixels``) reaches ``sigma``.

        Never below :attr:`a_lo_max` (the commissioning scan measured that far) nor above
        ``LUT_A_MAX``.  With ``sigma`` another scanner's noise at its own limit, this is
        where this scanner's image is as sure of a pixel's material as that one's at its
        limit (from the noise model ``σ² = c0 + c1·e^A`` fitted on the steps).
        """
        c0, c1 = self.noise_lo
        need = sigma * sigma * max(1, pixels) - c0
        if c1 <= 0 or need <= 0:
            return self.a_lo_max
        return float(min(max(math.log(need / c1), self.a_lo_max), LUT_A_MAX))

    def forward(self, areal_density: npt.ArrayLike, zeff: npt.ArrayLike) -> tuple[F32, F32]:
        """(A_high, A_low) this scanner would measure through ρt g/cm² of Z_eff matter.

        Z_eff outside the calibrated materials' range is clamped to it; 0 (no material
        information) is taken as the lightest material.
        """
        rho = np.ascontiguousarray(areal_density, dtype=np.float32)
        z = np.ascontiguousarray(zeff, dtype=np.float32)
        _, _, hi_lut, lo_lut = self._tables()
        nrho, nz = FWD_SHAPE
        lz0, lz1 = math.log(self.curves[0].z), math.log(self.curves[-1].z)
        u = np.sqrt(np.clip(rho, 0.0, FWD_RHO_MAX) / np.float32(FWD_RHO_MAX)) * np.float32(nrho - 1)
        lz = np.log(
            np.clip(np.where(z > 0, z, self.curves[0].z), self.curves[0].z, self.curves[-1].z)
        )
        v = ((lz - lz0) / max(lz1 - lz0, 1e-6) * (nz - 1)).astype(np.float32)
        return _remap(hi_lut, v, u.astype(np.float32)), _remap(lo_lut, v, u.astype(np.float32))

    @property
    def a_thin(self) -> float:
        """A_high below which R carries no material information (σ_Z would exceed the classes)."""
        return 0.15

    def sigma_a(self, a: npt.ArrayLike, energy: str = "high", pixels: int = 1) -> F32:
        """1-σ noise of A for a mean over ``pixels`` pixels, from the fitted noise model."""
        c0, c1 = self.noise_hi if energy == "high" else self.noise_lo
        av = np.asarray(a, dtype=np.float64)
        var = c0 + c1 * np.exp(np.clip(av, 0.0, 30.0))
        return np.asarray(np.sqrt(np.maximum(var, 0.0) / max(1, pixels)), dtype=np.float32)

    def material_calibration(
        self, z_organic: float = 10.0, z_metal: float = 18.0
    ) -> MaterialCalibration:
        """The classifier of :mod:`core.calibration` on this scanner's own curves."""
        samples = {c.z: (c.a_lo, c.a_hi) for c in self.curves}
        a_lo_max = max(max(c.a_lo) for c in self.curves)
        return MaterialCalibration.fit(
            samples, z_organic=z_organic, z_metal=z_metal, a_max=min(a_lo_max, 12.0)
        )


def _r_at(c: MaterialCurve, a: npt.ArrayLike) -> F64:
    """R = A_high / A_low of material ``c`` at A_high ``a`` (flat beyond its steps)."""
    r = np.asarray(c.a_hi, dtype=np.float64) / np.asarray(c.a_lo, dtype=np.float64)
    return np.asarray(np.interp(np.asarray(a, dtype=np.float64), c.a_hi, r), dtype=np.float64)


def physics_problem(curves: Sequence[MaterialCurve]) -> str | None:
    """What makes measured material curves physically impossible, or None.

    Checks every step's mass attenuation A_high / ρt against :data:`MU_RHO_RANGE`
    (a wrong unit of thickness or areal density), and that the material nearest Z 26
    reads heavier (higher R) than the lightest material at the middle of the
    A_high range both were measured over (names or z_eff swapped, or energies
    without material contrast).  The heaviest material is not held to it: thin
    lead can read lighter than steel at low energy.

    Args:
        curves: the materials' steps (positive, rising areal densities and A_high).
    """
    mus = [h / r for c in curves for h, r in zip(c.a_hi, c.areal_density, strict=True)]
    lo, hi = MU_RHO_RANGE
    for c in curves:
        for h, r in zip(c.a_hi, c.areal_density, strict=True):
            mu = h / r
            if lo <= mu <= hi:
                continue
            times = float(np.median(mus)) / MU_RHO_TYPICAL
            if times >= 2.0:
                unit = (
                    f"areal densities look {times:.0f}× too small: thickness in cm instead of mm?"
                )
            elif times <= 0.5:
                unit = (
                    f"areal densities look {1 / times:.0f}× too large: thickness in mm given as cm?"
                )
            else:
                unit = "that step's areal density or box is wrong"
            return (
                f"{c.name} at {r:g} g/cm² attenuates A_high / ρt = {mu:.3g} cm²/g, outside the "
                f"{lo:g}–{hi:g} cm²/g any element has at 2.5–9 MeV: {unit}"
            )
    light = curves[0]
    metal = min(curves, key=lambda c: abs(c.z - 26.0))
    if metal is not light and metal.z > light.z:
        a0 = max(light.a_hi[0], metal.a_hi[0])
        a1 = min(light.a_hi[-1], metal.a_hi[-1])
        if a1 > a0:
            a = 0.5 * (a0 + a1)
            r_light, r_metal = float(_r_at(light, a)), float(_r_at(metal, a))
            if r_metal <= r_light:
                return (
                    f"{metal.name} (Z {metal.z:.3g}) reads lighter than {light.name} (Z "
                    f"{light.z:.3g}) at A_high {a:.2f}: R {r_metal:.4f} ≤ {r_light:.4f}, while R "
                    "rises with Z at MeV energies (materials' names or z_eff swapped?)"
                )
    return None


_TABLES: dict[int, tuple[ScannerCalibration, tuple[F32, F32, F32, F32]]] = {}


def _remap(lut: F32, mx: F32, my: F32) -> F32:
    """Bilinear look-up of ``lut`` at (column mx, row my), any 2-D shape of maps."""
    out = cv2.remap(lut, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out, dtype=np.float32)


def _curve_fns(c: MaterialCurve) -> tuple[F64, F64, F64]:
    """(A_high nodes incl. 0, R at the nodes, ρt at the nodes) of one material."""
    hi = np.concatenate([[0.0], np.asarray(c.a_hi, dtype=np.float64)])
    lo = np.asarray(c.a_lo, dtype=np.float64)
    r = np.asarray(c.a_hi, dtype=np.float64) / lo
    r = np.concatenate([[r[0]], r])
    rho = np.concatenate([[0.0], np.asarray(c.areal_density, dtype=np.float64)])
    return hi, r, rho


def extrapolate(x: F64, xp: F64, fp: F64) -> F64:
    """Linear interpolation, extended beyond the last node by the last segment's slope."""
    y = np.interp(x, xp, fp)
    slope = (fp[-1] - fp[-2]) / max(xp[-1] - xp[-2], 1e-9)
    beyond = x > xp[-1]
    y[beyond] = fp[-1] + slope * (x[beyond] - xp[-1])
    return y


def _build_tables(cal: ScannerCalibration) -> tuple[F32, F32, F32, F32]:
    na, nr = LUT_SHAPE
    a_axis = np.linspace(0.0, LUT_A_MAX, na)
    r_axis = np.linspace(LUT_R[0], LUT_R[1], nr)
    zs = np.array([c.z for c in cal.curves])
    fns = [_curve_fns(c) for c in cal.curves]
    r_at = np.stack([np.interp(a_axis, hi, r) for hi, r, _ in fns])  # R beyond the last step: flat
    rho_at = np.stack([extrapolate(a_axis, hi, rho) for hi, _, rho in fns])
    z_lut = np.empty((na, nr), dtype=np.float32)
    rho_lut = np.empty((na, nr), dtype=np.float32)
    for i in range(na):
        # keep the materials whose R rises with Z at this attenuation (a heavy curve that
        # crosses a lighter one there carries no information)
        keep = [0]
        for k in range(1, zs.size):
            if r_at[k, i] > r_at[keep[-1], i] + 1e-4:
                keep.append(k)
        rk = r_at[keep, i]
        pos = np.interp(r_axis, rk, np.arange(len(keep), dtype=np.float64))
        lo_k = np.clip(np.floor(pos).astype(np.int64), 0, max(len(keep) - 2, 0))
        w = pos - lo_k if len(keep) > 1 else np.zeros_like(pos)
        hi_k = np.minimum(lo_k + 1, len(keep) - 1)
        kk = np.asarray(keep)
        lz = (1 - w) * np.log(zs[kk[lo_k]]) + w * np.log(zs[kk[hi_k]])
        z_lut[i] = np.exp(lz)
        rho_lut[i] = (1 - w) * rho_at[kk[lo_k], i] + w * rho_at[kk[hi_k], i]
    # forward: per material A_high(ρt) and R(ρt), blended in log Z
    nrho, nz = FWD_SHAPE
    rho_axis = FWD_RHO_MAX * np.linspace(0.0, 1.0, nrho) ** 2
    lzs = np.log(zs)
    lz_axis = np.linspace(lzs[0], lzs[-1], nz)
    hi_m = np.stack([extrapolate(rho_axis, rho, hi) for hi, _, rho in fns])
    r_m = np.stack([np.interp(hi_m[k], fns[k][0], fns[k][1]) for k in range(zs.size)])
    pos = np.interp(lz_axis, lzs, np.arange(zs.size, dtype=np.float64))
    k0 = np.clip(np.floor(pos).astype(np.int64), 0, zs.size - 2)
    w = pos - k0
    a_hi_lut = (1 - w)[None, :] * hi_m[k0].T + w[None, :] * hi_m[k0 + 1].T
    r_lut = (1 - w)[None, :] * r_m[k0].T + w[None, :] * r_m[k0 + 1].T
    a_lo_lut = a_hi_lut / np.maximum(r_lut, 1e-3)
    return (
        z_lut,
        rho_lut,
        np.ascontiguousarray(a_hi_lut, dtype=np.float32),
        np.ascontiguousarray(a_lo_lut, dtype=np.float32),
    )


@dataclass(frozen=True, slots=True)
class _StepStats:
    material: str
    areal_density: float
    a_hi: float
    a_lo: float
    sd_hi: float
    sd_lo: float
    usable: bool


def _step_stats(scan: WedgeScan) -> list[_StepStats]:
    out = []
    for s in scan.steps:
        c0, r0, c1, r1 = s.bbox
        # keep off the box's edges: the fan's penumbra and afterglow blur them
        mc = max(0, (c1 - c0) // 6)
        mr = max(0, (r1 - r0) // 6)
        th = scan.t_hi[r0 + mr : r1 - mr, c0 + mc : c1 - mc]
        tl = scan.t_lo[r0 + mr : r1 - mr, c0 + mc : c1 - mc]
        if th.size < MIN_STEP_PIXELS:
            raise CalibrationError(
                f"step {s.material} {s.thickness_mm:g} mm: box {list(s.bbox)} holds too few pixels",
                fix=f"each step's box must cover at least {MIN_STEP_PIXELS} pixels",
            )
        zero = float(np.mean((th <= T_FLOOR) | (tl <= T_FLOOR)))
        ah = -np.log(np.clip(th, T_FLOOR, 1.0))
        al = -np.log(np.clip(tl, T_FLOOR, 1.0))
        # the mean of T, not of A: −ln of a noisy T averaged is biased where T is small
        mh = float(-np.log(max(float(np.mean(th)), T_FLOOR)))
        ml = float(-np.log(max(float(np.mean(tl)), T_FLOOR)))
        sd_l = float(np.std(al))
        usable = zero <= USABLE_ZERO_SHARE and sd_l <= USABLE_SIGMA_LO
        out.append(_StepStats(s.material, s.areal_density, mh, ml, float(np.std(ah)), sd_l, usable))
    return out


_ENERGY_FIX = (
    "export the commissioning scan's two energies: high.tiff the high-energy (e.g. 6 MV) "
    "image, low.tiff the low-energy one, each its own 16-bit export"
)


def _check_energies(scan: WedgeScan) -> None:
    """Refuse one image twice, or a low image that is the high one rescaled.

    Each energy's detector counts its own photons, so within a step the two images'
    pixel fluctuations are independent; a low image computed from the high one moves
    with it pixel for pixel (correlation above :data:`MAX_NOISE_CORRELATION`).

    Raises:
        CalibrationError: identical images, or noise shared between them.
    """
    if np.array_equal(scan.t_hi, scan.t_lo):
        raise CalibrationError(
            "high.tiff and low.tiff are the same image: one energy given twice", fix=_ENERGY_FIX
        )
    dh: list[F64] = []
    dl: list[F64] = []
    for s in scan.steps:
        if s.areal_density <= 0:
            continue
        c0, r0, c1, r1 = s.bbox
        mc, mr = (c1 - c0) // 6, (r1 - r0) // 6
        th = scan.t_hi[r0 + mr : r1 - mr, c0 + mc : c1 - mc].astype(np.float64)
        tl = scan.t_lo[r0 + mr : r1 - mr, c0 + mc : c1 - mc].astype(np.float64)
        if th.size < MIN_STEP_PIXELS or min(float(th.min()), float(tl.min())) <= T_FLOOR:
            continue
        ah, al = -np.log(th), -np.log(tl)
        dh.append((ah - ah.mean()).ravel())
        dl.append((al - al.mean()).ravel())
    if not dh:
        return
    x, y = np.concatenate(dh), np.concatenate(dl)
    sx, sy = float(np.sqrt(np.mean(x * x))), float(np.sqrt(np.mean(y * y)))
    if sx <= 0.0 or sy <= 0.0:
        return
    corr = float(np.mean(x * y)) / (sx * sy)
    if corr > MAX_NOISE_CORRELATION:
        raise CalibrationError(
            f"low.tiff moves with high.tiff pixel for pixel (noise correlation {corr:.2f} "
            f"within the steps, > {MAX_NOISE_CORRELATION}): one energy rescaled, not two "
            "energies",
            fix=_ENERGY_FIX,
        )


def _check_ratios(used: Sequence[_StepStats]) -> None:
    """Refuse steps whose R = A_high / A_low says the energies are swapped or the same.

    Raises:
        CalibrationError: a median R above 1 (swapped), within 0.02 of 1 (one energy
            twice), or a step's R outside :data:`R_RANGE`.
    """
    rs = [(s, s.a_hi / s.a_lo) for s in used if s.a_lo > 0]
    if not rs:
        return
    med = float(np.median([r for _, r in rs]))
    if med > 1.02:
        raise CalibrationError(
            f"the low-energy image attenuates less than the high-energy one (median A_high / "
            f"A_low {med:.3f} over the steps): at MeV energies it is the other way round",
            fix="high.tiff and low.tiff are swapped: exchange the two files",
        )
    if med >= 0.98:
        raise CalibrationError(
            f"the two images attenuate alike (median A_high / A_low {med:.3f} over the steps; "
            "R is 0.75–0.98 through matter): one energy given twice",
            fix=_ENERGY_FIX,
        )
    for s, r in rs:
        if not R_RANGE[0] <= r < R_RANGE[1]:
            raise CalibrationError(
                f"step {s.material} at {s.areal_density:g} g/cm²: A_high / A_low = {r:.3f}, "
                f"outside {R_RANGE[0]:g}–{R_RANGE[1]:g} of a dual-energy scan through matter "
                "(an image rescaled, or a box on the wrong step)",
                fix=_ENERGY_FIX + "; check the step's box in wedges.json",
            )


def _noise_fit(a: F64, sd: F64) -> tuple[float, float]:
    """Least squares of σ² = c0 + c1·e^A (both ≥ 0) over the steps."""
    m = np.stack([np.ones_like(a), np.exp(a)], axis=1)
    sol, *_ = np.linalg.lstsq(m / sd[:, None] ** 2, np.ones_like(a), rcond=None)
    c0, c1 = float(max(sol[0], 0.0)), float(max(sol[1], 1e-12))
    return c0, c1


def _curves(
    stats: Sequence[_StepStats], materials: Mapping[str, float]
) -> tuple[MaterialCurve, ...]:
    curves = []
    for name, z in materials.items():
        pts = sorted(
            (s for s in stats if s.material == name and s.usable and s.areal_density > 0),
            key=lambda s: s.areal_density,
        )
        # a step that does not attenuate more than the one before it is a mislabelled box
        mono: list[_StepStats] = []
        for s in pts:
            if not mono or (s.a_hi > mono[-1].a_hi + 1e-3 and s.a_lo > mono[-1].a_lo + 1e-3):
                mono.append(s)
        if len(mono) < 3:
            raise CalibrationError(
                f"material {name!r}: only {len(mono)} usable steps whose attenuation rises "
                "with thickness",
                fix="check the step boxes in wedges.json against the image; each material "
                "needs ≥ 3 steps between air and opaque",
            )
        curves.append(
            MaterialCurve(
                name,
                z,
                tuple(s.areal_density for s in mono),
                tuple(s.a_hi for s in mono),
                tuple(s.a_lo for s in mono),
            )
        )
    return tuple(sorted(curves, key=lambda c: c.z))


def fit(scan: WedgeScan, created: str = "") -> ScannerCalibration:
    """Fit a scanner's calibration on its commissioning scan.

    Args:
        scan: the wedge scan (:func:`load_wedges`).
        created: ISO 8601 time stamp written into ``source``.

    Returns:
        The calibration; ``fit_error`` holds the leave-one-step-out errors
        (``areal_density_rel_rms``, ``zeff_rel_rms``) and the number of steps used.

    Raises:
        CalibrationError: fewer than two materials with ≥ 3 usable steps, air steps
            that are not near full transmission (a dark or flat-field problem).
    """
    _check_energies(scan)
    stats = _step_stats(scan)
    air = [s for s in stats if s.areal_density == 0.0]
    for s in air:
        if s.a_hi > 0.05 or s.a_lo > 0.05:
            raise CalibrationError(
                f"an air step of {s.material} reads A = {s.a_hi:.3f} / {s.a_lo:.3f}, not ~0",
                fix="flat-field the scan (air must read T ≈ 1) before exporting it",
            )
    used = [s for s in stats if s.usable and s.areal_density > 0]
    _check_ratios(used)
    curves = _curves(stats, scan.materials)
    problem = physics_problem(curves)
    if problem is not None:
        raise CalibrationError(
            f"commissioning scan: {problem}",
            fix="check wedges.json against the test object: thickness_mm in mm, "
            "areal_density_g_cm2 in g/cm², each material's name and composition",
        )
    a_max = max(max(c.a_hi) for c in curves)
    all_hi = np.array([s.a_hi for s in stats if s.sd_hi > 0])
    noise_hi = _noise_fit(all_hi, np.array([s.sd_hi for s in stats if s.sd_hi > 0]))
    lo_ok = [s for s in stats if s.sd_lo > 0 and s.usable]
    noise_lo = _noise_fit(np.array([s.a_lo for s in lo_ok]), np.array([s.sd_lo for s in lo_ok]))
    proto = ScannerCalibration(scan.scanner, curves, a_max, noise_hi, noise_lo, {}, {})
    fit_error = _leave_one_out(proto, scan.materials)
    z_err = fit_error["zeff_log_rms"]
    if fit_error["zeff_ambiguous_steps"] >= fit_error["zeff_steps"] / 3:
        raise CalibrationError(
            f"the fit reads {fit_error['zeff_ambiguous_steps']:.0f} of its "
            f"{fit_error['zeff_steps']:.0f} steps as another material (Z_eff off by more than "
            "a factor 2 even with the step in the fit): the calibration could not tell the "
            "test object's materials apart",
            fix="check that high.tiff and low.tiff are the two energies of one commissioning "
            "scan and that each step's material and box in wedges.json match the image",
        )
    if z_err > MAX_ZEFF_LOG_RMS:
        raise CalibrationError(
            f"the fit reads its own steps' Z_eff wrong by a factor {math.exp(z_err):.1f} "
            f"(leave-one-out RMS of ln Z {z_err:.2f} > ln 2): the calibration could not tell "
            "the test object's materials apart",
            fix="check that high.tiff and low.tiff are the two energies of one commissioning "
            "scan and that each step's material and box in wedges.json match the image",
        )
    fit_error["steps_used"] = float(len(used))
    source = {
        "wedges_sha256": scan.digest,
        "pixel_mm": list(scan.pixel_mm),
        "steps": len(scan.steps),
        "created": created,
    }
    return ScannerCalibration(scan.scanner, curves, a_max, noise_hi, noise_lo, fit_error, source)


def _leave_one_out(cal: ScannerCalibration, materials: Mapping[str, float]) -> dict[str, float]:
    """Relative RMS error of ρt and Z_eff of each interior step, fitted without it.

    A step that even the full fit, which contains it, reads as another material by more
    than :data:`MAX_ZEFF_LOG_RMS` lies where the energies cannot tell its material from
    another one: at 4/2.5 MeV thin lead attenuates the low energy so much more (its
    photoelectric edge) that its R falls below polyethylene's until the beam hardens.  That
    is the physics of the scanner, not a fault of the fit, so such steps are counted
    (``zeff_ambiguous_steps``, and ``zeff_ambiguous_below_a`` the highest A_high among
    them) and left out of ``zeff_log_rms``.  A fit in which a third or more of the steps
    are ambiguous is still refused by :func:`fit`.
    """
    rho_err: list[float] = []
    z_err: list[float] = []
    ambiguous = 0
    below = 0.0
    steps = 0
    for ci, c in enumerate(cal.curves):
        for k in range(1, len(c.a_hi) - 1):
            steps += 1
            keep = [j for j in range(len(c.a_hi)) if j != k]
            c2 = MaterialCurve(
                c.name,
                c.z,
                tuple(c.areal_density[j] for j in keep),
                tuple(c.a_hi[j] for j in keep),
                tuple(c.a_lo[j] for j in keep),
            )
            curves = (*cal.curves[:ci], c2, *cal.curves[ci + 1 :])
            sub = ScannerCalibration(
                cal.scanner, curves, cal.a_max, cal.noise_hi, cal.noise_lo, {}, {}
            )
            hi, lo = np.array([[c.a_hi[k]]]), np.array([[c.a_lo[k]]])
            d = sub.decompose(hi, lo)
            _TABLES.pop(id(sub), None)
            rho_err.append(float(d.areal_density[0, 0]) / c.areal_density[k] - 1.0)
            z_full = float(cal.decompose(hi, lo).zeff[0, 0])
            if z_full > 0 and abs(math.log(z_full / c.z)) > MAX_ZEFF_LOG_RMS:
                ambiguous += 1
                below = max(below, c.a_hi[k])
                continue
            if d.zeff[0, 0] > 0:
                z_err.append(float(math.log(float(d.zeff[0, 0]) / c.z)))
    return {
        "areal_density_rel_rms": float(np.sqrt(np.mean(np.square(rho_err)))) if rho_err else 0.0,
        "zeff_log_rms": float(np.sqrt(np.mean(np.square(z_err)))) if z_err else 0.0,
        "zeff_ambiguous_steps": float(ambiguous),
        "zeff_ambiguous_below_a": below,
        "zeff_steps": float(steps),
    }


__all__ = [
    "FORMAT",
    "CalibrationError",
    "Decomposition",
    "MaterialCurve",
    "ScannerCalibration",
    "WedgeScan",
    "WedgeStep",
    "check_scanner_name",
    "document_sha256",
    "effective_z",
    "extrapolate",
    "fit",
    "load_wedges",
    "parse_wedges",
    "physics_problem",
]
