"""The DAG machinery under Prefect: caching, kill/resume, injected faults, config changes, Dask, serve.

Most tests run the real flows and CLI (subprocesses, as a user would) on *toy* stages that have the
real DAG's shape (``DEXLITE_STAGE_REGISTRY``; same names, dependencies, config sections and shards)
so they do not depend on unfinished cores and take seconds. They report to one real
``dexlite server`` (``prefect server start`` on a free loopback port) started for the module.
``test_tiny_pipeline_end_to_end`` runs the real stages on ``configs/tiny.yaml`` in embedded mode.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "flows.cli"]
STAGE_NAMES = ["objects", "stability", "seed", "lift", "dataset", "train", "sample", "postopt", "baseline",
               "evaluate"]
HOME_PREFECT = Path.home() / ".prefect"

TOY_SOURCE = textwrap.dedent('''
    """Toy stages with the real DAG's shape (names, deps, config sections, shards)."""
    from __future__ import annotations

    import hashlib
    import json
    import os
    import time
    from pathlib import Path

    from dag.spec import Shards, StageSpec
    from stages.table import STAGES

    def _items(cfg) -> list[str]:
        """The toy objects: 6, or select.max_objects (a run that adds objects)."""
        return [f"obj{i}" for i in range(cfg.select.max_objects or 6)]


    def _log(line: str) -> None:
        with open(os.environ["TOY_LOG"], "a") as f:
            f.write(line + "\\n")


    def _in_dask() -> bool:
        try:
            from distributed import get_worker

            get_worker()
            return True
        except Exception:
            return False


    def _behave(stage: str, out_dir: Path, what: str, part=None) -> None:
        _log(f"{what} start pid={os.getpid()} dask={_in_dask()} part={part}")
        fail = Path(os.environ.get("TOY_FAIL_DIR", "/nonexistent")) / f"fail-{stage}"
        if fail.exists():
            raise RuntimeError(f"toy failure requested by {fail}")
        (out_dir / "partial.bin").write_bytes(b"x" * 1000)  # half-written output if killed now
        slow = os.environ.get("TOY_SLOW", "")
        if slow and (slow == stage or (part and slow in [f"{stage}:{p}" for p in part])):
            time.sleep(120)
        time.sleep(float(os.environ.get("TOY_SLEEP", "0.3")))


    def _upstream(inputs: dict) -> dict:
        up = {}
        for d, p in sorted(inputs.items()):
            if not (p / "_SUCCESS").is_file():
                raise RuntimeError(f"read an uncommitted artifact {p}")
            up[d] = json.loads((p / "data.json").read_text())["value"]
        return up


    def _value(stage: str, inputs: dict, cfg) -> str:
        """What a stage computes; a per-object stage's reads only its objects' config sections."""
        spec = STAGES[stage]
        per_item = spec.shards is not None and spec.shards.item_inputs is not None
        sections = spec.item_sections if per_item else spec.config
        text = json.dumps([stage, _upstream(inputs), cfg.digest(*sections)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


    def _plain(stage: str):
        def run(inputs, out_dir, cfg, work_dir=None):
            _behave(stage, out_dir, stage)
            (out_dir / "data.json").write_text(json.dumps({"value": _value(stage, inputs, cfg)}))
            _log(f"{stage} end")
            return {"stage": stage}
        return run


    def _sharded(stage: str) -> Shards:
        def items(inputs, cfg):
            return _items(cfg)

        def item_inputs(inputs, cfg, items):  # an item reads its upstream values (as a real object its folder)
            return [hashlib.sha256(json.dumps([i, _upstream(inputs)]).encode()).hexdigest() for i in items]

        def run(inputs, out_dir, cfg, part):
            _behave(stage, out_dir, f"{stage}-shard", part)
            (out_dir / "part.json").write_text(json.dumps(part))
            _log(f"{stage}-shard end {part}")
            return {"n": len(part)}

        def merge(inputs, dirs, out_dir, cfg):
            parts = [json.loads((d / "part.json").read_text()) for d in dirs]
            if sum(parts, []) != _items(cfg):
                raise RuntimeError(f"shards missing or out of order: {parts}")
            value = {"value": _value(stage, inputs, cfg), "items": sum(parts, [])}  # as objects.json lists them
            (out_dir / "data.json").write_text(json.dumps(value))
            _log(f"{stage} end")
            return {"shards": len(dirs)}

        per_item = STAGES[stage].shards.item_inputs is not None
        return Shards(items, run, merge, item_inputs if per_item else None, STAGES[stage].shards.item_config)


    TOY_STAGES = {
        name: StageSpec(name, _plain(name), deps=spec.deps, config=spec.config,
                        shards=_sharded(name) if spec.shards is not None else None,
                        resumable=spec.resumable, gpu=spec.gpu, feedback=spec.feedback, description=f"toy {name}")
        for name, spec in STAGES.items()
    }
''')


def _home_prefect_state() -> tuple[bool, float]:
    return HOME_PREFECT.exists(), HOME_PREFECT.stat().st_mtime if HOME_PREFECT.exists() else 0.0


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("toy")
    (d / "dexlite_toy.py").write_text(TOY_SOURCE)
    return d


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dexlite server` (a real `prefect server start`) on a free loopback port."""
    from flows.env import free_port

    out = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    log = open(out / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*CLI, "server", "--out", str(out), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    record = out / ".prefect" / "server.json"
    t0 = time.monotonic()
    while not record.exists():
        if proc.poll() is not None or time.monotonic() - t0 > 180:
            proc.kill()
            pytest.fail(f"dexlite server did not start: {(out / 'server.log').read_text()[-2000:]}")
        time.sleep(0.3)
    api = json.loads(record.read_text())["api_url"]
    assert api == f"http://127.0.0.1:{port}/api"
    yield api
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _env(toy_dir: Path, api: str | None, log: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "DEXLITE_", "TOY_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(toy_dir), str(ROOT)]),
               DEXLITE_STAGE_REGISTRY="dexlite_toy:TOY_STAGES", TOY_LOG=str(log), TOY_FAIL_DIR=str(toy_dir))
    if api:
        env["PREFECT_API_URL"] = api
    env.update(extra)
    return env


def dexlite(args: list[str], env: dict[str, str], timeout: float = 300,
            cwd: Path = ROOT) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    p = subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return p, time.perf_counter() - t0


def executed(log: Path) -> list[str]:
    """Stages that ran (committed their artifact) according to the toy log, in order."""
    if not log.exists():
        return []
    return [ln.split()[0] for ln in log.read_text().splitlines() if ln.endswith(" end") and " " in ln
            and "-shard" not in ln.split()[0]]


def shard_starts(log: Path, stage: str) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if ln.startswith(f"{stage}-shard start")]


def _check(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, f"exit {p.returncode}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-6000:]}"


def _verify_store(root: Path) -> None:
    """Every committed artifact matches its manifest (nothing half-written was ever committed)."""
    from storage import open_store

    store = open_store(root)
    for stage in store.stages():
        for key in store.list_keys(stage):
            store.verify(stage, key)


@pytest.fixture(scope="module")
def first_run(toy_dir: Path, prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One toy run with the default (process) task runner, shared by the cache-based tests."""
    out = tmp_path_factory.mktemp("run")
    log = out / "toy.log"
    before = _home_prefect_state()
    p, seconds = dexlite(["run", "--out", str(out), "--set", "dag.shard_size=2"], _env(toy_dir, prefect_server, log))
    _check(p)
    return {"out": out, "log": log, "seconds": seconds, "stdout": p.stdout, "stderr": p.stderr, "home": before}


def test_code_version_follows_imports_and_ignores_comments(tmp_path: Path) -> None:
    """A stage's code version covers every project module it imports (at module level or inside a
    function, transitively): editing a function in dexlite_core/dataset.py changes the sample
    stage's key. Editing a comment or docstring keeps every key; a module a stage never imports
    does not change its key."""
    import shutil

    from dag.codehash import code_hash, code_text
    from stages.table import STAGES

    for pkg in ("dexlite_core", "stages", "storage"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "data"))

    def keys() -> dict[str, str]:
        return {n: code_hash(s, root=tmp_path) for n, s in STAGES.items()}

    before = keys()
    assert before == {n: code_hash(s) for n, s in STAGES.items()}  # the copy hashes like the original
    lift = tmp_path / "dexlite_core" / "sim" / "lift.py"
    text = lift.read_text()
    assert text.startswith('"""') and "\nimport mujoco\n" in text
    body = text.split('"""', 2)[2].replace("\nimport mujoco\n", "\nimport mujoco  # physics\n\n")
    lift.write_text('"""Reworded."""\n# a new comment\n' + body)
    assert keys() == before
    lift.write_text(lift.read_text().replace("GRAVITY = 9.81", "GRAVITY = 9.80"))
    after = keys()
    assert after["lift"] != before["lift"] and after["evaluate"] != before["evaluate"]
    assert after["seed"] == before["seed"]  # seed does not read the simulation
    dataset = tmp_path / "dexlite_core" / "dataset.py"
    text = dataset.read_text()
    assert text.count("return GRASP_SCHEMA.empty_table()") >= 1
    edited = text.replace("return GRASP_SCHEMA.empty_table()", "return GRASP_SCHEMA.empty_table().slice(0)", 1)
    dataset.write_text(edited)
    assert keys()["sample"] != after["sample"]  # imported through dexlite_core.sampling, inside a function
    # the config module is declarations (__dag_values_only__): a new field of one section re-keys only
    # through that section's values, not every stage's code version
    edited_keys = keys()
    config = tmp_path / "dexlite_core" / "config.py"
    text = config.read_text()
    assert "\n__dag_values_only__ = True\n" in text and "    seed: int = 0\n    device: str" in text
    config.write_text(text.replace("    seed: int = 0\n    device: str", "    new_knob: int = 3\n    seed: int = 0\n"
                                   "    device: str", 1))
    assert keys() == edited_keys
    config.write_text(text.replace("\n__dag_values_only__ = True\n", "\n", 1) + "\nX = 1\n")
    assert keys()["objects"] != edited_keys["objects"]  # without the marker its code counts, as any module's
    f = "def f(x):\n    'Doc.'\n    return x + 1  # note\n"
    assert code_text(f) == code_text("def f(x):\n\n    return x + 1\n")
    assert code_text(f) != code_text("def f(x):\n    return x + 2\n")


def test_first_run_builds_every_stage_in_order(first_run: dict) -> None:
    assert executed(first_run["log"]) == STAGE_NAMES
    starts = shard_starts(first_run["log"], "seed")
    assert sorted(ln.split("part=")[1] for ln in starts) == [f"['obj{i}']" for i in range(6)]  # one per object
    assert "seed: 6 items, 0 already computed, 6 to compute in 3 task(s)" in first_run["stderr"]  # not a task each
    assert "baseline: 6 items, 0 already computed, 6 to compute in 3 task(s)" in first_run["stderr"]
    assert len(shard_starts(first_run["log"], "postopt")) == 3  # reads the model: shards of 2, not per item
    assert len({ln.split("pid=")[1].split()[0] for ln in first_run["log"].read_text().splitlines()
                if "-shard start" in ln}) == 2  # dag.workers=2 processes, one pool for every stage
    for name in STAGE_NAMES:
        assert f"{name:<17} ran" in first_run["stdout"]
    _verify_store(first_run["out"] / "artifacts")
    # Prefect state and results live under <out>/.prefect; results are small JSON pointers
    results = [f for f in (first_run["out"] / ".prefect" / "storage").rglob("*") if f.is_file()]
    assert results, "no persisted task results"
    for f in results:
        assert f.stat().st_size < 20_000
        json.loads(f.read_text())
    assert _home_prefect_state() == first_run["home"], "~/.prefect was touched"


def test_second_run_is_all_cached_and_fast(first_run: dict, toy_dir: Path, prefect_server: str) -> None:
    log = first_run["out"] / "toy2.log"
    p, seconds = dexlite(["run", "--out", str(first_run["out"]), "--set", "dag.shard_size=2"],
                         _env(toy_dir, prefect_server, log))
    _check(p)
    assert executed(log) == [], "a cached stage ran again"
    assert all(f"{n:<17} cached" in p.stdout for n in STAGE_NAMES)
    assert p.stderr.count("Finished in state Cached") == len(STAGE_NAMES)  # Prefect cache hits
    assert seconds < 0.5 * first_run["seconds"], (seconds, first_run["seconds"])


def test_config_change_reruns_only_dependent_stages(first_run: dict, toy_dir: Path, prefect_server: str) -> None:
    log = first_run["out"] / "toy-config.log"
    env = _env(toy_dir, prefect_server, log)
    p, _ = dexlite(["run", "--out", str(first_run["out"]), "--set", "dag.shard_size=2", "--set", "train.epochs=7",
                    "--runner", "thread"], env)
    _check(p)
    # the baseline's object list reads the train section (the split), its objects do not: merged again,
    # no object recomputed (every model of the scaling curve shares them)
    assert executed(log) == ["train", "sample", "postopt", "baseline", "evaluate"]
    assert shard_starts(log, "baseline") == []
    log.unlink()
    p, _ = dexlite(["run", "--out", str(first_run["out"]), "--set", "postopt.n_iter=10", "--runner", "thread"], env)
    _check(p)
    assert executed(log) == ["postopt", "baseline", "evaluate"]  # the baseline runs post-opt's schedule
    assert len(shard_starts(log, "baseline")) == 6
    # status reads manifests only: both configs' artifacts are there
    for extra in ([], ["--set", "train.epochs=7"]):
        p, _ = dexlite(["status", "--out", str(first_run["out"]), "--json", *extra], env)
        _check(p)
        states = json.loads(p.stdout)["stages"]
        assert [s["state"] for s in states] == ["done"] * len(STAGE_NAMES)
        assert all(Path(s["path"]).is_dir() for s in states)


def test_rounds_rerun_the_feedback_loop_only(first_run: dict, toy_dir: Path, prefect_server: str) -> None:
    """`dexlite run --rounds 3`: round 1 is the cached run; rounds 2 and 3 rerun dataset -> evaluate,
    each reading the previous round; a second `--rounds 3` is all cached."""
    log = first_run["out"] / "toy-rounds.log"
    env = _env(toy_dir, prefect_server, log)
    args = ["run", "--out", str(first_run["out"]), "--set", "dag.shard_size=2", "--rounds", "3", "--runner", "thread"]
    p, _ = dexlite(args, env)
    _check(p)
    loop = ["dataset", "train", "sample", "postopt", "evaluate"]
    assert executed(log) == loop + loop
    for n in loop:
        assert f"{n + '@round2':<17} ran" in p.stdout and f"{n + '@round3':<17} ran" in p.stdout
    dataset_dir = first_run["out"] / "artifacts" / "dataset"
    manifests = [json.loads(m.read_text()) for m in dataset_dir.glob("*/manifest.json")]
    assert any("dataset@previous" in m.get("inputs", {}) for m in manifests), manifests[:1]
    log.unlink()
    p, _ = dexlite(args, env)
    _check(p)
    assert executed(log) == []


def test_injected_fault_names_stage_and_rerun_resumes(first_run: dict, toy_dir: Path, prefect_server: str) -> None:
    log = first_run["out"] / "toy-fault.log"
    args = ["run", "--out", str(first_run["out"]), "--set", "dataset.max_per_object=5", "--runner", "thread"]
    p, _ = dexlite(args, _env(toy_dir, prefect_server, log, DEXLITE_FAULT="dataset"))
    assert p.returncode == 1
    assert "stage 'dataset' failed" in p.stderr
    assert "injected fault" in p.stderr
    assert executed(log) == []
    log.unlink(missing_ok=True)
    p, _ = dexlite(args, _env(toy_dir, prefect_server, log))
    _check(p)
    assert executed(log) == ["dataset", "train", "sample", "postopt", "evaluate"]


def test_sigkill_mid_stage_then_rerun(first_run: dict, toy_dir: Path, prefect_server: str) -> None:
    """SIGKILL while seed's fifth object runs: finished stages and objects are reused, only the killed
    object and the one after it run again (no finished object is recomputed), no half-written artifact
    is ever committed or read."""
    out = first_run["out"]
    log = out / "toy-kill.log"
    args = ["run", "--out", str(out), "--set", "dag.shard_size=2", "--set", "seed.jitter_strength=0.2"]
    env = _env(toy_dir, prefect_server, log, TOY_SLOW="seed:obj4")
    proc = subprocess.Popen([*CLI, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    t0 = time.monotonic()
    try:
        while True:
            text = log.read_text() if log.exists() else ""
            if "part=['obj4']" in text and text.count("seed-shard end") == 4:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() - t0 < 120, "the slow object never started"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    from storage import open_store

    store = open_store(out / "artifacts")
    assert len(store.list_keys("seed")) == 1  # only the first run's seed: the killed one never committed
    assert len(store.list_keys("seed.items")) == 6 + 4  # the first run's objects, and the 4 finished ones
    leftovers = [p for p in (out / "artifacts" / "seed.items").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers and all((p / "partial.bin").exists() for p in leftovers)  # the killed writer's temp
    log.unlink()
    p, _ = dexlite(args, _env(toy_dir, prefect_server, log))
    _check(p)
    assert executed(log) == STAGE_NAMES[2:]
    # the two remaining objects run concurrently, so their start order is not fixed
    assert sorted(ln.split("part=")[1] for ln in shard_starts(log, "seed")) == ["['obj4']", "['obj5']"]
    assert len(shard_starts(log, "lift")) == 6  # every object's seed grasps changed
    assert len(store.list_keys("seed")) == 2
    assert len(store.list_keys("seed.items")) == 12  # per-object artifacts stay: the cache of later runs
    _verify_store(out / "artifacts")


def test_more_objects_compute_only_the_new_objects(first_run: dict, toy_dir: Path, prefect_server: str) -> None:
    """A seventh object: the per-object stages compute only obj6; the dataset is merged from every
    object's artifact; the stages that read the model (post-optimisation, evaluation) rerun whole."""
    log = first_run["out"] / "toy-more.log"
    args = ["run", "--out", str(first_run["out"]), "--set", "dag.shard_size=2", "--set", "select.max_objects=7",
            "--runner", "thread"]
    p, _ = dexlite(args, _env(toy_dir, prefect_server, log))
    _check(p)
    assert executed(log) == STAGE_NAMES
    for stage in ("objects", "stability", "seed", "lift", "baseline"):
        assert [ln.split("part=")[1] for ln in shard_starts(log, stage)] == ["['obj6']"], stage
        assert f"{stage}: 7 items, 6 already computed, 1 to compute in 1 task(s)" in p.stderr
    assert len(shard_starts(log, "postopt")) == 4  # 7 objects in shards of 2


@pytest.mark.slow
def test_dask_local_cluster_runs_the_shards(toy_dir: Path, prefect_server: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """DaskTaskRunner against an existing dask.distributed scheduler (a real LocalCluster)."""
    from distributed import LocalCluster

    log = tmp_path / "toy.log"
    env = _env(toy_dir, prefect_server, log, PREFECT_HOME=str(tmp_path / "dask-prefect-home"))
    before = _home_prefect_state()
    for k, v in env.items():  # the cluster's worker processes inherit this environment
        if k.startswith(("PREFECT_", "DEXLITE_", "TOY_")) or k == "PYTHONPATH":
            monkeypatch.setenv(k, v)
    monkeypatch.syspath_prepend(str(toy_dir))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        p, _ = dexlite(["run", "--out", str(tmp_path / "out"), "--runner", "dask", "--dask-address",
                        cluster.scheduler_address, "--set", "dag.shard_size=3"], env)
    _check(p)
    assert executed(log) == STAGE_NAMES
    shard_lines = [ln for ln in log.read_text().splitlines() if "-shard start" in ln]
    # 5 per-object stages x 6 objects, 2 model-reading stages x 2 shards of 3
    assert len(shard_lines) == 5 * 6 + 2 * 2 and all("dask=True" in ln for ln in shard_lines)
    assert _home_prefect_state() == before, "~/.prefect was touched"


def _api(url: str, method: str = "GET", body: dict | None = None) -> dict | list:
    """Prefect REST call; retried on 503 like Prefect's own client (SQLite busy under load)."""
    data = None if body is None else json.dumps(body).encode()
    for attempt in range(10):
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code not in (502, 503) or attempt == 9:
                raise AssertionError(f"{method} {url}: HTTP {e.code} {e.read()[:500]!r}") from e
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _wait_state(api: str, run_id: str, states: set[str], timeout: float = 120) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        fr = _api(f"{api}/flow_runs/{run_id}")
        if fr["state_type"] in states and fr["state_name"] != "AwaitingRetry":
            return fr
        time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} still {fr['state_type']} / {fr['state_name']} after {timeout} s")


@pytest.mark.slow
def test_serve_cron_deployment_and_ui_retry(toy_dir: Path, prefect_server: str, tmp_path: Path) -> None:
    """`dexlite serve`: a cron-scheduled deployment; a failed run retried the way the UI's Retry button
    does (state AwaitingRetry) reruns only the failed stage and its downstream."""
    log = tmp_path / "toy.log"
    fail = toy_dir / "fail-sample"
    fail.write_text("x")
    env = _env(toy_dir, prefect_server, log, PREFECT_RUNNER_POLL_FREQUENCY="1")
    cron = "0 0 1 1 *"
    name = f"t{os.getpid()}"
    proc = subprocess.Popen([*CLI, "serve", "--out", str(tmp_path / "out"), "--cron", cron, "--name", name,
                             "--set", "dag.task_runner=thread"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "serve.log", "wb"), start_new_session=True)  # noqa: SIM115
    try:
        t0 = time.monotonic()
        deps: list = []
        while not deps:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() - t0 < 120
            deps = [d for d in _api(f"{prefect_server}/deployments/filter", "POST",
                                    {"deployments": {"name": {"any_": [name]}}}) if d["name"] == name]
            deps = [d for d in deps if _api(f"{prefect_server}/flows/{d['flow_id']}")["name"] == "dexlite"]
            time.sleep(0.5)
        dep = deps[0]
        assert [s["schedule"]["cron"] for s in dep["schedules"]] == [cron]
        run = _api(f"{prefect_server}/deployments/{dep['id']}/create_flow_run", "POST", {})
        fr = _wait_state(prefect_server, run["id"], {"FAILED", "COMPLETED", "CRASHED"})
        assert fr["state_type"] == "FAILED"
        assert executed(log) == ["objects", "stability", "seed", "lift", "dataset", "train"]
        fail.unlink()
        log.unlink()
        _api(f"{prefect_server}/flow_runs/{run['id']}/set_state", "POST",  # what the UI's Retry sends
             {"state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"},
              "force": False})
        fr = _wait_state(prefect_server, run["id"], {"FAILED", "COMPLETED", "CRASHED"})
        assert fr["state_type"] == "COMPLETED", fr["state"]
        assert executed(log) == ["sample", "postopt", "baseline", "evaluate"]
    finally:
        fail.unlink(missing_ok=True)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_tiny_pipeline_end_to_end(tmp_path: Path) -> None:
    """configs/tiny.yaml on the real stages, embedded Prefect (no server started by hand), twice."""
    out = tmp_path / "tiny"
    tiny = str(ROOT / "configs" / "tiny.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DEXLITE_", "TOY_"))}
    env["PYTHONPATH"] = str(ROOT)
    before = _home_prefect_state()
    p, seconds = dexlite(["run", "--config", tiny, "--out", str(out)], env, timeout=900, cwd=tmp_path)
    assert (out / ".prefect" / "prefect.db").is_file()  # embedded mode: the run's own SQLite
    assert _home_prefect_state() == before, "~/.prefect was touched"
    p_status, _ = dexlite(["status", "--config", tiny, "--out", str(out), "--json"], env, cwd=tmp_path)
    _check(p_status)
    states = {s["name"]: s["state"] for s in json.loads(p_status.stdout)["stages"]}
    _check(p)
    assert seconds < 600, f"tiny DAG took {seconds:.0f} s"
    assert set(states.values()) == {"done"}
    report_dir = next((out / "artifacts" / "evaluate").glob("*/report.json")).parent
    report = json.loads((report_dir / "report.json").read_text())
    assert report["raw"]["n"] > 0 and report["postopt"]["n"] > 0 and report["baseline"]["n"] > 0
    assert 0.0 <= report["postopt"]["success_rate"] <= 1.0
    assert report["evaluated_on"] == "validation objects"
    assert "<table>" in (report_dir / "report.html").read_text()
    p2, seconds2 = dexlite(["run", "--config", tiny, "--out", str(out)], env, cwd=tmp_path)
    _check(p2)
    assert all(f"{n:<17} cached" in p2.stdout for n in STAGE_NAMES)
    assert seconds2 < 0.5 * seconds


@pytest.mark.slow
def test_gpu_stage_routed_to_work_pool(toy_dir: Path, prefect_server: str, tmp_path: Path) -> None:
    """dag.train_work_pool: `train` runs as the `dexlite-train/<pool>` deployment on a process worker
    (the GPU machine's role), the rest of the DAG in the pipeline's process, one artifact store."""
    pool = f"gpu{os.getpid()}"
    out = tmp_path / "out"
    log = tmp_path / "toy.log"
    env = _env(toy_dir, prefect_server, log)
    _api(f"{prefect_server}/work_pools/", "POST", {"name": pool, "type": "process"})
    p, _ = dexlite(["deploy", "--work-pool", pool, "--stage", "train", "--out", str(out)], env)
    _check(p)
    wenv = dict(env, PREFECT_HOME=str(tmp_path / "worker-home"), PREFECT_WORKER_QUERY_SECONDS="1",
                PREFECT_API_REQUEST_TIMEOUT="180")
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"],
                              cwd=tmp_path, env=wenv, stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "worker.log", "wb"), start_new_session=True)  # noqa: SIM115
    try:
        p, _ = dexlite(["run", "--out", str(out), "--runner", "thread", "--set", f"dag.train_work_pool={pool}"],
                       env, timeout=240)
        assert p.returncode == 0, f"{p.stderr[-3000:]}\n--- worker\n{(tmp_path / 'worker.log').read_text()[-5000:]}"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    assert executed(log) == STAGE_NAMES
    pids = {ln.split()[0]: ln.split("pid=")[1].split()[0] for ln in log.read_text().splitlines() if " start " in ln}
    assert pids["train"] != pids["dataset"] == pids["sample"]  # train ran in the worker's flow run
    assert f"submitting to work pool '{pool}'" in p.stderr


def test_objects_key_does_not_depend_on_where_bundled_meshes_are_installed(tmp_path: Path, monkeypatch) -> None:
    """The objects stage's file inputs (its only path-dependent key part) are the same when the
    bundled meshes are read from another install location (another venv, a moved clone); a changed
    mesh changes them."""
    from dexlite_core.config import PipelineConfig, SelectConfig
    from dexlite_core.objects import select
    from stages.objects import mesh_inputs

    cfg = PipelineConfig(select=SelectConfig(bundled=("mug",)))
    (source,) = select.select_sources(cfg.select).values()
    inputs = mesh_inputs(cfg)
    assert set(inputs) == {"bundled:mug"}
    moved = tmp_path / "elsewhere" / source.path.name
    moved.parent.mkdir()
    moved.write_bytes(source.path.read_bytes())
    real = select.select_sources
    monkeypatch.setattr(select, "select_sources",
                        lambda *a: {n: dataclasses.replace(s, path=moved) for n, s in real(*a).items()})
    assert mesh_inputs(cfg) == inputs
    moved.write_bytes(source.path.read_bytes() + b"\n# edited\n")
    assert mesh_inputs(cfg) != inputs
