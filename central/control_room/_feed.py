"""The live feeds of every aggregator, fanned out to the browsers (server-sent events).

One ZeroMQ SUB socket connects to every ``feeds`` endpoint (an aggregator's PUB,
decision 0018); each event is handed to every subscriber whose user may see its
scanner. A subscriber that cannot keep up (its queue full: a browser on a slow
link) is dropped; its browser's ``EventSource`` connects again and reloads what
it shows, so a slow officer never slows the others or grows the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

log = logging.getLogger("nii.control_room")

__all__ = ["FeedHub", "Subscriber"]

TOPICS = (b"scan.started", b"scan.block", b"scan.finished", b"alarm", b"atr.verdict",
          b"atr.att", b"central.status")  # fmt: skip
#: events a browser may have waiting before it is dropped
QUEUE = 2000


@dataclass(eq=False)
class Subscriber:
    """One browser's event stream: ``visible(scanner)`` says what it may see."""

    visible: Callable[[str], bool]
    viewing: int | None = None  # the scan ref its viewer shows (who has a scan open)
    name: str = ""
    #: sees every site: also gets the events of no scanner (central's status)
    everything: bool = False
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE)
    )
    dropped: bool = False


class FeedHub:
    """Follows the feeds and hands each event to the subscribers that may see it."""

    def __init__(self, endpoints: Sequence[str]) -> None:
        self.endpoints = list(endpoints)
        self.subscribers: set[Subscriber] = set()
        self.last_event = 0.0  # monotonic time of the last event from any aggregator
        self.events = 0
        #: called with a scan's ref when its verdict comes (the control room's TIP)
        self.on_verdict: Callable[[int], None] | None = None
        #: called with a scan's ref when it starts (the control room's TIP)
        self.on_started: Callable[[int], None] | None = None

    def subscribe(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def state(self) -> dict[str, Any]:
        """How the feeds are: ``silent_s`` since the last event of any aggregator (None:
        none heard since the control room started)."""
        silent = None if not self.last_event else round(time.monotonic() - self.last_event, 1)
        return {"silent_s": silent, "feeds": len(self.endpoints)}

    def viewers(self, ref: int) -> list[str]:
        """The users whose viewer shows scan ``ref`` now."""
        return sorted({s.name for s in self.subscribers if s.viewing == ref and s.name})

    def publish(self, topic: str, doc: dict[str, Any]) -> None:
        """Hand one event to every subscriber that may see its scanner (an event
        without a scanner, such as central's status, goes to all)."""
        scanner = doc.get("scanner")
        for sub in list(self.subscribers):
            if (scanner and not sub.visible(str(scanner))) or (not scanner and not sub.everything):
                continue
            try:
                sub.queue.put_nowait((topic, doc))
            except asyncio.QueueFull:
                sub.dropped = True
                self.subscribers.discard(sub)
                with contextlib.suppress(asyncio.QueueFull):
                    sub.queue.get_nowait()
                    sub.queue.put_nowait(None)  # ends its stream; the browser reconnects

    async def follow(self, stop: asyncio.Event) -> None:
        """Receive until ``stop``; a feed that is down is simply not heard (ZeroMQ
        reconnects by itself), a malformed event is skipped."""
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 10_000)
        for t in TOPICS:
            sock.setsockopt(zmq.SUBSCRIBE, t)
        for ep in self.endpoints:
            sock.connect(ep)
        try:
            while not stop.is_set():
                if not await sock.poll(200):
                    continue
                frames = await sock.recv_multipart()
                try:
                    doc = json.loads(frames[1])
                except (ValueError, IndexError, UnicodeDecodeError):
                    continue
                if not isinstance(doc, dict):
                    continue
                self.last_event = time.monotonic()
                self.events += 1
                topic = frames[0].decode(errors="replace")
                if topic == "scan.block":  # the browser fetches the pixels from the CIR
                    doc = {k: doc.get(k) for k in ("scan_ref", "scanner", "scan_id", "seq",
                                                   "first_line", "lines")}  # fmt: skip
                    doc["ref"] = doc.pop("scan_ref")
                elif topic == "scan.started" and self.on_started is not None:
                    ref = doc.get("ref", doc.get("scan_ref"))
                    if isinstance(ref, int):  # before any browser hears of it
                        self.on_started(ref)
                elif topic == "atr.verdict":
                    # the browser reads the verdict from the CIR, as the user may see it
                    # (with a Threat Image Projection, or not): the feed says only which
                    doc = {k: doc.get(k) for k in ("ref", "scanner", "scan_id")}
                    if self.on_verdict is not None and isinstance(doc.get("ref"), int):
                        self.on_verdict(int(doc["ref"]))
                self.publish(topic, doc)
        finally:
            sock.close(linger=0)
            ctx.term()
