"""Stage ``train``: CVAE training (write-up appendix, :func:`dexlite_core.train.fit`); resumes from
its ``work_dir`` checkpoint after a kill.

Artifact: ``checkpoint.pt``, ``history.json``, ``loss.png``, ``split.json`` (``train``: the objects
trained on, ``val``, ``test``: never trained on, by a stable hash of each object's group; ``unused``:
training-split objects left out by ``train.max_objects``).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from dag.spec import Inputs, StageSpec
from dexlite_core.config import PipelineConfig
from stages.common import GRASPS, log, objects_root, setup_torch, write_json


def train_into(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, work_dir: Path) -> dict:
    """Train on the dataset artifact into ``work_dir`` (checkpoints), then write the artifact."""
    from dexlite_core import train as train_mod
    from storage.parquet import read_grasps

    device = setup_torch(cfg, alone=True)
    t0 = time.perf_counter()

    budget = f"/{cfg.train.max_steps}" if cfg.train.max_steps > 0 else ""

    def progress(epoch: int, record: dict[str, float]) -> None:
        log.info("train: epoch %d/%d step %d%s loss %.4g val %.4g (%.0f s)", epoch + 1, cfg.train.epochs,
                 record.get("steps", 0), budget, record.get("train_loss", math.nan), record.get("val_loss", math.nan),
                 time.perf_counter() - t0)

    table = read_grasps(inputs["dataset"] / GRASPS)
    fit = train_mod.fit(table, objects_root(inputs), cfg.train, cfg.energy, device, work_dir, progress)
    shutil.copyfile(work_dir / train_mod.CHECKPOINT, out_dir / "checkpoint.pt")
    train_mod.save_history(fit.history, out_dir)
    write_json(out_dir / "split.json", {"train": fit.train_ids, "val": fit.val_ids, "test": fit.test_ids,
                                        "unused": fit.unused_ids})
    last = fit.history[-1] if fit.history else {}
    return {"epochs": len(fit.history), "steps": fit.steps, "train_grasps": fit.n_train, "val_grasps": fit.n_val,
            "objects": {"train": len(fit.train_ids), "val": len(fit.val_ids), "test": len(fit.test_ids),
                        "unused": len(fit.unused_ids)},
            **{k: last[k] for k in ("train_loss", "val_loss") if k in last}}


def run(inputs: Inputs, out_dir: Path, cfg: PipelineConfig, work_dir: Path | None = None) -> dict:
    """Train; with no ``work_dir`` (a direct call) checkpoints go to a scratch folder, removed after."""
    work = work_dir or out_dir / ".work"
    work.mkdir(parents=True, exist_ok=True)
    try:
        return train_into(inputs, out_dir, cfg, work)
    finally:
        if work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


SPEC = StageSpec(
    "train", run, deps=("objects", "dataset"), config=("train", "energy"), resumable=True, gpu=True,
    description="CVAE training",
)
