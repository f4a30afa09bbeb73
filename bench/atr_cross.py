"""``nii bench atr --protocol cross-scanner``: the ATR on scanner models it was not tuned on.

Every scanner model of the simulator (``firmware_sim.physics.SCANNER_MODELS``:
energies, detector, pitch, speed and dose differ) is commissioned the way a
site commissions its scanner: its step-wedge scan is simulated and
``core.scanner_cal.fit`` calibrates it.  Then, per model, a labelled set of
cases is exported as files (``firmware_sim.physics.export_case``, the layout of
the independent samples) and analysed through the same path as
``nii atr analyze --scanner``: 16-bit TIFFs in, the scanner's calibration,
the GD in its neutral form.  ATT pairs take Scan A on the model and Scan B on
another model at another speed, compared with both calibrations.

Leave one model out, every model in turn: the red thresholds are raised per
category and declared commodity by what the clean **tuning** cases of the other
models reached (5 % above their highest score, never lowered), and the held-out model's
**evaluation** cases are scored with them.  Tuning and evaluation cases come
from different seeds (``TUNE_SEED``, ``EVAL_SEED``).  The detectors themselves
were tuned on the reference model only (seeds 100–101, ``bench.atr_tune``).

The cases and their verdicts are cached under ``var/atr-cross/`` so a re-run
only scores.  The last line printed is one JSON object.
"""
# ruff: noqa: RUF002

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.atr import METAL_COMMODITIES, TARGETS, _pin_next
from central.atr import analyze
from central.atr._analyze import LOCATED_CATEGORIES as LOCATED
from central.atr._att import compare
from central.atr._declaration import parse_gd
from central.atr._gd import tuned_profile
from central.atr._physical import to_physical
from central.atr.cli import load_transmission
from core.scanner_cal import ScannerCalibration, fit, load_wedges
from firmware_sim.physics import CONCEALMENTS, SCANNER_MODELS, TAMPER_KINDS, export_case
from firmware_sim.physics._wedges import write_wedge_scan

EVAL_SEED = 7100
TUNE_SEED = 7200


def plan(n_clean: int, n_kind: int, n_lie: int, n_empty: int, n_att: int) -> list[dict[str, Any]]:
    """The cases of one model: kind and, for ATT, the tampering."""
    cases: list[dict[str, Any]] = [{"kind": "clean"} for _ in range(n_clean)]
    for kind in CONCEALMENTS:
        for j in range(n_kind):
            c: dict[str, Any] = {"kind": kind}
            if kind == "organic in metal":  # the concealment of a package among metal goods
                c["commodity"] = METAL_COMMODITIES[j % len(METAL_COMMODITIES)]
            if kind == "vehicle":  # a car fits a 40 ft container
                c["container"] = "40GP" if j % 2 else "40HC"
            cases.append(c)
    cases += [{"kind": "lie"} for _ in range(n_lie)]
    cases += [{"kind": "empty"} for _ in range(n_empty)]
    cases += [{"kind": "declared empty"} for _ in range(n_empty)]
    for j in range(n_att):
        cases.append({"kind": "att", "tamper": None if j % 2 == 0 else TAMPER_KINDS[j % 3]})
    for i, c in enumerate(cases):
        c["id"] = i
    return cases


def calibrate(model: str, root: Path) -> Path:
    """The model's calibration file, from its simulated commissioning scan (cached)."""
    out = root / "cal" / f"{model}.json"
    if out.exists():
        return out
    wedges = root / "cal" / model
    write_wedge_scan(wedges, model, 11)
    cal = fit(load_wedges(wedges))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(cal.to_json()))
    shutil.rmtree(wedges)
    return out


def _gd(doc: dict[str, Any], declared_empty: bool) -> dict[str, Any]:
    g = doc["gd"]
    if declared_empty or g.get("declared_empty"):
        return {"declared_empty": True, "gross_weight_kg": g["gross_weight_kg"]}
    return {
        "commodity": g["commodity"],
        "hs_code": g["hs_code"],
        "gross_weight_kg": g["gross_weight_kg"],
        "container_type": g["container_type"],
    }


