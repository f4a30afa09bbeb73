"""Field faults through real processes: nothing lost, nothing forged, nothing silent.

Each scenario of ``nii bench faults`` (the same code, smaller sizes) runs against a
fresh installation of central, two simulated scanners and an edge, all real
processes. The CIR is then read back line by line and compared with the
simulators' emit logs: every emitted line is in the CIR once and bit-identical,
or lies inside a GAP block for which a data-loss alarm was raised; no process
exited without being told to; every affected scanner committed again within 5 s
of the fault's end. The fault tools themselves are tested first.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system._cluster import wait_until
from tests.system._faults import (
    SCENARIOS,
    TEST_SIZING,
    BlackholeProxy,
    SocatLink,
    Tmpfs,
    VethLink,
    fill,
    free,
    free_bytes,
    run_scenario,
)

pytestmark = pytest.mark.system


# -- the tools --------------------------------------------------------------------------
def test_tmpfs_fills_to_the_last_byte_and_frees(tmp_path: Path) -> None:
    with Tmpfs(tmp_path / "small", 1 << 20) as t:
        filler = fill(t.path)
        assert free_bytes(t.path) == 0
        with pytest.raises(OSError) as exc:
            (t.path / "more").write_bytes(b"x" * 8192)
        assert exc.value.errno == errno.ENOSPC
        free(filler)
        assert free_bytes(t.path) > 1 << 19
        (t.path / "more").write_bytes(b"x" * 8192)
        assert fill(t.path, leave_bytes=256 << 10) and 0 < free_bytes(t.path) <= 256 << 10
    assert not os.path.ismount(tmp_path / "small")


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP echo server on loopback; yields its port."""
    ls = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conns: list[socket.socket] = []
        while not stop.is_set():
            r, _, _ = select.select([ls, *conns], [], [], 0.05)
            for s in r:
                if s is ls:
                    conns.append(ls.accept()[0])
                    continue
                data = s.recv(65536)
                if data:
                    s.sendall(data)
                else:
                    conns.remove(s)
                    s.close()
        for s in conns:
            s.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield ls.getsockname()[1]
    stop.set()
    t.join()
    ls.close()


def _recv_within(s: socket.socket, n: int, timeout: float) -> bytes:
    got = b""
    s.settimeout(timeout)
    try:
        while len(got) < n:
            chunk = s.recv(n - len(got))
            if not chunk:
                break
            got += chunk
    except TimeoutError:
        pass
    return got


def test_blackhole_proxy_holds_everything_while_partitioned(echo_server: int) -> None:
    proxy = BlackholeProxy(0, ("127.0.0.1", echo_server))
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as c:
            c.sendall(b"before")
            assert _recv_within(c, 6, 5) == b"before"
            proxy.partition()
            c.sendall(b"during")
            assert _recv_within(c, 6, 1.0) == b"", "bytes crossed a partition"
            proxy.heal()
            assert _recv_within(c, 6, 5) == b"during", "held bytes did not arrive after heal"
            c.sendall(b"after")
            assert _recv_within(c, 5, 5) == b"after"
        assert proxy.connections == 1, "the connection was not kept through the partition"
    finally:
        proxy.close()


def test_socat_link_vanishes_and_comes_back(tmp_path: Path) -> None:
    """A stable name for a pty device: data passes, the name goes away, then comes back."""
    master, slave = os.openpty()
    device = Path(os.ttyname(slave))
    link = SocatLink(tmp_path / "dev" / "scanner.tty", device)
    try:
        for _ in range(2):
            link.start()
            fd = os.open(link.link, os.O_RDWR | os.O_NOCTTY)
            try:
                os.write(fd, b"PING\r\n")
                got = b""

                def arrived(fd: int = master) -> bool:
                    nonlocal got
                    if select.select([fd], [], [], 0)[0]:
                        got += os.read(fd, 64)
                    return got.endswith(b"PING\r\n")

                wait_until(arrived, 5, "a line through the socat link")
            finally:
                os.close(fd)
            link.remove()
            assert not link.link.exists() and not link.alive()
    finally:
        link.remove()
        os.close(master)
        os.close(slave)


def test_veth_link_down_stops_packets_and_up_lets_them_through(tmp_path: Path) -> None:
    """A TCP echo server inside the namespace: bytes pass, stop while down, pass after."""
    veth = VethLink().up()
    port = 47_123
    server = subprocess.Popen(
        [*veth.prefix(), sys.executable, "-c",
         "import socket\n"
         f"s = socket.create_server(('{veth.ns_ip}', {port}))\n"
         "c = s.accept()[0]\n"
         "while (d := c.recv(65536)):\n"
         "    c.sendall(d)\n"],
    )  # fmt: skip
    try:

        def connect() -> socket.socket | None:
            try:
                return socket.create_connection((veth.ns_ip, port), timeout=1)
            except OSError:
                return None

        c = wait_until(connect, 10, "the echo server in the namespace")
        with c:
            c.sendall(b"before")
            assert _recv_within(c, 6, 5) == b"before"
            veth.partition()
            c.sendall(b"during")
            assert _recv_within(c, 6, 1.0) == b"", "bytes crossed a pulled cable"
            veth.heal()
            # TCP retransmits by itself after its back-off: the bytes arrive, late
            assert _recv_within(c, 6, 15) == b"during"
    finally:
        server.kill()
        server.wait()
        veth.close()
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert veth.ns not in r.stdout


# -- the scenarios ------------------------------------------------------------------------
@pytest.mark.timeout(150)
@pytest.mark.parametrize("name", SCENARIOS)
def test_field_fault_loses_nothing_silently(name: str, tmp_path: Path) -> None:
    res, inst = run_scenario(name, TEST_SIZING, tmp_path)
    why = "\n".join([*res.notes, f"alarms: {res.alarms}", inst.log_tail("edge", 25),
                     inst.log_tail("central", 15)])  # fmt: skip
    assert res.expected > 4 * (TEST_SIZING.scan_lines + 16), "the scanners hardly scanned"
    assert res.forged == 0, f"{res.forged} CIR lines match no emitted line\n{why}"
    assert res.duplicated == 0, f"{res.duplicated} lines are in the CIR twice\n{why}"
    assert res.lost == 0, (
        f"{res.lost} of {res.expected} emitted lines are neither in the CIR nor in a GAP "
        f"with an alarm ({res.gap_lines} in GAPs)\n{why}"
    )
    assert res.committed + res.gap_lines == res.expected
    assert res.unexpected_exits == 0, why
    assert res.recovery_s is not None and res.recovery_s <= 5.0, (
        f"recovery {res.recovery_s} s after the fault ended\n{why}"
    )
