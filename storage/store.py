"""Content-addressed stage artifacts: one store interface, a local and an fsspec implementation.

Layout under an artifact root (a local folder, or any fsspec URL: ``memory://``, ``file://``, ``s3://``):

```
<root>/<stage>/<key>/            key = content_key(input hashes, stage config, code version)
    ... the stage's files ...
    manifest.json                stage, key, inputs, config, code_version, created, files {sha256, size}
    _SUCCESS                     written last: a folder without it is incomplete and never listed
<root>/<stage>/.tmp-<key>-<uuid>/   a stage being written (local roots); renamed into place on success
<root>/<stage>/.work-<key>/         scratch of a resumable stage (local roots): survives a killed run
```

:class:`LocalStore` commits by ``os.rename`` of the finished temp folder (atomic). Object stores have
no rename: :class:`FsspecStore` builds a stage in a local staging folder, uploads it file by file into
``<stage>/<key>/``, then ``manifest.json`` and finally ``_SUCCESS``. Everything else (manifests,
verification, listing, cleaning) lives once in :class:`ArtifactStore`; the subclasses only provide the
few primitives where a local folder and an object store really differ.

Typical use::

    store = open_store("runs/x/artifacts")            # or "s3://bucket/x", "memory://x"
    key = content_key({"objects": objects_hash}, cfg.digest("energy"), code)
    if not store.is_complete("raw", key):
        with store.open_stage("raw", key, inputs=..., config=..., code=code) as w:
            write_grasps(table, w.file("grasps.parquet"))   # w.path is a local folder
    table = read_grasps(store.local_path("raw", key) / "grasps.parquet")
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from dexlite_core.atomic import atomic_write_bytes, atomic_write_text, fsync_dir, json_default
from storage.hashing import _CHUNK, canonical_json, hash_file

SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
WORK_PREFIX = ".work-"
MANIFEST_FORMAT = "dexlite.manifest/1"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=-]*$")


class ArtifactError(RuntimeError):
    """An artifact cannot be used (missing, incomplete, corrupt)."""


class IncompleteArtifactError(ArtifactError):
    """The stage folder has no ``_SUCCESS`` marker: it was never committed."""


class CorruptArtifactError(ArtifactError):
    """A file's bytes do not match its manifest or cannot be parsed; the message names the file."""


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=json_default, ensure_ascii=False) + "\n"


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name.startswith(TMP_PREFIX):
        raise ValueError(f"invalid {kind} name {name!r}: use letters, digits, '_', '-', '.', '='")
    return name


def _check(stage: str, key: str) -> tuple[str, str]:
    return _check_name("stage", stage), _check_name("key", key)


def _check_relpath(relpath: str) -> str:
    parts = Path(relpath).parts
    if not parts or Path(relpath).is_absolute() or ".." in parts:
        raise ValueError(f"stage file path must be relative and inside the stage: {relpath!r}")
    if len(parts) == 1 and parts[0] in (SUCCESS, MANIFEST):
        raise ValueError(f"{relpath!r} is reserved for the store")
    return relpath


@dataclasses.dataclass
class StageWriter:
    """An open stage: write files under :attr:`path` (a local folder); committed by the store."""

    stage: str
    key: str
    path: Path
    final: Path | str | None = None  # set once committed: the stage folder (local Path or URL)

    def file(self, relpath: str) -> Path:
        """Local path for ``relpath`` inside the stage (parent folders created)."""
        p = self.path / _check_relpath(relpath)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_bytes(self, relpath: str, data: bytes | bytearray | memoryview) -> Path:
        p = self.file(relpath)
        p.write_bytes(data)
        return p

    def write_text(self, relpath: str, text: str) -> Path:
        return self.write_bytes(relpath, text.encode())

    def write_json(self, relpath: str, obj: Any) -> Path:
        return self.write_text(relpath, _dumps(obj))

    def put(self, src: str | os.PathLike[str], relpath: str) -> Path:
        """Copy a local file into the stage."""
        p = self.file(relpath)
        shutil.copyfile(src, p)
        return p


