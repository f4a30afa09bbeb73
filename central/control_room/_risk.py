"""Placeholder: routes added by its module."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute


def routes(app: Any) -> list[BaseRoute]:
    return []
