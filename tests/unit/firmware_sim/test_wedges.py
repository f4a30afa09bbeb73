"""Commissioning step-wedge scans: the document's layout, the steps' order, the files."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from core.errors import ConfigError
from firmware_sim.physics import (
    SCANNER_MODELS,
    WEDGES,
    ScannerModel,
    wedge_scan,
    write_wedge_scan,
)


def small(name: str) -> ScannerModel:
    """The model with 1/8 of its channels and ~20 mm lines: the same physics, fewer pixels."""
    m = SCANNER_MODELS[name]
    return dataclasses.replace(
        m, channels=m.channels // 8, line_rate_hz=m.speed_m_s * 1000.0 / 20.0
    )


@pytest.fixture(scope="module")
def scans() -> dict[str, tuple[Any, Any, dict[str, Any]]]:
    return {name: wedge_scan(small(name), seed=1) for name in SCANNER_MODELS}


@pytest.mark.parametrize("name", list(SCANNER_MODELS))
def test_document_has_the_samples_layout(
    scans: dict[str, tuple[Any, Any, dict[str, Any]]], name: str
) -> None:
    hi, lo, doc = scans[name]
    assert set(doc) == {"scanner", "pixel_mm", "materials", "steps"}
    assert doc["scanner"] == name
    m = small(name)
    assert doc["pixel_mm"] == pytest.approx([m.line_pitch_mm, m.channel_pitch_mm])
    assert hi.dtype == lo.dtype == np.uint16 and hi.shape == lo.shape
    rows, cols = hi.shape
    assert cols > rows  # rows are channels of the band around the wedges, columns lines
    for mat in doc["materials"].values():
        assert set(mat) == {"density_g_cm3", "weight_fractions_by_Z"}
        assert sum(mat["weight_fractions_by_Z"].values()) == pytest.approx(1.0, abs=1e-3)
        assert all(1 <= int(z) <= 92 for z in mat["weight_fractions_by_Z"])
    assert len(doc["steps"]) == sum(len(t) for _, t in WEDGES)
    for s in doc["steps"]:
        assert set(s) == {"material", "thickness_mm", "areal_density_g_cm2", "bbox_px"}
        density = doc["materials"][s["material"]]["density_g_cm3"]
        assert s["areal_density_g_cm2"] == pytest.approx(density * s["thickness_mm"] / 10)
        c0, r0, c1, r1 = s["bbox_px"]
        assert 0 <= c0 < c1 <= cols and 0 <= r0 < r1 <= rows
    air = {s["material"] for s in doc["steps"] if s["thickness_mm"] == 0}
    assert air == set(doc["materials"])  # every wedge has its air step


@pytest.mark.parametrize("name", list(SCANNER_MODELS))
def test_step_transmissions_fall_with_thickness(
    scans: dict[str, tuple[Any, Any, dict[str, Any]]], name: str
) -> None:
    hi, lo, doc = scans[name]
    for mat in doc["materials"]:
        steps = sorted(
            (s for s in doc["steps"] if s["material"] == mat), key=lambda s: s["thickness_mm"]
        )
        for img in (hi, lo):
            t = [
                float(img[r0:r1, c0:c1].mean()) / 65535
                for c0, r0, c1, r1 in (s["bbox_px"] for s in steps)
            ]
            assert t[0] == pytest.approx(1.0, abs=0.01)  # air step, flat-fielded
            assert t[-1] < 0.05  # the thickest step is nearly opaque
            for a, b in itertools.pairwise(t):
                assert b < a or (a < 1e-3 and b <= a + 2e-4), (mat, t)
        # the low energy is attenuated more at every step above the noise floor
        for s in steps[1:]:
            c0, r0, c1, r1 = s["bbox_px"]
            if hi[r0:r1, c0:c1].mean() > 0.01 * 65535:
                assert lo[r0:r1, c0:c1].mean() < hi[r0:r1, c0:c1].mean()


def test_the_same_seed_gives_the_same_scan() -> None:
    m = small("l4-cdwo4-15")
    a = wedge_scan(m, seed=4)
    b = wedge_scan(m, seed=4)
    c = wedge_scan(m, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[2] == b[2] and a[2] == c[2]
    assert not np.array_equal(a[0], c[0])


def test_files_round_trip_through_opencv(tmp_path: Path) -> None:
    m = small("l6-csi-20")
    folder = write_wedge_scan(tmp_path / "S-x", m, seed=2)
    hi, lo, doc = wedge_scan(m, seed=2)
    for name, img in (("high.tiff", hi), ("low.tiff", lo)):
        back = cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)
        assert back is not None and back.dtype == np.uint16
        np.testing.assert_array_equal(back, img)
    assert json.loads((folder / "wedges.json").read_text()) == doc


def test_unwritable_folder_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError) as err:
        write_wedge_scan(blocker / "wedges", small("l9-cdwo4-40"))
    assert "--out" in err.value.fix


def test_boxes_lie_in_the_flat_part_of_each_step_full_size() -> None:
    """At a real model's size a box's mean equals its core's: no edge, blur or lag inside."""
    hi, _, doc = wedge_scan("l9-cdwo4-40", seed=3)
    for s in doc["steps"]:
        c0, r0, c1, r1 = s["bbox_px"]
        box = hi[r0:r1, c0:c1].astype(np.float64)
        if box.mean() < 0.02 * 65535:
            continue
        core = box[3:-3, 3:-3]
        se = box.std() / np.sqrt(core.size)
        assert abs(box.mean() - core.mean()) < 5 * se + 2e-4 * box.mean(), s
        assert (r1 - r0) * doc["pixel_mm"][1] > 450 and (c1 - c0) * doc["pixel_mm"][0] > 200
