"""The CIR's blob stores: files and a real S3-compatible server (SeaweedFS on loopback).

Both keep a blob under its block hash, bit for bit; a missing blob, a blob replaced
by another block and a store that is down each give one clear error.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central._blobs import BlobMissing, BlobStore, FileBlobStore, open_blob_store
from central._reader import verify_stream
from core.errors import ConfigError, IntegrityError, StorageError
from tests.unit.central._chain import SCANNER, committed_cir


def _s3(server: Any, prefix: str) -> BlobStore:
    return open_blob_store(
        f"s3://{server.extra['bucket']}/{prefix}",
        Path("."),
        endpoint=server.url,
        credentials=server.extra["credentials"],
    )


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "file":
        s: BlobStore = FileBlobStore(tmp_path / "blobs")
    else:
        s = _s3(request.getfixturevalue("s3_server"), f"t-{tmp_path.name}")
    try:
        yield s
    finally:
        s.close()


def _blob(i: int, size: int = 3000) -> tuple[bytes, bytes]:
    raw = hashlib.sha256(str(i).encode()).digest() * (size // 32)
    return hashlib.blake2b(raw, digest_size=32).digest(), raw


def test_blobs_come_back_bit_for_bit_under_their_names(store: BlobStore) -> None:
    blobs = [_blob(i, 1000 * (i + 1)) for i in range(20)]
    store.put(blobs)
    store.put(blobs[:3])  # a resent batch writes the same bytes again: harmless
    for h, raw in blobs:
        assert store.get(h) == raw and store.get(h.hex()) == raw
    assert sorted(store.names()) == sorted(h.hex() for h, _ in blobs)
    with pytest.raises(BlobMissing, match="missing") as err:
        store.get(b"\x01" * 32)
    assert err.value.fix
    with pytest.raises(ValueError):
        store.get("../../etc/passwd")


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_a_replaced_blob_is_refused_on_read_and_by_verify(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    blobs: BlobStore = (
        FileBlobStore(tmp_path / "cir" / "blobs")
        if kind == "file"
        else _s3(request.getfixturevalue("s3_server"), f"v-{tmp_path.name}")
    )
    cir, _, hashes = committed_cir(tmp_path / "cir", blobs)
    try:
        assert verify_stream(cir, SCANNER).ok
        assert cir.read_block(hashes[1].hex()).hash == hashes[1]
        # the data block's blob replaced by the start block's bytes (a valid, signed block)
        blobs.put([(hashes[1], blobs.get(hashes[0]))])
        with pytest.raises(IntegrityError, match="holds another block"):
            cir.read_block(hashes[1].hex())
        rep = verify_stream(cir, SCANNER)
        assert not rep.ok and any("holds another block" in p for p in rep.problems)
    finally:
        cir.close()


def test_an_object_store_that_is_down_is_a_storage_error(s3_server: Any) -> None:
    from nii._local_servers import start_s3

    base = Path(tempfile.mkdtemp(prefix="nii-test-s3-down-"))
    server = start_s3(base)
    store = _s3(server, "down")
    try:
        store.put([_blob(1)])
        server.stop()
        with pytest.raises(StorageError, match="cannot write the CIR's blobs") as err:
            store.put([_blob(2)])
        assert err.value.fix and err.value.path == store.location
        with pytest.raises(StorageError, match="cannot read"):
            store.get(_blob(1)[0])
    finally:
        store.close()
        server.stop()


def test_a_wrong_blob_store_setting_is_one_clear_error(
    s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for spec in ("ftp://x/y", "s3://"):
        with pytest.raises(ConfigError, match="not a blob store"):
            open_blob_store(spec, tmp_path)
    with pytest.raises(ConfigError, match="credentials"):
        open_blob_store(
            "s3://nii-cir", tmp_path, endpoint=s3_server.url, credentials=tmp_path / "none"
        )
    for text, why in (
        ("[other]\naws_access_key_id = a\n", "no \\[default\\] section"),
        ("[default]\naws_access_key_id = a\n", "no aws_secret_access_key"),
    ):
        (tmp_path / "part.ini").write_text(text)
        with pytest.raises(ConfigError, match=why):
            open_blob_store(
                "s3://nii-cir", tmp_path, endpoint=s3_server.url, credentials=tmp_path / "part.ini"
            )
    bad = tmp_path / "bad.ini"
    bad.write_text("[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong\n")
    with pytest.raises(ConfigError, match=r"cannot reach the blob bucket.*wrong credentials"):
        open_blob_store("s3://nii-cir", tmp_path, endpoint=s3_server.url, credentials=bad)
    with pytest.raises(ConfigError, match=r"cannot reach the blob bucket.*no such bucket") as e:
        open_blob_store(
            "s3://no-such-bucket", tmp_path, endpoint=s3_server.url,
            credentials=s3_server.extra["credentials"],
        )  # fmt: skip
    assert "\n" not in e.value.message and "<?xml" not in e.value.message  # one line
    # no credentials anywhere: the server's bare 403 comes with the reason
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with pytest.raises(ConfigError, match=r"403.*no credentials were given"):
        open_blob_store("s3://nii-cir", tmp_path, endpoint=s3_server.url)
    # an endpoint that is not a URL is refused before the client sees it (obstore
    # panics on some), whoever calls: central's config checks it too
    for endpoint in ("notaurl", "http://", "http://host:99999", "http://a b:1"):
        with pytest.raises(ConfigError, match="is not a URL"):
            open_blob_store(
                "s3://nii-cir", tmp_path, endpoint=endpoint,
                credentials=s3_server.extra["credentials"],
            )  # fmt: skip
    with pytest.raises(ConfigError, match=r"cannot reach the blob bucket.*no answer"):
        from core.net import free_port

        open_blob_store(
            "s3://nii-cir", tmp_path, endpoint=f"http://127.0.0.1:{free_port()}",
            credentials=s3_server.extra["credentials"],
        )  # fmt: skip


def test_central_names_its_blob_store_or_says_what_is_wrong(tmp_path: Path) -> None:
    from core.config import CentralConfig

    base = '[central]\nkey = "cir.key"\n'
    for line, problem in (
        ('blobs = "ftp://x/y"', "is not a blob store"),
        ('blobs = "s3://"', "is not a blob store"),
        ('blobs = "s3://b"\ns3_endpoint = "127.0.0.1:8333"', "is not a URL"),
        ('blobz = "s3://b"', "unknown setting"),
        ('cir = "mysql://x/y"', "is not a PostgreSQL URL"),
    ):
        cfg = tmp_path / "central.toml"
        cfg.write_text(base + line + "\n")
        with pytest.raises(ConfigError, match=problem) as err:
            CentralConfig.load(cfg)
        assert str(cfg) in err.value.message and err.value.fix
    cfg.write_text(base + 'blobs = "s3://b/p"\ns3_credentials = "s3.ini"\n')
    c = CentralConfig.load(cfg)
    assert (c.blobs, c.s3_credentials) == ("s3://b/p", tmp_path / "s3.ini")
    cfg.write_text(base)
    assert CentralConfig.load(cfg).blobs == "file"
