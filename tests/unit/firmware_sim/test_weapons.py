"""Weapons and varied concealments: classes, boxes in the container, groups, default draws kept."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from firmware_sim.cli import register
from firmware_sim.physics import CONCEALMENTS, Scenario, build_scenario
from firmware_sim.physics._cargo import conceal, interior
from firmware_sim.physics._scene import ALL_CONTAINERS, CONTAINERS
from firmware_sim.physics._weapons import (
    WEAPONS,
    Component,
    WeaponClass,
    draw_weapon,
    weapons,
)


def _fingerprint(sc: Scenario) -> str:
    rows = [
        [o.label, o.kind, o.truth, o.material.name, round(o.density, 6)]
        + [round(v, 3) for v in o.bounds()]
        for o in sc.objects
    ]
    # the container number as it was written when the digests were pinned (the scan id,
    # seven digits, no check digit): it is no draw, and now carries an ISO 6346 check digit
    gd = {**sc.gd, "container_number": "MSKU" + str(sc.gd["gd_number"])[-7:]}
    doc = json.dumps([rows, gd, sc.discrepancies, round(sc.cargo_kg, 3)], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


def test_variety_off_draws_are_the_original() -> None:
    """Pinned: digests of draws taken before the weapons existed (commit 47d834f)."""
    pinned = {
        "firearms": ["8116252d7aca7290", "374c655d8b07d82c", "4bf0c3de97fdef33"],
        "high-Z block": ["84400724e95fdc4b", "97873d84d698f3d6", "358d0e52115005f8"],
        "vehicle": ["1fdec529882aed62", "c75bb70688626848", "441e029caed5ac0a"],
        "false wall": ["d1f7392d02a5ba64", "061d4fa86fa5e325", "bf97ae918684fe75"],
    }
    for kind, digests in pinned.items():
        for s, want in enumerate(digests):
            sc = build_scenario(np.random.default_rng([s, 7]), s, concealment=kind, variety=False)
            assert _fingerprint(sc) == want, (kind, s)
    drawn = ["be8033ba4392021e", "7302c99c20d94722", "2c2efacf25fd03f9", "dbaed0bd5ef23a9c"]
    assert [_fingerprint(build_scenario(np.random.default_rng([s, 3]), s)) for s in range(4)] == (
        drawn
    )
    space = interior(CONTAINERS["40GP"], 3400.0)
    objs = conceal("firearms", space, [], np.random.default_rng(2))
    assert [[round(v, 3) for v in o.bounds()] for o in objs] == [
        [-15, 15, 7345.497, 7545.497, 2178.642, 2308.642],
        [25, 55, 7645.497, 7845.497, 2178.642, 2308.642],
        [65, 95, 7945.497, 8145.497, 2178.642, 2308.642],
    ]
    assert all(o.group == 0 and o.label == "firearm" for o in objs)


@pytest.mark.parametrize("cls", list(WeaponClass))
def test_every_class_draws_in_its_length_range_with_steel(cls: WeaponClass) -> None:
    lo, hi = WEAPONS[cls].length_mm
    rng = np.random.default_rng(11)
    for _ in range(20):
        wp = draw_weapon(cls, rng, disassembled=False)
        u0, u1, v0, v1 = wp.extent()
        assert lo - 1 <= u1 - u0 <= hi + 1
        assert 0.1 < (v1 - v0) / (u1 - u0) < 0.75  # side-on proportions of a real weapon
        assert any(pc.material.name == "steel" for pc in wp.pieces)
        assert wp.label == cls.value


def test_long_guns_come_apart_and_compact_smgs_lose_their_stock() -> None:
    rng = np.random.default_rng(3)
    whole = draw_weapon(WeaponClass.RIFLE, rng, length_mm=900.0, disassembled=False)
    apart = draw_weapon(WeaponClass.RIFLE, rng, length_mm=900.0, disassembled=True)
    assert apart.label == "rifle (in parts)"
    # parts laid side by side: shorter and taller than the assembled rifle
    assert apart.extent()[1] - apart.extent()[0] < 0.7 * (whole.extent()[1] - whole.extent()[0])
    assert apart.extent()[3] - apart.extent()[2] > 1.5 * (whole.extent()[3] - whole.extent()[2])
    compact = draw_weapon(WeaponClass.SMG, rng, length_mm=320.0)
    full = draw_weapon(WeaponClass.SMG, rng, length_mm=620.0)
    assert not any(pc.label.endswith("stock") for pc in compact.pieces)
    assert any(pc.label.endswith("stock") for pc in full.pieces)
    assert Component.STOCK in {p.component for p in WEAPONS[WeaponClass.SMG].parts}


def test_turning_keeps_the_shape_and_mirrors() -> None:
    wp = draw_weapon(WeaponClass.PISTOL, np.random.default_rng(1), length_mm=200.0)
    u0, u1, v0, v1 = wp.extent()
    up = wp.turned(90.0, False).extent()
    assert up[1] - up[0] == pytest.approx(v1 - v0) and up[3] - up[2] == pytest.approx(u1 - u0)
    flipped = wp.turned(0.0, True)
    # the slide (first piece) runs from the muzzle: mirrored, it ends at the other side
    assert max(p[0] for p in flipped.pieces[0].points) == pytest.approx(u1)
    assert min(p[0] for p in wp.pieces[0].points) == pytest.approx(u0)


def test_weapons_lie_inside_the_container_with_one_truth_per_weapon() -> None:
    packings: Counter[str] = Counter()
    classes: set[str] = set()
    codes = list(ALL_CONTAINERS)
    for seed in range(120):
        spec = ALL_CONTAINERS[codes[seed % len(codes)]]
        space = interior(spec, 3400.0, 1250.0)
        objs, info = weapons(space, np.random.default_rng(seed))
        packings[str(info["packing"])] += 1
        drawn = info["classes"]
        assert isinstance(drawn, list)
        classes |= {str(c).removesuffix(" (in parts)") for c in drawn}
        for o in objs:
            x0, x1, y0, y1, z0, z1 = o.bounds()
            assert space.x0 <= x0 < x1 <= space.x1, (seed, o.label)
            assert space.y0 <= y0 < y1 <= space.y1, (seed, o.label)
            assert space.z0 <= z0 < z1 <= space.z1, (seed, o.label)
            assert o.kind == "concealment" and o.group >= 1
        truths = [o for o in objs if o.truth]
        assert len(truths) == info["count"] and all(o.material.name == "steel" for o in truths)
        groups = {o.group for o in truths}
        if info["packing"] == "loose":
            assert len(groups) == len(truths)  # one finding per weapon
            assert 1 <= len(truths) <= 6
        else:
            assert groups == {1}  # packed together: one finding
        if info["packing"] == "carton":
            assert any(o.label == "weapons carton" for o in objs) and len(truths) >= 2
    assert set(packings) == {"loose", "bundle", "carton"}
    assert classes == {c.value for c in WeaponClass}


def test_truth_box_outlines_the_whole_weapon() -> None:
    space = interior(CONTAINERS["40HC"], 3400.0)
    checked = 0
    for seed in range(40):
        objs, info = weapons(space, np.random.default_rng(seed))
        if info["packing"] != "loose":
            continue
        for t in (o for o in objs if o.truth):
            _, _, y0, y1, z0, z1 = t.bounds()
            for o in (o for o in objs if o.group == t.group):
                b = o.bounds()
                assert y0 - 1e-6 <= b[2] and b[3] <= y1 + 1e-6, (seed, o.label)
                assert z0 - 1e-6 <= b[4] and b[5] <= z1 + 1e-6, (seed, o.label)
                checked += 1
    assert checked > 20


def test_other_concealments_vary_and_stay_inside() -> None:
    materials: dict[str, set[str]] = {k: set() for k in CONCEALMENTS}
    labels: set[str] = set()
    for seed in range(60):
        spec = ALL_CONTAINERS[("20GP", "40GP", "45HC")[seed % 3]]
        space = interior(spec, 3400.0, 1250.0)
        for kind in CONCEALMENTS:
            objs = conceal(kind, space, [], np.random.default_rng([seed, 5]), variety=True)
            assert any(o.truth for o in objs), kind
            for o in objs:
                x0, x1, y0, y1, z0, z1 = o.bounds()
                assert space.x0 - 1 <= x0 < x1 <= space.x1 + 1, (kind, o.label)
                assert space.y0 - 1 <= y0 < y1 <= space.y1 + 1, (kind, o.label)
                assert space.z0 - 1 <= z0 < z1 <= space.z1 + 1, (kind, o.label)
                if o.truth:
                    materials[kind].add(o.material.name)
                labels.add(o.label)
    assert {"lead", "tungsten", "uranium", "gold"} <= materials["high-Z block"]
    assert {"steel", "copper"} <= materials["high-density block"]
    assert {"car", "motorcycle", "quad"} <= labels
    assert {"false wall panel", "false floor panel"} <= labels
    assert len(materials["false wall"]) >= 2
    with pytest.raises(ValueError, match="unknown concealment"):
        conceal("giraffe", space, [], np.random.default_rng(0), variety=True)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


def test_cli_exports_a_firearms_case_with_a_finding_per_group(tmp_path: Path) -> None:
    argv = ["sim", "case", "--model", "l4-cdwo4-15", "--kind", "firearms", "--seed", "4"]
    assert _cli([*argv, "--id", "7", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "0007_gun_like" / "case.json").read_text())
    findings = doc["truth"]["findings"]
    assert doc["truth"]["kind"] == "gun_like" and 1 <= len(findings) <= 6
    for f in findings:
        left, top, right, bottom = f["bbox_mm"]
        assert f["category"] == "gun_like"
        assert 0 <= left < right and 0 <= top < bottom
    # the scan truth of the same draw names each weapon with its group
    sc = build_scenario(
        np.random.default_rng([4, 7]),
        7,
        concealment="firearms",
        lie=False,
        empty=False,
        variety=True,
    )
    truths = [o for o in sc.objects if o.kind == "concealment" and o.truth]
    assert len({o.group for o in truths}) == len(findings)
