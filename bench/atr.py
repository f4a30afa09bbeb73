"""``nii bench atr``: labelled ATR benchmark on simulator seeds kept apart from tuning.

The data set (default 630 scans at 1536 channels × 3000 lines, dual energy):
random scans with truthful declarations (mostly clean, some with a random
concealment), every concealment kind forced, false declarations (commodity
swapped or gross weight understated), empty containers declared empty,
loaded containers declared empty, and ATT pairs (Scan B on another detector
at another belt speed and start, half of them tampered: an object added,
cargo removed or substituted).  Each scan is simulated, calibrated and
analysed once in a worker pinned to one core (the time of ``analyze`` is the
ATR time); the binned images, truth and verdict are cached under
``var/atr-cache/`` so a re-run only scores.  The last line is one JSON object.

Seeds: the benchmark uses seed 7000 (scan ids 0…); the detectors were tuned
on seeds 100 and 101 (``bench.atr_tune``), the unit tests use seeds 42–60
(see docs/atr.md).
"""
# ruff: noqa: RUF002

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from central.atr import analyze
from central.atr._analyze import LOCATED_CATEGORIES
from central.atr._att import compare
from central.atr._physical import reference
from core.calibration import DetectorCalibration
from firmware_sim.physics import CONCEALMENTS, PhysicsSource, build_scenario
from firmware_sim.physics import shift as _shift
from firmware_sim.physics import tamper as _tamper

BENCH_SEED = 7000
TUNE_SEED = 100
METAL_COMMODITIES = ("machinery", "scrap steel", "copper wire")
TARGETS = {
    "detection": 0.95,
    "false_alarm": 0.03,
    "localised": 0.90,
    "att_detection": 0.95,
    "att_false_alarm": 0.02,
    "p50_ms": 1000.0,
    "p99_ms": 2000.0,
}


def plan(
    n_random: int = 200,
    n_kind: int = 35,
    n_lie: int = 70,
    n_empty: int = 35,
    n_false_empty: int = 35,
    n_att: int = 40,
) -> list[dict[str, Any]]:
    """The list of cases: each a dict of scenario overrides and a label."""
    cases: list[dict[str, Any]] = []
    for _ in range(n_random):
        cases.append({"label": "random", "kw": {"lie": False}})
    for kind in CONCEALMENTS:
        for j in range(n_kind):
            kw: dict[str, Any] = {"concealment": kind, "lie": False}
            if kind == "organic in metal":
                kw["commodity"] = METAL_COMMODITIES[j % 3]
            if kind == "vehicle":
                kw["container"] = "40GP" if j % 2 else "40HC"
            cases.append({"label": kind, "kw": kw})
    for _ in range(n_lie):
        cases.append({"label": "false declaration", "kw": {"lie": True}})
    for _ in range(n_empty):
        cases.append({"label": "empty", "kw": {"empty": True, "lie": False}})
    for _ in range(n_false_empty):
        cases.append({"label": "declared empty", "kw": {"empty": False, "lie": False}})
    for j in range(n_att):
        cases.append(
            {
                "label": "att",
                "tamper": ["addition", "removal", "substitution"][(j // 2) % 3]
                if j % 2
                else "none",
                "kw": {"lie": False},
            }
        )
    for i, c in enumerate(cases):
        c["id"] = i
    return cases


def _pin_next(counter: Any) -> None:
    """Pin each worker process to its own core (the ATR is timed on one core)."""
    with counter.get_lock():
        k = counter.value
        counter.value += 1
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[k % len(cpus)]})


def _calibrated(scan: Any) -> tuple[np.ndarray, np.ndarray]:
    cal = DetectorCalibration.from_lines(scan.dark_hi, scan.dark_lo, scan.air_hi, scan.air_lo)
    return cal.attenuation(scan.img_hi, scan.img_lo)


