"""``control-room.toml``: where the control room listens, which CIR it reads, the sites.

Example (``nii config control-room``)::

    [control_room]
    listen = "127.0.0.1:8080"       # HOST:PORT of the web application
    central = "central.toml"        # the CIR it reads (state_dir, cir, blobs, key) and its feed
    # feeds = ["tcp://10.0.0.5:7601", "tcp://10.0.0.6:7601"]  # every aggregator's feed
    session_minutes = 30            # a session ends this long after its last request
    signing_key = "keys/control-room.sign"  # Ed25519 key the decisions are signed with
    tip_rate = 0.02                 # share of scans shown with a projected threat (TIP)

    [[site]]
    name = "port-a"
    region = "north"
    scanners = ["scanner1", "scanner2"]

A scanner belongs to at most one site, a site to one region: a local officer sees
the scans of the sites bound to the account, a regional supervisor those of the
region's sites, the central RIAC analysts and auditors every site. A ``[[site]]``
may set its own ``tip_rate`` (a training site at 0.2, a site without Threat Image
Projection at 0).

The optional ``[risk_system]`` table opens the API of the customs Risk Management
System (``central.control_room._risk``, docs/risk-api.md)::

    [risk_system]
    tokens = "risk-tokens"          # "NAME SHA256" lines: nii risk token add NAME
    webhook = "https://rms.example.org/nii/events"  # optional: events POSTed here, in order
    webhook_secret = "keys/risk-webhook.secret"     # the HMAC-SHA256 key shared with the RMS
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import CentralConfig, _load, _Section, _table, check_endpoint
from core.errors import ConfigError

__all__ = ["EXAMPLE", "ControlRoomConfig", "RiskSystem", "Site", "check_listen"]

EXAMPLE = """\
[control_room]
listen = "127.0.0.1:8080"       # HOST:PORT of the web application
central = "central.toml"        # the CIR it reads and the feed it follows
# feeds = ["tcp://10.0.0.5:7601", "tcp://10.0.0.6:7601"]  # every aggregator's feed
session_minutes = 30            # a session ends this long after its last request
signing_key = "keys/control-room.sign"  # Ed25519 key decisions are signed with (made if missing)
tip_rate = 0.02                 # share of scans shown with a projected threat (TIP), 0 to 1

[[site]]
name = "port-a"
region = "north"
scanners = ["scanner1", "scanner2"]

# the customs Risk Management System's API (docs/risk-api.md)
# [risk_system]
# tokens = "risk-tokens"          # "NAME SHA256" lines: nii risk token add NAME
# webhook = "https://rms.example.org/nii/events"  # events POSTed here, in order
# webhook_secret = "keys/risk-webhook.secret"     # HMAC-SHA256 key shared with the RMS
"""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` of an HTTP listener, as (host, port).

    Raises:
        ConfigError: not HOST:PORT with a port from 1 to 65535.
    """
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{value!r} is not HOST:PORT", fix='write it as "127.0.0.1:8080"')
    return host, int(port)


@dataclass(frozen=True)
class Site:
    """A customs site: its name, its region and its scanners."""

    name: str
    region: str
    scanners: tuple[str, ...]
    #: this site's share of scans shown with a projected threat (None: the control room's)
    tip_rate: float | None = None


