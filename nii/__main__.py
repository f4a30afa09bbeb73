"""``nii``: the one command of the platform.

Every error a user can cause ends as two lines, ``error: …`` and ``fix: …``,
with exit status 2; no traceback reaches a user (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from core.errors import ConfigError, NiiError

if TYPE_CHECKING:
    import asyncio


class _Parser(argparse.ArgumentParser):
    """argparse with the platform's two lines: ``error: …`` and ``fix: …``, exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {self.prog}: {message}\nfix: see '{self.prog} --help'\n")
        sys.exit(2)


def _int_at_least(lo: int) -> Any:
    """An argparse ``type``: an integer ≥ ``lo`` (a usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{v} is out of range: give {lo} or more")
        return v

    return parse


def _seconds(text: str) -> float:
    """An argparse ``type``: a finite number of seconds ≥ 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= v < 1e9:
        raise argparse.ArgumentTypeError(f"{text} is out of range: give 0 or more seconds")
    return v


def out_file(path: str | Path, what: str) -> Path:
    """An output file the command may write: its folder exists and it is not a folder.

    Raises:
        ConfigError: naming the path and what to do, before anything is written.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {p} is a folder", fix=f"give a file name, e.g. {p / 'out'}")
    if not p.parent.is_dir():
        raise ConfigError(
            f"cannot write {what} {p}: the folder {p.parent} does not exist",
            fix=f"create it first (mkdir -p {p.parent}) or write elsewhere",
        )
    return p


def out_dir(path: str | Path, what: str) -> Path:
    """An output folder: created when missing; refused when a file is in its place.

    Raises:
        ConfigError: the path is a file, or the folder cannot be created.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(
            f"{what} {p} is a file, not a folder", fix="give a folder (it is created if missing)"
        )
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {what} {p}: {exc.strerror or exc}",
            fix="check the path and its permissions",
        ) from exc
    return p


def _central_cfg(args: argparse.Namespace) -> Any:
    from core.config import CentralConfig

    return CentralConfig.load(Path(args.config))


# -- keys ----------------------------------------------------------------------------
def cmd_keys(args: argparse.Namespace) -> int:
    from core.keys import CirKey, EdgeKey

    if args.kind == "edge" and not args.id:
        raise NiiError("'nii keys edge' needs --id", fix="e.g. nii keys edge --id edge-a")
    out = out_dir(args.out, "key folder --out")
    if args.kind == "edge":
        priv, pub = EdgeKey.generate(args.id).save(out, force=args.force)
        print(f"edge private key: {priv} (keep it on the edge box, mode 0600)")
        print(f"edge public key:  {pub} (enroll it: nii central enroll --config … {pub})")
    else:
        priv, pub = CirKey.generate().save(out, force=args.force)
        print(f"CIR private key: {priv} (keep it on the central aggregator, mode 0600)")
        print(f"CIR public key:  {pub} (copy it to every edge box)")
    return 0


# -- central -------------------------------------------------------------------------
def cmd_central(args: argparse.Namespace) -> int:
    from central._cir import open_cir
    from core.keys import EdgePublic

    cfg = _central_cfg(args)
    if args.action in (None, "run"):
        from central import run_central
        from core import runtime
        from core.locks import hold

        lock = hold(cfg.state_dir, "a central aggregator", name="central")  # one per CIR
        try:
            runtime.setup_logging(args.log_level)
            runtime.run(lambda stop: run_central(cfg, stop))
        finally:
            lock.release()
        return 0
    pub = None
    if args.action == "enroll":  # the key file first: a typo there changes nothing
        if not args.target:
            raise NiiError(
                "enroll needs the edge's public key file",
                fix="nii central enroll --config central.toml edge-a.pub",
            )
        pub = EdgePublic.load(Path(args.target))
    create = args.action == "enroll" and bool(getattr(args, "create", False))
    # a national CIR (cir = "postgresql://…") is its database: no file to look for
    if not create and not cfg.cir and not (cfg.state_dir / "cir.sqlite").exists():
        raise ConfigError(
            f"there is no CIR in {cfg.state_dir} (state_dir of {cfg.path})",
            fix="check state_dir in the central configuration; on a new installation "
            "start central once, or enroll with --create",
        )
    cir = open_cir(cfg, create=create)
    try:
        if pub is not None:
            cir.enroll(pub, note=args.note or "")
            print(f"enrolled edge {pub.id}")
        elif args.action == "revoke":
            if not args.target:
                raise NiiError(
                    "revoke needs an edge id", fix="nii central revoke --config central.toml edge-a"
                )
            cir.revoke(args.target)
            print(f"revoked edge {args.target}")
        elif args.action == "edges":
            for e in cir.edges():
                state = "revoked" if e["revoked_ns"] else "enrolled"
                print(f"{e['id']:<20} {state:<9} {e['curve_public']}")
    finally:
        cir.close()
    return 0


# -- edge ----------------------------------------------------------------------------
def cmd_edge(args: argparse.Namespace) -> int:
    from core import runtime
    from core.config import EdgeConfig
    from core.locks import hold
    from edge import run_edge

    cfg = EdgeConfig.load(Path(args.config))
    lock = hold(cfg.state_dir, "an edge daemon", name="edge")  # one per state directory
    try:
        runtime.setup_logging(args.log_level)
        runtime.run(lambda stop: run_edge(cfg, stop))
    finally:
        lock.release()
    return 0


