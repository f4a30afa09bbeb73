"""``nii doctor --config edge.toml``: check an edge box the way a field technician needs it.

Each check prints ``PASS``, ``WARN`` or ``FAIL`` with what was found and, when
not a pass, the fix. The exit status is 0 only when every check passes, 1
otherwise (2 for a usage error), so an installation script can gate on it.

The checks touch the field only as the edge does: a TCP connect (and close) to
each scanner's data port, an MQTT CONNECT to the site broker, and one real
CurveZMQ handshake with central using the edge's own keys, under a routing id
of its own so a running edge daemon keeps its connection. Nothing is written
except a probe file in ``state_dir`` (removed at once). A doctor run with an
unenrolled key shows up at central as a refused connection, as it should.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import grp
import os
import shutil
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from core.config import EdgeConfig
from core.errors import NiiError, ProtocolError
from core.keys import CirPublic, EdgeKey
from core.messages import Hello, Nack, Welcome, decode

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
#: How far the edge's wall clock may be from central's before the doctor warns.
MAX_CLOCK_OFFSET_S = 1.0


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    status: str  # PASS | WARN | FAIL
    detail: str
    fix: str = ""


def _tcp(host: str, port: int, timeout_s: float) -> str | None:
    """Connect and close; ``None`` when it worked, else the reason."""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
        return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def _user() -> str:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return str(os.getuid())


# -- the checks ---------------------------------------------------------------------------------
def check_keys(cfg: EdgeConfig) -> list[Check]:
    """The edge key (present, readable, private, for this id) and the CIR public key."""
    out: list[Check] = []
    key = cfg.key
    try:
        st = key.stat()
    except FileNotFoundError:
        out.append(
            Check(
                "edge key",
                FAIL,
                f"{key} does not exist",
                f"create it with 'nii keys edge --id {cfg.id} --out {key.parent}' and enroll "
                f"the .pub at central, or correct key = in {cfg.path}",
            )
        )
        st = None
    except OSError as exc:
        out.append(Check("edge key", FAIL, f"cannot stat {key}: {exc.strerror}", _as_daemon(cfg)))
        st = None
    if st is not None:
        mode = stat.S_IMODE(st.st_mode)
        try:
            k = EdgeKey.load(key)
        except NiiError as exc:
            fix = exc.fix
            if not os.access(key, os.R_OK):
                fix = _as_daemon(cfg)
            out.append(Check("edge key", FAIL, exc.message, fix))
        else:
            if mode & 0o037:
                out.append(
                    Check(
                        "edge key",
                        FAIL,
                        f"{key} has mode {mode:04o}: other users can read or change the "
                        "edge's private key",
                        f"chmod 0600 {key} (or 0640 root:nii with the systemd units)",
                    )
                )
            elif k.id != cfg.id:
                out.append(
                    Check(
                        "edge key",
                        FAIL,
                        f"{key} is the key of edge {k.id!r}, but [edge] id is {cfg.id!r}",
                        "point key = at this edge's own key file, or correct the id",
                    )
                )
            else:
                out.append(Check("edge key", PASS, f"{key} (mode {mode:04o}) is the key of {k.id}"))
    try:
        CirPublic.load(cfg.cir_public)
        out.append(Check("CIR public key", PASS, f"{cfg.cir_public}"))
    except NiiError as exc:
        out.append(
            Check(
                "CIR public key",
                FAIL,
                exc.message,
                f"copy cir.pub from the central host to {cfg.cir_public}",
            )
        )
    return out


def _as_daemon(cfg: EdgeConfig) -> str:
    return (
        f"run the doctor as the user the edge runs as, e.g. 'sudo -u nii nii doctor --config "
        f"{cfg.path}', or give that user read access (0640 root:nii)"
    )


def check_serial(cfg: EdgeConfig) -> list[Check]:
    """Each scanner's serial device: present, a character device, readable and writable."""
    out: list[Check] = []
    for sc in cfg.scanners:
        name, dev = f"serial {sc.id}", sc.serial
        try:
            st = os.stat(dev)
        except FileNotFoundError:
            out.append(
                Check(
                    name,
                    FAIL,
                    f"{dev} does not exist",
                    "plug in the scanner's serial cable (USB adapters appear as /dev/ttyUSB*; "
                    "'ls -l /dev/serial/by-id/' shows stable names) or correct serial = in "
                    f"{cfg.path}",
                )
            )
            continue
        if not stat.S_ISCHR(st.st_mode):
            out.append(
                Check(
                    name,
                    FAIL,
                    f"{dev} is not a character device",
                    "serial = must name the scanner's tty, e.g. /dev/ttyUSB0",
                )
            )
            continue
        if os.access(dev, os.R_OK | os.W_OK):
            out.append(Check(name, PASS, f"{dev} is readable and writable by {_user()}"))
            continue
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        out.append(
            Check(
                name,
                FAIL,
                f"{dev} (mode {stat.S_IMODE(st.st_mode):04o}, group {group}) is not readable and "
                f"writable by {_user()}",
                f"add the user to group {group}: 'usermod -aG {group} {_user()}' and log in "
                f"again (the systemd unit gets it with SupplementaryGroups=dialout)",
            )
        )
    return out


