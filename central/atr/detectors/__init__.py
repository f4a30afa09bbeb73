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

Every detector is a :class:`Detector` (a name, the categories it emits and
``detect(scene, context)``); :data:`DETECTORS` lists them in the order the
analysis runs them.  One module per family: ``_objects`` (dense, high-Z and
impenetrable objects), ``_firearm``, ``_organic``, ``_structure`` (false wall,
double floors) and ``_vehicle``, all on the shared ``_scene``.
"""

from ._base import Context, Detector, SceneDetector
from ._firearm import HANDGUN_OUTLINE_MM, firearm_shapes
from ._objects import (
    DENSE_OBJECTS,
    IMPENETRABLE_OBJECTS,
    UNIFORM_RED_AT,
    dense_objects,
    impenetrable_objects,
    one_per_object,
)
from ._organic import ORGANIC_IN_METAL, organic_in_metal
from ._registry import DETECTORS
from ._scene import MU_RHO_HI, Scene, same_object
from ._structure import (
    DOUBLE_FLOOR,
    DOUBLE_FLOOR_UNDER_GOODS,
    FALSE_WALL,
    double_floor,
    double_floor_under_goods,
    false_wall,
)
from ._vehicle import VEHICLE, vehicle

__all__ = [
    "DENSE_OBJECTS",
    "DETECTORS",
    "DOUBLE_FLOOR",
    "DOUBLE_FLOOR_UNDER_GOODS",
    "FALSE_WALL",
    "HANDGUN_OUTLINE_MM",
    "IMPENETRABLE_OBJECTS",
    "MU_RHO_HI",
    "ORGANIC_IN_METAL",
    "UNIFORM_RED_AT",
    "VEHICLE",
    "Context",
    "Detector",
    "Scene",
    "SceneDetector",
    "dense_objects",
    "double_floor",
    "double_floor_under_goods",
    "false_wall",
    "firearm_shapes",
    "impenetrable_objects",
    "one_per_object",
    "organic_in_metal",
    "same_object",
    "vehicle",
]
