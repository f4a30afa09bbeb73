"""Images of any calibrated scanner in physical units, and as the reference scanner sees them.

A scanner's calibration (:mod:`core.scanner_cal`, fitted on its commissioning
step-wedge scan) turns each pixel's (A_high, A_low) into areal density ρt
(g/cm²) and effective Z.  The ATR's figures for the GD — load mass, bulk
density, material mix — are computed from those.  Its concealment detectors
compare a pixel with the cargo around it; their thresholds are written as the
attenuation of the **reference beam** (the project's reference scanner: 6/4 MeV
linac, 30 mm CdWO₄, see ``docs/atr.md``) through the same matter, which is a
fixed, monotone function of (ρt, Z) — a "reference-equivalent attenuation",
as radiographers speak of steel-equivalent thickness.  So every scanner's
image is mapped, pixel by pixel, to (ρt, Z) with its own calibration and back
to attenuations with the reference scanner's (:func:`to_physical`).

Without a calibration the image is taken to come from the reference scanner;
the verdict says so (``calibrated: false``) and GD figures carry a wider
uncertainty.
"""
# ruff: noqa: RUF002, RUF003

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from core.scanner_cal import ScannerCalibration, extrapolate

from ._model import AtrInputError

F32 = npt.NDArray[np.float32]

#: The reference scanner's calibration, fitted on the simulator's commissioning scan of
#: its default model (``nii sim wedges`` then ``nii atr calibrate``; see docs/atr.md).
REFERENCE_FILE = "reference-scanner.json"


@functools.cache
def reference() -> ScannerCalibration:
    """The reference scanner's calibration (packaged with the ATR)."""
    text = resources.files("central.atr").joinpath("data", REFERENCE_FILE).read_text()
    return ScannerCalibration.from_json(json.loads(text), f"central/atr/data/{REFERENCE_FILE}")


@dataclass(frozen=True, slots=True)
class PhysicalImage:
    """One scan's binned images in reference-equivalent attenuation and in physical units.

    All arrays are (lines, channels) float32: ``a_hi``/``a_lo`` the attenuations the
    reference scanner would measure, ``areal_density`` g/cm², ``zeff`` (0 where too thin
    to tell), ``impenetrable`` where the scanner's own calibration runs out.  ``opaque``
    marks the pixels mapped from beyond another scanner's usable range: their material is
    unknown, whatever the mapped attenuations' ratio says, and the material map must call
    them impenetrable (the reference scanner's own image has none: its material map knows
    its own range).  ``short_range``: the scanner stops short of where the reference's
    material map does (:func:`short_range`), so what is opaque to it the reference might
    have seen through.
    """

    a_hi: F32
    a_lo: F32
    areal_density: F32
    zeff: F32
    impenetrable: npt.NDArray[np.bool_]
    calibrated: bool
    scanner: str
    opaque: npt.NDArray[np.bool_] | None = None
    short_range: bool = False


#: Largest box (pixels a side) the ratio is averaged over on a scanner that separates
#: materials far less than the reference (a 4 MeV scanner with a thin detector).
MAX_R_WINDOW = 9


#: Separation (in noise σ of R) of organic matter from steel that a material map needs:
#: the class boundaries (Z_eff 10 and 18) then lie at least ~6 σ from either material.
TARGET_SEPARATION = 20.0


def r_window(scanner: ScannerCalibration, pixels: int = 1) -> int:
    """Side of the box over which ``scanner``'s ratio image is averaged (odd, ≥ 1).

    A scanner whose energies part organic matter from steel by fewer than
    :data:`TARGET_SEPARATION` noise σ at A_high = 2 (:meth:`separation`; a low-energy
    linac, a thin detector, a low dose) gets its ratio averaged over (20 / separation)²
    pixels, so that its material map is as sure as it must be, and as coarse.
    """
    own = scanner.separation(2.0, pixels)
    k = (TARGET_SEPARATION / max(own, 1e-6)) ** 2
    side = round(math.sqrt(max(k, 1.0)))
    side += 1 - side % 2
    return min(side, MAX_R_WINDOW)


def to_physical(
    b_hi: F32, b_lo: F32, scanner: ScannerCalibration | None, pixels: int = 1
) -> PhysicalImage:
    """Map a scan's attenuations (lines, channels) through its scanner's calibration.

    Args:
        b_hi, b_lo: attenuations −ln T of the scan (binned or not).
        scanner: the scanner's calibration; ``None`` takes the image as the reference
            scanner's own.
        pixels: how many of the scanner's pixels each of ``b_hi``'s averages (binning).

    Returns:
        :class:`PhysicalImage`; with ``scanner`` ``None`` its ``a_hi``/``a_lo`` are the
        input unchanged.
    """
    ref = reference()
    if scanner is None or scanner is ref:
        # the reference scanner's own image (assumed, without a calibration) needs no map
        d = ref.decompose(b_hi, b_lo)
        return PhysicalImage(
            b_hi, b_lo, d.areal_density, d.zeff, d.impenetrable, scanner is ref, ref.scanner
        )
    d = scanner.decompose(b_hi, b_lo, r_window(scanner, pixels), opaque_lo(scanner, pixels))
    hi, lo = ref.forward(d.areal_density, d.zeff)
    # beyond the scanner's usable range the reference sees no less than its own limit, and
    # the material map calls it impenetrable: its R there is noise (biased low by the
    # detector's floor, it would read organic)
    hi = np.where(d.impenetrable, np.maximum(hi, np.float32(ref.a_max)), hi).astype(np.float32)
    lo = np.where(d.impenetrable, np.maximum(lo, np.float32(_opaque_lo())), lo)
    lo = lo.astype(np.float32)
    return PhysicalImage(
        hi, lo, d.areal_density, d.zeff, d.impenetrable, True, scanner.scanner, d.impenetrable,
        short_range(scanner, pixels),
    )  # fmt: skip


