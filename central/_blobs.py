"""Where the CIR keeps its blobs: a folder of files, or an S3-compatible object store.

A blob is one sealed block exactly as the edge made it (``core.seal``), named by
its block hash (64 hex digits) and never changed once written.  The CIR writes a
batch of blobs, waits until :meth:`BlobStore.put` returns (the blobs are durable),
and only then records them in its metadata and acknowledges them to the edge.  A
blob without its metadata row (a crash in between) is harmless: the edge resends
the block, the same bytes are written under the same name, and ``nii cir verify``
reports any that stay orphaned.

* :class:`FileBlobStore` (``blobs = "file"``, the embedded default): the files
  ``<root>/ab/cd/<hash>``, each written beside its place and renamed when whole,
  then one ``syncfs`` for the batch.
* :class:`S3BlobStore` (``blobs = "s3://bucket/prefix"``): one object per blob,
  ``<prefix>/ab/cd/<hash>``, through obstore (the Rust ``object_store`` crate)
  against any S3-compatible server (Amazon S3, MinIO, SeaweedFS, Ceph RGW).  A
  PUT returns once the server has stored the object; what "stored" means
  (replicas, fsync) is the server's setting (decision 0016).

The store never judges what it holds: every reader checks a blob against its
name (``core.seal.parse`` and the block hash) and its signature.
"""

from __future__ import annotations

import configparser
import contextlib
import ctypes
import ctypes.util
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from core.errors import ConfigError, NiiError, StorageError

_libc_name = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_libc_name, use_errno=True) if _libc_name else None

HEX = frozenset("0123456789abcdef")


def syncfs(fd: int) -> None:
    """Flush the whole file system holding ``fd`` (one call for a batch of files)."""
    if _libc is not None and hasattr(_libc, "syncfs") and _libc.syncfs(fd) == 0:
        return
    os.sync()


class BlobMissing(NiiError):
    """A blob the metadata names is not in the store."""


def blob_name(h: bytes | str) -> str:
    """A blob's name: its block hash as 64 lower-case hex digits.

    Raises:
        ValueError: not a 32-byte hash.
    """
    hx = h.hex() if isinstance(h, bytes | bytearray) else str(h).lower()
    if len(hx) != 64 or not set(hx) <= HEX:
        raise ValueError(f"not a block hash: {hx[:80]!r}")
    return hx