# -- cir -----------------------------------------------------------------------------
def cmd_cir(args: argparse.Namespace) -> int:
    from central._cir import open_cir

    cfg = _central_cfg(args)
    if args.action == "migrate":
        from central._migrate import migrate_command

        return migrate_command(
            cfg,
            to=args.to,
            blobs=args.blobs,
            s3_endpoint=args.s3_endpoint,
            s3_credentials=Path(args.s3_credentials) if args.s3_credentials else None,
        )
    # verify changes nothing of what it checks (an auditor's copy may be read-only)
    cir = open_cir(cfg, create=False, read_only=args.action == "verify")
    try:
        return _cir_action(args, cfg, cir)
    except Exception as exc:
        from central._sql import is_sql_error

        if not is_sql_error(exc) or getattr(args, "debug", False):
            raise
        raise _engine_error(cir, exc, verifying=args.action == "verify") from exc
    finally:
        cir.close()


def _cir_action(args: argparse.Namespace, cfg: Any, cir: Any) -> int:
    from central._reader import scan_arrays
    from core.keys import CirKey
    from core.seal import Opener

    if args.action == "scans":
        rows = cir.scans(limit=args.limit)
        print(
            f"{'ref':>5} {'scanner':<12} {'scan':>6} {'status':<11} {'lines':>11} "
            f"{'gaps':>4}  started"
        )
        for r in rows:
            # a row is the CIR's index, not evidence: whatever it holds (a NULL, a value
            # edited behind the CIR's back) is listed as it is; `cir verify` judges it
            t0 = r["started_ns"]
            started = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0 / 1e9))
                if type(t0) is int and 0 <= t0 < 1 << 62
                else "-"
            )
            v = {k: "-" if r.get(k) is None else str(r[k]) for k in r}
            print(
                f"{v['ref']:>5} {v['scanner']:<12} {v['scan_id']:>6} {v['status']:<11} "
                f"{v['lines_received']:>5}/{v['lines_planned']:<5} {v['gaps']:>4}  "
                f"{started}"
            )
    elif args.action == "alarms":
        for a in cir.alarm_rows(limit=args.limit):
            t = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["ts_ns"] / 1e9))
            # the edge that raised it: an alarm for a scanner is only ever its own edge's,
            # and an edge-level one (no scanner) is told apart by its sender
            print(
                f"{t} {a['kind']:<18} {a['scanner'] or '-':<12} "
                f"{a.get('edge') or '-':<12} {a['message']}"
            )
    elif args.action == "att":
        _print_att(cir, args.limit, args.json)
    elif args.action == "verdict":
        return _print_verdict(cir, args.ref, args.json)
    elif args.action == "calibration":
        _print_calibration(cir, args.scanner, history=args.all)
    elif args.action == "verify":
        return _verify_cir(cir, cfg.key)
    elif args.action == "show":
        png = out_file(args.png, "--png")
        _show_scan(cir, CirKey.load(cfg.key), args.ref, str(png), args.width)
    elif args.action == "export":
        import numpy as np

        if args.ref is None or not args.out:
            raise NiiError(
                "export needs a scan ref and --out",
                fix="nii cir export --config central.toml 3 --out scan3.npz",
            )
        if args.tiff:
            return _export_tiff(cir, CirKey.load(cfg.key), args.ref, Path(args.out))
        out_file(args.out, "--out")
        arrays = scan_arrays(cir, Opener(CirKey.load(cfg.key).x25519_private), args.ref)
        np.savez_compressed(args.out, **arrays)  # type: ignore[arg-type]
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    elif args.action == "uff":
        from central.products._export import export_uff

        out_file(args.out, "--out")
        out = export_uff(cir, Opener(CirKey.load(cfg.key).x25519_private), args.ref, args.out)
        print(f"wrote {out}: scan {args.ref} as a UFF-style package (docs/uff.md)")
    elif args.action == "dicos":
        from central.products._tdr import export_dicos

        key = CirKey.load(cfg.key)
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise ConfigError(
                f"--out {args.out} is a file, not a folder",
                fix="give a folder for REF-dx.dcm and REF-tdr.dcm (created if missing)",
            )
        for written in export_dicos(cir, Opener(key.x25519_private), args.ref, args.out):
            print(f"wrote {written}")
    return 0


class CirDamaged(NiiError):
    """The CIR's database refused a read: damaged, a table gone, or locked."""

    exit_code = 1


def _engine_error(cir: Any, exc: BaseException, *, verifying: bool = False) -> NiiError:
    """One clear error for the database engine's own refusal of a ``nii cir`` read (a
    lock held elsewhere, a damaged file, a table dropped): never 'this is a bug'."""
    from central._sql import is_lock_error, is_unreachable, sqlite_fix

    where = getattr(cir, "database", "") or str(cir.dir / "cir.sqlite")
    if is_unreachable(exc):
        return ConfigError(
            f"the CIR's database went away: {exc}",
            fix="check that the PostgreSQL server is up (cir in [central]), then run again",
        )
    if is_lock_error(exc):
        return ConfigError(f"the CIR's database {where} is locked: {exc}", fix=sqlite_fix(exc))
    return CirDamaged(
        f"the CIR's database {where} cannot be read as a CIR: {exc} (damaged, or edited "
        "behind the CIR's back)",
        fix=("" if verifying else "run 'nii cir verify' to see what is wrong; ")
        + "restore the CIR from its backup (docs/scale.md)",
    )


