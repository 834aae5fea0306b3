"""Partitioned grasp files (one row group per object), streaming merges, and ``dexlite dataset stats``
(per-split figures and the dataset card, :mod:`dexlite_core.dataset_card`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dexlite_core import dataset_card as dc
from dexlite_core.dataset import GRASP_SCHEMA, concat_tables, grasps_to_table
from dexlite_core.report import joint_entropy, pca_cumvar
from dexlite_core.stats import wilson_interval
from storage import CorruptArtifactError
from storage.parquet import iter_batches, merge_files, read_grasps, write_grasps

REPO = Path(__file__).resolve().parents[1]


def _table(spec: list[tuple[str, int]], seed: int = 0, source: str = "seed") -> pa.Table:
    """Rows of each (object, count) in that order; grasp_id = 1000 * seed + row (unique, ordered)."""
    rng = np.random.default_rng(seed)
    ids = [o for o, k in spec for _ in range(k)]
    n = len(ids)
    lift = [bool(v) if i % 5 else None for i, v in enumerate(rng.random(n) < 0.6)]  # some untested
    return grasps_to_table(ids, 0.3 * rng.normal(size=(n, 28)), source, grasp_id=1000 * seed + np.arange(n),
                           lift_success=lift, six_dir_success=rng.random(n) < 0.4, round=1)


def _groups_of(path: Path) -> list[tuple[str, str, int]]:
    """(min object_id, max object_id, rows) of each row group, from the footer."""
    md = pq.ParquetFile(path).metadata
    col = md.schema.names.index("object_id")
    return [(md.row_group(g).column(col).statistics.min, md.row_group(g).column(col).statistics.max,
             md.row_group(g).num_rows) for g in range(md.num_row_groups)]


# ------------------------------------------------------------------------------ partitioned files


def test_write_grasps_writes_one_row_group_per_object(tmp_path):
    t = _table([("obj-c", 7), ("obj-a", 3), ("obj-b", 12), ("obj-a", 2)], seed=1)
    path = write_grasps(t, tmp_path / "g.parquet")
    assert _groups_of(path) == [("obj-a", "obj-a", 5), ("obj-b", "obj-b", 12), ("obj-c", "obj-c", 7)]
    back = read_grasps(path)
    assert back.schema.equals(GRASP_SCHEMA, check_metadata=True)  # the schema is unchanged
    assert back.equals(t.sort_by("object_id"))  # sorted, stable within an object
    # an object bigger than row_group_rows spans consecutive groups; no group holds two objects
    assert _groups_of(write_grasps(t, tmp_path / "small.parquet", row_group_rows=4)) == [
        ("obj-a", "obj-a", 4), ("obj-a", "obj-a", 1), ("obj-b", "obj-b", 4), ("obj-b", "obj-b", 4),
        ("obj-b", "obj-b", 4), ("obj-c", "obj-c", 4), ("obj-c", "obj-c", 3)]
    # sort=False keeps the row order: each run of one object is its own group
    assert [g[:2] for g in _groups_of(write_grasps(t, tmp_path / "u.parquet", sort=False))] == [
        ("obj-c", "obj-c"), ("obj-a", "obj-a"), ("obj-b", "obj-b"), ("obj-a", "obj-a")]


def test_reading_one_object_returns_exactly_its_rows_without_reading_the_others(tmp_path):
    t = _table([(f"obj-{i}", 20 + 5 * i) for i in range(4)], seed=2)
    path = write_grasps(t, tmp_path / "g.parquet")
    want = t.filter(pa.compute.equal(t.column("object_id"), "obj-2"))
    got = pa.Table.from_batches(list(iter_batches(path, filter_objects=["obj-2"])))
    assert got.equals(want.replace_schema_metadata(got.schema.metadata))
    assert pq.read_table(path, filters=[("object_id", "=", "obj-2")]).column("grasp_id").equals(
        want.column("grasp_id"))
    # flip bytes inside obj-1's pose pages: obj-2 still reads (obj-1's group is skipped from its
    # statistics), obj-1 and the whole file do not (page checksums)
    md = pq.ParquetFile(path).metadata
    rg = md.row_group(1)
    q = next(rg.column(j) for j in range(rg.num_columns) if rg.column(j).path_in_schema.startswith("q"))
    data = bytearray(path.read_bytes())
    mid = q.data_page_offset + q.total_compressed_size // 2
    data[mid : mid + 8] = bytes(x ^ 0xFF for x in data[mid : mid + 8])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    got = pa.Table.from_batches(list(iter_batches(bad, filter_objects=["obj-2", "obj-3"])))
    assert got.num_rows == 30 + 35 and set(got.column("object_id").to_pylist()) == {"obj-2", "obj-3"}
    with pytest.raises(CorruptArtifactError, match="bad.parquet"):
        list(iter_batches(bad, filter_objects=["obj-1"]))
    with pytest.raises(CorruptArtifactError, match="bad.parquet"):
        read_grasps(bad)


def test_merge_files_keeps_one_row_group_per_object(tmp_path, monkeypatch):
    shards = [
        _table([("obj-b", 5), ("obj-a", 3)], seed=1),
        _table([("obj-c", 4)], seed=2, source="raw"),
        _table([("obj-a", 2), ("obj-d", 6)], seed=3),  # obj-a in two shards
        _table([("obj-d", 2), ("obj-a", 1), ("obj-b", 2), ("obj-a", 1)], seed=4),  # written by plain pyarrow
    ]
    paths = [write_grasps(s, tmp_path / f"shard-{i}.parquet") for i, s in enumerate(shards[:3])]
    pq.write_table(shards[3], tmp_path / "shard-3.parquet", row_group_size=3)  # unsorted, mixed groups
    paths.append(tmp_path / "shard-3.parquet")
    # streaming: never the whole inputs read into one table
    import storage.parquet as sp

    def refuse(*a, **k):
        raise AssertionError("merge_files loaded a whole input")

    monkeypatch.setattr(sp, "read_grasps", refuse)
    monkeypatch.setattr(sp, "concat_tables", refuse)
    out = merge_files(paths, tmp_path / "m.parquet")
    monkeypatch.undo()
    expected = concat_tables([s.sort_by("object_id") for s in shards[:3]] + [shards[3]]).sort_by("object_id")
    got = read_grasps(out)
    assert got.equals(expected)  # sorted; within an object: shard order, then row order
    assert _groups_of(out) == [("obj-a", "obj-a", 7), ("obj-b", "obj-b", 7), ("obj-c", "obj-c", 4),
                               ("obj-d", "obj-d", 8)]
    # the same bytes-level layout as writing the concatenation directly
    direct = write_grasps(concat_tables(shards), tmp_path / "direct.parquet")
    assert _groups_of(direct) == _groups_of(out)
    # batch_size bounds the groups; sort=False keeps input order, still one object per group
    assert [r for *_, r in _groups_of(merge_files(paths, tmp_path / "b.parquet", batch_size=4))] == [
        4, 3, 4, 3, 4, 4, 4]
    for lo, hi, _ in _groups_of(merge_files(paths, tmp_path / "s.parquet", sort=False, batch_size=4)):
        assert lo == hi
    assert read_grasps(tmp_path / "s.parquet").num_rows == expected.num_rows
    # many shards, one object each
    many = [write_grasps(_table([(f"o{i:04d}", 1 + i % 3)], seed=i), tmp_path / "many" / f"{i}.parquet")
            for i in range(60)]
    m = merge_files(list(reversed(many)), tmp_path / "many.parquet")
    assert [g[0] for g in _groups_of(m)] == [f"o{i:04d}" for i in range(60)]
    assert sum(r for *_, r in _groups_of(m)) == sum(1 + i % 3 for i in range(60))


def test_merge_files_names_a_bad_input(tmp_path):
    good = write_grasps(_table([("obj-a", 3)]), tmp_path / "good.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(CorruptArtifactError, match="junk.parquet"):
        merge_files([good, tmp_path / "junk.parquet"], tmp_path / "m.parquet")
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        merge_files([good, tmp_path / "missing.parquet"], tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


# ------------------------------------------------------------------------------ statistics, card


def _stats_table() -> pa.Table:
    """a-1 and a-2: one object at two scales (group "A"); b; c (in no split); lift nulls = untested."""
    spec = [("a-1", 4), ("a-2", 2), ("b", 3), ("c", 2)]
    ids = [o for o, k in spec for _ in range(k)]
    lift = [True, True, False, None, True, False, True, True, True, None, False]
    six = [True, False, False, None, False, False, True, False, True, None, None]
    q = 0.2 * np.random.default_rng(7).normal(size=(len(ids), 28))
    return grasps_to_table(ids, q, ["seed"] * 9 + ["expanded"] * 2, lift_success=lift, six_dir_success=six,
                           round=[1] * 9 + [2] * 2)


def test_split_stats_match_hand_computed_figures():
    t = _stats_table()
    groups = {"a-1": "A", "a-2": "A"}
    split = {"val": ["b"], "train": ["A"], "test": []}  # a split may name groups
    s = dc.split_stats(t, split, groups)
    assert list(s) == ["train", "val", "test", "unassigned", "all"]
    assert [(s[k]["objects"], s[k]["instances"], s[k]["grasps"]) for k in s] == [
        (1, 2, 6), (1, 1, 3), (0, 0, 0), (1, 1, 2), (3, 4, 11)]
    # train (a-1, a-2): lift 3 of 5 tested (one null), six-direction 1 of 5
    assert s["train"]["lift_success"] == {"n": 5, "k": 3, "rate": 0.6, "ci95": list(wilson_interval(3, 5))}
    assert (s["train"]["six_dir_success"]["k"], s["train"]["six_dir_success"]["n"]) == (1, 5)
    assert (s["val"]["lift_success"]["k"], s["val"]["lift_success"]["n"]) == (3, 3)
    assert (s["unassigned"]["lift_success"]["k"], s["unassigned"]["lift_success"]["n"]) == (0, 1)
    assert (s["unassigned"]["six_dir_success"]["n"]) == 0 and s["unassigned"]["six_dir_success"]["rate"] is None
    assert (s["all"]["lift_success"]["k"], s["all"]["lift_success"]["n"]) == (6, 9)
    assert s["all"]["six_dir_success"]["k"] == 3 and s["all"]["six_dir_success"]["n"] == 8
    assert s["test"]["lift_success"]["rate"] is None and s["test"]["diversity_joint_entropy_bits"] is None
    # diversity: the report's measures on the split's poses
    q = np.asarray(t.column("q").to_pylist(), dtype=np.float64)
    assert s["train"]["diversity_joint_entropy_bits"] == pytest.approx(joint_entropy(q[:6]))
    assert s["all"]["diversity_pca_cumvar5"] == pytest.approx(pca_cumvar(q))
    assert s["all"]["sources"] == {"expanded": 2, "seed": 9} and s["all"]["rounds"] == {"1": 9, "2": 2}
    # without groups: instances = objects; without a split: one split "all"
    plain = dc.split_stats(t)
    assert list(plain) == ["all"] and (plain["all"]["objects"], plain["all"]["instances"]) == (4, 4)
    # the same from pandas, and a table without the lift columns
    assert dc.split_stats(t.to_pandas(), split, groups)["train"]["lift_success"]["k"] == 3
    bare = dc.split_stats(t.select(["object_id", "q"]))
    assert bare["all"]["lift_success"] is None and bare["all"]["grasps"] == 11


def test_object_groups_from_meta_json(tmp_path):
    for oid, meta in {"a-1": {"group": "A", "scale": 1.0}, "a-2": {"group": "A", "scale": 1.5}, "b": {}}.items():
        (tmp_path / oid).mkdir()
        (tmp_path / oid / "meta.json").write_text(json.dumps({"object_id": oid, **meta}))
    assert dc.object_groups(tmp_path, ["a-1", "a-2", "b", "gone"]) == {"a-1": "A", "a-2": "A", "b": "b", "gone": "gone"}
    assert dc.object_groups(tmp_path / "nope", ["a-1"]) is None
    (tmp_path / "b" / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="meta.json"):
        dc.object_groups(tmp_path, ["b"])


def test_card_json_and_markdown(tmp_path):
    t = _stats_table()
    card = dc.build_card(t, {"train": ["A"], "val": ["b"]}, {"a-1": "A", "a-2": "A"}, file="x/grasps.parquet",
                         provenance={"stage": "dataset", "key": "k1", "config_digest": "abc"})
    js, md = dc.write_card(card, tmp_path)
    doc = json.loads(js.read_text())
    assert doc["format"] == dc.CARD_FORMAT and (doc["grasps"], doc["objects"], doc["instances"]) == (11, 3, 4)
    assert list(doc["splits"]) == ["train", "val", "unassigned", "all"]
    assert [c["name"] for c in doc["schema"]["columns"]] == GRASP_SCHEMA.names
    assert doc["schema"]["metadata"]["dexlite.euler"] == "sxyz" and doc["provenance"]["key"] == "k1"
    text = md.read_text()
    assert "| train | 1 | 2 | 6 | 60.0% [" in text and "(n=5)" in text and "`abc`" in text
    assert "Shadow Hand" in text and "| `q` |" in text


# ------------------------------------------------------------------------------ the command


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", "dataset", "stats", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_stats_of_a_file(tmp_path):
    path = write_grasps(_stats_table(), tmp_path / "grasps.parquet")
    (tmp_path / "split.json").write_text(json.dumps({"train": ["a-1", "a-2"], "val": ["b"]}))
    r = _cli(str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    row = {ln.split()[0]: ln.split() for ln in lines if ln.split() and ln.split()[0] in ("train", "val", "all")}
    assert row["train"][1:4] == ["2", "2", "6"] and row["val"][1:4] == ["1", "1", "3"]
    assert row["all"][1:4] == ["4", "4", "11"] and "unassigned" in r.stdout
    assert "60.0%" in row["train"][4] and "(n=5)" in " ".join(row["train"])
    doc = json.loads((tmp_path / "dataset_card.json").read_text())
    assert doc["splits"]["train"]["grasps"] == 6 and doc["split_from"] == str(tmp_path / "split.json")
    assert (tmp_path / "dataset_card.md").read_text().startswith("# Dataset card")


def test_cli_stats_of_a_run_folder(tmp_path):
    """A run folder: the newest dataset stage run; the split of the train run on it, the groups from the
    objects artifact upstream, the provenance from the manifest; the card in the run folder."""
    from dexlite_core.config import PipelineConfig
    from storage import open_store

    cfg = PipelineConfig().to_dict()
    store = open_store(tmp_path / "run" / "artifacts")
    with store.open_stage("objects", "ko", config={"objects": cfg["objects"]}) as w:
        for oid, group in {"a-1": "A", "a-2": "A", "b": None, "c": None}.items():
            meta = {"object_id": oid, **({"group": group} if group else {})}
            w.write_json(f"objects/{oid}/meta.json", meta)
    with store.open_stage("lift", "kl", inputs={"objects": "ko", "seed": "ks"}) as w:
        write_grasps(_stats_table(), w.file("grasps.parquet"))
    with store.open_stage("dataset", "kd", inputs={"lift": "kl"}, config={"dataset": cfg["dataset"]},
                          code="c0de") as w:
        write_grasps(_stats_table(), w.file("grasps.parquet"))
        w.write_json("stats.json", {"round": 1})
    with store.open_stage("train", "kt", inputs={"objects": "ko", "dataset": "kd"}) as w:
        w.write_json("split.json", {"train": ["a-1", "a-2", "c"], "val": ["b"]})
    run = tmp_path / "run"
    (run / "stages.json").write_text(json.dumps({
        "lift": {"path": str(store.stage_dir("lift", "kl"))},
        "dataset": {"path": str(store.stage_dir("dataset", "kd"))},
    }))
    r = _cli(str(run))
    assert r.returncode == 0, r.stderr
    assert "dataset/kd/grasps.parquet" in r.stdout and "train/kt/split.json" in r.stdout
    doc = json.loads((run / "dataset_card.json").read_text())
    assert [(k, s["objects"], s["instances"], s["grasps"]) for k, s in doc["splits"].items()] == [
        ("train", 2, 3, 8), ("val", 1, 1, 3), ("all", 3, 4, 11)]
    prov = doc["provenance"]
    assert (prov["stage"], prov["key"], prov["code_version"], prov["round"]) == ("dataset", "kd", "c0de", 1)
    assert prov["config_digest"] == PipelineConfig().digest("dataset")
    assert doc["groups_from"].endswith("objects/ko/objects")
    assert store.problems("dataset", "kd") == []  # nothing written into the artifact
    assert (run / "dataset_card.md").is_file()


@pytest.mark.parametrize("case", ["missing", "text", "empty-folder"])
def test_cli_bad_path_is_one_line(tmp_path, case):
    path = {"missing": tmp_path / "missing.parquet", "text": tmp_path / "notes.parquet", "empty-folder": tmp_path}[case]
    if case == "text":
        path.write_text("object_id,q\na,1\n")
    r = _cli(str(path))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], r.stderr
    assert not (tmp_path / "dataset_card.json").exists()
