"""An open, versioned container for a scan's images and metadata, in the spirit of WCO UFF.

The WCO Unified File Format's technical specification is not public, so this
is our own open format (``docs/uff.md``): a ZIP archive holding

- ``manifest.json``: format name and version, the metadata, and for every
  array its file, dtype, shape and SHA-256;
- ``arrays/<name>.npy``: each array in NumPy's documented ``.npy`` format.

Entries carry a fixed timestamp and are written in a fixed order, so writing
the same package twice gives the same bytes, and reading gives back exactly
what was written (dtypes, shapes, values, metadata).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from core.errors import IntegrityError, ProtocolError

FORMAT = "nii-uff"
VERSION = "1.1"  # 1.1: optional metadata key scanner_calibration (docs/uff.md)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_EPOCH = (1980, 1, 1, 0, 0, 0)
REQUIRED_METADATA = ("scanner", "scan")


@dataclass(slots=True)
class UffPackage:
    """Arrays by name plus JSON-serialisable metadata (see ``docs/uff.md`` for the keys).

    Equality is exact: same metadata, and arrays with the same dtype, shape and bytes
    (so NaN equals NaN).
    """

    metadata: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UffPackage):
            return NotImplemented
        return (
            self.metadata == other.metadata
            and self.arrays.keys() == other.arrays.keys()
            and all(
                a.dtype == other.arrays[k].dtype
                and a.shape == other.arrays[k].shape
                and np.ascontiguousarray(a).tobytes()
                == np.ascontiguousarray(other.arrays[k]).tobytes()
                for k, a in self.arrays.items()
            )
        )


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def write_uff(package: UffPackage, target: str | Path | IO[bytes]) -> None:
    """Write ``package`` to a path or binary file object."""
    for key in REQUIRED_METADATA:
        if key not in package.metadata:
            raise ProtocolError(
                f"UFF metadata lacks {key!r}", fix=f"add a {key!r} section (see docs/uff.md)"
            )
    manifest: dict[str, Any] = {"format": FORMAT, "version": VERSION, "arrays": {}}
    blobs: list[tuple[str, bytes]] = []
    for name in sorted(package.arrays):
        if not _NAME.match(name):
            raise ProtocolError(
                f"array name {name!r} is not allowed", fix="use lower-case letters, digits and _"
            )
        arr = np.ascontiguousarray(package.arrays[name])
        if arr.dtype.hasobject:
            raise ProtocolError(f"array {name!r} holds Python objects", fix="store numbers only")
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        data = buf.getvalue()
        path = f"arrays/{name}.npy"
        manifest["arrays"][name] = {
            "file": path,
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        blobs.append((path, data))
    manifest["metadata"] = package.metadata
    text = json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
    with zipfile.ZipFile(target, "w") as zf:
        zf.writestr(_entry("manifest.json"), text.encode("utf-8"))
        for path, data in blobs:
            zf.writestr(_entry(path), data)


def read_uff(source: str | Path | IO[bytes]) -> UffPackage:
    """Read and verify a package: format, major version and every array's SHA-256."""
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise ProtocolError(
            "not a UFF package (not a ZIP archive)", fix="check the file is a .uff export"
        ) from exc
    with zf:
        try:
            manifest = json.loads(zf.read("manifest.json"))
        except KeyError as exc:
            raise ProtocolError("UFF package has no manifest.json", fix="re-export it") from exc
        if manifest.get("format") != FORMAT:
            raise ProtocolError(f"unknown format {manifest.get('format')!r}", fix="not a UFF file")
        major = str(manifest.get("version", "")).split(".")[0]
        if major != VERSION.split(".")[0]:
            raise ProtocolError(
                f"UFF version {manifest.get('version')} is not supported (this reader: {VERSION})",
                fix="upgrade the reader",
            )
        arrays: dict[str, np.ndarray] = {}
        for name, desc in manifest["arrays"].items():
            data = zf.read(desc["file"])
            if hashlib.sha256(data).hexdigest() != desc["sha256"]:
                raise IntegrityError(
                    f"array {name!r} does not match its SHA-256 in the manifest",
                    fix="the package was altered or damaged; fetch it again from the CIR",
                    reason="uff-digest",
                )
            arr = np.load(io.BytesIO(data), allow_pickle=False)
            if arr.dtype.str != desc["dtype"] or list(arr.shape) != desc["shape"]:
                raise IntegrityError(
                    f"array {name!r} has dtype/shape other than its manifest says",
                    fix="the package was altered; fetch it again",
                    reason="uff-shape",
                )
            arrays[name] = arr
        return UffPackage(manifest["metadata"], arrays)


def uff_bytes(package: UffPackage) -> bytes:
    """The package as bytes (deterministic)."""
    buf = io.BytesIO()
    write_uff(package, buf)
    return buf.getvalue()
