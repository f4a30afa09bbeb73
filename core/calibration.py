"""Edge calibration of raw dual-energy detector lines.

From the calibration lines a scanner sends at scan start (beam off: dark; beam
on, empty tunnel: air) this module derives, per channel and energy, the dark
offset, the flat-field gain, the noise model (electronic variance and ADU per
detected quantum) and the bad channels (dead, hot, noisy).  Image lines then
become transmissions T = (raw − dark) / (air − dark), attenuations A = −ln T
(bad channels interpolated from their neighbours), and, from the pair
(A_high, A_low), a material map and an effective atomic number.

Dual-energy principle at MeV energies: pair production grows with Z and with
photon energy, Compton scattering falls with energy, so the ratio
R = A_high / A_low rises with Z at a given attenuation.  R is compared with
reference curves measured on step wedges of known materials (here: measured on
the simulator, see ``A_LO_GRID``) to give Z_eff, which maps onto the customary
classes: organic (Z_eff < 10, orange), inorganic / light metal (10–18, green)
and metal (≥ 18, blue).  Too little attenuation carries no material
information; too much leaves only noise (impenetrable, shown dark).

All per-pixel work runs in numba kernels, one pass each, so one core keeps up
with far more than a linac's 100–800 lines per second.
"""
# ruff: noqa: RUF002, RUF003

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

__all__ = [
    "A_LO_GRID",
    "MATERIAL_COLOURS",
    "REFERENCE_CURVES",
    "CalibratedScan",
    "DetectorCalibration",
    "MaterialCalibration",
    "MaterialClass",
    "MaterialMap",
    "box_smooth",
    "calibrate_scan",
]


class MaterialClass(enum.IntEnum):
    """Classes of the material map, as stored in its uint8 pixels."""

    NONE = 0  # too thin to tell
    ORGANIC = 1
    INORGANIC = 2
    METAL = 3
    IMPENETRABLE = 4


#: Display colours (RGB): the customary orange / green / blue of dual-energy screening.
MATERIAL_COLOURS: dict[MaterialClass, tuple[int, int, int]] = {
    MaterialClass.NONE: (255, 255, 255),
    MaterialClass.ORGANIC: (255, 150, 30),
    MaterialClass.INORGANIC: (40, 180, 60),
    MaterialClass.METAL: (40, 110, 255),
    MaterialClass.IMPENETRABLE: (20, 20, 40),
}

