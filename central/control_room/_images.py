"""Scans as the viewer draws them: calibrated, material-coloured strips of columns.

A :class:`ScanPicture` follows one scan in the CIR. Each :meth:`ScanPicture.update`
reads the blocks committed since the last one (verified as evidence first, as every
read of the CIR is: ``central._reader.verified_block``), decrypts their lines and
calibrates the image lines with the scan's own dark and air lines (sent at scan
start), so a viewer can draw a scan while it is still being scanned.

Columns are the scan's image lines in increasing line number, as
``central._reader.scan_arrays`` assembles them for the ATR, so a finding's
``bbox_px`` (columns, rows) lands on the same pixels here. Rows are detector
channels. The picture's true size is ``lines × line_mm`` by ``channels ×
channel_mm`` (the scan-start record's ``pixel_mm``, else the reference scanner's
geometry: ``central.atr._live.pixel_size``).

Views (``strip_png``): ``material`` (the customary dual-energy colours),
``grey`` (attenuation only), ``hipen`` (high penetration: the darkest range
spread out, for dense cargo) and ``edge`` (unsharp-masked attenuation, which
brings out outlines); each with a window ``w0..w1`` of attenuation A = −ln T.
"""
# ruff: noqa: RUF002

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from central._cir import Cir
from central._reader import ChainKeys, verified_block
from central._shape import BYTES_PER_CHANNEL, ScanShape, record_channels, record_lines
from central.atr._live import pixel_size
from central.control_room._tip import Projection
from central.render import render
from core.calibration import DetectorCalibration, MaterialCalibration
from core.errors import NiiError
from core.seal import BlockKind, Opener

__all__ = ["VIEWS", "PictureCache", "ScanPicture", "View"]

VIEWS = ("material", "grey", "hipen", "edge")
#: columns of context each side of a strip for the material map's 3 by 5 smoothing
_CONTEXT = 4
#: the most columns one strip request may ask for (a 40 ft scan is about 3000)
MAX_STRIP = 20_000


@dataclass(frozen=True)
class View:
    """How a strip is drawn: ``name`` one of :data:`VIEWS`; window ``w0``..``w1`` of A."""

    name: str = "material"
    w0: float = 0.0
    w1: float = 9.0

    def __post_init__(self) -> None:
        if self.name not in VIEWS:
            raise NiiError(f"no view {self.name!r}", fix=f"ask for one of {', '.join(VIEWS)}")
        if not (0.0 <= self.w0 < self.w1 <= 30.0):
            raise NiiError(
                f"window {self.w0:g}..{self.w1:g} is out of range",
                fix="give 0 <= w0 < w1 <= 30 (attenuation A = -ln T)",
            )


