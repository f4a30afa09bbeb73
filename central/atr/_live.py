"""Live verdicts: the ATR runs on every scan central completes and the verdict goes on the feed.

The aggregator hands over the refs of scans whose end block has just been
committed; one worker thread reads each scan back from the CIR (so the ATR
sees exactly the evidence), calibrates it from its own dark and air lines,
analyses it, records the verdict in the CIR's ``verdicts`` table and
publishes it on the live feed as ``atr.verdict``.  The event loop only
queues the job and, later, sends the message: receiving, verifying and
committing blocks go on while the ATR works (about 50–200 ms a scan).  After
the verdict of an ATT exit scan, the same worker pairs it with its entry scan
and compares them (``_transit.py``): the result goes into the CIR's ``att``
table and on the feed as ``atr.att``, a HOLD with an ``att_hold`` alarm.

Pixel size and Goods Declaration come from the scan-start record when the
scanner (or the edge) puts them there: ``pixel_mm`` [along travel, height]
(or ``line_mm`` and ``channel_mm``) and ``gd`` (a JSON object with the fields
``nii atr analyze --gd`` takes).  Without a pixel size the defaults of
:func:`pixel_size` apply (see docs/atr.md); without a GD the scan is analysed
for concealments only and the verdict says that the GD checks were skipped.

The scanner's calibration comes the same way: the edge writes the scanner's
commissioning calibration (``[[scanner]] calibration``) into every scan-start
record as ``scanner_calibration``, and the ATR reads the scan through it
(``analyze(..., scanner=cal)``: physical units, ``calibrated: true`` in the
GD checks).  Parsed calibrations are cached by their SHA-256.  A malformed one
is no crash: the scan is analysed as the reference scanner's, the verdict's
notes say why, and a ``bad_calibration`` alarm is raised once per scanner and
document.
"""
# ruff: noqa: RUF002

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import NiiError, StorageError
from core.scanner_cal import ScannerCalibration, document_sha256

from ._library import ImageLibrary, live_library
from ._store import AttStore, VerdictStore

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from central._cir import Cir
    from core.seal import Opener

log = logging.getLogger("nii.central.atr")

#: The ``model`` label of ``nii_atr_latency_seconds`` and of every verdict: which ATR made it.
MODEL = "classical-1"
#: Height of the fan at the vehicle's centre plane, mm: channel pitch = this / channels.
DEFAULT_FAN_HEIGHT_MM = 4400.0
#: Length of road a scan covers (tractor, 40 ft container, margins), mm: line pitch =
#: this / lines.
DEFAULT_SCAN_LENGTH_MM = 16500.0
#: Scans waiting for the ATR beyond this many get a "none" verdict saying so, rather
#: than verdicts that arrive minutes late.
MAX_BACKLOG = 16

Publish = Callable[[bytes, dict[str, Any]], None]
#: Alarm kind of a scan-start record whose scanner calibration cannot be used.
ALARM_BAD_CALIBRATION = "bad_calibration"
#: Waits (s) before each new try of a scan whose CIR database could not be reached (a
#: restart or a fail-over of PostgreSQL): about a minute in all, then the scan is stored
#: without a live verdict, alarmed (``atr_skipped``).
DB_RETRY_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
#: Parsed calibrations kept (by SHA-256): a site has a few scanners, each a few in its life.
CALIBRATION_CACHE = 64

_cal_cache: dict[str, ScannerCalibration | str] = {}
_cal_lock = threading.Lock()


def live_calibration(record: dict[str, Any]) -> tuple[ScannerCalibration | None, str, str]:
    """The scanner calibration a scan-start record carries: (calibration, sha256, error).

    ``(None, "", "")`` when the record carries none; ``(None, sha256, why)`` when
    it carries one that :meth:`ScannerCalibration.from_json` refuses. Parsed
    documents (and refusals) are cached by their SHA-256
    (:func:`core.scanner_cal.document_sha256`), so a scanner's calibration is
    parsed once, and its look-up tables built once, however many scans bring it.
    """
    from core.scanner_cal import CalibrationError

    doc = record.get("scanner_calibration")
    if doc is None:
        return None, "", ""
    if not isinstance(doc, dict):
        return None, "", f"scanner_calibration is a {type(doc).__name__}, not a JSON object"
    sha = document_sha256(doc)
    with _cal_lock:
        hit = _cal_cache.get(sha)
    if hit is None:
        try:
            hit = ScannerCalibration.from_json(doc, "scanner_calibration")
        except CalibrationError as exc:
            hit = exc.message
        with _cal_lock:
            if len(_cal_cache) >= CALIBRATION_CACHE:
                _cal_cache.pop(next(iter(_cal_cache)))
            _cal_cache[sha] = hit
    if isinstance(hit, str):
        return None, sha, hit
    return hit, sha, ""


