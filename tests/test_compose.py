"""docker-compose.yml and Dockerfile, checked without Docker (it does not run on these machines).

The compose file is parsed (services, images, environment, volumes, healthchecks, start order); its
commands are checked against the real CLIs; the Dask services' commands are run as local processes
(ports remapped) and must pass their own healthchecks; PostgreSQL + Prefect server runs only where
Debian's postgres binaries exist. The Prefect server itself runs for real in tests/test_flows.py.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_images_volumes_and_ports(compose: dict) -> None:
    s = compose["services"]
    assert set(s) == {"postgres", "prefect-server", "dask-scheduler", "dask-worker", "deploy", "worker"}
    assert s["postgres"]["image"].startswith("postgres:")
    for name in ("prefect-server", "dask-scheduler", "dask-worker", "deploy", "worker"):
        assert s[name]["image"] == "dexlite:latest" and s[name]["build"] == ".", name  # the project image
        assert "data:/data" in s[name]["volumes"], name
    assert set(compose["volumes"]) == {"data", "pgdata"}
    assert "pgdata:/var/lib/postgresql/data" in s["postgres"]["volumes"]
    for svc in s.values():  # nothing listens beyond loopback on the host
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    assert s["dask-worker"]["deploy"]["replicas"] >= 2


def test_environment_wires_services_together(compose: dict) -> None:
    s = compose["services"]
    db = s["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    pg = s["postgres"]["environment"]
    assert db == f"postgresql+asyncpg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    assert "--port" in s["prefect-server"]["command"] and "4200" in s["prefect-server"]["command"]
    for name in ("dask-scheduler", "dask-worker", "deploy", "worker"):
        env = s[name]["environment"]
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api", name
        assert env["PREFECT_RESULTS_LOCAL_STORAGE_PATH"].startswith("/data/"), name  # shared result records
        assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert "tcp://dask-scheduler:8786" in s["dask-worker"]["command"]
    assert "--port" in s["dask-scheduler"]["command"] and "8786" in s["dask-scheduler"]["command"]


def test_healthchecks_and_start_order(compose: dict) -> None:
    s = compose["services"]
    for name, svc in s.items():
        if name == "deploy":  # a one-shot job
            assert svc["restart"] == "no"
            continue
        hc = svc["healthcheck"]
        assert hc["test"][0] in ("CMD", "CMD-SHELL") and hc["interval"] and hc["retries"] >= 3, name
    dep = {n: svc.get("depends_on", {}) for n, svc in s.items()}
    assert dep["prefect-server"] == {"postgres": {"condition": "service_healthy"}}
    assert dep["dask-worker"]["dask-scheduler"]["condition"] == "service_healthy"
    assert dep["deploy"]["prefect-server"]["condition"] == "service_healthy"
    assert dep["worker"]["deploy"]["condition"] == "service_completed_successfully"
    assert dep["worker"]["dask-scheduler"]["condition"] == "service_healthy"
    assert "--with-healthcheck" in s["worker"]["command"]
    assert "8080" in " ".join(s["worker"]["healthcheck"]["test"])


def _deploy_args(compose: dict) -> list[str]:
    script = compose["services"]["deploy"]["command"][-1]
    part = next(p for p in script.split("&&") if p.strip().startswith("dexlite "))
    return shlex.split(part)[1:]


def test_commands_are_valid_cli_calls(compose: dict) -> None:
    """The deploy job's `dexlite deploy ...` parses with the real CLI; its config loads; the worker
    serves the pool the deployments go to."""
    import typer.main

    from flows.cli import app
    from flows.configfile import load_config, parse_overrides

    args = _deploy_args(compose)
    group = typer.main.get_command(app)
    cmd = group.get_command(None, args[0])  # type: ignore[arg-type]
    assert cmd is not None
    ctx = cmd.make_context(args[0], args[1:])  # raises on an unknown option
    p = ctx.params
    cfg = load_config(ROOT / p["config"], parse_overrides(p["set_"]))
    assert cfg.dag.task_runner == "dask" and cfg.dag.dask_address == "tcp://dask-scheduler:8786"
    assert cfg.dag.artifacts.startswith("/data/")
    assert p["pipeline"] and p["cron"] and p["stage_names"] == ["train"]
    worker = compose["services"]["worker"]["command"]
    assert worker[worker.index("--pool") + 1] == p["work_pool"]
    assert f"work-pool create {p['work_pool']} --type process" in compose["services"]["deploy"]["command"][-1]


def test_dockerfile_installs_the_project() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.1[0-9]", text, re.M)
    for pkg in ("dexlite_core", "storage", "tasks", "flows", "configs"):
        assert re.search(rf"^COPY {pkg} \./{pkg}$", text, re.M), pkg
        assert (ROOT / pkg).is_dir()
    assert "pip install -e ." in text
    make_torch = re.search(r"^TORCH_SPEC \?= (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert make_torch and f'TORCH_SPEC="{make_torch.group(1)}"' in text  # same torch as `make install`
    assert 'VOLUME ["/data"]' in text


def _remap(cmd: list[str], ports: dict[str, str]) -> list[str]:
    out = []
    for c in cmd:
        for old, new in ports.items():
            c = c.replace(old, new)
        out.append(c.replace("dask-scheduler", "127.0.0.1").replace("0.0.0.0", "127.0.0.1"))
    return out


def _free() -> str:
    from flows.env import free_port

    return str(free_port())


def _healthy(test: list[str], timeout: float = 60) -> None:
    assert test[0] == "CMD"
    t0 = time.monotonic()
    while True:
        p = subprocess.run([sys.executable, *test[2:]] if test[1] == "python" else test[1:], capture_output=True,
                           text=True, timeout=30)
        if p.returncode == 0:
            return
        assert time.monotonic() - t0 < timeout, f"healthcheck {test} failing: {p.stderr[-500:]}"
        time.sleep(0.5)


def test_dask_services_start_and_pass_their_healthchecks(compose: dict, tmp_path: Path) -> None:
    """The compose file's own scheduler and worker commands, as local processes on free ports, with
    as many workers as the file's replicas: every one joins (distinct names)."""
    s = compose["services"]
    replicas = s["dask-worker"]["deploy"]["replicas"]
    assert replicas == 2
    ports = {"8786": _free(), "8787": _free()}
    procs = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    try:
        for name, i in [("dask-scheduler", 0)] + [("dask-worker", i) for i in range(replicas)]:
            remap = {**ports, "8789": _free()}  # each worker's own dashboard (its own container in compose)
            cmd = _remap(s[name]["command"], remap)
            assert cmd[0] == "dask"
            log = open(tmp_path / f"{name}-{i}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen([str(BIN / "dask"), *cmd[1:]], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
            _healthy(_remap(s[name]["healthcheck"]["test"], remap))
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{ports['8786']}", timeout=30) as client:
            client.wait_for_workers(replicas, timeout=30)
            names = [w["name"] for w in client.scheduler_info()["workers"].values()]
            assert len(set(names)) == replicas
            assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.mark.slow
@pytest.mark.skipif(_postgres_bin() is None, reason="no PostgreSQL binaries (/usr/lib/postgresql/*/bin)")
def test_prefect_server_on_postgres(compose: dict) -> None:
    """Optional: the compose topology's database, PostgreSQL started by the test (as user postgres
    when run as root), under the compose file's own `prefect server start` on a free loopback port."""
    import pwd
    import tempfile

    pg = _postgres_bin()
    assert pg is not None
    as_user: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="dexlite-pg-"))
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user for initdb")
        os.chown(work, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = work / "data", _free()
    pg_proc = srv = None
    try:
        subprocess.run([*as_user, str(pg / "initdb"), "-D", str(data), "-U", "prefect", "--auth=trust"],
                       check=True, capture_output=True)
        pg_proc = subprocess.Popen([*as_user, str(pg / "postgres"), "-D", str(data), "-p", port, "-k", str(work),
                                    "-h", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        t0 = time.monotonic()
        while subprocess.run([str(pg / "pg_isready"), "-h", "127.0.0.1", "-p", port],
                             capture_output=True).returncode != 0:
            assert pg_proc.poll() is None and time.monotonic() - t0 < 60, "postgres did not start"
            time.sleep(0.5)
        subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", port, "-U", "prefect", "prefect"], check=True)
        api_port = _free()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(work / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                   PREFECT_API_DATABASE_CONNECTION_URL=f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect")
        cmd = _remap(compose["services"]["prefect-server"]["command"], {"4200": api_port})
        assert cmd[:3] == ["prefect", "server", "start"]
        srv = subprocess.Popen([str(BIN / "prefect"), *cmd[1:]], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
        _healthy(_remap(compose["services"]["prefect-server"]["healthcheck"]["test"], {"4200": api_port}),
                 timeout=180)
        req = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/flows/", method="POST",
                                     data=b'{"name": "compose-check"}', headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:  # a write that lands in PostgreSQL
            assert r.status in (200, 201)
        out = subprocess.run([str(pg / "psql"), "-h", "127.0.0.1", "-p", port, "-U", "prefect", "-d", "prefect",
                              "-tAc", "select name from flow"], capture_output=True, text=True, check=True)
        assert "compose-check" in out.stdout
    finally:
        for p in (srv, pg_proc):
            if p is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
