"""Material-coloured rendering of a calibrated scan, for people to look at.

Brightness follows attenuation on a compressed scale (thin cargo stays
readable next to an engine block), hue follows the material class in the
customary dual-energy colours: organic orange, inorganic green, metal blue;
too thin to classify is grey, impenetrable is near black.  Rows of the picture
are detector channels (top of the vehicle up), columns are lines along travel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    return _to_width(np.clip(rgb, 0, 255).astype(np.uint8), width)


def _to_width(rgb: npt.NDArray[np.uint8], width: int | None) -> npt.NDArray[np.uint8]:
    """``rgb`` scaled to ``width`` pixels across, its aspect kept (None: as it is)."""
    if width is None or width == rgb.shape[1]:
        return rgb
    h = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    return np.asarray(cv2.resize(rgb, (width, h), interpolation=cv2.INTER_AREA), dtype=np.uint8)


#: BGR of a finding's box by its level, and of a caption's text
_BOX = {"red": (40, 40, 230), "yellow": (0, 200, 250)}
_INK = (30, 30, 30)


def annotate(
    rgb: npt.NDArray[np.uint8],
    *,
    line_mm: float,
    channel_mm: float,
    findings: Sequence[dict[str, Any]] = (),
    caption: Sequence[str] = (),
) -> npt.NDArray[np.uint8]:
    """A rendered scan (:func:`render`: (channels, lines, 3)) at its true aspect ratio,
    with the ATR's findings as boxes, a scale in metres and a caption below.

    The columns are stretched (or squeezed) so that a pixel is as long as it is high:
    ``line_mm`` along travel against ``channel_mm`` up, per pixel of ``rgb``. Each
    finding's ``bbox_px`` ([col0, row0, col1, row1] of the full-resolution image,
    ``central.atr._model.Finding``) is scaled to the picture's size.

    Returns:
        uint8 RGB, (rows + caption band, columns at the true aspect ratio, 3).
    """
    h, w = rgb.shape[:2]
    if line_mm <= 0 or channel_mm <= 0:
        raise ConfigError("pixel sizes must be positive", fix="check the scan's pixel_mm")
    true_w = max(1, round(w * line_mm / channel_mm))
    img = cv2.resize(rgb, (true_w, h), interpolation=cv2.INTER_AREA)
    img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    sx = true_w / w  # findings are in full-resolution columns: ``w`` of them
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(h / 500))
    size = max(0.4, h / 1200)
    for f in findings:
        box = f.get("bbox_px") or []
        if len(box) != 4:
            continue
        c0, r0, c1, r1 = (round(box[0] * sx), box[1], round(box[2] * sx), box[3])
        colour = _BOX.get(str(f.get("level")), _BOX["yellow"])
        cv2.rectangle(img, (c0, r0), (c1, r1), colour, thick + 1)
        cv2.putText(img, str(f.get("category", "")), (c0 + 3, max(12, r0 - 4)), font, size,
                    colour, thick, cv2.LINE_AA)  # fmt: skip
    band = max(40, round(h * 0.12)) + round(22 * size) * len(caption)
    out = np.full((h + band, true_w, 3), 255, dtype=np.uint8)
    out[:h] = img
    px_per_m = 1000.0 / channel_mm  # pixels are square now
    metres = max((m for m in (0.5, 1, 2, 5, 10) if m * px_per_m <= true_w / 4), default=0.5)
    y = h + round(band * 0.25)
    x1 = 10 + round(metres * px_per_m)
    cv2.rectangle(out, (10, y), (x1, y + max(3, thick * 3)), _INK, -1)
    cv2.putText(out, f"{metres:g} m", (x1 + 8, y + max(3, thick * 3)), font, size, _INK, thick,
                cv2.LINE_AA)  # fmt: skip
    for i, text in enumerate(caption):
        cv2.putText(out, text, (10, y + round(30 * size) * (i + 2)), font, size, _INK, thick,
                    cv2.LINE_AA)  # fmt: skip
    return np.ascontiguousarray(cv2.cvtColor(out, cv2.COLOR_BGR2RGB))


def write_png(
    path: str | Path,
    attenuation: npt.ArrayLike,
    material: npt.ArrayLike | None = None,
    *,
    annotate_with: dict[str, Any] | None = None,
    **kw: float | int | None,
) -> Path:
    """Render and write a PNG (``nii cir show SCAN --png out.png``); see :func:`render`.
    ``annotate_with``: the keyword arguments of :func:`annotate` (true aspect ratio,
    findings, scale, caption).

    Raises:
        ConfigError: the file could not be written (missing folder, no space, …),
            or :func:`render` refused its arguments.
    """
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"{out} does not end in .png", fix=f"write it as {out.stem}.png")
    width = kw.pop("width", None)  # after the annotation, which widens the picture
    rgb = render(attenuation, material, **kw)  # type: ignore[arg-type]
    if annotate_with is not None:
        rgb = annotate(rgb, **annotate_with)
    if width is not None and not 1 <= int(width) <= 100_000:
        raise ConfigError(f"width {width} is out of range", fix="give a width from 1 to 100000")
    rgb = _to_width(rgb, None if width is None else int(width))
    if not cv2.imwrite(str(out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise ConfigError(
            f"could not write {out}",
            fix="check that its folder exists and is writable, and that the name ends in .png",
        )
    return out
