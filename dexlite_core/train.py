"""CVAE training with the write-up's losses: reconstruction + KL + energy terms on the decoded pose.

    L = w_recon L_recon + w_KL L_KL + w_fc E_fc + w_dis E_dis + w_pen E_pen + w_spen E_spen
        + w_joints E_joints                       (weights: TrainConfig and EnergyWeights)

Each epoch:
  1. shuffle the training grasps (objects split into train / validation / test beforehand by
     :mod:`dexlite_core.splits`: validation and test objects are never seen in training, and test
     objects are not even loaded);
  2. per batch of 64: gather each grasp's object cloud `(B, 2048, 3)` and associated point, run
     the CVAE, compute L_recon and L_KL, and the energy of the decoded poses object by object
     (a loop over the objects present in the batch, never over grasps);
  3. Adam step; after the epoch, validation losses; atomically write the checkpoint
     (`checkpoint.pt`: model, optimiser, epoch, optimiser steps so far, history, RNG states) and the
     loss history.
A step budget (``TrainConfig.max_steps``) stops training after that many optimiser steps in total;
when it ends mid-epoch the checkpoint is written there too, with the epoch's order and position.
A run that finds `checkpoint.pt` in its output folder resumes where it stopped: after the last
finished epoch, or mid-epoch at the saved step when a larger budget continues a budgeted run.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write_bytes, atomic_write_text
from .config import EnergyConfig, TrainConfig
from .dataset import table_q
from .energy import ObjectField, RowwiseSDF, grasp_energy
from .models import GraspCVAE, associated_point_index, kl_divergence, reconstruction_loss
from .objects import load_object
from .splits import assign_splits, first_objects, read_groups
from .synthesis import contact_indices_for, fitted_contact_indices, hand_on, object_field

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainingData:
    """Grasps and the objects they belong to, as tensors on one device."""

    q: torch.Tensor  # (G, 28)
    object_index: torch.Tensor  # (G,) index into `clouds` / `fields`
    contact_idx: torch.Tensor | None  # (G, K) or None
    clouds: torch.Tensor  # (O, N, 3)
    fields: list[ObjectField]
    object_ids: list[str]

    def subset(self, mask: torch.Tensor) -> TrainingData:
        return TrainingData(
            self.q[mask],
            self.object_index[mask],
            None if self.contact_idx is None else self.contact_idx[mask],
            self.clouds,
            self.fields,
            self.object_ids,
        )

    def __len__(self) -> int:
        return int(self.q.shape[0])


def model_cloud(points: np.ndarray, n_points: int) -> np.ndarray:
    """The cloud the CVAE sees: the first `n_points` of an object's points `(2048, 3)` (ingest
    stores them in farthest-point order, so a prefix is an even subsample) -> `(n_points, 3)`."""
    return np.asarray(points)[: max(1, int(n_points))]


def fill_contacts(
    q: torch.Tensor,
    object_index: torch.Tensor,
    contact_idx: Sequence[Sequence[int] | None],
    fields: Sequence[ObjectField],
    energy: EnergyConfig,
) -> torch.Tensor:
    """Contact indices `(G, K)` for every dataset grasp: the stored ones, and for grasps stored
    without (CVAE expansions fed back by ``--rounds``, imported DexGraspNet grasps) the contacts
    that best explain the grasp (:func:`fitted_contact_indices`).

    The energy losses then always score the decoded pose against fixed contacts of its target
    grasp. (Choosing contacts from the decoded pose instead, for all grasps, trained a worse model:
    E_fc 6.0 vs 2.2, validation lift success 33% vs 86% in the default run. Filling the missing
    ones with each link's nearest candidate gave fed-back expansions E_fc 9.0 and round 2 of
    ``--rounds 2`` a model with E_fc 6.8 and 20% validation success.)
    """
    out = torch.zeros((len(contact_idx), energy.n_contacts), dtype=torch.long, device=q.device)
    missing = torch.tensor([c is None for c in contact_idx], dtype=torch.bool, device=q.device)
    have = (~missing).nonzero().flatten()
    if len(have):
        out[have] = torch.as_tensor([contact_idx[i] for i in have.tolist()], dtype=torch.long, device=q.device)
    hand = hand_on(str(q.device), q.dtype)
    for o in object_index[missing].unique().tolist():
        rows = (missing & (object_index == o)).nonzero().flatten()
        out[rows] = fitted_contact_indices(hand, fields[o], q[rows], energy)
    return out


def _atomic_torch_save(obj: dict, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def batch_order(object_index: torch.Tensor, batch_size: int, objects_per_batch: int,
                generator: torch.Generator) -> torch.Tensor:
    """An epoch's order of the grasps `object_index (N,)`; consecutive ``batch_size`` slices are the
    batches. ``objects_per_batch`` 0: a random permutation. k > 0: each object's grasps, shuffled,
    cut into chunks of ``batch_size // k``; the chunks shuffled and concatenated, so a batch holds
    about k objects (a chunk that ends an object may be shorter and make room for another)."""
    n = len(object_index)
    if objects_per_batch <= 0:
        return torch.randperm(n, generator=generator)
    chunk = max(1, batch_size // objects_per_batch)
    perm = torch.randperm(n, generator=generator)
    by_object = perm[torch.argsort(object_index[perm], stable=True)]  # grouped by object, shuffled within
    counts = torch.bincount(object_index, minlength=int(object_index.max()) + 1 if n else 0)
    chunks = [c for rows in torch.split(by_object, counts[counts > 0].tolist()) for c in torch.split(rows, chunk)]
    order = torch.randperm(len(chunks), generator=generator).tolist()
    return torch.cat([chunks[i] for i in order]) if chunks else perm


def batch_losses(
    model: GraspCVAE,
    data: TrainingData,
    rows: torch.Tensor,
    cfg: TrainConfig,
    energy_cfg: EnergyConfig,
) -> dict[str, torch.Tensor]:
    """Loss terms for grasps `rows (B,)` of `data`: each a scalar tensor; "loss" is the total."""
    q = data.q[rows]
    obj = data.object_index[rows]
    present, local_index = obj.unique(return_inverse=True)
    clouds = data.clouds[present]  # (O_b, N, 3): PointNet runs once per object in the batch
    assoc = associated_point_index(clouds[local_index], q)
    out = model(clouds, q, assoc, object_index=local_index)
    q_hat = out["q_hat"]
    terms = {
        "recon": reconstruction_loss(q, q_hat, normalizer=model.normalizer),  # normalised pose space
        "kl": kl_divergence(out["mu"], out["logvar"]),
    }
    hand = hand_on(str(q.device), q.dtype)
    # one energy call for the whole batch: each row looks up its own object's SDF
    field = ObjectField(RowwiseSDF([f.sdf for f in data.fields], obj), data.fields[0].points)
    idx = (data.contact_idx[rows] if data.contact_idx is not None
           else contact_indices_for(hand, field, q_hat.detach(), energy_cfg.n_contacts))
    e = grasp_energy(hand, field, q_hat, idx, energy_cfg)
    w = energy_cfg.weights
    for k in ("E_fc", "E_dis", "E_pen", "E_spen", "E_joints"):
        terms[k] = getattr(e, k).mean()
    terms["loss"] = (
        cfg.w_recon * terms["recon"]
        + cfg.w_kl * terms["kl"]
        + w.fc * terms["E_fc"]
        + w.dis * terms["E_dis"]
        + w.pen * terms["E_pen"]
        + w.spen * terms["E_spen"]
        + w.joints * terms["E_joints"]
    )
    return terms


def _evaluate(model, data, cfg, energy_cfg) -> dict[str, float]:
    model.eval()
    acc: dict[str, float] = {}
    n = 0
    with torch.no_grad():
        for start in range(0, len(data), 256):
            rows = torch.arange(start, min(start + 256, len(data)), device=data.q.device)
            t = batch_losses(model, data, rows, cfg, energy_cfg)
            for k, v in t.items():
                acc[k] = acc.get(k, 0.0) + float(v.detach()) * len(rows)
            n += len(rows)
    model.train()
    return {k: v / max(n, 1) for k, v in acc.items()}


def _rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states training draws from (the CVAE's latent noise): CPU, and the device's."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any] | None, device: torch.device) -> None:
    if not state:
        return
    torch.set_rng_state(state["cpu"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def train(
    model: GraspCVAE,
    train_data: TrainingData,
    val_data: TrainingData | None,
    out_dir: Path,
    cfg: TrainConfig,
    energy_cfg: EnergyConfig,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train (or resume) for ``cfg.epochs`` epochs, stopping after ``cfg.max_steps`` optimiser steps in
    total when that is > 0; returns the per-epoch loss history (each record: ``epoch``, ``steps`` =
    optimiser steps so far, ``train_*`` and ``val_*`` losses; a record of an epoch the budget cut
    short also has ``partial: True``).

    Checkpoints (``out_dir/checkpoint.pt``) after every epoch and where the budget stops mid-epoch;
    a later call resumes from it: with a larger budget (or more epochs) it continues from the saved
    step, drawing the same batches and latent noise an uninterrupted run would; with the target
    already reached it returns the saved history and trains nothing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    device = train_data.q.device
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    start_epoch, steps = 0, 0
    partial: dict[str, Any] | None = None  # an epoch the budget cut short: its order, position, sums
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        history = ckpt["history"]
        start_epoch = ckpt["epoch"] + 1
        gen.set_state(ckpt["generator"])
        steps = int(ckpt.get("steps", 0))
        partial = ckpt.get("partial")
        _set_rng_state(ckpt.get("rng"), device)
    budget = cfg.max_steps if cfg.max_steps > 0 else None
    if budget is not None and steps >= budget:
        return history
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        if budget is not None and steps >= budget:
            break
        if partial is not None and partial["epoch"] == epoch:  # continue the epoch the budget cut short
            perm = partial["perm"].to(device)
            if len(perm) != len(train_data):
                raise ValueError(f"{ckpt_path}: saved mid-epoch with {len(perm)} training grasps, now "
                                 f"{len(train_data)}; remove it to train from scratch")
            first, acc, seen = int(partial["batch"]), dict(partial["acc"]), int(partial["seen"])
            if history and history[-1].get("partial"):
                history.pop()
        else:
            perm = batch_order(train_data.object_index.cpu(), cfg.batch_size, cfg.objects_per_batch, gen).to(device)
            first, acc, seen = 0, {}, 0
        partial = None
        stopped: int | None = None  # the batch the budget stopped at
        for b, start in enumerate(range(0, len(perm), cfg.batch_size)):
            rows = perm[start : start + cfg.batch_size]
            if b < first or len(rows) < 2:  # done before the resume; BatchNorm needs two samples
                continue
            if budget is not None and steps >= budget:
                stopped = b
                break
            terms = batch_losses(model, train_data, rows, cfg, energy_cfg)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            steps += 1
            seen += len(rows)
            for k, v in terms.items():
                acc[k] = acc.get(k, 0.0) + float(v.detach()) * len(rows)
        # a full epoch averages over all its grasps (as before budgets), a cut one over those it saw
        denom = max(len(perm) if stopped is None else seen, 1)
        record: dict[str, Any] = {"epoch": epoch, "steps": steps, **{f"train_{k}": v / denom for k, v in acc.items()}}
        rng = _rng_state(device) if stopped is not None else None  # where training resumes: before validation
        if val_data is not None and len(val_data):
            record.update({f"val_{k}": v for k, v in _evaluate(model, val_data, cfg, energy_cfg).items()})
        ckpt = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "epoch": epoch,  # the last finished epoch
            "steps": steps,
            "history": history,
            "generator": gen.get_state(),
            "config": cfg.__dict__,
        }
        if stopped is not None:
            record["partial"] = True
            ckpt["epoch"] = epoch - 1
            ckpt["partial"] = {"epoch": epoch, "batch": stopped, "perm": perm.cpu(), "acc": acc, "seen": seen}
        ckpt["rng"] = rng if rng is not None else _rng_state(device)
        history.append(record)
        _atomic_torch_save(ckpt, ckpt_path)
        if progress is not None:
            progress(epoch, record)
        if stopped is not None:
            break
    return history


def save_history(history: list[dict[str, float]], out_dir: Path) -> None:
    """Loss curves as JSON and a PNG plot (both written atomically)."""
    atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    by_step = bool(history) and all("steps" in h for h in history)
    epochs = [h["steps"] if by_step else h["epoch"] for h in history]
    for key in ("loss", "recon"):
        ax = axes[0 if key == "loss" else 1]
        for split in ("train", "val"):
            vals = [h.get(f"{split}_{key}", np.nan) for h in history]
            ax.plot(epochs, vals, label=f"{split}")
        ax.set_title(key)
        ax.set_xlabel("optimiser step" if by_step else "epoch")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / ".loss.png.tmp.png", dpi=80)
    plt.close(fig)
    (out_dir / ".loss.png.tmp.png").replace(out_dir / "loss.png")


def training_data(table: Any, objects_root: Path, object_ids: Sequence[str], device: torch.device | str,
                  n_points: int, energy: EnergyConfig) -> TrainingData:
    """:class:`TrainingData` for the grasps of ``object_ids`` in a grasp table (pyarrow): poses
    `(G, 28)`, each object's model cloud `(O, n_points, 3)` and field, contact candidates."""
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


