"""The ``dexlite`` command line.

Pipeline: ``run`` (whole DAG), ``stage NAME`` (one stage, reusing cached upstream artifacts),
``status`` (which stages are done for a config, and where), ``config show``, ``stages`` (the table),
``clean`` (leftover temp folders). Prefect: ``server`` (local server + UI on 127.0.0.1), ``serve``
(deployments, the pipeline on a cron schedule; the UI's Retry reruns a failed run), ``deploy`` (stage
deployments on a work pool, e.g. GPU training). Tools: ``ingest``, ``show``, ``evaluate``, ``sample``.

Prefect is imported only inside the commands that need it, after :mod:`flows.env` has set
PREFECT_HOME (``<out>/.prefect``) and the API (an embedded server unless one is running), so
``dexlite run`` needs no server started by hand and never touches ``~/.prefect``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import typing
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dexlite_core.config import Protocol as ProtocolName
from flows.configfile import ConfigError, load_config, parse_overrides, to_yaml

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="DexLite: dexterous grasp synthesis pipeline (Prefect DAG) and tools.")
config_app = typer.Typer(no_args_is_help=True, help="Show the resolved configuration.")
app.add_typer(config_app, name="config")

DEFAULT_OUT = "runs/default"
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (defaults: write-up)")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="run folder: artifacts/, .prefect/, stages.json")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override, e.g. --set train.epochs=3 (repeatable)")]


def _one_line(msg: object) -> str:
    return " ".join(str(msg).split())


def _fail(msg: str, code: int = 1) -> None:
    """Report an error as one line on stderr and exit with ``code`` (no traceback)."""
    typer.secho(_one_line(msg), err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _expected_error(e: BaseException) -> bool:
    """Errors a user can cause and fix (bad file, bad value, corrupt artifact): reported in one line.
    Checked against the modules already imported, so the CLI imports nothing heavy to test it."""
    if isinstance(e, (OSError, ValueError, EOFError)):  # ConfigError, GraspTableError, ArrowInvalid: ValueError
        return True
    kinds: list[type] = []
    if (artifacts := sys.modules.get("storage.artifacts")) is not None:
        kinds.append(artifacts.ArtifactError)
    if (pa := sys.modules.get("pyarrow")) is not None:
        kinds.append(pa.ArrowException)
    if (stages_mod := sys.modules.get("dexlite_core.stages")) is not None:
        kinds.append(stages_mod.CoreNotAvailable)
    return isinstance(e, tuple(kinds))


F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(fn: F) -> F:
    """Command decorator: an expected error (:func:`_expected_error`) becomes one stderr line
    ``<command>: <reason naming the file>`` and exit 1; anything else (a bug) keeps its traceback,
    and so does every error with DEXLITE_TRACEBACK=1 in the environment."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not _expected_error(e) or os.environ.get("DEXLITE_TRACEBACK", "") not in ("", "0"):
                raise
            _fail(f"{fn.__name__.replace('_', ' ')}: {e}")

    return wrapper  # type: ignore[return-value]


def _config(config: Path | None, sets: list[str] | None, **dag: Any) -> Any:
    try:
        over = parse_overrides(sets or [])
        extra = {k: v for k, v in dag.items() if v is not None}
        if extra:
            over.setdefault("dag", {}).update(extra)
        return load_config(config, over)
    except ConfigError as e:
        _fail(f"config error: {e}", 2)
    except OSError as e:  # e.g. the config path is a folder or unreadable
        _fail(f"config error: {config}: {e.strerror or e}", 2)


def _setup_prefect(out: Path, embedded: bool = True) -> Any:
    """PREFECT_HOME + API before Prefect is imported; returns the embedded server (or None)."""
    from flows import env

    home = env.prefect_home(out)
    env.configure(home)
    try:
        url, server = env.ensure_api(home, embedded=embedded)
    except RuntimeError as e:
        _fail(str(e))
    typer.secho(f"Prefect API {url} ({'embedded' if server else 'server'}; PREFECT_HOME={home})", err=True,
                fg=typer.colors.BRIGHT_BLACK)
    return server


