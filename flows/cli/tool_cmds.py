"""Tools on files, outside the DAG: ``ingest`` (meshes -> object folders), ``show`` (a picture of a
grasp), ``evaluate`` (simulation tests of any grasp table), ``sample`` (a trained CVAE on object
folders). Each calls the same library functions as the corresponding stage."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import typing
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from dexlite_core.config import Protocol as ProtocolName
from flows.cli.common import (
    ConfigOpt,
    SetOpt,
    command,
    fail,
    load_cfg,
    one_line,
    quiet_logging,
    read_grasps_arg,
    size_option,
    units_option,
)


@command
def ingest(
    mesh_or_dir: Annotated[Path | None, typer.Argument(help="mesh file or folder of meshes")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder of object folders")] = Path("objects"),
    bundled: Annotated[bool, typer.Option(help="ingest the configured selection (select.*)")] = False,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    workers: Annotated[int, typer.Option(help="processes")] = 1,
    size: Annotated[str | None, typer.Option(
        metavar="METRES", help="longest bbox edge to normalise to, or 'real' to keep the mesh's size "
        "(objects.size)")] = None,
    units: Annotated[str | None, typer.Option(
        metavar="m|cm|mm", help="unit of the mesh files, kept at real size unless --size is given "
        "(objects.units)")] = None,
) -> None:
    """Ingest meshes into object folders (docs/CONTRACTS.md): `ok` lines on stdout, one `FAILED <file>:
    <reason>` line per failure on stderr (a single mesh: the summary on that same line); exit 0 when at
    least one mesh was ingested, else 1."""
    import dataclasses

    quiet_logging()
    cfg = load_cfg(config, sets)
    objects = cfg.objects
    if size is not None:
        objects = dataclasses.replace(objects, size=size_option(size))
    if units_option(units) is not None:
        # units only matter at real size: without --size, giving them means "keep the file's size"
        objects = dataclasses.replace(objects, units=units, size=objects.size if size is not None else None)
    from dexlite_core.objects import ingest_many
    from dexlite_core.objects.select import ingest_rows, mesh_files, scaled, select_sources
    from dexlite_core.objects.source import MESH_EXTENSIONS, ObjectSource

    if mesh_or_dir is None or bundled:
        sources = list(select_sources(cfg.select, objects).values())
    else:
        if not mesh_or_dir.exists():
            fail(f"{mesh_or_dir}: no such file or folder")
        files = mesh_files(mesh_or_dir)
        if not files:
            fail(f"{mesh_or_dir}: no mesh files ({', '.join(MESH_EXTENSIONS)})")
        sources = list(scaled({str(f): ObjectSource.from_path(f) for f in files}, objects.scales).values())
    out.mkdir(parents=True, exist_ok=True)
    rows = ingest_rows(sources, ingest_many(sources, out, objects, workers=workers))
    n_ok = sum(r["ok"] for r in rows)
    total = f"{n_ok} ingested, {len(rows) - n_ok} failed -> {out}"
    alone = len(rows) == 1 and n_ok == 0  # a single failed mesh: one stderr line, like any command's error
    for row in rows:
        if row["ok"]:
            typer.echo(f"ok      {row['source']} -> {row['path']}")
        else:
            line = f"FAILED  {row['source']}: {row['error']}" + (f" ({total})" if alone else "")
            typer.secho(one_line(line), err=True, fg=typer.colors.RED)
    if not alone:
        typer.echo(total, err=n_ok == 0)
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
            fail(f"--pose {msg}" if str(p) in msg else f"--pose {p}: {msg}")
    else:
        try:
            q = np.asarray([float(v) for v in text.replace(",", " ").split()], dtype=np.float32)
        except ValueError:
            fail(f"--pose {text!r}: not a file and not 28 numbers")
    q = np.asarray(q, dtype=np.float32)
    if q.size % 28 or q.size == 0:
        fail(f"--pose: expected 28 values per pose, got {q.size}")
    return q.reshape(-1, 28)


@command
def show(
    object_dir: Annotated[Path, typer.Argument(help="ingested object folder")],
    pose: Annotated[str, typer.Option(help="28 numbers, or .npy/.json/.txt/.parquet file of poses")],
    out: Annotated[Path, typer.Option("--out", "-o", help="grasp.png or grasp.html")] = Path("grasp.png"),
    index: Annotated[int | None, typer.Option(help="pick one pose of a file")] = None,
) -> None:
    """Picture of a grasp (the hand at pose q beside the object)."""
    quiet_logging()
    q = _parse_pose(pose)
    if index is not None:
        if not 0 <= index < len(q):
            fail(f"--index {index}: the file has {len(q)} pose(s)")
        q = q[index : index + 1]
    from dexlite_core.viz import render_grasp

    try:
        path = render_grasp(object_dir, q, out)
    except (FileNotFoundError, ValueError) as e:
        fail(f"show: {e}")
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


@command
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
    quiet_logging()
    cfg = load_cfg(config, set_)
    table = read_grasps_arg("evaluate", grasps, objects)
    if protocol is None:
        protocols = tuple(cfg.evaluate.protocols)
    elif protocol is Protocol.all:
        protocols = ALL_PROTOCOLS
    else:
        protocols = (protocol.value,)
    from dexlite_core.sim.evaluate import evaluate_grasps

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


@command
def sample(
    checkpoint: Annotated[Path, typer.Option(help="trained CVAE checkpoint.pt")],
    objects: Annotated[Path, typer.Option(help="object folder, or a folder of object folders")],
    n: Annotated[int, typer.Option(help="grasps per object")] = 16,
    out: Annotated[Path, typer.Option("--out", "-o", help="grasp table to write (.parquet)")] = Path("samples.parquet"),
    postopt: Annotated[bool, typer.Option(help="post-optimise (write-up: 200 steps)")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    seed: Annotated[int, typer.Option(help="sample.seed: per-object seeds derive from it")] = 0,
) -> None:
    """Sample grasps from a trained CVAE (pure synthesis), optionally post-optimised: the sample and
    postopt stages' library calls on the given object folders."""
    quiet_logging()
    cfg = load_cfg(config, set_)
    import dataclasses

    from dexlite_core.dataset import concat_tables
    from dexlite_core.device import resolve_device
    from dexlite_core.sampling import GraspSampler, postoptimise_objects, sample_objects
    from storage.parquet import write_grasps

    dirs = [objects] if (objects / "_SUCCESS").is_file() else sorted(p.parent for p in objects.glob("*/_SUCCESS"))
    if not dirs:
        fail(f"{objects}: no object folder (with _SUCCESS) found")
    device = resolve_device(cfg.dag.device)
    sampler = GraspSampler.load(checkpoint, device)
    folders = {d.name: d for d in dirs}
    sc = dataclasses.replace(cfg.sample, n_per_object=n, expand_per_grasp=0, seed=seed)
    table = sample_objects(sampler, folders, sc)
    if postopt:
        table = concat_tables([table, postoptimise_objects(table, folders, cfg.postopt, cfg.energy, device)])
    write_grasps(table, out)
    for oid in folders:
        typer.echo(f"{oid}: {n} grasps{' (+ post-optimised)' if postopt else ''}", err=True)
    typer.echo(str(out))
