"""Sharded stages run in series in this process: the direct call of a stage (Python, tests), where
the flows fan the same shards out as parallel tasks."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dag.keys import ITEMS_FILE, item_keys
from dag.spec import Inputs, StageSpec


def shard_items(items: Sequence[str], shard_size: int) -> list[list[str]]:
    """Consecutive shards of at most ``shard_size`` items (at least one shard, maybe empty)."""
    size = max(1, int(shard_size))
    return [list(items[i : i + size]) for i in range(0, len(items), size)] or [[]]


def write_item_keys(out_dir: Path, items: Sequence[str], keys: Sequence[str]) -> None:
    """``items.json`` of a per-item stage: item -> item key (downstream items key on it)."""
    tmp = out_dir / f".{ITEMS_FILE}.tmp"
    tmp.write_text(json.dumps(dict(zip(items, keys, strict=True)), indent=0, sort_keys=True))
    os.replace(tmp, out_dir / ITEMS_FILE)  # atomic: a reader never sees half a file


def run_serial(spec: StageSpec, inputs: Inputs, out_dir: Path, cfg: Any, shard_size: int) -> dict:
    """Every shard of `spec` in turn into ``out_dir/.shards/<i>``, then the merge into ``out_dir``.
    A per-item stage runs one item per shard, as the flows do, so both give the same artifact."""
    assert spec.shards is not None, f"stage {spec.name!r} has no shards"
    items = spec.shards.items(inputs, cfg)
    per_item = spec.shards.item_inputs is not None
    scratch = out_dir / ".shards"
    dirs = []
    try:
        for i, part in enumerate(shard_items(items, 1 if per_item else shard_size)):
            d = scratch / f"{i:04d}"
            d.mkdir(parents=True)
            spec.shards.run(inputs, d, cfg, part)
            dirs.append(d)
        summary = spec.shards.merge(inputs, dirs, out_dir, cfg)
        if per_item:
            write_item_keys(out_dir, items, item_keys(spec, cfg, items, spec.shards.item_inputs(inputs, cfg, items)))
        return summary
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