#: A_low grid of the reference curves (measured by
#: ``python -m firmware_sim.physics.material_curves`` on seeds 9001.., not the tests).
A_LO_GRID: tuple[float, ...] = tuple(round(0.2 * k, 1) for k in range(1, 51))
#: R = A_high / A_low of each reference material along A_LO_GRID, by effective Z
#: (polyethylene 5.5, water 7.4, aluminium 13, steel 26, tin 50, lead 82).
# fmt: off
REFERENCE_CURVES: dict[float, tuple[float, ...]] = {
    5.5: (
        0.86570, 0.86324, 0.86144, 0.85978, 0.85813, 0.85663, 0.85528, 0.85396, 0.85283,
        0.85165, 0.85064, 0.84961, 0.84871, 0.84785, 0.84709, 0.84636, 0.84565, 0.84502,
        0.84441, 0.84382, 0.84329, 0.84281, 0.84236, 0.84193, 0.84148, 0.84102, 0.84059,
        0.84030, 0.84000, 0.83971, 0.83943, 0.83914, 0.83882, 0.83850, 0.83818, 0.83788,
        0.83759, 0.83729, 0.83718, 0.83709, 0.83701, 0.83684, 0.83658, 0.83631, 0.83605,
        0.83591, 0.83583, 0.83575, 0.83568, 0.83562,
    ),
    7.4: (
        0.86656, 0.86407, 0.86220, 0.86049, 0.85894, 0.85754, 0.85622, 0.85492, 0.85373,
        0.85268, 0.85165, 0.85070, 0.84985, 0.84902, 0.84827, 0.84759, 0.84695, 0.84633,
        0.84575, 0.84520, 0.84470, 0.84421, 0.84376, 0.84331, 0.84295, 0.84260, 0.84228,
        0.84199, 0.84169, 0.84137, 0.84106, 0.84079, 0.84057, 0.84034, 0.84006, 0.83976,
        0.83947, 0.83923, 0.83905, 0.83887, 0.83870, 0.83854, 0.83838, 0.83823, 0.83801,
        0.83771, 0.83741, 0.83710, 0.83744, 0.83900,
    ),
    13.0: (
        0.87193, 0.87017, 0.86896, 0.86774, 0.86665, 0.86573, 0.86486, 0.86407, 0.86333,
        0.86262, 0.86205, 0.86156, 0.86107, 0.86064, 0.86026, 0.85995, 0.85967, 0.85941,
        0.85920, 0.85897, 0.85875, 0.85855, 0.85836, 0.85824, 0.85817, 0.85808, 0.85796,
        0.85785, 0.85784, 0.85786, 0.85787, 0.85785, 0.85784, 0.85780, 0.85769, 0.85758,
        0.85747, 0.85756, 0.85766, 0.85775, 0.85776, 0.85767, 0.85758, 0.85749, 0.85753,
        0.85769, 0.85784, 0.85800, 0.85807, 0.85799,
    ),
    26.0: (
        0.88355, 0.88239, 0.88201, 0.88152, 0.88134, 0.88118, 0.88110, 0.88106, 0.88111,
        0.88117, 0.88124, 0.88144, 0.88159, 0.88180, 0.88202, 0.88224, 0.88246, 0.88270,
        0.88300, 0.88330, 0.88362, 0.88392, 0.88422, 0.88450, 0.88477, 0.88505, 0.88541,
        0.88578, 0.88609, 0.88639, 0.88669, 0.88696, 0.88722, 0.88748, 0.88781, 0.88815,
        0.88848, 0.88883, 0.88917, 0.88952, 0.88986, 0.89002, 0.89017, 0.89032, 0.89046,
        0.89091, 0.89138, 0.89185, 0.89232, 0.89262,
    ),
    50.0: (
        0.87333, 0.87448, 0.87595, 0.87739, 0.87877, 0.87996, 0.88121, 0.88240, 0.88342,
        0.88458, 0.88545, 0.88646, 0.88735, 0.88825, 0.88914, 0.88999, 0.89082, 0.89160,
        0.89233, 0.89303, 0.89370, 0.89438, 0.89507, 0.89571, 0.89632, 0.89693, 0.89754,
        0.89815, 0.89873, 0.89931, 0.89988, 0.90040, 0.90092, 0.90141, 0.90173, 0.90205,
        0.90237, 0.90286, 0.90340, 0.90393, 0.90443, 0.90472, 0.90501, 0.90530, 0.90555,
        0.90552, 0.90548, 0.90545, 0.90541, 0.90577,
    ),
    82.0: (
        0.85405, 0.86238, 0.86965, 0.87587, 0.88128, 0.88595, 0.89017, 0.89396, 0.89743,
        0.90056, 0.90345, 0.90616, 0.90860, 0.91086, 0.91305, 0.91510, 0.91697, 0.91873,
        0.92038, 0.92199, 0.92349, 0.92492, 0.92624, 0.92753, 0.92874, 0.92995, 0.93107,
        0.93217, 0.93323, 0.93418, 0.93514, 0.93605, 0.93689, 0.93773, 0.93857, 0.93939,
        0.94021, 0.94103, 0.94176, 0.94247, 0.94318, 0.94387, 0.94426, 0.94465, 0.94504,
        0.94543, 0.94628, 0.94725, 0.94822, 0.94919,
    ),
}
# fmt: on


@numba.njit(cache=True, fastmath=True, nogil=True)
def _attenuation_kernel(
    raw: npt.NDArray[np.uint16],
    dark: F32,
    inv_flat: F32,
    bad: npt.NDArray[np.int64],
    left: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    weight: F32,
    t_floor: float,
) -> F32:
    lines, ch = raw.shape
    out = np.empty((lines, ch), dtype=np.float32)
    for line in range(lines):
        for c in range(ch):
            t = (np.float32(raw[line, c]) - dark[c]) * inv_flat[c]
            t = max(t, t_floor)
            out[line, c] = -np.log(t)
        for k in range(bad.size):
            w = weight[k]
            out[line, bad[k]] = (1 - w) * out[line, left[k]] + w * out[line, right[k]]
    return out


