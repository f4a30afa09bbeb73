"""The physically based image source: scenario → rays → transmissions → raw counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from firmware_sim._source import ScanImage

from ._cargo import (
    CONCEALMENTS,
    Scenario,
    arrange_load,
    conceal,
    goods_declaration,
    interior,
    load_cargo,
    object_mass_kg,
)
from ._detector import (
    ChannelState,
    DetectorModel,
    SourceModel,
    apply_crosstalk,
    channel_state,
    read_out,
    transmissions,
)
from ._geometry import Fan, Raster, SceneObject, pixel_box, rasterize
from ._models import ScannerModel, scanner_model
from ._scene import (
    ALL_CONTAINERS,
    COMMODITIES,
    CONTAINERS,
    TRAILER_DECK_Z,
    VARIETY_WEIGHTS,
    container_structure,
    rigid_truck,
    truck,
)
from ._transit import ExitScan, replaced_seal

U16 = npt.NDArray[np.uint16]


@dataclass(slots=True)
class PhysicsScan:
    """One simulated scan: calibration lines, image, ground truth and Goods Declaration.

    Arrays are ``(lines, channels)`` uint16, one row per detector line as it
    goes on the wire, channel 0 at the top of the fan.
    """

    dark_hi: U16
    dark_lo: U16
    air_hi: U16
    air_lo: U16
    img_hi: U16
    img_lo: U16
    truth: dict[str, Any]
    gd: dict[str, Any]

    def as_scan_image(self) -> ScanImage:
        """The simulator's wire-level view: image plus mean dark and air levels."""
        dark = np.stack([self.dark_hi.mean(axis=0), self.dark_lo.mean(axis=0)])
        air = np.stack([self.air_hi.mean(axis=0), self.air_lo.mean(axis=0)])
        seal = self.truth.get("seal_read") or self.gd.get("seal")
        return ScanImage(
            high=self.img_hi,
            low=self.img_lo,
            dark=np.rint(dark).astype(np.uint16),
            air=np.rint(air).astype(np.uint16),
            record={
                "pixel_mm": [
                    float(self.truth["line_pitch_mm"]),
                    float(self.truth["channel_pitch_mm"]),
                ],
                "gd": self.gd,
                # the container number and seal read at the gate match the declaration's
                # (unless the seal was broken and replaced on the way: ``seal_read``)
                **(
                    {"container": str(self.gd["container_number"])}
                    if "container_number" in self.gd
                    else {}
                ),
                **({"seal": str(seal)} if seal else {}),
            },
            truth=self.planted(),
        )

    def planted(self) -> dict[str, Any]:
        """What was planted, in brief: the load, the concealment, whether the GD tells the
        truth, and each object of the ground truth with its box in image pixels
        ``[line0, channel0, line1, channel1]`` (end-exclusive; lines are the viewer's
        columns, channels its rows)."""
        t = self.truth
        return {
            "commodity": t.get("commodity"),
            "concealment": t.get("concealment"),
            "gd_truthful": t.get("gd_truthful"),
            "discrepancies": list(t.get("discrepancies") or []),
            "objects": [
                {
                    "label": o["label"],
                    "kind": o["kind"],
                    "material": o["material"],
                    "box_px": [
                        o["pixels"]["line0"],
                        o["pixels"]["channel0"],
                        o["pixels"]["line1"],
                        o["pixels"]["channel1"],
                    ],
                }
                for o in t.get("objects") or []
            ],
        }


