"""Configuration files of the central aggregator and the edge daemons (TOML).

Relative paths in a file are taken relative to the file's own folder, so a
configuration folder can be moved as a whole. Every mistake gives one
:class:`ConfigError` that names the file, the setting and the fix.
"""

from __future__ import annotations

import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError, KeyFileError
from core.keys import check_id

EXAMPLE_CENTRAL = """\
[central]
listen = "tcp://127.0.0.1:7600"   # edges connect here (CurveZMQ)
feed = "tcp://127.0.0.1:7601"     # live feed for control rooms (PUB)
state_dir = "var/central"         # CIR database and blobs
key = "keys/cir.key"
# cir = "postgresql://nii@db.example.org/nii"  # metadata on PostgreSQL (default: SQLite here)
# blobs = "s3://nii-cir/site1"     # the sealed blocks in an S3-compatible store ("file": here)
# s3_endpoint = "http://127.0.0.1:8333"
# s3_credentials = "keys/s3.ini"   # [default] aws_access_key_id, aws_secret_access_key
"""

EXAMPLE_EDGE = """\
[edge]
id = "edge-a"
key = "keys/edge-a.key"
cir_public = "keys/cir.pub"
central = "tcp://127.0.0.1:7600"  # or a list: the edge fails over between them
state_dir = "var/edge-a"

[[scanner]]
id = "scanner1"
serial = "/dev/ttyUSB0"
data = "192.0.2.10:7700"
# att_role = "entry"              # ATT transit checkpoint (R12): "entry" or "exit"
# calibration = "scanner1.json"   # from 'nii atr calibrate' at commissioning
"""


