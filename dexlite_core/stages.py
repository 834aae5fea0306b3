"""The DAG's stages as plain functions (Kedro-style nodes), and the table that wires them.

No Prefect here: ``tasks/`` wraps these functions in Prefect tasks, ``flows/`` chains them, the CLI
(``dexlite stage`` / ``dexlite status``) and the tests read :data:`STAGES`.

Every stage is ``stage_<name>(inputs, out_dir, cfg) -> dict``: ``inputs`` maps each upstream stage
name to its committed artifact folder, ``out_dir`` is an empty folder the stage fills (the artifact
store commits it atomically afterwards), and the returned dict is a small JSON-able summary.

Stages that fan out (simulation, optimisation) also declare :class:`Shards`: ``items`` lists the
work items (object ids), ``run`` processes one shard of items into its own folder, ``merge`` turns
the shard folders into the stage's folder. The flows run the shards as parallel tasks (tens to
hundreds of objects per task, never one task per grasp); ``stage_<name>`` runs them in series.

Cache keys (:func:`stage_key`): a hash of the *content* of the upstream artifacts (their manifests'
file hashes; run records and pictures excluded: :func:`is_volatile`), of the config sections the stage
reads (``PipelineConfig.digest``), of extra inputs (mesh files named in the config) and of the code
version (the syntax trees, without comments and docstrings, of the stage's own functions and of the
``dexlite_core`` modules it lists: :func:`code_hash`). A stage whose upstream
was rebuilt with identical content is therefore not rerun (early cut-off).

Artifact layout of each stage (files under the stage folder):

==========  ===============================================================================
objects     ``objects/<object_id>/`` (docs/CONTRACTS.md), ``objects.json`` (ingested, failed)
stability   ``stability.json`` (per object: kept, reason, displacement, rotation), ``kept.json``
seed        ``grasps.parquet`` (source "seed", energy terms, contact_idx)
lift        ``grasps.parquet`` (the seed grasps with the lift-test columns), ``lift.json``
dataset     ``grasps.parquet`` (the training set), ``stats.json``
train       ``checkpoint.pt``, ``history.json``, ``loss.png``, ``split.json``
sample      ``grasps.parquet`` (sources "raw" and "expanded")
postopt     ``grasps.parquet`` (source "postopt"; grasp_id = the raw grasp's grasp_id)
evaluate    ``report.json``, ``report.md``, ``grasps.parquet`` (the evaluated grasps)
==========  ===============================================================================
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import functools
import hashlib
import importlib
import inspect
import json
import logging
import math
import os
import shutil
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dexlite_core.config import PipelineConfig

log = logging.getLogger("dexlite.stages")

CORE_DIR = Path(__file__).resolve().parent
# Never part of an artifact's content digest: run records and pictures, which no stage reads as input
VOLATILE_FILES = frozenset({"summary.json", "timing.json", "run.json"})
VOLATILE_SUFFIXES = (".png", ".html", ".log")


def is_volatile(relpath: str) -> bool:
    """A file that does not count as an artifact's content (see :data:`VOLATILE_FILES`)."""
    return relpath in VOLATILE_FILES or relpath.endswith(VOLATILE_SUFFIXES)
STAGE_REGISTRY_ENV = "DEXLITE_STAGE_REGISTRY"  # "module:attribute": substitute stage table (tests, plugins)
FAULT_ENV = "DEXLITE_FAULT"  # "<stage>[,<stage>...]": the named stages fail on purpose (fault injection)

Inputs = dict[str, Path]
StageFn = Callable[..., dict]


class StageFault(RuntimeError):
    """An injected failure (``DEXLITE_FAULT``)."""


class CoreNotAvailable(NotImplementedError):
    """The dexlite_core function a stage calls is not written yet (message names stage and API)."""


@dataclass(frozen=True)
class Shards:
    """Fan-out of a stage: ``items`` -> shards of ``run`` -> ``merge``."""

    items: Callable[[Inputs, PipelineConfig], list[str]]
    run: Callable[[Inputs, Path, PipelineConfig, list[str]], dict]
    merge: Callable[[Inputs, list[Path], Path, PipelineConfig], dict]


@dataclass(frozen=True)
class StageSpec:
    """One node of the DAG.

    deps: upstream stages (their artifact folders are the stage's ``inputs``); config: the
    ``PipelineConfig`` sections the stage reads (its cache key hashes exactly these); code:
    ``dexlite_core`` modules (dotted, relative: "sim.stability", "optim") whose source keys the cache
    besides the stage's own functions; extra_inputs: content hashes of files outside the store that
    the stage reads (mesh files named in the config); resumable: the stage gets a persistent
    ``work_dir`` (checkpoints survive a killed run); gpu: routed to the GPU work pool if configured.
    """

    name: str
    run: StageFn
    deps: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    shards: Shards | None = None
    extra_inputs: Callable[[PipelineConfig], dict[str, str]] | None = None
    resumable: bool = False
    gpu: bool = False
    description: str = ""
    version: int = 1
    feedback: tuple[str, ...] = ()


PREVIOUS_SUFFIX = "@previous"


def previous(stage: str) -> str:
    """Input name of `stage`'s artifact from the previous round (``dataset@previous``)."""
    return stage + PREVIOUS_SUFFIX


def input_stage(name: str) -> str:
    """The stage an input name refers to: ``dataset@previous`` -> ``dataset``."""
    return name.removesuffix(PREVIOUS_SUFFIX)


def input_names(spec: StageSpec, available: Iterable[str]) -> list[str]:
    """The inputs of `spec` given what is `available`: its deps, plus its feedback inputs when present."""
    have = set(available)
    return list(spec.deps) + [previous(f) for f in spec.feedback if previous(f) in have]


# ------------------------------------------------------------------------------------ the graph


def get_stages() -> dict[str, StageSpec]:
    """The stage table in use: :data:`STAGES`, or the one named by ``$DEXLITE_STAGE_REGISTRY``
    ("package.module:ATTRIBUTE", used by tests to run the DAG machinery on toy stages)."""
    ref = os.environ.get(STAGE_REGISTRY_ENV, "").strip()
    if not ref:
        return STAGES
    mod, _, attr = ref.partition(":")
    table = getattr(importlib.import_module(mod), attr or "STAGES")
    check_graph(table)
    return table


