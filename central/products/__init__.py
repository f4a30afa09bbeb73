"""Image products of the central image repository: the UFF-style package and DICOS files."""

from central.products._dicos import (
    DICOM_DX_PRESENTATION,
    DICOS_DX_PRESENTATION,
    dicos_dx,
    write_dicos_dx,
)
from central.products._uff import FORMAT, VERSION, UffPackage, read_uff, uff_bytes, write_uff

__all__ = [
    "DICOM_DX_PRESENTATION",
    "DICOS_DX_PRESENTATION",
    "FORMAT",
    "VERSION",
    "UffPackage",
    "dicos_dx",
    "read_uff",
    "uff_bytes",
    "write_dicos_dx",
    "write_uff",
]
