"""The `dexlite` CLI commands that need no Prefect server: config, stages, status, ingest, show,
evaluate (in-process, cores monkeypatched where a test is about the CLI, not the core)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dexlite_core.config import PipelineConfig
from flows.cli import app
from flows.configfile import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(r, *names: str) -> str:
    """A failed command: non-zero exit, nothing but one stderr line naming ``names``, no traceback."""
    assert r.exit_code != 0, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.output
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "dexlite"
    assert exe.is_file(), "run `pip install -e . --no-deps` (make install) to create the console script"
    p = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    for cmd in ("run", "stage", "status", "serve", "server", "config", "ingest", "show", "evaluate", "sample"):
        assert cmd in p.stdout


def test_config_show_resolves_file_and_overrides() -> None:
    r = invoke("config", "show", "--config", ROOT / "configs/tiny.yaml", "--set", "train.epochs=5")
    assert r.exit_code == 0, r.output
    shown = yaml.safe_load(r.stdout)
    cfg = load_config(ROOT / "configs/tiny.yaml", {"train": {"epochs": 5}})
    assert PipelineConfig.from_dict(shown).digest() == cfg.digest()
    assert shown["train"]["epochs"] == 5 and shown["seed"]["grasps_per_object"] == 16


def test_defaults_are_the_writeup_values() -> None:
    cfg = PipelineConfig.from_dict(yaml.safe_load(invoke("config", "show").stdout))
    assert (cfg.train.batch_size, cfg.train.lr, cfg.train.epochs, cfg.train.latent_dim) == (64, 1e-4, 100, 256)
    assert (cfg.train.w_recon, cfg.train.w_kl) == (1.0, 0.001)
    w = cfg.energy.weights
    assert (w.fc, w.dis, w.pen, w.spen, w.joints) == (1.0, 100.0, 100.0, 10.0, 1.0)
    p = cfg.postopt
    assert (p.n_iter, p.step_size, p.mu, p.starting_temperature, p.temperature_decay, p.annealing_period) == (
        200, 0.005, 0.98, 18.0, 0.95, 30)
    assert (cfg.stability.duration, cfg.stability.max_displacement, cfg.stability.max_rotation_deg) == (2.0, 0.05, 7.0)
    assert (cfg.lift.lift_height, cfg.lift.ratio_threshold) == (1.0, 0.9)
    for name in ("tiny", "default", "large"):  # the shipped configs load and are typed
        load_config(ROOT / f"configs/{name}.yaml")


def test_set_value_that_is_not_yaml_is_one_line() -> None:
    r = invoke("config", "show", "--set", "select.bundled=[random-60[4-6]]")
    assert r.exit_code == 2
    assert "--set 'select.bundled=[random-60[4-6]]': the value is not valid YAML" in r.stderr
    assert "Traceback" not in r.output and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("text", "message"), [
    ("train:\n  epoch: 3\n", "unknown key(s) ['epoch']"),
    ("train:\n  epochs: many\n", "train.epochs: expected an integer"),
    ("dag:\n  task_runner: slurm\n", "dag.task_runner: 'slurm' is not one of"),
    ("- a list\n", "top level must be a mapping"),
    ("select:\n  bundled: box\n", "select.bundled: expected a list"),
])
def test_config_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=None) as e:
        load_config(f)
    assert str(f) in str(e.value) and message in str(e.value)
    r = invoke("config", "show", "--config", f)
    assert r.exit_code == 2 and message in r.output


def test_mesh_paths_resolve_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "c.yaml").write_text("select:\n  bundled: []\n  meshes: [../m/a.obj]\n")
    cfg = load_config(tmp_path / "cfg" / "c.yaml")
    assert cfg.select.meshes == (str((tmp_path / "m" / "a.obj").resolve()),)


def test_stages_table_and_status_of_an_empty_run(tmp_path: Path) -> None:
    r = invoke("stages")
    assert r.exit_code == 0
    names = [ln.split()[0] for ln in r.stdout.splitlines()[1:]]
    assert names == ["objects", "stability", "seed", "lift", "dataset", "train", "sample", "postopt", "baseline",
                     "evaluate"]
    r = invoke("status", "--config", ROOT / "configs/tiny.yaml", "--out", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    states = json.loads(r.stdout)["stages"]
    assert [s["state"] for s in states] == ["missing"] + ["blocked"] * 9
    assert states[0]["path"].startswith(str(tmp_path / "artifacts" / "objects"))


def _box(path: Path) -> Path:
    import trimesh

    trimesh.creation.box((0.05, 0.03, 0.02)).export(path)
    return path


def test_ingest_reports_ok_and_failed_with_reasons(tmp_path: Path) -> None:
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    _box(meshes / "box.obj")
    (meshes / "broken.obj").write_text("this is not a mesh\n")
    out = tmp_path / "objects"
    r = invoke("ingest", meshes, "--out", out)
    assert r.exit_code == 0, r.output  # at least one ingested
    lines = r.stdout.splitlines()
    assert any(ln.startswith("ok ") and "box.obj" in ln for ln in lines)
    assert "broken.obj" not in r.stdout  # failures go to stderr, successes stay on stdout
    bad = r.stderr.strip().splitlines()
    assert len(bad) == 1 and bad[0].startswith("FAILED") and "broken.obj" in bad[0], r.stderr
    assert len(bad[0].split(":", 1)[1].strip()) > 3  # a reason is given
    assert "1 ingested, 1 failed" in r.stdout and "Traceback" not in r.output
    assert len(list(out.glob("*/_SUCCESS"))) == 1
    r = invoke("ingest", meshes / "broken.obj", "--out", tmp_path / "none")
    assert r.exit_code == 1 and "0 ingested, 1 failed" in r.stderr and not r.stdout.strip()
    assert "broken.obj" in r.stderr.splitlines()[0]
    r = invoke("ingest", tmp_path / "nowhere", "--out", tmp_path / "none")
    assert_one_line_error(r, "nowhere")


def test_show_parses_poses_and_calls_render(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dexlite_core.viz as viz

    calls = []
    monkeypatch.setattr(viz, "render_grasp", lambda d, q, out: calls.append((Path(d), np.asarray(q), Path(out)))
                        or Path(out))
    q = np.arange(28, dtype=np.float32) / 100
    r = invoke("show", tmp_path, "--pose", ",".join(map(str, q)), "--out", tmp_path / "g.png")
    assert r.exit_code == 0, r.output
    np.save(tmp_path / "q.npy", np.stack([q, q + 1]))
    r = invoke("show", tmp_path, "--pose", tmp_path / "q.npy", "--index", "1", "--out", tmp_path / "g.html")
    assert r.exit_code == 0, r.output
    assert calls[0][1].shape == (1, 28) and np.allclose(calls[0][1][0], q)
    assert np.allclose(calls[1][1][0], q + 1) and calls[1][2].suffix == ".html"
    r = invoke("show", tmp_path, "--pose", "1,2,3", "--out", tmp_path / "g.png")
    assert r.exit_code == 1 and "expected 28 values" in r.output


def _fake_evaluate(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Replace the core's evaluate_grasps (the CLI is under test, not the simulation); returns what
    it was called with. Skips only when dexlite_core.sim.evaluate cannot be imported."""
    import pandas as pd

    ev = pytest.importorskip("dexlite_core.sim.evaluate", reason="dexlite_core.sim.evaluate not written yet")
    seen: dict = {}

    def fake(table, objects_root, cfg, *, workers, protocols):
        seen.update(table=table, root=Path(objects_root), cfg=cfg, workers=workers, protocols=protocols)
        print("progress chatter")  # must not reach stdout under --json
        df = pd.DataFrame({"object_id": table.column("object_id").to_pylist(), "lift_success": True})
        rate = {"rate": 0.5, "n": table.num_rows, "ci95": (np.float64(0.1), 0.9)}
        return df, {"n": table.num_rows, "lift": {"success": rate, "six_direction": float("nan")}}

    monkeypatch.setattr(ev, "evaluate_grasps", fake)
    return seen