def check_graph(stages: Mapping[str, StageSpec]) -> None:
    """Raise ValueError for unknown dependencies, a name mismatch or a cycle."""
    for name, spec in stages.items():
        if spec.name != name:
            raise ValueError(f"stage table: key {name!r} holds spec named {spec.name!r}")
        for d in spec.deps:
            if d not in stages:
                raise ValueError(f"stage {name!r} depends on unknown stage {d!r}")
    topo_order(stages)


def topo_order(stages: Mapping[str, StageSpec], targets: Iterable[str] | None = None) -> list[str]:
    """Stages in dependency order (table order among independent ones); with ``targets``, only the
    targets and everything upstream of them."""
    want = set(stages) if targets is None else upstream(stages, targets)
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str, path: tuple[str, ...]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise ValueError(f"stage graph has a cycle: {' -> '.join((*path, n))}")
        state[n] = 1
        for d in stages[n].deps:
            visit(d, (*path, n))
        state[n] = 2
        order.append(n)

    for n in stages:
        if n in want:
            visit(n, ())
    return order


def upstream(stages: Mapping[str, StageSpec], targets: Iterable[str]) -> set[str]:
    """The targets and all their (transitive) dependencies."""
    out: set[str] = set()
    todo = list(targets)
    while todo:
        n = todo.pop()
        if n not in stages:
            raise KeyError(f"unknown stage {n!r}; stages: {', '.join(stages)}")
        if n not in out:
            out.add(n)
            todo.extend(stages[n].deps)
    return out


def downstream(stages: Mapping[str, StageSpec], name: str) -> list[str]:
    """Stages that (transitively) depend on ``name``, in dependency order."""
    hit = {name}
    for n in topo_order(stages):
        if any(d in hit for d in stages[n].deps):
            hit.add(n)
    return [n for n in topo_order(stages) if n in hit and n != name]


def store_root(cfg: PipelineConfig, out: str | os.PathLike[str]) -> str:
    """The artifact store of a run: ``dag.artifacts`` (folder or fsspec URL) or ``<out>/artifacts``."""
    return cfg.dag.artifacts or str(Path(out).resolve() / "artifacts")


# -------------------------------------------------------------------------------------- keys


def _source_files(module: str) -> list[Path]:
    """Source files of ``dexlite_core.<module>`` (a module or a whole package), without importing."""
    base = CORE_DIR.joinpath(*module.split("."))
    if base.is_dir():
        return sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                      and p.suffix not in {".pyc", ".pyo"})
    f = base.with_suffix(".py")
    return [f] if f.is_file() else []


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_text(source: str) -> str:
    """What a stage's code version hashes of Python `source`: its syntax tree without docstrings,
    so editing a comment, a docstring or the layout does not invalidate cached artifacts (falls
    back to the text itself where it does not parse)."""
    try:
        return ast.dump(_strip_docstrings(ast.parse(textwrap.dedent(source))))
    except SyntaxError:
        return source


def _fn_source(fn: Callable[..., Any]) -> str:
    try:
        return code_text(inspect.getsource(fn))
    except (OSError, TypeError):
        return getattr(fn, "__qualname__", repr(fn))


@functools.lru_cache(maxsize=512)
def _file_digest(path: Path, mtime_ns: int, size: int) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".py":
        data = code_text(data.decode("utf-8")).encode()
    return hashlib.sha256(data).digest()


def _names(code: Any) -> set[str]:
    out = set(code.co_names)
    for c in code.co_consts:
        if hasattr(c, "co_names"):
            out |= _names(c)
    return out