def check_data_links(cfg: EdgeConfig, timeout_s: float) -> list[Check]:
    """A TCP connect to each scanner's data port (closed again at once)."""
    out: list[Check] = []
    for sc in cfg.scanners:
        addr = f"{sc.data_host}:{sc.data_port}"
        why = _tcp(sc.data_host, sc.data_port, timeout_s)
        if why is None:
            out.append(Check(f"data link {sc.id}", PASS, f"{addr} accepts TCP connections"))
        else:
            out.append(
                Check(
                    f"data link {sc.id}",
                    FAIL,
                    f"cannot connect to {addr}: {why}",
                    "check that the scanner's detector is powered and on the network, the "
                    f"cable and the address (data = in {cfg.path}); 'ping {sc.data_host}'",
                )
            )
    return out


def check_broker(cfg: EdgeConfig, timeout_s: float) -> list[Check]:
    """The site MQTT broker: a real MQTT 3.1.1 CONNECT must get CONNACK 0."""
    m = cfg.mqtt
    if m is None:
        has_sensors = any(sc.interlocks or sc.dosimeters for sc in cfg.scanners)
        if has_sensors:
            return [
                Check(
                    "site broker",
                    FAIL,
                    "scanners name interlocks or dosimeters but [edge.mqtt] is missing",
                    'add [edge.mqtt] with broker = "HOST:PORT" of the site broker',
                )
            ]
        return [Check("site broker", PASS, "not configured ([edge.mqtt] absent): no site sensors")]
    addr = f"{m.host}:{m.port}"
    fix = (
        "check that the site broker runs (systemctl status mosquitto), listens on that "
        f"address and lets this host connect; broker = in [edge.mqtt] of {cfg.path}"
    )
    try:
        with socket.create_connection((m.host, m.port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            cid = f"nii-doctor-{os.getpid()}".encode()
            var = b"\x00\x04MQTT\x04\x02\x00\x05"  # MQTT 3.1.1, clean session, keepalive 5 s
            body = var + len(cid).to_bytes(2, "big") + cid
            s.sendall(bytes([0x10, len(body)]) + body)
            ack = b""
            while len(ack) < 4:
                chunk = s.recv(4 - len(ack))
                if not chunk:
                    break
                ack += chunk
            with contextlib.suppress(OSError):
                s.sendall(b"\xe0\x00")  # DISCONNECT
    except TimeoutError:
        return [Check("site broker", FAIL, f"{addr}: no answer within {timeout_s:g} s", fix)]
    except OSError as exc:
        return [Check("site broker", FAIL, f"cannot connect to {addr}: {exc.strerror}", fix)]
    if len(ack) == 4 and ack[0] == 0x20 and ack[3] == 0:
        return [Check("site broker", PASS, f"{addr} accepted an MQTT connection")]
    if len(ack) == 4 and ack[0] == 0x20:
        return [
            Check(
                "site broker",
                FAIL,
                f"{addr} refused the MQTT connection (CONNACK code {ack[3]})",
                "allow this edge on the broker (the edge connects without user name)",
            )
        ]
    return [Check("site broker", FAIL, f"{addr} does not speak MQTT (got {ack!r})", fix)]


def _endpoint(url: str) -> tuple[str, int] | None:
    if not url.startswith("tcp://"):
        return None
    host, _, port = url[6:].rpartition(":")
    return (host.strip("[]"), int(port)) if port.isdigit() else None


def check_central(cfg: EdgeConfig, timeout_s: float) -> list[Check]:
    """Reachability, enrollment (HELLO → WELCOME under CurveZMQ) and the clock offset, at
    every aggregator the edge lists (each check then names its endpoint)."""
    if len(cfg.centrals) == 1:
        return _check_central_at(cfg, cfg.central, timeout_s)
    return [
        dataclasses.replace(c, name=f"{c.name} {endpoint}")
        for endpoint in cfg.centrals
        for c in _check_central_at(cfg, endpoint, timeout_s)
    ]


def _check_central_at(cfg: EdgeConfig, central: str, timeout_s: float) -> list[Check]:
    """The checks of :func:`check_central` at one aggregator endpoint."""
    ep = _endpoint(central)
    fix_reach = (
        "check that the aggregator runs on the central host (systemctl status nii-central), "
        f"that central = in {cfg.path} is its listen address, and that the firewall lets this "
        "host through"
    )
    if ep is not None:
        why = _tcp(ep[0], ep[1], timeout_s)
        if why is not None:
            return [
                Check("central", FAIL, f"cannot connect to {central}: {why}", fix_reach),
                Check("enrollment", FAIL, "not checked: central unreachable", fix_reach),
                Check("clock", FAIL, "not checked: central unreachable", fix_reach),
            ]
    reached = [
        Check("central", PASS, f"{central} accepts TCP connections")
        if ep is not None
        else Check("central", WARN, f"{central} is not TCP: not checked", fix_reach)
    ]
    try:
        key, cir = EdgeKey.load(cfg.key), CirPublic.load(cfg.cir_public)
    except NiiError:
        skip = "not checked: the key files are not usable (see above)"
        return [
            *reached,
            Check("enrollment", FAIL, skip, "fix the key files first"),
            Check("clock", FAIL, skip, "fix the key files first"),
        ]
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    mon: Any = None
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, f"{cfg.id}/doctor/{os.urandom(4).hex()}".encode())
        sock.curve_secretkey = key.curve_secret
        sock.curve_publickey = key.curve_public
        sock.curve_serverkey = cir.curve_public
        mon = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_AUTH
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
            | zmq.EVENT_HANDSHAKE_SUCCEEDED
        )
        sock.connect(central)
        scanner = cfg.scanners[0].id
        hello = Hello(edge=cfg.id, scanner=scanner, head_seq=-1, head_hash="", boot="d0c7")
        t_send = time.time_ns()
        sock.send_multipart(hello.frames(), flags=zmq.NOBLOCK)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(mon, zmq.POLLIN)
        end = time.monotonic() + timeout_s
        failure = ""
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            ready = dict(poller.poll(max(1, int(left * 1000))))
            if mon in ready:
                ev = recv_monitor_message(mon)
                if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    failure = "auth"
                    break
                if ev["event"] != zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    failure = failure or "protocol"
            if sock in ready:
                frames = sock.recv_multipart()
                t_recv = time.time_ns()
                try:
                    msg, _ = decode(frames)
                except ProtocolError as exc:
                    return [
                        *reached,
                        Check("enrollment", FAIL, f"central answered oddly: {exc}", fix_reach),
                        Check("clock", FAIL, "not checked", fix_reach),
                    ]
                if isinstance(msg, Welcome):
                    rtt_ms = (t_recv - t_send) / 1e6
                    offset = (msg.ts_ns - (t_send + t_recv) // 2) / 1e9
                    return [
                        *reached,
                        Check(
                            "enrollment",
                            PASS,
                            f"central welcomed edge {cfg.id} (scanner {scanner}) "
                            f"in {rtt_ms:.0f} ms",
                        ),
                        _clock(offset, rtt_ms),
                    ]
                if isinstance(msg, Nack):
                    return [
                        *reached,
                        Check(
                            "enrollment",
                            FAIL,
                            f"central refused scanner {scanner}: {msg.reason}",
                            "each scanner id belongs to one edge; use this scanner's own id, or "
                            "move the scanner at central only if the box was replaced",
                        ),
                        _clock(None, 0.0),
                    ]
        if failure == "auth":
            detail = "central refused this edge's key: it is not enrolled, or it was revoked"
        else:
            # a frozen or overloaded central (stopped, swapping, a stuck disk) looks the
            # same from here as a key it does not know: name both, the likelier first
            detail = (
                f"central accepts TCP but did not answer the CurveZMQ handshake within "
                f"{timeout_s:g} s: either central is not responding (stopped, overloaded, "
                "its disk stuck) or cir_public is not this central's key"
            )
        pub = cfg.key.with_suffix(".pub")
        fix = (
            f"on the central host: 'nii central enroll --config /etc/nii/central.toml "
            f"{pub.name}' (copy {pub} there; 'nii central edges' lists enrolled edges), and "
            f"check that {cfg.cir_public} is that central's cir.pub"
        )
        if failure != "auth":
            fix = (
                "on the central host, check that 'nii central' runs and answers (its log, "
                f"'systemctl status'); then check that {cfg.cir_public} is that central's "
                "cir.pub"
            )
        return [
            *reached,
            Check("enrollment", FAIL, detail, fix),
            Check("clock", FAIL, "not checked: no answer from central", "fix enrollment first"),
        ]
    finally:
        if mon is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            mon.close(linger=0)
        sock.close(linger=0)
        ctx.term()


def _clock(offset_s: float | None, rtt_ms: float) -> Check:
    if offset_s is None:
        return Check("clock", WARN, "not measured", "fix enrollment first")
    text = f"offset to central {offset_s * 1e3:+.0f} ms (± {rtt_ms / 2:.0f} ms)"
    if abs(offset_s) > MAX_CLOCK_OFFSET_S:
        return Check(
            "clock",
            WARN,
            text + f": more than {MAX_CLOCK_OFFSET_S:g} s",
            "synchronise the clock with NTP ('timedatectl set-ntp true'; 'timedatectl "
            "timesync-status' shows the server); scan times in the CIR come from this clock",
        )
    return Check("clock", PASS, text)


def check_disk(cfg: EdgeConfig) -> list[Check]:
    """state_dir writable, and room on its file system for every scanner's full spool."""
    out: list[Check] = []
    d = cfg.state_dir
    if d.is_dir():
        probe = d / f".doctor-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            out.append(Check("state_dir", PASS, f"{d} is writable by {_user()}"))
        except OSError as exc:
            out.append(
                Check(
                    "state_dir",
                    FAIL,
                    f"{d} is not writable by {_user()}: {exc.strerror}",
                    f"'chown -R nii:nii {d}', or run the doctor as the edge's user",
                )
            )
    else:
        parent = next((p for p in d.parents if p.exists()), Path("/"))
        ok = os.access(parent, os.W_OK | os.X_OK)
        out.append(
            Check(
                "state_dir",
                WARN if ok else FAIL,
                f"{d} does not exist yet"
                + ("; the edge will create it" if ok else f" and {parent} is not writable"),
                f"create it: 'install -d -o nii -g nii -m 0750 {d}' (systemd's "
                "StateDirectory= does it when the unit starts)",
            )
        )
    base = d if d.is_dir() else next((p for p in d.parents if p.exists()), Path("/"))
    need = sum(sc.spool_max_mb for sc in cfg.scanners) * 1024 * 1024
    used = 0
    if d.is_dir():
        for sc in cfg.scanners:
            for f in d.glob(f"{sc.id}.spool.sqlite*"):
                with contextlib.suppress(OSError):
                    used += f.stat().st_size
    free = shutil.disk_usage(base).free
    room = free + used
    mb = 1024 * 1024
    text = (
        f"{free / mb:,.0f} MB free on {base}, spool bound {need / mb:,.0f} MB "
        f"({len(cfg.scanners)} scanner(s), {used / mb:,.0f} MB in use)"
    )
    if room >= need:
        out.append(Check("disk", PASS, text))
    else:
        out.append(
            Check(
                "disk",
                FAIL,
                text + ": a full spool would fill the disk",
                "free space on that file system, move state_dir to a larger one, or lower "
                "spool_max_mb of the scanners",
            )
        )
    return out


def run_checks(config: Path, *, timeout_s: float = 3.0) -> list[Check]:
    """Every check, in the order a technician fixes them."""
    try:
        cfg = EdgeConfig.load(config)
    except NiiError as exc:
        return [Check("config", FAIL, exc.message, exc.fix)]
    checks = [
        Check(
            "config",
            PASS,
            f"{cfg.path} parses: edge {cfg.id}, {len(cfg.scanners)} scanner(s) "
            f"({', '.join(sc.id for sc in cfg.scanners)})",
        )
    ]
    checks += check_keys(cfg)
    checks += check_serial(cfg)
    checks += check_data_links(cfg, timeout_s)
    checks += check_broker(cfg, timeout_s)
    checks += check_central(cfg, timeout_s)
    checks += check_disk(cfg)
    return checks


def format_checks(checks: list[Check]) -> str:
    """One line per check, the fix indented under anything but a pass, then a summary."""
    width = max(len(c.name) for c in checks)
    out = []
    for c in checks:
        out.append(f"{c.status}  {c.name:<{width}}  {c.detail}")
        if c.status != PASS and c.fix:
            out.append(f"      {'':<{width}}  fix: {c.fix}")
    n = {s: sum(c.status == s for c in checks) for s in (PASS, WARN, FAIL)}
    out.append(f"{len(checks)} checks: {n[PASS]} pass, {n[WARN]} warn, {n[FAIL]} fail")
    return "\n".join(out)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print every check; 0 when all pass, 1 otherwise."""
    checks = run_checks(Path(args.config), timeout_s=args.timeout)
    print(format_checks(checks), flush=True)
    return 0 if all(c.status == PASS for c in checks) else 1


def register(sub: Any) -> None:
    """Add ``doctor`` to the ``nii`` command line."""
    d = sub.add_parser(
        "doctor",
        help="check an edge box: config, keys, serial, data link, broker, central, clock, disk",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    d.add_argument("--config", default="edge.toml", help="edge configuration (TOML)")
    d.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each peer (3)")
    d.set_defaults(func=cmd_doctor)


__all__ = ["Check", "format_checks", "register", "run_checks"]
