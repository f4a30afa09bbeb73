# ruff: noqa: RUF002
"""The linac source and the detector: from basis areal densities to raw uint16 counts.

Signal model per channel c, image line l and energy (ADU):
``counts = dark_c + gain_c(l) · S_air · T + noise``, where ``T`` is the
spectrum-weighted transmission read from the basis table, ``gain_c(l)`` drifts
linearly over the scan, the noise variance is ``k · signal + σ_e²`` (photon
statistics, with ``k`` ADU per detected quantum, plus electronic noise), and a
fraction ``afterglow`` of the previous line's signal leaks into the next
(scintillator afterglow).  Dead channels give only dark and noise; hot channels
sit near full scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from ._spectra import DETECTOR_CDWO4_MM, TARGET_W_MM, WINDOW_STEEL_MM, Scintillator
from ._transmission import BASIS_MAX, GRID_N, Beam, attenuation_table

F32 = npt.NDArray[np.float32]
U16 = npt.NDArray[np.uint16]


@dataclass(frozen=True, slots=True)
class SourceModel:
    """Interlaced dual-energy linac: endpoints, relative output (1 = nominal dose rate), filtration.

    ``target_w_mm`` and ``window_steel_mm`` are the tungsten left in the target
    and the steel of window and collimator the beam crosses (``_spectra``).
    """

    endpoint_hi_mev: float = 6.0
    endpoint_lo_mev: float = 4.0
    output: float = 1.0
    lo_output: float = 0.6
    target_w_mm: float = TARGET_W_MM
    window_steel_mm: float = WINDOW_STEEL_MM


@dataclass(frozen=True, slots=True)
class DetectorModel:
    """Detector array and read-out chain; defaults are a healthy CdWO₄ + 16-bit ADC array."""

    air_adu: float = 58000.0  # air signal above dark at nominal output, high energy
    dark_adu: float = 1000.0
    dark_spread_adu: float = 120.0
    gain_spread: float = 0.06
    quanta_air: float = 4.0e6  # detected quanta per pixel in air at nominal output
    electronic_noise_adu: float = 0.3
    dead_fraction: float = 0.002
    hot_fraction: float = 0.001
    gain_drift: float = 0.002  # largest relative gain change over a scan
    afterglow: float = 0.002
    crosstalk: float = 0.02  # fraction of signal shared with each neighbouring channel
    scintillator: Scintillator = Scintillator.CDWO4
    depth_mm: float = DETECTOR_CDWO4_MM  # crystal depth along the beam


def beams(source: SourceModel, det: DetectorModel) -> tuple[Beam, Beam]:
    """The (high, low) energy beams of a source seen by a detector: what fixes their spectra."""
    return tuple(  # type: ignore[return-value]
        Beam(e, source.target_w_mm, source.window_steel_mm, det.scintillator, det.depth_mm)
        for e in (source.endpoint_hi_mev, source.endpoint_lo_mev)
    )


@numba.njit(cache=True, fastmath=True, nogil=True)
def _lookup_t(b: F32, table: F32, bmax: npt.NDArray[np.float64], n: int, os_: int) -> F32:
    """Trilinear lookup of A, then T = e^(−A), averaged over ``os_`` sub-rays per channel."""
    lines = b.shape[1]
    nray = b.shape[2]
    out = np.zeros((lines, nray // os_), dtype=np.float32)
    s0 = (n - 1) / np.sqrt(bmax[0])
    s1 = (n - 1) / np.sqrt(bmax[1])
    s2 = (n - 1) / np.sqrt(bmax[2])
    inv = np.float32(1.0 / os_)
    for line in range(lines):
        for r in range(nray):
            u0 = np.sqrt(min(max(b[0, line, r], 0.0), bmax[0])) * s0
            u1 = np.sqrt(min(max(b[1, line, r], 0.0), bmax[1])) * s1
            u2 = np.sqrt(min(max(b[2, line, r], 0.0), bmax[2])) * s2
            i0 = min(int(u0), n - 2)
            i1 = min(int(u1), n - 2)
            i2 = min(int(u2), n - 2)
            f0 = u0 - i0
            f1 = u1 - i1
            f2 = u2 - i2
            a00 = table[i0, i1, i2] * (1 - f2) + table[i0, i1, i2 + 1] * f2
            a01 = table[i0, i1 + 1, i2] * (1 - f2) + table[i0, i1 + 1, i2 + 1] * f2
            a10 = table[i0 + 1, i1, i2] * (1 - f2) + table[i0 + 1, i1, i2 + 1] * f2
            a11 = table[i0 + 1, i1 + 1, i2] * (1 - f2) + table[i0 + 1, i1 + 1, i2 + 1] * f2
            a0 = a00 * (1 - f1) + a01 * f1
            a1 = a10 * (1 - f1) + a11 * f1
            a = a0 * (1 - f0) + a1 * f0
            out[line, r // os_] += np.float32(np.exp(-a)) * inv
    return out


@numba.njit(cache=True, fastmath=True, nogil=True)
def _read_out(
    t: F32,
    s_air: F32,
    k_quant: F32,
    dark: F32,
    drift: F32,
    status: npt.NDArray[np.int8],
    sigma_e: float,
    afterglow: float,
    normals: F32,
) -> U16:
    """Counts for transmissions ``t`` (lines, channels): gain, drift, afterglow, noise, ADC."""
    lines, ch = t.shape
    out = np.empty((lines, ch), dtype=np.uint16)
    prev = np.empty(ch, dtype=np.float32)
    for c in range(ch):
        prev[c] = t[0, c]
    for line in range(lines):
        frac = line / max(lines - 1, 1)
        for c in range(ch):
            tc = t[line, c]
            lag = (1.0 - afterglow) * tc + afterglow * prev[c]
            prev[c] = tc
            sig = s_air[c] * (1.0 + drift[c] * frac) * lag
            if status[c] == 1:  # dead
                sig = 0.0
            var = k_quant[c] * sig + sigma_e * sigma_e
            v = dark[c] + sig + np.sqrt(var) * normals[line, c]
            if status[c] == 2:  # hot: stuck near full scale
                v = 65000.0 + 100.0 * normals[line, c]
            v = min(max(v + 0.5, 0.0), 65535.0)
            out[line, c] = np.uint16(v)
    return out


@dataclass(frozen=True, slots=True)
class ChannelState:
    """Per-channel constants of one detector array (fixed by its seed, not the scan's)."""

    dark: tuple[F32, F32]
    gain: tuple[F32, F32]
    drift: tuple[F32, F32]
    status: npt.NDArray[np.int8]  # 0 good, 1 dead, 2 hot


def channel_state(det: DetectorModel, channels: int, seed: int) -> ChannelState:
    """Draw offsets, gains, drifts and dead/hot channels for one detector array."""
    rng = np.random.default_rng([seed, channels, 0xDE7])
    dark = tuple(
        (det.dark_adu + det.dark_spread_adu * rng.standard_normal(channels)).astype(np.float32)
        for _ in range(2)
    )
    module = np.repeat(rng.normal(1.0, det.gain_spread, channels // 32 + 1), 32)[:channels]
    gain = tuple(
        (module * rng.normal(1.0, det.gain_spread / 3, channels)).astype(np.float32)
        for _ in range(2)
    )
    drift = tuple(
        rng.uniform(-det.gain_drift, det.gain_drift, channels).astype(np.float32) for _ in range(2)
    )
    status = np.zeros(channels, dtype=np.int8)
    u = rng.random(channels)
    status[u < det.dead_fraction] = 1
    status[(u >= det.dead_fraction) & (u < det.dead_fraction + det.hot_fraction)] = 2
    return ChannelState(dark, gain, drift, status)  # type: ignore[arg-type]


def transmissions(
    b: F32, source: SourceModel, oversample: int = 1, detector: DetectorModel | None = None
) -> tuple[F32, F32]:
    """(T_high, T_low), each (lines, channels), for basis areal densities ``b`` (3, lines, rays).

    The spectra are those of ``source`` seen by ``detector``'s crystal (default:
    the original 30 mm CdWO₄).
    """
    bmax = np.asarray(BASIS_MAX, dtype=np.float64)
    out = []
    for beam in beams(source, detector or DetectorModel()):
        out.append(_lookup_t(b, attenuation_table(beam), bmax, GRID_N, oversample))
    return out[0], out[1]


def apply_crosstalk(t: F32, fraction: float) -> F32:
    """Share ``fraction`` of each channel's signal with each neighbour (optical crosstalk)."""
    if fraction <= 0:
        return t
    out = t * np.float32(1 - 2 * fraction)
    out[:, 1:] += np.float32(fraction) * t[:, :-1]
    out[:, :-1] += np.float32(fraction) * t[:, 1:]
    out[:, 0] += np.float32(fraction) * t[:, 0]
    out[:, -1] += np.float32(fraction) * t[:, -1]
    return out


def read_out(
    t: F32,
    energy: int,
    source: SourceModel,
    det: DetectorModel,
    state: ChannelState,
    rng: np.random.Generator,
) -> U16:
    """Raw counts of one energy (0 high, 1 low) for transmissions ``t`` (lines, channels)."""
    out_rel = source.output * (1.0 if energy == 0 else source.lo_output)
    s_air = (det.air_adu * out_rel * state.gain[energy]).astype(np.float32)
    quanta = max(det.quanta_air * out_rel, 1e-9)
    k = (s_air / np.float32(quanta)).astype(np.float32)
    normals = rng.standard_normal(t.shape, dtype=np.float32)
    return _read_out(
        np.ascontiguousarray(t, dtype=np.float32),
        s_air,
        k,
        state.dark[energy],
        state.drift[energy],
        state.status,
        float(det.electronic_noise_adu),
        float(det.afterglow),
        normals,
    )
