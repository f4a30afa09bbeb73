"""Compact objects judged against the texture of the cargo around them.

Scenes are built by hand (12 mm pixels, a container interior filled with one
commodity's cartons) so that the texture of the cargo is what each test sets.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from central.atr import Category, Finding, Level
from central.atr._image import Frame
from central.atr.detectors import Scene, _objects, dense_objects, one_per_object
from central.atr.detectors._objects import UNIFORM_FLOOR_MM, uniform_cargo_objects
from core.calibration import MaterialClass

PX = 12.0  # mm per binned pixel, both ways
LINES, ROWS = 600, 200  # 7.2 m of a container, 2.4 m high


def _cargo(texture: float, seed: int = 1) -> npt.NDArray[np.float32]:
    """Cartons of one dense commodity from the front wall to the doors: attenuation 4 with
    ``texture`` of carton-to-carton spread (300 mm cartons) and the scanner's noise."""
    rng = np.random.default_rng(seed)
    a = np.full((LINES, ROWS), 0.02, np.float32)  # air above the goods
    cartons = rng.normal(0.0, texture, (LINES // 25 + 1, ROWS // 25 + 1))
    goods = 4.0 + np.kron(cartons, np.ones((25, 25)))[:LINES, : ROWS - 30]
    a[:, 30:] = goods + rng.normal(0.0, 0.02, (LINES, ROWS - 30))
    a[:, -8:] = 3.5  # the floor and its cross members
    return a.astype(np.float32)


def _gun(a: npt.NDArray[np.float32], line: int, row: int, contrast: float = 0.8) -> None:
    """A steel L in side view: a 500 mm bar 36 mm high over a 120 x 144 mm grip."""
    a[line : line + 42, row : row + 3] += contrast
    a[line : line + 10, row + 3 : row + 15] += contrast


def _scene(a: npt.NDArray[np.float32], impenetrable: bool = False) -> Scene:
    frame = Frame(
        front=0, back=LINES, top=0, floor=ROWS - 1, fl=1, fc=1, line_mm=PX, channel_mm=PX,
        found=True, size="40ft",
    )  # fmt: skip
    material = np.full(a.shape, int(MaterialClass.INORGANIC), np.uint8)
    if impenetrable:
        material[a > 3.0] = int(MaterialClass.IMPENETRABLE)
    zeff = np.full(a.shape, 14.0, np.float32)
    return Scene.build(a, material, zeff, frame)


def _red(findings: list) -> list:
    return [f for f in findings if f.score >= 1.0]


def test_a_steel_object_in_uniform_cartons_is_red_where_the_fixed_threshold_is_silent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = _cargo(texture=0.0)
    _gun(a, 250, 100)
    sc = _scene(a)
    found = _red(uniform_cargo_objects(sc, metal_cargo=False))
    assert len(found) == 1
    f = found[0]
    assert f.category == Category.DENSE_OBJECT
    # its box holds the whole L (lines 250-292, rows 100-115 of the image)
    l0, r0, l1, r1 = f.bbox_px
    assert l0 <= 250 and l1 >= 290 and r0 <= 100 and r1 >= 113
    assert "times its texture" in f.reason
    # the detector as the analysis runs it: one finding for the object, red
    dense = one_per_object(dense_objects(sc, metal_cargo=False))
    assert len(dense) == 1 and dense[0].bbox_px == f.bbox_px and dense[0].score >= 1.0
    # where the fixed threshold alone (+0.35, +0.09 per unit of cargo) says nothing red
    monkeypatch.setattr(_objects, "_with_uniform_cargo", lambda sc, found, metal: found)
    assert _red(dense_objects(sc, metal_cargo=False)) == []


def test_the_same_object_in_varied_goods_is_not_red_by_contrast_to_texture() -> None:
    a = _cargo(texture=0.15)
    _gun(a, 250, 100)
    assert _red(uniform_cargo_objects(_scene(a), metal_cargo=False)) == []


def test_clean_uniform_cartons_have_no_object() -> None:
    for seed in range(3):
        assert uniform_cargo_objects(_scene(_cargo(texture=0.0, seed=seed)), False) == []


def test_an_object_across_the_air_between_two_pallets_is_one_finding() -> None:
    a = _cargo(texture=0.0)
    _gun(a, 250, 100)
    a[270:273, 30:-8] = 0.05  # 36 mm of air between two pallets, across the bar
    found = _red(uniform_cargo_objects(_scene(a), metal_cargo=False))
    assert len(found) == 1
    assert found[0].bbox_px[0] <= 250 and found[0].bbox_px[2] >= 290


def test_objects_on_the_floor_or_in_what_the_scanner_cannot_see_through_are_left() -> None:
    a = _cargo(texture=0.0)
    a[250:270, ROWS - 12 : ROWS] += 1.5  # a cross member's bracket, from the floor up
    assert uniform_cargo_objects(_scene(a), metal_cargo=False) == []
    b = _cargo(texture=0.0)
    _gun(b, 250, 100)
    assert uniform_cargo_objects(_scene(b, impenetrable=True), metal_cargo=False) == []


def test_a_weak_object_is_not_red_and_a_textured_ring_lowers_its_score() -> None:
    a = _cargo(texture=0.0)
    _gun(a, 250, 100, contrast=0.4)  # under the least contrast (about 14 g/cm²)
    assert uniform_cargo_objects(_scene(a), metal_cargo=False) == []
    smooth, rough = _cargo(texture=0.0), _cargo(texture=0.06)
    _gun(smooth, 250, 100)
    _gun(rough, 250, 100)
    s = uniform_cargo_objects(_scene(smooth), False)
    r = uniform_cargo_objects(_scene(rough), False)
    assert s and r and max(f.score for f in r) < max(f.score for f in s)


def test_a_blob_wholly_in_the_floor_band_is_the_floors_an_object_on_the_floor_is_not() -> None:
    # a chassis member or cross member seen through the floor: 240 x 60 mm, in the lowest
    # 100 mm; the same steel 200 mm high stands on the floor and is an object
    low = _cargo(texture=0.0)
    low[300:320, ROWS - 6 : ROWS - 1] += 3.0
    assert [f for f in dense_objects(_scene(low), False) if f.score >= 1.0] == []
    tall = _cargo(texture=0.0)
    tall[300:320, ROWS - 17 : ROWS - 1] += 3.0
    found = [f for f in dense_objects(_scene(tall), False) if f.score >= 1.0]
    assert len(found) == 1 and found[0].bbox_px[0] <= 300 and found[0].bbox_px[2] >= 319


def test_a_handgun_on_a_pallets_base_is_judged() -> None:
    # the pallet's base (150 mm of wood, denser than the goods) and a steel L lying on it:
    # its lowest edge 160 mm above the floor, out of the floor the pass leaves alone
    a = _cargo(texture=0.0)
    a[:, ROWS - 13 : ROWS - 1] += 0.3
    bottom = ROWS - 1 - round(160 / PX)
    _gun(a, 250, bottom - 15)
    assert round(UNIFORM_FLOOR_MM / PX) < ROWS - 1 - bottom
    found = _red(uniform_cargo_objects(_scene(a), metal_cargo=False))
    assert len(found) == 1 and found[0].bbox_px[0] <= 250 and found[0].bbox_px[2] >= 290


def _part(box: list[int], score: float, basis: str = "") -> Finding:
    return Finding(
        Category.DENSE_OBJECT, score, Level.RED if score >= 1 else Level.YELLOW, "dense object",
        bbox_px=box, basis=basis,
    )  # fmt: skip


def test_one_finding_per_object_the_stronger_pass_on_scaled_scores() -> None:
    whole = _part([100, 50, 150, 70], 1.4, "texture")
    parts = [_part([100, 50, 120, 70], 0.6), _part([125, 50, 150, 62], 0.5)]
    elsewhere = _part([400, 50, 420, 70], 0.8)
    assert one_per_object([*parts, whole, elsewhere]) == [whole, elsewhere]
    # scaled by a varied load's thresholds the fixed level can be the surer: it stays
    strong = _part([100, 50, 120, 70], 2.0)
    assert one_per_object([strong, whole]) == [strong]
    # a handgun outline on it is the same object: the stronger stays
    gun = Finding(Category.FIREARM, 0.9, Level.YELLOW, "handgun", bbox_px=[110, 52, 130, 68])
    assert one_per_object([gun, whole]) == [whole]
    # another category on the same place is another finding
    z = Finding(Category.HIGH_Z_OBJECT, 1.2, Level.RED, "Z_eff 60", bbox_px=[100, 50, 150, 70])
    assert one_per_object([z, whole]) == [z, whole]
    assert "basis" not in whole.to_dict()
