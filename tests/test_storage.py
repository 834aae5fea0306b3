"""Storage layer: grasp schema, Parquet I/O, content-addressed artifact store, DexGraspNet importer."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dexlite_core.dataset import (
    GRASP_SCHEMA,
    Q_TYPE,
    GraspTableError,
    grasps_to_table,
    pose_names,
    table_q,
)
from dexlite_core.hand.asset import JOINT_NAMES, POSE_NAMES
from storage import (
    ArtifactStore,
    CorruptArtifactError,
    FsspecStore,
    IncompleteArtifactError,
    LocalStore,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    content_key,
    hash_bytes,
    hash_file,
    hash_json,
    open_store,
)
from storage.dexgraspnet import (
    DexGraspNetFormatError,
    dexgraspnet_to_table,
    read_dexgraspnet_npy,
    scale_lookup,
)
from storage.parquet import (
    append_grasps,
    concat_tables,
    count_rows,
    iter_batches,
    merge_files,
    read_grasp_table,
    read_grasps,
    write_grasps,
)
from storage.store import MANIFEST, SUCCESS


def _table(n_per_obj: dict[str, int], seed: int = 0, source: str = "raw") -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = [o for o, k in n_per_obj.items() for _ in range(k)]
    n = len(ids)
    q = rng.normal(size=(n, 28)).astype(np.float32)
    lift = rng.random(n) < 0.5
    lift_ratio = rng.random(n).astype(np.float32)
    lift_col = [bool(v) if i % 3 else None for i, v in enumerate(lift)]  # some nulls
    return grasps_to_table(
        ids,
        q,
        source,
        grasp_id=np.arange(n),
        lift_success=lift_col,
        lift_ratio=lift_ratio,
        energy=rng.random(n),
        round=2,
    )


# ------------------------------------------------------------------------------------ schema


def test_schema_metadata_and_columns():
    meta = GRASP_SCHEMA.metadata
    assert json.loads(meta[b"dexlite.pose_names"]) == list(POSE_NAMES)
    assert meta[b"dexlite.euler"] == b"sxyz" and meta[b"dexlite.schema_version"] == b"1"
    assert GRASP_SCHEMA.field("q").type == Q_TYPE and Q_TYPE.list_size == 28
    t = grasps_to_table("obj-a", np.zeros((2, 28)), "seed")
    assert t.schema.equals(GRASP_SCHEMA, check_metadata=True)
    assert t.column("lift_success").null_count == 2 and t.column("E_fc").null_count == 2
    with pytest.raises(GraspTableError, match="unknown grasp column"):
        grasps_to_table("obj-a", np.zeros((2, 28)), "seed", lift_sucess=[True, False])
    with pytest.raises(GraspTableError, match="unknown source"):
        grasps_to_table("obj-a", np.zeros((2, 28)), "bogus")
    with pytest.raises(GraspTableError, match="shape"):
        grasps_to_table("obj-a", np.zeros((2, 27)), "seed")
    with pytest.raises(GraspTableError, match="3 values for 2"):
        grasps_to_table("obj-a", np.zeros((2, 28)), "seed", energy=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e40])
def test_nonfinite_pose_rejected(tmp_path, bad):
    q = np.zeros((4, 28))
    q[2, 9] = bad
    with pytest.raises(GraspTableError, match=r"row 2 \(object 'obj-c'\).*FFJ0"):
        grasps_to_table(["obj-a", "obj-b", "obj-c", "obj-d"], q, "raw")
    # a table assembled by hand (bypassing grasps_to_table) is refused by the writer
    good = grasps_to_table("obj-a", np.zeros((4, 28)), "raw")
    with np.errstate(over="ignore"):
        q32 = q.astype(np.float32)
    qa = pa.FixedSizeListArray.from_arrays(pa.array(q32.ravel()), type=Q_TYPE)
    bad_table = good.set_column(good.schema.get_field_index("q"), GRASP_SCHEMA.field("q"), qa)
    with pytest.raises(GraspTableError, match="row 2"):
        write_grasps(bad_table, tmp_path / "bad.parquet")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------ parquet


def test_parquet_round_trip_exact(tmp_path):
    t = _table({"obj-c": 7, "obj-a": 3, "obj-b": 12}, seed=1)
    # exact float32 edge values survive
    q = table_q(t)
    q[0, :5] = [np.float32(1e-45), -0.0, np.float32(3.4028235e38), np.float32(1 / 3), -np.float32(1e-38)]
    t = grasps_to_table(t.column("object_id").to_pylist(), q, "raw", **{
        c: t.column(c) for c in ("grasp_id", "lift_success", "lift_ratio", "energy", "round")
    })
    path = write_grasps(t, tmp_path / "g.parquet", row_group_rows=5)
    back = read_grasps(path)
    assert back.schema.equals(GRASP_SCHEMA, check_metadata=True)
    assert pose_names(back) == POSE_NAMES
    expected = t.sort_by("object_id")  # stable: file order kept within an object
    assert back.equals(expected)
    assert table_q(back).tobytes() == table_q(expected).tobytes()  # bit-exact, -0.0 included
    assert back.column("object_id").to_pylist() == ["obj-a"] * 3 + ["obj-b"] * 12 + ["obj-c"] * 7
    ids = back.column("grasp_id").to_numpy()
    assert (np.diff(ids[:3]) > 0).all() and (np.diff(ids[3:15]) > 0).all()
    # row groups follow object boundaries and the size bound
    md = pq.ParquetFile(path).metadata
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert sizes == [3, 5, 5, 2, 5, 2] and count_rows(path) == 22
    # zstd compression and no temp files left behind
    assert md.row_group(0).column(0).compression == "ZSTD"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.parquet"]


def test_corrupt_parquet_raises(tmp_path):
    path = tmp_path / "g.parquet"
    write_grasps(_table({"obj-a": 300, "obj-b": 200}), path)
    data = path.read_bytes()

    trunc = tmp_path / "trunc.parquet"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArtifactError, match="trunc.parquet"):
        read_grasps(trunc)
    with pytest.raises(CorruptArtifactError, match="trunc.parquet"):
        list(iter_batches(trunc, 64))

    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1" + os.urandom(2000))
    with pytest.raises(CorruptArtifactError, match="garbage.parquet"):
        read_grasps(garbage)

    flipped = tmp_path / "flipped.parquet"  # a bit flip inside the data pages: page checksums catch it
    b = bytearray(data)
    i = len(b) // 3
    b[i : i + 8] = bytes(x ^ 0xFF for x in b[i : i + 8])
    flipped.write_bytes(bytes(b))
    with pytest.raises(CorruptArtifactError, match="flipped.parquet"):
        read_grasps(flipped)

    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        read_grasps(tmp_path / "missing.parquet")


def test_parquet_write_failure_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "g.parquet"
    write_grasps(_table({"obj-a": 4}), path)
    before = path.read_bytes()
    calls = {"n": 0}
    real = pq.ParquetWriter.write_table

    def failing(self, table, row_group_size=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full (simulated)")
        return real(self, table, row_group_size=row_group_size)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        write_grasps(_table({"obj-a": 4, "obj-b": 4}), path, row_group_rows=4)
    assert calls["n"] == 2
    assert path.read_bytes() == before  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["g.parquet"]  # no temp left


# ------------------------------------------------------------------ foreign grasp tables (evaluate)


def _plain(q, ids=None, q_type=None, metadata=None, **extra) -> pa.Table:
    ids = ids if ids is not None else [f"obj-{i % 2}" for i in range(len(q))]
    qa = pa.array([None if r is None else list(r) for r in q], type=q_type or pa.list_(pa.float64()))
    t = pa.table({"object_id": ids, "q": qa, **extra})
    return t.replace_schema_metadata(metadata) if metadata is not None else t


@pytest.mark.parametrize("q_type", [
    pa.list_(pa.float64()), pa.list_(pa.float32()), pa.large_list(pa.float64()),
    pa.list_(pa.float64(), 28), pa.list_(pa.float32(), 28),
])
def test_read_grasp_table_accepts_plain_parquet_with_a_note(tmp_path, q_type):
    q = np.random.default_rng(0).normal(size=(5, 28))
    path = tmp_path / "grasps.parquet"
    pq.write_table(_plain(q, q_type=q_type, score=np.arange(5)), path)
    table, note = read_grasp_table(path)
    assert note == (f"{path}: no DexLite metadata; assuming q = [t (3), euler sxyz (3), 22 joints in "
                    "DexGraspNet order] (README)")
    assert table.schema.field("q").type == Q_TYPE and table.schema.field("object_id").type == pa.string()
    assert table_q(table).tobytes() == q.astype(np.float32).tobytes()  # file row order, exact float32
    assert table.column("score").to_pylist() == list(range(5))  # other columns kept
    assert pose_names(table) == POSE_NAMES  # now carries DexLite's metadata


def test_read_grasp_table_own_files_and_matching_metadata_give_no_note(tmp_path):
    path = write_grasps(_table({"obj-a": 3, "obj-b": 2}), tmp_path / "own.parquet")
    table, note = read_grasp_table(path)
    assert note is None
    assert table.equals(read_grasps(path)) and table.schema.equals(GRASP_SCHEMA, check_metadata=True)
    # another producer writing DexLite's metadata (joint names with the MJCF prefix, variable-length q)
    meta = {b"dexlite.euler": b"sxyz",
            b"dexlite.pose_names": json.dumps(["tx", "ty", "tz", "rx", "ry", "rz", *JOINT_NAMES]).encode()}
    pq.write_table(_plain(np.zeros((2, 28)), metadata=meta), tmp_path / "theirs.parquet")
    assert read_grasp_table(tmp_path / "theirs.parquet")[1] is None
    # part of the metadata: the rest is assumed, and the note says which key was missing
    pq.write_table(_plain(np.zeros((2, 28)), metadata={b"dexlite.euler": b"sxyz"}), tmp_path / "part.parquet")
    note = read_grasp_table(tmp_path / "part.parquet")[1]
    assert "part.parquet" in note and "dexlite.pose_names" in note and "assuming" in note


def _names(swap: tuple[int, int] | None = None, extra: list[str] | None = None) -> bytes:
    names = list(POSE_NAMES) if extra is None else extra
    if swap:
        i, j = swap
        names[i], names[j] = names[j], names[i]
    return json.dumps(names).encode()


@pytest.mark.parametrize(("meta", "message"), [
    ({b"dexlite.euler": b"rzyx"}, "euler convention differs: metadata dexlite.euler is 'rzyx'"),
    ({b"dexlite.euler": b"sxyz", b"dexlite.pose_names": _names(swap=(6, 7))},
     "joint order differs: metadata dexlite.pose_names has 'FFJ2' at q[6]"),
    ({b"dexlite.pose_names": _names(extra=["tx", "ty", "tz", "qw", "qx", "qy", "qz", *POSE_NAMES[6:]])},
     "pose layout differs: metadata dexlite.pose_names has 29 names"),
    ({b"dexlite.pose_names": b"not json"}, "dexlite.pose_names is not a JSON list"),
])
def test_read_grasp_table_refuses_another_convention(tmp_path, meta, message):
    path = tmp_path / "other.parquet"
    pq.write_table(_plain(np.zeros((2, 28)), metadata=meta), path)
    with pytest.raises(ValueError, match=r"other\.parquet") as e:
        read_grasp_table(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_read_grasp_table_names_the_bad_row(tmp_path):
    q = [list(r) for r in np.zeros((4, 28))]
    cases = {
        "short": ([*q[:2], q[2][:27], q[3]], "row 2 (object 'obj-0'): q has 27 value(s), expected 28"),
        "long": ([*q[:3], [*q[3], 1.0]], "row 3 (object 'obj-1'): q has 29 value(s)"),
        "null": ([q[0], None, *q[2:]], "row 1 (object 'obj-1'): q is null"),
        "nan": ([q[0], [*q[1][:9], float("nan"), *q[1][10:]], *q[2:]], "row 1 (object 'obj-1'): q is not 28 finite"),
        "overflow": ([*q[:3], [1e40, *q[3][1:]]], "row 3 (object 'obj-1'): q is not 28 finite"),
        "inner_null": ([*q[:2], [None, *q[2][1:]], q[3]], "row 2 (object 'obj-0'): q is not 28 finite"),
    }
    for name, (rows, message) in cases.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"object_id": ["obj-0", "obj-1"] * 2, "q": pa.array(rows, pa.list_(pa.float64()))}),
                       path)
        with pytest.raises(ValueError, match=f"{name}\\.parquet") as e:
            read_grasp_table(path)
        assert message in str(e.value), (name, str(e.value))
    assert "FFJ0" in str(pytest.raises(ValueError, read_grasp_table, tmp_path / "nan.parquet").value)
    bad = [q[0][:27]] * 3 + [q[0]]
    pq.write_table(pa.table({"object_id": ["a", "b", "c", "d"], "q": bad}), tmp_path / "many.parquet")
    with pytest.raises(ValueError, match="row 0 .*3 bad row"):
        read_grasp_table(tmp_path / "many.parquet")
    pq.write_table(pa.table({"object_id": ["a", None], "q": q[:2]}), tmp_path / "noid.parquet")
    with pytest.raises(ValueError, match=r"noid\.parquet: row 1: object_id is null"):
        read_grasp_table(tmp_path / "noid.parquet")


def test_read_grasp_table_refuses_files_that_are_not_grasp_tables(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        read_grasp_table(tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match="is a folder"):
        read_grasp_table(tmp_path)
    (tmp_path / "text.parquet").write_text("object_id,q\na,1\n")
    with pytest.raises(ValueError, match=r"text\.parquet: not a readable Parquet file"):
        read_grasp_table(tmp_path / "text.parquet")
    path = write_grasps(_table({"obj-a": 300}), tmp_path / "g.parquet")
    (tmp_path / "trunc.parquet").write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"trunc\.parquet: not a readable Parquet file"):
        read_grasp_table(tmp_path / "trunc.parquet")
    q = [[0.0] * 28]
    for name, table, message in [
        ("noq", pa.table({"object_id": ["a"], "pose": q}), r"lacks column\(s\) \['q'\]"),
        ("noid", pa.table({"q": q}), r"lacks column\(s\) \['object_id'\]"),
        ("intid", pa.table({"object_id": [3], "q": q}), "'object_id' has type int64, expected string"),
        ("intq", pa.table({"object_id": ["a"], "q": [[0] * 28]}), "'q' holds int64, expected float32 or float64"),
        ("flatq", pa.table({"object_id": ["a"], "q": [0.5]}), "'q' has type double, expected a list"),
    ]:
        pq.write_table(table, tmp_path / f"{name}.parquet")
        with pytest.raises(ValueError, match=rf"{name}\.parquet: .*{message}"):
            read_grasp_table(tmp_path / f"{name}.parquet")


def test_iter_batches_sizes_filter_and_folders(tmp_path):
    t = _table({f"obj-{i:02d}": 37 + 11 * i for i in range(10)}, seed=3)  # 865 rows
    n = t.num_rows
    path = write_grasps(t, tmp_path / "part-0.parquet", row_group_rows=50)
    sizes = [b.num_rows for b in iter_batches(path, 128)]
    assert sizes == [128] * (n // 128) + [n % 128]
    assert [b.num_rows for b in iter_batches(path, 10_000)] == [n]
    batch = next(iter_batches(path, 16, columns=["object_id", "q"]))
    assert batch.schema.names == ["object_id", "q"]
    assert json.loads(batch.schema.metadata[b"dexlite.pose_names"]) == list(POSE_NAMES)
    # streamed poses equal the stored ones
    streamed = np.concatenate([table_q(b) for b in iter_batches(path, 100)])
    assert np.array_equal(streamed, table_q(read_grasps(path)))
    # object filter
    want = {"obj-03", "obj-07"}
    got = pa.Table.from_batches(list(iter_batches(path, 64, filter_objects=want)))
    assert set(got.column("object_id").to_pylist()) == want
    assert got.num_rows == (37 + 33) + (37 + 77)
    assert list(iter_batches(path, 64, filter_objects=["nope"])) == []
    # a folder: parquet parts only; temp, hidden and marker files are skipped
    write_grasps(_table({"obj-z": 40}, seed=4), tmp_path / "sub" / "part-1.parquet")
    (tmp_path / ".g.tmp-123.parquet").write_bytes(b"partial")
    (tmp_path / SUCCESS).write_text("")
    (tmp_path / MANIFEST).write_text("{}")
    sizes = [b.num_rows for b in iter_batches(tmp_path, 100)]
    assert sum(sizes) == n + 40 and all(s == 100 for s in sizes[:-1]) and sizes[-1] <= 100


def test_concat_append_merge(tmp_path):
    a, b = _table({"obj-b": 5, "obj-a": 2}, seed=5), _table({"obj-a": 3}, seed=6, source="postopt")
    c = concat_tables([a, b])
    assert c.num_rows == 10 and c.schema.equals(GRASP_SCHEMA, check_metadata=True)
    # a table from another pose order is refused, one without metadata is accepted
    foreign = a.replace_schema_metadata({b"dexlite.pose_names": json.dumps(list(reversed(POSE_NAMES)))})
    with pytest.raises(GraspTableError, match="pose order"):
        concat_tables([a, foreign])
    assert concat_tables([a.replace_schema_metadata(None)]).num_rows == 7
    # append creates, then rewrites
    path = tmp_path / "d.parquet"
    append_grasps(path, a)
    append_grasps(path, b)
    got = read_grasps(path)
    assert got.num_rows == 10 and got.column("object_id").to_pylist() == ["obj-a"] * 5 + ["obj-b"] * 5
    assert got.column("source").to_pylist()[:5] == ["raw", "raw", "postopt", "postopt", "postopt"]
    # merge several stage outputs
    pa_, pb = write_grasps(a, tmp_path / "a.parquet"), write_grasps(b, tmp_path / "b.parquet")
    merged = read_grasps(merge_files([pa_, pb], tmp_path / "m.parquet"))
    assert merged.equals(got)
    streamed = read_grasps(merge_files([pa_, pb], tmp_path / "s.parquet", sort=False, batch_size=4))
    assert streamed.num_rows == 10
    assert np.array_equal(table_q(streamed), np.concatenate([table_q(a.sort_by("object_id")), table_q(b)]))


# ------------------------------------------------------------------------------ hashes, atomic


def test_hash_helpers(tmp_path):
    p = tmp_path / "f.bin"
    data = os.urandom(3 << 20)  # > one read chunk
    p.write_bytes(data)
    assert hash_file(p) == hash_bytes(data) and len(hash_bytes(data)) == 64
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})
    assert hash_json({"a": np.float32(0.5)}) == hash_json({"a": 0.5})
    assert hash_json({"a": 1}) != hash_json({"a": 2})


def test_content_key_changes_only_with_inputs_config_code():
    inputs = {"objects": "aa" * 32, "seeds": "bb" * 32}
    cfg = {"energy": {"w_dis": 100.0, "w_pen": 100.0}, "steps": 200}
    k = content_key(inputs, cfg, "code1")
    assert k == content_key(dict(reversed(list(inputs.items()))), cfg, "code1")
    assert k == content_key(inputs, json.loads(json.dumps(cfg)), "code1")
    assert k != content_key({**inputs, "seeds": "bc" * 32}, cfg, "code1")
    assert k != content_key(inputs, {**cfg, "steps": 201}, "code1")
    assert k != content_key(inputs, cfg, "code2")
    assert k != content_key({"objects": "aa" * 32}, cfg, "code1")
    assert content_key(["x", "y"], cfg, "c") != content_key(["y", "x"], cfg, "c")
    store = open_store(f"memory://dexlite-key-{uuid.uuid4().hex}")
    with pytest.raises(TypeError):  # the store cannot know the code version: the caller passes the key
        store.open_stage("raw", inputs=inputs, config=cfg)  # type: ignore[call-arg]


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.npy"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="mid-way"):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".npy")
            with open(tmp, "wb") as f:
                f.write(b"partial new cont")
            raise RuntimeError("writer died mid-way")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]
    with atomic_path(target) as tmp:
        np.save(tmp, np.arange(3))
    assert np.array_equal(np.load(target), np.arange(3))
    atomic_write_json(tmp_path / "x.json", {"b": np.int64(2), "a": Path("p")})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": "p", "b": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "x.json"]


# ------------------------------------------------------------------------------ artifact store


def _fill(w, payload: bytes = b"hello") -> None:
    w.write_bytes("a.bin", payload)
    w.write_json("sub/info.json", {"n": 3})
    write_grasps(_table({"obj-a": 3}), w.file("grasps.parquet"))


def test_stage_commit_manifest_and_list(tmp_path):
    store = open_store(tmp_path / "art")
    inputs, cfg = {"objects": "ab" * 32}, {"steps": 10}
    key = content_key(inputs, cfg, "code1")
    assert not store.is_complete("raw", key) and store.list("raw") == []
    with store.open_stage("raw", key, inputs=inputs, config=cfg, code="code1") as w:
        assert w.path.name.startswith(f".tmp-{key}-") and w.path.parent == tmp_path / "art" / "raw"
        _fill(w)
        assert not store.is_complete("raw", key)
    assert w.final == tmp_path / "art" / "raw" / key
    assert store.is_complete("raw", key) and store.list("raw") == [key] and store.stages() == ["raw"]
    man = store.verify("raw", key)
    assert man["stage"] == "raw" and man["key"] == key and man["inputs"] == inputs
    assert man["config"] == cfg and man["code_version"] == "code1" and man["created"]
    assert set(man["files"]) == {"a.bin", "sub/info.json", "grasps.parquet"}
    assert man["files"]["a.bin"] == {"sha256": hash_bytes(b"hello"), "size": 5}
    assert read_grasps(store.stage_dir("raw", key) / "grasps.parquet").num_rows == 3
    assert store.read_json("raw", key, "sub/info.json") == {"n": 3}
    assert sorted(p.name for p in (tmp_path / "art" / "raw").iterdir()) == [key]  # temp renamed away
    # a second writer of the same key keeps the committed output
    with store.open_stage("raw", key, inputs=inputs, config=cfg) as w2:
        w2.write_bytes("a.bin", b"other")
    assert store.read_bytes("raw", key, "a.bin") == b"hello" and store.list("raw") == [key]
    with store.open_stage("raw", key, overwrite=True) as w3:
        w3.write_bytes("a.bin", b"new")
    assert store.read_bytes("raw", key, "a.bin") == b"new" and store.verify("raw", key)
    with pytest.raises(ValueError, match="reserved"):
        with store.open_stage("raw", "k2") as w4:
            w4.write_bytes(SUCCESS, b"")
    with pytest.raises(ValueError, match="invalid stage"):
        store.is_complete("../x", key)


def test_stage_exception_and_leftover_temp_never_complete(tmp_path):
    store = open_store(tmp_path)
    key = "k" * 20
    with pytest.raises(RuntimeError, match="crash"):
        with store.open_stage("postopt", key) as w:
            w.write_bytes("half.bin", b"x" * 100)
            raise RuntimeError("crash while writing")
    assert not store.is_complete("postopt", key)
    assert list((tmp_path / "postopt").iterdir()) == []  # temp removed
    with pytest.raises(IncompleteArtifactError):
        store.manifest("postopt", key)
    # a writer killed after its marker but before the rename: the temp folder is never complete
    leftover = tmp_path / "postopt" / f".tmp-{key}-deadbeef"
    leftover.mkdir()
    (leftover / "a.bin").write_bytes(b"a")
    (leftover / MANIFEST).write_text("{}")
    (leftover / SUCCESS).write_text("")
    stale = tmp_path / "postopt" / "stalekey"  # a copied-but-unmarked folder (object-store style)
    stale.mkdir()
    (stale / "a.bin").write_bytes(b"a")
    assert not store.is_complete("postopt", key) and not store.is_complete("postopt", "stalekey")
    assert store.list("postopt") == []
    with store.open_stage("postopt", "goodkey") as w:
        w.write_bytes("a.bin", b"a")
    assert store.list("postopt") == ["goodkey"]
    assert store.clean_incomplete(min_age_s=3600) == []  # too young
    removed = store.clean_incomplete()
    assert sorted(Path(p).name for p in removed) == [leftover.name, "stalekey"]
    assert sorted(p.name for p in (tmp_path / "postopt").iterdir()) == ["goodkey"]


def test_verify_detects_modified_truncated_missing_extra(tmp_path):
    store = open_store(tmp_path)
    with store.open_stage("raw", "key1") as w:
        _fill(w, payload=b"0123456789" * 100)
    assert store.problems("raw", "key1") == []
    d = store.stage_dir("raw", "key1")
    blob = bytearray((d / "a.bin").read_bytes())
    blob[500] ^= 1  # same size, one bit
    (d / "a.bin").write_bytes(bytes(blob))
    with pytest.raises(CorruptArtifactError, match=r"a\.bin: sha256 differs"):
        store.verify("raw", "key1")
    pq_bytes = (d / "grasps.parquet").read_bytes()
    (d / "grasps.parquet").write_bytes(pq_bytes[:-10])
    (d / "sub" / "info.json").unlink()
    (d / "extra.txt").write_text("?")
    probs = store.problems("raw", "key1")
    assert any(p.startswith("grasps.parquet: size") for p in probs)
    assert "sub/info.json: missing" in probs and "extra.txt: not in the manifest" in probs
    (d / MANIFEST).write_text("{not json")
    with pytest.raises(CorruptArtifactError, match="manifest"):
        store.manifest("raw", "key1")


def test_memory_fsspec_store_and_parquet():
    root = f"memory://dexlite-test-{uuid.uuid4().hex}"
    store = open_store(root)
    assert isinstance(store, FsspecStore) and store.list("raw") == []
    with pytest.raises(RuntimeError, match="boom"):
        with store.open_stage("raw", "key1") as w:
            w.write_bytes("a.bin", b"a")
            raise RuntimeError("boom")
    assert not store.is_complete("raw", "key1") and store.stages() == []
    with store.open_stage("raw", "key1", inputs=["h1"], config="digest") as w:
        _fill(w)
    assert isinstance(w.final, str) and w.final.startswith("memory://")
    assert not w.path.exists()  # local staging removed
    assert store.is_complete("raw", "key1") and store.list("raw") == ["key1"]
    man = store.verify("raw", "key1")
    assert man["inputs"] == ["h1"] and set(man["files"]) == {"a.bin", "sub/info.json", "grasps.parquet"}
    url = f"{store.stage_dir('raw', 'key1')}/grasps.parquet"
    assert read_grasps(url).num_rows == 3
    assert sum(b.num_rows for b in iter_batches(url, 2)) == 3
    # Parquet straight to / from a memory URL
    t = _table({"obj-b": 4, "obj-a": 5})
    write_grasps(t, f"{root}/direct/g.parquet")
    assert read_grasps(f"{root}/direct/g.parquet").equals(t.sort_by("object_id"))
    assert [b.num_rows for b in iter_batches(f"{root}/direct", 4)] == [4, 4, 1]
    # corruption on the object store is detected too
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{root}/raw/key1/a.bin".removeprefix("memory://"), b"tampered")
    with pytest.raises(CorruptArtifactError, match="a.bin"):
        store.verify("raw", "key1")
    # an uploaded-but-unmarked folder is not complete and gets cleaned
    fs.pipe_file(f"{root}/raw/key2/a.bin".removeprefix("memory://"), b"a")
    assert store.list("raw") == ["key1"]
    assert len(store.clean_incomplete()) == 1 and not fs.exists(f"{root}/raw/key2".removeprefix("memory://"))


def test_open_store_picks_the_implementation(tmp_path):
    local = open_store(tmp_path / "art")
    assert isinstance(local, LocalStore) and isinstance(local, ArtifactStore)
    assert local.root == tmp_path / "art" and local.url == str(tmp_path / "art")
    as_url = open_store(f"file://{tmp_path}/art2")
    assert isinstance(as_url, LocalStore) and as_url.root == tmp_path / "art2"
    mem = open_store(f"memory://dexlite-open-{uuid.uuid4().hex}")
    assert isinstance(mem, FsspecStore) and mem.url.startswith("memory://")
    assert repr(mem) == f"FsspecStore({mem.url!r})"


def test_local_path_and_work_dir_local(tmp_path):
    store = open_store(tmp_path)
    with store.open_stage("raw", "key1") as w:
        w.write_bytes("a.bin", b"a")
    assert store.local_path("raw", "key1") == tmp_path / "raw" / "key1" == store.stage_dir("raw", "key1")
    with pytest.raises(IncompleteArtifactError, match="key2"):
        store.local_path("raw", "key2")
    wd = store.work_dir("train", "key1")
    assert wd == tmp_path / "train" / ".work-key1" and not wd.exists()
    wd.mkdir(parents=True)  # scratch is never listed nor cleaned as incomplete
    assert store.list("train") == [] and store.clean_incomplete() == [] and wd.is_dir()
    with pytest.raises(ValueError, match="invalid key"):
        store.work_dir("train", "../x")


def test_local_path_of_fsspec_store_downloads_once(tmp_path, monkeypatch):
    store = open_store(f"memory://dexlite-cache-{uuid.uuid4().hex}")
    assert isinstance(store, FsspecStore) and store.work_dir("train", "key1") is None
    monkeypatch.setenv("DEXLITE_CACHE", str(tmp_path / "cache"))
    with store.open_stage("raw", "key1") as w:
        _fill(w)
    gets = []
    real_get = store.fs.get
    monkeypatch.setattr(store.fs, "get", lambda *a, **k: (gets.append(a), real_get(*a, **k))[1])
    local = store.local_path("raw", "key1")
    assert local == tmp_path / "cache" / "raw" / "key1" and len(gets) == 1
    assert (local / "a.bin").read_bytes() == b"hello" and (local / SUCCESS).is_file()
    assert read_grasps(local / "grasps.parquet").num_rows == 3
    assert json.loads((local / "sub" / "info.json").read_text()) == {"n": 3}
    assert sorted(p.name for p in local.parent.iterdir()) == ["key1"]  # temp download renamed away
    mtime = local.stat().st_mtime_ns
    assert store.local_path("raw", "key1") == local and len(gets) == 1  # cached: no second download
    assert local.stat().st_mtime_ns == mtime
    # an uploaded-but-unmarked folder is not committed: nothing downloaded
    fsspec.filesystem("memory").pipe_file(f"{store.url}/raw/key2/a.bin".removeprefix("memory://"), b"a")
    with pytest.raises(IncompleteArtifactError, match="key2"):
        store.local_path("raw", "key2")
    assert len(gets) == 1 and not (tmp_path / "cache" / "raw" / "key2").exists()
    # an explicit cache folder wins over the environment
    other = FsspecStore(store.url, cache_dir=tmp_path / "other")
    assert other.local_path("raw", "key1") == tmp_path / "other" / "raw" / "key1"


# ------------------------------------------------------------------------------ DexGraspNet


def _dgn_qpos(offset: float) -> dict[str, float]:
    names = ["WRJTx", "WRJTy", "WRJTz", "WRJRx", "WRJRy", "WRJRz", *JOINT_NAMES]
    rng = np.random.default_rng(0)
    qpos = {n: offset + 0.01 * (i + 1) for i, n in enumerate(names)}
    return {k: qpos[k] for k in rng.permutation(names)}  # dict order must not matter


def _ours_to_dgn(name: str) -> str:
    root = {"tx": "WRJTx", "ty": "WRJTy", "tz": "WRJTz", "rx": "WRJRx", "ry": "WRJRy", "rz": "WRJRz"}
    return root.get(name, "robot0:" + name)


def test_dexgraspnet_importer_maps_names(tmp_path):
    entries = [
        {"qpos": _dgn_qpos(0.0), "scale": 0.06, "energy": 1.5, "E_fc": 0.25, "E_dis": 0.01, "E_pen": 0.0,
         "E_spen": 0.02, "E_joints": 0.0, "qpos_st": _dgn_qpos(9.0)},
        {"qpos": _dgn_qpos(1.0), "scale": 0.08, "energy": 2.5, "E_fc": 0.5, "E_dis": 0.02, "E_pen": 0.1,
         "E_spen": 0.0, "E_joints": 0.3},
        {"qpos": _dgn_qpos(2.0), "scale": 0.06, "energy": 3.5, "E_fc": 0.75, "E_dis": 0.03, "E_pen": 0.2,
         "E_spen": 0.0, "E_joints": 0.0},
    ]
    path = tmp_path / "core-mug-123.npy"
    np.save(path, entries, allow_pickle=True)
    assert len(read_dexgraspnet_npy(path)) == 3
    ids = {0.06: "mug-small", 0.08: "mug-large"}
    t = dexgraspnet_to_table(path, scale_lookup(ids))
    assert t.schema.equals(GRASP_SCHEMA, check_metadata=True)
    assert t.column("object_id").to_pylist() == ["mug-small", "mug-large", "mug-small"]
    assert t.column("source").to_pylist() == ["seed"] * 3 and t.column("grasp_id").to_pylist() == [0, 1, 2]
    q = table_q(t)
    for row, e in enumerate(entries):
        for col, name in enumerate(POSE_NAMES):
            assert q[row, col] == np.float32(e["qpos"][_ours_to_dgn(name)]), (row, name)
    assert q[0, POSE_NAMES.index("THJ0")] == np.float32(0.28)  # last DGN joint, last column
    assert q[1, POSE_NAMES.index("tx")] == np.float32(1.01)
    assert q[2, POSE_NAMES.index("rz")] == np.float32(2.06)
    for k in ("energy", "E_fc", "E_dis", "E_pen", "E_spen", "E_joints"):
        assert t.column(k).to_pylist() == [pytest.approx(e[k]) for e in entries]
    # round trip through Parquet, and a fixed object id without energies
    assert read_grasps(write_grasps(t, tmp_path / "s.parquet")).num_rows == 3
    plain = tmp_path / "plain.npy"
    np.save(plain, [{"qpos": _dgn_qpos(0.0), "scale": 0.1}], allow_pickle=True)
    t2 = dexgraspnet_to_table(plain, "obj-x")
    assert t2.column("object_id").to_pylist() == ["obj-x"] and t2.column("energy").null_count == 1
    with pytest.raises(KeyError, match="0.1"):
        dexgraspnet_to_table(plain, scale_lookup(ids))


def test_dexgraspnet_importer_rejects_bad_files(tmp_path):
    bad_qpos = _dgn_qpos(0.0)
    del bad_qpos["robot0:LFJ4"]
    cases = {
        "missing_joint": [{"qpos": _dgn_qpos(0.0), "scale": 0.06}, {"qpos": bad_qpos, "scale": 0.06}],
        "nan": [{"qpos": {**_dgn_qpos(0.0), "WRJRy": float("nan")}, "scale": 0.06}],
        "no_scale": [{"qpos": _dgn_qpos(0.0)}],
        "neg_scale": [{"qpos": _dgn_qpos(0.0), "scale": -1.0}],
        "not_dict": [{"qpos": _dgn_qpos(0.0), "scale": 0.06}, 5],
    }
    patterns = {
        "missing_joint": r"entry 1: qpos lacks \['robot0:LFJ4'\]",
        "nan": r"entry 0 qpos\['WRJRy'\]: not finite",
        "no_scale": "entry 0: missing 'scale'",
        "neg_scale": "scale must be > 0",
        "not_dict": "entry 1: expected a dict, got int",
    }
    for name, entries in cases.items():
        p = tmp_path / f"{name}.npy"
        np.save(p, entries, allow_pickle=True)
        with pytest.raises(DexGraspNetFormatError, match=patterns[name]) as err:
            read_dexgraspnet_npy(p)
        assert f"{name}.npy" in str(err.value)
    numeric = tmp_path / "numeric.npy"
    np.save(numeric, np.zeros((3, 28)))
    with pytest.raises(DexGraspNetFormatError, match="list of dicts"):
        read_dexgraspnet_npy(numeric)
    with pytest.raises(FileNotFoundError):
        read_dexgraspnet_npy(tmp_path / "absent.npy")
