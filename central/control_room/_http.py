"""What the control room's web application and its risk-system API share of HTTP."""

from __future__ import annotations

from starlette.requests import Request

__all__ = ["read_capped"]


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request body; None when it is larger than ``limit`` bytes, whatever its
    Content-Length says (the rest is not read)."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        return None
    out = bytearray()
    async for chunk in request.stream():
        out += chunk
        if len(out) > limit:
            return None
    return bytes(out)
