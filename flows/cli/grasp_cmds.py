"""``dexlite grasp``: validated grasps for your own meshes in one command, and ``dexlite model``: the
shipped model (show its card, ship a run's model).

``grasp`` = ingest at real size (:mod:`dexlite_core.objects`) -> sample + post-optimise + validate +
rank (:func:`dexlite_core.mesh_grasps.grasp_objects`) -> grasp table (:func:`storage.parquet.write_grasps`),
gallery (:mod:`dexlite_core.gallery`) and exports (:mod:`storage.exports`): the library's calls, in
the order the pipeline's stages make them.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import (
    ConfigOpt,
    SetOpt,
    command,
    fail,
    load_cfg,
    one_line,
    quiet_logging,
    size_option,
    units_option,
)

model_app = typer.Typer(no_args_is_help=True, help="The model shipped in the package (dexlite grasp's default).")


def newest_run_checkpoint(run: Path) -> Path:
    """The checkpoint of the newest committed ``train`` artifact of run folder `run`."""
    from storage import open_store
    from storage.runs import store_root

    store = open_store(store_root("", run))
    keys = [k for k in store.list_keys("train") if store.is_complete("train", k)]
    if not keys:
        raise FileNotFoundError(f"{run}: no trained model in this run folder (artifacts/train/ is empty)")
    newest = max(keys, key=lambda k: (str(store.manifest("train", k).get("created", "")),
                                      (store.local_path("train", k) / "checkpoint.pt").stat().st_mtime_ns))
    return store.local_path("train", newest) / "checkpoint.pt"


def resolve_model(model: Path | None) -> Path:
    """--model: None = the shipped model; a checkpoint file; a folder holding checkpoint.pt; a run
    folder (its newest trained model)."""
    from dexlite_core.shipped_model import shipped_checkpoint

    if model is None:
        return shipped_checkpoint()
    if model.is_file():
        return model
    if (model / "checkpoint.pt").is_file():
        return model / "checkpoint.pt"
    if model.is_dir():
        return newest_run_checkpoint(model)
    raise FileNotFoundError(f"--model {model}: no such checkpoint or run folder")


def _objects_config(cfg: Any, size: str | None, units: str | None) -> Any:
    """The ingest config: real size in `units` (default metres) unless --size gives a longest edge."""
    metres = size_option(size, allow_real=False) if size is not None else None
    return dataclasses.replace(cfg.objects, size=metres, scales=(), units=units_option(units) or cfg.objects.units)


def _summary_line(label: str, row: dict[str, Any], extent_m: float) -> str:
    passed = ", ".join(f"{p} {k}" for p, k in row["passed"].items())
    best = ""
    if row["kept"]:
        q1 = f"q1 {row['best_q1']:.3f}" if row["best_q1"] is not None else "q1 -"
        pen = f"{row['best_penetration_mm']:.1f} mm" if row["best_penetration_mm"] is not None else "-"
        best = f"; best {q1}, penetration {pen}"
    return (f"{label}: {row['valid']}/{row['candidates']} valid ({passed}), kept {row['kept']}"
            f"{best}; longest edge {100 * extent_m:.1f} cm")


@command
def grasp(
    meshes: Annotated[list[Path], typer.Argument(help="mesh files (.obj .stl .ply ...), metres unless --units")],
    n: Annotated[int, typer.Option(help="grasps to keep per object (the best valid ones)")] = 32,
    candidates: Annotated[int | None, typer.Option(
        help="grasps sampled, post-optimised and validated per object (default 2 x --n)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="grasp table to write (.parquet)")] = Path("grasps.parquet"),
    keep_all: Annotated[bool, typer.Option("--all", help="keep the failed grasps too (column valid=false)")] = False,
    units: Annotated[str | None, typer.Option(metavar="m|cm|mm", help="unit of the mesh files (objects.units)")] = None,
    size: Annotated[str | None, typer.Option(
        metavar="METRES", help="scale each mesh to this longest bounding-box edge instead of its real size")] = None,
    model: Annotated[Path | None, typer.Option(
        help="checkpoint .pt, or a run folder (its newest trained model); default: the shipped model")] = None,
    formats: Annotated[list[str] | None, typer.Option(
        "--format", help="also export: dexgraspnet, dexgraspbench, json, mjcf (repeatable)")] = None,
    gallery: Annotated[bool, typer.Option(help="write <out>.html, one 3D card per grasp")] = True,
    workers: Annotated[int, typer.Option(help="processes for ingest and simulation")] = 2,
    seed: Annotated[int, typer.Option(help="sampling seed (per-object seeds derive from it)")] = 0,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Validated Shadow Hand grasps for MESH files at their real size: ingest, sample with the model,
    post-optimise, validate in MuJoCo (lift + six directions, DexGraspBench), keep the valid ones
    ranked (protocol verdicts, then quality q1), write them with their metrics, the object folders
    (<out stem>.objects/) and a gallery; print one summary line per mesh. A mesh that cannot be read
    fails alone (one stderr line naming it; exit 1 after the others are written)."""
    quiet_logging()
    cfg = load_cfg(config, set_)
    t_start = time.perf_counter()
    if n < 1:
        fail(f"--n {n}: expected at least 1", 2)
    n_cand = candidates if candidates is not None else 2 * n
    if n_cand < 1:
        fail(f"--candidates {n_cand}: expected at least 1", 2)
    if formats:
        from storage.exports import check_format

        try:
            formats = list(dict.fromkeys(check_format(f) for f in formats))
        except ValueError as e:
            fail(f"--format: {e}", 2)
    objects_cfg = _objects_config(cfg, size, units)

    from dexlite_core.device import resolve_device
    from dexlite_core.sampling import GraspSampler

    checkpoint = resolve_model(model)
    device = resolve_device(cfg.dag.device)
    sampler = GraspSampler.load(checkpoint, device)

    from dexlite_core.objects import ingest_many
    from dexlite_core.objects.source import ObjectSource

    failures: list[str] = []
    sources: dict[str, ObjectSource] = {}
    for mesh in meshes:
        if not mesh.is_file():
            failures.append(f"FAILED  {mesh}: no such file")
            continue
        sources.setdefault(str(mesh), ObjectSource.from_path(mesh))
    obj_root = out.parent / f"{out.stem}.objects"
    report = ingest_many(list(sources.values()), obj_root, objects_cfg, workers=workers) if sources else None
    failures += [f"FAILED  {f.source}: {f.reason}" for f in (report.failures if report else [])]
    if report is None or not report.ok:
        if len(failures) == 1:  # one mesh, one line
            fail(failures[0])
        for line in failures:
            typer.secho(one_line(line), err=True, fg=typer.colors.RED)
        fail(f"grasp: no mesh could be ingested ({len(failures)} failed)")
    for line in failures:
        typer.secho(one_line(line), err=True, fg=typer.colors.RED)
    failed = len(failures)
    folders = {r.object_id: r.path for r in report.ok}
    labels = {r.object_id: label for r, label in zip(report.ok, _ok_labels(sources, report), strict=True)}
    t_ingest = time.perf_counter() - t_start

    from dexlite_core.mesh_grasps import grasp_objects, keep_best, object_summary
    from dexlite_core.objects import load_object
    from storage.parquet import write_grasps

    run = grasp_objects(sampler, folders, cfg, n_cand, seed=seed, device=device, workers=workers)
    kept = keep_best(run.table, n, keep_all)
    write_grasps(kept, out, sort=False)
    written = [out]
    if gallery:
        from dexlite_core.gallery import gallery_from_table

        written.append(gallery_from_table(kept, obj_root, out.with_suffix(".html")))
    if formats:
        from storage.exports import export_grasps

        for fmt in formats:
            written += export_grasps(kept, obj_root, fmt, out.parent / f"{out.stem}.{fmt}")
    for row in object_summary(run.table, kept, run.protocols, cfg.evaluate.max_penetration):
        extent = max(load_object(folders[row["object_id"]]).meta["extents"])
        typer.echo(_summary_line(labels[row["object_id"]], row, extent))
    secs = {"ingest": t_ingest, **run.seconds, "total": time.perf_counter() - t_start}
    typer.echo("time " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()), err=True)
    for path in written:
        typer.echo(str(path))
    if failed:
        raise typer.Exit(1)


