"""Parquet I/O for grasp tables (schema in :mod:`dexlite_core.dataset`).

Files are zstd-compressed with page checksums, rows sorted by ``object_id`` (stable: the order within
an object is kept) and partitioned by object: **one row group per object** (an object of more than
``row_group_rows`` grasps spans consecutive groups; a group never holds two objects), so each group's
``object_id`` statistics have min == max and a reader fetches one object's grasps without reading the
rest (:func:`iter_batches` with ``filter_objects`` skips the other groups from their statistics). The
schema metadata (pose names, euler convention, schema version) is kept. Every write is atomic: a temp
file in the same folder, fsync, rename (for an fsspec URL: a local temp file uploaded in one ``put``).
:func:`merge_files` streams object by object (memory ~ the largest object, not the dataset).

Paths may be local paths or fsspec URLs. A corrupt or truncated file raises
:class:`~storage.store.CorruptArtifactError` naming the file.

:func:`read_grasp_table` is the lenient reader of grasp tables from elsewhere (``dexlite evaluate``):
any Parquet file with ``object_id`` and ``q`` (28 floats, fixed- or variable-length list), its pose
convention checked against the DexLite metadata when the file carries it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from dexlite_core.atomic import atomic_path
from dexlite_core.dataset import (
    GRASP_SCHEMA,
    META_EULER,
    META_POSE_NAMES,
    META_SCHEMA_VERSION,
    Q_TYPE,
    SCHEMA_METADATA,
    GraspTableError,
    check_schema,
    concat_tables,
    conform,
    validate_table,
)
from dexlite_core.hand.asset import POSE_DIM, POSE_NAMES, PREFIX, ROOT_NAMES
from storage.store import CorruptArtifactError

PathLike = str | os.PathLike[str]
ROW_GROUP_ROWS = 65_536
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowIOError, pa.ArrowException, OSError, EOFError)


def _fs(path: PathLike) -> tuple[fsspec.AbstractFileSystem | None, str]:
    """(None, local path) for local paths, else (fsspec filesystem, stripped path)."""
    text = os.fspath(path)
    if "://" not in text:
        return None, text
    fs, p = fsspec.core.url_to_fs(text)
    return (None, p) if isinstance(fs, LocalFileSystem) else (fs, p)


def _row_groups(object_ids: pa.ChunkedArray | pa.Array, max_rows: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges, one per run of equal object ids (one per object in a sorted table),
    a run longer than ``max_rows`` split into consecutive ranges of at most ``max_rows``."""
    n = len(object_ids)
    if n == 0:
        return []
    arr = object_ids.combine_chunks() if isinstance(object_ids, pa.ChunkedArray) else object_ids
    codes = arr.dictionary_encode().indices.to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(codes)) + 1]).tolist()
    stops = [*starts[1:], n]
    return [(s, min(s + max_rows, b)) for a, b in zip(starts, stops, strict=True) for s in range(a, b, max_rows)]


def _writer(path: str, schema: pa.Schema, compression_level: int | None) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        path,
        schema,
        compression="zstd",
        compression_level=compression_level,
        write_page_checksum=True,
        write_statistics=True,
    )


