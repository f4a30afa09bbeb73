"""Input that is not what it claims: one clear AtrInputError each, with its fix (seed 67)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from central.atr import AtrInputError, analyze
from central.atr._att import compare
from central.atr._image import check_pair
from central.atr.cli import load_transmission
from core.calibration import DetectorCalibration
from firmware_sim.physics import PhysicsSource

CH, LINES = 768, 1500


@cache
def _scan() -> tuple[np.ndarray, np.ndarray, float, float]:
    s = PhysicsSource().simulate(
        67, 1, CH, LINES, container="20GP", commodity="textiles", concealment=None, lie=False
    )
    cal = DetectorCalibration.from_lines(s.dark_hi, s.dark_lo, s.air_hi, s.air_lo)
    hi, lo = cal.attenuation(s.img_hi, s.img_lo)
    return hi, lo, s.truth["line_pitch_mm"], s.truth["channel_pitch_mm"]


def _export(a: np.ndarray) -> np.ndarray:
    """An attenuation image as the 16-bit export (channels, lines), T x 65535."""
    return np.clip(np.exp(-a) * 65535.0, 0, 65535).round().astype(np.uint16).T


def _raises(words: str, hi: np.ndarray, lo: np.ndarray) -> AtrInputError:
    with pytest.raises(AtrInputError, match=words) as exc:
        check_pair(hi, lo)
    assert exc.value.fix
    return exc.value


def test_a_real_dual_energy_pair_passes() -> None:
    hi, lo, *_ = _scan()
    got_hi, got_lo = check_pair(hi, lo)
    assert got_hi.shape == got_lo.shape == hi.shape


def test_one_image_given_twice_is_refused() -> None:
    hi, *_ = _scan()
    _raises("identical", hi, hi.copy())


def test_one_energy_read_twice_is_refused() -> None:
    # two readings of one energy: their own noise, but the same attenuation
    hi, *_ = _scan()
    noise = np.random.default_rng(67).normal(0.0, 0.003, hi.shape).astype(np.float32)
    err = _raises("nearly the same", hi, hi + noise)
    assert "1.05" in err.message


def test_a_single_energy_export_rescaled_is_refused() -> None:
    hi, *_ = _scan()
    _raises("rescaled", hi, (1.18 * hi).astype(np.float32))


def test_swapped_energies_are_named() -> None:
    hi, lo, *_ = _scan()
    err = _raises("attenuates less", lo, hi)
    assert "swapped" in err.fix


def _write(tmp_path: Path, name: str, img: np.ndarray) -> Path:
    p = tmp_path / name
    assert cv2.imwrite(str(p), img)
    return p


def test_an_eight_bit_image_in_sixteen_bits_is_refused(tmp_path: Path) -> None:
    hi, *_ = _scan()
    t16 = _export(hi)
    eight = (t16 >> 8).astype(np.uint16)  # 0..255 in a 16-bit file
    for img in (eight, eight * 256, eight * 257):
        with pytest.raises(AtrInputError, match="8-bit image stored in 16 bits") as exc:
            load_transmission(_write(tmp_path, "e.tiff", img))
        assert "16-bit" in exc.value.fix
    assert load_transmission(_write(tmp_path, "ok.tiff", t16)).shape == hi.shape


def test_air_not_at_full_scale_is_refused(tmp_path: Path) -> None:
    hi, *_ = _scan()
    raw = (_export(hi).astype(np.float64) * 0.6).astype(np.uint16)  # air at 39 000 counts
    with pytest.raises(AtrInputError, match="air is not at full scale") as exc:
        load_transmission(_write(tmp_path, "raw.tiff", raw))
    assert "air" in exc.value.fix


def test_an_image_without_air_is_refused(tmp_path: Path) -> None:
    hi, *_ = _scan()
    # the load alone: every pixel behind the side walls and goods (T below 0.9), but
    # full scale where the walls are thinnest
    crop = _export(np.maximum(hi, 0.15))
    crop[0, 0] = 65535
    with pytest.raises(AtrInputError, match="is air") as exc:
        load_transmission(_write(tmp_path, "crop.tiff", crop))
    assert "crop" in exc.value.fix


def test_the_same_scan_twice_is_not_compared() -> None:
    hi, lo, lm, cm = _scan()
    with pytest.raises(AtrInputError, match="the same image"):
        compare((hi, lo, lm, cm), (hi, lo, lm, cm))


def test_a_pixel_size_no_container_fits_is_refused() -> None:
    hi, lo, lm, cm = _scan()
    # the line pitch 1.6 x too large: a 20 ft container would be 9.6 m long
    with pytest.raises(AtrInputError, match="fit no ISO 668 length") as exc:
        rng = np.random.default_rng(1)  # Scan B: the same container, its own noise
        hb = hi + rng.normal(0.0, 1e-3, hi.shape).astype(np.float32)
        lb = lo + rng.normal(0.0, 1e-3, lo.shape).astype(np.float32)
        compare((hi, lo, lm, cm), (hb, lb, 1.6 * lm, cm))
    assert "line pitch" in exc.value.message and exc.value.fix
    # nor is one scan analysed with a length no container has: the error says why
    with pytest.raises(AtrInputError, match="fit no ISO 668 length") as exc:
        analyze(hi, lo, 1.6 * lm, cm)
    assert "--pixel-mm" in exc.value.fix
    # a channel pitch that makes the image lower than any container
    with pytest.raises(AtrInputError, match="too low for any container"):
        analyze(hi, lo, lm, cm / 2.5)