@dataclass
class Fit:
    """A finished training run: the model, its loss history and the object split (`train_ids`: the
    objects trained on; `unused_ids`: training-split objects left out by ``max_objects``)."""

    model: GraspCVAE
    history: list[dict[str, float]]
    train_ids: list[str]
    val_ids: list[str]
    n_train: int
    n_val: int
    test_ids: list[str] = field(default_factory=list)
    unused_ids: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Optimiser steps of the run so far."""
        return int(self.history[-1].get("steps", 0)) if self.history else 0


def fit(table: Any, objects_root: Path, cfg: TrainConfig, energy: EnergyConfig, device: torch.device | str,
        work_dir: Path, progress: Callable[[int, dict[str, float]], None] | None = None) -> Fit:
    """Train the CVAE on a grasp table (pyarrow; the dataset stage's) of objects under
    ``objects_root``: split by object group (:func:`dexlite_core.splits.assign_splits`, no seed; the
    groups from each object's ``meta.json``), keep the first ``cfg.max_objects`` training objects
    (:func:`dexlite_core.splits.first_objects`), build the training and validation tensors (test
    objects are never loaded), then :func:`train` into ``work_dir`` (resuming from its checkpoint)."""
    torch.manual_seed(cfg.seed)
    ids = sorted(set(table.column("object_id").to_pylist()))
    groups = read_groups(objects_root, ids)
    split = assign_splits(ids, groups, cfg.val_fraction, cfg.test_fraction)
    train_ids = first_objects(split["train"], groups, cfg.max_objects)
    unused = sorted(set(split["train"]) - set(train_ids))
    val = split["val"]
    train_data = training_data(table, objects_root, train_ids, device, cfg.n_points, energy)
    val_data = training_data(table, objects_root, val, device, cfg.n_points, energy) if val else None
    model = GraspCVAE.from_config(cfg).to(device)
    history = train(model, train_data, val_data, work_dir, cfg, energy, progress=progress)
    return Fit(model, history, train_ids, val, len(train_data), len(val_data or []), split["test"], unused)