def _ok_labels(sources: dict[str, Any], report: Any) -> list[str]:
    """The mesh path each ingested object came from (ingest keeps the input order of its ok list)."""
    by_name: dict[str, str] = {}
    for label, src in sources.items():
        by_name.setdefault(src.name, label)
    return [by_name.get(r.name, r.name) for r in report.ok]


@model_app.command("show")
def model_show() -> None:
    """Print the shipped model's card (training data, steps, held-out figures)."""
    from dexlite_core.shipped_model import CARD_MD, MODEL_DIR

    path = MODEL_DIR / CARD_MD
    if not path.is_file():
        fail(f"no model card at {path}")
    typer.echo(path.read_text().rstrip())



def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.4g}")


def _stage_paths(run: Path) -> dict[str, Path]:
    """Artifact folder of each stage of the run folder's last run (its ``stages.json``)."""
    import json

    record = run / "stages.json"
    if not record.is_file():
        raise FileNotFoundError(f"{record}: not a finished run folder (no stages.json)")
    return {name: Path(s["path"]) for name, s in json.loads(record.read_text()).items() if s.get("path")}


def model_card(run: Path, config_file: Path | None, notes: list[str] | None = None) -> dict[str, Any]:
    """The card of run `run`'s trained model: provenance, training data and the evaluation report's
    held-out figures (validation and test objects; sources postopt, raw and the no-CVAE baseline)."""
    import datetime
    import json
    import subprocess

    paths = _stage_paths(run)
    missing = [s for s in ("train", "evaluate") if s not in paths]
    if missing:
        raise FileNotFoundError(f"{run}: the run has no {' and no '.join(missing)} stage artifact")
    read = lambda stage, name: json.loads((paths[stage] / name).read_text())  # noqa: E731
    manifest = read("train", "manifest.json")
    split = read("train", "split.json")
    history = read("train", "history.json")
    report = read("evaluate", "report.json")
    summary = json.loads((run / "stages.json").read_text())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[2], timeout=10).stdout.strip()
    except OSError:
        commit = ""
    sources = ("postopt", "raw", "baseline")
    tests = report.get("test_objects") or {}
    figures = {"validation objects": {s: report[s] for s in sources if s in report},
               "test objects": {s: tests[s] for s in sources if s in tests}}
    from dexlite_core.splits import read_groups

    groups = read_groups(paths["objects"] / "objects", [o for ids in split.values() for o in ids])
    counts = {k: f"{len({groups[o] for o in ids})} objects, {len(ids)} instances" for k, ids in split.items() if ids}
    train_sum = summary.get("train", {}).get("summary", {})
    cfg = manifest.get("config", {})
    return {
        "name": f"cvae-{summary['train']['key'][:10]}",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "commit": commit,
        "command": f"dexlite run --config {config_file or '<config>'} --out {run}; dexlite model ship {run}"
                   + (f" --config {config_file}" if config_file else ""),
        "config_file": str(config_file) if config_file else "",
        "training_data": {
            "dataset": "lift-validated seed grasps (DexGraspNet-style annealing, MuJoCo lift test)",
            "objects": counts,
            "train_grasps": train_sum.get("train_grasps"),
            "val_grasps": train_sum.get("val_grasps"),
            "dataset_summary": summary.get("dataset", {}).get("summary"),
        },
        "training": {
            "steps": train_sum.get("steps"),
            "epochs": train_sum.get("epochs") or len(history),
            "final_train_loss": _round(train_sum.get("train_loss")),
            "final_val_loss": _round(train_sum.get("val_loss")),
            "config": cfg.get("train", cfg),
        },
        "figures": figures,
        "protocols": report.get("protocols"),
        "max_penetration_m": report.get("max_penetration_m"),
        "notes": list(notes or []),
        "validation_objects": split.get("val"),
        "test_objects": split.get("test"),
    }


@model_app.command("ship")
def model_ship(
    run: Annotated[Path, typer.Argument(help="finished run folder (dexlite run --out RUN)")],
    config: Annotated[Path | None, typer.Option(help="the config file the run used (recorded in the card)")] = None,
    notes: Annotated[list[str] | None, typer.Option("--note", help="a line for the card's notes (repeatable)")] = None,
) -> None:
    """Replace the shipped model with run RUN's trained model (float16 weights) and write its card from
    the run's own artifacts (training data, steps, held-out figures)."""
    from dexlite_core.shipped_model import MODEL_DIR, write_shipped

    try:
        card = model_card(run, config, notes)
        path = write_shipped(_stage_paths(run)["train"] / "checkpoint.pt", card)
    except (OSError, ValueError, KeyError) as e:
        fail(f"model ship: {e}")
    typer.echo(f"{path} ({path.stat().st_size / 1e6:.1f} MB); card {MODEL_DIR / 'card.md'}")


def _register() -> None:
    from flows.cli.common import app

    app.add_typer(model_app, name="model")


_register()
