# ruff: noqa: RUF002
"""Fan-beam geometry: rays from a point source to a vertical detector column.

Coordinates, in mm: ``x`` along the beam (source side negative, the vehicle's
centre line at 0), ``y`` along the direction of travel (0 at the front of the
scene), ``z`` height above the ground.  The fan is vertical, so the image is a
perspective projection in ``z`` (objects near the source look taller) and a
parallel one in ``y`` (one image line per position of the vehicle).  Channel 0
is the top of the fan.

Scene objects are either axis-aligned boxes (exact path length of every
oblique ray, so a roof plate seen edge-on is as dark as it should be) or
extrusions: a 2-D outline in the (y, z) plane swept along ``x`` (wheels, tyres,
drums, firearm silhouettes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ._attenuation import Material
from ._transmission import basis_fit

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Fan:
    """The fan of rays: ``channels`` detector elements, evenly spaced in height at x = 0."""

    channels: int
    source_x: float = -4000.0
    source_z: float = 1100.0
    z_top: float = 4500.0
    z_bottom: float = 100.0

    def pitch_mm(self) -> float:
        """Channel pitch projected to the vehicle's centre plane."""
        return (self.z_top - self.z_bottom) / self.channels

    def heights(self, oversample: int = 1) -> FloatArray:
        """Height at x = 0 of each (sub)ray, top first; shape (channels * oversample,)."""
        n = self.channels * oversample
        step = (self.z_top - self.z_bottom) / n
        return np.asarray(self.z_top - (np.arange(n) + 0.5) * step, dtype=np.float64)

    def slopes(self, oversample: int = 1) -> FloatArray:
        """dz/dx of each (sub)ray."""
        return (self.heights(oversample) - self.source_z) / (0.0 - self.source_x)

    def z_at(self, x: float, oversample: int = 1) -> FloatArray:
        """Height of each (sub)ray where it crosses the plane at ``x``."""
        return self.source_z + self.slopes(oversample) * (x - self.source_x)

    def channel_of(self, x: float, z: float) -> float:
        """Fractional channel index of the ray through (x, z)."""
        s = (z - self.source_z) / (x - self.source_x)
        zc = self.source_z + s * (0.0 - self.source_x)
        return (self.z_top - zc) / (self.z_top - self.z_bottom) * self.channels - 0.5


def box_path_lengths(
    slopes: FloatArray, fan: Fan, x0: float, x1: float, z0: float, z1: float
) -> FloatArray:
    """Path length (mm) of each ray through the x–z rectangle [x0, x1] × [z0, z1]."""
    sx, sz = fan.source_x, fan.source_z
    with np.errstate(divide="ignore", invalid="ignore"):
        xa = sx + (z0 - sz) / slopes
        xb = sx + (z1 - sz) / slopes
    lo = np.where(slopes == 0, -np.inf, np.minimum(xa, xb))
    hi = np.where(slopes == 0, np.inf, np.maximum(xa, xb))
    flat_inside = (slopes == 0) & (sz >= z0) & (sz <= z1)
    lo = np.where((slopes == 0) & ~flat_inside, np.inf, lo)
    seg = np.clip(np.minimum(hi, x1) - np.maximum(lo, x0), 0.0, None)
    return np.asarray(seg * np.sqrt(1.0 + slopes * slopes), dtype=np.float64)


def column_coverage(ys: FloatArray, pitch: float, y0: float, y1: float) -> FloatArray:
    """Fraction of each line's travel interval [y − p/2, y + p/2] that lies in [y0, y1]."""
    a = np.maximum(ys - pitch / 2, y0)
    b = np.minimum(ys + pitch / 2, y1)
    return np.asarray(np.clip((b - a) / pitch, 0.0, 1.0), dtype=np.float64)


@dataclass(slots=True)
class SceneObject:
    """Something the beam crosses: material, density (g/cm³ as packed) and a label.

    ``kind`` is ``structure`` (container, vehicle), ``cargo`` or ``concealment``;
    ``truth`` marks objects reported in the scan's ground truth.  ``group``
    (keyword only, 0: none) numbers the finding a truth object belongs to when
    one concealment makes several findings (weapons lying apart); objects of
    one group are reported as one finding.
    """

    material: Material
    density: float
    label: str
    kind: str = "cargo"
    truth: bool = False
    group: int = field(default=0, kw_only=True)

    def bounds(self) -> tuple[float, float, float, float, float, float]:
        raise NotImplementedError


@dataclass(slots=True)
class Box(SceneObject):
    """An axis-aligned box; ``y_profile`` scales its path length per line (corrugation)."""

    x0: float = 0.0
    x1: float = 0.0
    y0: float = 0.0
    y1: float = 0.0
    z0: float = 0.0
    z1: float = 0.0
    y_profile: Callable[[FloatArray], FloatArray] | None = field(default=None, repr=False)

    def bounds(self) -> tuple[float, float, float, float, float, float]:
        return (self.x0, self.x1, self.y0, self.y1, self.z0, self.z1)


@dataclass(slots=True)
class Extrusion(SceneObject):
    """A (y, z) outline swept from x0 to x1; ``inside(y, z)`` says which points it covers."""

    x0: float = 0.0
    x1: float = 0.0
    y0: float = 0.0
    y1: float = 0.0
    z0: float = 0.0
    z1: float = 0.0
    inside: Callable[[FloatArray, FloatArray], npt.NDArray[np.bool_]] | None = field(
        default=None, repr=False
    )

    def bounds(self) -> tuple[float, float, float, float, float, float]:
        return (self.x0, self.x1, self.y0, self.y1, self.z0, self.z1)