@contextlib.contextmanager
def _atomic_target(path: PathLike) -> Iterator[str]:
    """A local temp filename that becomes ``path`` (local or fsspec URL) on success."""
    fs, p = _fs(path)
    if fs is None:
        with atomic_path(p) as tmp:
            yield str(tmp)
        return
    fd, tmp = tempfile.mkstemp(suffix=".parquet", prefix="dexlite-")
    os.close(fd)
    try:
        yield tmp
        parent = p.rsplit("/", 1)[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.put_file(tmp, p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_grasps(
    table: pa.Table,
    path: PathLike,
    *,
    sort: bool = True,
    row_group_rows: int = ROW_GROUP_ROWS,
    compression_level: int | None = None,
) -> PathLike:
    """Validate, sort by object_id (stable) and atomically write a grasp table; return ``path``.

    One row group per object (at most ``row_group_rows`` rows each: a bigger object spans several);
    with ``sort=False`` the row order is kept and each run of one object gets its own group(s).
    Missing optional columns are added as nulls (:func:`dexlite_core.dataset.conform`).
    """
    if row_group_rows < 1:
        raise ValueError("row_group_rows must be >= 1")
    table = validate_table(conform(table))
    if sort and table.num_rows:
        table = table.sort_by("object_id")
    with _atomic_target(path) as tmp:
        writer = _writer(tmp, table.schema, compression_level)
        try:
            for a, b in _row_groups(table.column("object_id"), row_group_rows):
                writer.write_table(table.slice(a, b - a), row_group_size=b - a)
        finally:
            writer.close()
    return path


def _open_error(path: PathLike, e: BaseException) -> CorruptArtifactError:
    return CorruptArtifactError(f"{os.fspath(path)}: corrupt or truncated Parquet file ({e})")


def _require_exists(path: PathLike) -> tuple[fsspec.AbstractFileSystem | None, str]:
    fs, p = _fs(path)
    exists = os.path.exists(p) if fs is None else fs.exists(p)
    if not exists:
        raise FileNotFoundError(f"grasp file not found: {os.fspath(path)}")
    return fs, p


def read_grasps(path: PathLike, columns: Sequence[str] | None = None, validate: bool = True) -> pa.Table:
    """Read a grasp table (all columns unless ``columns``), schema and metadata as written.

    Raises FileNotFoundError, :class:`CorruptArtifactError` (unreadable bytes, bad checksums) or
    :class:`GraspTableError` (readable, but not a valid grasp table), each naming the file.
    """
    fs, p = _require_exists(path)
    try:
        table = pq.read_table(
            p,
            columns=list(columns) if columns is not None else None,
            filesystem=fs,
            page_checksum_verification=True,
        )
    except _ARROW_ERRORS as e:
        raise _open_error(path, e) from e
    if validate:
        try:
            if columns is None:
                validate_table(table)
            else:
                check_schema(table.schema, require_columns=False)
        except GraspTableError as e:
            raise GraspTableError(f"{os.fspath(path)}: {e}") from e
    return table


README_CONVENTION = "q = [t (3), euler sxyz (3), 22 joints in DexGraspNet order]"
_EULER = SCHEMA_METADATA[META_EULER].decode()


def _one_line(e: BaseException | str) -> str:
    return " ".join(str(e).split())


def _grasp_convention_note(name: str, meta: dict[bytes, bytes]) -> str | None:
    """None when the DexLite metadata names DexLite's pose convention, a note when it is absent (the
    README's convention is assumed); raises :class:`GraspTableError` when it names another one."""
    if not any(k.startswith(b"dexlite.") for k in meta):
        return f"{name}: no DexLite metadata; assuming {README_CONVENTION} (README)"
    if META_EULER in meta:
        euler = meta[META_EULER].decode("utf-8", "replace").strip()
        if euler.lower() != _EULER:
            raise GraspTableError(f"{name}: euler convention differs: metadata dexlite.euler is {euler!r}, "
                                  f"DexLite expects {_EULER!r} (static XYZ, R = Rz Ry Rx)")
    if META_POSE_NAMES in meta:
        try:
            names = json.loads(meta[META_POSE_NAMES])
        except (ValueError, UnicodeDecodeError):
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise GraspTableError(f"{name}: metadata dexlite.pose_names is not a JSON list of names")
        names = [n.removeprefix(PREFIX) for n in names]
        if len(names) != POSE_DIM or tuple(names[: len(ROOT_NAMES)]) != ROOT_NAMES:
            raise GraspTableError(
                f"{name}: pose layout differs: metadata dexlite.pose_names has {len(names)} names starting "
                f"{names[: len(ROOT_NAMES)]}, DexLite expects {POSE_DIM}: {list(ROOT_NAMES)} + 22 joints"
            )
        if tuple(names) != POSE_NAMES:
            i = next(i for i, (a, b) in enumerate(zip(names, POSE_NAMES, strict=True)) if a != b)
            raise GraspTableError(
                f"{name}: joint order differs: metadata dexlite.pose_names has {names[i]!r} at q[{i}], "
                f"DexLite expects {POSE_NAMES[i]!r} (DexGraspNet order FFJ3..FFJ0, MFJ3.., RFJ3.., LFJ4.., THJ4..)"
            )
    missing = [k.decode() for k in (META_EULER, META_POSE_NAMES) if k not in meta]
    if missing:
        return f"{name}: DexLite metadata lacks {', '.join(missing)}; assuming {README_CONVENTION} (README)"
    return None


def _row_name(ids: pa.Array, r: int, n_bad: int) -> str:
    more = f"; {n_bad} bad row(s) in all" if n_bad > 1 else ""
    return f"row {r} (object {ids[r].as_py()!r}){more}"


def _normalise_q(name: str, col: pa.ChunkedArray, ids: pa.Array) -> pa.Array:
    """Column ``q`` (fixed- or variable-length list of floats) as fixed_size_list<float32>[28];
    raises :class:`GraspTableError` naming the file and the first row that is not 28 finite numbers."""
    typ = col.type
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)):
        raise GraspTableError(f"{name}: column 'q' has type {typ}, expected a list of {POSE_DIM} floats")
    if not pa.types.is_floating(typ.value_type):
        raise GraspTableError(f"{name}: column 'q' holds {typ.value_type}, expected float32 or float64")
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    n = len(arr)
    if n == 0:
        return pa.FixedSizeListArray.from_arrays(pa.array([], type=pa.float32()), type=Q_TYPE)
    lengths = pc.list_value_length(arr).fill_null(-1).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(lengths != POSE_DIM)
    if bad.size:
        r = int(bad[0])
        what = "q is null" if lengths[r] < 0 else f"q has {int(lengths[r])} value(s), expected {POSE_DIM}"
        raise GraspTableError(f"{name}: {_row_name(ids, r, bad.size)}: {what}")
    q64 = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float64).reshape(n, POSE_DIM)
    with np.errstate(over="ignore", invalid="ignore"):
        q32 = q64.astype(np.float32)
    finite = np.isfinite(q32)
    bad = np.flatnonzero(~finite.all(axis=1))
    if bad.size:
        r = int(bad[0])
        cols = [POSE_NAMES[c] for c in np.flatnonzero(~finite[r])]
        raise GraspTableError(f"{name}: {_row_name(ids, r, bad.size)}: q is not {POSE_DIM} finite numbers "
                              f"(null, NaN, inf or beyond float32 at {cols})")
    return pa.FixedSizeListArray.from_arrays(pa.array(q32.reshape(-1), type=pa.float32()), type=Q_TYPE)


