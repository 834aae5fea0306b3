"""``dexlite dataset ...``: grasp datasets. ``dataset stats PATH``: per-split counts, rates and diversity
of a grasp table, and its dataset card (:mod:`dexlite_core.dataset_card`).

PATH is a grasp file (``.parquet``), an artifact folder holding ``grasps.parquet``, a run folder (its
newest ``dataset`` stage run from ``stages.json``, else the newest ``artifacts/dataset/<key>/``) or an
artifact store root. For a pipeline artifact the split comes from the ``train`` artifact trained on
that dataset (``split.json``), the object groups from the ``objects`` artifact upstream of it, and the
provenance from the manifests; ``--split`` / ``--objects`` name them for any file.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli.common import app, one_line_errors

GRASPS = "grasps.parquet"
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"

dataset_app = typer.Typer(no_args_is_help=True, help="Grasp datasets: statistics and a dataset card.")
app.add_typer(dataset_app, name="dataset")


def dataset_command(name: str) -> Any:
    """Register ``dexlite dataset <name>``; expected errors are one stderr line (``one_line_errors``)."""

    def register(fn: Any) -> Any:
        dataset_app.command(name)(one_line_errors(fn))
        return fn

    return register


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from e


def _manifest(folder: Path) -> dict:
    man = _json(folder / MANIFEST)
    return man if isinstance(man, dict) else {}


def _committed(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / SUCCESS).is_file()


def _newest_artifact(root: Path, stage: str) -> Path | None:
    """The most recently committed ``<root>/<stage>/<key>/`` holding ``grasps.parquet``."""
    folders = [d for d in (root / stage).glob("*") if not d.name.startswith(".") and _committed(d)
               and (d / GRASPS).is_file()] if (root / stage).is_dir() else []
    return max(folders, key=lambda d: (d / SUCCESS).stat().st_mtime, default=None)


def _round(label: str) -> int:
    m = re.fullmatch(r"[^@]+@round(\d+)", label)
    return int(m.group(1)) if m else 1


@dataclass
class Located:
    grasps: Path
    run: Path | None = None  # the run folder, when PATH was one
    artifact: Path | None = None  # the committed artifact folder holding the file
    manifest: dict | None = None


def locate(path: Path) -> Located:
    """The grasp file PATH means (see the module docstring); FileNotFoundError naming PATH otherwise."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    run = None
    if path.is_file():
        grasps = path
    elif (path / GRASPS).is_file():
        grasps = path / GRASPS
    elif (path / "stages.json").is_file() or (path / "artifacts").is_dir():
        run, found = path, None
        if (path / "stages.json").is_file():
            runs = _json(path / "stages.json")
            rows = [(label, r) for label, r in (runs.items() if isinstance(runs, dict) else [])
                    if isinstance(r, dict) and label.split("@")[0] == "dataset" and r.get("path")]
            if rows:
                label, row = max(rows, key=lambda lr: _round(lr[0]))
                if "://" in str(row["path"]):
                    raise ValueError(f"{path / 'stages.json'}: {label} is in a remote store ({row['path']}); "
                                     "pass its grasps.parquet")
                found = Path(row["path"]) if (Path(row["path"]) / GRASPS).is_file() else None
        found = found or _newest_artifact(path / "artifacts", "dataset")
        if found is None:
            raise FileNotFoundError(f"{path}: run folder without a dataset stage artifact "
                                    "(run `dexlite stage dataset`)")
        grasps = found / GRASPS
    elif (path / "dataset").is_dir() and (found := _newest_artifact(path, "dataset")) is not None:
        grasps = found / GRASPS
    else:
        raise FileNotFoundError(f"{path}: no {GRASPS}, run folder (stages.json) or dataset artifact in this folder")
    folder = grasps.parent
    if _committed(folder):
        man = _manifest(folder)
        if man.get("stage") and man.get("key"):
            return Located(grasps, run, folder, man)
    return Located(grasps, run)


def _artifact(store: Path, stage: str, key: Any) -> Path | None:
    folder = store / stage / str(key)
    return folder if isinstance(key, str) and _committed(folder) else None


def find_split(loc: Located) -> Path | None:
    """``split.json`` beside the file, else that of the newest train artifact whose manifest names
    this dataset artifact as its input."""
    if (loc.grasps.parent / "split.json").is_file():
        return loc.grasps.parent / "split.json"
    if loc.artifact is None or loc.manifest is None:
        return None
    store, key = loc.artifact.parent.parent, loc.manifest["key"]
    trains = [d for d in (store / "train").glob("*") if _committed(d) and (d / "split.json").is_file()
              and (_manifest(d).get("inputs") or {}).get("dataset") == key] if (store / "train").is_dir() else []
    best = max(trains, key=lambda d: (d / SUCCESS).stat().st_mtime, default=None)
    return None if best is None else best / "split.json"


