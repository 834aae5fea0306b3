"""Content hashes and content keys (sha256 everywhere).

An artifact's key is the hash of what produced it: its inputs' content hashes, its config (or the
config's digest) and a code version, so equal keys mean equal outputs and a cache hit is safe.
JSON is hashed in a canonical form (sorted keys, no spaces) so dict order never changes a hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dexlite_core.atomic import json_default

if TYPE_CHECKING:
    import fsspec

KEY_LENGTH = 20
_CHUNK = 1 << 20


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def hash_file(path: str | os.PathLike[str], fs: fsspec.AbstractFileSystem | None = None) -> str:
    """sha256 hex digest of a file, streamed in 1 MiB chunks (local path, or a path on ``fs``)."""
    h = hashlib.sha256()
    opener = fs.open(str(path), "rb") if fs is not None else open(path, "rb")  # noqa: SIM115
    with opener as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text (sorted keys, no spaces); numpy, paths, sets, dataclasses allowed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default)


def hash_json(obj: Any) -> str:
    """sha256 hex digest of :func:`canonical_json` of ``obj`` (dict key order never matters)."""
    return hash_bytes(canonical_json(obj).encode())


def content_key(
    inputs: Mapping[str, str] | Sequence[str] | None,
    config: Any,
    code: str,
    length: int = KEY_LENGTH,
) -> str:
    """Key of a stage output: hash of (input content hashes, config or its digest, code version).

    ``inputs`` as a mapping name -> hash (order irrelevant) or a sequence of hashes (order matters).
    """
    if inputs is None:
        norm: Any = []
    elif isinstance(inputs, Mapping):
        norm = {str(k): str(v) for k, v in inputs.items()}
    elif isinstance(inputs, str):
        raise TypeError("inputs must be a mapping or a sequence of hashes, not a single string")
    else:
        norm = [str(v) for v in inputs]
    return hash_json({"inputs": norm, "config": config, "code": code})[:length]
