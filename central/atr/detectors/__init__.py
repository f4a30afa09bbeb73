"""Concealment and anomaly detectors on the binned, localised attenuation image.

Each detector looks for what the container model (ISO dry van: front wall,
doors, floor, thin side walls) and the surrounding cargo do not explain:

* dense objects: attenuation well above the cargo around them (running
  medians along and across travel, over cargo pixels only), split by material
  into dense object and high-Z object;
* firearm-like shapes: a handgun's outline fitted over the cargo around it;
* organic packages in metal cargo: a low-Z blob in a load that is metal;
* false wall: a full-height dense line a little behind the front wall, with
  attenuating goods between;
* double floor: a dense flat layer on the floor under an empty band, over a
  metre or more;
* undeclared vehicle: wheel-sized rings standing on the floor at a
  wheelbase's distance.

Thresholds come from tuning on simulator seeds disjoint from the benchmark
(see docs/atr.md); scores are scaled so that 1.0 is the red threshold.
"""

from ._firearm import (
    FIREARM_AMPLITUDE,
    FIREARM_FIT,
    FIREARM_TOPHAT_MM,
    HANDGUN_OUTLINE_MM,
    firearm_shapes,
)
from ._objects import (
    DENSE_AREA_CAP,
    DENSE_AREA_MM2,
    IMPENETRABLE_MM2,
    ISOLATED_EMPTY,
    ISOLATED_MIN_MM,
    ISOLATED_SIDE_MM,
    dense_objects,
    impenetrable_objects,
)
from ._organic import MIXED_MAX_ZEFF, MIXED_MIN_A, ORGANIC_MIN_A, ORGANIC_MIN_MM2, organic_in_metal
from ._scene import F32, MU_RHO_HI, Scene, line_offsets, same_object
from ._structure import (
    FALSE_WALL_CONTRAST,
    FALSE_WALL_PLATE,
    FLOOR_PEAK_A,
    FLOOR_PEAK_MAX_A,
    GAP_A,
    GAP_FILL_SHARE,
    GAP_FILLED_A,
    GAP_NARROW_MM,
    double_floor,
    double_floor_under_goods,
    false_wall,
)
from ._vehicle import WHEEL_CANDIDATES, WHEEL_RING_MIN, WHEEL_RING_OVER_HUB, vehicle

__all__ = [
    "DENSE_AREA_CAP",
    "DENSE_AREA_MM2",
    "F32",
    "FALSE_WALL_CONTRAST",
    "FALSE_WALL_PLATE",
    "FIREARM_AMPLITUDE",
    "FIREARM_FIT",
    "FIREARM_TOPHAT_MM",
    "FLOOR_PEAK_A",
    "FLOOR_PEAK_MAX_A",
    "GAP_A",
    "GAP_FILLED_A",
    "GAP_FILL_SHARE",
    "GAP_NARROW_MM",
    "HANDGUN_OUTLINE_MM",
    "IMPENETRABLE_MM2",
    "ISOLATED_EMPTY",
    "ISOLATED_MIN_MM",
    "ISOLATED_SIDE_MM",
    "MIXED_MAX_ZEFF",
    "MIXED_MIN_A",
    "MU_RHO_HI",
    "ORGANIC_MIN_A",
    "ORGANIC_MIN_MM2",
    "WHEEL_CANDIDATES",
    "WHEEL_RING_MIN",
    "WHEEL_RING_OVER_HUB",
    "Scene",
    "dense_objects",
    "double_floor",
    "double_floor_under_goods",
    "false_wall",
    "firearm_shapes",
    "impenetrable_objects",
    "line_offsets",
    "organic_in_metal",
    "same_object",
    "vehicle",
]
