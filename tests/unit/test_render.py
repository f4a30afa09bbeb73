"""Material-coloured rendering: orientation, colours and a PNG a person can open."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from central.render import PALETTE, render, write_png


def test_render_orientation_and_colours(tmp_path: Path) -> None:
    lines, channels = 40, 30
    a = np.zeros((lines, channels), dtype=np.float32)
    m = np.zeros((lines, channels), dtype=np.uint8)
    a[10:20, 5:10] = 3.0
    m[10:20, 5:10] = 1  # organic
    a[25:35, 5:10] = 3.0
    m[25:35, 5:10] = 3  # metal
    rgb = render(a, m)
    assert rgb.shape == (channels, lines, 3) and rgb.dtype == np.uint8
    assert np.all(rgb[0, 0] == 255)  # air is white
    org, met = rgb[7, 15].astype(int), rgb[7, 30].astype(int)
    assert org[0] > org[2]  # orange: red over blue
    assert met[2] > met[0]  # blue
    assert tuple(PALETTE[1].astype(int)) == (255, 150, 30)
    out = write_png(tmp_path / "scan.png", a, m, width=80)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 80


def test_render_grey_without_material() -> None:
    a = np.linspace(0, 12, 50, dtype=np.float32).reshape(5, 10)
    rgb = render(a)
    assert np.all(rgb[..., 0] == rgb[..., 2])
    assert rgb[0, 0, 0] > rgb[-1, -1, 0]  # more attenuation is darker


def test_bad_width_empty_image_and_unwritable_file_are_config_errors(tmp_path: Path) -> None:
    import pytest

    from core.errors import ConfigError

    a = np.ones((20, 10), dtype=np.float32)
    for w in (0, -3, 10**6):
        with pytest.raises(ConfigError, match="width"):
            write_png(tmp_path / "x.png", a, width=w)
    with pytest.raises(ConfigError, match="no image lines"):
        write_png(tmp_path / "x.png", np.ones((0, 10)))
    with pytest.raises(ConfigError, match="could not write") as e:
        write_png(tmp_path / "no" / "such" / "x.png", a)
    assert e.value.fix
    with pytest.raises(ConfigError, match=r"does not end in \.png"):
        write_png(tmp_path / "x.jpeg2", a)
    assert not list(tmp_path.iterdir())
