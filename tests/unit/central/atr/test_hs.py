"""The HS headings table, text matching, and the commodity and weight checks."""
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import dataclasses

import pytest

from central.atr._commodity import (
    CLASS_NOISE,
    LoadFeatures,
    check_commodity,
    check_weight,
)
from central.atr._declaration import DeclaredGoods, parse_gd, resolve
from central.atr._hs import HS_TABLE, expectation, match_text, normalise_hs
from core.calibration import MaterialClass

#: Chapters common in container trade, each of which the table must cover.
_COMMON = (
    "02 03 04 07 08 09 10 11 15 16 17 19 20 21 22 24 25 27 28 29 32 33 34 38 39 40 41 42 44 "
    "47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 68 69 70 72 73 74 76 82 83 84 85 "
    "87 90 94 95 96"
)
CHAPTERS = tuple(_COMMON.split())


def _load(
    density: float,
    sigma: float = 0.1,
    *,
    organic: float = 0.0,
    inorganic: float = 0.0,
    metal: float = 0.0,
    impenetrable: float = 0.0,
    zeff: float = 12.0,
    fill: float = 0.5,
) -> LoadFeatures:
    return LoadFeatures(
        fill_fraction=fill,
        bulk_density_g_cm3=density,
        bulk_density_sigma_g_cm3=sigma,
        zeff_median=zeff,
        zeff_iqr=2.0,
        organic=organic,
        inorganic=inorganic,
        metal=metal,
        impenetrable=impenetrable,
        mass_kg=20_000.0,
        mass_sigma_kg=2_000.0,
    )


def _declared(**gd: object) -> DeclaredGoods:
    return resolve(parse_gd(gd))


# --- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_common_chapter_is_covered(chapter: str) -> None:
    exp = expectation(chapter + "99")
    assert exp is not None and exp.heading == chapter and exp.level == "chapter"


def test_rows_are_sane() -> None:
    for code, row in HS_TABLE.items():
        assert code.isdigit() and len(code) in (2, 4, 6), code
        lo, hi = row.density_range
        assert 0.0 < lo < hi < 8.0, code
        zlo, zhi = row.zeff_range
        assert 1.0 <= zlo < zhi <= 82.0, code
        assert row.classes and set(row.classes) <= {
            MaterialClass.ORGANIC,
            MaterialClass.INORGANIC,
            MaterialClass.METAL,
        }, code
        assert row.source and row.description, code


@pytest.mark.parametrize(
    ("code", "row"),
    [
        ("8471.30", "8471"),
        ("8402.11", "8402"),
        ("7204.49", "7204"),
        ("4011.20", "4011"),
        ("6907.21", "6907"),
        ("7010.90", "7010"),
        ("0202.30", "0202"),
        ("2402.20", "2402"),
        ("7408.11", "7408"),
        ("7601.10", "7601"),
        ("8703.23", "8703"),
        ("8479.89", "84"),
        ("0201.10", "02"),
    ],
)
def test_the_most_specific_row_wins(code: str, row: str) -> None:
    exp = expectation(code)
    assert exp is not None and exp.heading == row


def test_heading_overrides_differ_from_their_chapter() -> None:
    computers, boilers = expectation("8471"), expectation("8402")
    assert computers is not None and boilers is not None
    assert computers.density_range[1] < 1.0
    assert boilers.density_range[1] > computers.density_range[1]
    assert boilers.classes == (MaterialClass.METAL,)
    tiles, sanitary = expectation("6907"), expectation("6910")
    assert tiles is not None and sanitary is not None
    assert tiles.density_range[0] > sanitary.density_range[1]


def test_a_subheading_row_is_found_before_its_heading() -> None:
    # the table holds no 6-digit row today; a lookup must still prefer one
    sub = dataclasses.replace(HS_TABLE["6907"], heading="690721", description="test row")
    HS_TABLE["690721"] = sub
    try:
        found = expectation("6907.21.00")
        assert found is not None and found.level == "subheading"
        assert found.description == "test row"
        other = expectation("6907.22")
        assert other is not None and other.heading == "6907"
    finally:
        del HS_TABLE["690721"]


@pytest.mark.parametrize("code", ["0101", "9301", "9999", "01", "12"])
def test_codes_outside_the_table_are_none(code: str) -> None:
    assert expectation(code) is None


def test_normalise_removes_dots_and_spaces() -> None:
    assert normalise_hs("0202.30") == "020230"
    assert normalise_hs("6907 21.00") == "69072100"


# --- text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "heading"),
    [
        ("glazed ceramic floor tiles", "6907"),
        ("Ceramic Tiles", "6907"),
        ("CERAMIC TILE", "6907"),
        ("frozen beef", "0202"),
        ("frozen meat", "02"),
        ("scrap steel", "7204"),
        ("steel scrap, shredded", "7204"),
        ("copper wire", "7408"),
        ("aluminum ingots", "7601"),
        ("glass bottles", "7010"),
        ("Tires", "4011"),
        ("cigarettes", "2402"),
        ("rice", "1006"),
        ("laptops", "8471"),
        ("used cars", "8703"),
        ("car parts", "8708"),
        ("nuts and bolts", "73"),
        ("plastic bottles", "3923"),
        ("sugar on pallets", "17"),
    ],
)
def test_text_matches_a_heading(text: str, heading: str) -> None:
    found = match_text(text)
    assert found is not None and found.heading == heading


