"""The live feed for control rooms (ZeroMQ SUB side), as ``nii control-room tail`` prints it."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import zmq
import zmq.asyncio

TOPICS = (
    b"scan.started",
    b"scan.block",
    b"scan.finished",
    b"alarm",
    b"atr.verdict",
    b"atr.att",
)


#: the sparkline's levels, light to dark (denser cargo is darker in an X-ray image)
_LEVELS = " ▁▂▃▄▅▆▇█"


def preview_shape(preview: bytes, shape: Any, width: int = 32) -> str:
    """The outline of a ``scan.block`` preview as a line of ``width`` characters: the
    channels (the top of the vehicle left, its bottom right) in ``width`` bands, each drawn as
    dark as the block's lines are dense there on average. "" when ``preview`` does not
    fit ``shape`` ([lines, channels] of uint8, high-energy counts / 256)."""
    import numpy as np

    if not (isinstance(shape, list) and len(shape) == 2 and all(type(v) is int for v in shape)):
        return ""
    lines, ch = shape
    if lines <= 0 or ch <= 0 or len(preview) != lines * ch:
        return ""
    arr = np.frombuffer(preview, dtype=np.uint8).reshape(lines, ch).astype(np.float32)
    profile = arr.mean(axis=0)  # per channel: mean counts, low = dense
    bands = np.array_split(profile, min(width, ch))
    top = max(float(profile.max()), 1.0)
    out = []
    for b in bands:
        dark = 1.0 - float(b.mean()) / top  # 0 = air, 1 = nothing gets through
        out.append(_LEVELS[min(len(_LEVELS) - 1, int(dark * (len(_LEVELS) - 1) + 0.5))])
    return "".join(out)


def format_event(topic: bytes, doc: dict[str, Any], preview: bytes = b"") -> str:
    """One human line per feed event; ``preview`` the raw frame of a ``scan.block``."""
    t = time.strftime("%H:%M:%S")
    if topic == b"scan.started":
        return (
            f"{t} SCAN STARTED  {doc.get('scanner')} scan {doc.get('scan_id')} "
            f"(ref {doc.get('ref')}) container {doc.get('container') or '?'} "
            f"{doc.get('lines_planned')} lines planned"
        )
    if topic == b"scan.finished":
        return (
            f"{t} SCAN FINISHED {doc.get('scanner')} scan {doc.get('scan_id')} "
            f"(ref {doc.get('ref')}) {doc.get('status')}: {doc.get('lines_received')}/"
            f"{doc.get('lines_planned')} lines, {doc.get('gaps')} gap(s)"
        )
    if topic == b"scan.block":
        outline = preview_shape(preview, doc.get("shape"))
        return (
            f"{t} preview       {doc.get('scanner')} scan {doc.get('scan_id')} lines "
            f"{doc.get('first_line')}+{doc.get('lines')} "
            + (f"|{outline}| (roof to floor)" if outline else "(no picture)")
        )
    if topic == b"central.status":
        who = f" ({doc['name']})" if doc.get("name") else ""
        return (
            f"{t} central       alive{who}: {doc.get('blocks_committed')} blocks, "
            f"{doc.get('lines_committed')} lines committed, {doc.get('rejected')} refused"
        )
    if topic == b"alarm":
        edge = f" (edge {doc['edge']})" if doc.get("edge") else ""
        return f"{t} ALARM {doc.get('kind')} {doc.get('scanner') or ''}{edge}: {doc.get('message')}"
    if topic == b"atr.verdict":
        from central.atr._live import format_verdict

        return f"{t} {format_verdict(doc)}"
    if topic == b"atr.att":
        from central.atr._transit import format_att

        return f"{t} {format_att(doc)}"
    return f"{t} {topic.decode(errors='replace')} {doc}"


async def tail(
    endpoint: str | Sequence[str],
    *,
    previews: bool = True,
    as_json: bool = False,
    status: bool = False,
    count: int = 0,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
) -> int:
    """Print feed events until ``count`` were printed (0 = forever) or ``stop`` is set.

    ``endpoint``: one aggregator's feed, or every aggregator's of a national CIR (one
    SUB socket connects to all; their events arrive merged, each in its own order).
    """
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    for t in TOPICS:
        if previews or t != b"scan.block":
            sock.setsockopt(zmq.SUBSCRIBE, t)
    if status:
        sock.setsockopt(zmq.SUBSCRIBE, b"central.status")
    for ep in [endpoint] if isinstance(endpoint, str) else endpoint:
        sock.connect(ep)
    printed = 0
    try:
        while count == 0 or printed < count:
            if stop is not None and stop.is_set():
                break
            if not await sock.poll(200):
                continue
            frames = await sock.recv_multipart()
            topic = frames[0]
            try:
                doc = json.loads(frames[1])
            except (ValueError, IndexError):
                continue
            if as_json:
                out.write(json.dumps({"topic": topic.decode(), **doc}) + "\n")
            else:
                out.write(format_event(topic, doc, frames[2] if len(frames) > 2 else b"") + "\n")
            out.flush()
            printed += 1
    finally:
        sock.close(linger=0)
        ctx.term()
    return printed