def run_case(args: tuple[dict[str, Any], int, int, int, str]) -> dict[str, Any]:
    """Simulate, calibrate and analyse one case; cache the outcome."""
    case, seed, channels, lines, cache = args
    path = Path(cache) / f"{case['id']:05d}.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    src = PhysicsSource()
    out: dict[str, Any] = {"id": case["id"], "label": case["label"]}
    if case["label"] == "att":
        rng = np.random.default_rng([seed, case["id"]])
        sc = build_scenario(rng, case["id"], **case["kw"])
        a = src.simulate_objects(sc.objects, sc.length_mm, channels, lines, rng)
        how = case["tamper"]
        objs_b, changed = (
            (sc.objects, []) if how == "none" else _tamper(list(sc.objects), sc, how, rng)
        )
        lines_b = int(lines * rng.uniform(0.85, 1.15))
        pre = float(rng.uniform(0, 800))
        src_b = PhysicsSource(detector_seed=2)

        b = src_b.simulate_objects(_shift(objs_b, pre), sc.length_mm + pre, channels, lines_b, rng)
        ah, al = _calibrated(a)
        bh, bl = _calibrated(b)
        t0 = time.perf_counter()
        res = compare(
            (ah, al, a.truth["line_pitch_mm"], a.truth["channel_pitch_mm"]),
            (bh, bl, b.truth["line_pitch_mm"], b.truth["channel_pitch_mm"]),
        )
        out.update(
            {
                "tamper": how,
                "hold": res.hold,
                "att": res.to_dict(),
                "changed_y": changed,
                "ms": (time.perf_counter() - t0) * 1000.0,
            }
        )
    else:
        scan = src.simulate(seed, case["id"], channels, lines, **case["kw"])
        gd = dict(scan.gd)
        if case["label"] == "declared empty":
            gd["declared_commodity"] = "empty"
            gd["hs_code"] = ""
            gd["packages"] = 0
        ah, al = _calibrated(scan)
        # the simulator's default model is the reference scanner: its calibration is the
        # reference calibration (a site passes its scanner's own, --scanner)
        v = analyze(
            ah, al, scan.truth["line_pitch_mm"], scan.truth["channel_pitch_mm"], gd,
            scanner=reference(),
        )  # fmt: skip
        t = dict(scan.truth)
        for k in ("dead_channels", "hot_channels", "source"):
            t.pop(k, None)
        out.update({"truth": t, "gd": gd, "verdict": v.to_dict(), "ms": v.elapsed_ms})
    path.write_text(json.dumps(out))
    return out


def _iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def _truth_boxes(t: dict[str, Any]) -> list[list[int]]:
    return [
        [
            o["pixels"]["line0"],
            o["pixels"]["channel0"],
            o["pixels"]["line1"],
            o["pixels"]["channel1"],
        ]
        for o in t.get("objects", [])
        if o.get("kind") == "concealment"
    ]


#: Findings with a place in the container: the ATR's own list.
LOCAL = LOCATED_CATEGORIES


