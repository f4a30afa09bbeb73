"""``nii control-room serve``: open the CIR, the accounts and the feeds; serve the app."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from central._cir import database_target, open_cir
from central.atr._store import VerdictStore
from central.control_room._accounts import Accounts
from central.control_room._app import ControlRoomApp, end_streams, make_app
from central.control_room._config import ControlRoomConfig
from central.control_room._decisions import Decisions
from central.control_room._feed import FeedHub
from central.control_room._images import PictureCache
from central.control_room._risk_webhook import webhook_of
from central.control_room._tip import Tip, load_secret
from core.errors import ConfigError
from core.keys import CirKey, ServiceSignKey
from core.seal import Opener

log = logging.getLogger("nii.control_room")

__all__ = ["build", "serve"]


def build(cfg: ControlRoomConfig) -> ControlRoomApp:
    """Everything the application holds, opened from ``cfg``.

    Raises:
        ConfigError: the CIR, its key or the signing key cannot be opened.
        KeyFileError: a key file is not what it should be.
    """
    central = cfg.central
    target = database_target(central.state_dir, central.cir)
    # the CIR is central's to make: a state_dir mistyped here is said to be, not filled
    # with a new, empty CIR that then reads as "no scans yet"
    cir = open_cir(central, create=False)
    try:
        key = CirKey.load(central.key)
        sign = ServiceSignKey.load_or_make(cfg.signing_key)
        accounts = Accounts(
            target,
            session_s=cfg.session_s,
            known_sites=[s.name for s in cfg.sites],
            known_regions=list(cfg.regions),
        )
        decisions = Decisions(accounts.db, sign)
        tip = Tip(
            accounts.db,
            load_secret(cfg.signing_key.with_name(cfg.signing_key.name + ".tip")),
            cfg.tip_rate_of,
        )
        verdicts = VerdictStore(target)
    except BaseException:
        cir.close()
        raise
    app = ControlRoomApp(
        cfg,
        cir=cir,
        accounts=accounts,
        decisions=decisions,
        verdicts=verdicts,
        pictures=PictureCache(cir, Opener(key.x25519_private)),
        hub=FeedHub(cfg.feeds),
        tip=tip,
    )
    try:  # a bad webhook secret stops the start, before anything listens
        app.webhook = webhook_of(app)
    except BaseException:
        app.close()
        cir.close()
        raise
    return app


def serve(config: Path, *, announce: bool = True) -> int:
    """Run the control room of ``config`` until SIGINT or SIGTERM; returns 0.

    Raises:
        ConfigError: the configuration, the CIR or the listen address is not usable.
    """
    import socket

    import uvicorn

    cfg = ControlRoomConfig.load(config)
    with socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET) as probe:
        try:  # a clear error before uvicorn's own (which logs and exits)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((cfg.host, cfg.port))
        except OSError as exc:
            raise ConfigError(
                f"{cfg.path}: [control_room] listen: cannot listen on {cfg.host}:{cfg.port}: "
                f"{exc.strerror}",
                fix="another program (or another control room) uses the port; pick another",
            ) from None
    app = build(cfg)
    try:
        server = _server(
            app,
            uvicorn.Config(
                make_app(app),
                host=cfg.host,
                port=cfg.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=3,
            ),
        )
        if announce:
            print(f"control room on http://{cfg.host}:{cfg.port}/", flush=True)
        server.run()
    finally:
        app.close()
        app.accounts.close()
        app.verdicts.close()
        app.cir.close()
    return 0


def _server(app: ControlRoomApp, config: Any) -> Any:
    """uvicorn's server for ``config``, that ends the open event streams first when it
    stops: else each would hold the graceful shutdown for its whole timeout, then be
    cancelled with a traceback in the log."""
    import uvicorn

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            end_streams(app)
            await super().shutdown(sockets)

    return _Server(config)
