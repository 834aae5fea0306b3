"""Prefect flows over the DAG: ``dexlite`` (every stage) and ``dexlite-<stage>`` (one stage).

Both run :func:`execute`: stages in dependency order; for each, its content key from the upstream
artifacts' digests, config sections and code; a committed artifact is a cache hit (the stage task
reports "Cached"), otherwise the stage runs:

- per-item stages (ingest, stability, seed, lift) key every object on its own inputs
  (``Shards.item_inputs``) and commit it as its own artifact: only the objects whose artifact is
  missing run, grouped into tasks of at most ``dag.shard_size`` objects, so a killed run resumes
  object by object and adding objects computes only the new ones; then one merge task;
- the other sharded stages (post-optimisation, evaluation: every object reads the trained model) fan
  out one task per shard of ``dag.shard_size`` objects, each shard committed as its own artifact,
  then one merge task;
- the other stages are one task in the flow's process; ``train`` goes to the GPU work pool's
  deployment when ``dag.train_work_pool`` is set (see ``dexlite deploy``).

Task runners (``dag.task_runner``): ``process`` (default) Prefect's ProcessPoolTaskRunner with
``dag.workers`` spawned processes (each bounded to cores // workers torch threads); ``thread``
ThreadPoolTaskRunner (cheap to start, for toy or I/O-bound stages and where processes cannot start,
e.g. a parent without a ``__main__`` file; the GIL is released inside torch / MuJoCo / PyBullet
calls, so it still overlaps most work); ``dask`` prefect-dask's DaskTaskRunner pointed at
``dag.dask_address`` (a running ``dask scheduler``; many machines) or a temporary LocalCluster.
One runner serves every stage of a run (processes start once, not per stage), which is why the
pipeline flow runs stages as tasks rather than as one subflow per stage.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from dag.keys import item_keys, items_stage
from dag.runner import shard_items
from dag.spec import StageFault, StageSpec
from dag.walk import KeyWalk, Step
from dexlite_core.config import DagConfig, PipelineConfig
from flows.configfile import config_from_dict, load_config
from flows.run_records import recorded
from stages.table import get_stages
from storage import ArtifactStore, atomic_write_json, open_store
from storage.runs import store_root
from tasks.stage_tasks import (
    init_worker,
    local_inputs,
    merge_shards,
    pointer,
    run_items,
    run_shard,
    run_stage,
    shard_key,
    shard_stage,
)

TASK_RUNNERS = ("process", "thread", "dask")


class StageFailed(RuntimeError):
    """A stage failed; the message starts with the stage's name."""

    def __init__(self, stage: str, error: BaseException | str) -> None:
        super().__init__(f"stage '{stage}' failed: {error}")
        self.stage = stage


@dataclass
class StageRun:
    name: str
    key: str
    status: str  # "cached" | "ran"
    seconds: float
    path: str
    summary: dict[str, Any] = field(default_factory=dict)
    digest: str = ""  # the artifact's content digest (keys the stages downstream)