def find_objects(loc: Located) -> Path | None:
    """The ``objects`` artifact's object folders upstream of the artifact (following manifest inputs)."""
    if loc.artifact is None or loc.manifest is None:
        return None
    store = loc.artifact.parent.parent
    todo, seen = [loc.manifest], set()
    while todo:
        man = todo.pop(0)
        inputs = man.get("inputs") if isinstance(man.get("inputs"), dict) else {}
        if (folder := _artifact(store, "objects", inputs.get("objects"))) is not None:
            return folder / "objects"
        for name, key in inputs.items():
            up = _artifact(store, str(name).split("@")[0], key)
            if up is not None and up not in seen:
                seen.add(up)
                todo.append(_manifest(up))
    return None


def read_split(path: Path) -> dict[str, list[str]]:
    doc = _json(path)
    if not isinstance(doc, dict) or not all(isinstance(v, list) for v in doc.values()):
        raise ValueError(f"{path}: expected a JSON object of split name -> list of object ids")
    return {str(k): [str(x) for x in v] for k, v in doc.items()}


def provenance(loc: Located) -> dict[str, Any]:
    """The generating stage run: stage, key, config digest (as ``PipelineConfig.digest`` hashes the
    stage's config sections), config, code version, created, inputs, run folder."""
    out: dict[str, Any] = {}
    if loc.run is not None:
        out["run"] = str(loc.run.resolve())
    man = loc.manifest
    if man is None:
        return out
    config = man.get("config")
    out.update({"stage": man.get("stage"), "key": man.get("key"), "artifact": str(loc.artifact)})
    if isinstance(config, dict):
        out["config_digest"] = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    out.update({"code_version": man.get("code_version"), "created": man.get("created"),
                "inputs": man.get("inputs"), "config": config})
    stats = loc.artifact / "stats.json" if loc.artifact is not None else None
    if stats is not None and stats.is_file():
        doc = _json(stats)
        if isinstance(doc, dict) and "round" in doc:
            out["round"] = doc["round"]
    return {k: v for k, v in out.items() if v is not None}


def card_folder(loc: Located, out: Path | None) -> Path:
    """``--out``, else beside the file; never inside a committed artifact (its manifest would no longer
    match): then the run folder (PATH's, or the parent of an ``artifacts`` store)."""
    if out is not None:
        return out
    if loc.artifact is None:
        return loc.grasps.parent
    if loc.run is not None:
        return loc.run
    store = loc.artifact.parent.parent
    if store.name == "artifacts":
        return store.parent
    raise ValueError(f"{loc.grasps}: inside a committed artifact (a card there would break its manifest); pass --out")


def _echo_table(rows: list[list[str]], header: tuple[str, ...]) -> None:
    widths = [max(len(r[i]) for r in [list(header), *rows]) for i in range(len(header))]
    for r in [list(header), *rows]:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        typer.echo("  ".join(cells))


@dataset_command("stats")
def dataset_stats(
    path: Annotated[Path, typer.Argument(help="grasps.parquet, an artifact folder holding one, a run folder "
                                              "(its newest dataset stage) or an artifact store")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="folder for dataset_card.json / .md "
                                             "(default: beside the file; the run folder for an artifact)")] = None,
    split: Annotated[Path | None, typer.Option(help="split.json (split -> object ids); default: the train "
                                                    "stage's for this dataset, or split.json beside the file")] = None,
    objects: Annotated[Path | None, typer.Option(help="folder of object folders (meta.json group); default: "
                                                      "the objects artifact upstream")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the card as one JSON object")] = False,
) -> None:
    """Per split (train / val / test from split.json, else all): objects, instances, grasps, lift and
    six-direction success rates with 95% Wilson intervals, diversity; writes dataset_card.json and
    dataset_card.md."""
    loc = locate(path)
    if split is not None and not split.is_file():
        raise FileNotFoundError(f"--split {split}: no such file")
    if objects is not None and not objects.is_dir():
        raise FileNotFoundError(f"--objects {objects}: no such folder")
    from dexlite_core.dataset_card import SPLIT_HEADER, build_card, object_groups, split_rows, write_card
    from storage.parquet import read_grasp_table

    table, note = read_grasp_table(loc.grasps)
    if note:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    split_path = split or find_split(loc)
    objects_root = objects or find_objects(loc)
    ids = sorted(set(table.column("object_id").to_pylist()))
    groups = object_groups(objects_root, ids) if objects_root is not None else None
    card = build_card(
        table, read_split(split_path) if split_path is not None else None, groups,
        file=str(loc.grasps), provenance=provenance(loc), schema=table.schema,
        split_from=str(split_path) if split_path is not None else None,
        groups_from=str(objects_root) if groups is not None else None,
    )
    js, md = write_card(card, card_folder(loc, out))
    if as_json:
        typer.echo(json.dumps(card, allow_nan=False))
        return
    typer.echo(f"dataset: {loc.grasps}")
    _echo_table(split_rows(card), SPLIT_HEADER)
    typer.echo(f"split: {card['split_from'] or 'none (all)'}; objects: "
               f"{card['groups_from'] or 'no objects folder (instances = objects)'}")
    if card["provenance"].get("key"):
        p = card["provenance"]
        typer.echo(f"generated by: {p['stage']}/{p['key']} (config {p.get('config_digest', '?')}, "
                   f"created {p.get('created', '?')})")
    typer.echo(f"card: {js} {md}")
