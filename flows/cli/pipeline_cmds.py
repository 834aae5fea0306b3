"""Pipeline commands: ``run`` (whole DAG), ``stage NAME`` (one stage, reusing cached upstream
artifacts), ``status`` (which stages are done for a config, and where), ``stages`` (the table),
``clean`` (leftover temp folders), ``config show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import (
    DEFAULT_OUT,
    ConfigOpt,
    OutOpt,
    SetOpt,
    command,
    config_app,
    fail,
    load_cfg,
    one_line_errors,
    setup_prefect,
)
from flows.configfile import to_yaml

RunnerOpt = Annotated[str | None, typer.Option("--runner", help="process | thread | dask")]
WorkersOpt = Annotated[int | None, typer.Option(help="parallel tasks")]
RoundsOpt = Annotated[int, typer.Option(min=1, help="Dex1B loop, K rounds: from round 2 the validated expanded "
                                                    "grasps join the dataset, then retrain, sample, evaluate")]


def _print_runs(result: dict) -> None:
    rows = result.get("stages", {})
    if not rows:
        return
    typer.echo(f"{'stage':<17} {'status':<7} {'seconds':>8}  artifact")
    for name, r in rows.items():
        typer.echo(f"{name:<17} {r['status']:<7} {r['seconds']:>8.1f}  {r['path']}")


def _run_flow(flow_fn: Any, out: Path, show: bool = True, **params: Any) -> dict:
    """Call a flow; its failure is one line (exit 1), Ctrl-C exit 130; print the stage table when `show`."""
    try:
        result = flow_fn(out=str(out), **params)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 - the flow's failure, reported with the stage name
        fail(f"FAILED: {e}")
    if show:
        _print_runs(result)
    return result


@command
def run(
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    runner: RunnerOpt = None,
    workers: WorkersOpt = None,
    dask_address: Annotated[str | None, typer.Option(help="tcp://host:8786 of a dask scheduler")] = None,
    force: Annotated[list[str] | None, typer.Option(help="rebuild this stage even if cached")] = None,
    rounds: RoundsOpt = 1,
) -> None:
    """Run the whole DAG; stages whose artifacts exist for this config are reused."""
    cfg = load_cfg(config, set_, task_runner=runner, workers=workers, dask_address=dask_address)
    setup_prefect(out)
    from flows import run_records

    for line in run_records.mark_dead_runs(out, "dexlite run"):  # flow runs of killed processes -> Crashed
        typer.secho(line, err=True, fg=typer.colors.YELLOW)
    from flows.pipeline import dexlite_flow

    _run_flow(dexlite_flow, out, config=cfg.to_dict(), force=force or None, rounds=rounds)


@command
def stage(
    name: Annotated[str, typer.Argument(help="stage name (see `dexlite stages`)")],
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    runner: RunnerOpt = None,
    workers: WorkersOpt = None,
    force: Annotated[bool, typer.Option(help="rebuild the stage even if cached")] = False,
) -> None:
    """Run one stage, reusing cached upstream artifacts (rebuilt only if missing or stale)."""
    from stages.table import get_stages

    if name not in get_stages():
        fail(f"unknown stage {name!r}; stages: {', '.join(get_stages())}", 2)
    cfg = load_cfg(config, set_, task_runner=runner, workers=workers)
    setup_prefect(out)
    from flows.pipeline import STAGE_FLOWS

    _run_flow(STAGE_FLOWS[name], out, config=cfg.to_dict(), force=force)


@command
def status(
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    rounds: RoundsOpt = 1,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Which stage runs are done for this config (and --rounds), and where their artifacts are; reads
    manifests only (Prefect only to mark Crashed the flow runs of killed processes, see flows.run_records)."""
    from dag.walk import plan
    from flows import run_records
    from stages.table import get_stages
    from storage import open_store
    from storage.runs import store_root

    cfg = load_cfg(config, set_)
    # flow runs of killed processes -> Crashed (Prefect is set up only when a record names a dead process)
    for line in run_records.mark_dead_runs(out, "dexlite status", setup=lambda: setup_prefect(out)):
        typer.secho(line, err=as_json, fg=typer.colors.YELLOW)
    store = open_store(store_root(cfg.dag.artifacts, out))
    states = plan(store, cfg, get_stages(), rounds=rounds)
    if as_json:
        typer.echo(json.dumps({"store": store.url, "stages": [s.__dict__ for s in states]}, default=str))
        return
    typer.echo(f"artifacts: {store.url}")
    for s in states:
        other = f"  (+{len(s.other_keys)} other config(s))" if s.other_keys else ""
        where = s.path if s.state == "done" else ("-" if s.state == "blocked" else f"would be {s.path}")
        typer.echo(f"{s.name:<17} {s.state:<8} {s.key or '':<20}  {where}{other}")
    done = sum(s.state == "done" for s in states)
    typer.echo(f"{done}/{len(states)} stage runs done")


