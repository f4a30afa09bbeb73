"""A running control room beside a test cluster: configuration, accounts, the server."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.net import free_port
from tests.system._cluster import Cluster, wait_until

PASSWORD = "correct horse battery"
#: login name → (role, options of 'nii users add')
USERS = {
    "olga": ("officer", ["--site", "port-a"]),
    "oscar": ("officer", ["--site", "port-b"]),
    "sven": ("supervisor", ["--region", "north"]),
    "ana": ("analyst", []),
    "aud": ("auditor", []),
}


@dataclass
class ControlRoom:
    cluster: Cluster
    port: int
    toml: Path
    proc: subprocess.Popen[bytes] | None = None
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, name: str | None = None) -> httpx.Client:
        """An HTTP client, logged in as ``name`` (None: not logged in)."""
        c = httpx.Client(base_url=self.url, timeout=30, follow_redirects=False)
        self.clients.append(c)
        if name is not None:
            r = c.post("/login", data={"name": name, "password": PASSWORD})
            assert r.status_code == 303 and r.headers["location"] == "/", r.text
            c.headers["X-CSRF-Token"] = c.get("/api/me").json()["csrf"]
        return c

    def close(self) -> None:
        for c in self.clients:
            c.close()


def start_control_room(cluster: Cluster, sites: str) -> ControlRoom:
    """Write control-room.toml (``sites``: its [[site]] tables), add the USERS, start
    ``nii control-room serve`` and wait until it answers."""
    port = free_port()
    toml = cluster.base / "control-room.toml"
    toml.write_text(
        f'[control_room]\nlisten = "127.0.0.1:{port}"\ncentral = "central.toml"\n'
        f"feeds = {list(cluster.feeds.values())!r}\n".replace("'", '"')
        + 'signing_key = "keys/control-room.sign"\n\n'
        + sites
    )
    for name, (role, opts) in USERS.items():
        r = subprocess.run(
            [sys.executable, "-P", "-m", "nii", "users", "add", name, "--role", role, *opts,
             "--config", str(toml), "--password-stdin"],
            cwd=cluster.base, input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
    room = ControlRoom(cluster, port, toml)
    room.proc = cluster.start("control-room", "control-room", "serve", "--config", str(toml))

    def up() -> bool:
        assert room.proc is not None and room.proc.poll() is None, cluster.log_tail()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(up, 30, "the control room to listen")
    return room


SITES = """
[[site]]
name = "port-a"
region = "north"
scanners = ["scanner1"]

[[site]]
name = "port-b"
region = "south"
scanners = ["scanner2"]
"""


def running_room(base: Path, *sim_args: str, sites: str = SITES) -> Iterator[ControlRoom]:
    """A cluster in ``base`` (central, ``nii sim`` with ``sim_args`` and two scanners,
    an edge) and its control room with ``sites``, for all the tests of one module;
    stopped afterwards (the logs are printed then, for a test that failed)."""
    c = Cluster(base)
    c.enroll()
    room = None
    try:
        c.start_central()
        c.write_edge_config(c.start_sim(*sim_args, scanners=2))
        c.start_edge()
        room = start_control_room(c, sites)
        yield room
    finally:
        if room is not None:
            room.close()
        c.stop_all()
        print(c.log_tail())  # shown by pytest only for a test that failed