def opaque_lo(scanner: ScannerCalibration, pixels: int = 1) -> float:
    """A_low beyond which ``scanner``'s pixels are opaque to the ATR.

    The ATR's material map reads the reference scanner's image up to A_low
    :data:`REFERENCE_OPAQUE_LO` (``core.calibration.MaterialCalibration``), past its
    commissioning steps; another scanner's image is read as far as its low-energy noise
    is no worse than the reference's there (:meth:`ScannerCalibration.usable_lo`), and at
    least over its own steps: a noisier scanner stops sooner, so its last photons' noise
    is never read as a material.
    """
    from core.calibration import MaterialCalibration

    ref = reference()
    limit = MaterialCalibration.default().a_max
    return scanner.usable_lo(float(ref.sigma_a(limit, "low", pixels)), pixels)


def reach(scanner: ScannerCalibration, pixels: int = 1) -> tuple[float, float]:
    """How far ``scanner`` sees: steel's areal density (g/cm²) at its opaque limit
    (:func:`opaque_lo`), and the A_low the reference scanner would measure through it.

    Steel is the material of the SLA's penetration figure (e.g. 340 mm of steel, R4); its
    curve is extended linearly beyond the commissioning scan's thickest step.
    """
    lim = opaque_lo(scanner, pixels)
    steel = min(scanner.curves, key=lambda c: abs(c.z - 26.0))
    rho_lim = float(
        extrapolate(
            np.array([lim]),
            np.asarray(steel.a_lo, dtype=np.float64),
            np.asarray(steel.areal_density, dtype=np.float64),
        )[0]
    )
    _, ref_lo = reference().forward(
        np.array([[rho_lim]], np.float32), np.array([[steel.z]], np.float32)
    )
    return rho_lim, float(ref_lo[0, 0])


#: How far short of the reference's material map (A_low) a scanner may stop and still be
#: taken to see as far: the reference's own calibration reaches it to 0.01.
REACH_TOLERANCE = 0.05


def short_range(scanner: ScannerCalibration, pixels: int = 1) -> bool:
    """Whether ``scanner`` stops seeing before the ATR's material map (tuned on the
    reference scanner) would: a 4 MeV linac with a thin detector is opaque through a
    pallet of frozen meat that the reference sees through."""
    from core.calibration import MaterialCalibration

    limit = MaterialCalibration.default().a_max
    return reach(scanner, pixels)[1] < limit - REACH_TOLERANCE


@functools.cache
def _opaque_lo() -> float:
    """A_low that both the reference calibration and the ATR's material map take as opaque."""
    from core.calibration import MaterialCalibration

    return max(reference().a_lo_max, MaterialCalibration.default().a_max) + 0.5


Scan = tuple[F32, F32, float, float]


#: Share of a scan's pixels whose R lies outside the band its scanner's calibrated
#: materials span (:meth:`ScannerCalibration.misfit`) above which the scan is taken not
#: to come from that scanner: a scanner's own cargo scans show 0-3 % on the simulator's
#: four models and the three independent ones, another model's mostly 10-90 %.
MAX_MISFIT = 0.08


def check_fit(b_hi: F32, b_lo: F32, scanner: ScannerCalibration, pixels: int = 1) -> None:
    """Refuse a scan that does not fit ``scanner``'s calibration (another scanner's scan).

    Raises:
        AtrInputError: more than :data:`MAX_MISFIT` of the pixels read lighter than the
            lightest calibrated material or heavier than the heaviest.
    """
    share = scanner.misfit(b_hi, b_lo, pixels)
    if share > MAX_MISFIT:
        raise AtrInputError(
            f"{100 * share:.0f} % of the scan reads lighter than {scanner.curves[0].name} or"
            f" heavier than {scanner.curves[-1].name} on the calibration of scanner"
            f" {scanner.scanner!r}: the scan was not taken by that scanner, or its high and"
            " low images are not that scanner's two energies as it measured them",
            fix="give the calibration of the scanner that took this scan "
            "('nii atr calibrate' on its own commissioning scan), and its images as "
            "exported, not edited or rescaled",
        )


def harmonise(scan: Scan, scanner: ScannerCalibration | None) -> Scan:
    """One scan (a_hi, a_lo, line_mm, channel_mm) as the reference scanner would see it.

    The two energies are checked as measured first (``_image.check_pair``): the map
    leaves A_low no noise of its own, so afterwards a single-energy export could no
    longer be told.  Without ``scanner`` the scan is returned as it is (checked).

    Raises:
        AtrInputError: the pair is not two usable energies of one scan.
    """
    from ._image import check_pair

    hi, lo = check_pair(scan[0], scan[1])
    if scanner is None:
        return hi, lo, scan[2], scan[3]
    check_fit(hi, lo, scanner)
    phys = to_physical(hi, lo, scanner)
    return phys.a_hi, phys.a_lo, scan[2], scan[3]
