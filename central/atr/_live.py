"""Live verdicts: the ATR runs on every scan central completes and the verdict goes on the feed.

The commit that finishes a scan queues it in the CIR (``central._atr_queue``,
decision 0019).  A worker claims it, reads the scan back from the CIR (so
the ATR sees exactly the evidence), calibrates it from its own dark and air
lines, analyses it and stores the verdict in the CIR's ``verdicts`` table;
for a complete ATT exit scan it also pairs the scan with its entry scan and
compares them (``_transit.py``): the result goes into the ``att`` table, a
HOLD with an ``att_hold`` alarm.  Verdict, ATT result, their alarms and
"done" are one transaction guarded by the claim.  An aggregator then
publishes them on its live feed (``atr.verdict``, ``atr.att``, ``alarm``).
The worker is a thread of the aggregator (``[central] atr_workers =
"embedded"``, the default) or a ``nii atr worker`` process (``"external"``);
either way the event loop only wakes it and, later, sends the messages:
receiving, verifying and committing blocks go on while the ATR works (about
50–200 ms a scan).

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
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from central._atr_queue import CLAIM_S, Claim, ClaimLost, Feed, WorkQueue
from central._sql import Sql, is_storage_error
from core.errors import NiiError, StorageError
from core.scanner_cal import ScannerCalibration, document_sha256

from ._library import ImageLibrary, live_library
from ._store import AttStore, VerdictStore, att_statements, verdict_statement

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
Publish = Callable[[bytes, dict[str, Any]], None]
#: Alarm kind of a scan-start record whose scanner calibration cannot be used.
ALARM_BAD_CALIBRATION = "bad_calibration"
#: Waits (s) before each new try while the CIR's database cannot be reached (a restart or
#: a fail-over of PostgreSQL) or written (a full disk), then the last one again until it
#: can: the scans stay queued in the CIR meanwhile, none is skipped for it.
DB_RETRY_S = (0.5, 1.0, 2.0, 4.0, 5.0)
#: How often an idle ATR thread looks at the queue, s (a commit of this process wakes it
#: at once; this bounds the wait for another's).
POLL_S = 0.25
#: Done items older than this (s) are not put on the live feed: an aggregator that
#: starts after a long stop does not replay old verdicts as live ones.
FEED_MAX_AGE_S = 60.0
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
    """The live ATR of one process: a worker on the CIR's ATR queue, the publisher of
    done items on the aggregator's feed, or both (the embedded default).

    One thread (``atr``) does it all, in turn: it queues what :meth:`scans_committed`
    handed over, claims the oldest free item (``central._atr_queue``) and judges it
    (verdict, ATT, their alarms: stored with "done" in one transaction guarded by the
    claim), then takes the done items nobody published yet, from this worker or any
    other, and hands them to ``publish(topic, doc)`` on the event loop (ZeroMQ sockets
    belong to one thread).  A second thread (``atr-claim``, its own connection) renews
    the claim in hand while the analysis runs.

    Args:
        state_dir: the embedded CIR's folder (used when ``open_cir`` is None).
        cir_private: the CIR's X25519 key, to open the sealed blocks.
        publish: the aggregator's feed sender; ignored with ``feed=False``.
        max_backlog: items waiting beyond which the newest are skipped (alarmed).
        alarm: the aggregator's alarm function, for troubles of the worker itself (the
            CIR cannot be written); the scans' own alarms go with their results.
        open_cir: opens the CIR the worker reads (central's engines).
        work: claim and judge items here (False: ``atr_workers = "external"``).
        feed: publish done items here (False: a ``nii atr worker`` process).
        worker: this worker's name in the queue (default host/pid).
        claim_s: how long a claim lasts without renewal, s.
        poll_s: how often an idle thread looks at the queue, s.

    ``latency`` is the ``nii_atr_latency_seconds`` histogram when metrics are served
    (set by ``central._metrics.attach``), observed from scan end to verdict as each
    verdict is published.
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
        work: bool = True,
        feed: bool = True,
        worker: str = "",
        claim_s: float = CLAIM_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._open_cir = open_cir
        self.max_backlog = max_backlog
        self.work = work
        self.feed = feed
        self.worker = worker or f"{socket.gethostname()}/{os.getpid()}"
        self.claim_s = claim_s
        self.poll_s = poll_s
        self.skipped = 0
        self._alarm = alarm
        self._private = cir_private
        self._publish = publish
        self.latency: Any = None
        self.verdicts = 0
        self.att_results = 0
        self.published = 0
        self._lock = threading.Lock()
        self._new: list[int] = []
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cir: Cir | None = None
        self._opener: Opener | None = None
        self._store: VerdictStore | None = None
        self._att: AttStore | None = None
        self._queue: WorkQueue | None = None
        self._renewer: _Renewer | None = None
        # the arrays of the scan last read for a verdict: an exit scan's ATT reuses them
        self._last: tuple[int, dict[str, np.ndarray]] | None = None
        self._bad_cal_alarmed: set[tuple[str, str]] = set()  # (scanner, sha256)
        self._stopped = threading.Event()  # wakes a worker waiting out a database restart
        self._wake = threading.Event()
        self._trouble_alarmed = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="atr")
        if work:
            self._pool.submit(self._guard, _warm_up, "warming up the ATR")

    # -- event loop side ---------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the thread (after the warm-up); ``loop`` is where ``publish`` runs."""
        if self._loop is not None or self._closing:
            return
        self._loop = loop
        self._pool.submit(self._guard, self._serve, "the ATR queue")

    def scans_committed(self, refs: Iterable[int]) -> None:
        """Scans now in the CIR: queue them (if the commit did not) and wake the thread.

        Called on the event loop; the thread starts with the first call if
        :meth:`start` was not called.
        """
        if self._closing:
            return
        self.start(asyncio.get_running_loop())
        with self._lock:
            self._new.extend(int(r) for r in refs)
        self._wake.set()

    def wake(self) -> None:
        """Look at the queue now (a commit has just queued scans)."""
        self._wake.set()

    def close(self) -> None:
        """Finish the scan in hand, close the worker's connections; what is still queued
        stays in the CIR for the next worker."""
        if self._closing:
            return
        self._closing = True
        self._stopped.set()
        self._wake.set()
        self._pool.submit(self._close_worker)
        self._pool.shutdown(wait=True)
        if self._renewer is not None:
            self._renewer.close()
            self._renewer = None

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
            self._queue = WorkQueue(
                self._cir.wsql, self.worker, claim_s=self.claim_s, max_backlog=self.max_backlog
            )
        return self._cir, self._opener, self._store

    def _work_queue(self) -> WorkQueue:
        self._open()
        assert self._queue is not None
        return self._queue

    def _close_worker(self) -> None:
        for store in (self._store, self._att):
            if store is not None:
                store.close()
        if self._cir is not None:
            self._cir.close()
        self._cir = self._store = self._att = self._queue = None
        self._last = None

    def _serve(self) -> None:
        """The thread's loop until :meth:`close`: queue, claim and judge, publish."""
        tries = 0
        while not self._stopped.is_set():
            self._wake.clear()
            try:
                busy = self._enqueue_new()
                if self.work:
                    busy = self._work_one() or busy
                if self.feed:
                    busy = self._publish_done() or busy
            except Exception as exc:
                why = _trouble(exc)
                self._close_worker()  # connections afresh at the next try
                if why is None:
                    log.exception("ATR queue failed")
                    self._stopped.wait(1.0)
                    continue
                wait_s = DB_RETRY_S[min(tries, len(DB_RETRY_S) - 1)]
                tries += 1
                self._trouble(why, exc, wait_s)
                self._stopped.wait(wait_s)
                continue
            if tries:
                log.info("ATR: the CIR's database answers again")
                tries = 0
                self._trouble_alarmed = False
            if not busy:
                self._wake.wait(self.poll_s)

    def _trouble(self, why: str, exc: BaseException, wait_s: float) -> None:
        """The CIR cannot be reached or written: log, alarm once; the queue keeps the work."""
        log.warning("ATR: %s (%s); the scans stay queued, trying again in %.1f s", why, exc, wait_s)
        if self._alarm is None or self._trouble_alarmed or why != _STORAGE:
            return
        self._trouble_alarmed = True
        # like every "storage" alarm: what could not be written, and what is free there
        if isinstance(exc, StorageError):
            path, free = exc.path, exc.free_bytes
        else:
            path = str(self.state_dir)
            try:
                free = shutil.disk_usage(self.state_dir).free
            except OSError:
                free = -1
        self._call_on_loop(
            partial(
                self._alarm,
                "",
                "",
                "storage",
                f"ATR verdicts cannot be stored: {exc}; the scans stay queued for the ATR",
                path=path,
                free_bytes=free,
            )
        )

    def _enqueue_new(self) -> bool:
        with self._lock:
            refs, self._new = self._new, []
        if not refs:
            return False
        from central._atr_queue import enqueue

        q = self._work_queue()
        try:
            with q.db.transaction():
                enqueue(q.db, refs, q.clock())
        except BaseException:
            with self._lock:  # tried again on the next pass
                self._new = refs + self._new
            raise
        return True

    def _work_one(self) -> bool:
        """Claim one item and judge it; False when there was none."""
        q = self._work_queue()
        claim = q.claim()
        if claim is None:
            return False
        renewer = self._claim_renewer()
        renewer.hold(claim)
        try:
            statements, feed, doc = self._judge(claim.ref)
        except Exception as exc:
            renewer.drop()
            if _trouble(exc) is not None:
                raise  # the database or the disk: the claim runs out, the item is retried
            log.exception("ATR failed on scan ref %d", claim.ref)
            if q.fail(claim, f"{type(exc).__name__}: {exc}"):
                self.skipped += 1
            return True
        finally:
            self._last = None
        renewer.drop()
        try:
            q.complete(claim, statements, feed)
        except ClaimLost as exc:  # too slow: another worker has it now
            log.warning("ATR: %s", exc.message)
            return True
        if doc is None:
            return True
        self.verdicts += 1
        self.att_results += sum(1 for t, _ in feed if t == "atr.att")
        log.info(
            "ATR verdict %s for %s scan %s (ref %d): %d finding(s), %.0f ms",
            doc["verdict"],
            doc["scanner"],
            doc["scan_id"],
            claim.ref,
            len(doc["findings"]),
            doc["ms"],
        )
        return True

    def _claim_renewer(self) -> _Renewer:
        if self._renewer is None:
            _, _, store = self._open()
            target = store.db.target
            self._renewer = _Renewer(
                lambda: WorkQueue(Sql(target), self.worker, claim_s=self.claim_s),
                self.claim_s / 3.0,
            )
        return self._renewer

    def _judge(self, ref: int) -> tuple[list[tuple[str, Any]], Feed, dict[str, Any] | None]:
        """Scan ``ref``'s verdict and, for an exit scan, its ATT result, with their alarms:
        (statements that store them, what goes on the feed, the verdict document)."""
        doc = self.analyse(ref)
        if doc is None:  # not in the CIR: nothing to judge
            return [], [], None
        finished = doc.get("finished_ns")
        if isinstance(finished, int) and finished > 0:
            doc["latency_s"] = round((time.time_ns() - finished) / 1e9, 3)
        sql, args = verdict_statement(doc)
        # DO NOTHING: the first verdict of a scan stays (the claim makes a second one moot)
        statements: list[tuple[str, Any]] = [(sql + " DO NOTHING", args)]
        feed: Feed = [("atr.verdict", doc)]
        cir, _, _ = self._open()
        bad = self.bad_calibration_alarm(doc)
        if bad is not None:
            scanner, kind, message, details = bad
            row = cir.alarm_row(scanner, "", kind, message, **details)
            statements.append((_ALARM_SQL, tuple(row[c] for c in _ALARM_COLUMNS)))
            feed.append(("alarm", {**row, "details": details}))
        att = self._att_result(ref)
        if att is not None:
            att_doc, alarm_row, details = att
            statements += att_statements(att_doc, alarm_row)
            feed.append(("atr.att", att_doc))
            if alarm_row is not None:
                feed.append(("alarm", {**alarm_row, "details": details}))
        return statements, feed, doc

    def _publish_done(self) -> bool:
        """Publish the done items nobody published yet (from any worker); False: none."""
        done = self._work_queue().take_unpublished()
        if not done:
            return False
        now = time.time_ns()
        for d in done:
            if now - d.done_ns > FEED_MAX_AGE_S * 1e9:  # the feed is live: old news is not
                log.info("ATR: scan ref %d was done long ago: not put on the feed", d.ref)
                continue
            for topic, doc in d.feed:
                if topic == "atr.verdict":
                    self.published += 1
                    lat = doc.get("latency_s")
                    if self.latency is not None and doc.get("verdict") != "none" and lat:
                        self.latency.labels(model=MODEL).observe(max(0.0, float(lat)))
                self._send(topic.encode(), doc)
        return True

    def bad_calibration_alarm(
        self, doc: dict[str, Any]
    ) -> tuple[str, str, str, dict[str, Any]] | None:
        """(scanner, kind, message, details) of the ``bad_calibration`` alarm a verdict
        raises: once per scanner and document the ATR could not use; else None."""
        cal = doc.get("scanner_calibration")
        if not isinstance(cal, dict) or not cal.get("error"):
            return None
        key = (str(doc["scanner"]), str(cal.get("sha256", "")))
        if key in self._bad_cal_alarmed:
            return None
        self._bad_cal_alarmed.add(key)
        log.warning(
            "ATR: scanner %s's calibration (sha256 %s) cannot be used: %s",
            key[0],
            key[1][:16] or "-",
            cal["error"],
        )
        return (
            key[0],
            ALARM_BAD_CALIBRATION,
            f"scanner {key[0]}: the calibration its scans bring cannot be used "
            f"({cal['error']}); its scans are analysed as the reference scanner's",
            {
                "ref": doc["ref"],
                "sha256": key[1],
                "fix": "commission the scanner again ('nii atr calibrate') and put the "
                "new file in the edge's [[scanner]] calibration =",
            },
        )

    def _call_on_loop(self, fn: Callable[[], Any]) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(fn)

    def _send(self, topic: bytes, doc: dict[str, Any]) -> None:
        self._call_on_loop(partial(self._publish, topic, doc))

    def _arrays(self, ref: int) -> dict[str, np.ndarray]:
        from central._reader import scan_arrays

        if self._last is not None and self._last[0] == ref:
            return self._last[1]
        cir, opener, _ = self._open()
        return scan_arrays(cir, opener, ref)

    def _att_result(
        self, ref: int
    ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]] | None:
        """ATT of scan ``ref`` if it is a complete exit scan: (document, alarm row or
        None, the alarm's details); None for any other scan."""
        from ._transit import att_alarm, att_doc

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
        if alarm is None:
            return doc, None, {}
        kind, message, details = alarm
        return doc, cir.alarm_row(row["scanner"], "", kind, message, **details), details

    def transit(
        self, ref: int, loop: asyncio.AbstractEventLoop | None = None
    ) -> dict[str, Any] | None:
        """ATT of scan ``ref`` if it is a complete exit scan: stored, alarmed, published.

        Returns the ATT document (None for any other scan).  The document and
        its alarm are in the CIR (one transaction) before either is published.
        The queue's worker stores it with the scan's verdict instead (:meth:`_judge`).
        """
        if self._closing:
            return None
        got = self._att_result(ref)
        if got is None:
            return None
        doc, alarm_row, details = got
        assert self._att is not None
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
            self._loop = self._loop or loop
            for topic, d in [(b"atr.att", doc)] + (
                [(b"alarm", {**alarm_row, "details": details})] if alarm_row else []
            ):
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._publish, topic, d)
        return doc

    def analyse(self, ref: int) -> dict[str, Any] | None:
        """The verdict document of scan ``ref`` as committed in the CIR (None: no such scan)."""
        from central._reader import scan_arrays

        cir, opener, _ = self._open()
        row = cir.scan(ref)
        if row is None:
            log.warning("ATR: scan ref %d is not in the CIR", ref)
            return None
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


