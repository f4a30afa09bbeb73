"""The risk-system webhook: every event POSTed to the RMS, in order, at least once
(``[risk_system] webhook``; docs/risk-api.md, decision 0021).

Start it in the control room's lifespan::

    hook = webhook_of(app)          # None without [risk_system] webhook
    task = asyncio.create_task(hook.run(stop)) if hook else None
    ...
    stop.set(); await task
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from central._sql import Sql
from central.control_room._risk import events_after
from core.errors import ConfigError

if TYPE_CHECKING:
    from central.control_room._app import ControlRoomApp

log = logging.getLogger("nii.control_room.risk")

__all__ = ["Webhook", "load_webhook_secret", "sign", "webhook_of"]


def load_webhook_secret(path: Path) -> bytes:
    """The webhook's HMAC key: the text of ``path``, without surrounding white space.

    Raises:
        ConfigError: the file cannot be read, or holds fewer than 32 characters or more
            than 4096.
    """
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the risk-system webhook's secret {path}: {exc}",
            fix="write 32 or more random characters there, and give the RMS the same: "
            "e.g. head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE",
        ) from exc
    if not 32 <= len(text) <= 4096:
        raise ConfigError(
            f"the risk-system webhook's secret {path} has {len(text)} characters",
            fix="write 32 to 4096 random characters there (head -c 32 /dev/urandom | base64)",
        )
    return text.encode()


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-NII-Signature`` header of a webhook POST: ``sha256=`` and the hex
    HMAC-SHA256 of the body's exact bytes under ``secret``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Webhook:
    """Sends the events to the RMS's webhook, in order, at least once.

    Each POST carries up to ``batch`` events (``{"events": [...], "cursor": N,
    "sent_ns": T}``, the :class:`EventsOut` events) and the ``X-NII-Signature``
    header (:func:`sign`). A 2xx answer moves the delivery cursor, written to the
    CIR's ``risk_webhook`` (row ``name``) before the next POST; anything else (an error
    status, a refused connection, no answer in ``timeout_s``) is retried after
    ``backoff_s`` · 2 ** (failures - 1), at most ``backoff_max_s``, with the same events.

    Args:
        app: the control room (its database thread and connection).
        url: where to POST (``[risk_system] webhook``).
        secret: the HMAC key (:func:`load_webhook_secret`).
        name: the delivery's row in ``risk_webhook``.
        batch: events per POST.
        poll_s: how often the outbox is read when everything was delivered (s).
        timeout_s: how long one POST may take (s).
        backoff_s, backoff_max_s: the first and the longest wait after a failure (s).

    Attributes:
        wake: set it to read the outbox at once rather than after ``poll_s`` (say, when
            the feed brings a verdict or a decision was just recorded).
        failures: failed POSTs (or database errors) in a row.
    """

    def __init__(
        self,
        app: ControlRoomApp,
        url: str,
        secret: bytes,
        *,
        name: str = "default",
        batch: int = 100,
        poll_s: float = 1.0,
        timeout_s: float = 10.0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 300.0,
    ) -> None:
        self.app, self.url, self.secret, self.name = app, url, secret, name
        self.batch, self.poll_s, self.timeout_s = batch, poll_s, timeout_s
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.failures = 0
        self.wake = asyncio.Event()

    @property
    def db(self) -> Sql:
        return self.app.accounts.db

    def delivered(self) -> int:
        """The cursor of the last event the webhook took (0: none yet); on the database
        thread."""
        v = self.db.value("SELECT delivered FROM risk_webhook WHERE name = ?", [self.name])
        return int(v or 0)

    def _done(self, cursor: int) -> None:
        now = time.time_ns()
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO risk_webhook (name, url, delivered, delivered_ns, attempts) "
                "VALUES (?, ?, ?, ?, 0) ON CONFLICT (name) DO UPDATE SET url = excluded.url, "
                f"delivered = {self.db.greatest('risk_webhook.delivered', 'excluded.delivered')}"
                ", delivered_ns = excluded.delivered_ns, attempts = 0",
                [self.name, self.url, cursor, now],
            )

    def _failed(self, error: str) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO risk_webhook (name, url, delivered, attempts, failed_ns, error) "
                "VALUES (?, ?, 0, 1, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "url = excluded.url, attempts = risk_webhook.attempts + 1, "
                "failed_ns = excluded.failed_ns, error = excluded.error",
                [self.name, self.url, time.time_ns(), error[:500]],
            )

    def post(self, body: bytes) -> str | None:
        """POST ``body`` once; None when the RMS answered 2xx, else what went wrong."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, parts.port, timeout=self.timeout_s, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(host, parts.port, timeout=self.timeout_s)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(
                "POST",
                path,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "nii-control-room",
                    "X-NII-Signature": sign(self.secret, body),
                },
            )
            resp = conn.getresponse()
            resp.read(1 << 16)
            if 200 <= resp.status < 300:
                return None
            return f"HTTP {resp.status} {resp.reason}"
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()

    def backoff(self) -> float:
        """How long to wait after the latest failure (s)."""
        return min(self.backoff_max_s, self.backoff_s * 2 ** max(0, self.failures - 1))

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            self.wake.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set (a POST under way is finished first)."""
        db = self.app.db
        cursor: int | None = None
        while not stop.is_set():
            try:
                if cursor is None:
                    cursor = await db(self.delivered)
                    log.info("risk-system webhook %s: from cursor %d", self.url, cursor)
                events, _ = await db(events_after, self.db, cursor, self.batch)
                if not events:
                    await self._pause(stop, self.poll_s)
                    continue
                last = int(events[-1]["cursor"])
                body = json.dumps(
                    {"events": events, "cursor": last, "sent_ns": time.time_ns()},
                    separators=(",", ":"),
                    allow_nan=False,
                ).encode()
                error = await asyncio.to_thread(self.post, body)
                if error is None:
                    await db(self._done, last)
                    cursor, self.failures = last, 0
                    continue
                await db(self._failed, error)
            except Exception as exc:  # the database away (a fail-over): wait, try again
                error = f"{type(exc).__name__}: {exc}"
            self.failures += 1
            log.warning(
                "risk-system webhook %s: %s (try %d; again in %.0f s)",
                self.url,
                error,
                self.failures,
                self.backoff(),
            )
            # a retry waits its backoff whatever else happens; only stop cuts it short
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.backoff())


def webhook_of(app: ControlRoomApp) -> Webhook | None:
    """The webhook ``app``'s configuration asks for, or None (no ``[risk_system]
    webhook``). Start it with ``asyncio.create_task(hook.run(stop))`` in the
    application's lifespan.

    Raises:
        ConfigError: the secret file is unreadable or too short.
    """
    risk = app.cfg.risk
    if risk is None or not risk.webhook or risk.webhook_secret is None:
        return None
    return Webhook(app, risk.webhook, load_webhook_secret(risk.webhook_secret))