def _helpers(fns: Iterable[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """The functions and every same-module function they call (transitively), in a stable order."""
    seen: dict[str, Callable[..., Any]] = {}
    todo = list(fns)
    while todo:
        fn = inspect.unwrap(todo.pop())
        code = getattr(fn, "__code__", None)
        qual = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
        if qual in seen:
            continue
        seen[qual] = fn
        if code is None:
            continue
        glb = getattr(fn, "__globals__", {})
        for name in _names(code):
            obj = glb.get(name)
            if inspect.isfunction(obj) and obj.__module__ == fn.__module__:
                todo.append(obj)
    return [seen[k] for k in sorted(seen)]


def code_hash(spec: StageSpec) -> str:
    """Code version of a stage: the code of its functions and of the same-module helpers they call,
    its listed ``dexlite_core`` modules' files (Python ones as :func:`code_text`), and its version
    number."""
    h = hashlib.sha256(f"{spec.name}:{spec.version}".encode())
    fns: list[Callable[..., Any]] = [spec.run]
    if spec.shards is not None:
        fns += [spec.shards.items, spec.shards.run, spec.shards.merge]
    for fn in _helpers(fns):
        h.update(_fn_source(fn).encode())
    for mod in spec.code:
        for f in _source_files(mod):
            h.update(f.relative_to(CORE_DIR).as_posix().encode() + b"\0")
            st = f.stat()
            h.update(_file_digest(f, st.st_mtime_ns, st.st_size))
    return h.hexdigest()[:16]


def config_part(cfg: PipelineConfig, spec: StageSpec) -> dict[str, Any]:
    """The config sections a stage reads (recorded in its manifest)."""
    d = cfg.to_dict()
    return {s: d[s] for s in spec.config}


def stage_key(spec: StageSpec, cfg: PipelineConfig, upstream_digests: Mapping[str, str]) -> str:
    """Cache key of a stage from its upstream artifacts' content digests, config and code."""
    from storage.artifacts import content_key

    missing = [d for d in spec.deps if d not in upstream_digests]
    if missing:
        raise KeyError(f"stage {spec.name!r}: no content digest for upstream {missing}")
    inputs = {d: upstream_digests[d] for d in input_names(spec, upstream_digests)}
    if spec.extra_inputs is not None:
        inputs.update({f"file:{k}": v for k, v in spec.extra_inputs(cfg).items()})
    sections = cfg.digest(*spec.config) if spec.config else ""
    return content_key(inputs, {"sections": list(spec.config), "digest": sections}, code_hash(spec))


def artifact_digest(store: Any, stage: str, key: str) -> str:
    """Content digest of a committed artifact: its manifest's file hashes, volatile files excluded."""
    from storage.artifacts import hash_json

    files = store.manifest(stage, key)["files"]
    return hash_json({rel: f["sha256"] for rel, f in files.items() if not is_volatile(rel)})[:20]


@dataclass
class StageState:
    """What ``dexlite status`` prints for one stage."""

    name: str
    state: str  # "done" | "missing" | "blocked" (an upstream stage is not done)
    key: str | None = None
    path: str | None = None
    digest: str | None = None
    other_keys: list[str] = dataclasses.field(default_factory=list)  # committed outputs of other configs
    summary: dict[str, Any] | None = None


def plan(store: Any, cfg: PipelineConfig, stages: Mapping[str, StageSpec] | None = None,
         targets: Iterable[str] | None = None) -> list[StageState]:
    """Status of every stage (or the targets and their upstream) for ``cfg``, reading only manifests."""
    stages = stages if stages is not None else get_stages()
    digests: dict[str, str] = {}
    out = []
    for name in topo_order(stages, targets):
        spec = stages[name]
        others = store.list_keys(name) if name in store.stages() else []
        if any(d not in digests for d in spec.deps):
            out.append(StageState(name, "blocked", other_keys=others))
            continue
        key = stage_key(spec, cfg, digests)
        others = [k for k in others if k != key]
        if store.is_complete(name, key):
            digests[name] = artifact_digest(store, name, key)
            summary = None
            try:
                summary = store.read_json(name, key, "summary.json")
            except Exception:  # noqa: BLE001 - a summary is optional
                summary = None
            out.append(StageState(name, "done", key, str(store.stage_dir(name, key)), digests[name], others,
                                  summary))
        else:
            out.append(StageState(name, "missing", key, str(store.stage_dir(name, key)), None, others))
    return out


def check_fault(stage: str) -> None:
    """Raise :class:`StageFault` when ``$DEXLITE_FAULT`` names ``stage`` (fault injection)."""
    names = {s.strip() for s in os.environ.get(FAULT_ENV, "").split(",") if s.strip()}
    if stage in names or "*" in names:
        raise StageFault(f"injected fault in stage {stage!r} ({FAULT_ENV}={os.environ[FAULT_ENV]})")


# --------------------------------------------------------------------------------- serial runs


def shard_items(items: Sequence[str], shard_size: int) -> list[list[str]]:
    """Consecutive shards of at most ``shard_size`` items (at least one shard, maybe empty)."""
    size = max(1, int(shard_size))
    return [list(items[i : i + size]) for i in range(0, len(items), size)] or [[]]


def run_serial(spec: StageSpec, inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """A sharded stage run in this process: every shard in turn, then the merge."""
    assert spec.shards is not None
    items = spec.shards.items(inputs, cfg)
    scratch = out_dir / ".shards"
    dirs = []
    try:
        for i, part in enumerate(shard_items(items, cfg.dag.shard_size)):
            d = scratch / f"{i:04d}"
            d.mkdir(parents=True)
            spec.shards.run(inputs, d, cfg, part)
            dirs.append(d)
        return spec.shards.merge(inputs, dirs, out_dir, cfg)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------- helpers


def _write_json(path: Path, obj: Any) -> None:
    from storage.artifacts import atomic_write_json

    atomic_write_json(path, obj)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (upstream artifact incomplete?)") from None
    except ValueError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from e


def _need(stage: str, what: str, load: Callable[[], Any]) -> Any:
    """Import a core API lazily; a missing one raises :class:`CoreNotAvailable` naming the stage."""
    try:
        return load()
    except (ImportError, AttributeError) as e:
        raise CoreNotAvailable(f"stage {stage}: core not available yet (needs {what}: {e})") from e


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _objects_root(inputs: Inputs) -> Path:
    return inputs["objects"] / "objects"


def _object_ids(inputs: Inputs) -> list[str]:
    return [o["object_id"] for o in _read_json(inputs["objects"] / "objects.json")["objects"]]


def _kept_ids(inputs: Inputs) -> list[str]:
    return list(_read_json(inputs["stability"] / "kept.json"))


def _setup_torch(cfg: PipelineConfig) -> Any:
    import torch

    from dexlite_core.device import resolve_device

    torch.set_num_threads(cfg.dag.threads_per_task())
    return resolve_device(cfg.dag.device)


def _grasp_files(dirs: Sequence[Path], name: str = "grasps.parquet") -> list[Path]:
    return [d / name for d in dirs if (d / name).is_file()]


def _merge_grasps(dirs: Sequence[Path], out: Path) -> int:
    """Merge shard grasp files into ``out``; returns the row count."""
    from dexlite_core.dataset import empty_table
    from storage.parquet import count_rows, merge_files, write_grasps

    files = _grasp_files(dirs)
    if files:
        merge_files(files, out)
    else:
        write_grasps(empty_table(), out)
    return count_rows(out)


def _objects_in(path: Path) -> list[str]:
    """Object ids present in a grasp file (sorted)."""
    import pyarrow.compute as pc

    from storage.parquet import read_grasps

    t = read_grasps(path, columns=["object_id"], validate=False)
    return sorted(pc.unique(t.column("object_id")).to_pylist())


def _read_for(path: Path, object_ids: Sequence[str]) -> Any:
    """Rows of a grasp file for the given objects (one table)."""
    import pyarrow as pa

    from dexlite_core.dataset import empty_table
    from storage.parquet import iter_batches

    batches = list(iter_batches(path, filter_objects=object_ids))
    return pa.Table.from_batches(batches) if batches else empty_table()


# ------------------------------------------------------------------------------ 1. objects


def _mesh_files(cfg: PipelineConfig) -> list[Path]:
    from dexlite_core.objects.source import MESH_EXTENSIONS

    out: list[Path] = []
    for m in cfg.select.meshes:
        p = Path(m)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower().lstrip(".") in MESH_EXTENSIONS)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"select.meshes: {p} does not exist")
    return out


def _mesh_inputs(cfg: PipelineConfig) -> dict[str, str]:
    """Content hashes of the mesh files the selection reads (extra meshes and bundled real meshes),
    by item name: a bundled mesh's key does not depend on where its package is installed (keyed by
    path, a run from another venv recomputed every stage)."""
    from storage.artifacts import hash_file

    return {name: hash_file(s.path) for name, s in object_sources(cfg).items()
            if getattr(s, "path", None) is not None}


def _bundled_sources(n_random: int = 0) -> list[Any]:
    objects = _need("objects", "dexlite_core.objects.bundled_sources",
                    lambda: importlib.import_module("dexlite_core.objects"))
    fn = _need("objects", "dexlite_core.objects.bundled_sources", lambda: objects.bundled_sources)
    return list(fn(n_random=n_random))


def object_sources(cfg: PipelineConfig) -> dict[str, Any]:
    """Item name -> ObjectSource for the configured selection: ``bundled:<name>`` / ``mesh:<path>``."""
    out: dict[str, Any] = {}
    if cfg.select.bundled:
        matched = sorted(
            (s for s in _bundled_sources(cfg.select.n_random)
             if any(fnmatch.fnmatch(s.name, p) for p in cfg.select.bundled)),
            key=lambda s: s.name,
        )
        if cfg.select.max_objects > 0:
            matched = matched[: cfg.select.max_objects]
        out.update({f"bundled:{s.name}": s for s in matched})
    if cfg.select.meshes:
        from dexlite_core.objects.source import ObjectSource

        out.update({f"mesh:{p}": ObjectSource.from_path(p) for p in _mesh_files(cfg)})
    return out


def _objects_items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return list(object_sources(cfg))


def ingest_rows(sources: Sequence[Any], report: Any) -> list[dict[str, Any]]:
    """Per source (input order): ok, object_id, path, error, from an ``IngestReport``."""
    ok: dict[str, list[Any]] = {}
    bad: dict[str, list[Any]] = {}
    for r in report.ok:
        ok.setdefault(r.name, []).append(r)
    for f in report.failures:
        bad.setdefault(f.name, []).append(f)
    rows = []
    for src in sources:
        row = {"name": src.name, "source": src.describe(), "ok": False, "object_id": None, "path": None,
               "error": "no result from ingest_many"}
        if ok.get(src.name):
            r = ok[src.name].pop(0)
            row.update(ok=True, object_id=r.object_id, path=str(r.path), error=None)
        elif bad.get(src.name):
            row.update(error=bad[src.name].pop(0).reason)
        rows.append(row)
    return rows


def _objects_shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, items: list[str]) -> dict:
    ingest_many = _need("objects", "dexlite_core.objects.ingest_many",
                        lambda: importlib.import_module("dexlite_core.objects").ingest_many)
    sources = object_sources(cfg)
    chosen = [sources[i] for i in items]
    root = out_dir / "objects"
    root.mkdir(parents=True, exist_ok=True)
    rows = ingest_rows(chosen, ingest_many(chosen, root, cfg.objects, workers=1)) if chosen else []
    for row in rows:
        log.info("objects: %s %s", "ok    " if row["ok"] else "FAILED",
                 row["object_id"] if row["ok"] else f"{row['source']}: {row['error']}")
    _write_json(out_dir / "ingest.json", rows)
    return {"n": len(rows), "ok": sum(r["ok"] for r in rows)}


