"""Goods Declaration parsing and HS resolution, error by error."""

from __future__ import annotations

from typing import Any

import pytest

from central.atr._declaration import Found, GoodsDeclaration, parse_gd, resolve
from central.atr._model import AtrInputError

#: What the simulator writes (firmware_sim/physics/_cargo.py).
SIM_GD: dict[str, Any] = {
    "gd_number": "KPPI-HC-00000042",
    "container_number": "MSKU0000042",
    "container_type": "40HC",
    "declared_commodity": "frozen meat",
    "hs_code": "0202.30",
    "gross_weight_kg": 25012.5,
    "packages": 640,
    "seal": "SL1234567",
}


def _error(doc: dict[str, Any]) -> AtrInputError:
    with pytest.raises(AtrInputError) as info:
        parse_gd(doc)
    assert info.value.fix, "every GD error says what to do"
    return info.value


def test_the_simulators_gd_parses_and_normalises() -> None:
    gd = parse_gd(SIM_GD)
    assert gd.hs_code == "020230"
    assert (gd.chapter, gd.heading, gd.subheading) == ("02", "0202", "020230")
    assert gd.commodity == "frozen meat"  # from the alias declared_commodity
    assert gd.gross_weight_kg == 25012.5
    assert gd.container_type == "45G1" and gd.container_model == "40HC"
    assert gd.packages == 640 and not gd.declared_empty


@pytest.mark.parametrize(
    ("written", "normal"),
    [("0202.30", "020230"), ("6907 21 00", "69072100"), ("8471", "8471"), (" 7204.49 ", "720449")],
)
def test_hs_codes_lose_dots_and_spaces(written: str, normal: str) -> None:
    assert parse_gd({"hs_code": written}).hs_code == normal


def test_a_four_digit_code_has_no_subheading() -> None:
    gd = parse_gd({"hs_code": "8471"})
    assert gd.heading == "8471" and gd.subheading == ""


@pytest.mark.parametrize(
    ("written", "iso", "model"),
    [
        ("20GP", "22G1", "20GP"),
        ("40gp", "42G1", "40GP"),
        ("40HC", "45G1", "40HC"),
        ("45HC", "L5G1", "45HC"),
        ("20ft", "22G1", "20GP"),
        ("40 ft", "42G1", "40GP"),
        ("45ft", "L5G1", "45HC"),
        ("22G1", "22G1", "20GP"),
        ("42G1", "42G1", "40GP"),
        ("45G1", "45G1", "40HC"),
        ("L5G1", "L5G1", "45HC"),
    ],
)
def test_container_types_normalise_to_iso_6346(written: str, iso: str, model: str) -> None:
    gd = parse_gd({"container_type": written})
    assert (gd.container_type, gd.container_model) == (iso, model)


def test_commodity_alias_and_plain_name_both_work() -> None:
    assert parse_gd({"commodity": "Ceramic Tiles"}).commodity == "Ceramic Tiles"
    assert parse_gd({"declared_commodity": "rice"}).commodity == "rice"


def test_commodity_empty_means_declared_empty() -> None:
    gd = parse_gd({"declared_commodity": "empty", "hs_code": "", "packages": 0})
    assert gd.declared_empty and gd.commodity == ""
    assert resolve(gd).found is Found.EMPTY


def test_a_misspelt_field_is_named_with_a_suggestion() -> None:
    err = _error({"gross_weigth_kg": 25000})
    assert str(err) == "unknown GD field 'gross_weigth_kg' (did you mean 'gross_weight_kg'?)"
    err = _error({"hscode": "6907"})
    assert "did you mean 'hs_code'" in str(err)


def test_an_unknown_field_far_from_any_is_named_without_a_guess() -> None:
    err = _error({"colour": "red"})
    assert "unknown GD field 'colour'" in str(err) and "did you mean" not in str(err)


@pytest.mark.parametrize(
    "code", ["12a4", "690", "12345678901", "0000", "7701", "69-07", ""], ids=repr
)
def test_bad_hs_codes_are_errors(code: str) -> None:
    if code == "":
        assert parse_gd({"hs_code": code}).hs_code == ""  # not declared is no error
        return
    err = _error({"hs_code": code})
    assert "hs_code" in str(err)


def test_an_hs_code_as_a_number_is_refused_it_loses_leading_zeros() -> None:
    err = _error({"hs_code": 20230})
    assert "hs_code" in str(err) and "as text" in err.fix


@pytest.mark.parametrize("weight", [-5, 0, 60_000, 1e9])
def test_impossible_weights_are_errors(weight: float) -> None:
    err = _error({"gross_weight_kg": weight})
    assert "gross_weight_kg" in str(err) and "impossible" in str(err)