def test_evaluate_json_prints_exactly_one_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dexlite_core.config import EvaluateConfig
    from dexlite_core.dataset import grasps_to_table
    from storage.parquet import write_grasps

    seen = _fake_evaluate(monkeypatch)
    path = tmp_path / "g.parquet"
    write_grasps(grasps_to_table(["a", "b"], np.zeros((2, 28), np.float32), "seed"), path)
    r = invoke("evaluate", path, "--objects", tmp_path, "--json", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("\n") == 1 and not r.stderr.strip().startswith("{")
    assert json.loads(r.stdout) == {"n": 2, "lift": {"success": {"rate": 0.5, "n": 2, "ci95": [0.1, 0.9]},
                                                     "six_direction": None}}
    assert "no DexLite metadata" not in r.stderr  # DexLite's own file: no note
    assert seen["table"].num_rows == 2 and seen["workers"] == 2 and seen["root"] == tmp_path
    assert isinstance(seen["cfg"], PipelineConfig)
    assert seen["protocols"] == tuple(EvaluateConfig().protocols)  # default: the config's evaluate.protocols
    for choice, expected in (("lift", ("lift",)), ("dexgraspbench", ("dexgraspbench",)),
                             ("all", ("lift", "dexgraspbench"))):
        r = invoke("evaluate", path, "--objects", tmp_path, "--protocol", choice)
        assert r.exit_code == 0, r.output
        assert seen["protocols"] == expected
    assert "success: rate 0.5, n 2, ci95 [0.1, 0.9]" in r.stdout  # readable without --json
    r = invoke("evaluate", path, "--objects", tmp_path, "--set", "evaluate.protocols=[dexgraspbench]")
    assert r.exit_code == 0, r.output
    assert seen["protocols"] == ("dexgraspbench",)
    r = runner.invoke(app, ["evaluate", str(path), "--objects", str(tmp_path), "--protocol", "bogus"])
    assert r.exit_code == 2 and seen["protocols"] == ("dexgraspbench",)


def test_evaluate_protocol_choices_match_the_config() -> None:
    from typing import get_args

    from dexlite_core.config import Protocol as ProtocolName
    from flows.cli import ALL_PROTOCOLS, Protocol

    assert set(ALL_PROTOCOLS) == set(get_args(ProtocolName))
    assert [p.value for p in Protocol] == [*ALL_PROTOCOLS, "all"]


def test_evaluate_reads_plain_parquet_and_notes_the_assumed_convention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    seen = _fake_evaluate(monkeypatch)
    q = np.random.default_rng(0).normal(size=(3, 28))  # float64, variable-length lists, no metadata
    path = tmp_path / "grasps.parquet"
    pq.write_table(pa.table({"object_id": ["a", "a", "b"], "q": [list(r) for r in q], "score": [1, 2, 3]}), path)
    r = invoke("evaluate", path, "--objects", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    notes = [ln for ln in r.stderr.splitlines() if "no DexLite metadata" in ln]
    assert len(notes) == 1 and "grasps.parquet" in notes[0] and "sxyz" in notes[0], r.stderr
    assert "no DexLite metadata" not in r.stdout and json.loads(r.stdout)["n"] == 3
    t = seen["table"]
    assert str(t.schema.field("q").type) == "fixed_size_list<element: float not null>[28]"
    np.testing.assert_allclose(np.stack(t.column("q").to_pylist()), q, rtol=1e-6)
    assert t.column("score").to_pylist() == [1, 2, 3]  # other columns kept


def test_evaluate_refuses_another_convention_and_bad_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    q = np.zeros((3, 28))
    plain = pa.table({"object_id": ["a", "b", "c"], "q": [list(r) for r in q]})
    other = tmp_path / "rzyx.parquet"
    pq.write_table(plain.replace_schema_metadata({b"dexlite.euler": b"rzyx"}), other)
    line = assert_one_line_error(invoke("evaluate", other, "--objects", tmp_path), "rzyx.parquet", "euler")
    assert "sxyz" in line
    short = tmp_path / "short.parquet"
    pq.write_table(pa.table({"object_id": ["a", "b", "c"], "q": [list(q[0]), list(q[1, :27]), list(q[2])]}), short)
    line = assert_one_line_error(invoke("evaluate", short, "--objects", tmp_path), "short.parquet", "row 1")
    assert "27" in line
    noq = tmp_path / "noq.parquet"
    pq.write_table(pa.table({"object_id": ["a"], "pose": [list(q[0])]}), noq)
    assert_one_line_error(invoke("evaluate", noq, "--objects", tmp_path), "noq.parquet", "'q'")
    text = tmp_path / "text.parquet"
    text.write_text("object_id,q\n")
    assert_one_line_error(invoke("evaluate", text, "--objects", tmp_path), "text.parquet")
    good = tmp_path / "good.parquet"
    pq.write_table(plain, good)
    r = invoke("evaluate", good, "--objects", tmp_path / "no-objects")
    assert r.exit_code != 0 and "no-objects" in r.stderr.splitlines()[-1] and "Traceback" not in r.output


def test_evaluate_missing_grasps_file_is_one_line(tmp_path: Path) -> None:
    r = invoke("evaluate", "missing.parquet", "--objects", "x")
    assert_one_line_error(r, "missing.parquet")
    assert not r.stdout


@pytest.mark.parametrize(("args", "named"), [
    (("status", "--config", "{tmp}/none.yaml"), "none.yaml"),
    (("stage", "lift", "--config", "{tmp}/none.yaml", "--out", "{tmp}/run"), "none.yaml"),
    (("run", "--config", "{tmp}", "--out", "{tmp}/run"), "{tmp}"),  # a folder, not a config file
    (("clean", "--config", "{tmp}/none.yaml", "--out", "{tmp}/run"), "none.yaml"),
    (("config", "show", "--config", "{tmp}/none.yaml"), "none.yaml"),
    (("evaluate", "{tmp}/g.parquet", "--objects", "{tmp}", "--config", "{tmp}/none.yaml"), "none.yaml"),
    (("sample", "--checkpoint", "{tmp}/none.pt", "--objects", "{tmp}/no-objects"), "no-objects"),
    (("show", "{tmp}/no-object", "--pose", "{tmp}/none.parquet"), "none.parquet"),
    (("show", "{tmp}/no-object", "--pose", "{tmp}/bad.npy"), "bad.npy"),
    (("ingest", "{tmp}/no-meshes", "--out", "{tmp}/objects"), "no-meshes"),
])
def test_errors_are_one_stderr_line_without_traceback(tmp_path: Path, args: tuple[str, ...], named: str) -> None:
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert_one_line_error(invoke(*(a.format(tmp=tmp_path) for a in args)), named.format(tmp=tmp_path))


def test_sample_writes_raw_and_postopt_grasps_deterministically(tmp_path: Path) -> None:
    import dataclasses

    import torch

    from dexlite_core.config import TrainConfig
    from dexlite_core.models import GraspCVAE
    from storage.parquet import read_grasps

    meshes = tmp_path / "meshes"
    meshes.mkdir()
    _box(meshes / "box.obj")
    objects = tmp_path / "objects"
    assert invoke("ingest", meshes, "--out", objects).exit_code == 0
    cfg = TrainConfig(n_points=256)
    torch.manual_seed(0)
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"model": GraspCVAE.from_config(cfg).state_dict(), "config": dataclasses.asdict(cfg)}, ckpt)
    outs = []
    for name in ("a.parquet", "b.parquet"):
        r = invoke("sample", "--checkpoint", ckpt, "--objects", objects, "--n", 4, "--out", tmp_path / name,
                   "--postopt", "--set", "postopt.n_iter=5")
        assert r.exit_code == 0, r.output
        outs.append(read_grasps(tmp_path / name).to_pandas())
    a, b = outs
    assert sorted(a["source"]) == ["postopt"] * 4 + ["raw"] * 4
    raw, post = a[a["source"] == "raw"], a[a["source"] == "postopt"]
    assert list(raw["grasp_id"]) == list(post["grasp_id"])
    assert post["energy"].notna().all() and post["contact_idx"].notna().all()
    np.testing.assert_array_equal(np.stack(a["q"]), np.stack(b["q"]))  # same seed, same grasps
    r = invoke("sample", "--checkpoint", tmp_path / "missing.pt", "--objects", objects, "--out", tmp_path / "c.parquet")
    assert r.exit_code == 1 and "no checkpoint" in r.output