@numba.njit(cache=True, fastmath=True, nogil=True)
def _box_smooth_kernel(a: F32, half_l: int, half_c: int) -> F32:
    """Separable running-sum box mean; both passes walk rows, so memory is read in order."""
    lines, ch = a.shape
    tmp = np.empty((lines, ch), dtype=np.float32)
    out = np.empty((lines, ch), dtype=np.float32)
    inv_c = np.empty(ch, dtype=np.float32)
    for c in range(ch):
        inv_c[c] = 1.0 / (min(c + half_c, ch - 1) - max(c - half_c, 0) + 1)
    for line in range(lines):  # along channels
        row = a[line]
        acc = 0.0
        for c in range(min(half_c, ch)):
            acc += row[c]
        for c in range(ch):
            hi = c + half_c
            lo = c - half_c - 1
            if hi < ch:
                acc += row[hi]
            if lo >= 0:
                acc -= row[lo]
            tmp[line, c] = acc * inv_c[c]
    acc_v = np.zeros(ch, dtype=np.float64)
    for line in range(min(half_l, lines)):
        acc_v += tmp[line]
    for line in range(lines):  # along lines, a whole row at a time
        hi = line + half_l
        lo = line - half_l - 1
        if hi < lines:
            acc_v += tmp[hi]
        if lo >= 0:
            acc_v -= tmp[lo]
        inv_n = 1.0 / (min(hi, lines - 1) - max(line - half_l, 0) + 1)
        out[line] = acc_v * inv_n
    return out


@numba.njit(cache=True, fastmath=True, nogil=True)
def _classify_kernel(
    a_hi: F32,
    a_lo: F32,
    lut: F32,
    a0: float,
    da: float,
    r0: float,
    dr: float,
    a_min: float,
    a_max: float,
    z_organic: float,
    z_metal: float,
) -> tuple[U8, F32]:
    lines, ch = a_hi.shape
    na, nr = lut.shape
    cls = np.empty((lines, ch), dtype=np.uint8)
    zeff = np.empty((lines, ch), dtype=np.float32)
    for line in range(lines):
        for c in range(ch):
            lo = a_lo[line, c]
            if lo < a_min:
                cls[line, c] = 0
                zeff[line, c] = 0.0
                continue
            if lo > a_max:
                cls[line, c] = 4
                zeff[line, c] = 0.0
                continue
            r = a_hi[line, c] / lo
            i = min(max(int((lo - a0) / da + 0.5), 0), na - 1)
            u = (r - r0) / dr
            j = min(max(int(u), 0), nr - 2)
            f = min(max(u - j, 0.0), 1.0)
            z = lut[i, j] * (1 - f) + lut[i, j + 1] * f
            zeff[line, c] = z
            if z < z_organic:
                cls[line, c] = 1
            elif z < z_metal:
                cls[line, c] = 2
            else:
                cls[line, c] = 3
    return cls, zeff


def box_smooth(a: F32, lines: int = 3, channels: int = 5) -> F32:
    """Mean over a ``lines`` × ``channels`` window (odd sizes), edges shrunk, not padded."""
    return _box_smooth_kernel(np.ascontiguousarray(a, dtype=np.float32), lines // 2, channels // 2)


def _bad_channel_interpolation(
    bad: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], F32]:
    good = np.nonzero(~bad)[0]
    idx = np.nonzero(bad)[0]
    if good.size == 0:
        raise ValueError("every channel is bad: the detector needs service before it can image")
    pos = np.searchsorted(good, idx)
    left = good[np.clip(pos - 1, 0, good.size - 1)]
    right = good[np.clip(pos, 0, good.size - 1)]
    span = np.maximum(right - left, 1)
    w = np.where(right == left, 0.0, (idx - left) / span).astype(np.float32)
    return idx.astype(np.int64), left.astype(np.int64), right.astype(np.int64), w


