"""Stage ``stability``: the PyBullet table-rest filter, which objects stay put (write-up: 2 s, < 5 cm,
< 7 deg).

Artifact: ``stability.json`` (per object: kept, reason, displacement, rotation), ``kept.json``,
``timing.json`` (not part of the content digest).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dag.runner import run_serial
from dag.spec import Inputs, Shards, StageSpec
from dexlite_core.config import PipelineConfig
from stages.common import log, object_digests, object_ids, objects_root, read_json, write_json

TIMING_FIELDS = ("sim_time", "step_time", "wall_time")


def items(inputs: Inputs, cfg: PipelineConfig) -> list[str]:
    return object_ids(inputs)


def item_inputs(inputs: Inputs, cfg: PipelineConfig, items: list[str]) -> list[str]:
    return object_digests(inputs, items)


def _row(result: Any) -> tuple[dict, dict]:
    """(the result without timings, its timings): timings vary run to run, the verdict must not."""
    d = dataclasses.asdict(result)
    timing = {k: d.pop(k, None) for k in TIMING_FIELDS}
    d.pop("path", None)
    for p in d.get("poses") or []:
        for k in TIMING_FIELDS:
            p.pop(k, None)
    return d, timing


def shard(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, part: list[str]) -> dict:
    from dexlite_core.sim.stability import check_objects

    root = objects_root(inputs)
    results = check_objects([root / i for i in part], cfg.stability, workers=1)
    rows, timing = {}, {}
    for oid, r in zip(part, results, strict=True):
        rows[oid], timing[oid] = _row(r)
        log.info("stability: %s %s (%s)", "kept    " if r.kept else "rejected", oid, r.reason)
    write_json(out_dir / "stability.json", rows)
    write_json(out_dir / "timing.json", timing)
    return {"n": len(rows), "kept": sum(1 for r in rows.values() if r["kept"])}


def merge(inputs: Inputs, dirs: list[Path], out_dir: Path, cfg: PipelineConfig) -> dict:
    rows: dict[str, Any] = {}
    timing: dict[str, Any] = {}
    for d in dirs:
        rows.update(read_json(d / "stability.json"))
        timing.update(read_json(d / "timing.json"))
    kept = sorted(k for k, r in rows.items() if r["kept"])
    write_json(out_dir / "stability.json", rows)
    write_json(out_dir / "kept.json", kept)
    write_json(out_dir / "timing.json", timing)
    return {"objects": len(rows), "kept": len(kept), "rejected": len(rows) - len(kept)}


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """The stage in this process: its shards in series, then the merge."""
    return run_serial(SPEC, inputs, out_dir, cfg, cfg.dag.shard_size)


SPEC = StageSpec(
    "stability", run, deps=("objects",), config=("stability",), shards=Shards(items, shard, merge, item_inputs),
    description="PyBullet table-rest filter",
)
