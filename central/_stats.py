"""The central aggregator's counters, read by its metrics and its status on the feed."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CentralStats"]


@dataclass
class CentralStats:
    blocks_committed: int = 0
    lines_committed: int = 0
    bytes_committed: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    out_of_order: int = 0
    commits: int = 0
    commit_seconds: float = 0.0
    refused_connections: int = 0
    bad_messages: int = 0
    storage_failures: int = 0
    #: heartbeats whose uptime entries were not stored: their sender was not the live
    #: writer of the scanner (another process of the same edge)
    uptime_skipped: int = 0