def _local_files(folder: Path) -> dict[str, Path]:
    """Relative posix path -> file, for every file under ``folder`` except the store's own."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() or p.is_symlink():
            rel = p.relative_to(folder).as_posix()
            if rel not in (SUCCESS, MANIFEST):
                out[rel] = p
    return out


def _describe(files: Mapping[str, Path], sync: bool) -> dict[str, dict[str, Any]]:
    """Manifest ``files`` table; hashes (and, for a local commit, fsyncs) each file in one pass."""
    out = {}
    for rel, p in files.items():
        if p.is_symlink() or not p.is_file():
            raise ArtifactError(f"stage file {p} is a link or not a regular file; copy it in instead")
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda f=f: f.read(_CHUNK), b""):
                h.update(chunk)
            if sync:
                os.fsync(f.fileno())
        out[rel] = {"sha256": h.hexdigest(), "size": p.stat().st_size}
    return out


class ArtifactStore(abc.ABC):
    """Content-addressed stage outputs (see module doc). Get one with :func:`open_store`.

    Subclasses implement the ``_``-prefixed primitives over paths relative to the root (``parts``:
    stage, then key or a temp folder's name, then a file's relative path), plus :meth:`work_dir`.
    """

    url: str
    _fsync_files: ClassVar[bool] = False  # fsync each file while hashing it (local commits only)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # ------------------------------------------------------------------ primitives (per backend)
    @abc.abstractmethod
    def _location(self, *parts: str) -> Path | str:
        """The user-facing location of ``parts``: a local Path or a URL."""

    @abc.abstractmethod
    def _isfile(self, *parts: str) -> bool: ...

    @abc.abstractmethod
    def _children(self, *parts: str) -> list[str]:
        """Names of the sub-folders of ``parts`` (empty when it does not exist)."""

    @abc.abstractmethod
    def _files(self, stage: str, key: str) -> dict[str, int]:
        """Relative path -> size of every file of a stage folder, manifest and marker excluded."""

    @abc.abstractmethod
    def _open(self, *parts: str, mode: str = "rb") -> IO[Any]: ...

    @abc.abstractmethod
    def _hash(self, *parts: str) -> str: ...

    @abc.abstractmethod
    def _mtime(self, *parts: str) -> float: ...

    @abc.abstractmethod
    def _delete(self, *parts: str) -> None:
        """Delete a folder recursively (no error if absent)."""

    @abc.abstractmethod
    def _new_tmp(self, stage: str, key: str) -> Path:
        """A fresh local folder for :meth:`open_stage` to write into."""

    @abc.abstractmethod
    def _commit(self, w: StageWriter, manifest: dict[str, Any], overwrite: bool) -> None:
        """Publish the finished ``w.path`` as ``<stage>/<key>`` (``_SUCCESS`` last); set ``w.final``."""

    @abc.abstractmethod
    def _local_copy(self, stage: str, key: str) -> Path:
        """A local folder holding the committed (stage, key); see :meth:`local_path`."""

    @abc.abstractmethod
    def work_dir(self, stage: str, key: str) -> Path | None:
        """Persistent scratch folder of a resumable stage (checkpoints survive a killed run), or None
        where the store has no durable local disk (object stores: the stage restarts from scratch)."""

    # ------------------------------------------------------------------------------------ state
    def stage_dir(self, stage: str, key: str) -> Path | str:
        """The committed folder of (stage, key): a ``Path`` for local roots, else a URL string."""
        return self._location(*_check(stage, key))

    def is_complete(self, stage: str, key: str) -> bool:
        """True only for a committed folder (``_SUCCESS`` present); temp folders never count."""
        return self._isfile(*_check(stage, key), SUCCESS)

    def _require(self, stage: str, key: str) -> None:
        if not self.is_complete(stage, key):
            where = self.stage_dir(stage, key)
            raise IncompleteArtifactError(f"{where}: no {SUCCESS} marker (never committed)")

    def manifest(self, stage: str, key: str) -> dict[str, Any]:
        """The parsed ``manifest.json`` of a committed stage."""
        self._require(stage, key)
        where = f"{self.stage_dir(stage, key)}/{MANIFEST}"
        try:
            data = json.loads(self.read_bytes(stage, key, MANIFEST))
        except (OSError, ValueError) as e:
            raise CorruptArtifactError(f"{where}: unreadable manifest ({e})") from e
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise CorruptArtifactError(f"{where}: manifest has no 'files' table")
        return data

    def problems(self, stage: str, key: str) -> list[str]:
        """Every mismatch between the stage's files and its manifest (empty when intact)."""
        man = self.manifest(stage, key)
        found = self._files(stage, key)
        out = []
        for rel, want in sorted(man["files"].items()):
            if rel not in found:
                out.append(f"{rel}: missing")
            elif found[rel] != want.get("size"):
                out.append(f"{rel}: size {found[rel]} != manifest {want.get('size')} (truncated or modified)")
            elif self._hash(stage, key, rel) != want.get("sha256"):
                out.append(f"{rel}: sha256 differs from the manifest (modified or corrupt)")
        out += [f"{rel}: not in the manifest" for rel in sorted(set(found) - set(man["files"]))]
        return out

    def verify(self, stage: str, key: str) -> dict[str, Any]:
        """Re-hash every file against the manifest; return the manifest or raise
        :class:`CorruptArtifactError` listing each bad file."""
        bad = self.problems(stage, key)
        if bad:
            raise CorruptArtifactError(f"{self.stage_dir(stage, key)}: " + "; ".join(bad))
        return self.manifest(stage, key)

    def stages(self) -> list[str]:
        """Stage folders present under the root."""
        return sorted(n for n in self._children() if not n.startswith("."))

    def list_keys(self, stage: str) -> list[str]:
        """Keys of the committed outputs of ``stage`` (temp and incomplete folders excluded)."""
        names = self._children(_check_name("stage", stage))
        return sorted(n for n in names if not n.startswith(".") and self.is_complete(stage, n))

    def remove(self, stage: str, key: str) -> None:
        """Delete a stage output (complete or not)."""
        self._delete(*_check(stage, key))

    def clean_incomplete(self, min_age_s: float = 0.0) -> list[str]:
        """Delete temp folders and uncommitted key folders older than ``min_age_s`` seconds; return
        what was removed. With the default 0 run it only while no stage is being written."""
        removed = []
        now = time.time()
        for stage in self.stages():
            for name in self._children(stage):
                stale = not name.startswith(".") and not self.is_complete(stage, name)
                if not (name.startswith(TMP_PREFIX) or stale):
                    continue
                if min_age_s > 0 and now - self._mtime(stage, name) < min_age_s:
                    continue
                self._delete(stage, name)
                removed.append(str(self._location(stage, name)))
        return removed

    # ---------------------------------------------------------------------------------- reading
    def open_file(self, stage: str, key: str, relpath: str, mode: str = "rb") -> IO[Any]:
        """Open a file of a stage output for reading."""
        return self._open(*_check(stage, key), relpath, mode=mode)

    def read_bytes(self, stage: str, key: str, relpath: str) -> bytes:
        with self.open_file(stage, key, relpath) as f:
            return f.read()

    def read_json(self, stage: str, key: str, relpath: str) -> Any:
        try:
            return json.loads(self.read_bytes(stage, key, relpath))
        except ValueError as e:
            raise CorruptArtifactError(f"{self.stage_dir(stage, key)}/{relpath}: invalid JSON ({e})") from e

    def local_path(self, stage: str, key: str) -> Path:
        """A local folder holding the committed artifact, for code that needs real files (Parquet,
        ``np.load``, torch): the folder itself for a local store, a once-downloaded cached copy
        otherwise. Raises :class:`IncompleteArtifactError` when (stage, key) is not committed."""
        self._require(stage, key)
        return self._local_copy(stage, key)

    # ---------------------------------------------------------------------------------- writing
    @contextlib.contextmanager
    def open_stage(
        self,
        stage: str,
        key: str,
        *,
        inputs: Mapping[str, str] | Sequence[str] | None = None,
        config: Any = None,
        code: str | None = None,
        overwrite: bool = False,
    ) -> Iterator[StageWriter]:
        """Write a stage output atomically; commit (manifest, ``_SUCCESS``) on success, delete the temp
        folder on exception. ``writer.final`` is the committed folder afterwards.

        ``key`` is required: the store does not know the code version, so the caller computes it
        (:func:`storage.hashing.content_key`); ``inputs``, ``config`` and ``code`` are only recorded in
        the manifest. If another writer commits the same key first, its output is kept (same key,
        same content) unless ``overwrite``.
        """
        if isinstance(inputs, str):
            raise TypeError("inputs must be a mapping or a sequence of hashes, not a single string")
        _check(stage, key)
        tmp = self._new_tmp(stage, key)
        writer = StageWriter(stage, key, tmp)
        try:
            yield writer
            manifest = {
                "format": MANIFEST_FORMAT,
                "stage": stage,
                "key": key,
                "inputs": dict(inputs) if isinstance(inputs, Mapping) else list(inputs or []),
                "config": config,
                "code_version": code,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "files": _describe(_local_files(tmp), sync=self._fsync_files),
            }
            self._commit(writer, manifest, overwrite)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    list = list_keys  # the brief's name; defined last so it does not shadow `list` in annotations


