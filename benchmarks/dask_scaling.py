"""Dask scaling of the per-object stages: 1 vs 2 Dask workers, and the same dataset as the process runner
(issue 15).

    .venv/bin/python benchmarks/dask_scaling.py [--objects 10] [--pattern 'random-6*'] [--shard-size 1]
        [--set KEY=VALUE ...] [--work DIR]

What it runs, three times, each into a fresh run folder (nothing cached, no artifact shared):

1. a Dask cluster of local processes, started as the README says: ``dask scheduler`` and 1
   ``dask worker --nworkers 1 --nthreads 1`` (environment: ``PYTHONPATH`` = this repository,
   ``OMP_NUM_THREADS`` = ``MKL_NUM_THREADS`` = ``OPENBLAS_NUM_THREADS`` = 1), then
   ``dexlite stage lift --config configs/large.yaml --runner dask --set dag.dask_address=tcp://...``:
   the per-object stages ``objects -> stability -> seed -> lift`` on the cluster;
2. the same on a fresh cluster with 2 workers;
3. the same with the default process runner (``--runner process --workers 2``), no cluster.

Objects: the large config's settings (two sizes per object, 128 seed grasps, 500 annealing steps, the
six-direction test on a sample), restricted to the first ``--objects`` pybullet_data random_urdfs
objects matching ``--pattern`` (``--set select.bundled=[PATTERN] --set select.max_objects=K``), so
2K object instances; as in the large run, about half of them topple in the stability filter (of
random-600..619 at 8 cm, 10 are kept), and the seed and lift stages see the rest. ``--shard-size``
(default 1: one object per task) stands in for the large run's balance: there, 8-object tasks over
~2000 instances keep both workers busy to the end; over a handful of objects, 8-object tasks would
leave one worker idle for most of the run. Every run uses 1 torch thread per task
(``dag.torch_threads=1``) and ``dag.workers`` = its worker count.

How to read it: per stage, the stage's wall seconds as the flow records them (``<out>/stages.json``:
from the stage's start to its merged artifact; the first stage also pays for connecting to the
cluster or spawning the process pool, and the workers' first imports), and their sum over the four
per-object stages. The speed-up is 1-worker seconds over 2-worker seconds of that sum (target
>= 1.7x). "wall" is the whole ``dexlite`` command (Prefect's start included), for reference only.
Below, the compute inside the object tasks (each object's own seconds, from its artifact's run
record) and how busy the workers were: busy workers whose objects each took longer with 2 workers
than with 1 mean the machine (another job on the cores) cost the speed-up, not the runner.
Same dataset: each stage artifact's content (its manifest's file hashes without run records,
pictures and ``items.json``'s cache keys; JSON files without timings) must be identical across the
three runs; seed and lift are the dataset's grasps and their lift verdicts (``grasps.parquet``,
``lift.json``). The flow's own digest (``stages.json`` "digest") is printed beside it: it also
hashes each object's ingest timings (``meta.json``) and, through the per-object keys in
``items.json``, every stage downstream, so it differs between any two runs that ingest the objects
afresh, whatever the runner. On a machine with 2 cores the 2-worker runs use both: another job
running at the same time takes from them first, so read the speed-up with the machine's load beside
it (printed).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 1.7
PER_OBJECT = ("objects", "stability", "seed", "lift")
BIN = Path(sys.executable).parent


def _tool(name: str, module: str) -> list[str]:
    exe = BIN / name
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", module]


DASK = _tool("dask", "distributed.cli.dask")
DEXLITE = _tool("dexlite", "flows.cli")


def _worker_env() -> dict[str, str]:
    """What the README exports before starting a worker: the project importable, one BLAS/torch thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    return env


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the process group this benchmark started (a nanny and its worker), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class Cluster:
    """``dask scheduler`` + ``n`` ``dask worker`` processes on this machine; stopped on exit."""

    def __init__(self, n_workers: int, work: Path) -> None:
        self.n, self.work = n_workers, work
        self.procs: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.work / log, "ab") as f:
            p = subprocess.Popen([*DASK, *args], env=_worker_env(), stdout=f, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=self.work, start_new_session=True)
        self.procs.append(p)
        return p

    def __enter__(self) -> Cluster:
        from flows.env import free_port

        self.work.mkdir(parents=True, exist_ok=True)
        try:
            port = free_port()
            self.address = f"tcp://127.0.0.1:{port}"
            self._spawn(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"],
                        "scheduler.log")
            for i in range(self.n):
                self._spawn(["worker", self.address, "--nworkers", "1", "--nthreads", "1", "--dashboard-address", ":0",
                             "--name", f"dexlite-dask-worker-{i + 1}", "--local-directory", str(self.work / "dask")],
                            f"worker-{i + 1}.log")
            self._wait()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait(self, timeout: float = 180.0) -> None:
        from distributed import Client

        t0 = time.monotonic()
        while True:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a dask process exited with code {dead[0].returncode}; see {self.work}/*.log")
            try:
                with Client(self.address, timeout=10) as client:
                    client.wait_for_workers(self.n, timeout=max(1.0, timeout - (time.monotonic() - t0)))
                    return
            except (OSError, TimeoutError) as e:
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"no cluster of {self.n} worker(s) at {self.address} after {timeout:.0f} s "
                                       f"({e}); see {self.work}/*.log") from e
                time.sleep(1.0)

    def __exit__(self, *exc: Any) -> None:
        for p in reversed(self.procs):  # workers first, then the scheduler
            _stop(p)
        self.procs.clear()


def _run(name: str, out: Path, args: list[str], sets: list[str], timeout: float, workers: int) -> dict[str, Any]:
    """``dexlite stage lift`` into ``out``; returns stages.json and the command's wall seconds."""
    cmd = [*DEXLITE, "stage", "lift", "--config", str(ROOT / "configs" / "large.yaml"), "--out", str(out), *args]
    for s in sets:
        cmd += ["--set", s]
    log = out.parent / f"{out.name}.log"
    print(f"[{name}] {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(log, "wb") as f:
        p = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{name}: dexlite exited {p.returncode} after {wall:.0f} s; {log}:\n" + "\n".join(tail))
    stages = json.loads((out / "stages.json").read_text())
    missing = [s for s in PER_OBJECT if s not in stages]
    if missing or any(stages[s]["status"] != "ran" for s in PER_OBJECT):
        raise RuntimeError(f"{name}: stages {missing} missing or cached in {out / 'stages.json'}")
    print(f"[{name}] done in {wall:.0f} s", flush=True)
    return {"stages": stages, "wall": wall, "workers": workers}


def _load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=10, help="objects (each at the large config's 2 sizes)")
    ap.add_argument("--pattern", default="random-6*", help="select.bundled pattern (random_urdfs names)")
    ap.add_argument("--shard-size", type=int, default=1, help="dag.shard_size: objects per task")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override of configs/large.yaml for every run, e.g. seed.grasps_per_object=64")
    ap.add_argument("--work", type=Path, default=None, help="keep run folders and logs here (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per dexlite run")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the cluster (finally blocks)

    sets = [f"select.bundled={json.dumps([args.pattern])}", f"select.max_objects={args.objects}",
            f"dag.shard_size={args.shard_size}", "dag.torch_threads=1", "dag.retries=0", *args.set]
    print(f"{args.objects} objects matching {args.pattern!r} x configs/large.yaml's sizes, {os.cpu_count()} cores, "
          f"load average {_load()} (1/5/15 min) at the start", flush=True)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dexlite-dask-")))
        work.mkdir(parents=True, exist_ok=True)
        runs: dict[str, dict[str, Any]] = {}
        for n in (1, 2):
            name = f"dask, {n} worker{'s' if n > 1 else ''}"
            with Cluster(n, work / f"cluster-{n}") as cluster:
                runs[name] = _run(name, work / f"out-dask-{n}", ["--runner", "dask"],
                                  [*sets, f"dag.dask_address={cluster.address}", f"dag.workers={n}"], args.timeout, n)
        runs["process, 2 workers"] = _run("process, 2 workers", work / "out-process-2",
                                          ["--runner", "process", "--workers", "2"], sets, args.timeout, 2)
        _report(runs)
        print(f"load average {_load()} (1/5/15 min) at the end; run folders and logs: "
              f"{work if args.work else '(temp, removed)'}")


def _report(runs: dict[str, dict[str, Any]]) -> None:
    names = list(runs)
    w = max(len(n) for n in names)
    print()
    print(f"{'seconds per stage':<{w}} " + " ".join(f"{s:>9}" for s in PER_OBJECT) + f" {'sum':>9} {'wall':>9}")
    total = {}
    for n in names:
        st = runs[n]["stages"]
        total[n] = sum(st[s]["seconds"] for s in PER_OBJECT)
        print(f"{n:<{w}} " + " ".join(f"{st[s]['seconds']:>9.1f}" for s in PER_OBJECT)
              + f" {total[n]:>9.1f} {runs[n]['wall']:>9.1f}")
    print("compute inside the object tasks (sum of each object's own seconds, <stage>.items/*/run.json) and how "
          "busy the workers were (that sum / (stage seconds x workers)):")
    for n in names:
        st, cells = runs[n]["stages"], []
        for s in PER_OBJECT:
            sec = _item_seconds(Path(st[s]["path"]), s)
            busy = sum(sec) / max(st[s]["seconds"] * runs[n]["workers"], 1e-9)
            cells.append(f"{s} {sum(sec):.0f} s / {len(sec)} = {sum(sec) / max(len(sec), 1):.1f} s, {busy:.0%} busy")
        print(f"  {n:<{w}} " + "; ".join(cells))
    first = runs[names[0]]["stages"]
    print(f"work: {first['objects']['summary']}, {first['stability']['summary']}, "
          f"{first['seed']['summary']}, lift {first['lift']['summary']}")
    one, two = total[names[0]], total[names[1]]
    speed = one / two if two > 0 else float("nan")
    per = ", ".join(f"{s} {first[s]['seconds'] / max(runs[names[1]]['stages'][s]['seconds'], 1e-9):.2f}x"
                    for s in PER_OBJECT)
    print(f"speed-up, 1 -> 2 dask workers (sum of the per-object stages): {speed:.2f}x "
          f"(target >= {TARGET}x: {'met' if speed >= TARGET else 'not met'}); per stage: {per}")
    print(f"dask 2 workers vs process runner 2 workers (sum): {total[names[2]] / two:.2f}x as fast")
    print("same dataset? content of each stage artifact (files without run records, timings, keys):")
    same_data = True
    for s in PER_OBJECT:
        content = [_content(Path(runs[n]["stages"][s]["path"])) for n in names]
        flow = [runs[n]["stages"][s]["digest"] for n in names]
        same = len(set(content)) == 1
        if s in ("seed", "lift"):
            same_data &= same
        print(f"  {s:<10} content {'identical' if same else 'DIFFERENT'} ("
              + ", ".join(content) + f"); stages.json digest {'identical' if len(set(flow)) == 1 else 'different'} ("
              + ", ".join(flow) + ")")
    print(f"seed and lift grasps identical across the three runs (same dataset): {'yes' if same_data else 'NO'}")