def build_scenario(
    rng: np.random.Generator,
    scan_id: int,
    *,
    commodity: str | None = None,
    concealment: str | None = None,
    container: str | None = None,
    empty: bool | None = None,
    lie: bool | None = None,
    variety: bool = False,
) -> Scenario:
    """Draw a truck, container, load, concealment and GD; fixed arguments override the draw.

    With ``variety`` the draw also covers 45 ft and 20 ft high-cube containers,
    rigid trucks, deck heights, wall thickness and corrugation, partial loads
    and how the load is arranged (:func:`arrange_load`); without it the draw is
    the original one, number for number.  ``concealment`` None draws one (or
    none), ``""`` fixes that nothing is hidden.

    Raises:
        KeyError: ``container`` or ``commodity`` is not a known code or name.
        ValueError: ``concealment`` is not one of :data:`CONCEALMENTS`.
    """
    deck_z = TRAILER_DECK_Z
    vehicle = "trailer"
    if not variety:
        code = container or str(rng.choice(list(CONTAINERS)))
        spec = ALL_CONTAINERS[code]
        objs, y_front = truck(spec.length + 600)
        objs += container_structure(spec, y_front)
    else:
        codes = list(VARIETY_WEIGHTS)
        weights = np.asarray(list(VARIETY_WEIGHTS.values()))
        code = container or str(rng.choice(codes, p=weights / weights.sum()))
        spec = ALL_CONTAINERS[code]
        if spec.length < 7000 and rng.random() < 0.4:
            vehicle = "rigid"
            deck_z = float(rng.uniform(1000.0, 1250.0))
            objs, y_front = rigid_truck(spec.length + 300, deck_z)
        else:
            deck_z = float(rng.uniform(1150.0, 1400.0))
            objs, y_front = truck(spec.length + 600, deck_z)
        period = float(rng.uniform(260.0, 300.0))
        objs += container_structure(
            spec,
            y_front,
            deck_z,
            wall_mm=float(rng.uniform(1.5, 2.0)),
            corrugation_period_mm=period,
            corrugation_phase_mm=float(rng.uniform(0.0, period)),
        )
    space = interior(spec, y_front, deck_z)
    is_empty = bool(rng.random() < 0.08) if empty is None else empty
    name = None if is_empty else (commodity or str(rng.choice(list(COMMODITIES))))
    cargo: list[SceneObject] = []
    load: dict[str, Any] = {}
    if name is not None:
        if not variety:
            fraction = float(rng.uniform(0.6, 1.0))
        else:
            fraction = float(rng.uniform(0.25, 1.0)) if rng.random() < 0.35 else 1.0
        cargo = load_cargo(COMMODITIES[name], space, rng, fraction)
        if variety:
            cargo, load = arrange_load(cargo, space, rng)
            load["fraction"] = round(fraction, 3)
    hidden = concealment
    if hidden is None and rng.random() < 0.3:
        metal = name is not None and COMMODITIES[name].material.kind == "metal"
        choices = [k for k in CONCEALMENTS if (k != "organic in metal" or metal)]
        if spec.length < 7000:
            choices = [k for k in choices if k != "vehicle"]
        hidden = str(rng.choice(choices))
    extra = conceal(hidden, space, cargo, rng, variety=variety) if hidden else []
    if hidden in ("false wall", "double floor", "vehicle"):
        # these take space: cargo overlapping them is not loaded; small items sit among the goods
        for h in extra:
            hb = h.bounds()
            cargo = [c for c in cargo if not _overlaps(c.bounds(), hb)]
    cargo_kg = sum(object_mass_kg(o) for o in cargo + extra)
    packages = sum(1 for o in cargo if o.label == name)
    will_lie = bool(rng.random() < 0.2) if lie is None else lie
    gd, disc = goods_declaration(
        rng, scan_id, spec, name, cargo_kg, packages, hidden or None, will_lie
    )
    length = y_front + spec.length + 900.0
    return Scenario(
        objects=objs + cargo + extra,
        length_mm=length,
        container=spec,
        commodity=name,
        concealment=hidden or None,
        gd=gd,
        gd_truthful=not disc,
        discrepancies=disc,
        y_front=y_front,
        deck_z=deck_z,
        vehicle=vehicle,
        cargo_kg=cargo_kg,
        load=load,
    )


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return (
        a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3] and a[4] < b[5] and b[4] < a[5]
    )