def annulus(
    cy: float, cz: float, r_out: float, r_in: float = 0.0
) -> Callable[[FloatArray, FloatArray], npt.NDArray[np.bool_]]:
    """Outline test of a disc or ring centred at (cy, cz)."""

    def inside(y: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
        r2 = (y - cy) ** 2 + (z - cz) ** 2
        return np.asarray((r2 <= r_out * r_out) & (r2 >= r_in * r_in))

    return inside


def polygon(
    points: list[tuple[float, float]],
) -> Callable[[FloatArray, FloatArray], npt.NDArray[np.bool_]]:
    """Outline test of a simple polygon given as (y, z) vertices (even–odd rule)."""
    pts = np.asarray(points, dtype=np.float64)

    def inside(y: FloatArray, z: FloatArray) -> npt.NDArray[np.bool_]:
        res = np.zeros(np.broadcast(y, z).shape, dtype=bool)
        n = len(pts)
        for i in range(n):
            y1, z1 = pts[i]
            y2, z2 = pts[(i + 1) % n]
            if z1 == z2:
                continue
            cond = (z1 > z) != (z2 > z)
            ycross = (y2 - y1) * (z - z1) / (z2 - z1) + y1
            res ^= cond & (y < ycross)
        return res

    return inside


@dataclass(frozen=True, slots=True)
class Raster:
    """Where a scene is sampled: the fan, the line positions along y and the oversampling."""

    fan: Fan
    ys: FloatArray  # centre of each image line along y, mm
    pitch_y: float
    oversample: int = 1


def rasterize(objects: list[SceneObject], raster: Raster) -> npt.NDArray[np.float32]:
    """Basis areal densities (g/cm²) per ray: shape (3, lines, channels * oversample)."""
    fan, ys, os_ = raster.fan, raster.ys, raster.oversample
    slopes = fan.slopes(os_)
    nray = slopes.size
    b = np.zeros((3, ys.size, nray), dtype=np.float32)
    for obj in objects:
        coef = np.asarray(basis_fit(obj.material).coefficients) * obj.density / 10.0
        x0, x1, y0, y1, z0, z1 = obj.bounds()
        l0 = int(np.searchsorted(ys + raster.pitch_y / 2, y0, side="right"))
        l1 = int(np.searchsorted(ys - raster.pitch_y / 2, y1, side="left"))
        if l1 <= l0:
            continue
        if isinstance(obj, Box):
            path = box_path_lengths(slopes, fan, x0, x1, z0, z1)
            nz = np.nonzero(path)[0]
            if nz.size == 0:
                continue
            c0, c1 = int(nz[0]), int(nz[-1]) + 1
            cov = column_coverage(ys[l0:l1], raster.pitch_y, y0, y1)
            if obj.y_profile is not None:
                cov = cov * obj.y_profile(ys[l0:l1])
            block = np.outer(cov, path[c0:c1]).astype(np.float32)
        elif isinstance(obj, Extrusion):
            assert obj.inside is not None
            zmid = fan.z_at(0.5 * (x0 + x1), os_)
            sel = np.nonzero((zmid >= z0) & (zmid <= z1))[0]
            if sel.size == 0:
                continue
            c0, c1 = int(sel[0]), int(sel[-1]) + 1
            mask = obj.inside(ys[l0:l1, None], zmid[None, c0:c1])
            thick = (x1 - x0) * np.sqrt(1.0 + slopes[c0:c1] ** 2)
            block = (mask * thick[None, :]).astype(np.float32)
        else:  # pragma: no cover - only the two kinds exist
            raise TypeError(type(obj).__name__)
        for i in range(3):
            if coef[i] > 0:
                b[i, l0:l1, c0:c1] += np.float32(coef[i]) * block
    return b


def pixel_box(obj: SceneObject, raster: Raster) -> tuple[int, int, int, int]:
    """Image rectangle (line0, line1, channel0, channel1), end-exclusive, that the object covers."""
    fan = raster.fan
    x0, x1, y0, y1, z0, z1 = obj.bounds()
    chans = [fan.channel_of(x, z) for x in (x0, x1) for z in (z0, z1)]
    c0 = max(0, int(np.floor(min(chans) + 0.5)))
    c1 = min(fan.channels, int(np.ceil(max(chans) + 0.5)))
    l0 = max(0, int(np.searchsorted(raster.ys + raster.pitch_y / 2, y0, side="right")))
    l1 = min(raster.ys.size, int(np.searchsorted(raster.ys - raster.pitch_y / 2, y1, side="left")))
    return (l0, l1, c0, c1)


def shifted(objs: list[SceneObject], dy: float) -> list[SceneObject]:
    """Copies of ``objs`` ``dy`` mm further along the road (outlines and profiles follow)."""
    out: list[SceneObject] = []
    for o in objs:
        c: Any = dataclasses.replace(o)
        c.y0 += dy
        c.y1 += dy
        if getattr(c, "inside", None) is not None:
            c.inside = _shifted2(c.inside, dy)
        if getattr(c, "y_profile", None) is not None:
            c.y_profile = _shifted1(c.y_profile, dy)
        out.append(c)
    return out


def _shifted2(f: Callable[[Any, Any], Any], dy: float) -> Callable[[Any, Any], Any]:
    return lambda y, z: f(y - dy, z)


def _shifted1(f: Callable[[Any], Any], dy: float) -> Callable[[Any], Any]:
    return lambda y: f(y - dy)