def score(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-category detection and false-alarm rates, localisation, timing and ROC points."""
    cats: dict[str, list[int]] = {}
    fa: dict[str, list[int]] = {}
    pos_scores: list[float] = []
    neg_scores: list[float] = []
    red_local = red_local_ok = 0
    loc_scans = loc_ok = 0
    ms = [r["ms"] for r in results if r["label"] != "att"]
    att_pos: list[int] = []
    att_neg: list[int] = []
    for r in results:
        if r["label"] == "att":
            (att_neg if r["tamper"] == "none" else att_pos).append(int(r["hold"]))
            continue
        t, v = r["truth"], r["verdict"]
        red = v["verdict"] == "red"
        top = max([f["score"] for f in v["findings"]], default=0.0)
        if r["label"] == "declared empty":
            cat = "declared empty"
        elif t["concealment"]:
            cat = t["concealment"]
        elif not t["gd_truthful"]:
            cat = (
                "false declaration: weight"
                if "weight" in ";".join(t["discrepancies"])
                else "false declaration: commodity"
            )
        else:
            cat = "clean empty" if t["commodity"] is None else "clean"
        if cat.startswith("clean"):
            fa.setdefault(cat, []).append(int(red))
            neg_scores.append(top)
            continue
        cats.setdefault(cat, []).append(int(red))
        pos_scores.append(top)
        if t["concealment"]:
            boxes = _truth_boxes(t)
            reds = [f for f in v["findings"] if f["level"] == "red" and f["category"] in LOCAL]
            for f in reds:
                red_local += 1
                red_local_ok += int(any(_iou(f["bbox_px"], b) >= 0.3 for b in boxes))
            if red:
                loc_scans += 1
                loc_ok += int(any(_iou(f["bbox_px"], b) >= 0.3 for f in reds for b in boxes))
    rate = {k: round(float(np.mean(v)), 4) for k, v in sorted(cats.items())}
    far = {k: round(float(np.mean(v)), 4) for k, v in sorted(fa.items())}
    allpos = [x for v in cats.values() for x in v]
    allneg = [x for v in fa.values() for x in v]
    roc = []
    for thr in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0):
        roc.append(
            {
                "threshold": thr,
                "detection": round(float(np.mean([s >= thr for s in pos_scores])), 4),
                "false_alarm": round(float(np.mean([s >= thr for s in neg_scores])), 4),
            }
        )
    p = np.asarray(ms or [0.0])
    res = {
        "bench": "atr",
        "scans": len(results) + sum(1 for r in results if r["label"] == "att"),
        "cases": len(results),
        "detection_by_category": rate,
        "false_alarm_by_category": far,
        "counts": {k: len(v) for k, v in sorted({**cats, **fa}.items())},
        "detection_rate": round(float(np.mean(allpos)), 4) if allpos else 0.0,
        "false_alarm_rate": round(float(np.mean(allneg)), 4) if allneg else 0.0,
        "red_findings_localised": round(red_local_ok / red_local, 4) if red_local else 0.0,
        "detected_scans_localised": round(loc_ok / loc_scans, 4) if loc_scans else 0.0,
        "att_detection_rate": round(float(np.mean(att_pos)), 4) if att_pos else 0.0,
        "att_false_alarm_rate": round(float(np.mean(att_neg)), 4) if att_neg else 0.0,
        "atr_ms_p50": round(float(np.percentile(p, 50)), 1),
        "atr_ms_p99": round(float(np.percentile(p, 99)), 1),
        "roc": roc,
        "targets": TARGETS,
    }
    return res


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build (or reuse) the data set, score it, print the result as the last JSON line."""
    cases = plan()
    if args.limit:
        cases = cases[:: max(1, len(cases) // args.limit)][: args.limit]
    cache = Path(args.cache) / f"seed{args.seed}-{args.channels}x{args.lines}"
    if args.rescore_only is False and args.fresh and cache.exists():
        for p in cache.glob("*.json"):
            p.unlink()
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(c, args.seed, args.channels, args.lines, str(cache)) for c in cases]
    t0 = time.perf_counter()
    done: list[dict[str, Any]] = []
    counter = multiprocessing.get_context().Value("i", 0)
    with ProcessPoolExecutor(
        max(1, args.workers), initializer=_pin_next, initargs=(counter,)
    ) as ex:
        for k, r in enumerate(ex.map(run_case, jobs, chunksize=1)):
            done.append(r)
            if (k + 1) % 50 == 0:
                print(f"{k + 1}/{len(jobs)} cases, {time.perf_counter() - t0:.0f} s", flush=True)
    res = score(done)
    res["seed"] = args.seed
    res["channels"] = args.channels
    res["lines"] = args.lines
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res), flush=True)
    return res


def _main(args: argparse.Namespace) -> int:
    if args.protocol == "cross-scanner":
        from bench.atr_cross import run as run_cross

        cross = run_cross(args)
        worst = cross["worst_model"]
        return (
            0
            if worst["detection_rate"] >= TARGETS["detection"]
            and worst["false_alarm_rate"] <= TARGETS["false_alarm"]
            else 1
        )
    res = run(args)
    ok = (
        res["detection_rate"] >= TARGETS["detection"]
        and res["false_alarm_rate"] <= TARGETS["false_alarm"]
    )
    return 0 if ok else 1


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``atr`` under ``nii bench``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "atr", help="labelled ATR benchmark: detection, false alarms, ATT, speed"
    )
    p.add_argument("--seed", type=int, default=BENCH_SEED, help="benchmark seed (7000)")
    p.add_argument("--channels", type=int, default=1536)
    p.add_argument("--lines", type=int, default=3000)
    p.add_argument("--workers", type=int, default=2, help="worker processes, one core each")
    p.add_argument("--limit", type=int, default=0, help="score only this many cases (0: all)")
    p.add_argument("--cache", default="var/atr-cache", help="cache folder (var/atr-cache)")
    p.add_argument("--fresh", action="store_true", help="drop the cache and simulate again")
    p.add_argument(
        "--protocol",
        choices=("single-scanner", "cross-scanner"),
        default="single-scanner",
        help="single-scanner: the reference model only (seed 7000); cross-scanner: every "
        "scanner model, leave one model out (bench/atr_cross.py)",
    )
    p.add_argument(
        "--per-model",
        type=int,
        default=100,
        help="cross-scanner: about this many evaluation cases per model (100)",
    )
    p.add_argument(
        "--keep-cases",
        action="store_true",
        help="cross-scanner: keep the exported images (about 20 MB a case) and analyse "
        "them again on every run instead of reusing cached verdicts",
    )
    p.add_argument(
        "--write-thresholds",
        action="store_true",
        help="cross-scanner: raise central/atr/_profiles.py's red thresholds on every "
        "model's clean tuning cases (seed 7200), after scoring",
    )
    p.set_defaults(func=_main, rescore_only=False)
    return p


