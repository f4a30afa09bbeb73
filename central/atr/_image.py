"""Image preparation for the ATR: checks, binning, container localisation, background.

The detectors work on a binned copy of the attenuation image (about 11 mm per
pixel at the vehicle's centre plane): a 40 ft container then fits in about
1500 × 400 pixels, noise is averaged down and every detector stays well inside
the one-second budget on one core.  Locations are reported back in the full
resolution image and in mm.
"""
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
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


def check_pair(
    a_hi: npt.ArrayLike, a_lo: npt.ArrayLike, *, energies: bool = True
) -> tuple[F32, F32]:
    """Both attenuation images as float32 (lines, channels); one clear error if unusable.

    ``a_hi``, ``a_lo``: attenuations −ln T at the high and low energy, (lines, channels),
    the same shape.  Besides shape and values, the pair must be two energies
    (:func:`check_energies`).

    Raises:
        AtrInputError: not two 2-D images of one size, at least 64 × 64, finite, not
            empty, or not a dual-energy pair.
    """
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
    if energies:
        check_energies(hi, lo)
    return hi, lo


#: Least departure from 1 of the median ratio A_low / A_high through matter.  At MeV
#: energies every material attenuates less at the higher energy (Compton scattering falls
#: with energy and dominates from 1 to about 5-10 MeV; NIST XCOM), so the low-energy
#: image is the darker: ratios of 1.1-1.3 through steel and goods.  A ratio within 2 % of
#: 1 over the whole image is one energy given twice.
MIN_ENERGY_SPLIT = 0.02
#: The two energies are separate readings with their own noise, so the ratio A_low/A_high
#: scatters from pixel to pixel at least as much as each image's relative noise (about
#: √2 times: 1.3-1.9 on the scans seen).  A ratio that scatters less than 0.2 times the
#: high image's relative noise is the same reading rescaled: a single-energy export.
COPY_NOISE_SHARE = 0.2


def check_energies(hi: F32, lo: F32) -> None:
    """Refuse a pair that is not two energies of one scan.

    ``hi``, ``lo``: attenuations (lines, channels), same shape.  Judged over matter
    (A > 0.1 at both energies, below the high image's saturation); a constant image,
    one with fewer than 1000 such pixels, or one without noise is let through:
    nothing can be told from it.

    Raises:
        AtrInputError: identical images; a median A_low/A_high within
            :data:`MIN_ENERGY_SPLIT` of 1 (one energy twice) or below 1 (the
            energies swapped); a ratio without noise of its own (one energy rescaled).
    """
    fix = (
        "give the scanner's two energies: --high the high-energy (e.g. 6 MV) image, --low "
        "the low-energy one, each its own 16-bit export"
    )
    if float(np.ptp(hi)) == 0.0:  # a constant: no scan to judge
        return
    if np.array_equal(hi, lo):
        raise AtrInputError(
            "the high- and low-energy images are identical: one image given twice", fix=fix
        )
    h, lw = hi[:, ::4], lo[:, ::4]  # every 4th channel: a million pixels of a 40 ft scan
    m = (h > 0.1) & (lw > 0.1) & (h < 0.95 * float(h.max()))
    m2 = m[1:] & m[:-1]
    if int(m2.sum()) < 1000:
        return
    r = np.where(m, lw / np.where(m, h, 1.0), 1.0)
    ratio = float(np.median(r[m]))
    if ratio < 1.0 - MIN_ENERGY_SPLIT:
        raise AtrInputError(
            f"the low-energy image attenuates less than the high-energy one (median "
            f"A_low/A_high {ratio:.3f}): at MeV energies it is the other way round",
            fix="the two images are swapped: give the high-energy image as --high",
        )
    if abs(ratio - 1.0) <= MIN_ENERGY_SPLIT:
        raise AtrInputError(
            f"the high- and low-energy images are nearly the same (median A_low/A_high "
            f"{ratio:.3f}; every dual-energy scan shows 1.05 or more through matter): one "
            "energy given twice",
            fix=fix,
        )
    rel = float(np.median(np.abs(np.diff(np.log(np.where(m, h, 1.0)), axis=0))[m2]))
    if rel <= 0.0:
        return
    spread = float(np.median(np.abs(np.diff(r, axis=0))[m2]))
    if spread < COPY_NOISE_SHARE * rel * ratio:
        raise AtrInputError(
            f"the low-energy image is the high-energy one rescaled (A_low = {ratio:.3f} x "
            "A_high everywhere, without noise of its own): a single-energy export",
            fix=fix,
        )


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

    ``front`` and ``back`` are binned line indices of the front wall and doors
    (their outer edges), ``top`` and ``floor`` binned row indices of the roof
    line and the inner floor; ``fl``, ``fc`` the binning factors; ``line_mm``,
    ``channel_mm`` the full-resolution pixel sizes.  ``found`` is False where
    no container was found (the frame is then the whole image), ``reason``
    says why; ``size`` is the ISO 668 size the found length fits ("20ft",
    "40ft", "45ft"; "" when not found); ``bottom`` the binned row of the
    bottom of the end walls.
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
    size: str = ""
    reason: str = ""
    bottom: int = -1

    @property
    def px_mm(self) -> tuple[float, float]:
        """Binned pixel size (along travel, height), mm."""
        return self.fl * self.line_mm, self.fc * self.channel_mm

    def length_mm(self) -> float:
        """Outside length of the container as seen, mm."""
        return (self.back - self.front) * self.fl * self.line_mm

    def require(self, scan: str = "the scan") -> None:
        """Raise unless a container was found.

        Raises:
            AtrInputError: no container in ``scan``, with :attr:`reason`.
        """
        if not self.found:
            raise AtrInputError(
                f"no container found in {scan}: {self.reason}",
                fix="compare full scans of the container (front wall to doors) with their "
                "pixel sizes in mm at the container (--pixel-mm ALONG_TRAVEL HEIGHT)",
            )

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