def pixel_size(record: dict[str, Any], channels: int, lines: int) -> tuple[float, float, str]:
    """Pixel size (along travel, height) in mm of a live scan and where it came from.

    The scan-start record's ``pixel_mm`` [x, y] (or ``line_mm`` and
    ``channel_mm``) wins; else :data:`DEFAULT_SCAN_LENGTH_MM` / lines and
    :data:`DEFAULT_FAN_HEIGHT_MM` / channels, the geometry of the reference
    scanner (a truck with a 40 ft container over the whole scan).
    """
    px = record.get("pixel_mm")
    if not (isinstance(px, (list, tuple)) and len(px) == 2):
        px = [record.get("line_mm"), record.get("channel_mm")]
    if all(isinstance(v, (int, float)) and np.isfinite(v) and v > 0 for v in px):
        return float(px[0]), float(px[1]), "scan-start record"
    return (
        DEFAULT_SCAN_LENGTH_MM / max(1, lines),
        DEFAULT_FAN_HEIGHT_MM / max(1, channels),
        "defaults",
    )


def live_gd(record: dict[str, Any]) -> dict[str, Any] | None:
    """The Goods Declaration the scan-start record carries, if any."""
    gd = record.get("gd")
    return dict(gd) if isinstance(gd, dict) and gd else None