@dataclass
class ControlRoomConfig:
    """The control room's settings (see the module docstring)."""

    path: Path
    host: str
    port: int
    central: CentralConfig
    feeds: tuple[str, ...]
    session_s: float
    signing_key: Path
    sites: tuple[Site, ...]
    #: share of scans that show a projected threat to those who decide (R14, TIP)
    tip_rate: float = 0.0
    #: a demo only: the simulator's ``--truth-log``, shown beside each scan as "what was
    #: planted" so a person can judge the ATR (never set where scans are real)
    demo_truth: Path | None = None
    #: the Risk Management System's API (None: no ``[risk_system]`` table, the API is off)
    risk: RiskSystem | None = None

    @classmethod
    def load(cls, path: Path) -> ControlRoomConfig:
        """Read and check ``path``.

        Raises:
            ConfigError: the file is missing or not TOML, a setting is missing, out of
                range or unknown, a site is named twice, a scanner is in two sites, or
                ``demo_truth`` is in a folder that does not exist.
        """
        path = Path(path)
        doc = _load(path, "control-room")
        s = _table(path, doc, "control_room")
        s.check_unknown(
            {
                "listen",
                "central",
                "feeds",
                "session_minutes",
                "signing_key",
                "tip_rate",
                "demo_truth",
            }
        )
        for key in doc:
            if key not in ("control_room", "site", "risk_system"):
                raise ConfigError(
                    f"{path}: [{key}]: unknown table",
                    fix="a control-room file has [control_room], [[site]] and [risk_system] tables",
                )
        try:
            host, port = check_listen(s.text("listen", "127.0.0.1:8080"))
        except ConfigError as exc:
            raise s._err("listen", exc.message, exc.fix) from exc
        central = CentralConfig.load(s.path_("central", "central.toml"))
        feeds = _feeds(s, central.feed)
        session_s = s.num("session_minutes", 30, 1, 24 * 60) * 60
        return cls(
            path=path,
            host=host,
            port=port,
            central=central,
            feeds=feeds,
            session_s=session_s,
            signing_key=s.path_("signing_key", "keys/control-room.sign"),
            sites=_sites(path, doc.get("site", [])),
            tip_rate=s.num("tip_rate", 0.0, 0.0, 1.0),
            demo_truth=_demo_truth(s) if "demo_truth" in s.doc else None,
            risk=_risk_system(path, doc.get("risk_system")),
        )

    def site_of(self, scanner: str) -> Site | None:
        """The site ``scanner`` belongs to, or None (a scanner no site lists)."""
        for site in self.sites:
            if scanner in site.scanners:
                return site
        return None

    def tip_rate_of(self, scanner: str) -> float:
        """The share of ``scanner``'s scans shown with a projected threat."""
        site = self.site_of(scanner)
        return self.tip_rate if site is None or site.tip_rate is None else site.tip_rate

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.region for s in self.sites))


def _demo_truth(s: _Section) -> Path:
    """``demo_truth``: the simulator's truth log (``nii sim --truth-log``).

    The file itself may not exist yet: the simulator makes it, and its folders, at its
    first scan. Its folder must exist, though, unless it is under the configuration's
    own folder (``nii demo`` writes ``demo_truth = "sim/truth.jsonl"`` before its
    simulator makes ``sim/``): a path elsewhere whose folder does not exist is a typing
    mistake that would show nothing, silently. A file that is still missing a minute
    after the start is logged (``central.control_room._planted``).

    Raises:
        ConfigError: the setting is not a path, is a folder, or its folder does not
            exist outside the configuration's folder.
    """
    path = s.path_("demo_truth")
    if path.is_dir():
        raise s._err(
            "demo_truth",
            f"{path} is a folder",
            'give the file nii sim --truth-log writes, e.g. demo_truth = "sim/truth.jsonl"',
        )
    home = s.path.parent.resolve()
    folder = path.parent.resolve()
    if not folder.is_dir() and (folder.exists() or not folder.is_relative_to(home)):
        raise s._err(
            "demo_truth",
            f"the folder {path.parent} does not exist (or is a file), so no truth log can be there",
            "give the path nii sim --truth-log writes to, or remove demo_truth (a demo "
            "only: it shows what the simulator planted in each scan)",
        )
    return path


def _feeds(s: _Section, default: str) -> tuple[str, ...]:
    val = s.doc.get("feeds", [default])
    if not isinstance(val, list) or not val or not all(isinstance(v, str) for v in val):
        raise s._err(
            "feeds",
            f"must be a list of endpoints, got {val!r}",
            'write feeds = ["tcp://HOST:7601"]',
        )
    out = []
    for v in val:
        try:
            out.append(check_endpoint(v))
        except ConfigError as exc:
            raise s._err("feeds", exc.message, exc.fix) from exc
    return tuple(dict.fromkeys(out))