def _read(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    doc = json.loads((folder / "case.json").read_text())
    return load_transmission(folder / "high.tiff"), load_transmission(folder / "low.tiff"), doc


def run_case(args: tuple[str, dict[str, Any], int, str, str, bool]) -> dict[str, Any]:
    """Export, analyse and score one case; the result is cached beside its folder.

    With ``keep`` the exported images stay (``NNNN.case/``, about 20 MB a case) and the
    result is not cached: a re-run analyses them again without simulating them again.
    """
    model, case, seed, root_s, pair_model, keep = args
    root = Path(root_s)
    work = root / f"seed{seed}" / model
    res_path = work / f"{case['id']:04d}.result.json"
    if res_path.exists() and not keep:
        return dict(json.loads(res_path.read_text()))
    kind = case["kind"]
    export_kind = "clean" if kind == "declared empty" else kind
    tmp = work / f"{case['id']:04d}.{'case' if keep else 'tmp'}"
    done = tmp / "exported"
    if keep and done.exists():
        folders = [tmp / name for name in json.loads(done.read_text())]
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        folders = export_case(
            model, seed, case["id"], tmp, export_kind, pair_model=pair_model,
            att_tamper=case.get("tamper"), commodity=case.get("commodity"),
            container=case.get("container"),
        )  # fmt: skip
        if keep:
            done.write_text(json.dumps([str(f.relative_to(tmp)) for f in folders]))
    cal = ScannerCalibration.load(calibrate(model, root))
    out: dict[str, Any] = {"model": model, "id": case["id"], "kind": kind}
    hi, lo, doc = _read(folders[0])
    if kind == "att":
        cal_b = ScannerCalibration.load(calibrate(pair_model, root))
        hb, lb, doc_b = _read(folders[1])
        pa, pb = to_physical(hi, lo, cal), to_physical(hb, lb, cal_b)
        t0 = time.perf_counter()
        try:
            r = compare(
                (pa.a_hi, pa.a_lo, *doc["pixel_mm"]),
                (pb.a_hi, pb.a_lo, *doc_b["pixel_mm"]),
                harmonised=True,
            )
            out.update({"hold": r.hold, "status": r.to_dict()["status"]})
        except Exception as exc:  # an error is a result too: the pair was not compared
            out.update({"hold": None, "status": f"error: {exc}"})
        out.update({"tamper": case.get("tamper"), "ms": (time.perf_counter() - t0) * 1e3})
    else:
        gd = _gd(doc, kind == "declared empty")
        try:
            out["profile"] = tuned_profile(parse_gd(gd))
        except Exception:
            out["profile"] = ""
        t0 = time.perf_counter()
        try:
            px = doc["pixel_mm"]
            v = analyze(hi, lo, float(px[0]), float(px[1]), gd, scanner=cal).to_dict()
        except Exception as exc:
            v = {"verdict": "error", "findings": [], "error": str(exc)}
        out.update(
            {
                "ms": (time.perf_counter() - t0) * 1e3,
                "pixel_mm": doc["pixel_mm"],
                "truth": doc["truth"],
                "verdict": {k: v.get(k) for k in ("verdict", "findings", "error")},
                "mass_ratio": (v.get("gd_checks") or {}).get("mass_ratio"),
            }
        )
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    res_path.write_text(json.dumps(out))
    return out


def _iou_mm(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / u if u > 0 else 0.0


def _inside(box: list[float], t: list[float]) -> float:
    """Share of ``box``'s area inside ``t``."""
    ix = max(0.0, min(box[2], t[2]) - max(box[0], t[0]))
    iy = max(0.0, min(box[3], t[3]) - max(box[1], t[1]))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return ix * iy / area if area > 0 else 0.0


def _localised(box: list[float], t: list[float], boxes: list[list[float]]) -> bool:
    """``box`` outlines truth ``t`` (IoU ≥ 0.3), or is one of the findings that together do.

    A carton of pistols or a bundle of rifles is one truth box; the ATR outlines each
    weapon in it.  Those findings (half or more of each inside ``t``) are taken together:
    their joint box must outline ``t`` with IoU ≥ 0.3.
    """
    if _iou_mm(box, t) >= 0.3:
        return True
    if _inside(box, t) < 0.5:
        return False
    part = [b for b in boxes if _inside(b, t) >= 0.5]
    joint = [min(b[0] for b in part), min(b[1] for b in part),
             max(b[2] for b in part), max(b[3] for b in part)]  # fmt: skip
    return _iou_mm(joint, t) >= 0.3


def _px_to_mm(box: list[int], px: list[float]) -> list[float]:
    return [box[0] * px[0], box[1] * px[1], box[2] * px[0], box[3] * px[1]]


def _key(category: str, profile: str) -> str:
    return f"{category}|{profile or '*'}"


def multipliers(tuning: list[dict[str, Any]], margin: float = 1.05) -> dict[str, float]:
    """Per category and declared commodity (the detectors' tuned profiles, ``_gd.tuned_profile``),
    how far the red threshold must rise so that no clean tuning case is red."""
    k: dict[str, float] = {}
    for r in tuning:
        if r["kind"] != "clean" or r["verdict"]["verdict"] == "error":
            continue
        for f in r["verdict"]["findings"]:
            key = _key(f["category"], r.get("profile", ""))
            k[key] = max(k.get(key, 1.0), margin * f["score"])
    return {c: round(v, 3) for c, v in sorted(k.items())}


def raise_thresholds(k: dict[str, float]) -> dict[str, Any]:
    """``_profiles``' tables with RED_AT raised by the multipliers ``k`` ("category|profile")."""
    from central.atr import _profiles as pr

    red = {cat: dict(t) for cat, t in pr.RED_AT.items()}
    for key, mult in k.items():
        cat, prof = key.split("|", 1)
        table = red.setdefault(cat, {})
        table[prof] = round(table.get(prof, table.get("*", 1.0)) * mult, 3)
    return {
        "PROFILES": dict(pr.PROFILES),
        "RED_AT": red,
    }


def score(results: list[dict[str, Any]], k: dict[str, float]) -> dict[str, Any]:
    """Detection, false alarms, localisation and ATT of one model's evaluation cases."""
    det: dict[str, list[int]] = {}
    fa: list[int] = []
    loc_red = loc_ok = 0
    att_pos: list[int] = []
    att_neg: list[int] = []
    errors = 0
    ms = []
    mass = []
    for r in results:
        if r["kind"] == "att":
            held = int(bool(r["hold"])) if r["hold"] is not None else 1
            errors += r["hold"] is None
            (att_pos if r["tamper"] else att_neg).append(held)
            continue
        v = r["verdict"]
        ms.append(r["ms"])
        if v["verdict"] == "error":
            errors += 1
            reds: list[dict[str, Any]] = []
        else:
            prof = r.get("profile", "")
            reds = [
                f
                for f in v["findings"]
                if f["score"] / k.get(_key(f["category"], prof), 1.0) >= 1.0
            ]
        red = int(bool(reds))
        if r["kind"] == "clean":
            fa.append(red)
            if r.get("mass_ratio"):
                mass.append(r["mass_ratio"])
            continue
        det.setdefault(r["kind"], []).append(red)
        truth = [f["bbox_mm"] for f in r["truth"].get("findings", []) if f.get("bbox_mm")]
        if truth:
            boxes = [
                _px_to_mm(f["bbox_px"], r["pixel_mm"]) for f in reds if f["category"] in LOCATED
            ]
            for box in boxes:
                loc_red += 1
                loc_ok += int(any(_localised(box, t, boxes) for t in truth))
    allpos = [x for v in det.values() for x in v]
    p = np.asarray(ms or [0.0])
    return {
        "detection_rate": round(float(np.mean(allpos)), 4) if allpos else 0.0,
        "false_alarm_rate": round(float(np.mean(fa)), 4) if fa else 0.0,
        "red_findings_localised": round(loc_ok / loc_red, 4) if loc_red else 0.0,
        "att_detection_rate": round(float(np.mean(att_pos)), 4) if att_pos else 0.0,
        "att_false_hold_rate": round(float(np.mean(att_neg)), 4) if att_neg else 0.0,
        "detection_by_category": {c: round(float(np.mean(v)), 3) for c, v in sorted(det.items())},
        "counts": {**{c: len(v) for c, v in sorted(det.items())}, "clean": len(fa)},
        "clean_mass_ratio_p50": round(float(np.median(mass)), 3) if mass else None,
        "errors": errors,
        "atr_ms_p50": round(float(np.percentile(p, 50)), 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build (or reuse) every model's cases, score leave-one-model-out, print JSON last."""
    root = Path(args.cache) / "cross"
    models = list(SCANNER_MODELS)
    n = max(1, args.per_model // 20)
    eval_plan = plan(8 * n, n, 2 * n, n, 2 * n)
    tune_plan = plan(12 * n, 0, 0, 0, 0)
    jobs = []
    for i, m in enumerate(models):
        other = models[(i + 1) % len(models)]
        keep = bool(getattr(args, "keep_cases", False))
        jobs += [(m, c, EVAL_SEED, str(root), other, keep) for c in eval_plan]
        jobs += [(m, c, TUNE_SEED, str(root), other, keep) for c in tune_plan]
    for m in models:  # before the workers, so they never race to write one
        calibrate(m, root)
    t0 = time.perf_counter()
    done: list[dict[str, Any]] = []
    counter = multiprocessing.get_context().Value("i", 0)
    pool = ProcessPoolExecutor(max(1, args.workers), initializer=_pin_next, initargs=(counter,))
    with pool as ex:
        for j, r in enumerate(ex.map(run_case, jobs, chunksize=1)):
            r["_seed"] = jobs[j][2]
            done.append(r)
            if (j + 1) % 25 == 0:
                print(f"{j + 1}/{len(jobs)} cases, {time.perf_counter() - t0:.0f} s", flush=True)
    per_model: dict[str, Any] = {}
    for m in models:
        tuning = [r for r in done if r["_seed"] == TUNE_SEED and r["model"] != m]
        k = multipliers(tuning)
        ev = [r for r in done if r["_seed"] == EVAL_SEED and r["model"] == m]
        per_model[m] = {
            "held_out": score(ev, k),
            "untuned": score(ev, {})["detection_rate"],
            "threshold_rise": k,
        }
    keys = ("detection_rate", "false_alarm_rate", "red_findings_localised",
            "att_detection_rate", "att_false_hold_rate")  # fmt: skip
    pooled = {
        key: round(float(np.mean([per_model[m]["held_out"][key] for m in models])), 4)
        for key in keys
    }
    if args.write_thresholds:
        # the thresholds the ATR ships with: raised on every model's clean tuning cases
        from bench.atr import write_profiles

        tuned = multipliers([r for r in done if r["_seed"] == TUNE_SEED])
        write_profiles(raise_thresholds(tuned), Path("central/atr/_profiles.py"))
        print(f"central/atr/_profiles.py: RED_AT raised by {tuned}", flush=True)
    res = {
        "bench": "atr",
        "protocol": "cross-scanner",
        "models": models,
        "cases_per_model": len(eval_plan),
        "held_out_mean": pooled,
        "worst_model": {
            "detection_rate": min(per_model[m]["held_out"]["detection_rate"] for m in models),
            "false_alarm_rate": max(per_model[m]["held_out"]["false_alarm_rate"] for m in models),
        },
        "per_model": per_model,
        "targets": TARGETS,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(res), flush=True)
    return res