def _record(row: dict[str, Any], key: str) -> dict[str, Any]:
    try:
        doc = json.loads(row.get(key) or "{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def scan_base(row: dict[str, Any]) -> dict[str, Any]:
    """The fields every verdict document starts with: which scan, of what, by which ATR."""
    return {
        "ref": row["ref"],
        "scanner": row["scanner"],
        "scan_id": row["scan_id"],
        "container": row.get("container") or "",
        "model": MODEL,
        "finished_ns": row.get("finished_ns"),
    }


def no_verdict(row: dict[str, Any], why: str, fix: str = "") -> dict[str, Any]:
    """A verdict document that says why the ATR could not judge this scan."""
    doc = {**scan_base(row), "verdict": "none", "findings": [], "error": why, "ms": 0.0}
    if fix:
        doc["fix"] = fix
    doc["gd_used"] = False
    return doc


def missing_lines(arrays: dict[str, np.ndarray]) -> tuple[str, str] | None:
    """Why a scan read back from the CIR cannot be calibrated (reason, fix), or None."""
    if "image_high" not in arrays:
        return "the scan has no image lines in the CIR", ""
    if "dark_high" not in arrays or "air_high" not in arrays:
        return (
            "the scan has no dark or air lines to calibrate with",
            "the scanner must send dark and air lines at scan start",
        )
    return None


def calibrated(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Attenuations (lines, channels) at both energies of a scan read back from the CIR,
    calibrated from the scan's own dark and air lines (see :func:`missing_lines` first)."""
    from core.calibration import DetectorCalibration

    cal = DetectorCalibration.from_lines(
        arrays["dark_high"].T, arrays["dark_low"].T, arrays["air_high"].T, arrays["air_low"].T
    )
    a_hi, a_lo = cal.attenuation(arrays["image_high"].T, arrays["image_low"].T)
    return a_hi, a_lo


def verdict_doc(
    row: dict[str, Any], arrays: dict[str, np.ndarray], library: ImageLibrary | None = None
) -> dict[str, Any]:
    """Calibrate and analyse one scan read back from the CIR; the feed's verdict document.

    ``row`` is the scan's row of the ``scans`` table, ``arrays`` what
    ``central._reader.scan_arrays`` returns ((channels, lines) uint16 image,
    dark and air lines).  Garbage (no image, no calibration lines, an image
    the ATR refuses) gives verdict ``none`` with the reason, never a guess.
    """
    from ._analyze import analyze
    from ._model import AtrInputError

    if row.get("status") != "complete":
        return no_verdict(
            row,
            f"scan is {row.get('status')}: no verdict on a partial image",
            "scan the container again",
        )
    missing = missing_lines(arrays)
    if missing is not None:
        return no_verdict(row, *missing)
    t0 = time.perf_counter()
    a_hi, a_lo = calibrated(arrays)
    cal_ms = (time.perf_counter() - t0) * 1000.0
    start = _record(row, "start_record")
    channels, lines = arrays["image_high"].shape
    line_mm, channel_mm, px_from = pixel_size(start, channels, lines)
    gd = live_gd(start)
    scanner, cal_sha, cal_error = live_calibration(start)
    notes = []
    if cal_error:
        notes.append(
            f"the scanner calibration in the scan-start record cannot be used ({cal_error}): "
            "analysed as the reference scanner's image"
        )
    elif scanner is None:
        notes.append("no scanner calibration with the scan: the reference scanner is assumed")
    if gd is None:
        notes.append("no Goods Declaration with the scan: GD consistency checks skipped")
    if px_from == "defaults":
        notes.append(
            f"pixel size not in the scan-start record: default {line_mm:.2f} x "
            f"{channel_mm:.2f} mm used"
        )
    try:
        v = analyze(
            a_hi,
            a_lo,
            line_mm,
            channel_mm,
            gd,
            scan=f"{row['scanner']}/{row['scan_id']}",
            scanner=scanner,
            library=library,
        )
    except AtrInputError as exc:
        fix = exc.fix
        if px_from == "defaults":
            fix = (
                "the scan-start record gives no pixel size and the defaults do not fit this "
                "scanner: have the scanner (or the edge) put pixel_mm [along travel, height] "
                "in its scan-start records"
            )
        doc = no_verdict(row, exc.message, fix)
        doc["pixel_mm_from"] = px_from
        doc["scanner_calibration"] = _cal_field(scanner, cal_sha, cal_error)
        return doc
    d = v.to_dict()
    return {
        **scan_base(row),
        "verdict": d["verdict"],
        "findings": d["findings"],
        "gd_used": gd is not None,
        "gd_checks": d["gd_checks"],
        "container_frame": d["container"],
        "pixel_mm": [round(line_mm, 4), round(channel_mm, 4)],
        "pixel_mm_from": px_from,
        "scanner_calibration": _cal_field(scanner, cal_sha, cal_error),
        "notes": notes,
        "ms": d["elapsed_ms"],
        "calibration_ms": round(cal_ms, 1),
        "similar": d["similar"],
        "library": d.get("library", {}),
    }


def _cal_field(scanner: ScannerCalibration | None, sha: str, error: str) -> dict[str, Any] | None:
    """The verdict's ``scanner_calibration``: which calibration read the scan (None: none)."""
    if not sha and not error:
        return None
    out: dict[str, Any] = {"sha256": sha, "used": scanner is not None}
    if scanner is not None:
        out["scanner"] = scanner.scanner
    if error:
        out["error"] = error
    return out


def format_verdict(doc: dict[str, Any], top: int = 3) -> str:
    """One control-room line for an ``atr.verdict`` event: level, scan, the worst findings."""
    level = str(doc.get("verdict", "none")).upper()
    head = (
        f"ATR {level:<6} {doc.get('scanner')} scan {doc.get('scan_id')} (ref {doc.get('ref')}) "
        f"container {doc.get('container') or '?'}"
    )
    if doc.get("error"):
        return f"{head}: no verdict, {doc['error']}"
    findings = doc.get("findings") or []
    parts = []
    for f in findings[:top]:
        box = f.get("bbox_mm") or []
        where = f" at {box[0] / 1000:.1f}-{box[2] / 1000:.1f} m" if len(box) == 4 else ""
        parts.append(f"{f.get('level')} {f.get('category')}{where}: {f.get('reason')}")
    more = f" (+{len(findings) - top} more)" if len(findings) > top else ""
    body = "; ".join(parts) + more if parts else "no findings"
    tail = f"{doc.get('ms', 0):.0f} ms"
    if "latency_s" in doc:
        tail += f", {doc['latency_s']:.2f} s after scan end"
    if not doc.get("gd_used"):
        tail += ", no GD: GD checks skipped"
    return f"{head}: {body} [{tail}]"


def _warm_up() -> None:
    """Load the material tables and the compiled kernels before the first scan arrives,
    so the first verdict is as quick as the others."""
    from ._analyze import analyze

    # a container with a load, as two energies with noise of their own (the ATR refuses
    # one image given twice, and a scan without a container)
    rng = np.random.default_rng(0)
    a_hi = np.full((600, 256), 0.05, dtype=np.float32)
    a_hi[60:363, 20:230] = 1.2  # a load in a 20 ft container (303 lines of 20 mm)...
    a_hi[60:62, 20:230] = 4.0  # ...between its front wall and its doors, seen end-on
    a_hi[361:363, 20:230] = 4.0
    a_hi += rng.normal(0.0, 0.01, a_hi.shape).astype(np.float32)
    a_lo = 1.15 * a_hi + rng.normal(0.0, 0.012, a_hi.shape).astype(np.float32)
    analyze(a_hi, a_lo, 20.0, 10.0, None)


class LiveAtr:
    """One worker thread that turns completed scans into stored and published verdicts.

    ``publish(topic, doc)`` is the aggregator's feed sender; it is called on the
    event loop (ZeroMQ sockets belong to one thread).  ``latency`` is the
    ``nii_atr_latency_seconds`` histogram when metrics are served (set by
    ``central._metrics.attach``), observed from scan end to verdict.
    """

    def __init__(
        self,
        state_dir: Path,
        cir_private: X25519PrivateKey,
        publish: Publish,
        *,
        max_backlog: int = 8,
        alarm: Callable[..., None] | None = None,
        open_cir: Callable[[], Any] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._open_cir = open_cir
        self.max_backlog = max_backlog
        self.skipped = 0
        self._alarm = alarm
        self._private = cir_private
        self._publish = publish
        self.latency: Any = None
        self.verdicts = 0
        self.att_results = 0
        self._pending = 0
        self._lock = threading.Lock()
        self._closing = False
        self._cir: Cir | None = None
        self._opener: Opener | None = None
        self._store: VerdictStore | None = None
        self._att: AttStore | None = None
        # the arrays of the scan last read for a verdict: an exit scan's ATT reuses them
        self._last: tuple[int, dict[str, np.ndarray]] | None = None
        self._bad_cal_alarmed: set[tuple[str, str]] = set()  # (scanner, sha256)
        self._stopped = threading.Event()  # wakes a worker waiting out a database restart
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="atr")
        self._pool.submit(self._guard, _warm_up, "warming up the ATR")

    # -- event loop side ---------------------------------------------------------------------
    def scans_committed(self, refs: Iterable[int]) -> None:
        """Queue the scans whose end block is now in the CIR (called on the event loop)."""
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        for ref in sorted(refs):
            with self._lock:
                behind = self._pending >= self.max_backlog
                if not behind:
                    self._pending += 1
            if behind:
                # Evidence first: storing scans must never wait for analysis. A skipped scan
                # keeps its images; 'nii cir dicos' analyses it on demand.
                self.skipped += 1
                if self._alarm is not None:
                    self._alarm(
                        "",
                        "",
                        "atr_skipped",
                        f"ATR is {self.max_backlog} scans behind: scan ref {ref} "
                        "was stored without a live verdict",
                        ref=ref,
                    )
                continue
            self._pool.submit(self._guard, partial(self._job, ref, loop), f"scan ref {ref}")

    def close(self) -> None:
        """Finish the scan in hand, drop the queue, close the worker's connections."""
        if self._closing:
            return
        self._closing = True
        self._stopped.set()
        self._pool.submit(self._close_worker)
        self._pool.shutdown(wait=True)

    # -- worker side -------------------------------------------------------------------------
    @staticmethod
    def _guard(fn: Callable[[], None], what: str) -> None:
        try:
            fn()
        except Exception:  # the worker must survive any one scan
            log.exception("ATR failed on %s", what)

    def _open(self) -> tuple[Cir, Opener, VerdictStore]:
        if self._cir is None or self._opener is None or self._store is None:
            from central._cir import Cir
            from core.seal import Opener

            # central's own CIR (its engines); default the embedded one in state_dir
            self._cir = self._open_cir() if self._open_cir is not None else Cir(self.state_dir)
            self._opener = Opener(self._private)
            self._store = VerdictStore(self._cir.sql.target)
            self._att = AttStore(self._cir.sql.target)
        return self._cir, self._opener, self._store

    def _analyse_retrying(self, ref: int, loop: asyncio.AbstractEventLoop) -> dict[str, Any] | None:
        """:meth:`analyse`, tried again while the CIR's database cannot be reached
        (:data:`DB_RETRY_S`); then None, with an ``atr_skipped`` alarm."""
        for wait_s in (*DB_RETRY_S, None):
            try:
                return self.analyse(ref)
            except Exception as exc:
                if not _database_gone(exc):
                    raise
                self._close_worker()  # connections afresh at the next try
                if wait_s is None or self._closing:
                    log.error("ATR gave up on scan ref %d: %s", ref, exc)
                    if self._alarm is not None:
                        with contextlib.suppress(RuntimeError):
                            loop.call_soon_threadsafe(
                                partial(
                                    self._alarm, "", "", "atr_skipped",
                                    f"scan ref {ref} was stored without a live verdict: the "
                                    f"CIR's database could not be reached ({exc})",
                                    ref=ref,
                                )
                            )  # fmt: skip
                    return None
                log.warning(
                    "ATR: the CIR's database cannot be reached for scan ref %d; trying again "
                    "in %.0f s",
                    ref,
                    wait_s,
                )
                if self._stopped.wait(wait_s):  # central stops: give up at once
                    return None
        return None

    def _close_worker(self) -> None:
        for store in (self._store, self._att):
            if store is not None:
                store.close()
        if self._cir is not None:
            self._cir.close()
        self._cir = self._store = self._att = None
        self._last = None

    def _job(self, ref: int, loop: asyncio.AbstractEventLoop) -> None:
        try:
            if self._closing:
                return
            doc = self._analyse_retrying(ref, loop)
        finally:
            with self._lock:
                self._pending -= 1
        if doc is None:
            return
        self._bad_calibration(doc, loop)
        finished = doc.get("finished_ns")
        if isinstance(finished, int) and finished > 0:
            doc["latency_s"] = round((time.time_ns() - finished) / 1e9, 3)
        _, _, store = self._open()
        try:
            store.put(doc)
        except StorageError as exc:  # a full disk: the scan is stored, its verdict is not
            log.error("ATR verdict for scan ref %d not stored: %s", ref, exc)
            if self._alarm is not None:  # raised on the event loop's thread, not this one
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(
                        partial(
                            self._alarm,
                            "",
                            "",
                            "storage",
                            f"ATR verdict for scan ref {ref} not stored: {exc.message}",
                            ref=ref,
                            path=exc.path,
                            free_bytes=exc.free_bytes,
                        )
                    )
            return
        self.verdicts += 1
        if self.latency is not None and "latency_s" in doc and doc["verdict"] != "none":
            self.latency.labels(model=MODEL).observe(max(0.0, doc["latency_s"]))
        log.info(
            "ATR verdict %s for %s scan %s (ref %d): %d finding(s), %.0f ms",
            doc["verdict"],
            doc["scanner"],
            doc["scan_id"],
            ref,
            len(doc["findings"]),
            doc["ms"],
        )
        self._send(loop, b"atr.verdict", doc)
        try:
            self.transit(ref, loop)
        finally:
            self._last = None

    def _bad_calibration(self, doc: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        """Alarm ``bad_calibration`` once per scanner and document the ATR could not use."""
        cal = doc.get("scanner_calibration")
        if not isinstance(cal, dict) or not cal.get("error"):
            return
        key = (str(doc["scanner"]), str(cal.get("sha256", "")))
        if key in self._bad_cal_alarmed:
            return
        self._bad_cal_alarmed.add(key)
        log.warning(
            "ATR: scanner %s's calibration (sha256 %s) cannot be used: %s",
            key[0],
            key[1][:16] or "-",
            cal["error"],
        )
        if self._alarm is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(
                    partial(
                        self._alarm,
                        key[0],
                        "",
                        ALARM_BAD_CALIBRATION,
                        f"scanner {key[0]}: the calibration its scans bring cannot be used "
                        f"({cal['error']}); its scans are analysed as the reference scanner's",
                        ref=doc["ref"],
                        sha256=key[1],
                        fix="commission the scanner again ('nii atr calibrate') and put the "
                        "new file in the edge's [[scanner]] calibration =",
                    )
                )

    def _send(self, loop: asyncio.AbstractEventLoop, topic: bytes, doc: dict[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed while this scan was analysed
            loop.call_soon_threadsafe(self._publish, topic, doc)

    def _arrays(self, ref: int) -> dict[str, np.ndarray]:
        from central._reader import scan_arrays

        if self._last is not None and self._last[0] == ref:
            return self._last[1]
        cir, opener, _ = self._open()
        return scan_arrays(cir, opener, ref)

    def transit(
        self, ref: int, loop: asyncio.AbstractEventLoop | None = None
    ) -> dict[str, Any] | None:
        """ATT of scan ``ref`` if it is a complete exit scan: stored, alarmed, published.

        Returns the ATT document (None for any other scan).  The document and
        its alarm are in the CIR (one transaction) before either is published.
        """
        from ._transit import att_alarm, att_doc

        if self._closing:
            return None
        cir, _, _ = self._open()
        assert self._att is not None
        row = cir.scan(ref)
        if row is None:
            return None
        doc = att_doc(cir, self._att, row, self._arrays)
        if doc is None:
            return None
        finished = doc.get("finished_ns")
        if isinstance(finished, int) and finished > 0:
            doc["latency_s"] = round((time.time_ns() - finished) / 1e9, 3)
        alarm = att_alarm(doc)
        alarm_row = None
        if alarm is not None:
            kind, message, details = alarm
            alarm_row = cir.alarm_row(row["scanner"], "", kind, message, **details)
        self._att.put(doc, alarm_row)
        self.att_results += 1
        log.log(
            logging.WARNING if doc["hold"] else logging.INFO,
            "ATT %s for container %s: exit ref %d, entry ref %s: %s",
            doc["result"],
            doc["container"] or "?",
            ref,
            doc["ref_a"],
            doc["reason"],
        )
        if loop is not None:
            self._send(loop, b"atr.att", doc)
            if alarm is not None and alarm_row is not None:
                self._send(loop, b"alarm", {**alarm_row, "details": alarm[2]})
        return doc

    def analyse(self, ref: int) -> dict[str, Any] | None:
        """The verdict document of scan ``ref`` as committed in the CIR (None: no such scan)."""
        from central._reader import scan_arrays

        cir, opener, _ = self._open()
        row = cir.scan(ref)
        if row is None:
            log.warning("ATR: scan ref %d is not in the CIR", ref)
            return None
        if self._pending > MAX_BACKLOG:
            return no_verdict(
                row,
                f"ATR backlog of {self._pending} scans: this scan was not analysed live",
                "analyse it later with 'nii atr analyze' on its export",
            )
        t0 = time.perf_counter()
        try:
            arrays = scan_arrays(cir, opener, ref)
        except NiiError as exc:
            return no_verdict(row, f"cannot read the scan back: {exc.message}", exc.fix)
        read_ms = (time.perf_counter() - t0) * 1000.0
        self._last = (ref, arrays)
        doc = verdict_doc(row, arrays, live_library(cir.sql.target))
        doc["read_ms"] = round(read_ms, 1)
        return doc


def _database_gone(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the CIR's database server is out of reach."""
    from central._sql import is_unreachable

    seen: BaseException | None = exc
    while seen is not None:
        if is_unreachable(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


__all__ = [
    "ALARM_BAD_CALIBRATION",
    "DEFAULT_FAN_HEIGHT_MM",
    "DEFAULT_SCAN_LENGTH_MM",
    "MODEL",
    "LiveAtr",
    "calibrated",
    "format_verdict",
    "live_calibration",
    "live_gd",
    "missing_lines",
    "no_verdict",
    "pixel_size",
    "verdict_doc",
]