def read_grasp_table(path: PathLike) -> tuple[pa.Table, str | None]:
    """Read a grasp table from any producer: (table, note).

    Accepts any Parquet file with ``object_id`` (string) and ``q`` (28 floats per row: a fixed-size
    or variable-length list of float32 or float64); other columns are kept as they are. The table
    comes back with ``q`` as ``fixed_size_list<float32>[28]``, ``object_id`` as string and DexLite's
    schema metadata. ``note`` is None when the file's DexLite metadata (``dexlite.euler``,
    ``dexlite.pose_names``) names DexLite's convention; without it the README's convention is assumed
    and ``note`` (one line, naming the file) says so.

    Raises FileNotFoundError (no such file) or :class:`GraspTableError` (a ValueError), one line
    naming the file and: a folder or unreadable/non-Parquet bytes; a missing ``object_id``/``q``
    column or one of another type; metadata naming another euler convention, pose layout or joint
    order (the differing field); the first row (0-based) whose object_id is null/empty or whose q is
    not 28 finite numbers (null, wrong length, NaN/inf, beyond float32).
    """
    name = os.fspath(path)
    fs, p = _require_exists(path)
    if os.path.isdir(p) if fs is None else fs.isdir(p):
        raise GraspTableError(f"{name}: is a folder, expected one Parquet file")
    try:
        schema = pq.read_schema(p, filesystem=fs)
    except _ARROW_ERRORS as e:
        raise GraspTableError(f"{name}: not a readable Parquet file ({_one_line(e)})") from e
    missing = [c for c in ("object_id", "q") if c not in schema.names]
    if missing:
        cols = schema.names if len(schema.names) <= 12 else [*schema.names[:12], "..."]
        raise GraspTableError(f"{name}: lacks column(s) {missing} (has {cols})")
    twice = [c for c in ("object_id", "q") if schema.names.count(c) > 1]
    if twice:
        raise GraspTableError(f"{name}: column(s) {twice} appear more than once")
    oid_type = schema.field("object_id").type
    if pa.types.is_dictionary(oid_type):
        oid_type = oid_type.value_type
    if not (pa.types.is_string(oid_type) or pa.types.is_large_string(oid_type)):
        raise GraspTableError(f"{name}: column 'object_id' has type {oid_type}, expected string")
    note = _grasp_convention_note(name, dict(schema.metadata or {}))
    try:
        table = pq.read_table(p, filesystem=fs, page_checksum_verification=True)
    except _ARROW_ERRORS as e:
        raise GraspTableError(f"{name}: not a readable Parquet file ({_one_line(e)})") from e
    ids = table.column("object_id").cast(pa.string()).combine_chunks()
    bad = np.flatnonzero(~pc.fill_null(pc.not_equal(ids, ""), False).to_numpy(zero_copy_only=False))
    if bad.size:
        r = int(bad[0])
        more = f"; {bad.size} bad row(s) in all" if bad.size > 1 else ""
        raise GraspTableError(f"{name}: row {r}{more}: object_id is {'null' if ids[r].as_py() is None else 'empty'}")
    q = _normalise_q(name, table.column("q"), ids)
    table = table.set_column(table.schema.get_field_index("object_id"),
                             pa.field("object_id", pa.string(), nullable=False), ids)
    table = table.set_column(table.schema.get_field_index("q"), pa.field("q", Q_TYPE, nullable=False), q)
    meta = dict(table.schema.metadata or {})
    meta.update({k: v for k, v in SCHEMA_METADATA.items() if k != META_SCHEMA_VERSION})
    meta.setdefault(META_SCHEMA_VERSION, SCHEMA_METADATA[META_SCHEMA_VERSION])
    return table.replace_schema_metadata(meta), note