def _objects_merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    objs, failed = [], []
    dest = out_dir / "objects"
    dest.mkdir(parents=True, exist_ok=True)
    for d in dirs:
        for row in _read_json(d / "ingest.json"):
            if row["ok"]:
                src = d / "objects" / row["object_id"]
                if not (src / "_SUCCESS").is_file():
                    raise FileNotFoundError(f"{src}: ingest reported ok but the folder is incomplete")
                if not (dest / row["object_id"]).exists():
                    shutil.copytree(src, dest / row["object_id"])
                objs.append({"object_id": row["object_id"], "name": row["name"], "source": row["source"]})
            else:
                failed.append({"name": row["name"], "source": row["source"], "error": row["error"]})
    if not objs:
        reasons = "; ".join(f"{f['source']}: {f['error']}" for f in failed) or "no objects selected"
        raise RuntimeError(f"stage objects: no object ingested ({reasons})")
    objs.sort(key=lambda o: o["object_id"])
    _write_json(out_dir / "objects.json", {"objects": objs, "failed": failed})
    return {"objects": len(objs), "failed": len(failed)}


def stage_objects(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """Ingest the selected objects (bundled subset + extra meshes) into object folders."""
    return run_serial(STAGES["objects"], inputs, out_dir, cfg)


# ---------------------------------------------------------------------------- 2. stability

_TIMING_FIELDS = ("sim_time", "step_time", "wall_time")


def _stability_items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return _object_ids(inputs)


def _stability_shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, items: list[str]) -> dict:
    check_objects = _need("stability", "dexlite_core.sim.stability.check_objects",
                          lambda: importlib.import_module("dexlite_core.sim.stability").check_objects)
    root = _objects_root(inputs)
    results = check_objects([root / i for i in items], cfg.stability, workers=1)
    rows, timing = {}, {}
    for oid, r in zip(items, results, strict=True):
        d = dataclasses.asdict(r)
        timing[oid] = {k: d.pop(k, None) for k in _TIMING_FIELDS}
        d.pop("path", None)
        for p in d.get("poses") or []:
            for k in _TIMING_FIELDS:
                p.pop(k, None)
        rows[oid] = d
        log.info("stability: %s %s (%s)", "kept    " if r.kept else "rejected", oid, r.reason)
    _write_json(out_dir / "stability.json", rows)
    _write_json(out_dir / "timing.json", timing)
    return {"n": len(rows), "kept": sum(1 for r in rows.values() if r["kept"])}


def _stability_merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    rows: dict[str, Any] = {}
    timing: dict[str, Any] = {}
    for d in dirs:
        rows.update(_read_json(d / "stability.json"))
        timing.update(_read_json(d / "timing.json"))
    kept = sorted(k for k, r in rows.items() if r["kept"])
    _write_json(out_dir / "stability.json", rows)
    _write_json(out_dir / "kept.json", kept)
    _write_json(out_dir / "timing.json", timing)
    return {"objects": len(rows), "kept": len(kept), "rejected": len(rows) - len(kept)}