def _item_seconds(stage_dir: Path, stage: str) -> list[float]:
    """Each object's compute seconds in a per-object stage (the run record of its own artifact)."""
    items = stage_dir.parent.parent / f"{stage}.items"
    return [float(json.loads(f.read_text()).get("seconds", 0.0)) for f in sorted(items.glob("*/run.json"))]


def _strip_timings(x: Any) -> Any:
    """A JSON value without what differs from run to run (an object's ingest ``timings``, ``seconds*``)."""
    if isinstance(x, dict):
        return {k: _strip_timings(v) for k, v in x.items() if k != "timings" and not k.startswith("seconds")}
    if isinstance(x, list):
        return [_strip_timings(v) for v in x]
    return x


def _content(folder: Path) -> str:
    """Digest of an artifact's content: its manifest's file hashes without volatile files (run records,
    summaries, pictures) and ``items.json`` (cache keys), JSON files without timings. Unlike the flow's
    content digest (``stages.json``), it does not see an object's ingest timings in ``meta.json``, which
    differ in every run and, through the keys downstream, make every stage's digest differ."""
    from dag.keys import is_volatile

    files = json.loads((folder / "manifest.json").read_text())["files"]
    parts = {}
    for rel, f in sorted(files.items()):
        if is_volatile(rel) or rel == "items.json":
            continue
        if rel.endswith(".json"):
            text = json.dumps(_strip_timings(json.loads((folder / rel).read_text())), sort_keys=True)
            parts[rel] = hashlib.sha256(text.encode()).hexdigest()
        else:
            parts[rel] = f["sha256"]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

if __name__ == "__main__":
    main()
