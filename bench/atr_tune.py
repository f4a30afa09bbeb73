"""Tuning harness for the ATR: simulate tuning-seed scans once, then re-analyse them quickly.

``nii bench atr`` simulates every scan again (minutes); tuning a detector needs
dozens of passes.  This keeps the binned attenuation images of the tuning
cases (float16, the resolution the detectors work at) with their truth and GD,
so a pass of :func:`evaluate` is only the analysis.  Scores come out in the
form of ``nii bench atr`` (:func:`bench.atr.score`) and feed
:func:`bench.atr.tune` for the thresholds.

Only tuning seeds (100, and 101 to check what was learned on 100) belong
here; the benchmark seed 7000 never does (docs/atr.md).

    python -m bench.atr_tune simulate --seed 100
    python -m bench.atr_tune evaluate --seed 100
    python -m bench.atr_tune learn --seed 100 --also 101 --reset "false wall"
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.atr import BENCH_SEED, _calibrated, _pin_next, plan, score

CACHE = Path("var/atr-tune")


def _folder(seed: int, channels: int, lines: int) -> Path:
    if seed == BENCH_SEED:
        raise ValueError("the benchmark seed is not for tuning (docs/atr.md)")
    return CACHE / f"seed{seed}-{channels}x{lines}"


def simulate_case(args: tuple[dict[str, Any], int, int, int, str]) -> int:
    """Simulate, calibrate and bin one non-ATT case; write ``<id>.npz`` and ``<id>.json``."""
    from central.atr._image import bin_image, binning
    from firmware_sim.physics import PhysicsSource

    case, seed, channels, lines, folder = args
    out = Path(folder) / f"{case['id']:05d}"
    if out.with_suffix(".json").exists():
        return case["id"]
    scan = PhysicsSource().simulate(seed, case["id"], channels, lines, **case["kw"])
    gd = dict(scan.gd)
    if case["label"] == "declared empty":
        gd.update({"declared_commodity": "empty", "hs_code": "", "packages": 0})
    ah, al = _calibrated(scan)
    line_mm, ch_mm = scan.truth["line_pitch_mm"], scan.truth["channel_pitch_mm"]
    fl, fc = binning(line_mm, ch_mm)
    np.savez(
        out.with_suffix(".npz"),
        hi=bin_image(ah, fl, fc).astype(np.float16),
        lo=bin_image(al, fl, fc).astype(np.float16),
    )
    t = {k: v for k, v in scan.truth.items() if k not in ("dead_channels", "hot_channels")}
    doc = {"id": case["id"], "label": case["label"], "truth": t, "gd": gd, "fl": fl, "fc": fc}
    out.with_suffix(".json").write_text(json.dumps(doc))
    return case["id"]


def analyse_case(path: str) -> dict[str, Any]:
    """The bench-style result of one cached case with the ATR as it is now."""
    from central.atr import analyze_binned
    from central.atr._physical import reference, to_physical

    doc = json.loads(Path(path).read_text())
    with np.load(Path(path).with_suffix(".npz")) as z:
        hi = z["hi"].astype(np.float32)
        lo = z["lo"].astype(np.float32)
    t = doc["truth"]
    v = analyze_binned(
        hi, lo, doc["fl"], doc["fc"], t["line_pitch_mm"], t["channel_pitch_mm"], doc["gd"],
        phys=to_physical(hi, lo, reference()),  # the simulator's default is the reference
    )  # fmt: skip
    return {
        "id": doc["id"],
        "label": doc["label"],
        "truth": t,
        "gd": doc["gd"],
        "verdict": v.to_dict(),
        "ms": v.elapsed_ms,
    }


def simulate(seed: int, channels: int, lines: int, workers: int, random_only: int = 0) -> Path:
    """Simulate the non-ATT cases of the benchmark plan on tuning ``seed``.

    ``random_only``: only that many random cases (mostly clean: more clean scans for
    the thresholds).
    """
    folder = _folder(seed, channels, lines)
    folder.mkdir(parents=True, exist_ok=True)
    cases = [c for c in plan() if c["label"] != "att"]
    if random_only:
        cases = [c for c in plan(n_random=random_only) if c["label"] == "random"]
    jobs = [(c, seed, channels, lines, str(folder)) for c in cases]
    counter = multiprocessing.get_context().Value("i", 0)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, initializer=_pin_next, initargs=(counter,)) as ex:
        for k, _ in enumerate(ex.map(simulate_case, jobs, chunksize=2)):
            if (k + 1) % 100 == 0:
                print(
                    f"{k + 1}/{len(jobs)} simulated, {time.perf_counter() - t0:.0f} s", flush=True
                )
    return folder


def evaluate(seed: int, channels: int, lines: int, workers: int) -> list[dict[str, Any]]:
    """Analyse every cached case of ``seed``; the results as ``nii bench atr`` keeps them."""
    folder = _folder(seed, channels, lines)
    paths = sorted(str(p) for p in folder.glob("*.json"))
    # spawned workers import the ATR afresh: they see tables rewritten by this process
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        return list(ex.map(analyse_case, paths, chunksize=8))


def learn(
    seeds: list[int],
    channels: int,
    lines: int,
    workers: int,
    reset: list[str],
    margin: float = 1.05,
) -> dict[str, Any]:
    """Re-learn ``central/atr/_profiles.py`` on tuning ``seeds``: profiles, then thresholds.

    ``reset``: categories whose red thresholds start again from 1.0 (their detector's
    score changed).  Returns the score of the tuning cases with the new tables.
    """
    import importlib

    from bench.atr import tune, write_profiles
    from central.atr import _profiles

    path = Path(_profiles.__file__)

    def results() -> list[dict[str, Any]]:
        return [r for s in seeds for r in evaluate(s, channels, lines, workers)]

    tables = tune(results(), "profiles")
    for cat in reset:
        tables["RED_AT"].pop(cat, None)
    write_profiles(tables, path)
    importlib.reload(_profiles)
    write_profiles(tune(results(), "thresholds", margin), path)
    importlib.reload(_profiles)
    return score(results())


def main() -> None:
    """Command line: ``simulate`` or ``evaluate`` (prints the score JSON)."""
    p = argparse.ArgumentParser(prog="python -m bench.atr_tune")
    p.add_argument("action", choices=["simulate", "evaluate", "learn"])
    p.add_argument("--also", type=int, nargs="*", default=[], help="more tuning seeds (learn)")
    p.add_argument("--reset", nargs="*", default=[], help="categories to re-learn from 1.0")
    p.add_argument("--margin", type=float, default=1.05, help="threshold over clean max (learn)")
    p.add_argument("--random-only", type=int, default=0, help="simulate only N random cases")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--channels", type=int, default=1536)
    p.add_argument("--lines", type=int, default=3000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    if args.action == "simulate":
        print(simulate(args.seed, args.channels, args.lines, args.workers, args.random_only))
    elif args.action == "learn":
        seeds = [args.seed, *args.also]
        got = learn(seeds, args.channels, args.lines, args.workers, args.reset, args.margin)
        print(json.dumps(got))
    else:
        res = evaluate(args.seed, args.channels, args.lines, args.workers)
        print(json.dumps(score(res)))


if __name__ == "__main__":
    main()
