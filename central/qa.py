"""Image-quality QA from a test-object scan (R4: e.g. penetration of ≥ 340 mm steel).

Method, derived in the spirit of ANSI N42.46 and IEC 62523 (their full texts
are not reproduced here; see ``docs/qa.md``):

- **Penetration**: a steel step wedge behind the container wall.  Step k is
  *distinguishable* from the next thicker step when the difference of their
  mean attenuations exceeds ``cnr_min`` times the noise of a 5 × 5-pixel
  detail (per-pixel noise / 5).  Penetration is the thickest step such that
  it and every thinner step are distinguishable from their next thicker step.
- **Spatial resolution**: groups of four steel bars, bar = gap = w.  A group
  is resolved when the mean attenuation on the bars exceeds that on the gaps by
  at least ``modulation_min`` of the wide-group contrast; resolution is the
  smallest resolved w.
- **Contrast sensitivity**: thin steel plates on a 100 mm steel block; the
  thinnest plate whose contrast reaches ``cnr_min`` (5 × 5-pixel detail), as a
  percentage of the block.

Diagnostics name the cause of a failure: a low air signal means low source
output; high dark noise means a noisy detector.
"""
# ruff: noqa: RUF002, RUF003

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

DETAIL_PIXELS = 25  # a 5 × 5-pixel detail


@dataclass(frozen=True, slots=True)
class QaSpec:
    """SLA figures and the thresholds of the method."""

    penetration_mm: float = 340.0
    resolution_mm: float = 5.0
    contrast_percent: float = 3.0
    cnr_min: float = 5.0
    modulation_min: float = 0.25
    min_air_adu: float = 25000.0
    max_dark_noise_adu: float = 2.0


@dataclass(slots=True)
class QaReport:
    """Measured figures, pass/fail and the reasons for a failure."""

    penetration_mm: float
    resolution_mm: float | None
    contrast_percent: float | None
    air_adu: float
    dark_noise_adu: float
    passed: bool
    reasons: list[str] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _core(
    a: npt.NDArray[np.float64], roi: dict[str, Any], keep: float = 0.5
) -> npt.NDArray[np.float64]:
    """The central ``keep`` fraction of a ROI in both directions (edges see partial thickness)."""
    l0, l1, c0, c1 = roi["line0"], roi["line1"], roi["channel0"], roi["channel1"]
    dl = int((l1 - l0) * (1 - keep) / 2)
    dc = int((c1 - c0) * (1 - keep) / 2)
    return a[l0 + dl : l1 - dl, c0 + dc : c1 - dc]


def _noise(r: npt.NDArray[np.float64]) -> float:
    """Per-pixel noise from line-to-line differences (insensitive to structure along channels)."""
    if r.shape[0] < 2:
        return float(np.nanstd(r))
    return float(np.nanstd(np.diff(r, axis=0)) / np.sqrt(2.0))


def attenuation(
    raw: npt.ArrayLike, dark: npt.ArrayLike, air: npt.ArrayLike, t_floor: float = 1e-6
) -> npt.NDArray[np.float64]:
    """A = −ln((raw − dark) / (air − dark)); dark and air: (lines, channels) calibration lines."""
    d = np.asarray(dark, dtype=np.float64).mean(axis=0)
    f = np.maximum(np.asarray(air, dtype=np.float64).mean(axis=0) - d, 1.0)
    t = (np.asarray(raw, dtype=np.float64) - d) / f
    return np.asarray(-np.log(np.maximum(t, t_floor)), dtype=np.float64)


