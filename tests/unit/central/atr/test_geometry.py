"""Container geometry on any scanner, and ATT across scanners (seeds 61 to 66 only).

Other scanners are mimicked on the simulator's scans: resampled along travel
(another line pitch or belt speed) and vertically (another channel pitch), their
attenuation scaled or bent (another energy), stretched to a 45 ft length, cropped.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import cv2
import numpy as np
import pytest

from central.atr import AtrInputError
from central.atr._att import compare, level_map
from central.atr._image import (
    ISO_LENGTHS_MM,
    Frame,
    bin_image,
    binning,
    iso_size,
    locate_container,
)
from core.calibration import DetectorCalibration
from firmware_sim.physics import PhysicsSource

CH, LINES = 768, 1500

Scan = tuple[np.ndarray, np.ndarray, float, float]


@cache
def _sim(seed: int, container: str, commodity: str) -> tuple[Scan, dict[str, Any]]:
    s = PhysicsSource().simulate(
        seed, 1, CH, LINES, container=container, commodity=commodity, concealment=None, lie=False
    )
    cal = DetectorCalibration.from_lines(s.dark_hi, s.dark_lo, s.air_hi, s.air_lo)
    hi, lo = cal.attenuation(s.img_hi, s.img_lo)
    hi.setflags(write=False)
    lo.setflags(write=False)
    return (hi, lo, s.truth["line_pitch_mm"], s.truth["channel_pitch_mm"]), s.truth


def _resample(a: np.ndarray, along: float, down: float) -> np.ndarray:
    """``a`` (lines, channels) with ``along`` x the lines and ``down`` x the channels."""
    n0, n1 = round(a.shape[0] * along), round(a.shape[1] * down)
    shrink = along * down < 1.0
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(a, (n1, n0), interpolation=interp), np.float32)


def _other_scanner(scan: Scan, along: float, down: float, gain: float = 1.0) -> Scan:
    """The scan as a scanner with other pitches (``along``, ``down`` x the pixels) sees it."""
    hi, lo, lm, cm = scan
    return (
        _resample(hi, along, down) * gain,
        _resample(lo, along, down) * gain,
        lm / along,
        cm / down,
    )


def _frame(scan: Scan) -> Frame:
    hi, _, lm, cm = scan
    fl, fc = binning(lm, cm)
    return locate_container(bin_image(np.asarray(hi, np.float32), fl, fc), fl, fc, lm, cm)


def _front_mm(fr: Frame) -> float:
    return fr.front * fr.px_mm[0]


@pytest.mark.parametrize(
    ("along", "down", "gain"),
    [
        (1.0, 1.0, 1.0),
        (0.5, 1.0, 1.0),  # line pitch x 2 (up to 14-22 mm)
        (0.8, 1.0, 1.0),
        (1.3, 1.0, 1.0),
        (2.0, 1.0, 1.0),  # line pitch / 2 (3.5-5.5 mm)
        (1.0, 0.7, 1.0),  # channel pitch 8.2 mm
        (1.0, 1.4, 1.0),  # channel pitch 4.1 mm
        (1.0, 1.0, 0.8),  # another energy: the same steel attenuates less
        (1.0, 1.0, 1.25),
        (0.55, 0.75, 1.25),
    ],
)
@pytest.mark.parametrize(
    ("seed", "container", "commodity"),
    [(61, "20GP", "textiles"), (62, "40HC", "glass bottles"), (63, "40GP", "scrap steel")],
)
def test_the_ends_are_found_at_any_pitch_and_energy(
    seed: int, container: str, commodity: str, along: float, down: float, gain: float
) -> None:
    scan, _ = _sim(seed, container, commodity)
    base = _frame(scan)
    fr = _frame(_other_scanner(scan, along, down, gain))
    size = {"20GP": "20ft", "40GP": "40ft", "40HC": "40ft"}[container]
    assert base.found and fr.found and fr.size == size, fr.reason
    assert abs(fr.length_mm() - ISO_LENGTHS_MM[size]) <= 0.04 * ISO_LENGTHS_MM[size]
    # the same place in mm, whatever the pixels: within about two working pixels
    assert abs(_front_mm(fr) - _front_mm(base)) <= 2.5 * max(fr.px_mm[0], base.px_mm[0])
    assert abs(fr.length_mm() - base.length_mm()) <= 2.5 * max(fr.px_mm[0], base.px_mm[0])
    floor_mm = (fr.floor + 0.5) * fr.px_mm[1]
    assert abs(floor_mm - (base.floor + 0.5) * base.px_mm[1]) <= 2.5 * fr.px_mm[1]


def test_a_45_ft_container_is_told_from_a_40_ft_one() -> None:
    scan, _ = _sim(64, "40GP", "paper")
    hi, lo, lm, cm = scan
    # the same pixel size over 12.5 % more lines: the container is 13 716 mm long
    stretch = ISO_LENGTHS_MM["45ft"] / ISO_LENGTHS_MM["40ft"]
    fr = _frame((_resample(hi, stretch, 1.0), _resample(lo, stretch, 1.0), lm, cm))
    assert fr.found and fr.size == "45ft", fr.reason
    assert iso_size(12192.0) == "40ft" and iso_size(9125.0) is None


def test_a_wrong_line_pitch_is_named_never_a_wrong_length_used() -> None:
    scan, _ = _sim(61, "20GP", "textiles")
    hi, lo, lm, cm = scan
    fr = _frame((hi, lo, lm * 1.5, cm))  # a 20 ft container 9 m long: no ISO size
    assert not fr.found and fr.size == ""
    assert "fit no ISO 668 length" in fr.reason and "line pitch" in fr.reason
    with pytest.raises(AtrInputError, match="no container found in scan B") as exc:
        fr.require("scan B")
    assert exc.value.fix


def test_a_crop_of_the_cargo_is_not_a_container() -> None:
    scan, _ = _sim(61, "20GP", "textiles")
    hi, lo, lm, cm = scan
    fr = _frame(scan)
    # 1 m inside each end: goods, roof and floor, but no front wall and doors
    l0 = fr.front * fr.fl + round(1000.0 / lm)
    l1 = fr.back * fr.fl - round(1000.0 / lm)
    crop = (hi[l0:l1], lo[l0:l1], lm, cm)
    cf = _frame(crop)
    assert not cf.found and cf.reason
    with pytest.raises(AtrInputError, match="no container found in scan B"):
        compare(scan, crop)


def test_an_image_too_low_for_any_container_is_refused() -> None:
    scan, _ = _sim(61, "20GP", "textiles")
    hi, lo, lm, cm = scan
    with pytest.raises(AtrInputError, match="too low for any container") as exc:
        _frame((hi[:, :300], lo[:, :300], lm, cm))  # 300 channels of 5.7 mm: 1.7 m
    assert "pixel" in exc.value.fix


def _one_line_walls(line_mm: float, phase: float) -> np.ndarray:
    """A 40 ft container whose ends are 6 mm steel sheets, sharing pixels by ``phase``.

    The kind of image another simulator makes: side walls A 0.18, the ends one line
    wide, a floor band, pallets of goods, a chassis; 4 mm channels.
    """
    ch_mm = 4.0
    n_l = round(13500.0 / line_mm)
    a = np.zeros((n_l, 900), np.float32)
    r_top, r_bot = round(60 / ch_mm), round(2650 / ch_mm)
    x0 = 600.0 + phase * line_mm
    x1 = x0 + 12192.0
    i0, i1 = int(x0 // line_mm), int(x1 // line_mm)
    a[i0:i1, r_top:r_bot] = 0.18
    a[i0:i1, r_bot - 12 : r_bot] = 0.9  # floor and cross members
    a[i0:i1, r_bot : r_bot + 60] = 0.65  # chassis
    for k in range(6):  # pallets of goods, 1.5 m high
        p0 = int((x0 + 300 + 1300 * k) // line_mm)
        a[p0 : p0 + round(1150 / line_mm), r_bot - 12 - round(1500 / ch_mm) : r_bot - 12] = 2.4
    for x in (x0, x1 - 6.0):  # 6 mm of steel end-on: opaque where it is (T = 0.001)
        i = int(x // line_mm)
        f = min(1.0, (i + 1) * line_mm - x) / line_mm * 6.0 / min(6.0, line_mm)
        f = min(f, 1.0)
        t = (1 - f) * np.exp(-a[i, r_top:r_bot]) + f * 1e-3
        a[i, r_top:r_bot] = -np.log(t)
        if f < 1.0 and i + 1 < n_l:
            g = min(1.0, 6.0 / line_mm - f)
            t = (1 - g) * np.exp(-a[i + 1, r_top:r_bot]) + g * 1e-3
            a[i + 1, r_top:r_bot] = -np.log(t)
    rng = np.random.default_rng(65)
    return a + rng.normal(0, 0.01, a.shape).astype(np.float32)


@pytest.mark.parametrize("line_mm", [2.0, 6.0, 6.0107, 9.0, 12.0])
@pytest.mark.parametrize("phase", [0.0, 0.5])
def test_ends_one_line_wide_are_found_wherever_they_fall(line_mm: float, phase: float) -> None:
    a = _one_line_walls(line_mm, phase)
    fr = _frame((a, a, line_mm, 4.0))
    assert fr.found and fr.size == "40ft", fr.reason
    assert abs(fr.length_mm() - 12192.0) <= 2.5 * fr.px_mm[0]
    assert abs(fr.front * fr.px_mm[0] - (600.0 + phase * line_mm)) <= 1.5 * fr.px_mm[0]
    assert abs(fr.floor * fr.px_mm[1] - (2650.0 - 160.0)) <= 3 * fr.px_mm[1]


# -- ATT across scanners --------------------------------------------------------------------


def _energy(scan: Scan, gain: float, power: float) -> Scan:
    """Another energy: A' = gain x A ** power (steel and goods both)."""
    hi, lo, lm, cm = scan
    bend = lambda a: np.asarray(gain * np.sign(a) * np.abs(a) ** power, np.float32)  # noqa: E731
    return bend(hi), bend(lo), lm, cm