#: ISO 668 series-1 outside lengths, mm: 20 ft, 40 ft (and high-cube), 45 ft.
ISO_LENGTHS_MM: dict[str, float] = {"20ft": 6058.0, "40ft": 12192.0, "45ft": 13716.0}
#: Relative tolerance of a found length against its ISO length: a drive-through scanner's
#: line pitch follows the truck's speed, which drifts by a few per cent during a scan, and
#: the ends are found to a working pixel.  4 % keeps 40 ft (12 192 mm) and 45 ft (13 716 mm)
#: apart (their lengths differ by 12 %).
ISO_TOLERANCE = 0.04
#: Width of the opening along travel that takes the container's ends off the image, mm:
#: wider than any end structure (corner posts, door frame and locking bars, 150-250 mm).
END_OPEN_MM = 400.0
#: Widest group of ridge lines that is one end of the container, mm; wider ridges are goods.
END_MAX_MM = 320.0
#: Least excess of an end over its surroundings along travel.  An end wall is a steel sheet
#: in the plane of the beam (2.4 m of steel end-on): opaque at any scanner energy, so it adds
#: −ln(1 − f) to a working pixel it covers a share f of, whatever the scanner's energy; 0.1
#: is f = 10 %, about 1.1 mm of an 11 mm pixel, less than the 1.6-2 mm of any end wall.
END_EXCESS = 0.1
#: Shortest vertical run of an end, mm: the inner height of the lowest ISO container
#: (2591 mm outside, about 2390 mm inside) less a margin for fan perspective and a wall
#: partly hidden behind the chassis.
END_MIN_RUN_MM = 1800.0
#: Thickness of the floor and its cross members above the bottom of the end walls, mm.
FLOOR_MM = 160.0
#: Least image height (channels × channel pitch) that can hold a container, mm: the lowest
#: ISO container's inside height (about 2390 mm) less 8 % for a roof cut off by the fan.
MIN_IMAGE_HEIGHT_MM = 2200.0


