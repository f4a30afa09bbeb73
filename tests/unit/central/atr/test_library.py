"""Site-learned profiles and the image library: confirmations, learning, similar scans."""
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from central.atr import Level, analyze
from central.atr._commodity import DENSITY_SIGMA_FLOOR, LoadFeatures, check_commodity
from central.atr._declaration import DeclaredGoods, parse_gd, resolve
from central.atr._hs import HS_TABLE
from central.atr._library import (
    DESCRIPTOR_LEN,
    MIN_CONFIRMED,
    ZEFF_SIGMA_FLOOR,
    Confirmation,
    ImageLibrary,
    LibraryError,
    blended,
    confirm,
    descriptor_of,
    learn,
    learn_and_store,
    library_of,
    load_library,
    parse_level,
    similarity,
)
from central.atr._store import LibraryStore, VerdictStore


def _load(density: float, sigma: float = 0.03, **kw: Any) -> LoadFeatures:
    base: dict[str, Any] = {
        "fill_fraction": 0.5,
        "bulk_density_g_cm3": density,
        "bulk_density_sigma_g_cm3": sigma,
        "zeff_median": 14.0,
        "zeff_iqr": 2.0,
        "organic": 0.1,
        "inorganic": 0.9,
        "metal": 0.0,
        "impenetrable": 0.0,
        "mass_kg": 20_000.0,
        "mass_sigma_kg": 2_000.0,
    }
    return LoadFeatures(**{**base, **kw})


def _tiles() -> DeclaredGoods:
    return resolve(parse_gd({"hs_code": "6907"}))


def _conf(
    i: int,
    load: LoadFeatures | None,
    verdict: Level = Level.GREEN,
    heading: str = "6907",
    descriptor: tuple[float, ...] = (),
    ref: int | None = None,
) -> Confirmation:
    return Confirmation(
        i, i if ref is None else ref, verdict, "green", "ana", i, "", None, heading, load,
        descriptor,
    )  # fmt: skip


def _desc(density: float, bump: int = -1) -> tuple[float, ...]:
    """A made-up descriptor: tiles at ``density``, a flat load with a bump at bin ``bump``."""
    travel = np.ones(16)
    if bump >= 0:
        travel[bump] = 3.0
    return descriptor_of(_load(density), (12.0, 14.0, 16.0), travel, np.ones(8))


# --- the pure core ------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["GREEN", " red ", "yellow"])
def test_verdict_words(word: str) -> None:
    assert parse_level(word) is Level(word.strip().lower())


@pytest.mark.parametrize("word", ["amber", "ok", "", "hit"])
def test_bad_verdict_word_is_an_error_with_a_fix(word: str) -> None:
    with pytest.raises(LibraryError, match="not a verdict") as info:
        parse_level(word)
    assert "green, yellow or red" in info.value.fix


def test_below_the_minimum_the_prior_is_used() -> None:
    confs = [_conf(i, _load(0.15)) for i in range(MIN_CONFIRMED - 1)]
    prof = learn(confs)["6907"]
    assert prof.n == MIN_CONFIRMED - 1 and not prof.used
    lib = ImageLibrary(1, {"6907": prof})
    assert lib.expectation("6907") is None
    # the prior alone: tiles at 0.15 g/cm³ read below the range and are red
    c = check_commodity(_tiles(), _load(0.15), lib.expectation("6907"))
    assert c == check_commodity(_tiles(), _load(0.15))
    assert c.level is Level.RED


def test_a_learned_profile_clears_a_false_alarm_of_the_prior() -> None:
    # this site's scanner and loading read tiles at 0.15 g/cm³: the prior calls them red
    rng = np.random.default_rng(1)
    confs = [_conf(i, _load(float(0.15 + rng.normal(0, 0.01)))) for i in range(MIN_CONFIRMED)]
    lib = ImageLibrary(3, {"6907": dataclasses.replace(learn(confs)["6907"], version=3)})
    exp = lib.expectation("6907")
    assert exp is not None and "site-learned v3 from 20" in exp.source
    assert check_commodity(_tiles(), _load(0.15)).level is Level.RED
    c = check_commodity(_tiles(), _load(0.15), exp)
    assert c.level is Level.GREEN and "site-learned" in c.reason
    # ... and still catches what tiles cannot be: an organic load at the same density
    wrong = _load(0.15, organic=0.95, inorganic=0.05, zeff_median=7.0)
    assert check_commodity(_tiles(), wrong, exp).level is not Level.GREEN


