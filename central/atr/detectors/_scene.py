"""The scene every detector works on, and what they all share.

:class:`Scene` is the binned interior of the container (the crop inside the
front wall, doors, roof and floor that ``_image.locate_container`` found),
its material and Z_eff maps, and the cargo background around every pixel
(running medians along and across travel over cargo pixels only);
:meth:`Scene.finding` measures a box on it into a :class:`Finding`.
"""
# ruff: noqa: RUF003

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.calibration import MaterialClass

from .._image import OCCUPIED_A, Frame, occupied_median
from .._model import Category, Finding, level_of

F32 = npt.NDArray[np.float32]

#: Mass attenuation of cargo at the high energy, cm²/g: turns −ln T into g/cm².
MU_RHO_HI = 0.0285

_MATERIAL = {
    int(MaterialClass.NONE): "none",
    int(MaterialClass.ORGANIC): "organic",
    int(MaterialClass.INORGANIC): "inorganic",
    int(MaterialClass.METAL): "metal",
    int(MaterialClass.IMPENETRABLE): "impenetrable",
}


@dataclass(slots=True)
class Scene:
    """The binned interior of the container and what every detector shares."""

    a: F32  # high-energy attenuation, binned, interior crop (lines, rows)
    material: npt.NDArray[np.uint8]
    zeff: F32
    frame: Frame
    l0: int  # interior crop origin in binned coordinates
    r0: int
    occupied: npt.NDArray[np.bool_]
    background: F32
    residual: F32
    gaps: tuple[F32, npt.NDArray[np.bool_]] | None = None  # see line_offsets
    rho: F32 | None = None  # areal density g/cm², interior crop (None: from ``a``)
    #: pixels beyond the usable range of the scanner that took the scan, when it sees less
    #: far than the reference (:func:`.._physical.short_range`): their material is unknown
    #: and the reference might have seen through them (None: it sees as far)
    opaque: npt.NDArray[np.bool_] | None = None

    @classmethod
    def build(
        cls,
        a: F32,
        material: npt.NDArray[np.uint8],
        zeff: F32,
        frame: Frame,
        rho: F32 | None = None,
        opaque: npt.NDArray[np.bool_] | None = None,
    ) -> Scene:
        """Crop to the interior and estimate the cargo background around every pixel.

        ``rho`` is the areal density (g/cm², same shape as ``a``) from the scanner's
        calibration, when known; ``opaque`` where the scanner's own range ran out.
        """
        bl, bc = frame.px_mm
        l0 = frame.front + max(1, round(120.0 / bl))
        l1 = max(l0 + 8, frame.back - max(1, round(120.0 / bl)))
        r0 = frame.top
        r1 = max(r0 + 8, frame.floor + 1)
        ai = np.ascontiguousarray(a[l0:l1, r0:r1])
        occ = ai > OCCUPIED_A
        mh = occupied_median(ai, occ, max(3, round(600.0 / bl)), axis=0)
        mv = occupied_median(ai, occ, max(3, round(600.0 / bc)), axis=1)
        bg = np.maximum(mh, mv)
        res = ai - bg
        return cls(
            ai,
            np.ascontiguousarray(material[l0:l1, r0:r1]),
            np.ascontiguousarray(zeff[l0:l1, r0:r1]),
            frame,
            l0,
            r0,
            occ,
            bg,
            res,
            rho=None if rho is None else np.ascontiguousarray(rho[l0:l1, r0:r1]),
            opaque=None if opaque is None else np.ascontiguousarray(opaque[l0:l1, r0:r1]),
        )

    def row_above_floor(self, mm: float) -> int:
        """The interior row ``mm`` above the floor (the floor is the last row)."""
        return self.a.shape[1] - round(mm / self.frame.px_mm[1])

    def finding(
        self,
        category: Category,
        score: float,
        reason: str,
        box: tuple[int, int, int, int],
        *,
        yellow: float = 0.5,
    ) -> Finding:
        """A finding for the interior box (l0, r0, l1, r1), measured on the image."""
        l0, r0, l1, r1 = box
        sub = self.a[l0:l1, r0:r1]
        mat = self.material[l0:l1, r0:r1]
        z = self.zeff[l0:l1, r0:r1]
        mean_a = float(sub.mean()) if sub.size else 0.0
        counts = np.bincount(mat.ravel(), minlength=5) if mat.size else np.zeros(5, int)
        counts[0] = 0
        material = _MATERIAL[int(counts.argmax())] if counts.sum() else "none"
        zz = z[z > 0]
        gl0, gr0, gl1, gr1 = l0 + self.l0, r0 + self.r0, l1 + self.l0, r1 + self.r0
        mm = self.frame.to_mm(gl0, gr0, gl1, gr1)
        return Finding(
            category=category,
            score=float(score),
            level=level_of(score, yellow),
            reason=reason,
            bbox_px=self.frame.to_px(gl0, gr0, gl1, gr1),
            bbox_mm=mm,
            size_mm=[mm[2] - mm[0], mm[3] - mm[1]],
            mean_attenuation=mean_a,
            mean_density_gcm2=(
                float(self.rho[l0:l1, r0:r1].mean())
                if self.rho is not None and sub.size
                else mean_a / MU_RHO_HI
            ),
            material=material,
            zeff=float(np.median(zz)) if zz.size else 0.0,
        )

    def metal_load(self) -> float:
        """Fraction of cargo pixels classified metal or impenetrable."""
        m = self.material[self.occupied]
        if m.size == 0:
            return 0.0
        return float(np.mean(m >= int(MaterialClass.METAL)))


def same_object(f: Finding, g: Finding) -> bool:
    """Whether two findings outline the same object (pixel boxes overlap, IoU 0.3 or more)."""
    a, b = f.bbox_px, g.bbox_px
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return union > 0 and ix * iy >= 0.3 * union


def line_offsets(sc: Scene) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Each line's median residual over the cargo above the floor, and that cargo's mask.

    The floor and its cross members (the lowest 150 mm) are left out: they are
    no gap.  Lines without cargo get 0.  Worked out once per scene.
    """
    if sc.gaps is not None:
        return sc.gaps
    cargo = sc.background > OCCUPIED_A
    cargo[:, cargo.shape[1] - max(1, round(150.0 / sc.frame.px_mm[1])) :] = False
    lines = np.where(cargo, sc.residual, np.nan)
    ok = cargo.any(axis=1)
    off = np.zeros(sc.residual.shape[0], np.float32)
    off[ok] = np.nanmedian(lines[ok], axis=1)
    sc.gaps = (off, cargo)
    return sc.gaps