@pytest.mark.parametrize("text", ["", "widgets", "general cargo", "STC 12 pkgs"])
def test_text_with_no_keyword_matches_nothing(text: str) -> None:
    assert match_text(text) is None


@pytest.mark.parametrize(
    "name",
    [
        "textiles",
        "paper",
        "fruit",
        "frozen meat",
        "ceramic tiles",
        "glass bottles",
        "electronics",
        "machinery",
        "scrap steel",
        "copper wire",
        "cigarettes",
        "tyres",
        "rice",
        "aluminium ingots",
    ],
)
def test_every_simulator_commodity_name_is_known(name: str) -> None:
    assert match_text(name) is not None


# --- commodity check ------------------------------------------------------------------------


def test_tiles_that_look_like_tiles_are_green() -> None:
    c = check_commodity(
        _declared(hs_code="6907.21"), _load(1.2, 0.2, inorganic=0.85, organic=0.08, metal=0.07)
    )
    assert c.level == "green" and c.score < 0.5 and c.known
    assert c.reason.startswith("declared 6907 ceramic tiles: expects inorganic, 0.8–2.2 g/cm³")
    assert "image shows 85 % inorganic at 1.2 ± 0.2 g/cm³ — consistent" in c.reason
    assert c.looks_like == ()


def test_density_outside_by_less_than_its_uncertainty_is_not_red() -> None:
    # 0.1 below the range with σ = 0.1: within 2 σ
    c = check_commodity(_declared(hs_code="6907"), _load(0.7, 0.1, inorganic=0.9, organic=0.1))
    assert c.level != "red"
    wide = check_commodity(_declared(hs_code="6907"), _load(0.5, 0.2, inorganic=0.9, organic=0.1))
    assert wide.level != "red"


def test_density_far_outside_the_range_is_red() -> None:
    # below: even a load one pallet wide reads at least a third of the packed density
    c = check_commodity(_declared(hs_code="6907"), _load(0.1, 0.02, inorganic=0.9, organic=0.1))
    assert c.level == "red" and c.score >= 1.0
    assert "below the range" in c.reason and "inconsistent" in c.reason
    assert c.density_sigmas > 2.0
    # above: no load is denser across the width than its goods are packed
    c = check_commodity(_declared(hs_code="6907"), _load(3.5, 0.1, inorganic=0.9, organic=0.1))
    assert c.level == "red" and "above the range" in c.reason


def test_a_heavy_load_one_pallet_wide_is_not_a_mismatch() -> None:
    # tiles packed at 1.25 g/cm³ filling 45 % of the width read 0.56 g/cm³
    c = check_commodity(_declared(hs_code="6907"), _load(0.56, 0.1, inorganic=0.9, organic=0.1))
    assert c.level == "green"


def test_the_wrong_dominant_class_is_red() -> None:
    # density inside the tiles' range, but the load is metal
    c = check_commodity(
        _declared(hs_code="6907"), _load(1.5, 0.2, inorganic=0.2, metal=0.75, organic=0.05, zeff=24)
    )
    assert c.level == "red" and "unexpected classes" in c.reason
    assert c.looks_like and all(code in HS_TABLE for code in c.looks_like)
    assert "looks like" in c.reason


def test_a_class_share_within_noise_stays_green() -> None:
    share = CLASS_NOISE - 0.05
    c = check_commodity(
        _declared(hs_code="6907"), _load(1.3, 0.2, inorganic=1 - share, metal=share)
    )
    assert c.level == "green"


def test_organic_goods_declared_as_tiles_are_red_and_look_organic() -> None:
    c = check_commodity(
        _declared(commodity="Ceramic Tiles"), _load(0.25, 0.05, organic=0.9, inorganic=0.1, zeff=7)
    )
    assert c.level == "red"
    for code in c.looks_like:
        assert MaterialClass.ORGANIC in HS_TABLE[code].classes


def test_mixed_machinery_is_green_whatever_the_mix() -> None:
    c = check_commodity(
        _declared(hs_code="8479.89"), _load(0.6, 0.15, metal=0.6, inorganic=0.25, organic=0.15)
    )
    assert c.level == "green"


def test_a_mostly_impenetrable_load_gives_no_class_evidence() -> None:
    c = check_commodity(
        _declared(hs_code="6907"), _load(1.5, 0.3, metal=0.3, impenetrable=0.6, inorganic=0.1)
    )
    assert c.level != "red" and "impenetrable" in c.reason


@pytest.mark.parametrize(
    "load",
    [
        _load(0.3, 0.05, organic=0.9, inorganic=0.1, zeff=7),
        _load(3.5, 0.1, metal=1.0, zeff=26),
        _load(1.2, 0.1, impenetrable=1.0),
    ],
)
def test_unknown_commodity_is_yellow_never_red(load: LoadFeatures) -> None:
    for declared in (_declared(commodity="widgets"), _declared(), _declared(hs_code="9301")):
        c = check_commodity(declared, load)
        assert c.level == "yellow" and not c.known
        assert "unknown commodity" in c.reason