@dataclass(frozen=True, slots=True)
class DetectorCalibration:
    """Per-channel dark offset, flat field, noise model and bad channels, for both energies.

    Arrays are (2, channels): row 0 high energy, row 1 low energy.
    """

    dark: F32
    flat: F32  # air − dark, ADU
    electronic_var: F32  # ADU², from the spread of the dark lines
    adu_per_quantum: F32  # from the excess spread of the air lines (photon statistics)
    bad: npt.NDArray[np.bool_]
    t_floor: float = 1e-5

    @property
    def channels(self) -> int:
        """Number of detector channels."""
        return int(self.dark.shape[1])

    @classmethod
    def from_lines(
        cls,
        dark_hi: npt.ArrayLike,
        dark_lo: npt.ArrayLike,
        air_hi: npt.ArrayLike,
        air_lo: npt.ArrayLike,
    ) -> DetectorCalibration:
        """Derive the calibration from calibration lines, each (lines, channels) raw counts.

        Bad channels: dead (air barely above dark), hot (dark near full scale) or
        noisy (dark spread far above the array's median).
        """
        darks = [np.asarray(d, dtype=np.float64) for d in (dark_hi, dark_lo)]
        airs = [np.asarray(a, dtype=np.float64) for a in (air_hi, air_lo)]
        dark = np.stack([d.mean(axis=0) for d in darks])
        air = np.stack([a.mean(axis=0) for a in airs])
        flat = air - dark
        if darks[0].shape[0] > 1:
            evar = np.stack([d.var(axis=0, ddof=1) for d in darks])
            avar = np.stack([a.var(axis=0, ddof=1) for a in airs])
        else:
            evar = np.ones_like(dark)
            avar = np.ones_like(dark)
        med_flat = np.median(flat, axis=1, keepdims=True)
        med_noise = np.median(evar, axis=1, keepdims=True)
        bad = np.any(
            (flat < 0.3 * med_flat) | (dark > 60000) | (evar > 25 * med_noise + 1.0), axis=0
        )
        k = np.clip((avar - evar) / np.maximum(flat, 1.0), 1e-6, None)
        return cls(
            dark=dark.astype(np.float32),
            flat=np.maximum(flat, 1.0).astype(np.float32),
            electronic_var=np.maximum(evar, 1.0 / 12).astype(np.float32),
            adu_per_quantum=k.astype(np.float32),
            bad=bad,
        )

    @classmethod
    def from_levels(cls, dark: npt.ArrayLike, air: npt.ArrayLike) -> DetectorCalibration:
        """From mean levels only, (2, channels) each, as a scan header carries them."""
        d = np.asarray(dark, dtype=np.float64)
        a = np.asarray(air, dtype=np.float64)
        return cls.from_lines(d[0:1], d[1:2], a[0:1], a[1:2])

    def attenuation(self, raw_hi: npt.ArrayLike, raw_lo: npt.ArrayLike) -> tuple[F32, F32]:
        """A = −ln T of raw image lines (lines, channels) for both energies; bad channels filled."""
        idx, left, right, w = _bad_channel_interpolation(self.bad)
        inv = (1.0 / self.flat).astype(np.float32)
        out = []
        for e, raw in enumerate((raw_hi, raw_lo)):
            r = np.ascontiguousarray(raw, dtype=np.uint16)
            if r.ndim != 2 or r.shape[1] != self.channels:
                raise ValueError(
                    f"raw lines have shape {r.shape}, expected (lines, {self.channels})"
                )
            out.append(
                _attenuation_kernel(r, self.dark[e], inv[e], idx, left, right, w, self.t_floor)
            )
        return out[0], out[1]

    def attenuation_sigma(self, a: F32, energy: int, pixels: int = 1) -> F32:
        """1-σ noise of A per pixel from the noise model, for means over ``pixels`` pixels."""
        s = np.exp(-a) * self.flat[energy]
        var = self.electronic_var[energy] + self.adu_per_quantum[energy] * s
        return np.asarray(np.sqrt(var / pixels) / np.maximum(s, 1e-3), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class MaterialMap:
    """Per-pixel material class (uint8, see :class:`MaterialClass`) and effective Z (0: none)."""

    material: U8
    zeff: F32

    def colours(self) -> npt.NDArray[np.uint8]:
        """RGB image (lines, channels, 3) of the classes in their display colours."""
        palette = np.zeros((256, 3), dtype=np.uint8)
        for k, rgb in MATERIAL_COLOURS.items():
            palette[int(k)] = rgb
        return palette[self.material]


@dataclass(frozen=True, slots=True)
class MaterialCalibration:
    """The dual-energy classifier: Z_eff as a function of (A_low, R) from reference curves."""

    a_lo_grid: tuple[float, ...]
    curves: Mapping[float, tuple[float, ...]]
    z_organic: float = 10.0
    z_metal: float = 18.0
    a_min: float = 0.25
    a_max: float = 10.0
    r_range: tuple[float, float] = (0.78, 1.0)
    lut_shape: tuple[int, int] = (121, 441)

    @classmethod
    def default(cls) -> MaterialCalibration:
        """The reference curves measured on the simulated 6/4 MeV scanner."""
        return cls(A_LO_GRID, REFERENCE_CURVES)

    @classmethod
    def fit(
        cls, samples: Mapping[float, tuple[npt.ArrayLike, npt.ArrayLike]], **kw: float
    ) -> MaterialCalibration:
        """Build from step-wedge measurements: {Z: (A_low per step, A_high per step)}."""
        grid = np.linspace(0.2, 10.0, 50)
        curves: dict[float, tuple[float, ...]] = {}
        for z, (lo, hi) in samples.items():
            lo_a = np.asarray(lo, dtype=np.float64)
            order = np.argsort(lo_a)
            r = np.asarray(hi, dtype=np.float64)[order] / lo_a[order]
            curves[float(z)] = tuple(float(v) for v in np.interp(grid, lo_a[order], r))
        return cls(tuple(float(v) for v in grid), curves, **kw)  # type: ignore[arg-type]

    def _axes(self) -> tuple[float, float, float, float]:
        na, nr = self.lut_shape
        a0 = 0.0
        da = 12.0 / (na - 1)
        r0, r1 = self.r_range
        return a0, da, r0, (r1 - r0) / (nr - 1)

    def lut(self) -> F32:
        """Z_eff on the (A_low, R) grid; a heavy curve crossing a lighter one is left out there."""
        cached = _LUT_CACHE.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1]
        a0, da, r0, dr = self._axes()
        na, nr = self.lut_shape
        a_axis = a0 + da * np.arange(na)
        r_axis = r0 + dr * np.arange(nr)
        zs = np.array(sorted(self.curves), dtype=np.float64)
        grid = np.asarray(self.a_lo_grid, dtype=np.float64)
        rc = np.stack([np.interp(a_axis, grid, np.asarray(self.curves[z])) for z in zs])
        out = np.empty((na, nr), dtype=np.float32)
        for i in range(na):
            keep_r = [rc[0, i]]
            keep_z = [zs[0]]
            for k in range(1, zs.size):
                if rc[k, i] > keep_r[-1] + 1e-4:
                    keep_r.append(rc[k, i])
                    keep_z.append(zs[k])
            out[i] = np.exp(np.interp(r_axis, keep_r, np.log(keep_z)))
        _LUT_CACHE[id(self)] = (self, out)
        return out

    def classify(
        self, a_hi: F32, a_lo: F32, smooth: tuple[int, int] | None = (3, 5)
    ) -> MaterialMap:
        """Material map of attenuations (lines, channels); ``smooth``: box (lines, channels).

        Smoothing averages noise down before the ratio is taken, as the ratio of
        two noisy small differences is what limits MeV material discrimination.
        """
        if smooth is not None:
            a_hi = box_smooth(a_hi, *smooth)
            a_lo = box_smooth(a_lo, *smooth)
        a0, da, r0, dr = self._axes()
        cls, z = _classify_kernel(
            np.ascontiguousarray(a_hi, dtype=np.float32),
            np.ascontiguousarray(a_lo, dtype=np.float32),
            self.lut(),
            a0,
            da,
            r0,
            dr,
            self.a_min,
            self.a_max,
            self.z_organic,
            self.z_metal,
        )
        return MaterialMap(cls, z)

    def zeff_sigma(
        self,
        a_hi: F32,
        a_lo: F32,
        detector: DetectorCalibration,
        pixels: int = 15,
    ) -> F32:
        """1-σ uncertainty of Z_eff per pixel, from the noise model through the curves' slope.

        ``pixels`` is the number of pixels averaged (the smoothing window).  NaN
        where there is no material information (too thin or impenetrable).
        """
        lut = self.lut()
        a0, da, r0, dr = self._axes()
        dzdr = np.gradient(lut, dr, axis=1)
        lo = np.asarray(a_lo, dtype=np.float32)
        hi = np.asarray(a_hi, dtype=np.float32)
        s_hi = detector.attenuation_sigma(hi, 0, pixels)
        s_lo = detector.attenuation_sigma(lo, 1, pixels)
        safe = np.maximum(lo, 1e-3)
        r = hi / safe
        s_r = np.sqrt(s_hi**2 + (r * s_lo) ** 2) / safe
        i = np.clip(np.rint((lo - a0) / da).astype(np.int64), 0, lut.shape[0] - 1)
        j = np.clip(np.rint((r - r0) / dr).astype(np.int64), 0, lut.shape[1] - 1)
        out = np.abs(dzdr[i, j]) * s_r
        valid = (lo >= self.a_min) & (lo <= self.a_max)
        return np.where(valid, out, np.nan).astype(np.float32)


_LUT_CACHE: dict[int, tuple[MaterialCalibration, F32]] = {}


@dataclass(frozen=True, slots=True)
class CalibratedScan:
    """A calibrated scan: attenuations of both energies and the material map."""

    a_hi: F32
    a_lo: F32
    materials: MaterialMap


def calibrate_scan(
    detector: DetectorCalibration,
    raw_hi: npt.ArrayLike,
    raw_lo: npt.ArrayLike,
    materials: MaterialCalibration | None = None,
    smooth: tuple[int, int] | None = (3, 5),
) -> CalibratedScan:
    """Raw lines → attenuations → material map, the whole edge calibration of one scan."""
    a_hi, a_lo = detector.attenuation(raw_hi, raw_lo)
    mc = materials or MaterialCalibration.default()
    return CalibratedScan(a_hi, a_lo, mc.classify(a_hi, a_lo, smooth))
