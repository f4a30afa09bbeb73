"""Scene variety: other containers and vehicles, deck heights, packing; the default draw kept."""

from __future__ import annotations

import numpy as np

from firmware_sim.physics import ALL_CONTAINERS, CONTAINERS, Scenario, build_scenario
from firmware_sim.physics._cargo import arrange_load, interior, load_cargo
from firmware_sim.physics._scene import COMMODITIES


def _draw(seed: int, variety: bool) -> Scenario:
    return build_scenario(np.random.default_rng([seed, seed]), seed, variety=variety)


def test_default_draw_is_the_original() -> None:
    """Pinned: the draw of seed 0 before scanner models existed (2026-11-30)."""
    sc = build_scenario(np.random.default_rng([0, 0]), 0)
    assert (sc.container.code, sc.commodity, sc.concealment) == ("40HC", "scrap steel", None)
    assert sc.gd["declared_commodity"] == "machinery" and len(sc.objects) == 179
    assert sc.gd["gross_weight_kg"] == 15422.3 and sc.gd["seal"] == "SL4905020"
    assert sc.vehicle == "trailer" and sc.deck_z == 1250.0 and sc.load == {}
    for seed in range(12):
        a = build_scenario(np.random.default_rng([seed, 1]), 1)
        b = build_scenario(np.random.default_rng([seed, 1]), 1, variety=False)
        assert a.container.code in CONTAINERS and a.gd == b.gd
        assert [o.bounds() for o in a.objects] == [o.bounds() for o in b.objects]


def test_variety_covers_containers_vehicles_and_deck_heights() -> None:
    scenes = [_draw(seed, True) for seed in range(60)]
    codes = {s.container.code for s in scenes}
    assert {"20GP", "40GP", "40HC", "45HC"} <= codes
    assert ALL_CONTAINERS["45HC"].length == 13716.0 and ALL_CONTAINERS["45HC"].height == 2896.0
    assert {s.vehicle for s in scenes} == {"trailer", "rigid"}
    assert all(s.container.length < 7000 for s in scenes if s.vehicle == "rigid")
    decks = [s.deck_z for s in scenes]
    assert max(decks) - min(decks) > 200
    placements = {s.load.get("placement") for s in scenes if s.load}
    assert {"front", "back"} <= placements
    assert any(s.load.get("gaps") for s in scenes)
    assert any(s.load.get("cut_rows") for s in scenes)


def test_variety_keeps_cargo_inside_the_container() -> None:
    for seed in range(30):
        sc = _draw(seed, True)
        space = interior(sc.container, sc.y_front, sc.deck_z)
        for o in sc.objects:
            if o.kind != "cargo":
                continue
            _, _, y0, y1, z0, z1 = o.bounds()
            assert space.y0 - 1 <= y0 < y1 <= space.y1 + 1, (seed, o.label)
            assert space.z0 - 1 <= z0 < z1 <= space.z1 + 1, (seed, o.label)
        assert sc.length_mm > sc.y_front + sc.container.length


def test_variety_is_reproducible_per_seed() -> None:
    a, b = _draw(9, True), _draw(9, True)
    assert a.gd == b.gd and a.load == b.load and a.deck_z == b.deck_z
    assert [o.bounds() for o in a.objects] == [o.bounds() for o in b.objects]


def test_arrange_load_back_placement_moves_goods_to_the_doors() -> None:
    spec = CONTAINERS["40GP"]
    space = interior(spec, 3400.0)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        goods = load_cargo(COMMODITIES["paper"], space, rng, 0.4)
        moved, how = arrange_load(goods, space, rng)
        if how["placement"] == "back":
            assert max(o.bounds()[3] for o in moved) > space.y1 - 200
            assert min(o.bounds()[2] for o in moved) > space.y0 + 1000
            return
    raise AssertionError("no back placement in 40 draws")