def measure(
    dark: npt.ArrayLike,
    air: npt.ArrayLike,
    image: npt.ArrayLike,
    layout: dict[str, Any],
    spec: QaSpec | None = None,
) -> QaReport:
    """Measure one energy's test-object scan (raw lines, (lines, channels)) against ``spec``."""
    spec = spec or QaSpec()
    dark_a = np.asarray(dark, dtype=np.float64)
    air_a = np.asarray(air, dtype=np.float64)
    a = attenuation(image, dark_a, air_a)
    flat = air_a.mean(axis=0) - dark_a.mean(axis=0)
    air_adu = float(np.median(flat))
    noise_c = dark_a.std(axis=0) if dark_a.shape[0] > 1 else np.zeros(flat.shape)
    dark_noise = float(np.median(noise_c))
    # bad channels (dead, hot, far noisier than the rest) are left out of every figure
    bad = (flat < 0.3 * air_adu) | (noise_c > 5 * dark_noise + 1.0)
    a[:, bad] = np.nan

    # penetration
    steps = []
    for s in layout["steps"]:
        r = _core(a, s)
        steps.append(
            {
                "thickness_mm": float(s["thickness_mm"]),
                "mean": float(np.nanmean(r)),
                "noise": _noise(r),
            }
        )
    penetration = 0.0
    seen_all = True
    for k in range(len(steps) - 1):
        s0, s1 = steps[k], steps[k + 1]
        sigma = np.sqrt((s0["noise"] ** 2 + s1["noise"] ** 2) / 2) / np.sqrt(DETAIL_PIXELS)
        cnr = (s1["mean"] - s0["mean"]) / max(sigma, 1e-9)
        s0["cnr_to_next"] = float(cnr)
        seen_all = seen_all and cnr >= spec.cnr_min
        if seen_all:
            penetration = s0["thickness_mm"]

    # spatial resolution
    resolution: float | None = None
    groups = sorted(layout["bars"], key=lambda g: g["width_mm"])
    if groups:
        widest = groups[-1]

        def modulation(g: dict[str, Any]) -> float:
            l0, l1 = g["line0"], g["line1"]
            dl = (l1 - l0) // 5
            prof = a[l0 + dl : l1 - dl].mean(axis=0)
            x = np.arange(prof.size)
            ok = np.isfinite(prof)
            prof = np.interp(x, x[ok], prof[ok])
            return float(
                np.mean(np.interp(g["bar_channels"], x, prof))
                - np.mean(np.interp(g["gap_channels"], x, prof))
            )

        full = modulation(widest)
        for g in groups:
            if full > 0 and modulation(g) / full >= spec.modulation_min:
                resolution = float(g["width_mm"])
                break

    # contrast sensitivity
    contrast: float | None = None
    base = _core(a, layout["contrast_base"])
    for p in sorted(layout["plates"], key=lambda p: p["thickness_mm"]):
        r = _core(a, p)
        sigma = np.sqrt((_noise(r) ** 2 + _noise(base) ** 2) / 2) / np.sqrt(DETAIL_PIXELS)
        if (np.nanmean(r) - np.nanmean(base)) / max(sigma, 1e-9) >= spec.cnr_min:
            contrast = (
                100.0 * float(p["thickness_mm"]) / float(layout["contrast_base"]["thickness_mm"])
            )
            break

    reasons = []
    if penetration < spec.penetration_mm:
        reasons.append(f"penetration {penetration:.0f} mm steel < SLA {spec.penetration_mm:.0f} mm")
    if resolution is None or resolution > spec.resolution_mm:
        got = "none resolved" if resolution is None else f"{resolution:g} mm"
        reasons.append(f"spatial resolution {got} > SLA {spec.resolution_mm:g} mm")
    if contrast is None or contrast > spec.contrast_percent:
        got = "none visible" if contrast is None else f"{contrast:g} %"
        reasons.append(f"contrast sensitivity {got} > SLA {spec.contrast_percent:g} %")
    if reasons:
        if air_adu < spec.min_air_adu:
            reasons.append(
                f"cause: source output low (air signal {air_adu:.0f} ADU < {spec.min_air_adu:.0f})"
            )
        if dark_noise > spec.max_dark_noise_adu:
            reasons.append(
                f"cause: detector noisy (dark noise {dark_noise:.2f} ADU rms > "
                f"{spec.max_dark_noise_adu:g})"
            )
    return QaReport(
        penetration, resolution, contrast, air_adu, dark_noise, not reasons, reasons, steps
    )