class _Renewer:
    """Renews the claim in hand every ``every_s`` from a thread and connection of its own
    (the analysis keeps the worker's thread busy)."""

    def __init__(self, open_queue: Callable[[], WorkQueue], every_s: float) -> None:
        self._open = open_queue
        self._every_s = every_s
        self._claim: Claim | None = None
        self._queue: WorkQueue | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="atr-claim", daemon=True)
        self._thread.start()

    def hold(self, claim: Claim) -> None:
        with self._lock:
            self._claim = claim

    def drop(self) -> None:
        with self._lock:
            self._claim = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._every_s):
                with self._lock:
                    claim = self._claim
                if claim is None:
                    continue
                try:
                    if self._queue is None:
                        self._queue = self._open()
                    renewed = self._queue.renew(claim)
                except Exception as exc:  # the next tick tries again, on a new connection
                    log.warning("ATR: cannot renew the claim of scan ref %d: %s", claim.ref, exc)
                    self._close_queue()
                    continue
                with self._lock:
                    if self._claim is not claim:
                        continue  # done or dropped meanwhile
                    if renewed is None:
                        log.warning("ATR: the claim of scan ref %d was lost", claim.ref)
                    self._claim = renewed
        finally:
            self._close_queue()

    def _close_queue(self) -> None:
        if self._queue is not None:
            self._queue.db.close()
            self._queue = None


_STORAGE = "the CIR cannot be written"
_DATABASE = "the CIR's database cannot be reached"
_ALARM_COLUMNS = ("ts_ns", "scanner", "edge", "kind", "message", "details")
_ALARM_SQL = (
    f"INSERT INTO alarms ({', '.join(_ALARM_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ALARM_COLUMNS)})"
)


def _trouble(exc: BaseException) -> str | None:
    """What ``exc`` says is wrong with the CIR's storage (not with a scan), or None."""
    if _database_gone(exc):
        return _DATABASE
    if isinstance(exc, StorageError) or is_storage_error(exc):
        return _STORAGE
    return None


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
