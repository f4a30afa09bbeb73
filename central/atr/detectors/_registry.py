"""The detectors the analysis runs, in order."""

from __future__ import annotations

from ._base import Detector
from ._objects import DENSE_OBJECTS, IMPENETRABLE_OBJECTS
from ._organic import ORGANIC_IN_METAL
from ._structure import DOUBLE_FLOOR, DOUBLE_FLOOR_UNDER_GOODS, FALSE_WALL
from ._vehicle import VEHICLE

#: Every concealment detector, in the order their findings are listed (which decides
#: the order of findings of equal level and score in a verdict).
DETECTORS: tuple[Detector, ...] = (
    DENSE_OBJECTS,
    IMPENETRABLE_OBJECTS,
    ORGANIC_IN_METAL,
    FALSE_WALL,
    DOUBLE_FLOOR,
    DOUBLE_FLOOR_UNDER_GOODS,
    VEHICLE,
)
