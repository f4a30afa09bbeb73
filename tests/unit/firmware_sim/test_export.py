"""Exported cargo cases: layout of case.json, truth boxes, ATT pairs, files, CLI errors."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from core.errors import ConfigError
from firmware_sim.cli import register
from firmware_sim.physics import CATEGORIES, SCANNER_MODELS, ScannerModel, export_case

CASE_KEYS = {"pixel_mm", "scanner", "gd", "truth", "actual_commodity", "actual_gross_kg", "pair_of"}
GD_KEYS = {"commodity", "hs_code", "gross_weight_kg", "container_type", "declared_empty"}


def small(name: str) -> ScannerModel:
    """The model with 1/8 of its channels and ~40 mm lines."""
    m = SCANNER_MODELS[name]
    return dataclasses.replace(
        m, channels=m.channels // 8, line_rate_hz=m.speed_m_s * 1000.0 / 40.0
    )


def read(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    hi = cv2.imread(str(folder / "high.tiff"), cv2.IMREAD_UNCHANGED)
    lo = cv2.imread(str(folder / "low.tiff"), cv2.IMREAD_UNCHANGED)
    assert hi is not None and lo is not None
    return np.asarray(hi), np.asarray(lo), json.loads((folder / "case.json").read_text())


def test_concealment_case_layout_and_truth_box(tmp_path: Path) -> None:
    m = small("l9-cdwo4-40")
    (folder,) = export_case(m, 3, 19, tmp_path, "gun_like")
    assert folder.name == "0019_gun_like"
    hi, lo, doc = read(folder)
    assert set(doc) == CASE_KEYS and set(doc["gd"]) == GD_KEYS
    assert hi.dtype == lo.dtype == np.uint16 and hi.shape == lo.shape
    assert hi.shape[0] == m.channels  # rows are channels
    assert doc["scanner"] == m.name and doc["pair_of"] is None
    assert doc["pixel_mm"] == pytest.approx([m.line_pitch_mm, m.channel_pitch_mm])
    assert doc["truth"]["kind"] == "gun_like"
    (finding,) = doc["truth"]["findings"]
    assert finding["category"] == "gun_like"
    left, top, right, bottom = finding["bbox_mm"]
    width_mm = hi.shape[1] * doc["pixel_mm"][0]
    height_mm = hi.shape[0] * doc["pixel_mm"][1]
    assert 0 <= left < right <= width_mm and 0 <= top < bottom <= height_mm
    # the steel shapes darken their box against the same rows just before it
    c0, c1 = int(left / doc["pixel_mm"][0]), int(np.ceil(right / doc["pixel_mm"][0]))
    r0, r1 = int(top / doc["pixel_mm"][1]), int(np.ceil(bottom / doc["pixel_mm"][1]))
    assert hi[r0:r1, c0:c1].min() < 0.9 * np.median(hi[r0:r1, max(0, c0 - 30) : c0])
    assert doc["actual_commodity"] == doc["gd"]["commodity"]


@pytest.mark.parametrize(
    ("kind", "expect"), [("clean", "clean"), ("lie", "lie"), ("empty", "empty")]
)
def test_plain_kinds(tmp_path: Path, kind: str, expect: str) -> None:
    (folder,) = export_case(small("l6-csi-20"), 8, 2, tmp_path, kind)
    _, _, doc = read(folder)
    assert doc["truth"] == {"kind": expect, "findings": []}
    gd = doc["gd"]
    assert gd["container_type"] in ("20ft", "40ft", "45ft")
    if kind == "clean":
        assert gd["commodity"] == doc["actual_commodity"]
        assert gd["gross_weight_kg"] == doc["actual_gross_kg"]
    if kind == "lie":
        assert (gd["commodity"], gd["gross_weight_kg"]) != (
            doc["actual_commodity"],
            doc["actual_gross_kg"],
        )
    if kind == "empty":
        assert gd["declared_empty"] and doc["actual_commodity"] == "empty"
    else:
        assert len(gd["hs_code"]) == 4 and gd["hs_code"].isdigit()


def test_att_pair_on_two_models_at_two_speeds(tmp_path: Path) -> None:
    a, b = small("l4-cdwo4-15"), small("l6-cdwo4-30")
    folders = export_case(a, 5, 21, tmp_path, "att", pair_model=b, att_tamper="removal")
    assert [f.name for f in folders] == ["0021_att", "0021_att_exit"]
    (ha, _, da), (hb, _, db) = read(folders[0]), read(folders[1])
    assert da["pair_of"] is None and db["pair_of"] == "0021_att"
    assert (da["scanner"], db["scanner"]) == (a.name, b.name)
    assert da["gd"] == db["gd"] and da["truth"] == {"kind": "att", "findings": []}
    assert db["pixel_mm"][0] != pytest.approx(b.line_pitch_mm)  # another speed
    assert 0.85 * b.line_pitch_mm <= db["pixel_mm"][0] <= 1.15 * b.line_pitch_mm
    assert ha.shape[0] == a.channels and hb.shape[0] == b.channels
    (change,) = db["truth"]["findings"]
    assert change["category"] == "att_removal"
    assert db["actual_gross_kg"] < da["actual_gross_kg"]


def test_same_arguments_same_files(tmp_path: Path) -> None:
    m = small("l6-cdwo4-30")
    (f1,) = export_case(m, 1, 4, tmp_path / "a")
    (f2,) = export_case(m, 1, 4, tmp_path / "b")
    assert f1.name == f2.name
    for name in ("high.tiff", "low.tiff", "case.json"):
        assert (f1 / name).read_bytes() == (f2 / name).read_bytes()


def test_every_concealment_has_a_category_and_kinds_are_checked(tmp_path: Path) -> None:
    from firmware_sim.physics import CONCEALMENTS

    assert set(CATEGORIES) == set(CONCEALMENTS)
    with pytest.raises(ConfigError) as err:
        export_case("l6-cdwo4-30", 0, 0, tmp_path, "smuggled giraffe")
    assert "gun_like" in err.value.fix


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


def test_cli_unknown_model_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["sim", "wedges", "--model", "vendor-x", "--out", str(tmp_path)],
        ["sim", "case", "--model", "vendor-x", "--out", str(tmp_path)],
        ["sim", "case", "--model", "l6-csi-20", "--pair-model", "y", "--out", str(tmp_path)],
    ):
        assert _cli(argv) == 2
        err = capsys.readouterr().err
        assert "error: unknown scanner model" in err
        assert "fix: Use one of: " + ", ".join(SCANNER_MODELS) in err
    assert not any(tmp_path.iterdir())


def test_cli_unwritable_out_and_models_listing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _cli(["sim", "wedges", "--model", "l4-cdwo4-15", "--out", str(blocker / "w")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write to") and "fix: " in err
    assert _cli(["sim", "models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SCANNER_MODELS)
    assert _cli(["sim", "models", "--json"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in docs] == list(SCANNER_MODELS)


def test_live_simulator_runs_a_model(tmp_path: Path) -> None:
    from firmware_sim.cli import build_configs
    from firmware_sim.physics import PhysicsSource

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    base = ["sim", "--serial-dir", str(tmp_path), "--channels", "64"]
    args = parser.parse_args([*base, "--source", "physics", "--model", "l6-csi-20"])
    src = build_configs(args)[0].source
    assert isinstance(src, PhysicsSource) and src.model is SCANNER_MODELS["l6-csi-20"]
    assert src.scan(1, 2, 64, 16).record["pixel_mm"][1] == pytest.approx(
        SCANNER_MODELS["l6-csi-20"].channel_pitch_mm * SCANNER_MODELS["l6-csi-20"].channels / 64
    )
    for argv in (
        [*base, "--source", "physics", "--model", "vendor-x"],
        [*base, "--model", "l6-csi-20"],  # the synthetic source has no models
    ):
        with pytest.raises(ConfigError):
            build_configs(parser.parse_args(argv))
