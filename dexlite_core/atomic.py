"""Atomic single-file writes: a reader sees the old file or the complete new one, never a partial one.

Each write goes to a temp file in the target's folder (same filesystem, so the final ``os.replace`` is
atomic), is fsynced, renamed onto the target, and the folder is fsynced so the rename survives a crash.
Plain Python on purpose: core modules use it without pulling in :mod:`storage` (fsspec) or Prefect.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike[str]


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook: dataclasses, paths, sets (sorted), bytes (hex), numpy scalars and
    arrays (``tolist``). Shared by every JSON the project writes or hashes, so they agree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} as JSON")


def fsync_dir(path: PathLike) -> None:
    """fsync a directory so a rename inside it is durable (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path in ``path``'s folder (same suffix); on success fsync + ``os.replace`` it onto
    ``path``, on exception delete it. For writers that want a filename (np.save, torch.save, ...)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    tmp = target.parent / f".{stem}.tmp-{uuid.uuid4().hex[:12]}{suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic write of {target}: the writer created nothing at {tmp}")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: PathLike, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (sorted keys, see :func:`json_default`) to ``path`` atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=True, default=json_default, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")