def check_endpoint(value: str) -> str:
    """A ZeroMQ endpoint a socket can bind or connect: ``tcp://HOST:PORT`` (or ipc/inproc).

    Checked here, once, so a typo is a clear configuration error and not a failure
    of ``connect()`` deep inside a running daemon.
    """
    if value.startswith(("ipc://", "inproc://")) and len(value.split("://", 1)[1]) > 0:
        return value
    host, _, port = value.removeprefix("tcp://").rpartition(":")
    if (
        not value.startswith("tcp://")
        or not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise ConfigError(f"{value!r} is not a ZeroMQ endpoint", fix="write it as tcp://HOST:PORT")
    return value


class _Section:
    """Typed access to one TOML table, with errors that name file and key."""

    def __init__(self, path: Path, name: str, doc: dict[str, Any]) -> None:
        self.path, self.name, self.doc = path, name, doc

    def _err(self, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.path}: [{self.name}] {key}: {problem}", fix=fix)

    def text(self, key: str, default: str | None = None) -> str:
        val = self.doc.get(key, default)
        if val is None:
            raise self._err(key, "missing", f'add {key} = "..." to the [{self.name}] table')
        if not isinstance(val, str) or not val:
            raise self._err(key, f"must be a non-empty string, got {val!r}", "quote the value")
        return val

    def path_(self, key: str, default: str | None = None) -> Path:
        p = Path(self.text(key, default)).expanduser()
        return p if p.is_absolute() else (self.path.parent / p)

    def num(self, key: str, default: float, lo: float, hi: float) -> float:
        val = self.doc.get(key, default)
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise self._err(key, f"must be a number, got {val!r}", f"write e.g. {key} = {default}")
        if not lo <= val <= hi:
            raise self._err(key, f"{val} is out of range", f"use a value from {lo} to {hi}")
        return float(val)

    def flag(self, key: str, default: bool) -> bool:
        val = self.doc.get(key, default)
        if not isinstance(val, bool):
            raise self._err(key, f"must be true or false, got {val!r}", f"write {key} = true")
        return val

    def endpoint(self, key: str, default: str | None = None) -> str:
        val = self.text(key, default)
        try:
            return check_endpoint(val)
        except ConfigError as exc:
            raise self._err(key, exc.message, exc.fix) from exc

    def check_unknown(self, known: set[str]) -> None:
        unknown = set(self.doc) - known
        if unknown:
            raise self._err(
                ", ".join(sorted(unknown)),
                "unknown setting",
                f"remove it or check the spelling; known settings: {', '.join(sorted(known))}",
            )


def _load(path: Path, kind: str = "") -> dict[str, Any]:
    """The TOML document of a configuration file; ``kind`` ("central", "edge" or
    "control-room": what ``nii config KIND`` prints) names the example command the fix
    suggests.

    Raises:
        ConfigError: the file is missing, unreadable or not valid TOML.
    """
    path = Path(path)
    if not path.exists():
        example = (
            f"'nii config {kind} > {shlex.quote(str(path))}'"  # the very file asked for
            if kind
            else "'nii config central > central.toml' or 'nii config edge > edge.toml'"
        )
        raise ConfigError(
            f"configuration file {path} does not exist",
            fix=f"pass --config with the right path, or start from the example: {example}",
        )
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", fix="check the file's permissions") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", fix="correct the syntax") from exc


def _table(path: Path, doc: dict[str, Any], name: str) -> _Section:
    t = doc.get(name)
    if not isinstance(t, dict):
        raise ConfigError(f"{path}: no [{name}] table", fix=f"add a [{name}] table")
    return _Section(path, name, t)


@dataclass
class CentralConfig:
    path: Path
    listen: str
    feed: str
    state_dir: Path
    key: Path
    metrics: str = ""
    preview_hz: float = 10.0
    atr: bool = True  # live ATR verdicts on completed scans
    atr_max_backlog: int = 8  # scans waiting for ATR before new ones are skipped (alarmed)
    #: who judges the queued scans: "embedded" (a thread of the aggregator) or "external"
    #: ('nii atr worker' processes; the aggregator only publishes their verdicts)
    atr_workers: str = "embedded"
    cir: str = ""  # the metadata's PostgreSQL URL (empty: SQLite in state_dir)
    blobs: str = "file"  # where the sealed blocks go: "file" (state_dir/blobs) or s3://…
    s3_endpoint: str = ""  # the S3-compatible server's URL (empty: Amazon S3)
    s3_credentials: Path | None = None  # AWS INI credentials (None: the environment's)
    #: this aggregator's name in the stream leases (default: host and listen endpoint);
    #: unique among the aggregators that share one CIR
    name: str = ""
    #: seconds a stream lease lasts without renewal: how long a dead aggregator's
    #: scanners wait before another may take them over
    lease_s: float = 3.0

    @classmethod
    def load(cls, path: Path) -> CentralConfig:
        path = Path(path)
        doc = _load(path, "central")
        s = _table(path, doc, "central")
        s.check_unknown(
            {
                "listen",
                "feed",
                "state_dir",
                "key",
                "metrics",
                "preview_hz",
                "atr",
                "atr_max_backlog",
                "atr_workers",
                "cir",
                "blobs",
                "s3_endpoint",
                "s3_credentials",
                "name",
                "lease_s",
            }
        )
        cir = str(s.doc.get("cir", ""))
        if cir and not cir.startswith(("postgresql://", "postgres://")):
            raise s._err(
                "cir",
                f"{cir!r} is not a PostgreSQL URL",
                'write e.g. "postgresql://nii@db.example.org/nii" (the password in ~/.pgpass '
                "or PGPASSWORD), or leave it out for the embedded SQLite CIR",
            )
        blobs = s.text("blobs", "file")
        if not (blobs == "file" or (blobs.startswith("s3://") and len(blobs) > 5)):
            raise s._err(
                "blobs", f"{blobs!r} is not a blob store", 'use "file" or "s3://bucket/prefix"'
            )
        atr_workers = s.text("atr_workers", "embedded")
        if atr_workers not in ("embedded", "external"):
            raise s._err(
                "atr_workers",
                f"{atr_workers!r} is not who runs the live ATR",
                'use "embedded" (a thread of this aggregator) or "external" (processes of '
                "'nii atr worker')",
            )
        endpoint = str(s.doc.get("s3_endpoint", ""))
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise s._err(
                "s3_endpoint", f"{endpoint!r} is not a URL", 'write e.g. "http://127.0.0.1:8333"'
            )
        return cls(
            path=path,
            listen=s.endpoint("listen", "tcp://127.0.0.1:7600"),
            feed=s.endpoint("feed", "tcp://127.0.0.1:7601"),
            state_dir=s.path_("state_dir", "var/central"),
            key=s.path_("key"),
            metrics=str(s.doc.get("metrics", "")),
            preview_hz=s.num("preview_hz", 10.0, 0.0, 1000.0),
            atr=s.flag("atr", True),
            atr_max_backlog=int(s.num("atr_max_backlog", 8, 1, 10_000)),
            atr_workers=atr_workers,
            cir=cir,
            blobs=blobs,
            s3_endpoint=endpoint,
            s3_credentials=s.path_("s3_credentials") if "s3_credentials" in s.doc else None,
            name=s.text("name", "") if "name" in s.doc else "",
            lease_s=s.num("lease_s", 3.0, 0.5, 600.0),
        )


@dataclass
class ScannerConfig:
    id: str
    serial: Path
    data_host: str
    data_port: int
    block_lines: int = 64
    block_ms: float = 20.0
    spool_max_mb: float = 1024.0
    spool_high_water: float = 0.9
    arm: bool = True
    # radiation safety (R5): site sensors on the MQTT broker that must all be safe to arm
    interlocks: list[str] = field(default_factory=list)
    dosimeters: list[str] = field(default_factory=list)
    dose_limit_usvh: float = 2.5
    sensor_max_age_s: float = 5.0
    rearm: bool = True
    # ATT transit (R12): "entry" or "exit" checkpoint, written into each scan-start record
    att_role: str | None = None
    # the scanner's commissioning calibration (``nii atr calibrate``): its file and its
    # validated JSON document, forwarded in every scan-start record as ``scanner_calibration``
    calibration: Path | None = None
    calibration_doc: dict[str, Any] | None = None


@dataclass
class MqttConfig:
    """``[edge.mqtt]``: the site broker where interlocks, doors and dosimeters publish."""

    host: str = "127.0.0.1"
    port: int = 1883
    site: str = "site"
    prefix: str = "nii"
    keepalive_s: float = 5.0
    settle_s: float = 0.3


@dataclass
class EdgeConfig:
    path: Path
    id: str
    key: Path
    cir_public: Path
    central: str  # the first of ``centrals``
    state_dir: Path
    heartbeat_s: float = 1.0
    #: every aggregator endpoint this edge may stream to, tried in turn (failover)
    centrals: tuple[str, ...] = ()
    scanners: list[ScannerConfig] = field(default_factory=list)
    mqtt: MqttConfig | None = None
    metrics: str = ""

    @classmethod
    def load(cls, path: Path) -> EdgeConfig:
        path = Path(path)
        doc = _load(path, "edge")
        s = _table(path, doc, "edge")
        s.check_unknown(
            {"id", "key", "cir_public", "central", "state_dir", "heartbeat_s", "mqtt", "metrics"}
        )
        mqtt = _mqtt(path, s.doc.get("mqtt"))
        centrals = _centrals(s)
        try:
            edge_id = check_id("edge", s.text("id"))
        except KeyFileError as exc:
            raise ConfigError(f"{path}: [edge] id: {exc.message}", fix=exc.fix) from exc
        scanners_doc = doc.get("scanner")
        if not isinstance(scanners_doc, list) or not scanners_doc:
            raise ConfigError(
                f"{path}: no [[scanner]] table", fix="add one [[scanner]] table per scanner"
            )
        scanners: list[ScannerConfig] = []
        for i, sd in enumerate(scanners_doc):
            sc = _Section(path, f"scanner #{i + 1}", sd)
            sc.check_unknown(
                {
                    "id",
                    "serial",
                    "data",
                    "block_lines",
                    "block_ms",
                    "spool_max_mb",
                    "spool_high_water",
                    "arm",
                    "interlocks",
                    "dosimeters",
                    "dose_limit_usvh",
                    "sensor_max_age_s",
                    "rearm",
                    "att_role",
                    "calibration",
                }
            )
            try:
                sid = check_id("scanner", sc.text("id"))
            except KeyFileError as exc:
                raise ConfigError(f"{path}: [[scanner]] id: {exc.message}", fix=exc.fix) from exc
            data = sc.text("data")
            host, _, port_s = data.rpartition(":")
            if not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
                raise ConfigError(
                    f"{path}: [[scanner]] {sid} data: {data!r} is not HOST:PORT",
                    fix='write the scanner\'s data link address, e.g. data = "192.0.2.10:7700"',
                )
            if any(x.id == sid for x in scanners):
                raise ConfigError(
                    f"{path}: scanner id {sid!r} appears twice", fix="give each scanner its own id"
                )
            scanners.append(
                ScannerConfig(
                    id=sid,
                    serial=sc.path_("serial"),
                    data_host=host.strip("[]"),
                    data_port=int(port_s),
                    block_lines=int(sc.num("block_lines", 64, 1, 4096)),
                    block_ms=sc.num("block_ms", 20.0, 1.0, 10000.0),
                    spool_max_mb=sc.num("spool_max_mb", 1024.0, 0.1, 10_000_000.0),
                    spool_high_water=sc.num("spool_high_water", 0.9, 0.1, 1.0),
                    arm=bool(sc.doc.get("arm", True)),
                    interlocks=_names(sc, "interlocks"),
                    dosimeters=_names(sc, "dosimeters"),
                    dose_limit_usvh=sc.num("dose_limit_usvh", 2.5, 0.0, 1e6),
                    sensor_max_age_s=sc.num("sensor_max_age_s", 5.0, 0.1, 3600.0),
                    rearm=bool(sc.doc.get("rearm", True)),
                    att_role=_att_role(sc),
                    **_calibration(sc, sid),
                )
            )
        return cls(
            path=path,
            id=edge_id,
            key=s.path_("key"),
            cir_public=s.path_("cir_public"),
            central=centrals[0],
            centrals=centrals,
            state_dir=s.path_("state_dir", f"var/{edge_id}"),
            heartbeat_s=s.num("heartbeat_s", 1.0, 0.05, 60.0),
            scanners=scanners,
            mqtt=mqtt,
            metrics=_listen_addr(s, "metrics"),
        )


def _centrals(s: _Section) -> tuple[str, ...]:
    """``central``: one aggregator endpoint, or a list of them (the edge fails over)."""
    val = s.doc.get("central", "tcp://127.0.0.1:7600")
    if isinstance(val, str):
        return (s.endpoint("central", "tcp://127.0.0.1:7600"),)
    if not isinstance(val, list) or not val or not all(isinstance(v, str) for v in val):
        raise s._err(
            "central",
            f"must be an endpoint or a non-empty list of endpoints, got {val!r}",
            'write central = "tcp://HOST:PORT" or central = ["tcp://A:7600", "tcp://B:7600"]',
        )
    out: list[str] = []
    for v in val:
        try:
            ep = check_endpoint(v)
        except ConfigError as exc:
            raise s._err("central", exc.message, exc.fix) from exc
        if ep in out:
            raise s._err("central", f"{ep} is listed twice", "list each aggregator once")
        out.append(ep)
    return tuple(out)


def _names(sc: _Section, key: str) -> list[str]:
    """A list of sensor names (MQTT topic levels: no ``/``, ``+`` or ``#``)."""
    val = sc.doc.get(key, [])
    if not isinstance(val, list) or not all(
        isinstance(v, str) and v and not set(v) & set("/+#") for v in val
    ):
        raise sc._err(
            key,
            f"must be a list of sensor names, got {val!r}",
            f'write e.g. {key} = ["plc", "door-a"]',
        )
    return list(val)


#: The ATT roles a scanner can have (R12): where transit containers enter, where they leave.
ATT_ROLES = ("entry", "exit")


def _att_role(sc: _Section) -> str | None:
    """``att_role``: None when absent, else "entry" or "exit"."""
    val = sc.doc.get("att_role")
    if val is None:
        return None
    if val not in ATT_ROLES:
        raise sc._err(
            "att_role",
            f'must be "entry" or "exit", got {val!r}',
            'write att_role = "entry" on a scanner where transit containers come in, '
            'att_role = "exit" where they leave, or leave it out',
        )
    return str(val)


def _calibration(sc: _Section, scanner: str) -> dict[str, Any]:
    """``calibration``: the scanner's calibration file, read and validated now.

    Returns:
        ``{"calibration": path, "calibration_doc": document}``, or ``{}`` when the
        setting is absent.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON, not a calibration
            (``core.scanner_cal.ScannerCalibration.from_json``) or too large to travel in
            a scan-start record (``core.messages.check_doc``); the message names the
            scanner and the file.
    """
    if "calibration" not in sc.doc:
        return {}
    path = sc.path_("calibration")
    import json

    from core.errors import NiiError
    from core.messages import check_doc
    from core.scanner_cal import ScannerCalibration

    fix = (
        f"commission the scanner: 'nii atr calibrate --wedges DIR --out {path.name}' on its "
        "step-wedge scan, and point calibration = at that file (or remove the setting)"
    )
    try:
        doc = json.loads(path.read_text())
        ScannerCalibration.from_json(doc, str(path))
        check_doc("scanner calibration", doc)
    except OSError as exc:
        raise ConfigError(
            f"{sc.path}: [[scanner]] {scanner} calibration: cannot read {path}: "
            f"{exc.strerror or exc}",
            fix=fix,
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise ConfigError(
            f"{sc.path}: [[scanner]] {scanner} calibration: {path} is not JSON ({exc})",
            fix=fix,
        ) from exc
    except NiiError as exc:
        raise ConfigError(
            f"{sc.path}: [[scanner]] {scanner} calibration: {path} is not a scanner "
            f"calibration: {exc.message.removeprefix(f'{path}: ')}",
            fix=fix,
        ) from exc
    return {"calibration": path, "calibration_doc": doc}


def _listen_addr(s: _Section, key: str) -> str:
    """``HOST:PORT`` for an HTTP listener, or "" when off."""
    val = s.doc.get(key, "")
    if val == "":
        return ""
    host, _, port = str(val).rpartition(":")
    if not isinstance(val, str) or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise s._err(key, f"{val!r} is not HOST:PORT", f'write e.g. {key} = "127.0.0.1:9101"')
    return val


def _mqtt(path: Path, doc: Any) -> MqttConfig | None:
    """The ``[edge.mqtt]`` table, or None when the edge has no site broker."""
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: [edge] mqtt must be a table", fix="write it as [edge.mqtt]")
    m = _Section(path, "edge.mqtt", doc)
    m.check_unknown({"broker", "site", "prefix", "keepalive_s", "settle_s"})
    broker = m.text("broker", "127.0.0.1:1883")
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise m._err(
            "broker",
            f"{broker!r} is not HOST:PORT",
            'write the site broker\'s address, e.g. broker = "192.0.2.5:1883"',
        )
    return MqttConfig(
        host=host.strip("[]"),
        port=int(port),
        site=m.text("site", "site"),
        prefix=m.text("prefix", "nii"),
        keepalive_s=m.num("keepalive_s", 5.0, 1.0, 600.0),
        settle_s=m.num("settle_s", 0.3, 0.0, 30.0),
    )