@pytest.mark.parametrize("value", ["25000", True, [1]])
def test_a_weight_of_the_wrong_type_is_an_error(value: object) -> None:
    err = _error({"gross_weight_kg": value})
    assert "gross_weight_kg" in str(err)


@pytest.mark.parametrize("ctype", ["XYZ", "40XX", "99G1", "30GP"])
def test_unknown_container_types_are_errors(ctype: str) -> None:
    err = _error({"container_type": ctype})
    assert "unknown container type" in str(err) and "22G1" in err.fix


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"declared_empty": "yes"}, "declared_empty"),
        ({"packages": 1.5}, "packages"),
        ({"packages": -1}, "packages"),
        ({"seal": 5}, "seal"),
    ],
)
def test_wrong_types_and_values_name_the_field(doc: dict[str, Any], field: str) -> None:
    assert field in str(_error(doc))


def test_declared_empty_with_goods_is_an_error() -> None:
    err = _error({"declared_empty": True, "hs_code": "6907"})
    assert "declared empty" in str(err)


def test_a_gd_that_is_not_an_object_is_an_error() -> None:
    with pytest.raises(AtrInputError):
        parse_gd([1, 2])  # type: ignore[arg-type]


def test_several_errors_say_how_many_more() -> None:
    err = _error({"gross_weigth_kg": 1, "hs_code": "x"})
    assert "1 more" in str(err)


def test_null_text_fields_are_blank() -> None:
    gd = parse_gd({"hs_code": None, "seal": None, "gross_weight_kg": None})
    assert gd.hs_code == "" and gd.seal == "" and gd.gross_weight_kg is None


def test_the_declaration_is_immutable() -> None:
    gd = parse_gd({"hs_code": "6907"})
    with pytest.raises(ValueError):
        setattr(gd, "hs_code", "0202")  # noqa: B010


# --- resolve -------------------------------------------------------------------------------


def test_an_hs_code_resolves_to_its_most_specific_row() -> None:
    r = resolve(parse_gd({"hs_code": "0202.30", "declared_commodity": "frozen meat"}))
    assert r.found is Found.HS_CODE and r.heading == "0202"
    assert r.expectation is not None and r.expectation.heading == "0202"
    assert "HS 020230" in r.reason


@pytest.mark.parametrize(
    ("text", "heading"),
    [("glazed ceramic floor tiles", "6907"), ("Ceramic Tiles", "6907"), ("TYRES", "4011")],
)
def test_text_without_code_is_matched_and_says_so(text: str, heading: str) -> None:
    r = resolve(parse_gd({"commodity": text}))
    assert r.found is Found.TEXT and r.heading == heading
    assert "read from text" in r.reason


def test_a_code_outside_the_table_falls_back_to_the_text() -> None:
    r = resolve(parse_gd({"hs_code": "9301", "commodity": "ceramic tiles"}))
    assert r.found is Found.TEXT and r.heading == "6907"
    assert "9301 is not in the table" in r.reason


@pytest.mark.parametrize(
    "doc",
    [{}, {"commodity": "widgets"}, {"hs_code": "9301"}, {"hs_code": "0101", "commodity": "x"}],
)
def test_no_code_and_no_matching_text_is_unknown(doc: dict[str, Any]) -> None:
    r = resolve(parse_gd(doc))
    assert r.found is Found.UNKNOWN and r.expectation is None and r.heading == ""
    assert r.reason


def test_text_that_contradicts_the_code_is_mentioned_but_the_code_wins() -> None:
    r = resolve(parse_gd({"hs_code": "6907.21", "commodity": "frozen meat"}))
    assert r.heading == "6907" and "reads as meat" in r.reason


def test_label_names_the_goods() -> None:
    assert resolve(parse_gd({"hs_code": "6907"})).label == "6907 ceramic tiles"
    assert resolve(parse_gd({"commodity": "widgets"})).label == "widgets"
    assert isinstance(parse_gd({}), GoodsDeclaration)


def test_a_weight_finding_is_yellow_only_where_its_reason_says_doubtful() -> None:
    from central.atr._commodity import check_weight
    from central.atr._gd import finding_score
    from central.atr._model import level_of

    # 2 t tare; the image 1.7, 2.5 and 3.5 sigma (of 1 t) under the declared 12 t gross
    for z, word, level in ((1.7, "consistent", "green"), (2.5, "doubtful", "yellow"),
                           (3.5, "inconsistent", "red")):  # fmt: skip
        w = check_weight(12000.0, 2000.0, 10000.0 - 1000.0 * z, 1000.0, model_error=0.0)
        assert word in w.reason
        assert str(level_of(finding_score(w))) == level