def _verify_cir(cir: Any, key_file: Path) -> int:
    """``nii cir verify``: the database, every chain, the scan rows against their signed
    records (with the CIR key), rows of no chain, and the blobs no row names.

    Returns:
        0 when everything verified; 1 when anything did not, or the CIR key given is
        unreadable or not this CIR's (a missing key file only leaves the scan rows
        unchecked, as for an auditor's copy of the public parts).
    """
    from central._reader import judge_orphans, key_opens, verify_stream
    from central._sql import schema_problems
    from core.keys import CirKey
    from core.seal import Opener

    bad = 0
    damaged = schema_problems(cir.sql)
    for p in damaged:
        print(p)
    if damaged:
        bad += 1
        if any(f"table {t} " in p for p in damaged for t in ("streams", "blocks", "scans")):
            print("the chains cannot be walked without their tables: verification failed")
            return 1
    streams = [r["scanner"] for r in cir.sql.rows("SELECT scanner FROM streams")]
    # the scan rows' records are sealed to the CIR key: without it (an auditor's copy
    # of the public parts only) the chains are still checked, and it says so
    opener: Opener | None = None
    unchecked, key_failed = "", False
    try:
        opener = Opener(CirKey.load(key_file).x25519_private)
    except NiiError as exc:
        unchecked = f"they need the CIR key: {exc.message}"
        # a key file that is there but is no key is a mistake to fix, not a choice
        key_failed = os.path.lexists(key_file) and not _unreadable_to_us(key_file)
    if opener is not None:
        opened, tried = key_opens(cir, opener)
        if tried and not opened:
            opener, key_failed = None, True
            unchecked = (
                f"the CIR key {key_file} opens none of the {tried} latest scan records: "
                "it is not the key this CIR's edges seal to"
            )
    if unchecked:
        print(f"scan rows not checked ({unchecked})")
        print(
            f"  fix: key in [central] names {key_file}, which is not this CIR's key: point "
            "it at central's own cir.key"
            if key_failed
            else "  fix: give central's own CIR key (central.toml: key) to check them too"
        )
    for s in streams:
        if not isinstance(s, str):  # a stream row edited behind the CIR's back
            print(f"a stream row names scanner {s!r}, no scanner id: FAILED")
            bad += 1
            continue
        rep = verify_stream(cir, s, opener)
        status = "OK" if rep.ok else "FAILED"
        print(
            f"{s:<12} edge {rep.edge:<12} blocks {rep.blocks:>7} "
            f"seq {rep.first_seq}..{rep.last_seq}: {status}"
        )
        for p in rep.problems[:20]:
            print(f"    {p}")
        if len(rep.problems) > 20:
            print(f"    ... and {len(rep.problems) - 20} more problem(s)")
        bad += not rep.ok
    chains_bad = bad - bool(damaged)
    # a scan row that no chain backs is no scan the CIR received
    unbacked = cir.sql.rows(
        "SELECT ref, scanner FROM scans WHERE scanner IS NULL "
        "OR scanner NOT IN (SELECT scanner FROM streams) ORDER BY ref"
    )
    if unbacked:
        print(
            f"{len(unbacked)} scan row(s) of no scanner's chain in the CIR "
            "(written behind the CIR's back): "
            + ", ".join(f"ref {u['ref']} ({u['scanner']})" for u in unbacked[:10])
        )
        bad += 1
    orphans = judge_orphans(cir, cir.orphan_blobs())
    for line in orphans.deleted:
        print(line)
    bad += bool(orphans.deleted)
    if orphans.cut_short:
        print(
            f"{len(orphans.cut_short)} blob(s) in {cir.blobs.location} that no block row "
            "names (a batch cut short before its index committed, or still committing; "
            "the edge resent it): harmless, e.g. " + ", ".join(orphans.cut_short[:3])
        )
    if orphans.unsealed:
        print(
            f"{len(orphans.unsealed)} file(s) in {cir.blobs.location} that are no sealed "
            "block (a write cut by a power loss, or put there by hand); nothing refers to "
            "them, e.g. " + ", ".join(orphans.unsealed[:3])
        )
    if bad:
        said = [f"{chains_bad} of {len(streams)} chains failed verification"] if chains_bad else []
        if damaged:
            said.append("the database itself is damaged")
        if unbacked:
            said.append("scan rows stand without a chain")
        if orphans.deleted:
            said.append("index rows of committed blocks were deleted")
        print("verification FAILED: " + "; ".join(said))
        return 1
    print(
        f"all {len(streams)} chains verified: signatures, digests, links, index "
        + ("rows and scan rows intact" if opener else "rows intact (scan rows unchecked)")
    )
    if key_failed:  # asked to check the scan rows, and could not
        print("verification incomplete: the CIR key given could not check the scan rows")
        return 1
    return 0


