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
    for name in ("tiny", "default"):  # the shipped configs load and are typed
        load_config(ROOT / f"configs/{name}.yaml")


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
    assert names == ["objects", "stability", "seed", "lift", "dataset", "train", "sample", "postopt", "evaluate"]
    r = invoke("status", "--config", ROOT / "configs/tiny.yaml", "--out", tmp_path, "--json")
    assert r.exit_code == 0, r.output
    states = json.loads(r.stdout)["stages"]
    assert [s["state"] for s in states] == ["missing"] + ["blocked"] * 8
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
    bad = [ln for ln in lines if ln.startswith("FAILED") and "broken.obj" in ln]
    assert bad and len(bad[0].split(":", 1)[1].strip()) > 3  # a reason is given
    assert "1 ingested, 1 failed" in r.stdout
    assert len(list(out.glob("*/_SUCCESS"))) == 1
    r = invoke("ingest", meshes / "broken.obj", "--out", tmp_path / "none")
    assert r.exit_code == 1 and "0 ingested, 1 failed" in r.stdout


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


def test_evaluate_json_prints_exactly_one_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    import dexlite_core.sim.lift as lift
    from dexlite_core.dataset import grasps_to_table
    from storage.parquet import write_grasps

    seen = {}

    def fake(table, objects_root, cfg, workers):
        seen.update(n=table.num_rows, root=Path(objects_root), cfg=cfg, workers=workers)
        df = pd.DataFrame({"lift_success": [True, False]})
        return df, {"n": 2, "success_rate": 0.5, "six_direction_success_rate": float("nan")}

    monkeypatch.setattr(lift, "evaluate_grasps", fake, raising=False)
    path = tmp_path / "g.parquet"
    write_grasps(grasps_to_table(["a", "b"], np.zeros((2, 28), np.float32), "seed"), path)
    r = invoke("evaluate", path, "--objects", tmp_path, "--json", "--workers", "2")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("\n") == 1
    assert json.loads(r.stdout) == {"n": 2, "success_rate": 0.5, "six_direction_success_rate": None}
    assert seen["n"] == 2 and seen["workers"] == 2 and seen["root"] == tmp_path
    r = invoke("evaluate", tmp_path / "missing.parquet", "--objects", tmp_path, "--json")
    assert r.exit_code == 1 and "missing.parquet" in r.output


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