def _print_runs(result: dict) -> None:
    rows = result.get("stages", {})
    if not rows:
        return
    typer.echo(f"{'stage':<17} {'status':<7} {'seconds':>8}  artifact")
    for name, r in rows.items():
        typer.echo(f"{name:<17} {r['status']:<7} {r['seconds']:>8.1f}  {r['path']}")


def _run_flow(flow_fn: Any, out: Path, **params: Any) -> None:
    try:
        result = flow_fn(out=str(out), **params)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 - the flow's failure, reported with the stage name
        _fail(f"FAILED: {e}")
    _print_runs(result)


@app.command()
@_one_line_errors
def run(
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    runner: Annotated[str | None, typer.Option("--runner", help="process | thread | dask")] = None,
    workers: Annotated[int | None, typer.Option(help="parallel tasks")] = None,
    dask_address: Annotated[str | None, typer.Option(help="tcp://host:8786 of a dask scheduler")] = None,
    force: Annotated[list[str] | None, typer.Option(help="rebuild this stage even if cached")] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Dex1B loop, K rounds: from round 2 the validated expanded "
                                                    "grasps join the dataset, then retrain, sample, evaluate")] = 1,
) -> None:
    """Run the whole DAG; stages whose artifacts exist for this config are reused."""
    cfg = _config(config, set_, task_runner=runner, workers=workers, dask_address=dask_address)
    _setup_prefect(out)
    from flows.pipeline import dexlite_flow

    _run_flow(dexlite_flow, out, config=cfg.to_dict(), force=force or None, rounds=rounds)


@app.command()
@_one_line_errors
def stage(
    name: Annotated[str, typer.Argument(help="stage name (see `dexlite stages`)")],
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    runner: Annotated[str | None, typer.Option("--runner", help="process | thread | dask")] = None,
    workers: Annotated[int | None, typer.Option(help="parallel tasks")] = None,
    force: Annotated[bool, typer.Option(help="rebuild the stage even if cached")] = False,
) -> None:
    """Run one stage, reusing cached upstream artifacts (rebuilt only if missing or stale)."""
    from dexlite_core.stages import get_stages

    if name not in get_stages():
        _fail(f"unknown stage {name!r}; stages: {', '.join(get_stages())}", 2)
    cfg = _config(config, set_, task_runner=runner, workers=workers)
    _setup_prefect(out)
    from flows.pipeline import STAGE_FLOWS

    _run_flow(STAGE_FLOWS[name], out, config=cfg.to_dict(), force=force)