def stage_stability(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """PyBullet table-rest filter: which objects stay put (write-up: 2 s, < 5 cm, < 7 deg)."""
    return run_serial(STAGES["stability"], inputs, out_dir, cfg)


# --------------------------------------------------------------------------------- 3. seed


def _seed_items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return _kept_ids(inputs)


def _seed_shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, items: list[str]) -> dict:
    import numpy as np

    load_object = _need("seed", "dexlite_core.objects.load_object",
                        lambda: importlib.import_module("dexlite_core.objects").load_object)
    synthesis = _need("seed", "dexlite_core.synthesis.seed_grasps",
                      lambda: importlib.import_module("dexlite_core.synthesis"))
    from storage.parquet import concat_tables, write_grasps

    device = _setup_torch(cfg)
    root = _objects_root(inputs)
    tables = []
    n = cfg.seed.grasps_per_object
    every = max(1, cfg.seed.annealing.n_iter // 5)
    for k, oid in enumerate(items):
        t0 = time.perf_counter()
        obj = load_object(root / oid)
        field = synthesis.object_field(obj, device)

        def progress(state: Any, oid: str = oid) -> None:  # the energy going down, 5 lines per object
            if state.step % every == 0:
                log.info("seed: %s step %d/%d, mean energy %.3g", oid, state.step, cfg.seed.annealing.n_iter,
                         float(state.terms.total.mean()))

        res = synthesis.seed_grasps(obj.mesh, field, n, cfg.seed, cfg.energy, seed=cfg.seed.seed + _stable_int(oid),
                                    progress=progress)
        tables.append(synthesis.grasps_table(oid, res, "seed"))
        _seed_picture(obj.mesh, res, out_dir / "pictures" / f"{oid}.png")
        log.info("seed: %d/%d %s: %d grasps, median energy %.3g (%.1f s)", k + 1, len(items), oid, n,
                 float(np.median(res.terms["energy"])), time.perf_counter() - t0)
    write_grasps(concat_tables(tables), out_dir / "grasps.parquet")
    return {"objects": len(items), "grasps": n * len(items)}


def _seed_picture(mesh: Any, res: Any, path: Path) -> None:
    """The two lowest-energy grasps of an object, three views each (a person can see the grasps)."""
    import numpy as np

    from dexlite_core.viz import render_png

    best = np.argsort(res.terms["energy"])[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    render_png(mesh, res.q[best], path, titles=[f"E = {res.terms['energy'][i]:.3g}" for i in best])


def _seed_merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    n = _merge_grasps(dirs, out_dir / "grasps.parquet")
    (out_dir / "pictures").mkdir(exist_ok=True)
    for d in dirs:
        for png in sorted((d / "pictures").glob("*.png")):
            shutil.copyfile(png, out_dir / "pictures" / png.name)
    return {"grasps": n}


def stage_seed(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """Seed grasps by energy optimisation from DexGraspNet-style initial poses (kept objects)."""
    return run_serial(STAGES["seed"], inputs, out_dir, cfg)


# ---------------------------------------------------------------------------- 4. lift test


def _lift_table(table: Any, objects_root: Path, cfg: PipelineConfig, stage: str,
                protocols: Sequence[str] = ("lift",)) -> tuple[Any, dict]:
    """Run the MuJoCo protocols on a grasp table; return it with the result columns the grasp schema
    holds filled + the summary (:func:`dexlite_core.sim.evaluate.evaluate_grasps`)."""
    import numpy as np

    from dexlite_core.sim.evaluate import evaluate_grasps

    if table.num_rows == 0:
        return table, {"n": 0}
    df, summary = evaluate_grasps(table, objects_root, cfg, 1, protocols)
    if len(df) != table.num_rows:
        raise RuntimeError(f"stage {stage}: evaluate_grasps returned {len(df)} rows for {table.num_rows} grasps")
    for col in df.columns:
        i = table.schema.get_field_index(col)
        if col == "object_id" or i < 0:
            continue
        values = df[col].to_numpy()
        if values.dtype == object:
            values = np.asarray([None if v is None else v for v in values], dtype=object)
        table = table.set_column(i, table.schema.field(col), _arrow(values, table.schema.field(col).type))
    return table, dict(summary)


def _arrow(values: Any, typ: Any) -> Any:
    import pyarrow as pa

    return pa.array(values, type=typ, from_pandas=True)


def _lift_items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return _objects_in(inputs["seed"] / "grasps.parquet")


def _lift_shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, items: list[str]) -> dict:
    from storage.parquet import write_grasps

    table = _read_for(inputs["seed"] / "grasps.parquet", items)
    t0 = time.perf_counter()
    table, summary = _lift_table(table, _objects_root(inputs), cfg, "lift")
    write_grasps(table, out_dir / "grasps.parquet")
    rate = (summary.get("rates", {}).get("lift_ungated") or {}).get("rate")
    log.info("lift: %d objects, %d grasps, success %s (%.1f s)", len(items), table.num_rows,
             "n/a" if rate is None else f"{rate:.3f}", time.perf_counter() - t0)
    return {"grasps": table.num_rows}


def _lift_merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    """Merged lift results; ``lift.json``: :func:`dexlite_core.sim.lift.summarise` of them (success
    rates overall and per object, mean lift ratio, slip, penetration)."""
    from dexlite_core.sim.lift import summarise
    from storage.parquet import read_grasps

    _merge_grasps(dirs, out_dir / "grasps.parquet")
    doc = summarise(read_grasps(out_dir / "grasps.parquet").to_pandas(), cfg.lift)
    _write_json(out_dir / "lift.json", doc)
    return {k: doc[k] for k in ("n", "success_rate", "six_direction_success_rate")}


def stage_lift(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """MuJoCo lift test of every seed grasp (write-up: 1 m lift, ratio > 0.9) + six-direction hold."""
    return run_serial(STAGES["lift"], inputs, out_dir, cfg)


# ------------------------------------------------------------------------------ 5. dataset


def _with_round(table: Any, round_no: int) -> Any:
    """`table` with its ``round`` column (the round whose dataset the grasp joined) set to `round_no`."""
    import pyarrow as pa

    col = pa.array([round_no] * table.num_rows, type=pa.int32())
    return table.set_column(table.schema.get_field_index("round"), table.schema.field("round"), col)


def stage_dataset(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """The training set: lift-tested seed grasps (successes only unless ``dataset.require_lift``).

    From round 2 of ``dexlite run --rounds K``: the previous round's dataset plus that round's
    evaluated grasps of ``dataset.feedback_sources`` that passed the lift test (the Dex1B loop).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from storage.parquet import concat_tables, read_grasps, write_grasps

    last = inputs.get(previous("dataset"))
    if last is None:
        round_no, added = 1, 0
        table = read_grasps(inputs["lift"] / "grasps.parquet")
        n_in = table.num_rows
        if cfg.dataset.require_lift and n_in:
            table = table.filter(pc.fill_null(table.column("lift_success"), False))
        if cfg.dataset.max_per_object > 0 and table.num_rows:
            ids = np.asarray(table.column("object_id").to_pylist())
            keep = np.zeros(len(ids), bool)
            for o in np.unique(ids):
                keep[np.flatnonzero(ids == o)[: cfg.dataset.max_per_object]] = True
            table = table.filter(keep)
        table = _with_round(table, 1)
    else:
        round_no = int(_read_json(last / "stats.json").get("round", 1)) + 1
        table = read_grasps(last / "grasps.parquet")
        fed = read_grasps(inputs[previous("evaluate")] / "grasps.parquet")
        ok = pc.and_(pc.fill_null(fed.column("lift_success"), False),
                     pc.is_in(fed.column("source"), value_set=pa.array(list(cfg.dataset.feedback_sources))))
        fed = fed.filter(ok)
        fed = fed.set_column(fed.schema.get_field_index("grasp_id"), "grasp_id",
                             pc.add(fed.column("grasp_id"), round_no * 10_000_000))  # unique across rounds
        n_in, added = table.num_rows + fed.num_rows, fed.num_rows
        table = concat_tables([table, _with_round(fed, round_no)])
    per_object: dict[str, int] = {}
    for o in table.column("object_id").to_pylist():
        per_object[o] = per_object.get(o, 0) + 1
    write_grasps(table, out_dir / "grasps.parquet")
    stats = {"round": round_no, "grasps_in": n_in, "grasps": table.num_rows, "fed_back": added,
             "objects": len(per_object), "per_object": per_object}
    _write_json(out_dir / "stats.json", stats)
    if table.num_rows == 0:
        raise RuntimeError(f"stage dataset: no grasp passed the lift test (of {n_in}); nothing to train on")
    log.info("dataset (round %d): %d of %d grasps over %d objects, %d fed back", round_no, table.num_rows, n_in,
             len(per_object), added)
    return {k: v for k, v in stats.items() if k != "per_object"}


# -------------------------------------------------------------------------------- 6. train


def _training_data(table: Any, objects_root: Path, object_ids: Sequence[str], device: Any,
                   n_points: int, energy: Any) -> Any:
    """:class:`dexlite_core.train.TrainingData` for the grasps of ``object_ids`` in ``table``."""
    import numpy as np
    import torch

    from dexlite_core.dataset import table_q
    from dexlite_core.objects import load_object
    from dexlite_core.synthesis import object_field
    from dexlite_core.train import TrainingData, fill_contacts, model_cloud

    ids = list(object_ids)
    pos = {o: i for i, o in enumerate(ids)}
    all_ids = table.column("object_id").to_pylist()
    rows = np.asarray([i for i, o in enumerate(all_ids) if o in pos], dtype=np.int64)
    sub = table.take(rows)
    objs = [load_object(objects_root / o) for o in ids]
    q = torch.as_tensor(table_q(sub), device=device)
    oi = torch.as_tensor([pos[o] for o in sub.column("object_id").to_pylist()], device=device)
    clouds = torch.stack([torch.as_tensor(model_cloud(np.asarray(o.points), n_points), dtype=torch.float32)
                          for o in objs]).to(device)
    fields = [object_field(o, device) for o in objs]
    contact = fill_contacts(q, oi, sub.column("contact_idx").to_pylist(), fields, energy)
    return TrainingData(q, oi, contact, clouds, fields, ids)


def _train_core(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, work_dir: Path) -> dict:
    """Train the CVAE on the dataset (intended API: dexlite_core.models.GraspCVAE + dexlite_core.train)."""
    models = _need("train", "dexlite_core.models.GraspCVAE", lambda: importlib.import_module("dexlite_core.models"))
    train_mod = _need("train", "dexlite_core.train.train", lambda: importlib.import_module("dexlite_core.train"))
    GraspCVAE = _need("train", "dexlite_core.models.GraspCVAE", lambda: models.GraspCVAE)
    import torch

    from storage.parquet import read_grasps

    device = _setup_torch(cfg)
    torch.manual_seed(cfg.train.seed)
    table = read_grasps(inputs["dataset"] / "grasps.parquet")
    ids = sorted(set(table.column("object_id").to_pylist()))
    val = train_mod.split_objects(ids, cfg.train.val_fraction)
    train_ids = [o for o in ids if o not in val] or ids
    root = _objects_root(inputs)
    n_pts = cfg.train.n_points
    train_data = _training_data(table, root, train_ids, device, n_pts, cfg.energy)
    val_data = _training_data(table, root, sorted(val), device, n_pts, cfg.energy) if val else None
    model = GraspCVAE.from_config(cfg.train).to(device)
    t0 = time.perf_counter()

    def progress(epoch: int, record: dict[str, float]) -> None:
        log.info("train: epoch %d/%d loss %.4g val %.4g (%.0f s)", epoch + 1, cfg.train.epochs,
                 record.get("train_loss", math.nan), record.get("val_loss", math.nan), time.perf_counter() - t0)

    history = train_mod.train(model, train_data, val_data, work_dir, cfg.train, cfg.energy, progress=progress)
    shutil.copyfile(work_dir / train_mod.CHECKPOINT, out_dir / "checkpoint.pt")
    train_mod.save_history(history, out_dir)
    _write_json(out_dir / "split.json", {"train": train_ids, "val": sorted(val)})
    last = history[-1] if history else {}
    return {"epochs": len(history), "train_grasps": len(train_data), "val_grasps": len(val_data or []),
            **{k: last[k] for k in ("train_loss", "val_loss") if k in last}}


def stage_train(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, work_dir: Path | None = None) -> dict:
    """CVAE training (write-up appendix); resumes from ``work_dir``'s checkpoint after a kill."""
    work = work_dir or out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _train_core(inputs, out_dir, cfg, work)
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------- 7. sample


def stage_sample(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """Sample grasps from the trained CVAE: pure synthesis (z ~ N(0, I)) on ``sample.objects`` and
    dataset expansion of their dataset grasps (encoded, latent perturbed by ``sample.latent_noise``,
    decoded), both by :mod:`dexlite_core.sampling`."""
    import numpy as np

    from dexlite_core.dataset import grasps_to_table, table_q
    from dexlite_core.objects import load_object
    from storage.parquet import concat_tables, read_grasps, write_grasps

    sampling = _need("sample", "dexlite_core.sampling.GraspSampler",
                     lambda: importlib.import_module("dexlite_core.sampling"))
    sampler = sampling.GraspSampler.load(inputs["train"] / "checkpoint.pt", _setup_torch(cfg))
    split = _read_json(inputs["train"] / "split.json")
    data = read_grasps(inputs["dataset"] / "grasps.parquet")
    data_ids = np.asarray(data.column("object_id").to_pylist())
    chosen = {"all": split["train"] + split["val"], "val": split["val"], "train": split["train"]}
    ids = sorted(chosen[cfg.sample.objects])
    sc = cfg.sample
    tables = []
    t0 = time.perf_counter()
    for k, oid in enumerate(ids):
        obj = load_object(_objects_root(inputs) / oid)
        seed = sc.seed + _stable_int(oid)
        base = k * 1_000_000
        if sc.n_per_object > 0:
            q = sampler.sample(obj, sc.n_per_object, seed=seed)
            tables.append(grasps_to_table(oid, q, "raw", grasp_id=base + np.arange(len(q))))
        rows = np.flatnonzero(data_ids == oid)
        if sc.expand_per_grasp > 0 and len(rows):
            q = sampler.expand(obj, table_q(data.take(rows)), sc.expand_per_grasp, sc.latent_noise, seed=seed + 1)
            tables.append(grasps_to_table(oid, q, "expanded", grasp_id=base + 500_000 + np.arange(len(q))))
        log.info("sample: %d/%d %s (%.1f s)", k + 1, len(ids), oid, time.perf_counter() - t0)
    table = concat_tables(tables)
    write_grasps(table, out_dir / "grasps.parquet")
    srcs = table.column("source").to_pylist()
    return {"grasps": table.num_rows, "raw": srcs.count("raw"), "expanded": srcs.count("expanded"),
            "objects": len(ids)}


# ----------------------------------------------------------------------------- 8. postopt


def _postopt_items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return _objects_in(inputs["sample"] / "grasps.parquet")


def _postopt_shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, items: list[str]) -> dict:
    import pyarrow.compute as pc

    from dexlite_core.dataset import table_q
    from dexlite_core.objects import load_object
    from dexlite_core.synthesis import grasps_table
    from storage.parquet import concat_tables, write_grasps

    sampling = _need("postopt", "dexlite_core.sampling.postoptimise",
                     lambda: importlib.import_module("dexlite_core.sampling"))
    device = _setup_torch(cfg)
    sampled = _read_for(inputs["sample"] / "grasps.parquet", items)
    sampled = sampled.filter(pc.equal(sampled.column("source"), "raw"))  # the same grasps before / after
    ids = sampled.column("object_id").to_pylist()
    tables = []
    t_shard = time.perf_counter()
    for k, oid in enumerate(items):
        t0 = time.perf_counter()
        part = sampled.take([i for i, o in enumerate(ids) if o == oid])
        if part.num_rows == 0:
            continue
        obj = load_object(_objects_root(inputs) / oid)
        res = sampling.postoptimise(obj, table_q(part), cfg.postopt, cfg.energy, device, seed=_stable_int(oid))
        tables.append(grasps_table(oid, res, "postopt", grasp_id=part.column("grasp_id")))
        log.info("postopt: %d/%d %s: %d grasps (%.1f s)", k + 1, len(items), oid, part.num_rows,
                 time.perf_counter() - t0)
    write_grasps(concat_tables(tables), out_dir / "grasps.parquet")
    n = sum(t.num_rows for t in tables)
    _write_json(out_dir / "timing.json", {"grasps": n, "seconds": time.perf_counter() - t_shard})
    return {"grasps": n}


def _postopt_merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    """Merged grasps; ``timing.json`` sums the shards' optimisation time (CPU-seconds of one worker
    each, so seconds per grasp is comparable across worker counts)."""
    timings = [_read_json(d / "timing.json") for d in dirs if (d / "timing.json").is_file()]
    _write_json(out_dir / "timing.json", {"grasps": sum(t["grasps"] for t in timings),
                                          "seconds": sum(t["seconds"] for t in timings)})
    return {"grasps": _merge_grasps(dirs, out_dir / "grasps.parquet")}


def stage_postopt(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """Post-optimisation of the pure-synthesis samples (write-up: 200 annealed RMSProp steps); each
    keeps its sample's ``grasp_id``, so the report compares the same grasps before and after."""
    return run_serial(STAGES["postopt"], inputs, out_dir, cfg)


# ---------------------------------------------------------------------------- 9. evaluate


def _evaluate_items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return sorted(set(_objects_in(inputs["sample"] / "grasps.parquet"))
                  | set(_objects_in(inputs["postopt"] / "grasps.parquet")))


def _first_per_object(table: Any, n: int) -> Any:
    if n <= 0 or table.num_rows == 0:
        return table
    seen: dict[tuple[str, str], int] = {}
    keep = []
    for i, (o, s) in enumerate(zip(table.column("object_id").to_pylist(), table.column("source").to_pylist(),
                                   strict=True)):
        c = seen.get((o, s), 0)
        if c < n:
            keep.append(i)
        seen[(o, s)] = c + 1
    return table.take(keep)


def _evaluate_shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, items: list[str]) -> dict:
    from storage.parquet import concat_tables, write_grasps

    table = concat_tables([_read_for(inputs["sample"] / "grasps.parquet", items),
                           _read_for(inputs["postopt"] / "grasps.parquet", items)])
    table = _first_per_object(table, cfg.evaluate.max_per_object)
    t0 = time.perf_counter()
    table, _ = _lift_table(table, _objects_root(inputs), cfg, "evaluate", cfg.evaluate.protocols)
    write_grasps(table, out_dir / "grasps.parquet")
    log.info("evaluate: %d objects, %d grasps (%.1f s)", len(items), table.num_rows, time.perf_counter() - t0)
    return {"grasps": table.num_rows}


def _evaluate_merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    """Merged evaluated grasps and the report (:mod:`dexlite_core.report`): ``report.json``,
    ``report.html`` (tables, histograms, pictures of held and dropped grasps), ``report.md``."""
    from dexlite_core import report as rep
    from storage.parquet import read_grasps

    _merge_grasps(dirs, out_dir / "grasps.parquet")
    df = read_grasps(out_dir / "grasps.parquet").to_pandas()
    split = _read_json(inputs["train"] / "split.json")
    timing_file = inputs["postopt"] / "timing.json"
    timing = _read_json(timing_file) if timing_file.is_file() else {}
    seconds = {"postopt": timing["seconds"] / timing["grasps"]} if timing.get("grasps") else {}
    doc = rep.evaluation(df, split["val"], seconds, cfg.energy.n_contacts, cfg.evaluate.protocols,
                         cfg.evaluate.max_penetration)
    stats = _read_json(inputs["dataset"] / "stats.json")
    last = inputs.get(previous("evaluate"))
    rounds = list(_read_json(last / "report.json").get("rounds", [])) if last is not None else []
    rounds.append(rep.round_row(doc, int(stats.get("round", 1)), stats.get("grasps")))
    doc.update({
        "rounds": rounds,
        "objects": {"ingested": len(_object_ids(inputs)), "kept_by_stability": len(_kept_ids(inputs))},
        "seed": _read_json(inputs["lift"] / "lift.json"),
        "train": split,
        "lift_config": dataclasses.asdict(cfg.lift),
        "dexgraspbench_config": dataclasses.asdict(cfg.dexgraspbench),
    })  # fmt: skip
    head = df[rep.headline(df, split["val"])]
    groups = {str(src): g for src, g in head.groupby("source")}
    rep.write_report(out_dir, doc, groups, _report_pictures(inputs, head, out_dir))
    return {src: {"n": doc[src]["n"], **{name: r["rate"] for name, r in doc[src]["rates"].items()}}
            for src in rep.SOURCES if src in doc}


def _report_pictures(inputs: Inputs, df: Any, out_dir: Path, per_kind: int = 2) -> dict[str, Path]:
    """Pictures of the first `per_kind` held and dropped grasps of each source (caption -> PNG)."""
    import numpy as np

    from dexlite_core.objects import load_object
    from dexlite_core.viz import render_png

    pictures: dict[str, Path] = {}
    meshes: dict[str, Any] = {}
    for src, part in df.groupby("source"):
        for held in (True, False):
            pick = part[part["lift_success"].fillna(False).astype(bool) == held].head(per_kind)
            for _, row in pick.iterrows():
                kind = "held" if held else "dropped"
                name = f"{src}-{kind}-{row['object_id']}-{int(row['grasp_id'])}.png"
                try:
                    oid = row["object_id"]
                    if oid not in meshes:
                        meshes[oid] = load_object(_objects_root(inputs) / oid).mesh
                    render_png(meshes[oid], np.asarray(row["q"])[None], out_dir / name)
                except Exception as e:  # noqa: BLE001 - a picture must not sink the report
                    log.warning("report picture %s failed: %s", name, e)
                    continue
                caption = f"{src}, {kind}: {row['object_id']} grasp {int(row['grasp_id'])}"
                pictures[f"{caption} (lift ratio {row['lift_ratio']:.2f})"] = out_dir / name
    return pictures


def stage_evaluate(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """Final simulation evaluation of raw and post-optimised samples, with a report."""
    return run_serial(STAGES["evaluate"], inputs, out_dir, cfg)


# --------------------------------------------------------------------------------- the table

STAGES: dict[str, StageSpec] = {
    "objects": StageSpec(
        "objects", stage_objects, deps=(), config=("objects", "select"), code=("objects",),
        shards=Shards(_objects_items, _objects_shard, _objects_merge), extra_inputs=_mesh_inputs,
        description="ingest meshes: normalise, point cloud, SDF, convex parts",
    ),
    "stability": StageSpec(
        "stability", stage_stability, deps=("objects",), config=("stability",), code=("sim.stability",),
        shards=Shards(_stability_items, _stability_shard, _stability_merge),
        description="PyBullet table-rest filter",
    ),
    "seed": StageSpec(
        "seed", stage_seed, deps=("objects", "stability"), config=("seed", "energy"),
        code=("synthesis", "energy", "optim", "hand", "objects", "dataset"),
        shards=Shards(_seed_items, _seed_shard, _seed_merge),
        description="seed grasps by energy optimisation",
    ),
    "lift": StageSpec(
        "lift", stage_lift, deps=("objects", "seed"), config=("lift",), code=("sim", "dataset", "validity", "stats"),
        shards=Shards(_lift_items, _lift_shard, _lift_merge),
        description="MuJoCo lift test of the seed grasps",
    ),
    "dataset": StageSpec(
        "dataset", stage_dataset, deps=("lift",), config=("dataset",), code=("dataset",),
        feedback=("dataset", "evaluate"),
        description="Parquet training set of lift-tested grasps",
    ),
    "train": StageSpec(
        "train", stage_train, deps=("objects", "dataset"), config=("train", "energy"),
        code=("train", "models", "energy", "hand", "synthesis"), resumable=True, gpu=True,
        description="CVAE training",
    ),
    "sample": StageSpec(
        "sample", stage_sample, deps=("objects", "dataset", "train"), config=("sample",),
        code=("models", "sampling", "train"),
        description="pure synthesis + dataset expansion from the CVAE",
    ),
    "postopt": StageSpec(
        "postopt", stage_postopt, deps=("objects", "sample"), config=("postopt", "energy"),
        code=("sampling", "synthesis", "energy", "optim", "hand"),
        shards=Shards(_postopt_items, _postopt_shard, _postopt_merge),
        description="post-optimisation of the samples (200 steps)",
    ),
    "evaluate": StageSpec(
        "evaluate", stage_evaluate, deps=("objects", "stability", "lift", "dataset", "train", "sample", "postopt"),
        config=("lift", "dexgraspbench", "evaluate", "energy"), code=("sim", "dataset", "report", "validity", "stats"),
        feedback=("evaluate",),
        shards=Shards(_evaluate_items, _evaluate_shard, _evaluate_merge),
        description="final lift-test evaluation and report",
    ),
}
