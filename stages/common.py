"""What every stage module shares: reading upstream artifacts, writing JSON atomically, merging shard
grasp files, the torch device. I/O only; the stages' domain logic lives in ``dexlite_core``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dag.keys import ITEMS_FILE
from dag.spec import Inputs
from dexlite_core.atomic import atomic_write_json
from dexlite_core.config import PipelineConfig

log = logging.getLogger("dexlite.stages")
GRASPS = "grasps.parquet"
META = "meta.json"  # an object folder's metadata (docs/CONTRACTS.md)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_json(path, obj)


def read_json(path: Path) -> Any:
    """A JSON file of an upstream artifact; errors name the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (upstream artifact incomplete?)") from None
    except ValueError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from e


def objects_root(inputs: Inputs) -> Path:
    """The folder of object folders of the ``objects`` artifact."""
    return inputs["objects"] / "objects"


def object_ids(inputs: Inputs) -> list[str]:
    return [o["object_id"] for o in read_json(inputs["objects"] / "objects.json")["objects"]]


def object_digests(inputs: Inputs, ids: Sequence[str]) -> list[str]:
    """Content digest of each object folder: from the ``objects`` artifact's manifest (its file
    hashes, nothing re-read), or by hashing the files of a folder without one (a direct call).
    ``meta.json`` is left out: it holds the ingest's wall times, and everything else in it follows
    from the geometry files (an object re-ingested elsewhere keys its downstream work the same)."""
    from storage.hashing import hash_file, hash_json

    manifest = inputs["objects"] / "manifest.json"
    files: dict[str, dict[str, str]] = {}
    if manifest.is_file():
        for rel, f in read_json(manifest)["files"].items():
            top, oid, *rest = rel.split("/") + ["", ""]
            if top == "objects" and rest[0] and rest[0] != META:
                files.setdefault(oid, {})[rel] = f["sha256"]
    out = []
    for oid in ids:
        if oid not in files:
            folder = objects_root(inputs) / oid
            files[oid] = {str(f.relative_to(folder.parent.parent)): hash_file(f)
                          for f in sorted(folder.rglob("*")) if f.is_file() and f.relative_to(folder) != Path(META)}
        out.append(hash_json(files[oid]))
    return out


def item_keys_in(inputs: Inputs, stage: str) -> dict[str, str]:
    """Item -> item key of an upstream per-item stage's artifact (its ``items.json``; empty without)."""
    path = inputs[stage] / ITEMS_FILE
    return read_json(path) if path.is_file() else {}


def kept_ids(inputs: Inputs) -> list[str]:
    return list(read_json(inputs["stability"] / "kept.json"))


def setup_torch(cfg: PipelineConfig, alone: bool = False) -> Any:
    """Bound torch's threads to this task's share of the cores (`alone`: a stage that is one task, not
    a shard among ``dag.workers``, gets every core, or ``dag.torch_threads``); the configured device."""
    import os

    import torch

    from dexlite_core.device import resolve_device

    torch.set_num_threads((cfg.dag.torch_threads or os.cpu_count() or 1) if alone else cfg.dag.threads_per_task())
    return resolve_device(cfg.dag.device)


def merge_grasps(dirs: Sequence[Path], out: Path) -> int:
    """Merge the shards' grasp files into ``out`` (an empty table when none); returns the row count."""
    from dexlite_core.dataset import empty_table
    from storage.parquet import count_rows, merge_files, write_grasps

    files = [d / GRASPS for d in dirs if (d / GRASPS).is_file()]
    if files:
        merge_files(files, out)
    else:
        write_grasps(empty_table(), out)
    return count_rows(out)


def objects_in(path: Path) -> list[str]:
    """Object ids present in a grasp file (sorted)."""
    import pyarrow.compute as pc

    from storage.parquet import read_grasps

    t = read_grasps(path, columns=["object_id"], validate=False)
    return sorted(pc.unique(t.column("object_id")).to_pylist())


def read_for(path: Path, object_ids: Sequence[str]) -> Any:
    """Rows of a grasp file for the given objects (one table)."""
    import pyarrow as pa

    from dexlite_core.dataset import empty_table
    from storage.parquet import iter_batches

    batches = list(iter_batches(path, filter_objects=object_ids))
    return pa.Table.from_batches(batches) if batches else empty_table()