def iso_size(length_mm: float) -> str | None:
    """The ISO 668 size ("20ft", "40ft", "45ft") within tolerance of ``length_mm``, or None."""
    for code, iso in ISO_LENGTHS_MM.items():
        if abs(length_mm - iso) <= ISO_TOLERANCE * iso:
            return code
    return None


def noise_sigma(b: F32) -> float:
    """Robust pixel noise of an image: 1.4826 × median |difference of neighbours| / √2."""
    d = np.abs(np.diff(b, axis=0))
    return float(1.4826 * np.median(d) / np.sqrt(2.0)) if d.size else 0.0


def end_ridges(b: F32, bl: float) -> F32:
    """White top-hat along travel, :data:`END_OPEN_MM` wide: what is as narrow as an end.

    ``b`` is (lines, rows) at ``bl`` mm per line; the result has its shape.
    """
    w = max(3, round(END_OPEN_MM / bl)) | 1
    opened = cv2.morphologyEx(b, cv2.MORPH_OPEN, np.ones((w, 1), np.uint8))
    return np.asarray(b - opened, dtype=np.float32)


def _groups(idx: npt.NDArray[np.intp], gap: int) -> list[tuple[int, int]]:
    """Runs of indices no more than ``gap`` apart, as (first, last)."""
    if idx.size == 0:
        return []
    cuts = np.nonzero(np.diff(idx) > gap)[0]
    firsts = np.concatenate([idx[:1], idx[cuts + 1]])
    lasts = np.concatenate([idx[cuts], idx[-1:]])
    return [(int(a), int(z)) for a, z in zip(firsts, lasts, strict=True)]


def _solid(
    th: F32, runs: npt.NDArray[np.int32], starts: npt.NDArray[np.int32], a: int, z: int
) -> tuple[int, int]:
    """The lines a..z of an end whose excess is at least half the end's highest (its solid part).

    ``runs`` is 0 on lines that are not tall ridges.  The first and last lines of a ridge
    hold the wall for part of a pixel only, and goods may stand against it; the edge is
    put at half the maximum, as an edge is read on any blurred profile.
    """
    lines = range(a, z + 1)
    med = np.array(
        [
            float(np.median(th[i, starts[i] : starts[i] + runs[i]])) if runs[i] else 0.0
            for i in lines
        ]
    )
    keep = np.nonzero(med >= 0.5 * med.max())[0]
    return a + int(keep[0]), a + int(keep[-1])


def _pick_ends(
    ends: list[tuple[tuple[int, int], tuple[int, int]]], bl: float
) -> tuple[int, int, str] | None:
    """Front and back of the outermost pair of ends whose distance fits an ISO length.

    ``ends`` holds, per group of tall ridge lines, the solid part of its first and of its
    last ``END_MAX_MM`` (a group may be a wall alone, or a wall and the goods against it).
    Where the outermost pair fits no ISO length, the longest pair that does.
    """
    if not ends:
        return None
    fits = [
        (z[1][1] - a[0][0], -i, a[0][0], z[1][1])
        for i, a in enumerate(ends)
        for z in ends[i:]
        if iso_size((z[1][1] - a[0][0]) * bl) is not None
    ]
    outer = ends[-1][1][1] - ends[0][0][0]
    if iso_size(outer * bl) is not None:
        return ends[0][0][0], ends[-1][1][1], str(iso_size(outer * bl))
    if not fits:
        return None
    _, _, front, back = max(fits)
    return front, back, str(iso_size((back - front) * bl))