@dataclass(slots=True)
class PhysicsSource:
    """Physically based dual-energy image source (implements ``ImageSource``).

    ``detector_seed`` fixes the detector array (offsets, gains, bad channels)
    the way a real scanner's hardware is fixed; the scan seed and id fix the
    cargo and the noise.  With ``exit`` set the source is the exit scanner of
    an ATT corridor: :meth:`scan` draws the scenario of the same seed and id
    (the entry scanner's container) and sees it as :class:`ExitScan` says.
    ``model`` (set by :meth:`for_model`) is the scanner model the source,
    detector and fan came from; it also gives the fan for any channel count
    and whether scenes are drawn with variety.  Without it the source is the
    original scanner, as before models existed.
    """

    source: SourceModel = field(default_factory=SourceModel)
    detector: DetectorModel = field(default_factory=DetectorModel)
    fan: Fan | None = None
    detector_seed: int = 1
    calibration_lines: int = 32
    exit: ExitScan | None = None
    model: ScannerModel | None = None
    _state: dict[int, ChannelState] = field(default_factory=dict, repr=False)

    @classmethod
    def for_model(
        cls,
        model: str | ScannerModel,
        *,
        detector_seed: int = 1,
        output: float = 1.0,
        exit: ExitScan | None = None,
    ) -> PhysicsSource:
        """The image source of one scanner model (by name or itself).

        Args:
            model: a name in :data:`SCANNER_MODELS` or a model.
            detector_seed: fixes this unit's detector array (offsets, gains, bad channels).
            output: the linac's output relative to nominal (a weak source < 1).
            exit: as for the constructor (ATT exit scanner).

        Raises:
            ConfigError: no model has that name.
        """
        m = scanner_model(model)
        return cls(
            source=m.source_model(output),
            detector=m.detector_model(),
            fan=m.fan(),
            detector_seed=detector_seed,
            exit=exit,
            model=m,
        )

    def _fan(self, channels: int) -> Fan:
        if self.fan is not None and self.fan.channels == channels:
            return self.fan
        if self.model is not None:
            return self.model.fan(channels)
        return Fan(channels)

    def _variety(self, variety: bool | None) -> bool:
        if variety is not None:
            return variety
        return self.model.variety if self.model is not None else False

    def channel_state(self, channels: int) -> ChannelState:
        """The detector array's fixed per-channel constants."""
        st = self._state.get(channels)
        if st is None:
            st = channel_state(self.detector, channels, self.detector_seed)
            self._state[channels] = st
        return st

    def scan(self, seed: int, scan_id: int, channels: int, lines: int) -> ScanImage:
        """``ImageSource`` entry point: a random scenario drawn from (seed, scan_id)."""
        if self.exit is not None:
            return self.simulate_exit(seed, scan_id, channels, lines).as_scan_image()
        return self.simulate(seed, scan_id, channels, lines).as_scan_image()

    def simulate_exit(
        self,
        seed: int,
        scan_id: int,
        channels: int,
        lines: int,
        *,
        variety: bool | None = None,
        **scenario: Any,
    ) -> PhysicsScan:
        """Scan B of an ATT transit: the scenario :meth:`simulate` draws for (seed, scan_id),
        seen at the exit as ``self.exit`` says (tampered, another belt speed, fresh noise)."""
        ex = self.exit or ExitScan()
        rng = np.random.default_rng([seed, scan_id])
        sc = build_scenario(rng, scan_id, variety=self._variety(variety), **scenario)
        # the exit is another scan: its own noise and its own tampering draw, the same cargo
        rng_b = np.random.default_rng([seed, scan_id, self.detector_seed, 2])
        objects, length, truth = ex.exit_scene(sc, scan_id, rng_b)
        if scan_id in ex.broken_seal and "seal" in sc.gd:
            truth["seal_read"] = replaced_seal(str(sc.gd["seal"]), scan_id)
        return self.simulate_objects(
            objects,
            length,
            channels,
            lines,
            rng_b,
            truth_extra={**_truth_header(sc), **truth},
            gd=sc.gd,
        )

    def simulate(
        self,
        seed: int,
        scan_id: int,
        channels: int,
        lines: int,
        *,
        variety: bool | None = None,
        **scenario: Any,
    ) -> PhysicsScan:
        """Simulate one scan; keyword arguments fix parts of the scenario (see build_scenario).

        ``variety`` None: the model's choice (off for the original scanner).
        """
        rng = np.random.default_rng([seed, scan_id])
        sc = build_scenario(rng, scan_id, variety=self._variety(variety), **scenario)
        return self.simulate_objects(
            sc.objects,
            sc.length_mm,
            channels,
            lines,
            rng,
            truth_extra=_truth_header(sc),
            gd=sc.gd,
        )

    def simulate_objects(
        self,
        objects: list[SceneObject],
        length_mm: float,
        channels: int,
        lines: int,
        rng: np.random.Generator,
        *,
        oversample: int = 1,
        truth_extra: dict[str, Any] | None = None,
        gd: dict[str, Any] | None = None,
    ) -> PhysicsScan:
        """Simulate any list of scene objects over ``length_mm`` of travel."""
        fan = self._fan(channels)
        pitch = length_mm / lines
        ys = np.asarray((np.arange(lines) + 0.5) * pitch, dtype=np.float64)
        raster = Raster(fan, ys, pitch, oversample)
        b = rasterize(objects, raster)
        det = self.detector
        t_hi, t_lo = transmissions(b, self.source, oversample, det)
        t_hi = apply_crosstalk(t_hi, det.crosstalk)
        t_lo = apply_crosstalk(t_lo, det.crosstalk)
        st = self.channel_state(channels)
        n = self.calibration_lines
        zeros = np.zeros((n, channels), dtype=np.float32)
        ones = np.ones((n, channels), dtype=np.float32)
        out = [
            read_out(t, e, self.source, det, st, rng)
            for t, e in ((zeros, 0), (zeros, 1), (ones, 0), (ones, 1), (t_hi, 0), (t_lo, 1))
        ]
        truth: dict[str, Any] = dict(truth_extra or {})
        truth.update(
            {
                "line_pitch_mm": pitch,
                "channel_pitch_mm": fan.pitch_mm(),
                "length_mm": length_mm,
                "source": {
                    "endpoint_hi_mev": self.source.endpoint_hi_mev,
                    "endpoint_lo_mev": self.source.endpoint_lo_mev,
                    "output": self.source.output,
                },
                **({"scanner_model": self.model.name} if self.model is not None else {}),
                "dead_channels": np.nonzero(st.status == 1)[0].tolist(),
                "hot_channels": np.nonzero(st.status == 2)[0].tolist(),
                "objects": [_truth_object(o, raster) for o in objects if o.truth],
            }
        )
        return PhysicsScan(out[0], out[1], out[2], out[3], out[4], out[5], truth, dict(gd or {}))


def _truth_header(sc: Scenario) -> dict[str, Any]:
    head: dict[str, Any] = {
        "container": sc.container.code,
        "commodity": sc.commodity,
        "concealment": sc.concealment,
        "gd_truthful": sc.gd_truthful,
        "discrepancies": list(sc.discrepancies),
    }
    if sc.load or sc.vehicle != "trailer" or sc.deck_z != TRAILER_DECK_Z:  # a scene with variety
        head.update(
            {
                "vehicle": sc.vehicle,
                "deck_z_mm": round(sc.deck_z, 1),
                "load": sc.load,
            }
        )
    return head


def _truth_object(obj: SceneObject, raster: Raster) -> dict[str, Any]:
    l0, l1, c0, c1 = pixel_box(obj, raster)
    return {
        "label": obj.label,
        "kind": obj.kind,
        "material": obj.material.name,
        "material_class": obj.material.kind,
        "density": round(obj.density, 4),
        "box_mm": [round(v, 1) for v in obj.bounds()],
        "pixels": {"line0": l0, "line1": l1, "channel0": c0, "channel1": c1},
        **({"group": obj.group} if obj.group else {}),
    }
