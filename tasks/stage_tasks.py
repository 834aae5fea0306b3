"""Thin Prefect tasks over the stages (:mod:`stages.table`).

Each task commits one artifact in the run's :class:`storage.ArtifactStore` and returns a small
JSON manifest pointer (stage, key, path, content digest, summary): never a big object in Prefect's
result store (results are persisted with the JSON serializer).

Caching: the flow computes every stage's content key (:mod:`dag.walk`) before it
calls a task, and the task's :class:`ArtifactCache` policy uses that key (not the run id or the
parameters' pickles): a new run (scheduled or not) with unchanged inputs, config and code is a Prefect
cache hit ("Cached" in the UI). When the artifact is not committed the flow sets ``refresh_cache``,
so a deleted artifact is rebuilt instead of being served from a stale Prefect record. The tasks
check the store themselves as well, so they are correct with Prefect's result files gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from dag.codehash import code_hash
from dag.keys import artifact_digest, items_stage
from dag.runner import write_item_keys
from dag.spec import StageSpec, check_fault, input_stage
from dexlite_core.config import PipelineConfig
from stages.table import get_stages
from storage import ArtifactStore, hash_json, open_store

SHARD_SUFFIX = ".shards"
logging.getLogger("dexlite").setLevel(logging.INFO)  # core progress lines (PREFECT_LOGGING_EXTRA_LOGGERS=dexlite)


def shard_stage(stage: str) -> str:
    """Store stage name of a stage's shard outputs."""
    return f"{stage}{SHARD_SUFFIX}"


def shard_key(stage_key: str, index: int, items: list[str]) -> str:
    return hash_json({"stage": stage_key, "index": index, "items": items})[:20]


def local_inputs(store: ArtifactStore, inputs: dict[str, str]) -> dict[str, Path]:
    """Upstream artifact folders as local paths (``inputs``: input name -> key; a name is a stage, or
    ``<stage>@previous`` for the previous round's); a remote store copies them once into a cache."""
    return {name: store.local_path(input_stage(name), key) for name, key in inputs.items()}


def pointer(store: ArtifactStore, stage: str, key: str, summary: dict | None = None, seconds: float = 0.0) -> dict:
    """The small JSON result a task returns for a committed artifact."""
    if summary is None:
        try:
            summary = store.read_json(stage, key, "summary.json")
        except Exception:  # noqa: BLE001 - the summary is informational
            summary = {}
    return {
        "stage": stage,
        "key": key,
        "path": str(store.stage_dir(stage, key)),
        "digest": artifact_digest(store, stage, key),
        "summary": summary,
        "seconds": round(seconds, 3),
    }


@dataclass
class ArtifactCache(CachePolicy):
    """Prefect cache key = the artifact's content key (stage + key; shards: their own key).

    The flow calls a task with ``refresh_cache=True`` whenever the artifact is not committed, so a
    Prefect record never stands in for a missing artifact; a committed one is a Prefect cache hit.
    """

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        stage, key = inputs.get("stage"), inputs.get("key")
        if not stage or not key:
            return None
        if "item_keys" in inputs:  # a group of per-item artifacts
            stage, key = items_stage(stage), hash_json(inputs["item_keys"])[:20]
        elif "items" in inputs:  # a shard
            stage, key = shard_stage(stage), shard_key(key, inputs["index"], inputs["items"])
        root = hash_json(str(inputs.get("store_root")))[:8]  # one record per store: its paths differ
        return f"dexlite-{root}-{stage}-{key}"


ARTIFACT_CACHE = ArtifactCache()
_TASK_OPTS: dict[str, Any] = {
    "cache_policy": ARTIFACT_CACHE,
    "persist_result": True,
    "result_serializer": "json",
}


def _spec(stage: str) -> StageSpec:
    stages = get_stages()
    if stage not in stages:
        raise KeyError(f"unknown stage {stage!r}")
    return stages[stage]


def _config(config: dict) -> PipelineConfig:
    return PipelineConfig.from_dict(config)


@task(name="stage", **_TASK_OPTS)
def run_stage(stage: str, key: str, inputs: dict[str, str], store_root: str, config: dict) -> dict:
    """Run a whole (unsharded) stage into its artifact folder; a committed one is reused."""
    store = open_store(store_root)
    if store.is_complete(stage, key):
        return pointer(store, stage, key)
    spec = _spec(stage)
    cfg = _config(config)
    paths = local_inputs(store, inputs)
    t0 = time.perf_counter()
    wd = store.work_dir(stage, key) if spec.resumable else None
    check_fault(stage)
    with store.open_stage(stage, key, inputs=inputs, config={s: config[s] for s in spec.config},
                          code=code_hash(spec)) as w:
        if wd is not None:
            wd.mkdir(parents=True, exist_ok=True)
            summary = spec.run(paths, w.path, cfg, work_dir=wd)
        else:
            summary = spec.run(paths, w.path, cfg)
        seconds = time.perf_counter() - t0
        w.write_json("summary.json", summary or {})
        w.write_json("run.json", {"seconds": seconds, "host": os.uname().nodename, "pid": os.getpid()})
    if wd is not None:
        shutil.rmtree(wd, ignore_errors=True)
    return pointer(store, stage, key, summary, seconds)


