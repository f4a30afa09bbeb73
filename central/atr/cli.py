"""``nii atr``: the ATR on any scanner's export, and the site's image library.

``analyze`` and ``compare`` run the ATR on exported scans; ``confirm`` and
``profiles learn|show`` keep the site-learned profiles in the CIR
(``_library.py``); ``worker`` judges the CIR's queued scans (live verdicts).

Images are 16-bit single-channel TIFF or PNG, pixel value = transmission ×
65535, rows = detector channels (top of the container at row 0), columns =
scan lines in the direction of travel.  The verdict prints as JSON.
"""
# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from central._atr_queue import CLAIM_S
from core.errors import NiiError
from core.scanner_cal import ScannerCalibration

from ._analyze import analyze
from ._att import compare
from ._calibrate import add_parser as add_calibrate_parser
from ._image import transmission_to_attenuation
from ._model import AtrInputError
from ._physical import harmonise

F32 = npt.NDArray[np.float32]


#: Most grey levels an image holds that was made from 8 bits (then scaled by 256 or 257);
#: a 16-bit transmission image of a container holds thousands.
MAX_8BIT_LEVELS = 256
#: Least transmission of the brightest part of a transmission export: air, where nothing
#: is in the beam, is T = 1 (65 535) after the scanner's air calibration; a brightest
#: 0.1 % below 0.8 is not T x 65535 (raw counts, an offset, or attenuation stored).
AIR_T = 0.8
#: Least share of the image that is air (T ≥ 0.9): a scan shows the air above, before
#: and behind the vehicle (a fifth to a third of the image on the scans seen); an image
#: with less than 1 % is a crop of the load, which the ATR cannot place.
MIN_AIR_SHARE = 0.01


