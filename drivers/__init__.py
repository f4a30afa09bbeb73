"""Vendor drivers: talk to scanner hardware through one async protocol per role."""

from drivers._interface import (
    ControlEvent,
    DataLink,
    GapCause,
    LineFlags,
    LinkEpoch,
    LinkGap,
    LinkStats,
    Packet,
    PacketType,
    ScannerControl,
    ScannerIdentity,
    ScannerStatus,
)

__all__ = [
    "ControlEvent",
    "DataLink",
    "GapCause",
    "LineFlags",
    "LinkEpoch",
    "LinkGap",
    "LinkStats",
    "Packet",
    "PacketType",
    "ScannerControl",
    "ScannerIdentity",
    "ScannerStatus",
]
