"""Central aggregator: receives sealed blocks, keeps the CIR, feeds the control rooms."""

from central._aggregator import Central, run_central
from central._cir import Cir, StreamState, database_target
from central._sql import Sql, is_sql_error
from central._stats import CentralStats

__all__ = [
    "Central",
    "CentralStats",
    "Cir",
    "Sql",
    "StreamState",
    "database_target",
    "is_sql_error",
    "run_central",
]
