"""Stage ``sample``: grasps from the trained CVAE (:func:`dexlite_core.sampling.sample_objects`):
pure synthesis (z ~ N(0, I)) on ``sample.objects`` of the train stage's split, and dataset expansion
of their dataset grasps (encoded, latent perturbed by ``sample.latent_noise``, decoded).

Artifact: ``grasps.parquet`` (sources "raw" and "expanded").
"""

from __future__ import annotations

from pathlib import Path

from dag.spec import Inputs, StageSpec
from dexlite_core.config import PipelineConfig
from stages.common import GRASPS, objects_root, read_json, setup_torch


def chosen_objects(split: dict[str, list[str]], which: str) -> list[str]:
    """The objects ``sample.objects`` names in a train split, sorted: "train" (trained on), "val",
    "test", "heldout" (val + test) or "all" (train + val + test; not the ``unused`` objects that
    ``train.max_objects`` left out). A split of an older run without "test" has none."""
    train, val, test = split["train"], split["val"], split.get("test", [])
    parts = {"all": train + val + test, "val": val, "test": test, "train": train, "heldout": val + test}
    if which not in parts:
        raise ValueError(f"sample.objects: {which!r} is not one of {sorted(parts)}")
    return sorted(set(parts[which]))


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig) -> dict:
    from dexlite_core.sampling import GraspSampler, sample_objects
    from storage.parquet import read_grasps, write_grasps

    sampler = GraspSampler.load(inputs["train"] / "checkpoint.pt", setup_torch(cfg))
    ids = chosen_objects(read_json(inputs["train"] / "split.json"), cfg.sample.objects)
    folders = {oid: objects_root(inputs) / oid for oid in ids}
    table = sample_objects(sampler, folders, cfg.sample, read_grasps(inputs["dataset"] / GRASPS))
    write_grasps(table, out_dir / GRASPS)
    srcs = table.column("source").to_pylist()
    return {"grasps": table.num_rows, "raw": srcs.count("raw"), "expanded": srcs.count("expanded"),
            "objects": len(ids)}


SPEC = StageSpec(
    "sample", run, deps=("objects", "dataset", "train"), config=("sample",),
    description="pure synthesis + dataset expansion from the CVAE",
)
