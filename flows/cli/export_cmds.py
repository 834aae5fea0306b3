"""``dexlite export``: a grasp table in the field's formats (DexGraspNet, DexGraspBench, JSON, MJCF),
through :func:`storage.exports.export_grasps`; layouts in docs/CONTRACTS.md ("Exports")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import ConfigOpt, SetOpt, command, fail, load_cfg, quiet_logging, read_grasps_arg


@command
def export(
    grasps: Annotated[Path, typer.Argument(help="grasp table (.parquet): object_id + q (28 floats); "
                                                "see docs/CONTRACTS.md")],
    objects: Annotated[Path, typer.Option(help="folder holding the object folders")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder (json: also a .json file); with "
                                                          "several --format, one sub-folder per format")],
    formats: Annotated[list[str] | None, typer.Option(
        "--format", "-f", help="dexgraspnet, dexgraspbench, json or mjcf (repeatable)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Export a grasp table: DexGraspNet .npy per object, DexGraspBench .npy per grasp (pregrasp and
    squeeze from the dexgraspbench protocol's rule, `dexgraspbench.*` of the config), one JSON file, or
    an MJCF scene per object (one keyframe per grasp). Prints one line per format."""
    from storage.exports import EXPORT_FORMATS, check_format

    quiet_logging()
    if not formats:
        fail(f"export: give at least one --format ({', '.join(EXPORT_FORMATS)})")
    fmts = list(dict.fromkeys(check_format(f) for f in formats))  # ValueError -> one line, exit 1
    cfg = load_cfg(config, set_)
    table = read_grasps_arg("export", grasps, objects)
    from storage.exports import export_grasps

    for fmt in fmts:
        target = out / fmt if len(fmts) > 1 else out
        files = export_grasps(table, objects, fmt, target, dexgraspbench=cfg.dexgraspbench)
        typer.echo(f"{fmt}: {len(files)} file(s) -> {target}")