_DEFAULT = QaSpec()

#: What ``nii qa`` calls to simulate a test-object scan when no file is given:
#: (source_output, detector_noise_adu or None, seed) -> (dark, air, image, layout).
Simulator = Callable[[float, "float | None", int], tuple[Any, Any, Any, dict[str, Any]]]


def _load_uff(path: Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    from central.products import read_uff

    if not path.is_file():
        raise ConfigError(
            f"--input {path} "
            + ("is a folder" if path.is_dir() else "does not exist")
            + ": it must be a UFF package of a test-object scan",
            fix="export the QA scan with 'nii cir uff --config central.toml REF --out scan.uff' "
            "and pass that file",
        )
    pkg = read_uff(path)
    try:
        layout = pkg.metadata["qa_layout"]
        return pkg.arrays["dark_high"], pkg.arrays["air_high"], pkg.arrays["raw_high"], layout
    except KeyError as exc:
        raise ConfigError(
            f"{path} is not a test-object scan: it lacks {exc.args[0]!r}",
            fix="export the QA scan with arrays dark_high, air_high, raw_high and qa_layout",
        ) from exc


def run_qa(args: argparse.Namespace, simulate: Simulator | None = None) -> int:
    """Run ``nii qa``: measure, print the report, exit 0 on pass and 1 on fail."""
    spec = QaSpec(
        penetration_mm=args.penetration_mm,
        resolution_mm=args.resolution_mm,
        contrast_percent=args.contrast_percent,
    )
    if args.input is not None:
        dark, air, image, layout = _load_uff(Path(args.input))
    elif simulate is not None:
        dark, air, image, layout = simulate(args.source_output, args.detector_noise_adu, args.seed)
    else:
        raise ConfigError(
            "no test-object scan to measure", fix="pass --input SCAN.uff (a QA scan export)"
        )
    report = measure(dark, air, image, layout, spec)
    if args.json:
        print(json.dumps(report.as_dict(), sort_keys=True))
    else:
        verdict = "PASS" if report.passed else "FAIL"
        print(
            f"QA {verdict}: penetration {report.penetration_mm:.0f} mm steel "
            f"(SLA {spec.penetration_mm:.0f}), resolution {report.resolution_mm} mm, "
            f"contrast {report.contrast_percent} %"
        )
        for r in report.reasons:
            print(f"  {r}")
    return 0 if report.passed else 1


def register_qa(
    subparsers: argparse._SubParsersAction[Any],
    simulate: Simulator | None = None,
) -> argparse.ArgumentParser:
    """Add ``nii qa``; ``simulate`` (optional) provides a simulated scan when no file is given."""
    p = subparsers.add_parser(
        "qa",
        help="image-quality QA from a test-object scan (R4: penetration, resolution, contrast)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--input", type=Path, help="UFF package of a test-object scan")
    p.add_argument(
        "--penetration-mm",
        type=float,
        default=_DEFAULT.penetration_mm,
        help="SLA penetration in mm of steel (default 340)",
    )
    p.add_argument("--resolution-mm", type=float, default=_DEFAULT.resolution_mm)
    p.add_argument("--contrast-percent", type=float, default=_DEFAULT.contrast_percent)
    p.add_argument(
        "--source-output",
        type=float,
        default=1.0,
        help="simulation only: relative linac output (1 = healthy)",
    )
    p.add_argument(
        "--detector-noise-adu",
        type=float,
        default=None,
        help="simulation only: electronic noise of the detector, ADU rms",
    )
    p.add_argument("--seed", type=int, default=0, help="simulation only")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    p.set_defaults(func=lambda args: run_qa(args, simulate))
    return p
