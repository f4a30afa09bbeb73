# ruff: noqa: RUF002
"""Automated threat recognition (R7, R9–R12, R14): verdicts, ATT comparison and TIP."""

from ._analyze import analyze, analyze_binned
from ._model import CATEGORIES, GREEN, RED, YELLOW, AtrInputError, Finding, Verdict

__all__ = [
    "CATEGORIES",
    "GREEN",
    "RED",
    "YELLOW",
    "AtrInputError",
    "Finding",
    "Verdict",
    "analyze",
    "analyze_binned",
]
