"""Stage ``dataset``: the Parquet training set (:mod:`dexlite_core.training_set`). Round 1: the
lift-tested seed grasps; from round 2 of ``dexlite run --rounds K`` (inputs ``dataset@previous``,
``evaluate@previous``): the previous set plus that round's held grasps of ``dataset.feedback_sources``.

Artifact: ``grasps.parquet`` (the training set), ``stats.json``.
"""

from __future__ import annotations

from pathlib import Path

from dag.spec import Inputs, StageSpec, previous
from dexlite_core.config import PipelineConfig
from stages.common import GRASPS, log, read_json, write_json


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    """The training set of this round; fails when it is empty (nothing to train on)."""
    from dexlite_core import training_set
    from storage.parquet import read_grasps, write_grasps

    last = inputs.get(previous("dataset"))
    if last is None:
        lifted = read_grasps(inputs["lift"] / GRASPS)
        round_no, n_in, added = 1, lifted.num_rows, 0
        table = training_set.first_round(lifted, cfg.dataset)
    else:
        round_no = int(read_json(last / "stats.json").get("round", 1)) + 1
        evaluated = read_grasps(inputs[previous("evaluate")] / GRASPS)
        table, added = training_set.next_round(read_grasps(last / GRASPS), evaluated, round_no,
                                               cfg.dataset.feedback_sources)
        n_in = table.num_rows  # the previous set and the fed-back grasps, all kept
    write_grasps(table, out_dir / GRASPS)
    stats = training_set.stats(table, round_no, n_in, added)
    write_json(out_dir / "stats.json", stats)
    if table.num_rows == 0:
        raise RuntimeError(f"stage dataset: no grasp passed the lift test (of {n_in}); nothing to train on")
    log.info("dataset (round %d): %d of %d grasps over %d objects, %d fed back", round_no, table.num_rows, n_in,
             stats["objects"], added)
    return {k: v for k, v in stats.items() if k != "per_object"}


SPEC = StageSpec(
    "dataset", run, deps=("lift",), config=("dataset",), feedback=("dataset", "evaluate"),
    description="Parquet training set of lift-tested grasps",
)
