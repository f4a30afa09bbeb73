"""The known container models: ISO 668 outside dimensions and typical tare masses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ContainerModel:
    """An ISO dry van: outside length, width, height (mm) and tare (kg)."""

    code: str
    length: float
    width: float
    height: float
    tare_kg: float

    def inner_volume_m3(self) -> float:
        """Loadable volume: walls, floor and roof taken off."""
        return (self.length - 150) * (self.width - 90) * (self.height - 270) / 1e9


CONTAINER_MODELS: dict[str, ContainerModel] = {
    "20GP": ContainerModel("20GP", 6058.0, 2438.0, 2591.0, 2200.0),
    "40GP": ContainerModel("40GP", 12192.0, 2438.0, 2591.0, 3750.0),
    "40HC": ContainerModel("40HC", 12192.0, 2438.0, 2896.0, 3900.0),
    "20HC": ContainerModel("20HC", 6058.0, 2438.0, 2896.0, 2350.0),
    "45HC": ContainerModel("45HC", 13716.0, 2438.0, 2896.0, 4800.0),
}


def model_for(code: str | None, length_mm: float) -> ContainerModel:
    """The declared model if known and as long as the image's container, else the nearest.

    A declared model of another length than the image shows is not used: its tare
    would be wrong (the caller reports the mismatch, :func:`declared_size_differs`).
    """
    nearest = min(CONTAINER_MODELS.values(), key=lambda m: abs(m.length - length_mm))
    if code and code in CONTAINER_MODELS and CONTAINER_MODELS[code].length == nearest.length:
        return CONTAINER_MODELS[code]
    return nearest


def declared_size_differs(code: str | None, length_mm: float) -> bool:
    """Whether a declared model's length is not the length the image shows."""
    if not code or code not in CONTAINER_MODELS:
        return False
    nearest = min(CONTAINER_MODELS.values(), key=lambda m: abs(m.length - length_mm))
    return CONTAINER_MODELS[code].length != nearest.length