def test_a_learned_profile_narrows_what_the_prior_let_through() -> None:
    # the prior's range is wide (0.28–2.2 g/cm³ in image terms); 60 confirmed loads at
    # 0.4 make 1.6 g/cm³ of "tiles" doubtful, which the prior found consistent
    confs = [_conf(i, _load(0.4, sigma=0.04)) for i in range(60)]
    exp = ImageLibrary(1, learn(confs)).expectation("6907")
    assert exp is not None and exp.density_range[1] < 1.0
    heavy = _load(1.6, sigma=0.1)
    assert check_commodity(_tiles(), heavy).level is Level.GREEN
    assert check_commodity(_tiles(), heavy, exp).level is Level.RED


def test_ranges_are_never_narrower_than_the_noise() -> None:
    confs = [_conf(i, _load(0.5, sigma=0.01)) for i in range(30)]
    prof = learn(confs)["6907"]
    assert prof.density_sigma == DENSITY_SIGMA_FLOOR
    assert prof.zeff_sigma == ZEFF_SIGMA_FLOOR
    noisy = [_conf(i, _load(0.5, sigma=0.12)) for i in range(30)]
    assert learn(noisy)["6907"].density_sigma == pytest.approx(0.12)


def test_blend_weighs_learned_by_count_and_keeps_the_priors_classes() -> None:
    prior = HS_TABLE["6907"]
    few = learn([_conf(i, _load(0.4)) for i in range(20)])["6907"]
    many = learn([_conf(i, _load(0.4)) for i in range(180)])["6907"]
    a, b = blended(few, prior), blended(many, prior)
    assert a is not None and b is not None
    _, hi = many.density_range()
    # at 20 the learned bound weighs half, at 180 nine tenths
    assert a.density_range[1] == pytest.approx(0.5 * hi + 0.5 * prior.density_range[1], abs=1e-3)
    assert b.density_range[1] == pytest.approx(0.9 * hi + 0.1 * prior.density_range[1], abs=1e-3)
    mixed = learn([_conf(i, _load(0.4, organic=0.5, inorganic=0.5)) for i in range(20)])["6907"]
    m = blended(mixed, prior)
    assert m is not None and set(prior.classes) < set(m.classes)


def test_only_standing_green_confirmations_teach() -> None:
    confs = [_conf(i, _load(0.4)) for i in range(1, 21)]
    # scan 5 was confirmed green, then corrected to red: it no longer counts
    confs.append(dataclasses.replace(_conf(21, _load(0.4), Level.RED), ref=5))
    confs += [_conf(30 + i, _load(0.4), Level.YELLOW) for i in range(5)]
    confs.append(_conf(40, None))  # an old verdict without features
    confs.append(_conf(41, _load(0.4), heading=""))  # no heading
    prof = learn(confs)["6907"]
    assert prof.n == MIN_CONFIRMED - 1 and not prof.used


def test_similar_scans_ranked_by_likeness() -> None:
    me = _desc(0.5, bump=3)
    lib = library_of(
        [
            _row(1, "6907", _desc(0.5, bump=3)),  # the same
            _row(2, "6907", _desc(0.55, bump=3)),  # a little denser
            _row(3, "6907", _desc(0.5, bump=12)),  # the bump elsewhere
            _row(4, "6907", _desc(1.5)),  # much denser, flat
            _row(5, "4802", _desc(0.5, bump=3)),  # another heading
            _row(6, "6907", _desc(0.5, bump=3), verdict="red"),  # not green
        ],
        0,
        [],
    )
    got = lib.similar("6907", me, k=3)
    assert [s.ref for s in got] == [1, 2, 3]
    assert got[0].similarity == pytest.approx(1.0)
    assert 1.0 > got[1].similarity > got[2].similarity > 0.0
    assert [s.ref for s in lib.similar("6907", me, k=10)] == [1, 2, 3, 4]
    assert lib.similar("", me) == []
    assert [s.ref for s in lib.similar("6907", me, verdicts=frozenset(Level))][:2] == [6, 1]


