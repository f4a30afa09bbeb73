"""Where the simulated detector lines come from: the image source protocol and two sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ImageSource", "ReplaySource", "ScanImage", "SyntheticSource"]


@dataclass(slots=True)
class ScanImage:
    """What a scanner sees during one scan, as raw detector counts.

    ``high`` and ``low`` are ``(lines, channels)`` uint16 (the two energies);
    ``dark`` and ``air`` are ``(2, channels)`` uint16 levels (high row, low row):
    the detector offset with the beam off and the flat field with an empty tunnel.
    """

    high: np.ndarray
    low: np.ndarray
    dark: np.ndarray
    air: np.ndarray
    #: extra fields for the scan-start record: what the scanner (and, for the simulator,
    #: the site's gate system) knows of this scan, e.g. ``pixel_mm`` [along travel,
    #: height] and ``gd`` (the Goods Declaration linked at the gate)
    record: dict[str, Any] = field(default_factory=dict)
    #: what the simulator put in the scan (the physics source's ground truth, in brief):
    #: never sent to the edge, only to ``--truth-log`` for a demo officer to judge the ATR
    truth: dict[str, Any] | None = None
    _packed: np.ndarray | None = field(default=None, repr=False)

    @property
    def lines(self) -> int:
        return int(self.high.shape[0])

    @property
    def channels(self) -> int:
        return int(self.high.shape[1])

    def packed(self) -> np.ndarray:
        """``(lines, 2 * channels)`` little-endian uint16: each row is one LINE payload.

        Computed once and kept, so a replayed image costs nothing to send again.
        """
        if self._packed is None:
            packed = np.empty((self.lines, 2 * self.channels), dtype="<u2")
            packed[:, : self.channels] = self.high
            packed[:, self.channels :] = self.low
            self._packed = packed
        return self._packed


@runtime_checkable
class ImageSource(Protocol):
    """Makes the detector image of one scan; a physics model plugs in here."""

    def scan(self, seed: int, scan_id: int, channels: int, lines: int) -> ScanImage:
        """The image of scan ``scan_id``; the same arguments give the same image."""
        ...


class SyntheticSource:
    """A cheap synthetic container: end walls, side walls, a floor, a few dense
    blocks and detector noise. Good enough to exercise the data path, not physics."""

    _NOISE_ROWS = 64

    def __init__(self, noise: float = 150.0) -> None:
        self.noise = noise
        self._noise: dict[tuple[int, int], np.ndarray] = {}

    def _noise_table(self, seed: int, channels: int) -> np.ndarray:
        key = (seed, channels)
        table = self._noise.get(key)
        if table is None:
            rng = np.random.default_rng([seed, channels, 7])
            table = (rng.standard_normal((self._NOISE_ROWS, channels)) * self.noise).astype(
                np.float32
            )
            self._noise[key] = table
        return table

    def scan(self, seed: int, scan_id: int, channels: int, lines: int) -> ScanImage:
        rng = np.random.default_rng([seed, scan_id])
        ch = np.arange(channels, dtype=np.float32)
        gain = 1.0 + 0.04 * np.sin(ch / 37.0) + rng.uniform(-0.02, 0.02, channels)
        air_hi = (52000.0 * gain).astype(np.float32)
        air_lo = (0.82 * air_hi).astype(np.float32)
        dark_hi = (900.0 + rng.uniform(0, 200, channels)).astype(np.float32)
        dark_lo = (dark_hi * 0.95).astype(np.float32)

        t = np.ones((lines, channels), dtype=np.float32)
        l0, l1 = int(0.04 * lines), max(int(0.96 * lines), int(0.04 * lines) + 1)
        top = max(1, int(0.9 * channels))
        floor = max(1, int(0.06 * channels))
        wall = max(1, lines // 100)
        t[l0:l1, :top] *= 0.8  # the two side walls, seen through
        t[l0 : l0 + wall, :top] *= 0.08  # front end wall
        t[max(l1 - wall, 0) : l1, :top] *= 0.08  # doors
        t[l0:l1, :floor] *= 0.25  # floor and chassis
        for _ in range(int(rng.integers(2, 9))):
            a = int(rng.integers(l0, max(l1 - 1, l0 + 1)))
            b = min(l1, a + int(rng.integers(1, max(2, lines // 5))))
            c = int(rng.integers(floor, max(top - 1, floor + 1)))
            d = min(top, c + int(rng.integers(1, max(2, channels // 3))))
            t[a:b, c:d] *= float(rng.uniform(0.02, 0.7))

        noise = self._noise_table(seed, channels)
        offset = int(rng.integers(0, self._NOISE_ROWS))
        hi = _counts(t, air_hi, dark_hi, noise, offset)
        np.sqrt(t, out=t)  # the low energy is attenuated more: T_lo ~ T_hi ** 1.5
        t *= t * t
        np.sqrt(t, out=t)
        lo = _counts(t, air_lo, dark_lo, noise, offset)
        return ScanImage(
            high=hi,
            low=lo,
            dark=np.stack([dark_hi, dark_lo]).astype(np.uint16),
            air=np.stack([air_hi, air_lo]).astype(np.uint16),
        )


def _counts(
    t: np.ndarray, air: np.ndarray, dark: np.ndarray, noise: np.ndarray, offset: int
) -> np.ndarray:
    """dark + (air - dark) * t + noise, clipped to uint16 (in place where it can be)."""
    out = t * (air - dark)
    out += dark
    noise = np.roll(noise, -offset, axis=0)
    rows = noise.shape[0]
    for start in range(0, out.shape[0], rows):
        block = out[start : start + rows]
        block += noise[: block.shape[0]]
    np.clip(out, 0, 65535, out=out)
    return out.astype(np.uint16)


class ReplaySource:
    """Makes ``count`` images once with ``inner`` and replays them in turn, to every
    scanner that shares this source (the scanner's own seed is ignored).

    For benchmarks: serving many scanners then costs no image generation at all,
    and the packed line payloads are shared across scans and scanners.
    """

    def __init__(self, inner: ImageSource | None = None, count: int = 3, seed: int = 0) -> None:
        self.inner: ImageSource = inner if inner is not None else SyntheticSource()
        self.count = max(1, count)
        self.seed = seed
        self._cache: dict[tuple[int, int, int], ScanImage] = {}

    def scan(self, seed: int, scan_id: int, channels: int, lines: int) -> ScanImage:
        key = (scan_id % self.count, channels, lines)
        image = self._cache.get(key)
        if image is None:
            image = self.inner.scan(self.seed, key[0], channels, lines)
            image.packed()
            self._cache[key] = image
        return image
