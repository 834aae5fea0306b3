"""Prefect flows over the DAG: ``dexlite`` (every stage) and ``dexlite-<stage>`` (one stage).

Both run :func:`execute`: stages in dependency order; for each, its content key from the upstream
artifacts' digests, config sections and code; a committed artifact is a cache hit (the stage task
reports "Cached"), otherwise the stage runs:

- sharded stages (ingest, stability, seed, lift, post-optimisation, evaluation) fan out one task per
  shard of ``dag.shard_size`` objects on the configured task runner, each shard committed as its own
  artifact (a killed or failed stage resumes from the shards already done), then one merge task;
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

from dag.runner import shard_items
from dag.spec import StageFault, StageSpec
from dag.walk import KeyWalk, Step
from dexlite_core.config import DagConfig, PipelineConfig
from flows.configfile import config_from_dict, load_config
from stages.table import get_stages
from storage import ArtifactStore, atomic_write_json, open_store
from storage.runs import store_root
from tasks.stage_tasks import (
    init_worker,
    local_inputs,
    merge_shards,
    pointer,
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
    """Shard tasks on the run's task runner (a shard already committed is a cache hit), then the merge."""
    logger = get_run_logger()
    assert spec.shards is not None and step.key is not None
    items = spec.shards.items(local_inputs(run.store, step.inputs), run.cfg)
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
    done: list[dict] = []
    errors: list[Exception] = []
    t0 = time.perf_counter()
    for fut in as_completed(futures):
        try:
            done.append(fut.result())
        except Exception as e:  # noqa: BLE001 - collected, raised below
            errors.append(e)
        logger.info("stage %s: %d/%d shards done, %d failed (%.0f s)", step.name, len(done), len(parts),
                    len(errors), time.perf_counter() - t0)
    if errors:
        raise errors[0]
    ordered = sorted(done, key=lambda d: d["index"])
    return merge_shards.with_options(task_run_name=f"{step.name}-merge", refresh_cache=True, **run.retry)(
        **params, shards=ordered)


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
    cfg = resolve(config, config_file, overrides)
    return execute(cfg, out, targets=targets, force=force, store=store, rounds=rounds)


def _stage_flow(name: str) -> Any:
    def run(config: dict | None = None, config_file: str | None = None, out: str = "runs/default",
            overrides: dict | None = None, force: bool = False, store: str | None = None) -> dict:
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