def test_declared_empty_is_left_to_the_empty_check() -> None:
    c = check_commodity(_declared(declared_empty=True), _load(0.3, organic=1.0))
    assert c.level == "green" and "declared empty" in c.reason


def test_too_little_load_is_not_judged() -> None:
    c = check_commodity(_declared(hs_code="6907"), _load(0.1, organic=1.0, fill=0.01))
    assert c.level == "green" and "too little load" in c.reason


def test_zeff_alone_is_at_most_yellow() -> None:
    # classes say inorganic, density fits; only the median Z_eff is off
    c = check_commodity(_declared(hs_code="6907"), _load(1.3, 0.2, inorganic=1.0, zeff=40))
    assert c.level == "yellow" and "Z_eff" in c.reason


def test_load_features_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="organic"):
        _load(1.0, organic=1.5)
    with pytest.raises(ValueError, match="bulk_density"):
        _load(-1.0)


# --- weight check ---------------------------------------------------------------------------


def test_weight_within_the_estimates_uncertainty_is_green() -> None:
    w = check_weight(25_500, 3_900, 20_200, 1_500)
    assert w.level == "green"
    assert w.reason == "declared 25.5 t gross; image shows 24.1 ± 2.5 t — consistent"
    # σ includes the 10 % model error: hypot(1500, 2020)
    assert w.sigma_kg == pytest.approx(2516, abs=1)


def test_weight_understated_is_red() -> None:
    w = check_weight(18_000, 3_900, 25_000, 1_000)
    assert w.level == "red" and "more than declared" in w.reason and w.score >= 1.0


def test_weight_overstated_is_red() -> None:
    w = check_weight(25_500, 3_900, 12_000, 1_000)
    assert w.level == "red" and "less than declared" in w.reason


def test_weight_between_two_and_three_sigma_is_yellow() -> None:
    # σ = hypot(1000, 2000) ≈ 2236 kg; 2.5 σ ≈ 5590 kg
    w = check_weight(3_900 + 20_000 + 5_590, 3_900, 20_000, 1_000)
    assert w.level == "yellow"


def test_weight_check_refuses_negative_inputs() -> None:
    with pytest.raises(ValueError, match="mass_sigma_kg"):
        check_weight(25_000, 3_900, 20_000, -1)


# --- nii atr hs -----------------------------------------------------------------------------


def test_cli_prints_the_expectation(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from nii.__main__ import build_parser

    args = build_parser().parse_args(["atr", "hs", "6907.21"])
    assert args.func(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["heading"] == "6907" and doc["classes"] == ["inorganic"]
    args = build_parser().parse_args(["atr", "hs", "glazed", "ceramic", "floor", "tiles"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["found"] == "text"


def test_cli_unknown_code_is_an_error_with_a_fix() -> None:
    from central.atr._model import AtrInputError
    from nii.__main__ import build_parser

    args = build_parser().parse_args(["atr", "hs", "9301"])
    with pytest.raises(AtrInputError) as info:
        args.func(args)
    assert "unknown commodity" in str(info.value) and info.value.fix


def test_the_docs_table_is_the_code_table() -> None:
    from pathlib import Path

    doc = Path(__file__).resolve().parents[4] / "docs" / "atr-declarations.md"
    rows = {}
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0].isdigit():
            rows[cells[0]] = cells[3]
    assert set(rows) == set(HS_TABLE)
    for code, exp in HS_TABLE.items():
        lo, hi = exp.density_range
        assert rows[code] == f"{lo:g}–{hi:g}", code


def test_the_simulators_commodities_fall_inside_their_rows() -> None:
    # the simulator's packed bulk densities (g/cm³, packaging and voids included) are an
    # independent estimate: each must lie in the range of the row its HS code resolves to
    from firmware_sim.physics import COMMODITIES

    for c in COMMODITIES.values():
        exp = expectation(c.hs_code)
        assert exp is not None, c.name
        lo, hi = exp.density_range
        # tyres: the simulator's 1.15 is rubber in the ring, half-filled (0.575 as imaged)
        density = c.bulk_density * (0.5 if c.pattern == "tyres" else 1.0)
        assert lo <= density <= hi, (c.name, density, exp.density_range)
        by_text = match_text(c.name)
        # its name read as text gives a row that accepts the load too ("electronics": 85)
        assert by_text is not None, c.name
        assert by_text.density_range[0] <= density <= by_text.density_range[1], c.name
        assert set(by_text.classes) & set(exp.classes), c.name


def test_goods_read_from_text_are_labelled_so() -> None:
    r = _declared(commodity="glazed ceramic floor tiles")
    assert r.label == "'glazed ceramic floor tiles' (read as 6907 ceramic tiles)"
    c = check_commodity(r, _load(1.2, 0.2, inorganic=1.0))
    assert c.reason.startswith("declared 'glazed ceramic floor tiles' (read as 6907")