def _unreadable_to_us(path: Path) -> bool:
    """Whether ``path`` is a file this user may not read (an auditor's account without
    the CIR key's permission): the key is then absent for us, not broken."""
    return os.path.isfile(path) and not os.access(path, os.R_OK)


def _print_calibration(cir: Any, scanner: str, *, history: bool) -> None:
    """A scanner's current calibration as its scans brought it (JSON), or its history.

    Raises:
        ConfigError: no scanner of that id in the CIR, or none of its scans brought one.
    """
    import json

    known = cir.scanner_ids()
    if scanner not in known:
        raise ConfigError(
            f"no scanner {scanner!r} is known to this CIR "
            f"(known: {', '.join(known) or 'none yet'})",
            fix="check the id against 'nii cir scans'",
        )
    rows = cir.calibrations(scanner)
    if not rows:
        raise ConfigError(
            f"no scan of {scanner} came with a scanner calibration",
            fix="commission the scanner ('nii sim wedges' or its real step-wedge scan, then "
            "'nii atr calibrate') and put calibration = FILE in its edge's [[scanner]] table",
        )
    if not history:
        print(json.dumps(json.loads(rows[0]["document"]), indent=2))
        return

    def when(ns: int | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((ns or 0) / 1e9))

    print(f"{'sha256':<16} {'first seen':<19} {'last seen':<19} {'refs':>13} {'scans':>6}  fit")
    for i, r in enumerate(rows):
        doc = json.loads(r["document"])
        name = doc.get("scanner", "?") if isinstance(doc, dict) else "?"
        fit = doc.get("fit_error", {}) if isinstance(doc, dict) else {}
        rho = fit.get("areal_density_rel_rms") if isinstance(fit, dict) else None
        figure = f"rho {rho:.1%}" if isinstance(rho, int | float) else ""
        refs = f"{r['first_ref']}-{r['last_ref']}"
        print(
            f"{r['sha256'][:16]} {when(r['first_seen_ns'])} {when(r['last_seen_ns'])} "
            f"{refs:>13} {r['scans']:>6}  {name} {figure}{'  (current)' if i == 0 else ''}"
        )


def _export_tiff(cir: Any, key: Any, ref: int, out: Path) -> int:
    """Scan ``ref`` as the 16-bit high/low TIFFs that ``nii atr analyze`` reads
    (transmission T x 65535, calibrated from the scan's own dark and air lines, rows =
    channels), its GD (``gd.json``) and what it is (``scan.json``: pixel size, container)."""
    import json
    import shlex

    import cv2
    import numpy as np

    from central._reader import scan_arrays
    from central.atr._live import calibrated, live_gd, missing_lines, pixel_size
    from core.seal import Opener

    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"--out {out} is a file, not a folder",
            fix="give a folder for high.tiff and low.tiff (made if missing)",
        )
    arrays = scan_arrays(cir, Opener(key.x25519_private), ref)
    missing = missing_lines(arrays)
    if missing is not None:
        fix = missing[1] or "pick a scan with image lines from 'nii cir scans'"
        raise NiiError(f"scan {ref}: {missing[0]}", fix=fix)
    a_hi, a_lo = calibrated(arrays)
    s = cir.scan(ref)
    try:
        start = json.loads(s.get("start_record") or "{}")
    except ValueError:
        start = {}
    start = start if isinstance(start, dict) else {}
    channels, lines = arrays["image_high"].shape
    line_mm, channel_mm, px_from = pixel_size(start, channels, lines)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, a in (("high", a_hi), ("low", a_lo)):
            t16 = np.clip(np.exp(-a) * 65535.0 + 0.5, 0, 65535).astype(np.uint16)
            if not cv2.imwrite(str(out / f"{name}.tiff"), np.ascontiguousarray(t16.T)):
                raise OSError(f"could not write {out / f'{name}.tiff'}")
        gd = live_gd(start)
        if gd is not None:
            (out / "gd.json").write_text(json.dumps(gd, indent=2) + "\n")
        (out / "scan.json").write_text(json.dumps({
            "ref": ref, "scanner": s["scanner"], "scan_id": s["scan_id"],
            "container": s["container"], "gd_number": s.get("gd_number"),
            "status": s["status"], "pixel_mm": [line_mm, channel_mm], "pixel_mm_from": px_from,
        }, indent=2) + "\n")  # fmt: skip
    except OSError as exc:
        raise ConfigError(
            f"cannot write into {out}: {exc}",
            fix="check that the folder is writable and has free space",
        ) from exc
    gd_opt = f" --gd {shlex.quote(str(out / 'gd.json'))}" if gd is not None else ""
    print(
        f"wrote {out}: high.tiff and low.tiff ({lines} lines x {channels} channels, 16-bit "
        f"transmission), scan.json{', gd.json' if gd is not None else ''}\n"
        f"analyse it: nii atr analyze --high {shlex.quote(str(out / 'high.tiff'))} --low "
        f"{shlex.quote(str(out / 'low.tiff'))} --pixel-mm {line_mm:.4f} {channel_mm:.4f}{gd_opt}"
    )
    return 0


