"""Simulated scanner firmware: speaks the vendors' wire protocols over real kernel interfaces."""

from firmware_sim._scanner import FAULT_KINDS, FaultConfig, SimConfig, SimScanner
from firmware_sim._source import ImageSource, ReplaySource, ScanImage, SyntheticSource

__all__ = [
    "FAULT_KINDS",
    "FaultConfig",
    "ImageSource",
    "ReplaySource",
    "ScanImage",
    "SimConfig",
    "SimScanner",
    "SyntheticSource",
]
