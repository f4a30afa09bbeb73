"""Material-coloured rendering of a calibrated scan, for people to look at.

Brightness follows attenuation on a compressed scale (thin cargo stays
readable next to an engine block), hue follows the material class in the
customary dual-energy colours: organic orange, inorganic green, metal blue;
too thin to classify is grey, impenetrable is near black.  Rows of the picture
are detector channels (top of the vehicle up), columns are lines along travel.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from core.errors import ConfigError

#: RGB per material class (0 none, 1 organic, 2 inorganic, 3 metal, 4 impenetrable).
PALETTE = np.array(
    [(200, 200, 200), (255, 150, 30), (40, 180, 60), (40, 110, 255), (20, 20, 40)],
    dtype=np.float32,
)


def render(
    attenuation: npt.ArrayLike,
    material: npt.ArrayLike | None = None,
    *,
    a_max: float = 9.0,
    gamma: float = 0.6,
    width: int | None = None,
) -> npt.NDArray[np.uint8]:
    """RGB (channels, lines, 3) from A = -ln T and the material map, both (lines, channels).

    Args:
        attenuation: A = -ln T, (lines, channels), any real dtype.
        material: material classes, (lines, channels), or None for grey.
        a_max: the attenuation shown darkest.
        gamma: the grey curve's exponent.
        width: scale to this many pixels across (lines), ≥ 1; None keeps the size.

    Returns:
        uint8 RGB, (channels, lines or width-scaled, 3).

    Raises:
        ConfigError: ``width`` below 1 or over 100 000, or an empty image.
    """
    if width is not None and not 1 <= width <= 100_000:
        raise ConfigError(f"width {width} is out of range", fix="give a width from 1 to 100000")
    a = np.asarray(attenuation, dtype=np.float32).T
    if a.size == 0:
        raise ConfigError("the scan has no image lines to render", fix="pick a finished scan")
    level = np.clip(a / a_max, 0.0, 1.0) ** gamma
    bright = 1.0 - 0.92 * level  # 1 = air (white), 0.08 = opaque
    if material is None:
        rgb = np.repeat(bright[..., None] * 255.0, 3, axis=2)
    else:
        m = np.clip(np.asarray(material, dtype=np.uint8).T, 0, len(PALETTE) - 1)
        colour = PALETTE[m] / 255.0
        # tint: full colour at mid attenuation, fading to white in air
        tint = np.clip(level * 3.0, 0.0, 1.0)[..., None]
        base = (1.0 - tint) + tint * colour
        rgb = base * bright[..., None] * 255.0
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    if width is not None and width != out.shape[1]:
        h = max(1, round(out.shape[0] * width / out.shape[1]))
        out = cv2.resize(out, (width, h), interpolation=cv2.INTER_AREA)
    return out


def write_png(
    path: str | Path,
    attenuation: npt.ArrayLike,
    material: npt.ArrayLike | None = None,
    **kw: float | int | None,
) -> Path:
    """Render and write a PNG (``nii cir show SCAN --png out.png``); see :func:`render`.

    Raises:
        ConfigError: the file could not be written (missing folder, no space, …),
            or :func:`render` refused its arguments.
    """
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"{out} does not end in .png", fix=f"write it as {out.stem}.png")
    rgb = render(attenuation, material, **kw)  # type: ignore[arg-type]
    if not cv2.imwrite(str(out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise ConfigError(
            f"could not write {out}",
            fix="check that its folder exists and is writable, and that the name ends in .png",
        )
    return out
