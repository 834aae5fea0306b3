"""Stage ``objects``: ingest the selected meshes (bundled subset + extra meshes) into object folders.

Artifact: ``objects/<object_id>/`` (docs/CONTRACTS.md), ``objects.json`` (ingested, failed).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dag.runner import run_serial
from dag.spec import Inputs, Shards, StageSpec
from dexlite_core.config import PipelineConfig
from stages.common import log, read_json, write_json


def mesh_inputs(cfg: PipelineConfig) -> dict[str, str]:
    """Content hashes of the mesh files the selection reads, by item name: a bundled mesh's key does
    not depend on where its package is installed (keyed by path, a run from another venv recomputed
    every stage)."""
    from dexlite_core.objects.select import select_sources
    from storage.hashing import hash_file

    sources = select_sources(cfg.select, cfg.objects)  # keyed like items(): one per scale
    return {name: hash_file(s.path) for name, s in sources.items() if s.path is not None}


def items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    from dexlite_core.objects.select import select_sources

    return list(select_sources(cfg.select, cfg.objects))


def item_inputs(inputs: Inputs, cfg: PipelineConfig, items: list[str]) -> list[str]:
    """A source's ingest reads its mesh file (a generated shape: nothing but its name and the code)."""
    hashes = mesh_inputs(cfg)
    return [hashes.get(i, "") for i in items]


def shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, part: list[str]) -> dict:
    from dexlite_core.objects import ingest_many
    from dexlite_core.objects.select import ingest_rows, select_sources

    sources = select_sources(cfg.select, cfg.objects)
    chosen = [sources[i] for i in part]
    root = out_dir / "objects"
    root.mkdir(parents=True, exist_ok=True)
    rows = ingest_rows(chosen, ingest_many(chosen, root, cfg.objects, workers=1)) if chosen else []
    for row in rows:
        log.info("objects: %s %s", "ok    " if row["ok"] else "FAILED",
                 row["object_id"] if row["ok"] else f"{row['source']}: {row['error']}")
    write_json(out_dir / "ingest.json", rows)
    return {"n": len(rows), "ok": sum(r["ok"] for r in rows)}


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link an immutable committed file (a thousand objects' SDFs are not copied); copy across
    file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    objs, failed = [], []
    dest = out_dir / "objects"
    dest.mkdir(parents=True, exist_ok=True)
    for d in dirs:
        for row in read_json(d / "ingest.json"):
            if not row["ok"]:
                failed.append({"name": row["name"], "source": row["source"], "error": row["error"]})
                continue
            src = d / "objects" / row["object_id"]
            if not (src / "_SUCCESS").is_file():
                raise FileNotFoundError(f"{src}: ingest reported ok but the folder is incomplete")
            if not (dest / row["object_id"]).exists():
                shutil.copytree(src, dest / row["object_id"], copy_function=_link_or_copy)
            objs.append({"object_id": row["object_id"], "name": row["name"], "source": row["source"]})
    if not objs:
        reasons = "; ".join(f"{f['source']}: {f['error']}" for f in failed) or "no objects selected"
        raise RuntimeError(f"stage objects: no object ingested ({reasons})")
    objs.sort(key=lambda o: o["object_id"])
    write_json(out_dir / "objects.json", {"objects": objs, "failed": failed})
    return {"objects": len(objs), "failed": len(failed)}


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """The stage in this process: its shards in series, then the merge."""
    return run_serial(SPEC, inputs, out_dir, cfg, cfg.dag.shard_size)


SPEC = StageSpec(
    "objects", run, deps=(), config=("objects", "select"),
    shards=Shards(items, shard, merge, item_inputs, item_config=("objects",)),  # not "select": adding objects
    extra_inputs=mesh_inputs, description="ingest meshes: normalise, point cloud, SDF, convex parts",
)