def _add_block(scan: Scan, x_mm: float, w_mm: float, h_mm: float, da: float) -> Scan:
    hi, lo, lm, cm = scan
    fr = _frame(scan)
    l0 = fr.front * fr.fl + round(x_mm / lm)
    r1 = fr.floor * fr.fc - round(200.0 / cm)
    b_hi, b_lo = hi.copy(), lo.copy()
    sl = np.s_[l0 : l0 + round(w_mm / lm), r1 - round(h_mm / cm) : r1]
    b_hi[sl] += da
    b_lo[sl] += 1.15 * da
    return b_hi, b_lo, lm, cm


@pytest.mark.parametrize(
    ("along", "down", "gain", "power"),
    [(1.1, 1.0, 1.0, 1.0), (0.9, 0.8, 0.8, 1.0), (1.25, 1.3, 1.2, 0.95), (0.6, 1.0, 0.85, 1.05)],
)
def test_att_across_scanners_untouched_released_tampered_held(
    along: float, down: float, gain: float, power: float
) -> None:
    a, _ = _sim(66, "40GP", "textiles")
    b = _energy(_other_scanner(a, along, down), gain, power)
    same = compare(a, b)
    assert not same.hold, same.factors
    reg = same.registration
    assert reg["level_gain"] == pytest.approx(1.0 / gain ** (1.0 / power), rel=0.15)
    # dense goods added 5 m behind the front wall, 800 mm long, 700 mm high
    tampered = _add_block(a, 5000.0, 800.0, 700.0, 2.5)
    held = compare(a, _energy(_other_scanner(tampered, along, down), gain, power))
    assert held.hold and held.differences, held.factors
    x0, _, x1, _ = held.differences[0]["bbox_mm"]
    assert held.differences[0]["kind"] == "addition"
    assert x0 < 5800.0 + 150.0 and x1 > 5000.0 - 150.0, held.differences


def test_the_level_map_follows_the_scanners_not_the_changed_goods() -> None:
    rng = np.random.default_rng(66)
    a = rng.uniform(0.1, 4.0, (400, 200)).astype(np.float32)
    b = (0.8 * a**1.1).astype(np.float32)
    b_changed = b.copy()
    b_changed[:40, :40] += 3.0  # a changed region: 2 % of the pixels
    for img in (b, b_changed):
        m = level_map(a, img)
        assert m.gain == pytest.approx(1 / 0.8 ** (1 / 1.1), rel=0.03)
        assert m.power == pytest.approx(1 / 1.1, rel=0.03)
        back = m.apply(b[100:, 100:])
        assert np.allclose(back, a[100:, 100:], rtol=0.03, atol=0.01)
    ident = level_map(a, a.copy())
    assert ident.gain == pytest.approx(1.0) and ident.power == pytest.approx(1.0)
    with pytest.raises(AtrInputError, match="cannot be matched"):
        level_map(a, (a * 5.0).astype(np.float32))