@app.command()
@_one_line_errors
def status(
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Which stages are done for this config, and where their artifacts are (no Prefect needed)."""
    from dexlite_core.stages import plan, store_root
    from storage.artifacts import ArtifactStore

    cfg = _config(config, set_)
    store = ArtifactStore(store_root(cfg, out))
    states = plan(store, cfg)
    if as_json:
        typer.echo(json.dumps({"store": store.url, "stages": [s.__dict__ for s in states]}, default=str))
        return
    typer.echo(f"artifacts: {store.url}")
    for s in states:
        other = f"  (+{len(s.other_keys)} other config(s))" if s.other_keys else ""
        where = s.path if s.state == "done" else ("-" if s.state == "blocked" else f"would be {s.path}")
        typer.echo(f"{s.name:<10} {s.state:<8} {s.key or '':<20}  {where}{other}")
    done = sum(s.state == "done" for s in states)
    typer.echo(f"{done}/{len(states)} stages done")


@app.command()
@_one_line_errors
def stages() -> None:
    """The stage table: dependencies and the config sections each stage's cache key hashes."""
    from dexlite_core.stages import get_stages, topo_order

    table = get_stages()
    typer.echo(f"{'stage':<10} {'depends on':<44} {'config':<18} description")
    for n in topo_order(table):
        s = table[n]
        typer.echo(f"{n:<10} {','.join(s.deps) or '-':<44} {','.join(s.config) or '-':<18} "
                   f"{s.description}{' [shards]' if s.shards else ''}{' [gpu]' if s.gpu else ''}")


@app.command()
@_one_line_errors
def clean(out: OutOpt = Path(DEFAULT_OUT), config: ConfigOpt = None) -> None:
    """Delete temp folders left by killed runs (run it while no pipeline writes to this store)."""
    from dexlite_core.stages import store_root
    from storage.artifacts import ArtifactStore

    cfg = _config(config, None)
    removed = ArtifactStore(store_root(cfg, out)).clean_incomplete()
    for r in removed:
        typer.echo(f"removed {r}")
    typer.echo(f"{len(removed)} incomplete folder(s) removed")


@config_app.command("show")
@_one_line_errors
def config_show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the resolved configuration (defaults <- file <- --set) as YAML."""
    typer.echo(to_yaml(_config(config, set_)), nl=False)


# ------------------------------------------------------------------------------------ Prefect


@app.command()
@_one_line_errors
def server(
    out: OutOpt = Path(DEFAULT_OUT),
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 4200,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
) -> None:
    """Start a local Prefect server with the UI (SQLite in <out>/.prefect); `run` then reports to it."""
    from flows import env

    home = env.prefect_home(out)
    env.configure(home)
    os.environ.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)])
    api = f"http://{'127.0.0.1' if host in ('0.0.0.0', '127.0.0.1') else host}:{port}/api"
    record = home / env.SERVER_FILE

    def stop(signum: int, frame: Any) -> None:
        proc.send_signal(signal.SIGTERM if signum != signal.SIGINT else signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 180:
            if env.healthy(api):
                from storage.artifacts import atomic_write_json

                atomic_write_json(record, {"api_url": api, "ui_url": api[: -len("/api")], "pid": proc.pid})
                typer.secho(f"Prefect server ready: UI {api[:-4]}  API {api}  (PREFECT_HOME={home})",
                            err=True, fg=typer.colors.GREEN)
                break
            time.sleep(0.3)
        code = proc.wait()
    finally:
        record.unlink(missing_ok=True)
    raise typer.Exit(code if code >= 0 else 0)


@app.command()
@_one_line_errors
def serve(
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    cron: Annotated[str, typer.Option(help="schedule of the whole pipeline (cron, UTC)")] = "0 3 * * *",
    name: Annotated[str, typer.Option(help="deployment name")] = "scheduled",
) -> None:
    """Serve deployments: `dexlite/<name>` on the cron schedule and `dexlite-<stage>/<name>` on demand.

    Failed runs can be retried from the UI (`dexlite server`): this process picks them up again and
    cached stages are skipped. The config file is re-read at every run.
    """
    cfg = _config(config, set_)  # validate now; runs re-read the file
    _setup_prefect(out)
    from prefect import serve as prefect_serve

    from flows.pipeline import STAGE_FLOWS, dexlite_flow

    params: dict[str, Any] = {"out": str(out.resolve()), "overrides": parse_overrides(set_ or []) or None}
    if config is not None:
        params["config_file"] = str(config.resolve())
    else:
        params["config"] = cfg.to_dict()
    deps = [dexlite_flow.to_deployment(name=name, cron=cron, parameters=params,
                                       description="DexLite pipeline on a schedule")]
    deps += [f.to_deployment(name=name, parameters=params) for f in STAGE_FLOWS.values()]
    typer.secho(f"serving {len(deps)} deployments; dexlite/{name} on cron {cron!r}", err=True)
    prefect_serve(*deps)


@app.command()
@_one_line_errors
def deploy(
    work_pool: Annotated[str, typer.Option(help="Prefect work pool (a worker runs its flow runs)")],
    stage_names: Annotated[list[str] | None, typer.Option("--stage", help="stage flow(s) to deploy")] = None,
    pipeline: Annotated[bool, typer.Option(help="deploy the whole pipeline flow `dexlite`")] = False,
    cron: Annotated[str | None, typer.Option(help="schedule of the pipeline deployment (cron, UTC)")] = None,
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    source: Annotated[Path | None, typer.Option(help="project checkout on the worker machine")] = None,
) -> None:
    """Register deployments on a work pool: `dexlite-<stage>/<pool>` (e.g. --stage train on a GPU pool:
    with `dag.train_work_pool: <pool>` the pipeline sends training there) and/or, with --pipeline, the
    whole DAG `dexlite/<pool>` (optionally on --cron). Worker and pipeline must see the same artifact
    store (a shared volume, or an fsspec URL in dag.artifacts)."""
    cfg = _config(config, set_)
    if not stage_names and not pipeline:
        _fail("nothing to deploy: give --stage NAME (repeatable) and/or --pipeline", 2)
    _setup_prefect(out, embedded=False)
    from flows.pipeline import STAGE_FLOWS, dexlite_flow

    unknown = [n for n in stage_names or [] if n not in STAGE_FLOWS]
    if unknown:
        _fail(f"unknown stage(s) {unknown}; stages: {', '.join(STAGE_FLOWS)}", 2)
    root = (source or Path(__file__).resolve().parents[1]).resolve()
    params: dict[str, Any] = {"out": str(out.resolve()), "overrides": parse_overrides(set_ or []) or None}
    if config is not None:
        params["config_file"] = str(config.resolve())
    else:
        params["config"] = cfg.to_dict()
    todo: list[tuple[str, Any, str | None]] = [(f"{n}_flow", STAGE_FLOWS[n], None) for n in stage_names or []]
    if pipeline:
        todo.append(("dexlite_flow", dexlite_flow, cron))
    for attr, flow_obj, schedule in todo:
        remote = flow_obj.from_source(source=str(root), entrypoint=f"flows/pipeline.py:{attr}")
        dep_id = remote.deploy(name=work_pool, work_pool_name=work_pool, parameters=params, cron=schedule,
                               build=False, push=False, print_next_steps=False)
        typer.echo(f"deployment {flow_obj.name}/{work_pool} ({dep_id}) on work pool {work_pool!r}"
                   f"{f' cron {schedule!r}' if schedule else ''}")


# -------------------------------------------------------------------------------------- tools


def _quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


@app.command()
@_one_line_errors
def ingest(
    mesh_or_dir: Annotated[Path | None, typer.Argument(help="mesh file or folder of meshes")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder of object folders")] = Path("objects"),
    bundled: Annotated[bool, typer.Option(help="ingest the bundled object set")] = False,
    config: ConfigOpt = None,
    workers: Annotated[int, typer.Option(help="processes")] = 1,
) -> None:
    """Ingest meshes into object folders (docs/CONTRACTS.md): `ok` lines on stdout, one `FAILED <file>:
    <reason>` line per failure on stderr; exit 0 when at least one mesh was ingested, else 1."""
    _quiet_logging()
    from dexlite_core.stages import CoreNotAvailable, ingest_rows, object_sources

    cfg = _config(config, None)
    try:
        from dexlite_core.objects import ingest_many
    except ImportError as e:
        _fail(f"ingest: dexlite_core.objects.ingest_many not available ({e})")
    from dexlite_core.objects.source import MESH_EXTENSIONS, ObjectSource

    if mesh_or_dir is None or bundled:
        try:
            sources = list(object_sources(cfg).values())
        except CoreNotAvailable as e:
            _fail(str(e))
    elif mesh_or_dir.is_dir():
        files = sorted(f for f in mesh_or_dir.rglob("*") if f.suffix.lower().lstrip(".") in MESH_EXTENSIONS)
        if not files:
            _fail(f"{mesh_or_dir}: no mesh files ({', '.join(MESH_EXTENSIONS)})")
        sources = [ObjectSource.from_path(f) for f in files]
    elif mesh_or_dir.exists():
        sources = [ObjectSource.from_path(mesh_or_dir)]
    else:
        _fail(f"{mesh_or_dir}: no such file or folder")
    out.mkdir(parents=True, exist_ok=True)
    rows = ingest_rows(sources, ingest_many(sources, out, cfg.objects, workers=workers))
    for row in rows:
        if row["ok"]:
            typer.echo(f"ok      {row['source']} -> {row['path']}")
        else:
            typer.secho(_one_line(f"FAILED  {row['source']}: {row['error']}"), err=True, fg=typer.colors.RED)
    n_ok = sum(r["ok"] for r in rows)
    typer.echo(f"{n_ok} ingested, {len(rows) - n_ok} failed -> {out}", err=n_ok == 0)
    raise typer.Exit(0 if n_ok > 0 else 1)


def _parse_pose(text: str) -> Any:
    import numpy as np

    p = Path(text)
    if p.is_file():
        try:
            if p.suffix == ".npy":
                q = np.load(p)
            elif p.suffix == ".json":
                q = np.asarray(json.loads(p.read_text()), dtype=np.float32)
            elif p.suffix == ".parquet":
                from dexlite_core.dataset import table_q
                from storage.parquet import read_grasp_table

                table, note = read_grasp_table(p)
                if note:
                    typer.secho(note, err=True, fg=typer.colors.YELLOW)
                q = table_q(table)
            else:
                q = np.asarray(p.read_text().replace(",", " ").split(), dtype=np.float32)
        except (OSError, ValueError) as e:
            msg = str(e)
            _fail(f"--pose {msg}" if str(p) in msg else f"--pose {p}: {msg}")
    else:
        try:
            q = np.asarray([float(v) for v in text.replace(",", " ").split()], dtype=np.float32)
        except ValueError:
            _fail(f"--pose {text!r}: not a file and not 28 numbers")
    q = np.asarray(q, dtype=np.float32)
    if q.size % 28 or q.size == 0:
        _fail(f"--pose: expected 28 values per pose, got {q.size}")
    return q.reshape(-1, 28)


@app.command()
@_one_line_errors
def show(
    object_dir: Annotated[Path, typer.Argument(help="ingested object folder")],
    pose: Annotated[str, typer.Option(help="28 numbers, or .npy/.json/.txt/.parquet file of poses")],
    out: Annotated[Path, typer.Option("--out", "-o", help="grasp.png or grasp.html")] = Path("grasp.png"),
    index: Annotated[int | None, typer.Option(help="pick one pose of a file")] = None,
) -> None:
    """Picture of a grasp (the hand at pose q beside the object)."""
    _quiet_logging()
    q = _parse_pose(pose)
    if index is not None:
        if not 0 <= index < len(q):
            _fail(f"--index {index}: the file has {len(q)} pose(s)")
        q = q[index : index + 1]
    from dexlite_core.viz import render_grasp

    try:
        path = render_grasp(object_dir, q, out)
    except (FileNotFoundError, ValueError) as e:
        _fail(f"show: {e}")
    typer.echo(str(path))


def _nan_to_none(x: Any) -> Any:
    """A JSON-able copy: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # numpy arrays and scalars
        try:
            return _nan_to_none(x.tolist())
        except (ValueError, AttributeError, TypeError):
            return x
    return x


def _fmt_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def _echo_summary(summary: dict, indent: int = 0) -> None:
    """A summary dict, readably: a dict of plain values on one line, deeper dicts as indented blocks."""
    pad = "  " * indent
    for k, v in summary.items():
        if isinstance(v, dict) and v and any(isinstance(x, dict) for x in v.values()):
            typer.echo(f"{pad}{k}:")
            _echo_summary(v, indent + 1)
        elif isinstance(v, dict):
            typer.echo(f"{pad}{k}: " + ", ".join(f"{kk} {_fmt_value(vv)}" for kk, vv in v.items()))
        else:
            typer.echo(f"{pad}{k}: {_fmt_value(v)}")


# `dexlite evaluate --protocol`: one simulation protocol (the config's Literal names them), or all.
ALL_PROTOCOLS: tuple[str, ...] = typing.get_args(ProtocolName)
Protocol = Enum("Protocol", {p: p for p in (*ALL_PROTOCOLS, "all")}, type=str)


@app.command()
@_one_line_errors
def evaluate(
    grasps: Annotated[Path, typer.Argument(help="grasp table (.parquet): object_id + q (28 floats); "
                                                "see docs/CONTRACTS.md")],
    objects: Annotated[Path, typer.Option(help="folder holding the object folders")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workers: Annotated[int, typer.Option(help="processes")] = 1,
    protocol: Annotated[Protocol | None, typer.Option(
        "--protocol", help="simulation protocol(s); default: the config's evaluate.protocols")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print exactly one JSON object")] = False,
    save: Annotated[Path | None, typer.Option(help="write the per-grasp results (.parquet or .csv)")] = None,
) -> None:
    """Simulation tests of a grasp table (MuJoCo lift + six directions, DexGraspBench protocol): rates
    with n and 95% intervals. Files without DexLite metadata are read in the README's pose convention
    (a note on stderr says so); files whose metadata names another convention are refused."""
    _quiet_logging()
    cfg = _config(config, set_)
    from storage.parquet import read_grasp_table

    try:
        table, note = read_grasp_table(grasps)
    except (FileNotFoundError, ValueError) as e:
        _fail(f"evaluate: {e}")
    if note:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    if table.num_rows == 0:
        _fail(f"evaluate: {grasps}: no grasps (0 rows)")
    if not objects.is_dir():
        _fail(f"evaluate: {objects}: objects folder not found")
    if protocol is None:
        protocols = tuple(cfg.evaluate.protocols)
    elif protocol is Protocol.all:
        protocols = ALL_PROTOCOLS
    else:
        protocols = (protocol.value,)
    try:
        from dexlite_core.sim.evaluate import evaluate_grasps
    except ImportError as e:
        _fail(f"evaluate: dexlite_core.sim.evaluate.evaluate_grasps not available ({e})")
    # with --json, stdout carries the one JSON object only: anything the core prints goes to stderr
    with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        df, summary = evaluate_grasps(table, objects, cfg, workers=workers, protocols=protocols)
    if save is not None:
        if save.suffix == ".csv":
            df.to_csv(save, index=False)
        else:
            df.to_parquet(save, index=False)
    summary = _nan_to_none(dict(summary))
    if as_json:
        sys.stdout.write(json.dumps(summary, allow_nan=False, default=str) + "\n")
        return
    _echo_summary(summary)


@app.command()
@_one_line_errors
def sample(
    checkpoint: Annotated[Path, typer.Option(help="trained CVAE checkpoint.pt")],
    objects: Annotated[Path, typer.Option(help="object folder, or a folder of object folders")],
    n: Annotated[int, typer.Option(help="grasps per object")] = 16,
    out: Annotated[Path, typer.Option("--out", "-o", help="grasp table to write (.parquet)")] = Path("samples.parquet"),
    postopt: Annotated[bool, typer.Option(help="post-optimise (write-up: 200 steps)")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: int = 0,
) -> None:
    """Sample grasps from a trained CVAE (pure synthesis), optionally post-optimised."""
    _quiet_logging()
    cfg = _config(config, set_)
    import numpy as np

    from dexlite_core.dataset import grasps_to_table
    from dexlite_core.device import resolve_device
    from dexlite_core.objects import load_object
    from dexlite_core.sampling import GraspSampler, postoptimise
    from dexlite_core.synthesis import grasps_table
    from storage.parquet import concat_tables, write_grasps

    dirs = [objects] if (objects / "_SUCCESS").is_file() else sorted(p.parent for p in objects.glob("*/_SUCCESS"))
    if not dirs:
        _fail(f"{objects}: no object folder (with _SUCCESS) found")
    device = resolve_device(cfg.dag.device)
    try:
        sampler = GraspSampler.load(checkpoint, device)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    tables = []
    for d in dirs:
        obj = load_object(d)
        q = sampler.sample(obj, n, seed=seed)
        ids = np.arange(n)
        tables.append(grasps_to_table(obj.object_id, q, "raw", grasp_id=ids))
        if postopt:
            res = postoptimise(obj, q, cfg.postopt, cfg.energy, device, seed=seed)
            tables.append(grasps_table(obj.object_id, res, "postopt", grasp_id=ids))
        typer.echo(f"{obj.object_id}: {n} grasps{' (+ post-optimised)' if postopt else ''}", err=True)
    write_grasps(concat_tables(tables), out)
    typer.echo(str(out))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
