"""Vendor drivers: talk to scanner hardware through one async protocol per role."""

from drivers._interface import (
    ControlEvent,
    DataLink,
    LineFlags,
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
    "LineFlags",
    "LinkGap",
    "LinkStats",
    "Packet",
    "PacketType",
    "ScannerControl",
    "ScannerIdentity",
    "ScannerStatus",
]
