# ruff: noqa: RUF002
"""Scanner models: what differs between one vendor's cargo scanner and another's.

A :class:`ScannerModel` fixes the linac (endpoints, low-energy output,
filtration), the detector (scintillator, depth, channel count and span, noise,
crosstalk, afterglow), the fan geometry and the scan speed and line rate.  The
spectra, transmission tables and read-out of a scan follow from it.  The
models in :data:`SCANNER_MODELS` are made up, not any vendor's figures, but
chosen to be plausible for container scanners (endpoints 2.5–9 MeV, CdWO₄ or
CsI(Tl) arrays 15–40 mm deep, 2.5–4.3 mm pixels, 0.4–3 m/s).  The table and the
sources of the physical constants are in ``docs/simulator-models.md``.

:data:`DEFAULT_MODEL` is the simulator's original scanner; built from it,
:class:`~firmware_sim.physics.PhysicsSource` gives bit for bit the images of
``PhysicsSource()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError

from ._detector import DetectorModel, SourceModel, beams
from ._geometry import Fan
from ._spectra import Scintillator
from ._transmission import Beam, Spectrum, spectrum


@dataclass(frozen=True, slots=True)
class ScannerModel:
    """One vendor's scanner; every length in mm at the vehicle's centre plane unless said.

    Attributes:
        name: the model's name (``scanner`` in exported cases and wedge scans).
        summary: one line for listings.
        endpoint_hi_mev, endpoint_lo_mev: the interlaced linac's two endpoints, MeV.
        lo_output: low-energy pulses' output relative to the high-energy ones.
        target_w_mm, window_steel_mm: filtration (tungsten target, steel window
            and collimator), mm.
        scintillator, depth_mm: the detector crystal and its depth along the beam.
        channels: detector channels in the column.
        z_bottom_mm, z_top_mm: the heights the bottom and top channels see at
            the centre plane (the channel pitch follows).
        source_distance_mm: from the source (focal spot) to the centre plane.
        source_height_mm: the focal spot's height above the road.
        speed_m_s: nominal speed of the vehicle (or the gantry), m/s.
        line_rate_hz: dual-energy lines per second (one high and one low pulse each).
        quanta_air: detected quanta per pixel in air at nominal output (the dose:
            photon noise goes as 1/√quanta).
        electronic_noise_adu: read-out noise, ADU rms.
        air_adu: air signal above dark at nominal output, ADU.
        crosstalk: fraction of signal shared with each neighbouring channel.
        afterglow: fraction of a line's signal that leaks into the next.
        dead_fraction, hot_fraction: share of bad channels in a new array.
        variety: whether :meth:`PhysicsSource.simulate` draws scenes with the
            added variety (containers, vehicles, deck heights, packing) by
            default; off only for the original model, whose draws stay as they were.
    """

    name: str
    summary: str
    endpoint_hi_mev: float = 6.0
    endpoint_lo_mev: float = 4.0
    lo_output: float = 0.6
    target_w_mm: float = 2.0
    window_steel_mm: float = 5.0
    scintillator: Scintillator = Scintillator.CDWO4
    depth_mm: float = 30.0
    channels: int = 1536
    z_bottom_mm: float = 100.0
    z_top_mm: float = 4500.0
    source_distance_mm: float = 4000.0
    source_height_mm: float = 1100.0
    speed_m_s: float = 2.0
    line_rate_hz: float = 400.0
    quanta_air: float = 4.0e6
    electronic_noise_adu: float = 0.3
    air_adu: float = 58000.0
    crosstalk: float = 0.02
    afterglow: float = 0.002
    dead_fraction: float = 0.002
    hot_fraction: float = 0.001
    variety: bool = True

    @property
    def channel_pitch_mm(self) -> float:
        """Channel pitch at the centre plane (vertical pixel size), mm."""
        return (self.z_top_mm - self.z_bottom_mm) / self.channels

    @property
    def line_pitch_mm(self) -> float:
        """Distance the vehicle travels per line at nominal speed (horizontal pixel size), mm."""
        return self.speed_m_s * 1000.0 / self.line_rate_hz

    def fan(self, channels: int | None = None) -> Fan:
        """The fan of rays; with another ``channels`` the same span is split into that many."""
        return Fan(
            self.channels if channels is None else channels,
            source_x=-self.source_distance_mm,
            source_z=self.source_height_mm,
            z_top=self.z_top_mm,
            z_bottom=self.z_bottom_mm,
        )

    def source_model(self, output: float = 1.0) -> SourceModel:
        """The linac as the read-out sees it (``output``: relative dose rate)."""
        return SourceModel(
            endpoint_hi_mev=self.endpoint_hi_mev,
            endpoint_lo_mev=self.endpoint_lo_mev,
            output=output,
            lo_output=self.lo_output,
            target_w_mm=self.target_w_mm,
            window_steel_mm=self.window_steel_mm,
        )

    def detector_model(self) -> DetectorModel:
        """The detector array and its read-out chain."""
        return DetectorModel(
            air_adu=self.air_adu,
            quanta_air=self.quanta_air,
            electronic_noise_adu=self.electronic_noise_adu,
            dead_fraction=self.dead_fraction,
            hot_fraction=self.hot_fraction,
            afterglow=self.afterglow,
            crosstalk=self.crosstalk,
            scintillator=self.scintillator,
            depth_mm=self.depth_mm,
        )

    def beams(self) -> tuple[Beam, Beam]:
        """The (high, low) beams: what fixes the two detector-weighted spectra."""
        return beams(self.source_model(), self.detector_model())

    def spectra(self) -> tuple[Spectrum, Spectrum]:
        """The (high, low) spectrum-weighted detector responses S(E)·D(E), normalised."""
        hi, lo = self.beams()
        return spectrum(hi), spectrum(lo)

    def describe(self) -> dict[str, Any]:
        """The model's figures for listings and the docs' table (JSON-ready)."""
        hi, lo = self.spectra()
        return {
            "name": self.name,
            "summary": self.summary,
            "endpoints_mev": [self.endpoint_hi_mev, self.endpoint_lo_mev],
            "filtration_mm": {"W": self.target_w_mm, "steel": self.window_steel_mm},
            "detector": f"{self.scintillator.value} {self.depth_mm:g} mm",
            "channels": self.channels,
            "pixel_mm": [round(self.line_pitch_mm, 3), round(self.channel_pitch_mm, 3)],
            "source_distance_mm": self.source_distance_mm,
            "source_height_mm": self.source_height_mm,
            "speed_m_s": self.speed_m_s,
            "line_rate_hz": self.line_rate_hz,
            "quanta_air": self.quanta_air,
            "crosstalk": self.crosstalk,
            "afterglow": self.afterglow,
            "mean_signal_energy_mev": [
                round(float((s.energy_mev * s.weight).sum()), 3) for s in (hi, lo)
            ],
        }


#: The simulator's original scanner (every default of the physics model).
DEFAULT_MODEL = ScannerModel(
    "l6-cdwo4-30",
    "6/4 MeV, 30 mm CdWO4, 2.9 mm pixels, 2 m/s (the original)",
    variety=False,
)

#: Every scanner model by name; the first is the default.
SCANNER_MODELS: dict[str, ScannerModel] = {
    m.name: m
    for m in (
        DEFAULT_MODEL,
        ScannerModel(
            "l9-cdwo4-40",
            "9/6 MeV, 40 mm CdWO4, 4 mm pixels, high dose, fast drive-through (3 m/s)",
            endpoint_hi_mev=9.0,
            endpoint_lo_mev=6.0,
            lo_output=0.7,
            target_w_mm=3.0,
            window_steel_mm=6.0,
            depth_mm=40.0,
            channels=1300,
            z_bottom_mm=80.0,
            z_top_mm=5280.0,
            source_distance_mm=5000.0,
            source_height_mm=1300.0,
            speed_m_s=3.0,
            line_rate_hz=500.0,
            quanta_air=9.0e6,
            electronic_noise_adu=0.4,
            air_adu=55000.0,
            crosstalk=0.015,
            afterglow=0.0015,
        ),
        ScannerModel(
            "l6-csi-20",
            "6/3.5 MeV, 20 mm CsI(Tl), 2.5 mm pixels, 1.2 m/s, long afterglow",
            endpoint_hi_mev=6.0,
            endpoint_lo_mev=3.5,
            lo_output=0.5,
            target_w_mm=1.0,
            window_steel_mm=3.0,
            scintillator=Scintillator.CSI,
            depth_mm=20.0,
            channels=2080,
            z_bottom_mm=150.0,
            z_top_mm=5350.0,
            source_distance_mm=4200.0,
            source_height_mm=900.0,
            speed_m_s=1.2,
            line_rate_hz=300.0,
            quanta_air=2.5e6,
            electronic_noise_adu=0.5,
            air_adu=50000.0,
            crosstalk=0.03,
            afterglow=0.008,
        ),
        ScannerModel(
            "l4-cdwo4-15",
            "4/2.5 MeV, 15 mm CdWO4, 4.3 mm pixels, low dose, slow gantry (0.4 m/s)",
            endpoint_hi_mev=4.0,
            endpoint_lo_mev=2.5,
            lo_output=0.55,
            target_w_mm=1.5,
            window_steel_mm=4.0,
            depth_mm=15.0,
            channels=1200,
            z_bottom_mm=100.0,
            z_top_mm=5260.0,
            source_distance_mm=4500.0,
            source_height_mm=1000.0,
            speed_m_s=0.4,
            line_rate_hz=100.0,
            quanta_air=6.0e5,
            electronic_noise_adu=0.6,
            air_adu=52000.0,
            crosstalk=0.025,
            afterglow=0.003,
        ),
    )
}


def scanner_model(model: str | ScannerModel | None = None) -> ScannerModel:
    """The model of that name (or the model itself; None: the default).

    Raises:
        ConfigError: no model has that name (the message lists the known ones).
    """
    if model is None:
        return DEFAULT_MODEL
    if isinstance(model, ScannerModel):
        return model
    try:
        return SCANNER_MODELS[model.strip().lower()]
    except KeyError:
        raise ConfigError(
            f"unknown scanner model {model!r}",
            fix=f"Use one of: {', '.join(SCANNER_MODELS)} ('nii sim models' lists them).",
        ) from None
