"""One interface for every concealment detector, and what the scan tells them beforehand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .._model import Category, Finding
from ._scene import Scene


@dataclass(frozen=True, slots=True)
class Context:
    """What the analysis knows of the scan before the detectors run.

    ``metal_cargo``: the load is metal (machinery, scrap, copper: from the
    image's material mix against the GD, ``_gd.gd_consistency``), which hosts
    "organic in metal cargo" and changes what an impenetrable region means.
    """

    metal_cargo: bool = False


class Detector(Protocol):
    """A concealment detector: a scene and its context in, raw findings out.

    ``name`` says which detector it is (unique in ``DETECTORS``);
    ``categories`` are all the :class:`Category` values its findings may
    carry.  ``detect`` returns findings with raw scores (1.0 at the detector's
    own red threshold, before per-commodity scaling), in a fixed order.
    """

    @property
    def name(self) -> str:
        """The detector's name, unique among the detectors."""
        ...

    @property
    def categories(self) -> frozenset[Category]:
        """Every category its findings may carry."""
        ...

    def detect(self, scene: Scene, context: Context) -> list[Finding]:
        """The findings on ``scene``, raw scores, in a fixed order."""
        ...


@dataclass(frozen=True, slots=True)
class SceneDetector:
    """A :class:`Detector` made of one function of the scene and its context."""

    name: str
    categories: frozenset[Category]
    run: Callable[[Scene, Context], list[Finding]]

    def detect(self, scene: Scene, context: Context) -> list[Finding]:
        """The findings of ``run`` on ``scene`` (see :class:`Detector`)."""
        return self.run(scene, context)
