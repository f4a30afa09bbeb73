"""Key files of edges and of the CIR.

Two identities exist:

* an **edge** (one per edge box): an Ed25519 device key that signs every block,
  and a CurveZMQ key pair that authenticates its connections;
* the **CIR** (the central aggregator): an X25519 key to which every block is
  encrypted, and the CurveZMQ server key pair.

Each identity is one private JSON file (mode 0600) and one public JSON file
that is handed to the other side: ``edge-a.pub`` to the central enrollment,
``cir.pub`` to every edge.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from core.errors import KeyFileError

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_id(kind: str, value: str) -> str:
    """Validate an edge or scanner id: letters, digits, ``_.-``, 1-64 chars."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise KeyFileError(
            f"invalid {kind} id {value!r}",
            fix="use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return value


def _raw(key: Any) -> bytes:
    if isinstance(key, Ed25519PrivateKey | X25519PrivateKey):
        return key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    return bytes(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(path: Path, doc: dict[str, Any], field: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(str(doc[field]), validate=True)
    except (KeyError, ValueError) as exc:
        raise KeyFileError(
            f"key file {path} has no valid field {field!r}",
            fix="recreate it with 'nii keys'",
        ) from exc
    if len(raw) != size:
        raise KeyFileError(
            f"key file {path}: field {field!r} has {len(raw)} bytes, expected {size}",
            fix="recreate it with 'nii keys'",
        )
    return raw


def _read(path: Path, kind: str) -> dict[str, Any]:
    path = Path(path)
    what = {
        "nii-edge-key": "edge private key",
        "nii-edge-pub": "edge public key",
        "nii-cir-key": "CIR private key",
        "nii-cir-pub": "CIR public key",
        "nii-service-sign": "service signing key",
    }[kind]
    hint = "create it with 'nii keys " + ("edge" if "edge" in kind else "cir") + "'"
    if kind == "nii-service-sign":
        hint = "remove it: the service makes a new one (decisions it signed keep their key id)"
    if not path.exists():
        raise KeyFileError(f"{what} file {path} does not exist", fix=hint)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError(f"cannot read {what} file {path}: {exc}", fix=hint) from exc
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        got = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
        raise KeyFileError(
            f"{path} is not a {what} file (its kind is {got!r})",
            fix=f"point the setting at the {what} ({hint})",
        )
    return doc


def _z85(path: Path, doc: dict[str, Any], field: str) -> bytes:
    val = doc.get(field)
    if not isinstance(val, str) or len(val) != 40:
        raise KeyFileError(
            f"key file {path} has no valid CurveZMQ field {field!r}",
            fix="recreate it with 'nii keys'",
        )
    return val.encode()


def _write(path: Path, doc: dict[str, Any], private: bool, force: bool) -> None:
    path = Path(path)
    if path.exists() and not force:
        raise KeyFileError(
            f"{path} already exists; refusing to overwrite a key",
            fix="choose another --out directory, or pass --force if you really mean to replace it",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(doc, indent=2) + "\n").encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if private:
        os.chmod(path, 0o600)


@dataclass(frozen=True)
class EdgePublic:
    id: str
    sign_public: Ed25519PublicKey
    curve_public: bytes  # z85

    @property
    def sign_public_b64(self) -> str:
        return _b64(_raw(self.sign_public))

    @classmethod
    def load(cls, path: Path) -> EdgePublic:
        doc = _read(path, "nii-edge-pub")
        return cls(
            id=check_id("edge", str(doc.get("id", ""))),
            sign_public=Ed25519PublicKey.from_public_bytes(_unb64(path, doc, "sign_public", 32)),
            curve_public=_z85(path, doc, "curve_public"),
        )

    @staticmethod
    def from_b64(b64: str) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))


@dataclass(frozen=True)
class EdgeKey:
    id: str
    sign_private: Ed25519PrivateKey
    curve_secret: bytes
    curve_public: bytes

    @property
    def public(self) -> EdgePublic:
        return EdgePublic(self.id, self.sign_private.public_key(), self.curve_public)

    @classmethod
    def generate(cls, edge_id: str) -> EdgeKey:
        pub, sec = zmq.curve_keypair()
        return cls(check_id("edge", edge_id), Ed25519PrivateKey.generate(), sec, pub)

    @classmethod
    def load(cls, path: Path) -> EdgeKey:
        doc = _read(path, "nii-edge-key")
        return cls(
            id=check_id("edge", str(doc.get("id", ""))),
            sign_private=Ed25519PrivateKey.from_private_bytes(
                _unb64(path, doc, "sign_private", 32)
            ),
            curve_secret=_z85(path, doc, "curve_secret"),
            curve_public=_z85(path, doc, "curve_public"),
        )

    def save(self, directory: Path, force: bool = False) -> tuple[Path, Path]:
        directory = Path(directory)
        priv = directory / f"{self.id}.key"
        pub = directory / f"{self.id}.pub"
        _write(
            priv,
            {
                "kind": "nii-edge-key",
                "id": self.id,
                "sign_private": _b64(_raw(self.sign_private)),
                "curve_secret": self.curve_secret.decode(),
                "curve_public": self.curve_public.decode(),
            },
            True,
            force,
        )
        _write(
            pub,
            {
                "kind": "nii-edge-pub",
                "id": self.id,
                "sign_public": _b64(_raw(self.sign_private.public_key())),
                "curve_public": self.curve_public.decode(),
            },
            False,
            force,
        )
        return priv, pub