def _print_verdict(cir: Any, ref: int, as_json: bool) -> int:
    """The stored ATR verdict of scan ``ref`` and the officers' decisions on it."""
    import json

    from central.atr._live import format_verdict
    from central.control_room._decisions import decisions_of

    scan = cir.scan(ref)
    if scan is None:
        raise NiiError(f"no scan with ref {ref} in the CIR", fix="list scans with 'nii cir scans'")
    row = cir.sql.one("SELECT doc FROM verdicts WHERE ref = ?", [ref])
    doc = json.loads(row["doc"]) if row else None
    decided = decisions_of(cir.sql, ref)
    if as_json:
        print(json.dumps({"ref": ref, "verdict": doc, "decisions": decided}, indent=2))
        return 0
    if doc is None:
        print(f"scan {ref} ({scan['scanner']} scan {scan['scan_id']}, {scan['status']}): "
              "no ATR verdict stored")  # fmt: skip
    else:
        print(format_verdict(doc, top=len(doc.get("findings") or [])))
    for d in decided:
        t = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["created_ns"] / 1e9))
        mandate = " (Physical Examination Mandate)" if d["mandate"] else ""
        print(f"{t} {d['verdict'].upper()}{mandate} {d['kind']} by {d['by']} ({d['role']}): "
              f"{d['reason']}; {len(d['marks'])} marked region(s)")  # fmt: skip
    return 0


def _print_att(cir: Any, limit: int, as_json: bool) -> None:
    """ATT results (R12), newest exit scan first: one line each, or the documents as JSON."""
    import json

    from central.atr._store import att_docs

    docs = att_docs(cir.sql, limit)
    if as_json:
        print(json.dumps(docs, indent=2))
        return
    if not docs:
        print("no ATT results: no exit scan has been paired yet")
        return
    head = f"{'exit':>5} {'entry':>5} {'container':<12} {'result':<13}"
    print(f"{head} {'seal A':<10} {'seal B':<10} why")
    for d in docs:
        result = "HOLD" if d.get("hold") else str(d.get("result"))
        ref_a = d.get("ref_a")
        print(
            f"{d.get('ref_b'):>5} {'-' if ref_a is None else ref_a:>5} "
            f"{d.get('container') or '?':<12} {result:<13} {d.get('seal_a') or '-':<10} "
            f"{d.get('seal_b') or '-':<10} {d.get('reason')}"
        )


def _show_scan(cir: Any, key: Any, ref: int, png: str, width: int | None) -> None:
    """Calibrate a scan from its own dark and air lines and render it material-coloured."""
    from central._reader import scan_arrays
    from central.render import write_png
    from core.calibration import DetectorCalibration, calibrate_scan
    from core.seal import Opener

    a = scan_arrays(cir, Opener(key.x25519_private), ref)
    if "image_high" not in a:
        raise NiiError(
            f"scan {ref} has no image lines in the CIR",
            fix="pick a finished scan from 'nii cir scans'",
        )
    if "dark_high" not in a or "air_high" not in a:
        raise NiiError(
            f"scan {ref} has no calibration lines in the CIR",
            fix="the scanner must send dark and air lines at scan start",
        )
    det = DetectorCalibration.from_lines(
        a["dark_high"].T, a["dark_low"].T, a["air_high"].T, a["air_low"].T
    )
    import json

    from central.atr._live import pixel_size

    cal = calibrate_scan(det, a["image_high"].T, a["image_low"].T)
    s = cir.scan(ref)
    channels, lines = a["image_high"].shape
    try:
        start = json.loads(s.get("start_record") or "{}")
    except ValueError:
        start = {}
    line_mm, channel_mm, px_from = pixel_size(start if isinstance(start, dict) else {},
                                              channels, lines)  # fmt: skip
    row = cir.sql.one("SELECT doc FROM verdicts WHERE ref = ?", [ref])
    verdict = json.loads(row["doc"]) if row else {}
    findings = verdict.get("findings") or []
    incomplete = "" if s["status"] == "complete" else (
        f" *** {str(s['status']).upper()}: {s['lines_received']}/{s['lines_planned']} lines, "
        f"{s['gaps']} gap(s) ***"
    )  # fmt: skip
    caption = [
        f"scan {s['scan_id']} of {s['scanner']} (ref {ref}), container {s['container'] or '?'}, "
        f"GD {s.get('gd_number') or '-'}{incomplete}",
        f"ATR: {str(verdict.get('verdict') or 'no verdict').upper()}, {len(findings)} finding(s);"
        f" pixel {line_mm:.1f} x {channel_mm:.1f} mm ({px_from})",
    ]
    out = write_png(
        png, cal.a_hi, cal.materials.material, width=width,
        annotate_with={"line_mm": line_mm, "channel_mm": channel_mm, "findings": findings,
                       "caption": caption},
    )  # fmt: skip
    print(
        f"wrote {out}: scan {s['scan_id']} of {s['scanner']}, container "
        f"{s['container'] or '?'}, {lines} lines x {channels} channels, "
        f"{lines * line_mm / 1000:.2f} m x {channels * channel_mm / 1000:.2f} m, "
        f"{len(findings)} finding(s) boxed"
    )