def check_transmission_range(img: npt.NDArray[np.generic], name: str) -> None:
    """Refuse 16-bit data that uses the range as no transmission image does.

    ``img``: the export as read, uint16, value = T x 65535; ``name`` names it in the
    message.

    Raises:
        AtrInputError: at most :data:`MAX_8BIT_LEVELS` grey levels (an 8-bit image in
            16 bits); air not near full scale (:data:`AIR_T`); almost no air
            (:data:`MIN_AIR_SHARE`).
    """
    levels = np.unique(img[:: max(1, img.shape[0] // 512), :: max(1, img.shape[1] // 512)])
    if levels.size <= MAX_8BIT_LEVELS:
        raise AtrInputError(
            f"{name}: only {levels.size} grey levels (highest {int(levels[-1])}): an 8-bit "
            "image stored in 16 bits",
            fix="export the scanner's 16-bit transmission (T x 65535); 8 bits cannot carry "
            "the attenuation range of cargo",
        )
    flat = np.asarray(img, dtype=np.float64).ravel()
    bright = float(np.percentile(flat[:: max(1, flat.size // 200_000)], 99.9)) / 65535.0
    if bright < AIR_T:
        raise AtrInputError(
            f"{name}: the brightest part of the image is at T = {bright:.2f}, not near 1: "
            "air is not at full scale, so this is not a transmission export",
            fix="export transmission calibrated on air (air = 65535), not raw detector "
            "counts or attenuation",
        )
    air = float(np.mean(flat >= 0.9 * 65535))
    if air < MIN_AIR_SHARE:
        raise AtrInputError(
            f"{name}: {100 * air:.2f} % of the image is air: a scan shows the air round "
            "the vehicle, this is a crop",
            fix="export the whole scan, not a crop of the container or its load",
        )


def load_transmission(path: Path) -> F32:
    """Attenuation (lines, channels) of one exported image; a clear error if it cannot be used.

    ``path``: a 16-bit single-channel TIFF or PNG, T x 65535, rows = channels.

    Raises:
        AtrInputError: missing, unreadable, colour, not 16-bit, all zero, or not using
            the 16-bit range as a transmission image does (:func:`check_transmission_range`).
    """
    import cv2

    if not path.is_file():
        raise AtrInputError(f"{path}: no such file", fix="give the path of a TIFF or PNG export")
    # OpenCV and libtiff would print their own lines about a damaged file: one error is ours
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise AtrInputError(
            f"{path}: not a readable image (not a TIFF or PNG, or the file is truncated or"
            " damaged)",
            fix="copy or export the image again: a 16-bit single-channel TIFF or PNG",
        )
    if img.ndim != 2:
        raise AtrInputError(
            f"{path}: {img.shape[2]} colour channels, expected one",
            fix="export one grey-level image per energy",
        )
    if img.dtype != np.uint16:
        fix = (
            "convert the transmissions T (0-1) to 16-bit integers T × 65535"
            if img.dtype.kind == "f"
            else "export 16-bit images; 8 bits cannot carry the attenuation range of cargo"
        )
        raise AtrInputError(
            f"{path}: {img.dtype} pixels, expected 16-bit (transmission × 65535)", fix=fix
        )
    if min(img.shape) < 64:
        raise AtrInputError(
            f"{path}: {img.shape[1]} x {img.shape[0]} pixels, too small to hold a container",
            fix="export the full scan (at least 64 lines and 64 channels)",
        )
    if int(img.max()) == 0:
        raise AtrInputError(
            f"{path}: every pixel is zero", fix="check the export: the image holds no scan"
        )
    check_transmission_range(img, str(path))
    # rows are channels, columns are lines: the ATR works on (lines, channels)
    return transmission_to_attenuation(np.ascontiguousarray(img.T))


def _load_gd(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AtrInputError(
            f"{path}: cannot read the GD: {exc}", fix="give a JSON object with the GD's fields"
        ) from exc
    if not isinstance(doc, dict):
        raise AtrInputError(
            f"{path}: the GD is not a JSON object", fix='e.g. {"gross_weight_kg": 9000}'
        )
    return doc


def _load_scanner(path: str | None) -> ScannerCalibration | None:
    if not path:
        return None
    p = Path(path)
    if p.is_dir():
        raise AtrInputError(
            f"{p} is a folder; --scanner takes the calibration file",
            fix=f"run 'nii atr calibrate --wedges {p} --out scanner.json' once, "
            "then give --scanner scanner.json",
        )
    return ScannerCalibration.load(p)


def cmd_analyze(args: argparse.Namespace) -> int:
    """Print the verdict of one exported scan."""
    hi = load_transmission(Path(args.high))
    lo = load_transmission(Path(args.low))
    scanner = _load_scanner(args.scanner)
    gd = _load_gd(args.gd)
    library = None
    if args.cir:
        from ._library import load_library

        library = load_library(_cir_path(args))
    v = analyze(
        hi, lo, args.pixel_mm[0], args.pixel_mm[1], gd, scan=args.high, scanner=scanner,
        library=library,
    )  # fmt: skip
    print(json.dumps(v.to_dict(), indent=None if args.compact else 2))
    return 0


def _scan_dir(path: str, pixel_mm: list[float]) -> tuple[F32, F32, float, float]:
    d = Path(path)
    found = {}
    for energy in ("high", "low"):
        for ext in ("tiff", "tif", "png"):
            if (d / f"{energy}.{ext}").is_file():
                found[energy] = d / f"{energy}.{ext}"
                break
        else:
            raise AtrInputError(
                f"{d}: no {energy}.tiff or {energy}.png",
                fix="a scan folder holds high.tiff and low.tiff (or .png)",
            )
    return (
        load_transmission(found["high"]),
        load_transmission(found["low"]),
        pixel_mm[0],
        pixel_mm[1],
    )


def _named(what: str, fn: Any, *args: Any) -> Any:
    """``fn(*args)``; an input error says which of compare's inputs it concerns."""
    try:
        return fn(*args)
    except NiiError as exc:
        fix = exc.fix.replace("--scanner FILE", f"{what} FILE").replace("(--scanner ", "(")
        fix = fix.replace("as --high", "as high.tiff").replace("--high", "high.tiff")
        fix = fix.replace("--low", "low.tiff")
        raise type(exc)(f"{what}: {exc.message}", fix=fix) from exc


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the ATT comparison of Scan A and Scan B; status 3 when the unit is put on HOLD."""
    pa = args.pixel_mm_a or args.pixel_mm
    pb = args.pixel_mm_b or args.pixel_mm
    if pa is None or pb is None:
        raise AtrInputError(
            "no pixel size for "
            + " and ".join(n for n, p in (("scan A", pa), ("scan B", pb)) if p is None),
            fix="give --pixel-mm X Y for both, or --pixel-mm-a and --pixel-mm-b "
            "(mm at the container, along travel then height)",
        )
    if Path(args.a).resolve() == Path(args.b).resolve():
        raise AtrInputError(
            f"Scan A and Scan B are the same folder ({args.a})",
            fix="give the entry scan's folder first, then the exit scan's",
        )
    cal_a = _named("--scanner-a", _load_scanner, args.scanner_a)
    cal_b = _named("--scanner-b", _load_scanner, args.scanner_b)
    if (cal_a is None) != (cal_b is None):
        raise AtrInputError(
            "only one of the two scans has its scanner's calibration",
            fix="give both --scanner-a and --scanner-b, or neither",
        )
    res = compare(
        _named("scan A", lambda: harmonise(_scan_dir(args.a, pa), cal_a)),
        _named("scan B", lambda: harmonise(_scan_dir(args.b, pb), cal_b)),
        harmonised=cal_a is not None,
    )
    print(json.dumps(res.to_dict(), indent=2))
    return 3 if res.hold else 0


def cmd_hs(args: argparse.Namespace) -> int:
    """Print what an HS code (or a commodity in words) is expected to look like in the image."""
    from ._declaration import parse_gd, resolve

    query = " ".join(args.code).strip()
    is_code = bool(query) and all(ch.isdigit() or ch in ". " for ch in query)
    try:
        goods = resolve(parse_gd({"hs_code": query} if is_code else {"commodity": query}))
    except AtrInputError as exc:  # the message speaks of a GD field: here there is no GD
        raise AtrInputError(exc.message.replace("GD field 'hs_code'", "HS code"), exc.fix) from exc
    exp = goods.expectation
    if exp is None:
        raise AtrInputError(
            f"{query!r}: {goods.reason}",
            fix="give an HS 2022 code of a chapter the table covers, or the goods in words",
        )
    doc = {
        "heading": exp.heading,
        "level": exp.level,
        "description": exp.description,
        "classes": [c.name.lower() for c in exp.classes],
        "zeff_range": list(exp.zeff_range),
        "density_range_g_cm3": list(exp.density_range),
        "source": exp.source,
        "found": str(goods.found),
        "reason": goods.reason,
    }
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


def _cir_path(args: argparse.Namespace) -> Path | str:
    """The CIR's database: ``--cir`` (the SQLite file or its state_dir, or a PostgreSQL
    URL), else the central configuration's (its ``cir``, or the file in its state_dir).

    Raises:
        ConfigError: no CIR there (or the configuration cannot be read).
    """
    from central._sql import is_postgres_url
    from core.config import CentralConfig
    from core.errors import ConfigError

    if getattr(args, "cir", None):
        if is_postgres_url(args.cir):
            return str(args.cir)
        path = Path(args.cir)
        if path.is_dir():
            path = path / "cir.sqlite"
        where = "--cir"
    else:
        cfg = CentralConfig.load(Path(args.config))
        if cfg.cir:
            return cfg.cir
        path = cfg.state_dir / "cir.sqlite"
        where = f"state_dir of {args.config}"
    if not path.is_file():
        raise ConfigError(
            f"there is no CIR at {path} ({where})",
            fix="give the CIR with --cir PATH (cir.sqlite or the state_dir holding it) or "
            "the central configuration with --config",
        )
    return path


def cmd_confirm(args: argparse.Namespace) -> int:
    """Record an officer's confirmation of a verdict (a correction when one exists)."""
    from ._library import confirm, parse_level
    from ._store import LibraryStore

    parse_level(args.verdict)  # a bad word is refused before the CIR is opened
    store = LibraryStore(_cir_path(args))
    try:
        c = confirm(store, args.ref, args.verdict, by=args.by or "", note=args.note or "")
    finally:
        store.close()
    what = f"correction of confirmation {c.corrects}" if c.corrects is not None else "confirmed"
    heading = f"HS {c.heading}" if c.heading else "no HS heading (not used for profiles)"
    print(f"scan ref {c.ref}: {c.verdict} ({what}; ATR said {c.atr_verdict}) by {c.by}, {heading}")
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    """``learn``: recompute the profiles from the confirmations; ``show``: prior vs learned."""
    from ._library import learn_and_store
    from ._store import LibraryStore

    path = _cir_path(args)
    if args.profiles_action == "learn":
        store = LibraryStore(path)
        try:
            version, lines = learn_and_store(store)
        finally:
            store.close()
        if version == 0:
            print(
                "no green-confirmed scans with features: no profiles learned (the HS priors apply)"
            )
        else:
            print(f"profiles version {version}")
        for line in lines or (["no change"] if version else []):
            print(f"  {line}")
        return 0
    return _show_profiles(path, " ".join(args.heading).strip(), args.json)


def _show_profiles(path: Path | str, query: str, as_json: bool) -> int:
    from ._commodity import WIDTH_FILL_MIN
    from ._declaration import parse_gd, resolve
    from ._hs import HS_TABLE
    from ._library import MIN_CONFIRMED, current, load_library

    lib = load_library(path)
    counts: dict[str, dict[str, int]] = {}
    for c in current(lib.confirmed.values()).values():
        counts.setdefault(c.heading, {}).setdefault(str(c.verdict), 0)
        counts[c.heading][str(c.verdict)] += 1
    headings = sorted(h for h in set(lib.profiles) | set(counts) if h in HS_TABLE)
    if query:
        goods = resolve(parse_gd({"hs_code": query}))
        if goods.expectation is None:
            raise AtrInputError(
                f"{query!r}: {goods.reason}", fix="give an HS code the table covers (nii atr hs)"
            )
        headings = [goods.heading]
    docs: list[dict[str, Any]] = []
    for h in headings:
        prior = HS_TABLE[h]
        p = lib.profiles.get(h)
        blend = lib.expectation(h)
        docs.append(
            {
                "heading": h,
                "description": prior.description,
                "confirmed": counts.get(h, {}),
                "prior": {
                    "classes": [c.name.lower() for c in prior.classes],
                    "density_range_g_cm3": list(prior.density_range),
                    "image_density_range_g_cm3": [
                        round(prior.density_range[0] * WIDTH_FILL_MIN, 3),
                        prior.density_range[1],
                    ],
                    "zeff_range": list(prior.zeff_range),
                },
                "learned": None if p is None else p.to_doc(),
                "in_use": "prior"
                if blend is None
                else {
                    "classes": [c.name.lower() for c in blend.classes],
                    "image_density_range_g_cm3": list(blend.density_range),
                    "zeff_range": list(blend.zeff_range),
                    "source": blend.source,
                },
            }
        )
    if as_json:
        print(json.dumps({"version": lib.version, "profiles": docs}, indent=2, ensure_ascii=False))
        return 0
    print(f"profiles version {lib.version or 'none'}; used from {MIN_CONFIRMED} green scans")
    if not docs:
        print("no confirmed scans yet: every heading uses its HS prior")
    for d in docs:
        pr = d["prior"]
        print(f"{d['heading']} {d['description']}: confirmed {d['confirmed'] or 'none'}")
        lo, hi = pr["image_density_range_g_cm3"]
        print(
            f"  prior:   {', '.join(pr['classes'])}; image density {lo:.2f}–{hi:.2f} g/cm³;"
            f" Z_eff {pr['zeff_range'][0]:g}–{pr['zeff_range'][1]:g}"
        )
        lp = d["learned"]
        if lp is None:
            print("  learned: none")
        else:
            state = "used" if lp["used"] else f"not used yet ({lp['n']}/{MIN_CONFIRMED})"
            print(
                f"  learned: n={lp['n']} ({state}); density {lp['density_median']:.2f}"
                f" ± {lp['density_sigma']:.2f} g/cm³; Z_eff {lp['zeff_median']:.1f}"
                f" ± {lp['zeff_sigma']:.1f}; classes {', '.join(lp['classes']) or '-'}"
            )
        u = d["in_use"]
        if u == "prior":
            print("  in use:  the prior")
        else:
            lo, hi = u["image_density_range_g_cm3"]
            print(
                f"  in use:  {', '.join(u['classes'])}; image density {lo:.2f}–{hi:.2f} g/cm³;"
                f" Z_eff {u['zeff_range'][0]:g}–{u['zeff_range'][1]:g}"
            )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Judge the CIR's queued scans until SIGTERM or SIGINT (``nii atr worker``).

    Any number of these, on any host, share the queue of the CIR that the central
    configuration names (its ``cir`` and blob store, its ``key`` to open the blocks):
    each takes one scan at a time, stores its verdict (and ATT result) once, and leaves
    the feed to the aggregators (decision 0019).  A worker stopped cleanly finishes the
    scan in hand; one killed leaves it to another once its claim runs out (``--claim-s``).

    Raises:
        ConfigError: the configuration, the key or the CIR cannot be read.
    """
    import asyncio
    import logging

    from central._cir import open_cir
    from core import runtime
    from core.config import CentralConfig
    from core.keys import CirKey
    from core.sdnotify import Notifier, watchdog_loop

    from ._live import LiveAtr

    cfg = CentralConfig.load(Path(args.config))
    key = CirKey.load(cfg.key)
    open_cir(cfg, create=False).close()  # there, reachable, its schema up to date
    runtime.setup_logging(args.log_level)
    log = logging.getLogger("nii.central.atr")

    async def main(stop: asyncio.Event) -> None:
        atr = LiveAtr(
            cfg.state_dir,
            key.x25519_private,
            lambda *_: None,
            max_backlog=cfg.atr_max_backlog,
            open_cir=lambda: open_cir(cfg, create=False),
            feed=False,
            worker=args.id or "",
            claim_s=args.claim_s,
        )
        atr.start(asyncio.get_running_loop())
        log.info("ATR worker %s on the CIR of %s", atr.worker, cfg.path)
        # systemd (nii-atr-worker@.service, Type=notify): ready now, and a watchdog
        # ping from this event loop while it runs
        notifier = Notifier()
        notifier.ready()
        watchdog = asyncio.create_task(watchdog_loop(notifier, lambda: True))
        try:
            await stop.wait()
        finally:
            notifier.stopping()
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            await asyncio.to_thread(atr.close)
            log.info("ATR worker %s stopped: %d verdict(s) stored", atr.worker, atr.verdicts)

    runtime.run(main)  # uvloop; SIGINT and SIGTERM end it cleanly
    return 0


def _cir_options(p: Any) -> None:
    p.add_argument(
        "--cir", metavar="PATH", help="the CIR: its cir.sqlite, or the state_dir holding it"
    )
    p.add_argument(
        "--config",
        default="central.toml",
        help="central configuration (TOML) whose state_dir holds the CIR, without --cir",
    )


def register(sub: Any) -> None:
    """Add ``nii atr`` with ``analyze``, ``compare`` and ``hs``."""
    p = sub.add_parser("atr", help="automated threat recognition on exported scans (R7, R12)")
    ps = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = ps.add_parser("analyze", help="verdict (green/yellow/red) and findings of one scan")
    a.add_argument("--high", required=True, help="high-energy image: 16-bit TIFF/PNG, T × 65535")
    a.add_argument("--low", required=True, help="low-energy image, same size")
    a.add_argument(
        "--pixel-mm",
        nargs=2,
        type=float,
        required=True,
        metavar=("X", "Y"),
        help="pixel size in mm: along travel (columns), height (rows)",
    )
    a.add_argument("--gd", help="Goods Declaration (JSON) to check the image against")
    a.add_argument(
        "--scanner",
        metavar="FILE",
        help="the scanner's calibration (from 'nii atr calibrate'); without it the "
        "reference scanner is assumed and GD checks are at most yellow",
    )
    a.add_argument("--compact", action="store_true", help="one-line JSON")
    a.add_argument(
        "--cir",
        metavar="PATH",
        help="a CIR (cir.sqlite or its state_dir) whose image library to use: learned "
        "profiles and the most similar confirmed scans ('similar')",
    )
    a.set_defaults(func=cmd_analyze)
    c = ps.add_parser("compare", help="ATT: Scan B (exit) against Scan A (entry); HOLD on mismatch")
    c.add_argument("a", help="folder of Scan A with high.tiff and low.tiff (or .png)")
    c.add_argument("b", help="folder of Scan B, the same")
    c.add_argument(
        "--pixel-mm",
        nargs=2,
        type=float,
        metavar=("X", "Y"),
        help="pixel size of both scans, mm: along travel, height",
    )
    c.add_argument(
        "--pixel-mm-a", nargs=2, type=float, metavar=("X", "Y"), help="A's, if it differs"
    )
    c.add_argument(
        "--pixel-mm-b", nargs=2, type=float, metavar=("X", "Y"), help="B's, if it differs"
    )
    for side in ("a", "b"):
        c.add_argument(
            f"--scanner-{side}",
            metavar="FILE",
            help=f"calibration of the scanner that took scan {side.upper()} ('nii atr calibrate')",
        )
    c.set_defaults(func=cmd_compare)
    add_calibrate_parser(ps)
    h = ps.add_parser("hs", help="what the goods of an HS code look like in the image")
    h.add_argument("code", nargs="+", help='HS code ("6907.21") or the goods in words')
    h.set_defaults(func=cmd_hs)
    cf = ps.add_parser("confirm", help="an officer confirms (or corrects) a verdict: SOP 5.4")
    cf.add_argument("ref", type=int, help="scan ref (see 'nii cir scans')")
    cf.add_argument("verdict", help="green, yellow or red: what the examination found")
    cf.add_argument("--by", metavar="NAME", help="who confirms (default: the OS user)")
    cf.add_argument("--note", metavar="TEXT", help="free text kept with the confirmation")
    _cir_options(cf)
    cf.set_defaults(func=cmd_confirm)
    pr = ps.add_parser("profiles", help="site-learned commodity profiles: learn, show")
    prs = pr.add_subparsers(dest="profiles_action", metavar="ACTION", required=True)
    pl = prs.add_parser("learn", help="recompute the profiles from the confirmations")
    _cir_options(pl)
    pl.set_defaults(func=cmd_profiles, heading=[], json=False)
    pw = prs.add_parser("show", help="prior against learned profile, with counts")
    pw.add_argument("heading", nargs="*", help="an HS code (all headings with confirmations)")
    pw.add_argument("--json", action="store_true", help="as JSON")
    _cir_options(pw)
    pw.set_defaults(func=cmd_profiles)
    w = ps.add_parser("worker", help="judge the CIR's queued scans (live verdicts), until stopped")
    w.add_argument(
        "-c",
        "--config",
        default="central.toml",
        help="central configuration (TOML): the CIR, its blob store and its key",
    )
    w.add_argument(
        "--id", metavar="NAME", help="this worker's name in the queue (default: host/pid)"
    )
    w.add_argument(
        "--claim-s",
        type=float,
        default=CLAIM_S,
        metavar="S",
        help=f"how long a claim lasts without renewal: a killed worker's scan waits this "
        f"long for another (default {CLAIM_S:g})",
    )
    w.add_argument("--log-level", default="INFO")
    w.set_defaults(func=cmd_worker)


__all__ = [
    "check_transmission_range",
    "cmd_analyze",
    "cmd_compare",
    "cmd_confirm",
    "cmd_hs",
    "cmd_profiles",
    "cmd_worker",
    "load_transmission",
    "register",
]