def build_runner(dag: DagConfig) -> TaskRunner:
    """The task runner that executes shard tasks (see the module docstring)."""
    if dag.task_runner == "process":
        return ProcessPoolTaskRunner(max_workers=max(1, dag.workers), initializer=init_worker,
                                     initargs=(dag.threads_per_task(),))
    if dag.task_runner == "thread":
        return ThreadPoolTaskRunner(max_workers=max(1, dag.workers))
    if dag.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dag.dask_address:
            return DaskTaskRunner(address=dag.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": max(1, dag.workers), "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": ":0"})
    raise ValueError(f"dag.task_runner={dag.task_runner!r}; expected one of {TASK_RUNNERS}")


def shard_size(n_items: int, dag: DagConfig) -> int:
    """Objects per shard task: ``dag.shard_size``, smaller when that would leave workers idle."""
    return max(1, min(dag.shard_size, math.ceil(n_items / max(1, dag.workers))))


def _no_retry_for_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Retry transient failures only: an injected fault or an unknown stage fails at once."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001
        return True
    return not isinstance(exc, (StageFault, KeyError))


def _record(out: Path, runs: dict[str, StageRun]) -> None:
    """``<out>/stages.json``: where the artifacts of the last run of this folder are."""
    with contextlib.suppress(OSError):
        atomic_write_json(out / "stages.json", {n: r.__dict__ for n, r in runs.items()})


@dataclass
class _Run:
    """What every stage of one ``execute`` shares."""

    cfg: PipelineConfig
    cfg_dict: dict[str, Any]
    root: str
    store: ArtifactStore
    out_dir: Path
    retry: dict[str, Any]
    stack: contextlib.ExitStack
    runner: TaskRunner | None = None

    def task_runner(self) -> TaskRunner:
        """One task runner for every sharded stage of the run (processes start once)."""
        if self.runner is None:
            self.runner = self.stack.enter_context(build_runner(self.cfg.dag))
        return self.runner


def execute(cfg: PipelineConfig, out: str | os.PathLike[str], targets: list[str] | None = None,
            force: list[str] | None = None, store: str | None = None, rounds: int = 1) -> dict[str, Any]:
    """Run ``targets`` (default: every stage) and whatever upstream is missing or stale, inside a flow.

    The stages and their keys come from :class:`dag.walk.KeyWalk` (the walk ``dexlite status``
    uses). ``rounds`` > 1 repeats the stages that read the previous round (``StageSpec.feedback``:
    the dataset grows by the validated expanded grasps, the CVAE retrains, samples are drawn and
    evaluated again) and everything downstream of them; round r's runs are named ``<stage>@round<r>``.

    Returns ``{"store": root, "stages": {label: StageRun as dict}}``; raises :class:`StageFailed`.
    """
    logger = get_run_logger()
    root = store or store_root(cfg.dag.artifacts, out)
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    walk = KeyWalk(get_stages(), cfg, targets, rounds)
    retry = {"retries": cfg.dag.retries, "retry_delay_seconds": cfg.dag.retry_delay_s,
             "retry_condition_fn": _no_retry_for_permanent}
    runs: dict[str, StageRun] = {}
    t_run = time.perf_counter()
    logger.info("DAG: %s (artifacts in %s, task runner %s x%d)", " -> ".join(walk.order), root,
                cfg.dag.task_runner, cfg.dag.workers)
    with contextlib.ExitStack() as stack:
        run = _Run(cfg, cfg.to_dict(), root, open_store(root), out_dir, retry, stack)
        for step in walk:
            if step.key is None:  # every upstream stage ran or raised: a bug in the walk
                raise StageFailed(step.name, "an upstream stage has no artifact")
            if step.round == 1 and step.name in (force or []) and run.store.is_complete(step.name, step.key):
                logger.info("stage %s: --force, removing %s", step.name, run.store.stage_dir(step.name, step.key))
                run.store.remove(step.name, step.key)
            runs[step.label] = _stage(run, step, len(walk.order))
            walk.done(step.name, step.key, runs[step.label].digest)
            _record(out_dir, runs)
    logger.info("DAG done in %.1f s: %d ran, %d cached", time.perf_counter() - t_run,
                sum(r.status == "ran" for r in runs.values()), sum(r.status == "cached" for r in runs.values()))
    return {"store": run.store.url, "stages": {n: r.__dict__ for n, r in runs.items()}}


def _stage(run: _Run, step: Step, n_stages: int) -> StageRun:
    """One stage of the walk: a cache hit, or its shards fanned out then merged, or one task."""
    logger = get_run_logger()
    spec, key = step.spec, step.key
    assert key is not None
    cached = run.store.is_complete(step.name, key)
    t0 = time.perf_counter()
    logger.info("[%d/%d] stage %s: %s (key %s)", step.index, n_stages, step.label,
                "cached" if cached else "running", key)
    params = {"stage": step.name, "key": key, "inputs": step.inputs, "store_root": run.root,
              "config": run.cfg_dict}
    try:
        if cached:
            task = merge_shards if spec.shards is not None else run_stage
            extra = {"shards": []} if spec.shards is not None else {}
            ptr = task.with_options(task_run_name=step.name)(**params, **extra)
        elif spec.shards is not None:
            ptr = _sharded(run, step, spec, params)
        elif spec.gpu and run.cfg.dag.train_work_pool:
            ptr = _run_on_pool(step.name, key, run.cfg, run.out_dir, run.root, run.store)
        else:
            ptr = run_stage.with_options(task_run_name=step.name, refresh_cache=True, **run.retry)(**params)
    except BaseException as e:
        logger.error("stage %s FAILED after %.1f s: %s", step.name, time.perf_counter() - t0, e)
        raise StageFailed(step.name, e) from e
    done = StageRun(step.label, key, "cached" if cached else "ran", round(time.perf_counter() - t0, 2),
                    ptr["path"], ptr.get("summary") or {}, ptr["digest"])
    logger.info("[%d/%d] stage %s: %s in %.1f s -> %s %s", step.index, n_stages, step.label, done.status,
                done.seconds, ptr["path"], _short(ptr.get("summary")))
    return done


def _sharded(run: _Run, step: Step, spec: StageSpec, params: dict[str, Any]) -> dict:
    """Shard tasks on the run's task runner (a shard or item already committed is a cache hit), then
    the merge. A per-item stage (``Shards.item_inputs``) computes only its missing items."""
    logger = get_run_logger()
    assert spec.shards is not None and step.key is not None
    paths = local_inputs(run.store, step.inputs)
    items = spec.shards.items(paths, run.cfg)
    if spec.shards.item_inputs is not None:
        return _per_item(run, step, spec, params, items, paths)
    size = shard_size(len(items), run.cfg.dag)
    parts = shard_items(items, size)
    logger.info("stage %s: %d items in %d shard(s) of <= %d", step.name, len(items), len(parts), size)
    runner = run.task_runner()
    futures = [
        runner.submit(
            run_shard.with_options(task_run_name=f"{step.name}[{j + 1}/{len(parts)}]", **run.retry,
                                   refresh_cache=not run.store.is_complete(shard_stage(step.name),
                                                                           shard_key(step.key, j, part))),
            parameters={**params, "index": j, "items": part},
        )
        for j, part in enumerate(parts)
    ]
    done = _gather(step.name, futures, [len(p) for p in parts], len(items))
    ordered = sorted(done, key=lambda d: d["index"])
    return merge_shards.with_options(task_run_name=f"{step.name}-merge", refresh_cache=True, **run.retry)(
        **params, shards=ordered)


def _per_item(run: _Run, step: Step, spec: StageSpec, params: dict[str, Any], items: list[str],
              paths: dict[str, Path]) -> dict:
    """Group the items whose artifact is missing into tasks, run them, merge every item in order."""
    assert spec.shards is not None and spec.shards.item_inputs is not None
    if not items:
        raise RuntimeError(f"stage {step.name}: no objects to process (every object was filtered out upstream, "
                           "e.g. none stayed put in the stability test)")
    keys = item_keys(spec, run.cfg, items, spec.shards.item_inputs(paths, run.cfg, items))
    istage = items_stage(step.name)
    todo = [(i, k) for i, k in zip(items, keys, strict=True) if not run.store.is_complete(istage, k)]
    size = shard_size(len(todo), run.cfg.dag)
    groups = [todo[j : j + size] for j in range(0, len(todo), size)]
    get_run_logger().info("stage %s: %d items, %d already computed, %d to compute in %d task(s)", step.name,
                          len(items), len(items) - len(todo), len(todo), len(groups))
    runner = run.task_runner()
    futures = [
        runner.submit(run_items.with_options(task_run_name=f"{step.name}[{j + 1}/{len(groups)}]", **run.retry,
                                             refresh_cache=True),
                      parameters={**params, "items": [i for i, _ in g], "item_keys": [k for _, k in g]})
        for j, g in enumerate(groups)
    ]
    _gather(step.name, futures, [len(g) for g in groups], len(todo))
    pointers = [{"stage": istage, "key": k, "item": i} for i, k in zip(items, keys, strict=True)]
    return merge_shards.with_options(task_run_name=f"{step.name}-merge", refresh_cache=True, **run.retry)(
        **params, shards=pointers)


def _gather(name: str, futures: list[Any], sizes: list[int], total: int) -> list[Any]:
    """Wait for every task; log items done / total and an ETA as they finish; raise the first error."""
    logger = get_run_logger()
    index = {id(f): n for f, n in zip(futures, sizes, strict=True)}
    done: list[Any] = []
    errors: list[Exception] = []
    n_done, t0 = 0, time.perf_counter()
    for fut in as_completed(futures):
        try:
            done.append(fut.result())
            n_done += index[id(fut)]
        except Exception as e:  # noqa: BLE001 - collected, raised below
            errors.append(e)
        elapsed = time.perf_counter() - t0
        eta = elapsed / n_done * (total - n_done) if n_done else math.nan
        logger.info("stage %s: %d/%d items done, %d task(s) failed (%.0f s, ETA %s)", name, n_done, total,
                    len(errors), elapsed, _clock(eta))
    if errors:
        raise errors[0]
    return done


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def _short(summary: dict | None) -> str:
    if not summary:
        return ""
    items = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
             if not isinstance(v, (dict, list))]
    return "(" + ", ".join(items[:6]) + ")"