def _sites(path: Path, raw: Any) -> tuple[Site, ...]:
    if not isinstance(raw, list):
        raise ConfigError(
            f"{path}: site must be a list of [[site]] tables",
            fix="write each site as a [[site]] table",
        )
    sites: list[Site] = []
    owner: dict[str, str] = {}
    for i, t in enumerate(raw):
        if not isinstance(t, dict):
            raise ConfigError(f"{path}: site {i + 1} is not a table", fix="write [[site]]")
        sec = _Section(path, f"site {i + 1}", t)
        sec.check_unknown({"name", "region", "scanners", "tip_rate"})
        name, region = sec.text("name"), sec.text("region")
        for what, v in (("name", name), ("region", region)):
            if not _NAME.match(v):
                raise sec._err(
                    what,
                    f"{v!r} is not a plain name",
                    fix="use letters, digits, '.', '_' and '-' (64 at most)",
                )
        scanners = t.get("scanners", [])
        if not isinstance(scanners, list) or not all(isinstance(x, str) for x in scanners):
            raise sec._err(
                "scanners",
                f"must be a list of scanner ids, got {scanners!r}",
                'write scanners = ["scanner1"]',
            )
        if any(x.name == name for x in sites):
            raise sec._err("name", f"site {name!r} is named twice", "give each site one table")
        for sc in scanners:
            if sc in owner:
                raise sec._err(
                    "scanners",
                    f"scanner {sc!r} is already in site {owner[sc]!r}",
                    "a scanner belongs to one site",
                )
            owner[sc] = name
        rate = sec.num("tip_rate", 0.0, 0.0, 1.0) if "tip_rate" in t else None
        sites.append(Site(name, region, tuple(scanners), rate))
    return tuple(sites)


@dataclass(frozen=True)
class RiskSystem:
    """The ``[risk_system]`` table: the customs Risk Management System's API.

    Attributes:
        tokens: the file of the RMS's API tokens, one ``NAME SHA256HEX`` line each
            (``nii risk token add NAME`` makes it); while it is missing the API
            answers 503 (logged), since no token can be valid.
        webhook: the URL every event is POSTed to, in order ("": no webhook, the RMS
            polls); ``https://``, or ``http://`` to a loopback address only.
        webhook_secret: the file of the key each POST is signed with (HMAC-SHA256; 32
            characters or more, shared with the RMS); None without a webhook.
    """

    tokens: Path
    webhook: str = ""
    webhook_secret: Path | None = None


def _risk_system(path: Path, raw: Any) -> RiskSystem | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: risk_system must be a table", fix="write it as a [risk_system] table"
        )
    sec = _Section(path, "risk_system", raw)
    sec.check_unknown({"tokens", "webhook", "webhook_secret"})
    tokens = sec.path_("tokens", "risk-tokens")
    webhook = sec.text("webhook") if "webhook" in raw else ""
    if webhook:
        problem = check_webhook(webhook)
        if problem:
            raise sec._err(
                "webhook",
                f"{webhook!r} {problem}",
                'write the RMS\'s URL, e.g. "https://rms.example.org/nii/events" (plain http '
                "only to 127.0.0.1)",
            )
    if "webhook_secret" in raw and not webhook:
        raise sec._err(
            "webhook_secret",
            "is set but there is no webhook to sign for",
            'add webhook = "https://…" or remove webhook_secret',
        )
    secret = sec.path_("webhook_secret") if "webhook_secret" in raw else None
    if webhook and secret is None:
        raise sec._err(
            "webhook_secret",
            "missing: every POST to the webhook is signed",
            'add webhook_secret = "keys/risk-webhook.secret", a file of 32 or more random '
            "characters that the RMS also holds",
        )
    return RiskSystem(tokens=tokens, webhook=webhook, webhook_secret=secret)


def check_webhook(url: str) -> str:
    """What is wrong with ``url`` as the risk system's webhook ("" when nothing): it must
    be ``https://HOST[:PORT]/PATH``, or ``http://`` to a loopback address, without a
    user name, password or fragment, at most 2000 characters."""
    import ipaddress
    from urllib.parse import urlsplit

    if len(url) > 2000 or not url.isascii() or any(c.isspace() for c in url):
        return "is not a URL (too long, spaces or characters outside ASCII)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL ({exc})"
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        return "is not an http(s) URL with a host"
    if parts.username is not None or parts.password is not None or parts.fragment:
        return "has a user name, password or fragment (the HMAC signature authenticates)"
    if port == 0:
        return "has port 0"
    if parts.scheme == "http":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            return "is plain http to another host: events would cross the network unencrypted"
    return ""