def test_descriptor_compares_lengths_and_scanners() -> None:
    d = _desc(0.5)
    assert len(d) == DESCRIPTOR_LEN
    # the same load along 1600 lines or 300 lines, at twice the areal density: alike
    long = descriptor_of(_load(0.5), (12, 14, 16), np.linspace(1, 2, 1600), np.ones(200))
    short = descriptor_of(_load(0.5), (12, 14, 16), 2 * np.linspace(1, 2, 300), np.ones(40))
    assert similarity(long, short) > 0.99
    assert similarity(long, d) < similarity(long, short)
    assert similarity(d, d[:-1]) == 0.0  # another layout


def _row(ref: int, heading: str, desc: tuple[float, ...], verdict: str = "green") -> dict[str, Any]:
    return {
        "id": ref,
        "ref": ref,
        "verdict": verdict,
        "atr_verdict": "green",
        "by": "ana",
        "created_ns": ref,
        "note": "",
        "corrects": None,
        "heading": heading,
        "load": dataclasses.asdict(_load(0.5)),
        "descriptor": list(desc),
    }


# --- the ATR with a library ---------------------------------------------------------------------


def _scan(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a_hi = np.full((600, 256), 0.05, dtype=np.float32)
    a_hi[60:363, 20:230] = 1.2  # a load in a 20 ft container (303 lines of 20 mm)...
    a_hi[60:62, 20:230] = 4.0  # ...between its front wall and its doors, seen end-on
    a_hi[361:363, 20:230] = 4.0
    a_hi += rng.normal(0.0, 0.01, a_hi.shape).astype(np.float32)
    a_lo = 1.15 * a_hi + rng.normal(0.0, 0.012, a_hi.shape).astype(np.float32)
    return a_hi, a_lo


def test_verdict_carries_its_snapshot_and_lists_similar_scans() -> None:
    a_hi, a_lo = _scan()
    v = analyze(a_hi, a_lo, 20.0, 10.0, {"hs_code": "6907"})
    d = v.to_dict()
    assert d["similar"] == []  # no library
    lib_doc = d["library"]
    assert lib_doc["heading"] == "6907" and lib_doc["profile_version"] == 0
    assert len(lib_doc["descriptor"]) == DESCRIPTOR_LEN
    LoadFeatures(**lib_doc["load"])  # a valid snapshot
    row = {**_row(7, "6907", tuple(lib_doc["descriptor"])), "load": lib_doc["load"]}
    lib = library_of([row, _row(8, "6907", _desc(2.0, bump=1))], 0, [])
    again = analyze(*_scan(1), 20.0, 10.0, {"hs_code": "6907"}, library=lib).to_dict()
    assert [s["ref"] for s in again["similar"]] == [7, 8]
    assert again["similar"][0]["similarity"] > 0.9 and again["similar"][0]["verdict"] == "green"
    assert again["gd_checks"]["commodity_profile"] == "HS prior"


# --- the CIR and the commands -------------------------------------------------------------------


def _cir(tmp_path: Path, verdicts: dict[int, dict[str, Any]], scans: int = 30) -> Path:
    from central._cir import Cir

    Cir(tmp_path).close()  # a CIR's schema, then its scans
    path = tmp_path / "cir.sqlite"
    conn = sqlite3.connect(path)
    conn.executemany(
        "INSERT INTO scans (ref, scanner) VALUES (?, 'lane-1')", [(r,) for r in range(1, scans + 1)]
    )
    conn.commit()
    conn.close()
    store = VerdictStore(path)
    for ref, doc in verdicts.items():
        store.put({"ref": ref, **doc})
    store.close()
    return path


def _verdict(density: float, verdict: str = "red") -> dict[str, Any]:
    return {
        "verdict": verdict,
        "findings": [],
        "library": {
            "heading": "6907",
            "profile_version": 0,
            "load": dataclasses.asdict(_load(density)),
            "descriptor": list(_desc(density)),
        },
    }


def test_confirm_corrects_and_keeps_history(tmp_path: Path) -> None:
    path = _cir(tmp_path, {1: _verdict(0.15)})
    store = LibraryStore(path)
    first = confirm(store, 1, "green", by="ana", note="examined: tiles", now_ns=10)
    assert (first.verdict, first.by, first.corrects, first.heading) == (
        Level.GREEN, "ana", None, "6907",
    )  # fmt: skip
    assert first.load == _load(0.15) and first.atr_verdict == "red"
    second = confirm(store, 1, "red", note="second look: pallets of something else")
    assert second.corrects == first.id and second.by  # the OS user
    assert [r["verdict"] for r in store.confirmations(1)] == ["green", "red"]
    with pytest.raises(sqlite3.IntegrityError, match="history"):
        store.db.execute("UPDATE confirmations SET verdict = 'green'")
    with pytest.raises(sqlite3.IntegrityError, match="history"):
        store.db.execute("DELETE FROM confirmations")
    store.close()
    lib = load_library(path)
    assert lib.confirmed[1].verdict is Level.RED


def test_confirm_errors(tmp_path: Path) -> None:
    none = {"verdict": "none", "findings": [], "error": "scan is partial"}
    path = _cir(tmp_path, {1: _verdict(0.15), 2: none}, scans=3)
    store = LibraryStore(path)
    with pytest.raises(LibraryError, match="not in the CIR") as info:
        confirm(store, 99, "green")
    assert "nii cir scans" in info.value.fix
    with pytest.raises(LibraryError, match="no ATR verdict"):
        confirm(store, 3, "green")
    with pytest.raises(LibraryError, match=r"gave no verdict.*partial"):
        confirm(store, 2, "green")
    with pytest.raises(LibraryError, match="not a verdict"):
        confirm(store, 1, "maybe")
    assert store.confirmations() == []
    store.close()


def test_cli_confirm_learn_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nii.__main__ import build_parser, main

    n = MIN_CONFIRMED + 2
    path = _cir(tmp_path, {r: _verdict(0.15 + 0.002 * r) for r in range(1, n + 1)})

    def run(*argv: str) -> int:
        args = build_parser().parse_args(["atr", *argv])
        return int(args.func(args))

    assert run("profiles", "learn", "--cir", str(tmp_path)) == 0
    assert "no profiles learned" in capsys.readouterr().out
    for r in range(1, MIN_CONFIRMED):
        assert run("confirm", str(r), "green", "--by", "ana", "--cir", str(path)) == 0
    assert "scan ref 1: green (confirmed; ATR said red) by ana, HS 6907" in capsys.readouterr().out
    assert run("profiles", "learn", "--cir", str(path)) == 0
    out = capsys.readouterr().out
    assert "profiles version 1" in out and "6907: new, not used yet (19/20)" in out
    assert run("confirm", str(MIN_CONFIRMED), "GREEN", "--cir", str(path)) == 0
    assert run("confirm", "21", "red", "--note", "cigarettes behind", "--cir", str(path)) == 0
    assert run("confirm", "21", "yellow", "--cir", str(path)) == 0
    assert "correction of confirmation" in capsys.readouterr().out
    assert run("profiles", "learn", "--cir", str(path)) == 0
    out = capsys.readouterr().out
    assert "profiles version 2" in out and "n 19 → 20" in out and "(now used)" in out
    assert run("profiles", "show", "--cir", str(path)) == 0
    out = capsys.readouterr().out
    assert "6907 ceramic tiles: confirmed {'green': 20, 'yellow': 1}" in out
    assert "learned: n=20 (used)" in out and "in use:  inorganic; image density" in out
    assert run("profiles", "show", "6907.21", "--json", "--cir", str(path)) == 0
    doc = json.loads(capsys.readouterr().out)
    use = doc["profiles"][0]["in_use"]
    assert doc["version"] == 2 and use["image_density_range_g_cm3"][0] < 0.28
    # learning again without a new confirmation changes nothing but the version
    assert run("profiles", "learn", "--cir", str(path)) == 0
    assert "profiles version 3\n  no change" in capsys.readouterr().out
    # errors come out as project errors with a fix, status 2
    assert main(["atr", "confirm", "9999", "green", "--cir", str(path)]) != 0
    assert main(["atr", "confirm", "1", "amber", "--cir", str(path)]) != 0
    assert main(["atr", "profiles", "show", "--cir", str(tmp_path / "nowhere")]) != 0
    err = capsys.readouterr().err
    assert "not in the CIR" in err and "not a verdict" in err and "no CIR at" in err


def test_learn_and_store_versions(tmp_path: Path) -> None:
    path = _cir(tmp_path, {r: _verdict(0.3, "green") for r in range(1, 4)})
    store = LibraryStore(path)
    for r in range(1, 4):
        confirm(store, r, "green")
    v, lines = learn_and_store(store)
    assert v == 1 and lines == [
        "6907: new, not used yet (3/20): density 0.20–0.40 g/cm³, Z_eff 14.0 (n=3)"
    ]
    store.close()
    lib = load_library(path)
    assert lib.version == 1 and lib.profiles["6907"].version == 1 and not lib.profiles["6907"].used


def test_live_verdict_snapshot_feeds_a_confirmation(tmp_path: Path) -> None:
    """A live verdict (seed 50, textiles) is stored, confirmed, and found as similar."""
    from central.atr._live import verdict_doc
    from firmware_sim.physics import PhysicsSource

    ch, lines = 768, 1500
    s = PhysicsSource().simulate(
        50, 1, ch, lines, commodity="textiles", lie=False, concealment=None
    )
    arrays = {
        "image_high": s.img_hi.T.copy(),
        "image_low": s.img_lo.T.copy(),
        "dark_high": s.dark_hi.T.copy(),
        "dark_low": s.dark_lo.T.copy(),
        "air_high": s.air_hi.T.copy(),
        "air_low": s.air_lo.T.copy(),
    }
    gd = {**s.gd, "declared_commodity": "textiles", "hs_code": "6109", "packages": 40}
    record = {"pixel_mm": [s.truth["line_pitch_mm"], s.truth["channel_pitch_mm"]], "gd": gd}
    row = {
        "ref": 1,
        "scanner": "lane-1",
        "scan_id": 3,
        "container": "MSKU1234565",
        "status": "complete",
        "finished_ns": 1,
        "start_record": json.dumps(record),
    }
    doc = verdict_doc(row, arrays)
    assert doc["similar"] == [] and doc["library"]["heading"] == "61"
    path = _cir(tmp_path, {1: doc}, scans=2)
    store = LibraryStore(path)
    c = confirm(store, 1, "green", by="ana")
    store.close()
    assert c.heading == doc["library"]["heading"] and c.load is not None
    assert len(c.descriptor) == DESCRIPTOR_LEN
    again = verdict_doc({**row, "ref": 2, "scan_id": 4}, arrays, load_library(path))
    assert again["similar"] == [{"ref": 1, "similarity": 1.0, "verdict": "green"}]


def test_cli_analyze_lists_similar_only_with_a_cir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    from nii.__main__ import main

    a_hi, a_lo = _scan(2)
    for name, a in (("high", a_hi), ("low", a_lo)):
        t = np.clip(np.exp(-a.T.astype(np.float64)) * 65535.0, 0, 65535).astype(np.uint16)
        assert cv2.imwrite(str(tmp_path / f"{name}.tiff"), t)
    (tmp_path / "gd.json").write_text(json.dumps({"hs_code": "6907"}))
    argv = ["atr", "analyze", "--high", str(tmp_path / "high.tiff"), "--low"]
    argv += [
        str(tmp_path / "low.tiff"),
        "--pixel-mm",
        "20",
        "10",
        "--gd",
        str(tmp_path / "gd.json"),
    ]
    assert main([*argv, "--compact"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["similar"] == []
    path = _cir(tmp_path, {1: {"verdict": "green", "findings": [], "library": first["library"]}})
    store = LibraryStore(path)
    confirm(store, 1, "green")
    store.close()
    assert main([*argv, "--compact", "--cir", str(path)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["similar"] == [{"ref": 1, "similarity": 1.0, "verdict": "green"}]
