"""CVAE training: losses go down, checkpoints resume (also mid-epoch under a step budget), objects split
cleanly three ways by group, the scaling curve's training sets nest."""

from __future__ import annotations

import pytest
import torch
from conftest import sphere_field

from dexlite_core.config import EnergyConfig, SeedConfig, TrainConfig
from dexlite_core.models import GraspCVAE
from dexlite_core.optim.init import initial_poses
from dexlite_core.splits import assign_splits, first_objects, read_groups
from dexlite_core.synthesis import hand_on
from dexlite_core.train import CHECKPOINT, TrainingData, train


def _data(n=32):
    import trimesh

    field = sphere_field(0.04, n=256, dtype=torch.float32)
    q, idx = initial_poses(hand_on("cpu"), trimesh.creation.icosphere(radius=0.04), n, SeedConfig())
    return TrainingData(q, torch.zeros(n, dtype=torch.long), idx, field.points[None], [field], ["sphere"])


def test_training_reduces_loss_and_resumes(tmp_path):
    torch.manual_seed(0)
    data = _data()
    cfg = TrainConfig(epochs=4, batch_size=16, lr=1e-3)
    model = GraspCVAE.from_config(cfg)
    hist = train(model, data, data, tmp_path, cfg, EnergyConfig())
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    assert hist[-1]["train_recon"] < hist[0]["train_recon"]
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    assert saved["epoch"] == 3
    # a second call with more epochs continues after epoch 3 instead of starting over
    model2 = GraspCVAE.from_config(cfg)
    hist2 = train(model2, data, None, tmp_path, TrainConfig(epochs=6, batch_size=16, lr=1e-3), EnergyConfig())
    assert [h["epoch"] for h in hist2] == [0, 1, 2, 3, 4, 5]
    assert hist2[:4] == hist
    # and with the target already reached it does nothing
    model3 = GraspCVAE.from_config(cfg)
    assert len(train(model3, data, None, tmp_path, TrainConfig(epochs=6), EnergyConfig())) == 6
    for k, v in model3.state_dict().items():
        torch.testing.assert_close(v, torch.load(tmp_path / CHECKPOINT, weights_only=False)["model"][k])


def _ckpt(path):
    return torch.load(path / CHECKPOINT, weights_only=False)


def _assert_same_weights(a, b):
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=0)


def test_step_budget_stops_exactly_and_resumes_from_the_saved_step(tmp_path, monkeypatch):
    """32 grasps in batches of 8: 4 steps an epoch. A budget of 6 stops mid-epoch 1 and checkpoints
    there; re-run with a budget of 11 it takes the 5 missing steps (not 11 from 0) and ends where an
    uninterrupted 11-step run ends, weights and history alike."""
    from dexlite_core import train as train_mod

    data = _data()
    calls = []
    real = train_mod.batch_losses
    monkeypatch.setattr(train_mod, "batch_losses", lambda *a, **k: calls.append(1) or real(*a, **k))

    def cfg(max_steps):
        return TrainConfig(epochs=50, batch_size=8, lr=1e-3, latent_dim=16, max_steps=max_steps)

    torch.manual_seed(0)
    straight = GraspCVAE.from_config(cfg(11))
    hist_straight = train(straight, data, None, tmp_path / "straight", cfg(11), EnergyConfig())
    assert len(calls) == 11
    assert [(h["epoch"], h["steps"], h.get("partial", False)) for h in hist_straight] == [
        (0, 4, False), (1, 8, False), (2, 11, True)]

    calls.clear()
    torch.manual_seed(0)
    hist6 = train(GraspCVAE.from_config(cfg(6)), data, None, tmp_path / "run", cfg(6), EnergyConfig())
    assert len(calls) == 6 and [(h["epoch"], h["steps"]) for h in hist6] == [(0, 4), (1, 6)]
    saved = _ckpt(tmp_path / "run")
    assert saved["steps"] == 6 and saved["epoch"] == 0 and saved["partial"]["epoch"] == 1
    assert saved["partial"]["batch"] == 2  # the third batch of epoch 1 is the next one

    calls.clear()
    torch.manual_seed(123)  # the checkpoint's RNG states, not the caller's, drive the rest
    resumed = GraspCVAE.from_config(cfg(11))
    hist11 = train(resumed, data, None, tmp_path / "run", cfg(11), EnergyConfig())
    assert len(calls) == 5, "resumed from step 0 instead of the saved step 6"
    assert _ckpt(tmp_path / "run")["steps"] == 11
    assert [(h["epoch"], h["steps"]) for h in hist11] == [(0, 4), (1, 8), (2, 11)]
    _assert_same_weights(resumed, straight)
    for h, g in zip(hist11, hist_straight, strict=True):
        assert h.keys() == g.keys()
        for k in h:
            assert h[k] == pytest.approx(g[k], rel=1e-5), k

    # the budget reached: a re-run trains nothing and keeps the saved weights
    calls.clear()
    again = GraspCVAE.from_config(cfg(11))
    assert train(again, data, None, tmp_path / "run", cfg(11), EnergyConfig()) == hist11 and not calls
    _assert_same_weights(again, resumed)


