"""Sharded stages run in series in this process: the direct call of a stage (Python, tests), where
the flows fan the same shards out as parallel tasks."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dag.spec import Inputs, StageSpec


def shard_items(items: Sequence[str], shard_size: int) -> list[list[str]]:
    """Consecutive shards of at most ``shard_size`` items (at least one shard, maybe empty)."""
    size = max(1, int(shard_size))
    return [list(items[i : i + size]) for i in range(0, len(items), size)] or [[]]


def run_serial(spec: StageSpec, inputs: Inputs, out_dir: Path, cfg: Any, shard_size: int) -> dict:
    """Every shard of `spec` in turn into ``out_dir/.shards/<i>``, then the merge into ``out_dir``."""
    assert spec.shards is not None, f"stage {spec.name!r} has no shards"
    items = spec.shards.items(inputs, cfg)
    scratch = out_dir / ".shards"
    dirs = []
    try:
        for i, part in enumerate(shard_items(items, shard_size)):
            d = scratch / f"{i:04d}"
            d.mkdir(parents=True)
            spec.shards.run(inputs, d, cfg, part)
            dirs.append(d)
        return spec.shards.merge(inputs, dirs, out_dir, cfg)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