class LocalStore(ArtifactStore):
    """Artifacts in a local folder; commits are an atomic ``os.rename`` of the finished temp folder."""

    _fsync_files = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.url = str(self.root)

    def _location(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def _isfile(self, *parts: str) -> bool:
        return self._location(*parts).is_file()

    def _children(self, *parts: str) -> list[str]:
        p = self._location(*parts)
        return sorted(c.name for c in p.iterdir() if c.is_dir()) if p.is_dir() else []

    def _files(self, stage: str, key: str) -> dict[str, int]:
        return {rel: p.stat().st_size for rel, p in _local_files(self._location(stage, key)).items()}

    def _open(self, *parts: str, mode: str = "rb") -> IO[Any]:
        return open(self._location(*parts), mode)  # noqa: SIM115

    def _hash(self, *parts: str) -> str:
        return hash_file(self._location(*parts))

    def _mtime(self, *parts: str) -> float:
        return os.stat(self._location(*parts)).st_mtime

    def _delete(self, *parts: str) -> None:
        shutil.rmtree(self._location(*parts), ignore_errors=True)

    def _new_tmp(self, stage: str, key: str) -> Path:
        tmp = self._location(stage, f"{TMP_PREFIX}{key}-{uuid.uuid4().hex[:12]}")
        tmp.mkdir(parents=True)
        return tmp

    def _commit(self, w: StageWriter, manifest: dict[str, Any], overwrite: bool) -> None:
        final = self._location(w.stage, w.key)
        atomic_write_bytes(w.path / MANIFEST, _dumps(manifest).encode())
        atomic_write_text(w.path / SUCCESS, canonical_json({"key": w.key, "created": manifest["created"]}))
        fsync_dir(w.path)
        w.final = final
        if final.exists() and (overwrite or not (final / SUCCESS).is_file()):
            trash = final.parent / f"{TMP_PREFIX}{w.key}-trash-{uuid.uuid4().hex[:12]}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(w.path, final)
        except OSError:
            if not (final / SUCCESS).is_file():  # not a lost race: a real failure
                raise
            return  # another writer committed the same key first: keep theirs
        fsync_dir(final.parent)

    def _local_copy(self, stage: str, key: str) -> Path:
        return self._location(stage, key)

    def work_dir(self, stage: str, key: str) -> Path:
        stage, key = _check(stage, key)
        return self._location(stage, f"{WORK_PREFIX}{key}")


class FsspecStore(ArtifactStore):
    """Artifacts under any fsspec URL (``s3://``, ``gs://``, ``memory://``, ...). No rename: a commit
    uploads the files, then the manifest, then ``_SUCCESS``. :meth:`local_path` downloads once into
    ``cache_dir`` (default ``$DEXLITE_CACHE``, else ``<tempdir>/dexlite-cache``)."""

    def __init__(
        self, root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, **storage_options: Any
    ) -> None:
        fs, path = fsspec.core.url_to_fs(os.fspath(root), **storage_options)
        self.fs: fsspec.AbstractFileSystem = fs
        self._root = path.rstrip("/") or "/"
        self.url = fs.unstrip_protocol(self._root)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None

    @property
    def cache_dir(self) -> Path:
        """Where :meth:`local_path` keeps downloaded artifacts (``<cache>/<stage>/<key>/``)."""
        if self._cache_dir is not None:
            return self._cache_dir
        return Path(os.environ.get("DEXLITE_CACHE", Path(tempfile.gettempdir()) / "dexlite-cache"))

    def _p(self, *parts: str) -> str:
        return "/".join([self._root.rstrip("/"), *parts]) if parts else self._root

    def _location(self, *parts: str) -> str:
        return self.fs.unstrip_protocol(self._p(*parts))

    def _isfile(self, *parts: str) -> bool:
        return self.fs.isfile(self._p(*parts))

    def _children(self, *parts: str) -> list[str]:
        path = self._p(*parts)
        if not self.fs.isdir(path):
            return []
        entries = self.fs.ls(path, detail=True)
        return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory")

    def _files(self, stage: str, key: str) -> dict[str, int]:
        base = self._p(stage, key)
        prefix = self.fs._strip_protocol(base).rstrip("/") + "/"
        out = {}
        for name, info in self.fs.find(base, detail=True).items():
            rel = name[len(prefix) :] if name.startswith(prefix) else name.split(f"/{key}/", 1)[-1]
            if info.get("type") == "file" and rel not in (SUCCESS, MANIFEST):
                out[rel] = int(info.get("size") or 0)
        return out

    def _open(self, *parts: str, mode: str = "rb") -> IO[Any]:
        return self.fs.open(self._p(*parts), mode)

    def _hash(self, *parts: str) -> str:
        return hash_file(self._p(*parts), fs=self.fs)

    def _mtime(self, *parts: str) -> float:
        try:
            m = self.fs.modified(self._p(*parts))
            return m.timestamp() if hasattr(m, "timestamp") else 0.0
        except (NotImplementedError, OSError, ValueError, KeyError):
            return 0.0  # unknown age: treated as old

    def _delete(self, *parts: str) -> None:
        path = self._p(*parts)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def _new_tmp(self, stage: str, key: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"dexlite-{stage}-{key}-"))

    def _commit(self, w: StageWriter, manifest: dict[str, Any], overwrite: bool) -> None:
        final = self._p(w.stage, w.key)
        w.final = self._location(w.stage, w.key)
        if self.fs.exists(final):
            if self.fs.isfile(f"{final}/{SUCCESS}") and not overwrite:
                return
            self.fs.rm(final, recursive=True)
        for rel, p in _local_files(w.path).items():
            self.fs.makedirs(os.path.dirname(f"{final}/{rel}"), exist_ok=True)
            self.fs.put_file(str(p), f"{final}/{rel}")
        self.fs.pipe_file(f"{final}/{MANIFEST}", _dumps(manifest).encode())
        self.fs.pipe_file(f"{final}/{SUCCESS}", canonical_json({"key": w.key}).encode())

    def _local_copy(self, stage: str, key: str) -> Path:
        """Download into a temp folder next to the cache entry, then ``os.replace`` it into place, so a
        cached copy with ``_SUCCESS`` is always whole; concurrent downloaders keep the first one."""
        dest = self.cache_dir / stage / key
        if (dest / SUCCESS).is_file():
            return dest
        tmp = dest.parent / f"{TMP_PREFIX}{key}-{uuid.uuid4().hex[:12]}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.fs.get(self._p(stage, key) + "/", str(tmp), recursive=True)
            if not (tmp / SUCCESS).is_file():
                raise IncompleteArtifactError(f"{self._location(stage, key)}: download has no {SUCCESS} marker")
            if not (dest / SUCCESS).is_file():
                shutil.rmtree(dest, ignore_errors=True)  # a remnant without a marker
                with contextlib.suppress(OSError):  # lost a race: another process's copy is in place
                    os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / SUCCESS).is_file():
            raise ArtifactError(f"could not cache {self._location(stage, key)} in {dest}")
        return dest

    def work_dir(self, stage: str, key: str) -> None:
        _check(stage, key)
        return None


def open_store(root: str | os.PathLike[str], **storage_options: Any) -> ArtifactStore:
    """The store for ``root``: :class:`LocalStore` for a local path or ``file://`` URL (atomic renames),
    :class:`FsspecStore` for any other fsspec URL (``storage_options`` go to its filesystem)."""
    text = os.fspath(root)
    if "://" not in text and "::" not in text:
        return LocalStore(text)
    fs, path = fsspec.core.url_to_fs(text, **storage_options)
    if isinstance(fs, LocalFileSystem):
        return LocalStore(path)
    return FsspecStore(text, **storage_options)