def test_step_budget_at_an_epoch_end_and_epochs_still_cap(tmp_path):
    data = _data()
    cfg = TrainConfig(epochs=5, batch_size=16, lr=1e-3, latent_dim=16, max_steps=4)  # 2 steps an epoch
    hist = train(GraspCVAE.from_config(cfg), data, data, tmp_path / "a", cfg, EnergyConfig())
    assert [(h["epoch"], h["steps"]) for h in hist] == [(0, 2), (1, 4)]
    assert not any(h.get("partial") for h in hist) and "val_loss" in hist[-1]
    saved = _ckpt(tmp_path / "a")
    assert saved["epoch"] == 1 and saved["steps"] == 4 and "partial" not in saved
    few = TrainConfig(epochs=1, batch_size=16, latent_dim=16, max_steps=100)  # epochs first
    assert [h["steps"] for h in train(GraspCVAE.from_config(few), data, None, tmp_path / "b", few,
                                      EnergyConfig())] == [2]


def test_splits_cover_every_object_once_and_never_share_one():
    ids = [f"obj{i}" for i in range(300)]
    split = assign_splits(ids, None, 0.2, 0.1)
    parts = [set(split[s]) for s in ("train", "val", "test")]
    assert sorted(split) == ["test", "train", "val"]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(ids)
    assert 40 <= len(parts[1]) <= 80 and 15 <= len(parts[2]) <= 50
    # the validation objects of the former id-hash split (20 objects, 0.2) are unchanged by the test split
    few = [f"obj{i:02d}" for i in range(20)]
    assert assign_splits(few, None, 0.2, 0.0)["val"] == ["obj02", "obj03", "obj06", "obj07", "obj09"]
    assert assign_splits(few, None, 0.2, 0.1)["val"] == ["obj02", "obj03", "obj06", "obj07", "obj09"]
    assert not assign_splits(ids, None, 0.2, 0.0)["test"]
    with pytest.raises(ValueError, match="test_fraction"):
        assign_splits(ids, None, 0.6, 0.5)


