"""Physically based dual-energy X-ray simulation of container scans.

NIST XCOM attenuation data (committed table), filtered Kramers linac spectra,
an energy-integrating CdWO₄ or CsI(Tl) detector, several scanner models
(:data:`SCANNER_MODELS`) with their commissioning step-wedge scans, fan-beam
geometry of ISO containers on a truck with a cargo library and concealments,
and a detector model with photon and electronic noise, bad channels, gain drift
and afterglow.
"""

from ._attenuation import Material, atomic_number, mu_rho_element, xcom_table
from ._cargo import CONCEALMENTS, Scenario
from ._detector import DetectorModel, SourceModel
from ._export import CATEGORIES, PLAIN_KINDS, export_case, flat_field
from ._geometry import Box, Extrusion, Fan, SceneObject, annulus, polygon
from ._materials import LIBRARY
from ._models import DEFAULT_MODEL, SCANNER_MODELS, ScannerModel, scanner_model
from ._phantoms import qa_phantom_scan, qa_simulation
from ._scene import ALL_CONTAINERS, COMMODITIES, CONTAINERS, Commodity, ContainerSpec
from ._source import PhysicsScan, PhysicsSource, build_scenario
from ._spectra import Scintillator, bremsstrahlung, detector_response, mean_energy
from ._transit import BELT_SPEED_RANGE, TAMPER_KINDS, ExitScan, shift, tamper
from ._transmission import Beam, Spectrum, basis_fit, spectrum, transmission_exact
from ._wedges import WEDGES, wedge_scan, write_wedge_scan

__all__ = [
    "ALL_CONTAINERS",
    "BELT_SPEED_RANGE",
    "CATEGORIES",
    "COMMODITIES",
    "CONCEALMENTS",
    "CONTAINERS",
    "DEFAULT_MODEL",
    "LIBRARY",
    "PLAIN_KINDS",
    "SCANNER_MODELS",
    "TAMPER_KINDS",
    "WEDGES",
    "Beam",
    "Box",
    "Commodity",
    "ContainerSpec",
    "DetectorModel",
    "ExitScan",
    "Extrusion",
    "Fan",
    "Material",
    "PhysicsScan",
    "PhysicsSource",
    "ScannerModel",
    "Scenario",
    "SceneObject",
    "Scintillator",
    "SourceModel",
    "Spectrum",
    "annulus",
    "atomic_number",
    "basis_fit",
    "bremsstrahlung",
    "build_scenario",
    "detector_response",
    "export_case",
    "flat_field",
    "mean_energy",
    "mu_rho_element",
    "polygon",
    "qa_phantom_scan",
    "qa_simulation",
    "scanner_model",
    "shift",
    "spectrum",
    "tamper",
    "transmission_exact",
    "wedge_scan",
    "write_wedge_scan",
    "xcom_table",
]