def read_schema(path: PathLike) -> pa.Schema:
    """The Arrow schema (with metadata) of a Parquet file, reading only its footer."""
    fs, p = _require_exists(path)
    try:
        return pq.read_schema(p, filesystem=fs)
    except _ARROW_ERRORS as e:
        raise _open_error(path, e) from e


def count_rows(path: PathLike) -> int:
    """Row count from the footer (no data read)."""
    fs, p = _require_exists(path)
    try:
        if fs is None:
            return pq.ParquetFile(p).metadata.num_rows
        with fs.open(p, "rb") as f:
            return pq.ParquetFile(f).metadata.num_rows
    except _ARROW_ERRORS as e:
        raise _open_error(path, e) from e


def _parquet_files(source: PathLike) -> tuple[fsspec.AbstractFileSystem | None, list[str]]:
    fs, p = _require_exists(source)
    isdir = os.path.isdir(p) if fs is None else fs.isdir(p)
    if not isdir:
        return fs, [p]
    if fs is None:
        root = Path(p)
        files = [
            str(f)
            for f in sorted(root.rglob("*.parquet"))
            if not any(part.startswith((".", "_")) for part in f.relative_to(root).parts)
        ]
    else:
        base = p.rstrip("/") + "/"
        files = sorted(
            f
            for f in fs.find(p)
            if f.endswith(".parquet") and not any(s.startswith((".", "_")) for s in f[len(base) :].split("/"))
        )
    return fs, files