def test_few_objects_degrade_gracefully_with_a_training_object_always():
    assert assign_splits([], None, 0.2, 0.1) == {"train": [], "val": [], "test": []}
    assert assign_splits(["only"], None, 0.9, 0.1) == {"train": ["only"], "val": [], "test": []}
    two = assign_splits(["a", "b"], None, 0.2, 0.1)
    assert len(two["train"]) == 1 and len(two["val"]) == 1 and not two["test"]
    three = assign_splits(["a", "b", "c"], None, 0.2, 0.1)
    assert [len(three[s]) for s in ("train", "val", "test")] == [1, 1, 1]
    for ids in (["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d"]):
        for fv, ft in ((1.0, 0.0), (0.5, 0.5), (0.0, 1.0), (0.0, 0.0)):
            assert assign_splits(ids, None, fv, ft)["train"], (ids, fv, ft)
    # two objects at three scales each: still one group trains and one validates
    groups = {f"{g}-{s}": g for g in ("mug", "duck") for s in (6, 10, 14)}
    split = assign_splits(groups, groups, 0.2, 0.1)
    assert {groups[o] for o in split["train"]} != {groups[o] for o in split["val"]}
    assert len(split["train"]) == len(split["val"]) == 3


def test_instances_of_one_group_land_in_one_split():
    groups = {f"thing{i}-{s}cm-{i * 7 + s:04x}": f"thing{i}" for i in range(150) for s in (6, 10, 16)}
    split = assign_splits(groups, groups, 0.2, 0.1)
    where = {o: s for s, ids in split.items() for o in ids}
    assert sorted(where) == sorted(groups)
    by_group: dict[str, set[str]] = {}
    for o, g in groups.items():
        by_group.setdefault(g, set()).add(where[o])
    assert all(len(s) == 1 for s in by_group.values())
    # the hash is the group's: the same split as the groups themselves
    names = assign_splits(sorted(set(groups.values())), None, 0.2, 0.1)
    assert {s: sorted({groups[o] for o in ids}) for s, ids in split.items()} == names
    # an object without a group is its own
    assert assign_splits(["x", "y"], {"x": None}, 0.5, 0.0) == assign_splits(["x", "y"], None, 0.5, 0.0)


def test_split_is_unchanged_when_objects_are_added():
    ids = [f"obj{i}" for i in range(200)]
    groups = {o: f"g{i // 2}" for i, o in enumerate(ids)}
    before = assign_splits(ids, groups, 0.2, 0.1)
    more = ids + [f"new{i}" for i in range(80)] + ["obj-late"]
    more_groups = {**groups, **{f"new{i}": f"h{i % 30}" for i in range(80)}, "obj-late": "g3"}
    after = assign_splits(more, more_groups, 0.2, 0.1)
    for s in before:
        assert set(before[s]) <= set(after[s]), s
    where = {o: s for s, xs in after.items() for o in xs}
    assert where["obj-late"] == where["obj6"]  # a new instance of an existing group joins its split


def test_first_objects_nest_and_count_groups():
    ids = [f"o{i:03d}-s{s}" for i in range(400) for s in (1, 2)]
    groups = {o: o.split("-")[0] for o in ids}
    train = assign_splits(ids, groups, 0.2, 0.1)["train"]
    subsets = [set(first_objects(train, groups, n)) for n in (14, 100, 300)]
    assert [len({groups[o] for o in sub}) for sub in subsets] == [14, 100, min(300, len(set(map(groups.get, train))))]
    assert all(len(sub) == 2 * len({groups[o] for o in sub}) for sub in subsets)  # every scale of a group
    assert subsets[0] <= subsets[1] <= subsets[2] <= set(train)
    assert first_objects(train, groups, 0) == sorted(train)
    assert first_objects(train[::-1], groups, 14) == sorted(subsets[0])  # the input order does not matter