@command
def stages() -> None:
    """The stage table: dependencies and the config sections each stage's cache key hashes."""
    from dag.graph import topo_order
    from stages.table import get_stages

    table = get_stages()
    typer.echo(f"{'stage':<10} {'depends on':<44} {'config':<18} description")
    for n in topo_order(table):
        s = table[n]
        typer.echo(f"{n:<10} {','.join(s.deps) or '-':<44} {','.join(s.config) or '-':<18} "
                   f"{s.description}{' [shards]' if s.shards else ''}{' [gpu]' if s.gpu else ''}")


@command
def clean(out: OutOpt = Path(DEFAULT_OUT), config: ConfigOpt = None) -> None:
    """Delete temp folders left by killed runs (run it while no pipeline writes to this store)."""
    from storage import open_store
    from storage.runs import store_root

    cfg = load_cfg(config, None)
    removed = open_store(store_root(cfg.dag.artifacts, out)).clean_incomplete()
    for r in removed:
        typer.echo(f"removed {r}")
    typer.echo(f"{len(removed)} incomplete folder(s) removed")


@config_app.command("show")
@one_line_errors
def config_show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the resolved configuration (defaults <- file <- --set) as YAML."""
    typer.echo(to_yaml(load_cfg(config, set_)), nl=False)


@command
def scaling(
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    sizes: Annotated[list[str] | None, typer.Option(
        "--sizes", help="training objects per model, a number or 'all': --sizes 14 100 300 all")] = None,
    more_sizes: Annotated[list[str] | None, typer.Argument(hidden=True, metavar="SIZES")] = None,
    set_: SetOpt = None,
    runner: RunnerOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """The scaling curve: the CVAE trained on the first N training objects (train.max_objects) for each
    size, the rest of the config unchanged, each model evaluated on the same validation and test
    objects; writes <out>/scaling/scaling.json, scaling.md, scaling.png. Resumable: every size's stages
    are cached artifacts, the stages up to the dataset are shared."""
    import shlex

    from dexlite_core import scaling as sc
    from stages.common import GRASPS, objects_in
    from storage import open_store

    tokens = [*(sizes or []), *(more_sizes or [])]
    if more_sizes and not sizes:
        fail(f"scaling: unexpected argument(s) {' '.join(more_sizes)}; sizes go after --sizes", 2)
    try:
        wanted = sc.parse_sizes(tokens or sc.DEFAULT_SIZES)
    except ValueError as e:
        fail(str(e), 2)
    cfg = load_cfg(config, set_, task_runner=runner, workers=workers)
    line = ["dexlite", "scaling", *(["--config", str(config)] if config else []), "--out", str(out),
            "--sizes", *("all" if n == 0 else str(n) for n in wanted), *(a for s in set_ or [] for a in ("--set", s)),
            *(["--runner", runner] if runner else []), *(["--workers", str(workers)] if workers else [])]
    cmd = shlex.join(line)
    setup_prefect(out)
    from flows.pipeline import dexlite_flow

    base = cfg.to_dict()
    # shared by every size: objects -> ... -> dataset
    shared = _run_flow(dexlite_flow, out, show=False, config=base, targets=["dataset"])
    store = open_store(shared["store"])
    stage_dir = {n: store.local_path(n, r["key"]) for n, r in shared["stages"].items() if n in ("objects", "dataset")}
    groups = sc.training_groups(objects_in(stage_dir["dataset"] / GRASPS), stage_dir["objects"] / "objects",
                                cfg.train.val_fraction, cfg.train.test_fraction)
    models, note = sc.resolve_sizes(wanted, len(groups))
    if note:
        typer.secho(f"note: {note}", err=True, fg=typer.colors.YELLOW)
    runs = []
    for label, max_objects in models:
        typer.echo(f"== size {label} (train.max_objects={max_objects}; training objects in all: {len(groups)})")
        d = json.loads(json.dumps(base))
        d["train"]["max_objects"] = max_objects
        result = _run_flow(dexlite_flow, out, config=d, targets=["evaluate"])
        ev, tr = result["stages"]["evaluate"], result["stages"]["train"]
        runs.append(sc.Model(label, max_objects, max_objects or len(groups),
                             store.read_json("evaluate", ev["key"], "report.json"), tr.get("summary") or {},
                             str(ev["path"]) + "/report.json"))
    table = sc.build_table(runs, command=cmd, notes=[note] if note else [])
    paths = sc.write_outputs(out / "scaling", table)
    typer.echo("")
    typer.echo(sc.render_markdown(table), nl=False)
    typer.echo("")
    typer.echo(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    typer.echo(f"command: {cmd}")