def tune(results: list[dict[str, Any]], step: str, margin: float = 1.05) -> dict[str, Any]:
    """Learn the reference tables of ``central/atr/_profiles.py`` from tuning-seed results.

    ``step`` "profiles": mass scale and feature profiles per commodity, from
    truthful clean scans; ``step`` "thresholds": the red threshold of every
    category per declared commodity, ``margin`` (5 %) above the highest raw score
    any clean scan reached (so clean tuning scans stay below red).
    """
    from central.atr import _profiles as pr

    clean = [
        r
        for r in results
        if r["label"] != "att"
        and r["label"] != "declared empty"
        and not r["truth"]["concealment"]
        and r["truth"]["gd_truthful"]
    ]
    out: dict[str, Any] = {
        "PROFILES": dict(pr.PROFILES),
        "RED_AT": dict(pr.RED_AT),
    }
    if step == "profiles":
        by: dict[str, list[dict[str, Any]]] = {}
        for r in clean:
            if r["truth"]["commodity"]:
                by.setdefault(r["truth"]["commodity"], []).append(r)
        for c, rs in sorted(by.items()):
            feats = {
                "organic": [r["verdict"]["gd_checks"]["material_mix"]["organic"] for r in rs],
                "metal": [r["verdict"]["gd_checks"]["material_mix"]["metal"] for r in rs],
                "mean_a": [r["verdict"]["gd_checks"]["mean_attenuation"] for r in rs],
                "p90_a": [r["verdict"]["gd_checks"]["p90_attenuation"] for r in rs],
            }
            floor = {"organic": 0.04, "metal": 0.04, "mean_a": 0.15, "p90_a": 0.25}
            out["PROFILES"][c] = {
                k: (round(float(np.mean(v)), 4), round(max(floor[k], float(np.std(v))), 4))
                for k, v in feats.items()
            }
    else:
        red: dict[str, dict[str, float]] = {}
        for r in clean:
            declared = r["gd"].get("declared_commodity", "")
            for f in r["verdict"]["findings"]:
                cur = red.setdefault(f["category"], {})
                cur[declared] = max(cur.get(declared, 1.0), margin * f["score"])
        for cat, t in red.items():
            prev = out["RED_AT"].get(cat, {})
            out["RED_AT"][cat] = {
                k: round(max(v, 1.0) * prev.get(k, prev.get("*", 1.0)), 3) for k, v in t.items()
            }
            for k, v in prev.items():
                out["RED_AT"][cat].setdefault(k, v)
    return out


def write_profiles(tables: dict[str, Any], path: Path) -> None:
    """Rewrite the learned tables in ``central/atr/_profiles.py``."""
    from central.atr import _profiles as pr

    text = path.read_text()
    head = text.split("#: Raw detector score")[0].rstrip("\n") + "\n"
    body = [
        "#: Raw detector score at which a finding turns red, by category and declared commodity",
        '#: ("*": any other); scores are divided by it so that 1.0 is red everywhere.',
        f"RED_AT: dict[str, dict[str, float]] = {tables['RED_AT']!r}",
        f"PROFILES: dict[str, dict[str, tuple[float, float]]] = {tables['PROFILES']!r}",
        "",
    ]
    assert pr.RED_AT
    path.write_text(head + "\n".join(body))