# -- control room --------------------------------------------------------------------
def cmd_control_room(args: argparse.Namespace) -> int:
    if args.action == "serve":
        from central.control_room._serve import serve

        return serve(Path(args.config))
    import asyncio

    from central._feed import tail
    from core import runtime
    from core.config import check_endpoint

    # several aggregators sharing a national CIR each publish their own feed: one SUB
    # socket connects to all of them (decision 0018)
    feeds = list(dict.fromkeys(args.feed or ["tcp://127.0.0.1:7601"]))
    for feed in feeds:
        check_endpoint(feed)
        _check_host(feed)

    async def main(stop: asyncio.Event) -> None:
        watches = [
            asyncio.create_task(_watch_feed(feed, stop), name=f"feed watch {feed}")
            for feed in feeds
        ]
        try:
            await tail(
                feeds,
                previews=not args.no_previews,
                as_json=args.json,
                status=args.status,
                count=args.count,
                stop=stop,
            )
        finally:
            for w in watches:
                w.cancel()
            await asyncio.gather(*watches, return_exceptions=True)

    runtime.run(main)  # uvloop; SIGINT and SIGTERM end it cleanly
    return 0


FEED_SILENT_S = 5.0
"""After this long without a word from the feed, ``control-room tail`` says so (s)."""
FEED_REPEAT_S = 15.0
"""... and again every this many seconds while it lasts (central's status comes every 2 s)."""


def _check_host(endpoint: str) -> None:
    """A feed host name that does not resolve is an error at once, not a silent wait."""
    import socket

    if not endpoint.startswith("tcp://"):
        return
    host = endpoint.removeprefix("tcp://").rpartition(":")[0].strip("[]")
    if host == "*":
        return
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(
            f"the feed host {host!r} in {endpoint} is not known: {exc}",
            fix="check the name, or give central's address, e.g. tcp://192.0.2.5:7601",
        ) from None


async def _watch_feed(endpoint: str, stop: asyncio.Event) -> None:
    """Tell the user (stderr) when nothing answers at ``endpoint``, and when it does again.

    Central publishes its status on the feed every 2 s, so silence for
    :data:`FEED_SILENT_S` means nothing is publishing there (central down, or a
    wrong address). The tail keeps trying; this only says so.
    """
    import asyncio

    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"central.status")
    sock.connect(endpoint)
    loop_time = asyncio.get_running_loop().time
    heard = loop_time()
    said = 0.0  # when silence was last reported (0: not reported since last heard)
    try:
        while not stop.is_set():
            if await sock.poll(250):
                await sock.recv_multipart()
                if said:
                    print(f"feed {endpoint} answers now", file=sys.stderr, flush=True)
                heard, said = loop_time(), 0.0
                continue
            now = loop_time()
            quiet = now - heard
            if quiet >= FEED_SILENT_S and (not said or now - said >= FEED_REPEAT_S):
                print(
                    f"nothing answers at {endpoint} for {quiet:.0f} s: is central running, "
                    "and is this its feed address (feed in central.toml)? still trying",
                    file=sys.stderr,
                    flush=True,
                )
                said = now
    finally:
        sock.close(linger=0)
        ctx.term()


# -- demo, bench ---------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    if args.national:
        from nii._demo_national import run_national_demo

        return run_national_demo(
            Path(args.dir or "var/demo-national"),
            seconds=args.seconds,
            kill_after_s=args.kill_after,
        )
    from nii._demo import run_demo

    return run_demo(Path(args.dir or "var/demo"), seconds=args.seconds, scanners=args.scanners)


def cmd_config(args: argparse.Namespace) -> int:
    from core.config import EXAMPLE_CENTRAL, EXAMPLE_EDGE

    if args.kind == "control-room":
        from central.control_room._config import EXAMPLE

        print(EXAMPLE, end="")
        return 0
    print(EXAMPLE_CENTRAL if args.kind == "central" else EXAMPLE_EDGE, end="")
    return 0


def _add_sim(sub: Any) -> None:
    from firmware_sim.cli import register

    register(sub)


def _add_ops(sub: Any) -> None:
    from nii._ops_cli import register

    register(sub)


def _add_atr(sub: Any) -> None:
    from central.atr.cli import register

    register(sub)


def _add_bench(sub: Any) -> None:
    from bench import register
    from nii import _local_servers

    register(sub, _local_servers)


def _add_users(sub: Any) -> None:
    from nii._users_cli import register

    register(sub)


def _add_risk(sub: Any) -> None:
    from nii._risk_cli import register

    register(sub)


def _add_qa(sub: Any) -> None:
    from central.qa import register_qa
    from firmware_sim.physics import qa_simulation

    register_qa(sub, simulate=qa_simulation)


