"""Edge daemon: one per edge box, beside its scanners or BWC docks."""

from edge._channel import ChannelStats, ScannerChannel, with_att_role
from edge._daemon import EdgeDaemon, run_edge
from edge._spool import Spool, SpoolState

__all__ = [
    "ChannelStats",
    "EdgeDaemon",
    "ScannerChannel",
    "Spool",
    "SpoolState",
    "run_edge",
    "with_att_role",
]
