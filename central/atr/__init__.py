# ruff: noqa: RUF002
"""Automated threat recognition (R7, R9–R12, R14): verdicts, ATT comparison and TIP."""

from ._analyze import analyze, analyze_binned
from ._model import AtrInputError, Category, Finding, Level, Verdict

__all__ = [
    "AtrInputError",
    "Category",
    "Finding",
    "Level",
    "Verdict",
    "analyze",
    "analyze_binned",
]