#: the commands other packages add, and who adds them (kept in ``nii --help`` order)
_REGISTRARS: tuple[tuple[frozenset[str], Callable[[Any], None]], ...] = (
    (frozenset({"sim"}), _add_sim),
    (frozenset({"uptime", "coverage", "doctor", "site-sim"}), _add_ops),
    (frozenset({"atr"}), _add_atr),
    (frozenset({"bench"}), _add_bench),
    (frozenset({"qa"}), _add_qa),
    (frozenset({"users"}), _add_users),
    (frozenset({"risk"}), _add_risk),
)
_OWN = frozenset({"keys", "central", "edge", "cir", "control-room", "demo", "config"})


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` asks for, if it is one ``nii`` knows; None for the help or a
    command ``nii`` does not know (every command is then registered, for the help or
    argparse's list of choices); "" for ``--version``."""
    for a in argv:
        if a == "--version":
            return ""  # no other package's command
        if a in ("-h", "--help"):
            return None
        if not a.startswith("-"):
            known = a in _OWN or any(a in names for names, _ in _REGISTRARS)
            return a if known else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``nii`` parser; with ``command``, only that command's package is imported
    (the parser then knows the commands of ``nii`` itself and ``command``'s)."""
    p = _Parser(prog="nii", description="Open Non-Intrusive Inspection platform")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    p.add_argument("--version", action="version", version=f"nii {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    k = sub.add_parser("keys", help="create key files of an edge or of the CIR")
    k.add_argument("kind", choices=["edge", "cir"])
    k.add_argument("--id", help="edge id (for 'edge')")
    k.add_argument("--out", default="keys", help="directory for the key files (keys)")
    k.add_argument("--force", action="store_true", help="overwrite existing key files")
    k.set_defaults(func=cmd_keys)

    cfg_opt = _Parser(add_help=False)
    cfg_opt.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="central configuration (TOML, default central.toml)",
    )

    c = sub.add_parser("central", help="run the central aggregator, or manage enrollment")
    c.add_argument("--config", default="central.toml", help="central configuration (TOML)")
    c.add_argument("--log-level", default="INFO")
    c.set_defaults(func=cmd_central, action="run", target=None, note=None)
    cs = c.add_subparsers(dest="action", metavar="ACTION")
    cs.add_parser("run", parents=[cfg_opt], help="run the aggregator (the default)")
    ce = cs.add_parser("enroll", parents=[cfg_opt], help="enroll an edge from its .pub file")
    ce.add_argument("target", metavar="EDGE.pub")
    ce.add_argument("--note", help="note stored with the enrollment")
    ce.add_argument(
        "--create",
        action="store_true",
        help="create the CIR in state_dir if there is none yet (a new installation)",
    )
    cr_ = cs.add_parser("revoke", parents=[cfg_opt], help="revoke an edge")
    cr_.add_argument("target", metavar="EDGE_ID")
    cs.add_parser("edges", parents=[cfg_opt], help="list enrolled edges")

    e = sub.add_parser("edge", help="run an edge daemon")
    e.add_argument("--config", default="edge.toml", help="edge configuration (TOML)")
    e.add_argument("--log-level", default="INFO")
    e.set_defaults(func=cmd_edge)

    r = sub.add_parser("cir", help="look into the Central Image Repository")
    r.add_argument("--config", default="central.toml", help="central configuration (TOML)")
    r.set_defaults(func=cmd_cir, ref=None, out=None, limit=50, json=False, tiff=False)
    rs = r.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, what in (("scans", "list scans"), ("alarms", "list alarms")):
        x = rs.add_parser(name, parents=[cfg_opt], help=what)
        x.add_argument("--limit", type=_int_at_least(1), default=50)
    ra = rs.add_parser(
        "att", parents=[cfg_opt], help="list ATT results: exit scans against entry scans, HOLDs"
    )
    ra.add_argument("--limit", type=_int_at_least(1), default=50)
    ra.add_argument("--json", action="store_true", help="the whole ATT documents, as a JSON list")
    rv = rs.add_parser(
        "verdict", parents=[cfg_opt], help="one scan's ATR verdict and the officers' decisions"
    )
    rv.add_argument("ref", type=int, help="scan ref (see 'nii cir scans')")
    rv.add_argument("--json", action="store_true", help="the documents as JSON")
    rc_ = rs.add_parser(
        "calibration",
        parents=[cfg_opt],
        help="a scanner's calibration as its scans brought it (JSON); --all: its history",
    )
    rc_.add_argument("scanner", metavar="SCANNER", help="scanner id (see 'nii cir scans')")
    rc_.add_argument(
        "--all", action="store_true", help="every calibration its scans brought, current first"
    )
    rs.add_parser(
        "verify", parents=[cfg_opt], help="verify every chain: signatures, digests, links"
    )
    rm = rs.add_parser(
        "migrate",
        parents=[cfg_opt],
        help="copy this CIR into a national one (PostgreSQL + object store), then verify it",
    )
    rm.add_argument(
        "--to", required=True, metavar="URL", help="the national database: postgresql://…"
    )
    rm.add_argument(
        "--blobs",
        metavar="s3://BUCKET/PREFIX",
        help="the national blob store (default: the blobs stay where they are)",
    )
    rm.add_argument(
        "--s3-endpoint", metavar="URL", help="the S3 server's URL (default: the config's)"
    )
    rm.add_argument(
        "--s3-credentials",
        metavar="FILE",
        help="INI file: [default] aws_access_key_id, aws_secret_access_key "
        "(default: the config's, else AWS_ACCESS_KEY_ID … in the environment)",
    )
    rsh = rs.add_parser("show", parents=[cfg_opt], help="render one scan, material-coloured")
    rsh.add_argument("ref", type=int, help="scan ref (see 'nii cir scans')")
    rsh.add_argument("--png", required=True, help="output PNG file")
    rsh.add_argument(
        "--width", type=_int_at_least(1), default=None, help="scale to this width in pixels"
    )
    rx = rs.add_parser("export", parents=[cfg_opt], help="decrypt one scan to .npz arrays")
    rx.add_argument("ref", type=int, help="scan ref (see 'nii cir scans')")
    rx.add_argument("--out", required=True, help="output .npz file (with --tiff: a folder)")
    rx.add_argument(
        "--tiff",
        action="store_true",
        help="write high.tiff and low.tiff (16-bit transmission, as 'nii atr analyze' reads "
        "them), gd.json and scan.json into the folder --out",
    )
    ru = rs.add_parser("uff", parents=[cfg_opt], help="one scan as a UFF-style package")
    ru.add_argument("ref", type=int, help="scan ref (see 'nii cir scans')")
    ru.add_argument("--out", required=True, help="output .uff file")
    rd = rs.add_parser("dicos", parents=[cfg_opt], help="one scan as DICOS DX image + ATR TDR")
    rd.add_argument("ref", type=int, help="scan ref (see 'nii cir scans')")
    rd.add_argument("--out", required=True, help="output folder (REF-dx.dcm, REF-tdr.dcm)")

    cr = sub.add_parser(
        "control-room", help="the control room in the browser (serve), or the feed as text (tail)"
    )
    cr.add_argument("action", choices=["serve", "tail"])
    cr.add_argument(
        "--config",
        default="control-room.toml",
        help="with serve: the control room's configuration (TOML, default control-room.toml; "
        "'nii config control-room' prints an example)",
    )
    cr.add_argument(
        "--feed",
        action="append",
        metavar="ENDPOINT",
        help="an aggregator's live feed (default tcp://127.0.0.1:7601); give it once per "
        "aggregator of a national CIR to follow them all",
    )
    cr.add_argument("--json", action="store_true", help="print events as JSON lines")
    cr.add_argument("--no-previews", action="store_true", help="leave out line-block previews")
    cr.add_argument("--status", action="store_true", help="also central's status every 2 s")
    cr.add_argument(
        "--count", type=_int_at_least(0), default=0, help="stop after N events (0 = never)"
    )
    cr.set_defaults(func=cmd_control_room)

    d = sub.add_parser("demo", help="central + simulated scanners + edge on loopback")
    d.add_argument("--dir", help="where the demo keeps its state (var/demo, var/demo-national)")
    d.add_argument("--seconds", type=_seconds, default=0, help="stop after S seconds (0 = Ctrl-C)")
    d.add_argument("--scanners", type=_int_at_least(1), default=2, help="simulated scanners (2)")
    d.add_argument(
        "--national",
        action="store_true",
        help="two aggregators on PostgreSQL + an S3 object store, four scanners, and a "
        "failover: one aggregator is killed mid-scan",
    )
    d.add_argument(
        "--kill-after",
        type=_seconds,
        default=20.0,
        help="with --national: seconds before one aggregator is killed (20)",
    )
    d.set_defaults(func=cmd_demo)

    cf = sub.add_parser(
        "config", help="print an example configuration (nii config edge > edge.toml)"
    )
    cf.add_argument("kind", choices=["central", "edge", "control-room"])
    cf.set_defaults(func=cmd_config)

    # the other packages' commands are imported only when asked for (or for the help
    # and an unknown command): their imports (numba, the ATR) cost a second a call
    for names, add in _REGISTRARS:
        if command is None or command in names:
            add(sub)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nii-platform")
    except PackageNotFoundError:
        return "(not installed)"


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``nii cir alarms | head``): exit as Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    return 128 + 13  # as a process ended by SIGPIPE


def _stop_cleanly_on_sigterm() -> None:
    """SIGTERM and SIGHUP end this process as SystemExit (exit 143 / 129), so that the
    ``finally`` blocks run: the PostgreSQL, object-store and broker servers a benchmark
    started are stopped and its working folder removed, as on Ctrl-C."""
    import signal

    def leave(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    if getattr(args, "bench", None):
        _stop_cleanly_on_sigterm()  # a benchmark's servers and folders go with it
    try:
        rc = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return int(rc or 0)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return _quiet_broken_pipe()
        if exc.filename is None or getattr(args, "debug", False):
            return _unexpected(args, exc)
        # a file or folder the user named or the system refused: not a bug
        where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        print(f"error: {where}: {exc.strerror or exc}", file=sys.stderr)
        print(
            "fix: check the path, its folder, its permissions and the free space",
            file=sys.stderr,
        )
        return 2
    except NiiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _unexpected(args, exc)


def _unexpected(args: argparse.Namespace, exc: Exception) -> int:
    if getattr(args, "debug", False):
        raise exc
    print(f"error: unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
    print(
        "fix: this is a bug; run again with 'nii --debug …' and report the traceback",
        file=sys.stderr,
    )
    return 3


if __name__ == "__main__":
    sys.exit(main())
