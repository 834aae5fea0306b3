"""Artifact paths, content hashes, atomic writes and Parquet I/O (see docs/CONTRACTS.md).

- :mod:`storage.artifacts`: :class:`ArtifactStore` (content-addressed stage folders, local or fsspec),
  ``hash_*``, ``content_key``, ``code_version``, ``atomic_write_*`` / ``atomic_path``.
- :mod:`storage.parquet`: grasp-table Parquet files (``write_grasps``, ``read_grasps``, ``iter_batches``,
  ``concat_tables``, ``merge_files``, ``append_grasps``).
- :mod:`storage.dexgraspnet`: DexGraspNet ``.npy`` importer.
"""

from storage.artifacts import (
    ArtifactError,
    ArtifactStore,
    CorruptArtifactError,
    IncompleteArtifactError,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    code_version,
    content_key,
    hash_bytes,
    hash_file,
    hash_json,
)

__all__ = [
    "ArtifactError",
    "ArtifactStore",
    "CorruptArtifactError",
    "IncompleteArtifactError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "code_version",
    "content_key",
    "hash_bytes",
    "hash_file",
    "hash_json",
]