def test_fit_splits_by_meta_group_whatever_the_seed_and_max_objects(monkeypatch, tmp_path):
    """fit reads each object's group from meta.json, splits the same for train.seed 0 and 1, trains on
    the first max_objects training objects and never loads a test object."""
    import json

    import pyarrow as pa

    from dexlite_core import train as train_mod
    from dexlite_core.config import PipelineConfig

    ids = [f"obj{i:02d}-s{s}" for i in range(20) for s in (1, 2)]
    for o in ids:
        (tmp_path / o).mkdir()
        (tmp_path / o / "meta.json").write_text(json.dumps({"object_id": o, "group": o.split("-")[0]}))
    (tmp_path / "loose").mkdir()  # a meta without a group: its own
    (tmp_path / "loose" / "meta.json").write_text("{}")
    ids.append("loose")
    (tmp_path / "old-4cf2").mkdir()  # a folder from before scales: grouped by its name, as ObjectAsset.group
    (tmp_path / "old-4cf2" / "meta.json").write_text(json.dumps({"object_id": "old-4cf2", "name": "old"}))
    assert read_groups(tmp_path, ["obj03-s1", "loose", "missing", "old-4cf2"]) == {
        "obj03-s1": "obj03", "loose": "loose", "missing": "missing", "old-4cf2": "old"}

    class Stop(Exception):
        pass

    loaded: list[list[str]] = []

    def recording(table, root, object_ids, *args, **kwargs):
        loaded.append(list(object_ids))
        if len(loaded) % 2 == 0:
            raise Stop  # the training and validation objects are all this test needs

    monkeypatch.setattr(train_mod, "training_data", recording)
    table = pa.table({"object_id": ids[::-1] * 2})
    groups = read_groups(tmp_path, ids)
    split = assign_splits(ids, groups, 0.2, 0.1)
    for seed, max_objects in ((0, 0), (1, 0), (0, 3)):
        cfg = PipelineConfig.from_dict({"train": {"seed": seed, "val_fraction": 0.2, "test_fraction": 0.1,
                                                  "max_objects": max_objects}, "dag": {"device": "cpu"}})
        with pytest.raises(Stop):
            train_mod.fit(table, tmp_path, cfg.train, cfg.energy, "cpu", tmp_path / "work")
    # validation objects of the group-hash split are those of the former id-hash split of the groups
    assert {o.split("-")[0] for o in split["val"]} == {"obj02", "obj03", "obj06", "obj07", "obj09"}
    assert split["test"] and loaded[0] == split["train"] and loaded[1] == split["val"]
    assert loaded[2:4] == loaded[0:2]  # another seed, the same split
    assert loaded[4] == first_objects(split["train"], groups, 3) and len({groups[o] for o in loaded[4]}) == 3
    assert loaded[5] == split["val"]
    assert not set().union(*loaded) & set(split["test"])


def _box_grasps():
    """The lift fixtures' held enveloping grasps of a 5 x 5 x 10 cm box `(G, 28)` and the box's field."""
    import json
    from pathlib import Path

    import trimesh

    from dexlite_core.energy import ObjectField
    from dexlite_core.objects.sdf import SDFGrid, compute_sdf

    mesh = trimesh.creation.box((0.05, 0.05, 0.1))
    values, lo, hi, _ = compute_sdf(mesh, 64, 0.04)
    field = ObjectField(SDFGrid(values, lo, hi), torch.as_tensor(mesh.sample(2048), dtype=torch.float32))
    fixtures = json.loads((Path(__file__).parent / "fixtures" / "grasps.json").read_text())
    return torch.tensor(fixtures["box"], dtype=torch.float32), field


