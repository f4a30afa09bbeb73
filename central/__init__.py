"""Central aggregator: receives sealed blocks, keeps the CIR, feeds the control rooms."""

from central._aggregator import Central, CentralStats, run_central
from central._cir import Cir, StreamState

__all__ = ["Central", "CentralStats", "Cir", "StreamState", "run_central"]