def _run_on_pool(name: str, key: str, cfg: PipelineConfig, out: Path, root: str, art: ArtifactStore) -> dict:
    """Run a (GPU) stage as its deployment on ``dag.train_work_pool`` and wait for it; the worker must
    see the same artifact store (shared volume or an fsspec URL)."""
    from prefect.deployments import run_deployment

    pool = cfg.dag.train_work_pool
    dep = f"dexlite-{name}/{pool}"
    get_run_logger().info("stage %s: submitting to work pool %r (deployment %s)", name, pool, dep)
    remote = cfg.to_dict()
    remote["dag"]["train_work_pool"] = ""  # the worker trains itself (dag is in no cache key)
    fr = run_deployment(name=dep, parameters={"config": remote, "out": str(out), "store": root}, timeout=None)
    if fr.state is None or not fr.state.is_completed():
        why = f"{fr.state.name}: {fr.state.message}" if fr.state else "without a state"
        raise RuntimeError(f"deployment {dep} (flow run {fr.name}) ended {why}")
    if not art.is_complete(name, key):
        raise RuntimeError(f"deployment {dep} finished but {name}/{key} is not in {art.url} "
                           "(different code version or artifact store on the worker?)")
    return pointer(art, name, key)


def resolve(config: dict | None, config_file: str | None, overrides: dict | None = None) -> PipelineConfig:
    """The run's config from flow parameters: a resolved dict, or a file (+ overrides)."""
    if config is not None:
        return config_from_dict(config)
    return load_config(config_file, overrides)