def test_fitted_contacts_explain_a_held_grasp_better_than_the_nearest_ones():
    from itertools import combinations

    from dexlite_core.energy import grasp_energy
    from dexlite_core.synthesis import contact_indices_for, fitted_contact_indices

    q, field = _box_grasps()
    hand, cfg = hand_on("cpu"), EnergyConfig()
    fitted = fitted_contact_indices(hand, field, q, cfg, chunk=3)  # chunking must not matter
    nearest = contact_indices_for(hand, field, q, 4)
    e_fit, e_near = (grasp_energy(hand, field, q, i, cfg) for i in (fitted, nearest))

    def score(e):
        return e.E_fc + cfg.weights.dis * e.E_dis

    # the nearest links are one of the subsets searched, so the fit can only score lower ...
    assert (score(e_fit) <= score(e_near) + 1e-5).all()
    # ... and these grasps hold in simulation: some choice of contacts must nearly balance
    assert e_fit.E_fc.max() < 1.0 and e_fit.E_dis.max() < 0.02
    links = hand.cand_link[fitted]
    assert all(len(set(r)) == 4 for r in links.tolist())  # four different links
    thumb = {i for i, n in enumerate(hand.geometry.link_names) if n.endswith(("thdistal", "thmiddle", "thproximal"))}
    assert all(set(r) & thumb for r in links.tolist())  # the thumb opposes the fingers in every one
    # brute force over every subset of per-link nearest candidates for one grasp agrees
    state = hand(q[:1])
    dist = field.sdf.query(state.contact_candidates)[0].abs()[0]
    n_links = int(hand.cand_link.max()) + 1
    best = [int(torch.where(hand.cand_link == li, dist, float("inf")).argmin()) for li in range(n_links)]
    subsets = torch.tensor([[best[li] for li in c] for c in combinations(range(n_links), 4)])
    e_all = grasp_energy(hand, field, q[:1].expand(len(subsets), -1), subsets, cfg)
    assert torch.equal(fitted[0], subsets[int(score(e_all).argmin())])


def test_fill_contacts_keeps_stored_indices_and_fits_missing_ones_at_the_grasp():
    from dexlite_core.synthesis import fitted_contact_indices
    from dexlite_core.train import fill_contacts

    data = _data(6)
    hand = hand_on("cpu")
    stored = data.contact_idx.tolist()
    mixed = [stored[0], None, stored[2], None, None, stored[5]]
    out = fill_contacts(data.q, data.object_index, mixed, data.fields, EnergyConfig())
    assert out.shape == (6, 4) and out.dtype == torch.long
    for i in (0, 2, 5):
        assert out[i].tolist() == stored[i]
    fitted = fitted_contact_indices(hand, data.fields[0], data.q[[1, 3, 4]], EnergyConfig())
    assert torch.equal(out[[1, 3, 4]], fitted)
    assert not torch.equal(out[[1, 3, 4]], data.contact_idx[[1, 3, 4]])  # random init contacts differ


def test_sample_objects_choose_from_the_three_way_split():
    from stages.sample import chosen_objects

    split = {"train": ["t2", "t1"], "val": ["v1"], "test": ["x1"], "unused": ["u1"]}
    assert chosen_objects(split, "all") == ["t1", "t2", "v1", "x1"]  # not the objects max_objects left out
    assert chosen_objects(split, "heldout") == ["v1", "x1"]
    assert chosen_objects(split, "test") == ["x1"] and chosen_objects(split, "val") == ["v1"]
    assert chosen_objects(split, "train") == ["t1", "t2"]
    assert chosen_objects({"train": ["t1"], "val": ["v1"]}, "heldout") == ["v1"]  # an older split.json
    with pytest.raises(ValueError, match="sample.objects"):
        chosen_objects(split, "everything")


def test_batch_order_groups_objects_and_is_a_seeded_permutation() -> None:
    from dexlite_core.train import batch_order

    object_index = torch.arange(40).repeat_interleave(25)  # 40 objects, 25 grasps each
    order = batch_order(object_index, 64, 8, torch.Generator().manual_seed(3))
    assert sorted(order.tolist()) == list(range(1000))
    per_batch = [len(object_index[order[s : s + 64]].unique()) for s in range(0, 1000, 64)]
    assert max(per_batch) <= 16 and sum(per_batch) / len(per_batch) < 12  # ~8 (+ short chunks: 25 = 8+8+8+1)
    again = batch_order(object_index, 64, 8, torch.Generator().manual_seed(3))
    assert torch.equal(order, again)
    random = batch_order(object_index, 64, 0, torch.Generator().manual_seed(3))
    assert sum(len(object_index[random[s : s + 64]].unique()) for s in range(0, 1000, 64)) / 16 > 25
