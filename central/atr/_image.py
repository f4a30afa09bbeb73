"""Image preparation for the ATR: checks, binning, container localisation, background.

The detectors work on a binned copy of the attenuation image (about 11 mm per
pixel at the vehicle's centre plane): a 40 ft container then fits in about
1500 × 400 pixels, noise is averaged down and every detector stays well inside
the one-second budget on one core.  Locations are reported back in the full
resolution image and in mm.
"""
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from ._model import AtrInputError

F32 = npt.NDArray[np.float32]

#: Target pixel size of the binned working image, mm.
WORK_MM = 11.0
#: Attenuation above which a pixel holds cargo rather than only container walls.
OCCUPIED_A = 0.45
#: Attenuation of a wall seen end-on (front wall, doors): the container's ends.
WALL_A = 2.5


def check_pair(a_hi: npt.ArrayLike, a_lo: npt.ArrayLike) -> tuple[F32, F32]:
    """Both attenuation images as float32 (lines, channels); one clear error if unusable."""
    hi = np.asarray(a_hi, dtype=np.float32)
    lo = np.asarray(a_lo, dtype=np.float32)
    if hi.ndim != 2 or lo.ndim != 2:
        raise AtrInputError(
            f"expected two single-channel images, got shapes {hi.shape} and {lo.shape}",
            fix="export one grey-level image per energy (no colour, no alpha)",
        )
    if hi.shape != lo.shape:
        raise AtrInputError(
            f"the high- and low-energy images differ in size: {hi.shape} vs {lo.shape}",
            fix="pass the two energies of the same scan, same crop and orientation",
        )
    if min(hi.shape) < 64:
        raise AtrInputError(
            f"image of {hi.shape} pixels is too small to hold a container",
            fix="export the full scan (at least 64 lines and 64 channels)",
        )
    if not (np.isfinite(hi).all() and np.isfinite(lo).all()):
        raise AtrInputError(
            "the image holds NaN or infinite values",
            fix="export transmissions as 16-bit integers (T × 65535) without masking",
        )
    if float(hi.max()) <= 0.0 and float(lo.max()) <= 0.0:
        raise AtrInputError(
            "the image shows full transmission everywhere or holds no data",
            fix="check the export: an all-zero or all-white image has no scan in it",
        )
    return hi, lo


def transmission_to_attenuation(t: npt.NDArray[np.generic], t_floor: float = 1e-5) -> F32:
    """A = −ln T of a 16-bit transmission image (value = T × 65535), (lines, channels)."""
    tf = np.asarray(t, dtype=np.float32) / np.float32(65535.0)
    return np.asarray(-np.log(np.clip(tf, t_floor, 1.0)), dtype=np.float32)