class BlobStore(Protocol):
    """What the CIR needs of a blob store.  Implementations are thread-safe for one
    writer (the commit thread) beside any number of readers."""

    @property
    def location(self) -> str:
        """Where the blobs are, for messages (a folder, or ``s3://bucket/prefix``)."""
        ...

    def put(self, blobs: Sequence[tuple[bytes, bytes | memoryview]]) -> None:
        """Store (hash, bytes) pairs; durable when it returns.

        Raises:
            StorageError: a blob could not be stored (disk full, server down): which
                of the batch were stored is unknown, and the batch is not acknowledged.
        """
        ...

    def get(self, h: bytes | str) -> bytes:
        """The blob named ``h``.

        Raises:
            BlobMissing: no such blob.
            StorageError: the store cannot be read.
        """
        ...

    def names(self) -> Iterator[str]:
        """Every blob's name (for ``nii cir verify``'s orphan count), in no order."""
        ...

    def free_bytes(self) -> int:
        """Space left for blobs, bytes; -1 where the store does not say."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...


class FileBlobStore:
    """Blobs as files under ``root``: ``root/ab/cd/<hash>``."""

    def __init__(self, root: Path, owner: Path | None = None) -> None:
        """Open (creating) the folder ``root``; errors name ``owner`` (the CIR's folder,
        default ``root``) and its free space.

        Raises:
            ConfigError: it cannot be made or opened.
        """
        self.root = Path(root)
        self.owner = Path(owner) if owner is not None else self.root
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.root, os.O_RDONLY)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the blob folder {self.root}: {exc.strerror}",
                fix="check state_dir: it must exist, be writable and have free space",
            ) from exc
        self._dirs: set[Path] = set()

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, h: bytes | str) -> Path:
        """The file of blob ``h``."""
        hx = blob_name(h)
        return self.root / hx[:2] / hx[2:4] / hx

    def put(self, blobs: Sequence[tuple[bytes, bytes | memoryview]]) -> None:
        try:
            for h, raw in blobs:
                self._write(h, raw)
            if blobs:
                syncfs(self._fd)
        except OSError as exc:
            raise self._error(exc) from exc

    def _write(self, h: bytes, raw: bytes | memoryview) -> None:
        # Written beside its place and renamed when whole: a blob file under its own name
        # is always complete, so one cut short by a full disk or a crash is never taken
        # for a committed one.
        p = self.path(h)
        if p.parent not in self._dirs:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(p.parent)
        tmp = p.with_name(p.name + ".part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, p)

    def get(self, h: bytes | str) -> bytes:
        p = self.path(h)
        try:
            return p.read_bytes()
        except FileNotFoundError as exc:
            raise BlobMissing(
                f"blob {blob_name(h)} is missing from the CIR's blob folder {self.root}",
                fix="restore the blob folder from backup; the block index is intact",
            ) from exc
        except OSError as exc:
            raise self._error(exc) from exc

    def names(self) -> Iterator[str]:
        for _, _, files in os.walk(self.root):
            yield from (f for f in files if len(f) == 64 and set(f) <= HEX)

    def free_bytes(self) -> int:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return -1
        return st.f_bavail * st.f_frsize

    def _error(self, exc: OSError) -> StorageError:
        free = self.free_bytes()
        return StorageError(
            f"cannot write the CIR in {self.owner}: {exc} ({free} bytes free)",
            fix="free space on that file system (or fix its I/O error); central resumes "
            "by itself once the write succeeds",
            path=str(self.owner),
            free_bytes=free,
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


#: Blobs of one batch PUT at once: a batch is tens to hundreds of blocks of 0.1-1 MB, and
#: an object store's latency (1-10 ms a PUT) is hidden by doing them side by side.  The
#: client (obstore: Rust, the GIL let go while a request runs) signs and sends each in
#: about 0.5 ms of CPU, a fifth of boto3's (decision 0026).
S3_PARALLEL = 16
#: A request that fails (server down, 5xx) is tried this many times more, within
#: ``S3_RETRY_S``; then the batch fails as a ``StorageError`` and central retries it
#: itself, alarming ``storage`` meanwhile.
S3_RETRIES = 3
S3_RETRY_S = 10


class S3BlobStore:
    """Blobs as objects of an S3-compatible store: ``s3://bucket/prefix/ab/cd/<hash>``."""

    def __init__(self, bucket: str, prefix: str, store: Any) -> None:
        """Use ``bucket`` (which must exist) through an ``obstore.store.S3Store`` for it.

        Raises:
            ConfigError: the bucket cannot be reached (no such bucket, wrong
                credentials, no server at the endpoint).
        """
        import obstore
        import obstore.exceptions

        self._obs = obstore
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.store = store
        self._pool = ThreadPoolExecutor(S3_PARALLEL, thread_name_prefix="nii-s3")
        try:  # one listed page proves the bucket, the credentials and the server
            next(iter(obstore.list(store, self.prefix or None, chunk_size=1)), None)
        except Exception as exc:
            raise ConfigError(
                f"cannot reach the blob bucket {self.location}: {_s3_reason(exc)}",
                fix=f"check {_SETTINGS}; the bucket must exist",
            ) from exc

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, h: bytes | str) -> str:
        """The object key of blob ``h``."""
        hx = blob_name(h)
        tail = f"{hx[:2]}/{hx[2:4]}/{hx}"
        return f"{self.prefix}/{tail}" if self.prefix else tail

    def put(self, blobs: Sequence[tuple[bytes, bytes | memoryview]]) -> None:
        put = self._obs.put

        def one(item: tuple[bytes, bytes | memoryview]) -> None:
            h, raw = item
            # one PUT, never multipart: the object appears whole or not at all
            put(self.store, self.key(h), raw, use_multipart=False)

        try:
            for f in [self._pool.submit(one, b) for b in blobs]:
                f.result()
        except Exception as exc:
            raise StorageError(
                f"cannot write the CIR's blobs to {self.location}: {_s3_reason(exc)}",
                fix="check the object store (it must be up, writable and have space); "
                "central resumes by itself once the write succeeds",
                path=self.location,
                free_bytes=-1,
            ) from exc

    def get(self, h: bytes | str) -> bytes:
        key = self.key(h)
        try:
            return bytes(self._obs.get(self.store, key).bytes())
        except Exception as exc:
            if isinstance(exc, FileNotFoundError | self._obs.exceptions.NotFoundError):
                raise BlobMissing(
                    f"blob {blob_name(h)} is missing from {self.location}",
                    fix="restore the object from the bucket's versions or a backup; the "
                    "block index is intact",
                ) from exc
            raise StorageError(
                f"cannot read the CIR's blobs from {self.location}: {_s3_reason(exc)}",
                fix="check that the object store is up and the credentials are right",
                path=self.location,
                free_bytes=-1,
            ) from exc

    def names(self) -> Iterator[str]:
        for page in self._obs.list(self.store, self.prefix or None, chunk_size=1000):
            for obj in page:
                name = str(obj["path"]).rsplit("/", 1)[-1]
                if len(name) == 64 and set(name) <= HEX:
                    yield name

    def free_bytes(self) -> int:
        return -1

    def close(self) -> None:
        self._pool.shutdown(wait=True)


#: where a user sets the blob store, for the fix lines
_SETTINGS = (
    "blobs, s3_endpoint and s3_credentials in [central] (or the --blobs, --s3-endpoint "
    "and --s3-credentials of nii cir migrate)"
)
_STATUS = re.compile(r"status code: (\d{3}[^:<]*)")
_CODE = re.compile(r"<Code>(\w+)</Code>")
_HINTS = {
    "NoSuchBucket": "no such bucket",
    "AccessDenied": "wrong credentials, or no right to the bucket",
    "InvalidAccessKeyId": "wrong credentials",
    "SignatureDoesNotMatch": "wrong credentials",
}


