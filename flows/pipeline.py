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

from dexlite_core.config import DagConfig, PipelineConfig
from dexlite_core.stages import (
    CoreNotAvailable,
    StageFault,
    get_stages,
    input_names,
    previous,
    shard_items,
    stage_key,
    store_root,
    topo_order,
)
from flows.configfile import config_from_dict, load_config
from storage.artifacts import ArtifactStore, atomic_write_json
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
    """Retry transient failures only: an injected fault or a missing core fails at once."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001
        return True
    return not isinstance(exc, (StageFault, CoreNotAvailable, KeyError))


def _record(out: Path, runs: dict[str, StageRun]) -> None:
    """``<out>/stages.json``: where the artifacts of the last run of this folder are."""
    with contextlib.suppress(OSError):
        atomic_write_json(out / "stages.json", {n: r.__dict__ for n, r in runs.items()})


def execute(cfg: PipelineConfig, out: str | os.PathLike[str], targets: list[str] | None = None,
            force: list[str] | None = None, store: str | None = None, rounds: int = 1) -> dict[str, Any]:
    """Run ``targets`` (default: every stage) and whatever upstream is missing or stale, inside a flow.

    ``rounds`` > 1 repeats the stages that read the previous round (``StageSpec.feedback``: the
    dataset grows by the validated expanded grasps, the CVAE retrains, samples are drawn and
    evaluated again) and everything downstream of them; round r's runs are named ``<stage>@round<r>``.

    Returns ``{"store": root, "stages": {name: StageRun as dict}}``; raises :class:`StageFailed`.
    """
    logger = get_run_logger()
    stages = get_stages()
    root = store or store_root(cfg, out)
    art = ArtifactStore(root)
    out_dir = Path(out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    order = topo_order(stages, targets)
    force = list(force or [])
    cfg_dict = cfg.to_dict()
    retry = {"retries": cfg.dag.retries, "retry_delay_seconds": cfg.dag.retry_delay_s,
             "retry_condition_fn": _no_retry_for_permanent}
    digests: dict[str, str] = {}
    keys: dict[str, str] = {}
    runs: dict[str, StageRun] = {}
    t_run = time.perf_counter()
    logger.info("DAG: %s (artifacts in %s, task runner %s x%d)", " -> ".join(order), art.url,
                cfg.dag.task_runner, cfg.dag.workers)
    rounds = max(1, int(rounds))
    with contextlib.ExitStack() as stack:
        runner: TaskRunner | None = None
        for rnd, i, name in ((r, i, n) for r in range(1, rounds + 1) for i, n in enumerate(order, 1)):
            spec = stages[name]
            if rnd > 1 and i == 1:  # a new round: the last round's artifacts become "<stage>@previous"
                last = {n: (keys[n], digests[n]) for n in order}
                keys.update({previous(n): k for n, (k, _) in last.items()})
                digests.update({previous(n): d for n, (_, d) in last.items()})
            key = stage_key(spec, cfg, digests)
            if rnd > 1 and key == keys.get(name):
                continue  # upstream of the loop: same artifact as last round
            label = name if rnd == 1 else f"{name}@round{rnd}"
            inputs = {d: keys[d] for d in input_names(spec, keys)}
            if rnd == 1 and name in force and art.is_complete(name, key):
                logger.info("stage %s: --force, removing %s", name, art.stage_dir(name, key))
                art.remove(name, key)
            cached = art.is_complete(name, key)
            t0 = time.perf_counter()
            logger.info("[%d/%d] stage %s: %s (key %s)", i, len(order), label,
                        "cached" if cached else "running", key)
            try:
                if cached:
                    task = merge_shards if spec.shards is not None else run_stage
                    extra = {"shards": []} if spec.shards is not None else {}
                    ptr = task.with_options(task_run_name=name)(
                        stage=name, key=key, inputs=inputs, store_root=root, config=cfg_dict, **extra)
                elif spec.shards is not None:
                    paths = local_inputs(art, inputs)
                    items = spec.shards.items(paths, cfg)
                    size = shard_size(len(items), cfg.dag)
                    parts = shard_items(items, size)
                    logger.info("stage %s: %d items in %d shard(s) of <= %d", name, len(items), len(parts), size)
                    if runner is None:
                        runner = stack.enter_context(build_runner(cfg.dag))
                    futures = [
                        runner.submit(
                            run_shard.with_options(task_run_name=f"{name}[{j + 1}/{len(parts)}]",
                                                   refresh_cache=not art.is_complete(
                                                       shard_stage(name), shard_key(key, j, part)), **retry),
                            parameters={"stage": name, "key": key, "index": j, "items": part, "inputs": inputs,
                                        "store_root": root, "config": cfg_dict},
                        )
                        for j, part in enumerate(parts)
                    ]
                    done: list[dict] = []
                    errors: list[Exception] = []
                    for fut in as_completed(futures):
                        try:
                            done.append(fut.result())
                        except Exception as e:  # noqa: BLE001 - collected, raised below
                            errors.append(e)
                        logger.info("stage %s: %d/%d shards done, %d failed (%.0f s)", name, len(done),
                                    len(parts), len(errors), time.perf_counter() - t0)
                    if errors:
                        raise errors[0]
                    ordered = sorted(done, key=lambda d: d["index"])
                    ptr = merge_shards.with_options(task_run_name=f"{name}-merge", refresh_cache=True, **retry)(
                        stage=name, key=key, shards=ordered, inputs=inputs, store_root=root, config=cfg_dict)
                elif spec.gpu and cfg.dag.train_work_pool:
                    ptr = _run_on_pool(name, key, cfg, out_dir, root, art)
                else:
                    ptr = run_stage.with_options(task_run_name=name, refresh_cache=True, **retry)(
                        stage=name, key=key, inputs=inputs, store_root=root, config=cfg_dict)
            except StageFailed:
                raise
            except BaseException as e:
                _record(out_dir, runs)
                logger.error("stage %s FAILED after %.1f s: %s", name, time.perf_counter() - t0, e)
                raise StageFailed(name, e) from e
            digests[name] = ptr["digest"]
            keys[name] = key
            runs[label] = StageRun(label, key, "cached" if cached else "ran", round(time.perf_counter() - t0, 2),
                                   ptr["path"], ptr.get("summary") or {})
            logger.info("[%d/%d] stage %s: %s in %.1f s -> %s %s", i, len(order), label, runs[label].status,
                        runs[label].seconds, ptr["path"], _short(ptr.get("summary")))
            _record(out_dir, runs)
    logger.info("DAG done in %.1f s: %d ran, %d cached", time.perf_counter() - t_run,
                sum(r.status == "ran" for r in runs.values()), sum(r.status == "cached" for r in runs.values()))
    return {"store": art.url, "stages": {n: r.__dict__ for n, r in runs.items()}}


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


STAGE_FLOWS = {name: _stage_flow(name) for name in topo_order(get_stages())}
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