def locate_container(b: F32, fl: int, fc: int, line_mm: float, channel_mm: float) -> Frame:
    """Find the front wall, doors, roof line and floor in the binned attenuation image.

    ``b`` is the binned attenuation image (lines, rows), ``fl``, ``fc`` its
    binning factors, ``line_mm``, ``channel_mm`` the full-resolution pixel
    sizes in mm at the container.  The ends are the outermost narrow ridges
    along travel (white top-hat, :data:`END_OPEN_MM` wide, over
    :data:`END_EXCESS` and the image's own noise) that run at least
    :data:`END_MIN_RUN_MM` up the image; their distance in mm must fit an ISO
    668 length (:data:`ISO_LENGTHS_MM`, ±:data:`ISO_TOLERANCE`), which also
    rules out goods standing as tall as the container.  No threshold depends
    on the scanner's energy or on the line pitch in pixels (see
    ``docs/atr.md``, "Container model").  The floor lies :data:`FLOOR_MM`
    above the bottom of the end walls, the roof line at their top.

    Returns:
        The frame; where no pair of ends fits, ``found`` is False, the frame
        covers the whole image and ``reason`` says why (a crop of the cargo
        only, or a length that fits no ISO container: a wrong line pitch).

    Raises:
        AtrInputError: the image is too low (channels × ``channel_mm``) to hold
            any container: the channel pitch is wrong or the image is cropped.
    """
    nl, nc = b.shape
    bl, bc = fl * line_mm, fc * channel_mm
    if nc * bc < MIN_IMAGE_HEIGHT_MM:
        raise AtrInputError(
            f"the image is {nc * bc:.0f} mm high ({nc * fc} channels of {channel_mm:g} mm): "
            f"too low for any container (at least {MIN_IMAGE_HEIGHT_MM:.0f} mm)",
            fix="check the vertical pixel size (--pixel-mm ALONG_TRAVEL HEIGHT, mm at the "
            "container) and export the full height of the scan",
        )
    whole = Frame(0, nl - 1, 0, nc - 1, fl, fc, line_mm, channel_mm, False)
    if nl < 3:
        return replace(whole, reason="the image has too few lines")
    th = end_ridges(b, bl)
    t = max(6.0 * noise_sigma(b), END_EXCESS)
    # a wall that straddles two pixels shares its excess between them: count the pair
    pair = th + np.maximum(np.roll(th, 1, axis=0), np.roll(th, -1, axis=0))
    ridge = (th > 0.4 * t) & (pair > t)
    runs, starts = _longest_runs(ridge)
    best = int(runs.max())
    tall = np.nonzero((runs * bc >= END_MIN_RUN_MM) & (runs >= 0.75 * best))[0]
    w = max(1, round(END_MAX_MM / bl))
    rt = np.zeros_like(runs)
    rt[tall] = runs[tall]
    ends = [
        (_solid(th, rt, starts, a, min(z, a + w)), _solid(th, rt, starts, max(a, z - w), z))
        for a, z in _groups(tall, 2)
    ]
    picked = _pick_ends(ends, bl)
    if picked is None:
        if ends and (ends[-1][1][1] - ends[0][0][0]) * bl >= END_MAX_MM:
            seen = (ends[-1][1][1] - ends[0][0][0]) * bl
            near = min(ISO_LENGTHS_MM.items(), key=lambda kv: abs(kv[1] - seen))
            reason = (
                f"its ends, found {seen:.0f} mm apart, fit no ISO 668 length "
                f"({', '.join(f'{v:.0f}' for v in ISO_LENGTHS_MM.values())} mm "
                f"± {100 * ISO_TOLERANCE:.0f} %); a {near[0]} container would need a line pitch "
                f"of {line_mm * near[1] / seen:.3g} mm, not {line_mm:g} mm"
            )
        else:
            reason = (
                f"no front wall and doors standing at least {END_MIN_RUN_MM:.0f} mm tall a "
                "container's length apart: the image shows no whole container (a crop?)"
            )
        return replace(whole, reason=reason)
    front, back, size = picked
    rim = [f for f, _ in ends if f[0] == front] + [k for _, k in ends if k[1] == back]
    sel = np.array([i for a, z in rim for i in range(a, z + 1)])
    sel = sel[
        runs[sel] >= 0.9 * runs[sel].max()
    ]  # a wall's run cut short by a gap is not its height
    top = int(starts[sel].min())
    bottom = int(np.median(starts[sel] + runs[sel]))
    floor = max(top + 1, bottom - round(FLOOR_MM / bc))
    return Frame(front, back, top, floor, fl, fc, line_mm, channel_mm, True, size, "", bottom)


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