@numba.njit(cache=True, nogil=True)
def _bin_kernel(a: F32, fl: int, fc: int) -> F32:
    nl = a.shape[0] // fl
    nc = a.shape[1] // fc
    out = np.zeros((nl, nc), dtype=np.float32)
    inv = np.float32(1.0 / (fl * fc))
    for i in range(nl * fl):
        r = i // fl
        for j in range(nc * fc):
            out[r, j // fc] += a[i, j]
    for r in range(nl):
        for c in range(nc):
            out[r, c] *= inv
    return out


def bin_image(a: F32, fl: int, fc: int) -> F32:
    """Mean over fl × fc blocks (lines × channels); the ragged edge is dropped."""
    if fl == 1 and fc == 1:
        return np.ascontiguousarray(a, dtype=np.float32)
    return _bin_kernel(np.ascontiguousarray(a, dtype=np.float32), fl, fc)


@numba.njit(cache=True, nogil=True)
def _running_median_kernel(q: npt.NDArray[np.uint8], half: int, frac: float) -> F32:
    """Median along axis 1 within ±half over values ≥ 1 (0 = not cargo).

    Where fewer than ``frac`` of the window's pixels hold cargo the result is 0:
    an object alone in empty space is measured against nothing.
    """
    rows, cols = q.shape
    out = np.zeros((rows, cols), dtype=np.float32)
    for r in range(rows):
        hist = np.zeros(256, dtype=np.int32)
        n = 0
        for j in range(min(half, cols)):
            v = q[r, j]
            if v > 0:
                hist[v] += 1
                n += 1
        for j in range(cols):
            k = j + half
            if k < cols:
                v = q[r, k]
                if v > 0:
                    hist[v] += 1
                    n += 1
            k = j - half - 1
            if k >= 0:
                v = q[r, k]
                if v > 0:
                    hist[v] -= 1
                    n -= 1
            size = min(cols - 1, j + half) - max(0, j - half) + 1
            if n < 3 or n < frac * size:
                out[r, j] = 0.0
                continue
            target = (n + 1) // 2
            acc = 0
            b = 1
            while b < 256:
                acc += hist[b]
                if acc >= target:
                    break
                b += 1
            out[r, j] = b
    return out


QUANT = 20.0  # levels per unit of attenuation in the median's histogram


def occupied_median(a: F32, occupied: npt.NDArray[np.bool_], half: int, axis: int) -> F32:
    """Running median of the occupied pixels along ``axis`` (window ±half); 0 where none."""
    q = np.clip(np.rint(a * QUANT), 1, 255).astype(np.uint8)
    q[~occupied] = 0
    if axis == 0:
        m = _running_median_kernel(np.ascontiguousarray(q.T), half, 0.4).T
    else:
        m = _running_median_kernel(q, half, 0.4)
    return np.ascontiguousarray(m / np.float32(QUANT), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Frame:
    """Where the container lies in the binned image and how pixels map to mm.

    ``front`` and ``back`` are binned line indices of the front wall and doors,
    ``top`` and ``floor`` binned row indices of the roof line and the inner
    floor; ``fl``, ``fc`` the binning factors; ``line_mm``, ``channel_mm`` the
    full-resolution pixel sizes.
    """

    front: int
    back: int
    top: int
    floor: int
    fl: int
    fc: int
    line_mm: float
    channel_mm: float
    found: bool

    @property
    def px_mm(self) -> tuple[float, float]:
        """Binned pixel size (along travel, height), mm."""
        return self.fl * self.line_mm, self.fc * self.channel_mm

    def length_mm(self) -> float:
        """Outside length of the container as seen, mm."""
        return (self.back - self.front) * self.fl * self.line_mm

    def to_mm(self, l0: float, r0: float, l1: float, r1: float) -> list[float]:
        """Binned box (lines l0..l1, rows r0..r1) → [x0, y0, x1, y1] mm from front and floor."""
        bl, bc = self.px_mm
        return [
            (l0 - self.front) * bl,
            (self.floor - r1) * bc,
            (l1 - self.front) * bl,
            (self.floor - r0) * bc,
        ]

    def to_px(self, l0: int, r0: int, l1: int, r1: int) -> list[int]:
        """Binned box → full-resolution [col0, row0, col1, row1] (cols = lines, rows = channels)."""
        return [l0 * self.fl, r0 * self.fc, l1 * self.fl, r1 * self.fc]


PIXEL_MM_RANGE = (0.1, 100.0)
"""Pixel sizes the ATR accepts, mm at the container. Container scanners image at
2-10 mm per pixel (line pitch from belt speed and line rate, channel pitch from
the detector array); a tenth of a millimetre or a tenth of a metre is a mistyped
value (a unit slip), not a scanner."""


def binning(line_mm: float, channel_mm: float) -> tuple[int, int]:
    """Binning factors that bring both pixel sides near :data:`WORK_MM`.

    Raises:
        AtrInputError: a pixel side is not a finite number in :data:`PIXEL_MM_RANGE`.
    """
    if not (line_mm > 0 and channel_mm > 0 and np.isfinite(line_mm) and np.isfinite(channel_mm)):
        raise AtrInputError(
            f"pixel size {line_mm} × {channel_mm} mm is not a pair of positive numbers",
            fix="give --pixel-mm ALONG_TRAVEL HEIGHT, e.g. --pixel-mm 5.5 2.86",
        )
    lo, hi = PIXEL_MM_RANGE
    if not (lo <= line_mm <= hi and lo <= channel_mm <= hi):
        raise AtrInputError(
            f"pixel size {line_mm:g} × {channel_mm:g} mm is outside {lo:g}-{hi:g} mm: "
            "no container scanner images at that scale",
            fix="give --pixel-mm in millimetres at the container, along travel then height, "
            "e.g. --pixel-mm 5.5 2.86",
        )
    return max(1, round(WORK_MM / line_mm)), max(1, round(WORK_MM / channel_mm))


def locate_container(b: F32, fl: int, fc: int, line_mm: float, channel_mm: float) -> Frame:
    """Find the front wall, doors, roof line and floor in the binned attenuation image.

    The container's ends are the first and last lines where attenuation stays
    high over most of the tallest dark run (front wall and doors seen end-on,
    2 mm steel across 2.4 m); its floor lies 160 mm (floor and cross members)
    above the bottom of that run, its roof at the top.  An image without such
    ends (a crop of the cargo only) is taken whole.
    """
    nl, nc = b.shape
    dark = b > WALL_A
    runs, starts = _longest_runs(dark)
    best = int(runs.max()) if runs.size else 0
    bc = fc * channel_mm
    if best * bc >= 1500.0:
        ends = np.nonzero(runs >= 0.75 * best)[0]
        front, back = int(ends[0]), int(ends[-1])
        if (back - front) * fl * line_mm >= 4000.0:
            ends_sel = np.concatenate([ends[:3], ends[-3:]])
            top = int(starts[ends_sel].min())
            bottom = int(np.median(starts[ends_sel] + runs[ends_sel]))
            floor = max(top + 1, bottom - round(160.0 / bc))
            return Frame(front, back, top, floor, fl, fc, line_mm, channel_mm, True)
    return Frame(0, nl - 1, 0, nc - 1, fl, fc, line_mm, channel_mm, False)


@numba.njit(cache=True, nogil=True)
def _longest_runs(
    mask: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Length and first row of the longest run of True in each line."""
    out = np.zeros(mask.shape[0], dtype=np.int32)
    start = np.zeros(mask.shape[0], dtype=np.int32)
    for i in range(mask.shape[0]):
        run = 0
        best = 0
        for j in range(mask.shape[1]):
            if mask[i, j]:
                run += 1
                if run > best:
                    best = run
                    start[i] = j - run + 1
            else:
                run = 0
        out[i] = best
    return out, start
