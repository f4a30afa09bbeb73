"""A PostgreSQL server that stops answering without closing its connection (paused,
its disk stalled) fails a statement under a deadline, instead of holding the caller
(central's event loop) until it answers again (central._sql._Deadlines)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from central._sql import RETRY_AFTER_DEADLINE_S, Sql, is_unreachable


class FreezingProxy:
    """A TCP proxy to the server that can stop passing bytes on, its sockets open (what
    a client sees of a paused server: the kernel still acknowledges)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.socks: list[socket.socket] = []
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            s.close()


def _via(url: str, port: int) -> str:
    u = urlsplit(url)
    netloc = u.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(u._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def test_a_statement_on_a_frozen_server_fails_by_its_deadline(pg_database: str) -> None:
    u = urlsplit(pg_database)
    proxy = FreezingProxy(u.hostname or "127.0.0.1", u.port or 5432)
    db = Sql(_via(pg_database, proxy.port), deadline_s=1.0)
    try:
        assert db.value("SELECT 1") == 1
        proxy.frozen.set()
        t = time.monotonic()
        with pytest.raises(Exception) as e:
            db.value("SELECT 2")
        took = time.monotonic() - t
        assert is_unreachable(e.value), e.value
        assert 1.0 <= took < 5.0, took  # its deadline, not the server's return
        # meanwhile every statement fails at once, without waiting again
        t = time.monotonic()
        with pytest.raises(Exception) as e2:
            db.value("SELECT 3")
        assert is_unreachable(e2.value) and time.monotonic() - t < 0.5
        proxy.frozen.clear()  # the server answers again: so does the connection, anew
        deadline = time.monotonic() + RETRY_AFTER_DEADLINE_S + 10
        got: Any = None
        while got is None and time.monotonic() < deadline:
            try:
                got = db.value("SELECT 4")
            except Exception as exc:
                assert is_unreachable(exc), exc
                time.sleep(0.2)
        assert got == 4
    finally:
        proxy.frozen.clear()
        db.close()
        proxy.close()