class ScanPicture:
    """One scan's calibrated image as far as its blocks are committed (see the module).

    Not thread-safe by itself: :class:`PictureCache` holds a lock around each use.
    """

    def __init__(self, row: dict[str, Any]) -> None:
        self.ref = int(row["ref"])
        self.scanner = str(row["scanner"])
        try:
            rec = json.loads(row.get("start_record") or "{}")
        except ValueError:
            rec = {}
        self.record: dict[str, Any] = rec if isinstance(rec, dict) else {}
        self.shape = ScanShape(record_channels(self.record), record_lines(self.record))
        self.planned = record_lines(self.record) or 0
        ch = self.shape.channels or 1
        self.line_mm, self.channel_mm, self.pixel_from = pixel_size(
            self.record, ch, max(1, self.planned)
        )
        self.status = str(row.get("status") or "")
        self.last_seq = -1
        self.lines = 0  # image lines held (columns)
        self._dark: list[bytes] = []
        self._air: list[bytes] = []
        self._pending: list[bytes] = []  # raw image lines waiting for a calibration
        self._det: DetectorCalibration | None = None
        self._mc = MaterialCalibration.default()
        self._a_hi = np.zeros((0, ch), dtype=np.float32)
        self._a_lo = np.zeros((0, ch), dtype=np.float32)
        #: (image lines read once the block was read, its committed_ns) per data block
        #: with image lines: which columns each commit brought (the benchmark's latency)
        self.commits: list[tuple[int, int]] = []
        self._seen = 0  # image lines read, calibrated or waiting

    @property
    def channels(self) -> int:
        return self.shape.channels or 0

    @property
    def calibrated(self) -> bool:
        return self._det is not None

    def info(self) -> dict[str, Any]:
        """What the viewer needs to lay the picture out (JSON-ready)."""
        return {
            "ref": self.ref,
            "lines": self.lines,
            "planned": self.planned,
            "channels": self.channels,
            "line_mm": round(self.line_mm, 4),
            "channel_mm": round(self.channel_mm, 4),
            "pixel_mm_from": self.pixel_from,
            "calibrated": self.calibrated,
            "status": self.status,
        }

    # -- reading ---------------------------------------------------------------------
    def update(self, cir: Cir, keys: ChainKeys, opener: Opener) -> int:
        """Read the blocks committed since the last update; returns the new columns.

        Raises:
            IntegrityError: a block does not verify or decrypt (the picture stops
                there: evidence that does not verify is never shown as an image).
            central._blobs.BlobMissing: a block's blob is gone.
        """
        row = cir.scan(self.ref)
        if row is not None:
            self.status = str(row.get("status") or "")
        before = self.lines
        for brow in cir.scan_blocks(self.ref, after_seq=self.last_seq):
            block = verified_block(cir, keys, brow)
            self.last_seq = int(brow["seq"])
            if block.kind != BlockKind.DATA:
                continue
            mask, _ = self.shape.fit(block.meta.get("channels"), block.index, len(block.cipher))
            if not any(mask) or self.shape.channels is None:
                continue
            plain = opener.open(block)
            size = self.shape.channels * BYTES_PER_CHANNEL
            for i, (e, ok) in enumerate(zip(block.index, mask, strict=True)):
                if not ok:
                    continue
                payload = plain[i * size : (i + 1) * size]
                if e.flags & 1:
                    self._dark.append(payload)
                elif e.flags & 2:
                    self._air.append(payload)
                else:
                    self._pending.append(payload)
                    self._seen += 1
            brought = not self.commits or self.commits[-1][0] != self._seen
            if self._seen and brought and brow.get("committed_ns") is not None:
                self.commits.append((self._seen, int(brow["committed_ns"])))
        self._calibrate_pending()
        return self.lines - before

    def _calibrate_pending(self) -> None:
        if not self._pending:
            return
        if self._det is None:
            if not (self._dark and self._air):
                return  # no calibration lines yet: the image lines wait for them
            self._det = DetectorCalibration.from_lines(*_split(self._dark), *_split(self._air))
        # lines arrive in increasing line number (the edge's assembler orders them), so
        # appending keeps the ATR's column order
        a_hi, a_lo = self._det.attenuation(*_split(self._pending))
        self._a_hi = np.concatenate([self._a_hi, a_hi])
        self._a_lo = np.concatenate([self._a_lo, a_lo])
        self.lines = self._a_hi.shape[0]
        self._pending.clear()

    def commits_in(self, start: int, stop: int) -> list[tuple[int, int]]:
        """(column end, committed_ns) of the blocks whose last image line is a column
        in ``start < end <= stop`` (what a strip of those columns shows first)."""
        return [(c, ns) for c, ns in self.commits if start < c <= min(stop, self.lines)]

    # -- drawing ---------------------------------------------------------------------
    def attenuation(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The calibrated attenuations held so far, (lines, channels) each, high and low."""
        return self._a_hi, self._a_lo

    def strip_png(self, start: int, stop: int, view: View, tip: Projection | None = None) -> bytes:
        """Columns ``start``..``stop`` (end-exclusive, clipped to what is there) as PNG,
        RGB, (channels rows, columns); with ``tip``, its threat projected into them.

        Raises:
            NiiError: the range is empty or reversed, or nothing is calibrated yet.
        """
        stop = min(stop, self.lines)
        if not 0 <= start < stop or stop - start > MAX_STRIP:
            raise NiiError(
                f"columns {start}..{stop} are not in this scan's {self.lines} columns",
                fix=f"ask for columns from 0 to {self.lines} ({MAX_STRIP} at most at once)",
            )
        c0, c1 = max(0, start - _CONTEXT), min(self.lines, stop + _CONTEXT)
        a_hi, a_lo = self._a_hi[c0:c1], self._a_lo[c0:c1]
        if tip is not None:
            a_hi, a_lo = tip.add_to(a_hi, a_lo, c0)
        a = np.clip(a_hi - view.w0, 0.0, None)
        span = view.w1 - view.w0
        if view.name == "material":
            m = self._mc.classify(a_hi, a_lo).material
            rgb = render(a, m, a_max=span)
        elif view.name == "grey":
            rgb = render(a, None, a_max=span)
        elif view.name == "hipen":
            rgb = render(a, None, a_max=span, gamma=1.6)
        else:
            blur = cv2.GaussianBlur(a, (0, 0), 3.0)
            rgb = render(np.clip(a + 1.5 * (a - blur), 0.0, None), None, a_max=span)
        rgb = rgb[:, start - c0 : start - c0 + (stop - start)]
        ok, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB
            raise NiiError("could not encode the strip as PNG", fix="try again")
        return bytes(png)


def _split(lines: list[bytes]) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16]]:
    """Raw line payloads → (high, low) counts, each (lines, channels)."""
    arr = np.frombuffer(b"".join(lines), dtype="<u2").reshape(len(lines), 2, -1)
    return arr[:, 0, :], arr[:, 1, :]


class PictureCache:
    """The pictures of the scans people are looking at: at most ``size``, the least
    recently used dropped first. One lock guards the CIR connection and the pictures
    (the web application calls it from its worker threads)."""

    def __init__(self, cir: Cir, opener: Opener, size: int = 24) -> None:
        self.cir, self.opener, self.size = cir, opener, size
        self.lock = threading.Lock()
        self._pictures: OrderedDict[int, ScanPicture] = OrderedDict()
        self._keys = ChainKeys(cir)

    def get(self, ref: int, *, refresh: bool = True) -> ScanPicture | None:
        """The picture of scan ``ref`` brought up to the CIR (``refresh``), or None
        when there is no such scan. Call under :attr:`lock`."""
        pic = self._pictures.get(ref)
        if pic is None:
            row = self.cir.scan(ref)
            if row is None:
                return None
            pic = ScanPicture(row)
            self._pictures[ref] = pic
            while len(self._pictures) > self.size:
                self._pictures.popitem(last=False)
            refresh = True
        self._pictures.move_to_end(ref)
        if refresh:
            self._keys = ChainKeys(self.cir)  # a scan row may have changed (its end)
            pic.update(self.cir, self._keys, self.opener)
        return pic