def iter_batches(
    source: PathLike,
    batch_size: int = ROW_GROUP_ROWS,
    columns: Sequence[str] | None = None,
    filter_objects: Iterable[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream a grasp file, or every ``*.parquet`` under a folder (hidden/``_`` names skipped), as
    record batches of exactly ``batch_size`` rows (the last may be shorter), reading row group by
    row group (never a whole file). ``filter_objects`` keeps only those object ids (row groups of
    other objects are skipped from their statistics). Batches carry the grasp schema metadata.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    fs, files = _parquet_files(source)
    if not files:
        return
    fmt = ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
    )
    try:
        dataset = ds.dataset(files, format=fmt, filesystem=fs)
    except _ARROW_ERRORS as e:
        raise _open_error(source, e) from e
    try:
        check_schema(dataset.schema)
    except GraspTableError as e:
        raise GraspTableError(f"{os.fspath(source)}: {e}") from e
    meta = dataset.schema.metadata
    flt = None
    if filter_objects is not None:
        flt = ds.field("object_id").isin(pa.array(sorted(set(filter_objects)), type=pa.string()))
    scanner = dataset.scanner(
        columns=list(columns) if columns is not None else None,
        filter=flt,
        batch_size=batch_size,
        batch_readahead=2,
        fragment_readahead=1,
    )
    pending: list[pa.RecordBatch] = []
    n_pending = 0
    try:
        for batch in scanner.to_batches():
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            n_pending += batch.num_rows
            while n_pending >= batch_size:
                merged = pa.concat_batches(pending) if len(pending) > 1 else pending[0]
                yield merged.slice(0, batch_size).replace_schema_metadata(meta)
                rest = merged.slice(batch_size)
                pending, n_pending = ([rest] if rest.num_rows else []), rest.num_rows
    except _ARROW_ERRORS as e:
        raise _open_error(source, e) from e
    if n_pending:
        merged = pa.concat_batches(pending) if len(pending) > 1 else pending[0]
        yield merged.replace_schema_metadata(meta)


class _Input:
    """One input file of :func:`merge_files`: its footer, read once, and row-group reads by index."""

    def __init__(self, name: PathLike, fs: fsspec.AbstractFileSystem | None, path: str) -> None:
        self.name, self.fs, self.path = os.fspath(name), fs, path
        try:
            with self._open() as f:
                self.metadata = pq.ParquetFile(f).metadata
            schema = self.metadata.schema.to_arrow_schema()
        except _ARROW_ERRORS as e:
            raise _open_error(name, e) from e
        try:
            check_schema(schema)
        except GraspTableError as e:
            raise GraspTableError(f"{self.name}: {e}") from e
        self.id_column = self.metadata.schema.names.index("object_id")  # a flat column: leaf == field

    def _open(self) -> contextlib.AbstractContextManager[Any]:
        return open(self.path, "rb") if self.fs is None else self.fs.open(self.path, "rb")

    def read(self, group: int, columns: Sequence[str] | None = None) -> pa.Table:
        try:
            with self._open() as f:
                pf = pq.ParquetFile(f, metadata=self.metadata, page_checksum_verification=True)
                return pf.read_row_group(group, columns=list(columns) if columns is not None else None)
        except _ARROW_ERRORS as e:
            raise _open_error(self.name, e) from e

    def objects(self) -> Iterator[tuple[str, int, np.ndarray | None]]:
        """(object_id, row group, rows of that object in the group or None for all), in file order.
        A group whose statistics name one object is not read; any other group's object_id column is."""
        for g in range(self.metadata.num_row_groups):
            rg = self.metadata.row_group(g)
            if rg.num_rows == 0:
                continue
            st = rg.column(self.id_column).statistics
            if st is not None and st.has_min_max and st.min == st.max and (not st.has_null_count or not st.null_count):
                yield (st.min.decode() if isinstance(st.min, bytes) else str(st.min)), g, None
                continue
            ids = pc.fill_null(self.read(g, ["object_id"]).column("object_id").combine_chunks(), "")
            enc = ids.dictionary_encode()
            codes = enc.indices.to_numpy(zero_copy_only=False)
            order = np.argsort(codes, kind="stable")
            bounds = np.flatnonzero(np.diff(codes[order])) + 1
            for rows in np.split(order, bounds):
                oid = enc.dictionary[int(codes[rows[0]])].as_py()
                if not oid:
                    raise GraspTableError(f"{self.name}: row group {g} holds a null or empty object_id")
                yield oid, g, np.sort(rows)


def _merge_sorted(files: list[_Input], writer: pq.ParquetWriter, max_rows: int) -> None:
    """Write the inputs' rows object by object (sorted ids; within an object: input order, then row
    order), each object's rows as their own row group(s). Holds one object's rows at a time, plus the
    input row groups that hold several objects while some of their objects are still to come."""
    where: dict[str, list[tuple[int, int, np.ndarray | None]]] = {}
    last_use: dict[tuple[int, int], str] = {}  # a mixed group -> its last object in merge order
    for i, f in enumerate(files):
        for oid, g, rows in f.objects():
            where.setdefault(oid, []).append((i, g, rows))
            if rows is not None:
                last_use[(i, g)] = max(oid, last_use.get((i, g), oid))
    cache: dict[tuple[int, int], pa.Table] = {}
    for oid in sorted(where):
        parts: list[pa.Table] = []
        for i, g, rows in where[oid]:
            if rows is None:
                part = files[i].read(g)
            else:
                if (i, g) not in cache:
                    cache[(i, g)] = files[i].read(g)
                part = cache[(i, g)].take(pa.array(rows))
                if last_use[(i, g)] == oid:
                    del cache[(i, g)]
            try:
                parts.append(validate_table(conform(part)))
            except GraspTableError as e:
                raise GraspTableError(f"{files[i].name}: object {oid!r}: {e}") from e
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        if table.num_rows and not pc.all(pc.equal(table.column("object_id"), oid)).as_py():
            raise CorruptArtifactError(f"{files[where[oid][0][0]].name}: row group statistics of object {oid!r} "
                                       "do not match its rows")
        for s in range(0, table.num_rows, max_rows):
            chunk = table.slice(s, max_rows)
            writer.write_table(chunk, row_group_size=chunk.num_rows)


def _merge_in_order(inputs: Sequence[PathLike], writer: pq.ParquetWriter, max_rows: int) -> None:
    """Stream the inputs batch by batch in input order; each run of one object becomes its own row
    group(s) of at most ``max_rows`` (a run continuing into the next batch is carried over)."""
    carry: pa.Table | None = None
    for p in inputs:
        for batch in iter_batches(p, batch_size=max_rows):
            try:
                part = validate_table(conform(pa.Table.from_batches([batch])))
            except GraspTableError as e:
                raise GraspTableError(f"{os.fspath(p)}: {e}") from e
            if carry is not None:
                part = pa.concat_tables([carry, part])
            groups = _row_groups(part.column("object_id"), max_rows)
            a, b = groups[-1]
            carry = part.slice(a, b - a) if b - a < max_rows else None  # its object may go on
            for x, y in groups[:-1] if carry is not None else groups:
                writer.write_table(part.slice(x, y - x), row_group_size=y - x)
    if carry is not None and carry.num_rows:
        writer.write_table(carry, row_group_size=carry.num_rows)


def merge_files(
    inputs: Sequence[PathLike],
    out: PathLike,
    *,
    sort: bool = True,
    batch_size: int = ROW_GROUP_ROWS,
    compression_level: int | None = None,
) -> PathLike:
    """Merge grasp files (e.g. the shards of a stage; a folder input means its ``*.parquet`` files)
    into one file at ``out``, atomically, streaming: never the whole dataset in memory.

    ``sort=True``: rows sorted by object_id (within an object: input order, then file order), one
    row group per object (of at most ``batch_size`` rows), exactly as :func:`write_grasps` writes the
    concatenation; memory ~ the largest object (inputs written by :func:`write_grasps` are located from
    their row-group statistics; groups holding several objects are read once and kept until their last
    object is written). ``sort=False``: input order, batch by batch, each run of one object its own
    row group(s) of at most ``batch_size`` rows.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    files: list[_Input] = []
    if sort:
        for p in inputs:
            fs, paths = _parquet_files(p)
            is_file = paths == [_fs(p)[1]]
            files += [_Input(p if is_file else q, fs, q) for q in paths]
    with _atomic_target(out) as tmp:
        writer = _writer(tmp, GRASP_SCHEMA, compression_level)
        try:
            if sort:
                _merge_sorted(files, writer, batch_size)
            else:
                _merge_in_order(inputs, writer, batch_size)
        finally:
            writer.close()
    return out


def append_grasps(path: PathLike, table: pa.Table, **write_kwargs: Any) -> PathLike:
    """Append rows to a grasp file (rewritten atomically: Parquet has no in-place append); creates
    the file when absent. For many appends prefer part files in a folder read by :func:`iter_batches`."""
    fs, p = _fs(path)
    exists = os.path.exists(p) if fs is None else fs.exists(p)
    merged = concat_tables([read_grasps(path), table]) if exists else table
    return write_grasps(merged, path, **write_kwargs)
