"""Artifact stores, content hashes, atomic writes and Parquet I/O (see docs/CONTRACTS.md).

- :mod:`storage.store`: :func:`open_store` -> :class:`ArtifactStore` (content-addressed stage folders),
  implemented by :class:`LocalStore` (a folder, atomic renames) and :class:`FsspecStore` (any fsspec
  URL); :class:`StageWriter`; the ``*ArtifactError`` errors.
- :mod:`storage.hashing`: ``hash_bytes``, ``hash_file``, ``canonical_json``, ``hash_json``, ``content_key``.
- :mod:`dexlite_core.atomic` (re-exported here): ``atomic_path``, ``atomic_write_bytes|text|json``.
- :mod:`storage.parquet`: grasp-table Parquet files (``write_grasps``, ``read_grasps``, ``iter_batches``,
  ``concat_tables``, ``merge_files``, ``append_grasps``).
- :mod:`storage.dexgraspnet`: DexGraspNet ``.npy`` importer.
"""

from dexlite_core.atomic import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from storage.hashing import canonical_json, content_key, hash_bytes, hash_file, hash_json
from storage.store import (
    ArtifactError,
    ArtifactStore,
    CorruptArtifactError,
    FsspecStore,
    IncompleteArtifactError,
    LocalStore,
    StageWriter,
    open_store,
)

__all__ = [
    "ArtifactError",
    "ArtifactStore",
    "CorruptArtifactError",
    "FsspecStore",
    "IncompleteArtifactError",
    "LocalStore",
    "StageWriter",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "canonical_json",
    "content_key",
    "hash_bytes",
    "hash_file",
    "hash_json",
    "open_store",
]