@task(name="shard", **_TASK_OPTS)
def run_shard(stage: str, key: str, index: int, items: list[str], inputs: dict[str, str], store_root: str,
              config: dict) -> dict:
    """One shard of a fanned-out stage (tens to hundreds of objects), committed as its own artifact so
    a killed or failed stage resumes from the shards already done."""
    store = open_store(store_root)
    sstage, skey = shard_stage(stage), shard_key(key, index, items)
    if store.is_complete(sstage, skey):
        return {"stage": sstage, "key": skey, "index": index, "path": str(store.stage_dir(sstage, skey)),
                "items": len(items)}
    spec = _spec(stage)
    assert spec.shards is not None, f"stage {stage!r} has no shards"
    cfg = _config(config)
    paths = local_inputs(store, inputs)
    check_fault(stage)
    t0 = time.perf_counter()
    with store.open_stage(sstage, skey, inputs={"stage_key": key}, config={"index": index, "items": items},
                          code=code_hash(spec)) as w:
        summary = spec.shards.run(paths, w.path, cfg, items)
        w.write_json("summary.json", summary or {})
    return {"stage": sstage, "key": skey, "index": index, "path": str(store.stage_dir(sstage, skey)),
            "items": len(items), "summary": summary, "seconds": round(time.perf_counter() - t0, 3)}


@task(name="items", **_TASK_OPTS)
def run_items(stage: str, key: str, items: list[str], item_keys: list[str], inputs: dict[str, str], store_root: str,
              config: dict) -> list[dict]:
    """Items of a per-item stage (``Shards.item_inputs``), each run and committed as its own artifact
    ``<stage>.items/<item key>``: a kill loses at most the item in progress, and an item already
    committed (by this run, an earlier run or another config's) is reused."""
    store = open_store(store_root)
    spec = _spec(stage)
    assert spec.shards is not None, f"stage {stage!r} has no shards"
    istage, cfg, paths = items_stage(stage), _config(config), None
    out = []
    for item, ikey in zip(items, item_keys, strict=True):
        if not store.is_complete(istage, ikey):
            check_fault(stage)
            paths = paths or local_inputs(store, inputs)
            t0 = time.perf_counter()
            with store.open_stage(istage, ikey, inputs={"item": item, "stage_key": key},
                                  config={s: config[s] for s in spec.item_sections},
                                  code=code_hash(spec)) as w:
                summary = spec.shards.run(paths, w.path, cfg, [item])
                w.write_json("summary.json", summary or {})
                w.write_json("run.json", {"seconds": time.perf_counter() - t0, "host": os.uname().nodename})
        out.append({"stage": istage, "key": ikey, "item": item})
    return out


@task(name="merge", **_TASK_OPTS)
def merge_shards(stage: str, key: str, shards: list[dict], inputs: dict[str, str], store_root: str,
                 config: dict) -> dict:
    """Merge a stage's shard artifacts into the stage artifact, then drop the shards (per-item
    artifacts stay: they are the cache the next run with more objects reuses)."""
    store = open_store(store_root)
    if store.is_complete(stage, key):
        return pointer(store, stage, key)
    spec = _spec(stage)
    assert spec.shards is not None
    if not shards:
        raise RuntimeError(f"stage {stage!r}: {stage}/{key} is not committed and there are no shards to merge")
    cfg = _config(config)
    paths = local_inputs(store, inputs)
    shard_dirs = [_local_shard(store, s) for s in shards]
    t0 = time.perf_counter()
    sections = {s: config[s] for s in spec.config}
    with store.open_stage(stage, key, inputs=inputs, config=sections, code=code_hash(spec)) as w:
        summary = spec.shards.merge(paths, shard_dirs, w.path, cfg)
        if any("item" in s for s in shards):
            write_item_keys(w.path, [s["item"] for s in shards], [s["key"] for s in shards])
        seconds = time.perf_counter() - t0
        w.write_json("summary.json", summary or {})
        w.write_json("run.json", {"merge_seconds": seconds, "shards": len(shards), "host": os.uname().nodename})
    for s in shards:
        if s["stage"].endswith(SHARD_SUFFIX):
            store.remove(s["stage"], s["key"])
    return pointer(store, stage, key, summary, seconds)


def _local_shard(store: ArtifactStore, shard: dict) -> Path:
    return local_inputs(store, {shard["stage"]: shard["key"]})[shard["stage"]]


def init_worker(torch_threads: int) -> None:
    """Process-pool worker initializer: bound each worker's BLAS/torch threads before torch loads."""
    n = str(max(1, int(torch_threads)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, n)