def _s3_reason(exc: BaseException) -> str:
    """What went wrong with an object-store request, in a line (obstore's messages run
    to a dozen lines of nested causes, with the request's URL and timing)."""
    text = str(exc).strip() or type(exc).__name__
    m = _STATUS.search(text)
    if m:
        code = _CODE.search(text)
        hint = _HINTS.get(code.group(1), code.group(1)) if code else ""
        return f"the server answered {m.group(1).strip()}" + (f" ({hint})" if hint else "")
    if "error sending request" in text or "timed out" in text.lower():
        return "no answer from the server (nothing listening there, or it timed out)"
    return text.splitlines()[0][:300]


def _check_endpoint(endpoint: str) -> None:
    """Refuse an endpoint that is not ``http(s)://host[:port]`` (obstore panics on some).

    Raises:
        ConfigError: it is not.
    """
    u = urlsplit(endpoint)
    try:
        ok = u.scheme in ("http", "https") and bool(u.hostname) and (u.port or 0) >= 0
    except ValueError:  # a port out of range or not a number
        ok = False
    if not ok or any(c.isspace() for c in endpoint):
        raise ConfigError(
            f"s3_endpoint {endpoint!r} is not a URL",
            fix='give the object store\'s URL, e.g. "http://127.0.0.1:8333"',
        )


def open_blob_store(
    spec: str,
    state_dir: Path,
    *,
    endpoint: str = "",
    credentials: Path | None = None,
    region: str = "us-east-1",
) -> BlobStore:
    """The blob store that ``[central] blobs`` names.

    Args:
        spec: ``""`` or ``"file"`` (``state_dir/blobs``), a folder path, or
            ``s3://bucket[/prefix]``.
        state_dir: the CIR's folder.
        endpoint: the S3 server's URL (``http://host:port``; empty: Amazon S3).
        credentials: an INI file with ``aws_access_key_id`` and
            ``aws_secret_access_key`` under ``[default]`` (the AWS credentials file
            format); without it the environment (``AWS_ACCESS_KEY_ID``,
            ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``) or the host's instance
            role (``~/.aws`` is not read).
        region: the region the client signs for (S3-compatible servers ignore it).

    Raises:
        ConfigError: a malformed spec, an unreadable credentials file, or a store that
            cannot be opened.
    """
    if spec in ("", "file"):
        return FileBlobStore(Path(state_dir) / "blobs", Path(state_dir))
    if "://" not in spec:
        return FileBlobStore(Path(spec))
    u = urlsplit(spec)
    if u.scheme != "s3" or not u.netloc:
        raise ConfigError(
            f"blobs = {spec!r}: not a blob store",
            fix='use "file" (the default), a folder, or "s3://bucket/prefix"',
        )
    from obstore.store import S3Store  # here: only a national CIR needs it

    kw: dict[str, Any] = {"region": region}
    if endpoint:
        _check_endpoint(endpoint)
        kw["endpoint"] = endpoint
    if credentials is not None:
        cp = configparser.ConfigParser()
        try:
            with open(credentials, encoding="utf-8") as fh:
                cp.read_file(fh)
            sec = cp["default"]
            kw["access_key_id"] = sec["aws_access_key_id"]
            kw["secret_access_key"] = sec["aws_secret_access_key"]
        except (OSError, KeyError, configparser.Error) as exc:
            if isinstance(exc, KeyError):
                name = exc.args[0] if exc.args else ""
                why = (
                    "it has no [default] section"
                    if name == "default"
                    else f"its [default] section has no {name}"
                )
            else:
                text = str(exc).strip()
                why = text.splitlines()[0] if text else type(exc).__name__
            raise ConfigError(
                f"cannot read the object store's credentials from {credentials}: {why}",
                fix="give an INI file with [default] aws_access_key_id and aws_secret_access_key",
            ) from exc
    try:
        store = S3Store(
            u.netloc,
            virtual_hosted_style_request=False,
            client_options={
                "allow_http": endpoint.startswith("http://"),
                "connect_timeout": timedelta(seconds=5),
                "timeout": timedelta(seconds=30),
            },
            retry_config={
                "max_retries": S3_RETRIES,
                "retry_timeout": timedelta(seconds=S3_RETRY_S),
            },
            **kw,
        )
    except Exception as exc:  # a bad endpoint or region
        raise ConfigError(
            f"cannot use the blob store {spec!r}: {_s3_reason(exc)}",
            fix=f"check {_SETTINGS}",
        ) from exc
    try:
        return S3BlobStore(u.netloc, u.path, store)
    except ConfigError as exc:
        if credentials is not None or os.environ.get("AWS_ACCESS_KEY_ID"):
            raise
        # obstore then asks the cloud's instance metadata, whose refusal reads as a
        # bare "403 Forbidden" from the object store
        raise ConfigError(
            f"{exc.message}; no credentials were given (s3_credentials is not set and "
            "AWS_ACCESS_KEY_ID is not in the environment)",
            fix=exc.fix,
        ) from exc.__cause__