@flow(name="dexlite", log_prints=True)
def dexlite_flow(config: dict | None = None, config_file: str | None = None, out: str = "runs/default",
                 overrides: dict | None = None, targets: list[str] | None = None, force: list[str] | None = None,
                 store: str | None = None, rounds: int = 1) -> dict:
    """The whole DAG (or ``targets`` and their upstream): ingest -> ... -> evaluation report; with
    ``rounds`` > 1 the Dex1B loop (see :func:`execute`)."""
    with recorded(out):  # <out>/.prefect/active/<flow run id>.json while it runs (see flows.run_records)
        cfg = resolve(config, config_file, overrides)
        return execute(cfg, out, targets=targets, force=force, store=store, rounds=rounds)


def _stage_flow(name: str) -> Any:
    def run(config: dict | None = None, config_file: str | None = None, out: str = "runs/default",
            overrides: dict | None = None, force: bool = False, store: str | None = None) -> dict:
        with recorded(out):
            cfg = resolve(config, config_file, overrides)
            return execute(cfg, out, targets=[name], force=[name] if force else None, store=store)

    run.__name__ = f"{name}_flow"
    run.__qualname__ = run.__name__
    run.__doc__ = f"Stage {name!r}, rebuilding missing or stale upstream artifacts first."
    return flow(name=f"dexlite-{name}", log_prints=True)(run)


STAGE_FLOWS = {name: _stage_flow(name) for name in get_stages()}
# Module attributes, so deployments can name them as entrypoints: flows/pipeline.py:train_flow
objects_flow = STAGE_FLOWS.get("objects")
stability_flow = STAGE_FLOWS.get("stability")
seed_flow = STAGE_FLOWS.get("seed")
lift_flow = STAGE_FLOWS.get("lift")
dataset_flow = STAGE_FLOWS.get("dataset")
train_flow = STAGE_FLOWS.get("train")
sample_flow = STAGE_FLOWS.get("sample")
postopt_flow = STAGE_FLOWS.get("postopt")
evaluate_flow = STAGE_FLOWS.get("evaluate")