@dataclass(frozen=True)
class CirPublic:
    x25519_public: X25519PublicKey
    curve_public: bytes

    @classmethod
    def load(cls, path: Path) -> CirPublic:
        doc = _read(path, "nii-cir-pub")
        return cls(
            X25519PublicKey.from_public_bytes(_unb64(path, doc, "x25519_public", 32)),
            _z85(path, doc, "curve_public"),
        )


@dataclass(frozen=True)
class CirKey:
    x25519_private: X25519PrivateKey
    curve_secret: bytes
    curve_public: bytes

    @property
    def public(self) -> CirPublic:
        return CirPublic(self.x25519_private.public_key(), self.curve_public)

    @classmethod
    def generate(cls) -> CirKey:
        pub, sec = zmq.curve_keypair()
        return cls(X25519PrivateKey.generate(), sec, pub)

    @classmethod
    def load(cls, path: Path) -> CirKey:
        doc = _read(path, "nii-cir-key")
        return cls(
            X25519PrivateKey.from_private_bytes(_unb64(path, doc, "x25519_private", 32)),
            _z85(path, doc, "curve_secret"),
            _z85(path, doc, "curve_public"),
        )

    def save(self, directory: Path, force: bool = False) -> tuple[Path, Path]:
        directory = Path(directory)
        priv, pub = directory / "cir.key", directory / "cir.pub"
        _write(
            priv,
            {
                "kind": "nii-cir-key",
                "x25519_private": _b64(_raw(self.x25519_private)),
                "curve_secret": self.curve_secret.decode(),
                "curve_public": self.curve_public.decode(),
            },
            True,
            force,
        )
        _write(
            pub,
            {
                "kind": "nii-cir-pub",
                "x25519_public": _b64(_raw(self.x25519_private.public_key())),
                "curve_public": self.curve_public.decode(),
            },
            False,
            force,
        )
        return priv, pub


@dataclass(frozen=True)
class ServiceSignKey:
    """The Ed25519 key a service (the control room) signs records with: an officer's
    decision is evidence, and its signature shows it was not changed after the fact.

    ``key_id`` is the first 16 hex digits of the SHA-256 of the raw public key; every
    signed record names it, and the public key is kept beside the private one
    (``PATH.pub``) for whoever checks the records.
    """

    sign_private: Ed25519PrivateKey

    @property
    def public_b64(self) -> str:
        return _b64(_raw(self.sign_private.public_key()))

    @property
    def key_id(self) -> str:
        import hashlib

        return hashlib.sha256(_raw(self.sign_private.public_key())).hexdigest()[:16]

    def sign(self, data: bytes) -> str:
        """The base64 Ed25519 signature of ``data``."""
        return _b64(self.sign_private.sign(data))

    @classmethod
    def load_or_make(cls, path: Path) -> ServiceSignKey:
        """The key in ``path``; a new one (mode 0600, and ``PATH.pub``) if there is none.

        Raises:
            KeyFileError: the file exists but is not such a key, or cannot be written.
        """
        path = Path(path)
        if path.exists():
            doc = _read(path, "nii-service-sign")
            return cls(Ed25519PrivateKey.from_private_bytes(_unb64(path, doc, "sign_private", 32)))
        key = cls(Ed25519PrivateKey.generate())
        try:
            _write(path, {"kind": "nii-service-sign", "sign_private": _b64(_raw(key.sign_private))},
                   True, False)  # fmt: skip
            _write(path.with_name(path.name + ".pub"),
                   {"kind": "nii-service-pub", "key_id": key.key_id, "sign_public": key.public_b64},
                   False, True)  # fmt: skip
        except OSError as exc:
            raise KeyFileError(
                f"cannot write the signing key {path}: {exc}",
                fix="its folder must exist and be writable by this user",
            ) from exc
        return key
