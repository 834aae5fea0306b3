"""The Prefect UI tells the truth: it talks to the `dexlite server` it came from (not to port 4200),
and a run killed with SIGKILL is shown Crashed, not Running forever, once `dexlite status` or
`dexlite run` looked at its run folder (flows/run_records.py).

Reuses test_flows.py's module-scoped `dexlite server` fixture and toy stages (this module gets its
own server: a free loopback port, not 4200).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from test_flows import CLI, ROOT, _check, _env, dexlite, prefect_server, toy_dir  # noqa: F401 - toy_dir, prefect_server: fixtures


def _client_call(api: str, fn: Any) -> Any:
    """``fn(client)`` with a synchronous Prefect client on ``api`` (this process's Prefect home kept
    out of ~/.prefect)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home = Path(tempfile.gettempdir()) / f"dexlite-test-prefect-{os.getpid()}"
    with temporary_settings(updates={PREFECT_API_URL: api, PREFECT_HOME: str(home)}):
        with get_client(sync_client=True) as client:
            return fn(client)


def _flow_run(api: str, run_id: str) -> Any:
    return _client_call(api, lambda c: c.read_flow_run(uuid.UUID(run_id)))


def test_ui_settings_name_the_servers_port(prefect_server: str) -> None:  # noqa: F811 - imported fixture
    """`dexlite server --port N`: the page's /ui-settings hands the browser this server's API, not 4200."""
    port = int(prefect_server.rsplit(":", 1)[1].split("/")[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui-settings", timeout=30) as r:
        settings = json.loads(r.read())
    assert settings["api_url"] == f"http://127.0.0.1:{port}/api"
    assert port == 4200 or ":4200" not in settings["api_url"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:  # the UI itself is served
        assert r.status == 200 and b"<html" in r.read().lower()


def test_ui_api_url_for_each_bind() -> None:
    from flows.cli.prefect_cmds import local_api_url, ui_api_url

    assert ui_api_url("127.0.0.1", 4321) == "http://127.0.0.1:4321/api"
    assert ui_api_url("10.1.2.3", 4321) == "http://10.1.2.3:4321/api"
    assert ui_api_url("0.0.0.0", 4321) == "/api"  # relative: the address the browser loaded the page from
    assert ui_api_url("::", 4321) == "/api"
    assert ui_api_url("0.0.0.0", 4321, "http://gpu-box:8080/") == "http://gpu-box:8080/api"
    assert ui_api_url("0.0.0.0", 4321, "https://x.org/prefect/api") == "https://x.org/prefect/api"
    assert local_api_url("0.0.0.0", 4321) == "http://127.0.0.1:4321/api"
    assert local_api_url("::", 4321) == "http://[::1]:4321/api"


def test_process_alive_tells_a_reused_pid() -> None:
    from flows.run_records import process_alive, process_identity

    me = process_identity()
    assert me["host"] == socket.gethostname() and me["proc_start"] is not None
    assert process_alive(me)
    assert not process_alive({**me, "proc_start": me["proc_start"] + 1})  # same pid, another process
    assert not process_alive({**me, "boot_id": "another-boot"})
    child = subprocess.Popen(["true"])
    child.wait()
    assert not process_alive({**me, "pid": child.pid})  # gone (and reaped)


def _records(out: Path) -> list[Path]:
    return sorted((out / ".prefect" / "active").glob("*.json"))


def _running_tasks(api: str, out: Path) -> list[str]:
    """Names of the Running task runs of the flow run recorded in ``out`` (Prefect 3 records task run
    states from events the run's process sends in the background: they reach the API a moment later)."""
    recs = _records(out)
    if not recs:
        return []
    run_id = uuid.UUID(recs[0].stem)
    tasks = _client_call(api, lambda c: c.read_task_runs())
    return [t.name for t in tasks if t.flow_run_id == run_id and t.state.type.value == "RUNNING"]


def test_sigkilled_run_is_marked_crashed_by_status(toy_dir: Path, prefect_server: str,  # noqa: F811
                                                    tmp_path: Path) -> None:
    """SIGKILL while the toy's train stage runs: Prefect still says Running (the engine never got to
    report); `dexlite status` marks it Crashed with its unfinished task run and says so; a finished
    run of the same folder stays Completed. A record naming a live-looking but dead flow run is then
    also marked by `dexlite run`."""
    out = tmp_path / "out"
    log = tmp_path / "toy.log"
    t0 = time.monotonic()
    p, _ = dexlite(["run", "--out", str(out), "--runner", "thread"], _env(toy_dir, prefect_server, log, TOY_SLEEP="0"))
    _check(p)
    assert _records(out) == []  # removed when the flow ended
    t_first = time.monotonic() - t0

    args = ["run", "--out", str(out), "--runner", "thread", "--set", "train.epochs=9"]
    proc = subprocess.Popen([*CLI, *args], cwd=ROOT, env=_env(toy_dir, prefect_server, log, TOY_SLOW="train"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        t1 = time.monotonic()
        while not ("train start" in log.read_text() and "train" in _running_tasks(prefect_server, out)):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() - t1 < 60, "the slow stage never started"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (record,) = _records(out)
    rec = json.loads(record.read_text())
    assert rec["pid"] == proc.pid and rec["flow_name"] == "dexlite"
    killed = _flow_run(prefect_server, rec["flow_run_id"])
    assert killed.state.type.value == "RUNNING"  # what the UI showed forever

    p, _ = dexlite(["status", "--out", str(out)], _env(toy_dir, prefect_server, log))
    _check(p)
    assert f"marked flow run dexlite/{killed.name} ({killed.id}) Crashed" in p.stdout
    assert "stage runs done" in p.stdout  # the status table follows
    killed = _flow_run(prefect_server, rec["flow_run_id"])
    assert killed.state.type.value == "CRASHED"
    assert killed.state.message == f"process {proc.pid} on {rec['host']} gone (killed?) - marked by dexlite status"
    assert _records(out) == []
    tasks = _client_call(prefect_server, lambda c: c.read_task_runs())
    mine = [t for t in tasks if t.flow_run_id == killed.id]
    assert {t.name: t.state.type.value for t in mine}["train"] == "CRASHED"
    assert not [t for t in mine if t.state.type.value in ("RUNNING", "PENDING")]
    runs = _client_call(prefect_server, lambda c: c.read_flow_runs())
    finished = [r for r in runs if r.id != killed.id]
    assert len(finished) == 1 and finished[0].state.type.value == "COMPLETED"  # the first run: untouched
    p, _ = dexlite(["status", "--out", str(out), "--json"], _env(toy_dir, prefect_server, log))
    _check(p)
    assert "marked" not in p.stderr and json.loads(p.stdout)["stages"]  # nothing left to mark

    # `dexlite run` marks too: a Running flow run whose recorded process is gone (a reaped child)
    def running_flow_run(c: Any) -> Any:
        from prefect import flow
        from prefect.states import Running

        return c.create_flow_run(flow(name="dexlite")(lambda: None), name="fake-killed", state=Running())

    dead = subprocess.Popen(["true"])
    dead.wait()
    fake = _client_call(prefect_server, running_flow_run)
    from flows.run_records import process_identity

    fake_rec = {**process_identity(), "pid": dead.pid, "proc_start": 0, "flow_run_id": str(fake.id),
                "flow_run_name": fake.name, "flow_name": "dexlite", "api_url": prefect_server}
    (out / ".prefect" / "active" / f"{fake.id}.json").write_text(json.dumps(fake_rec))
    p, _ = dexlite(["run", "--out", str(out), "--runner", "thread"], _env(toy_dir, prefect_server, log, TOY_SLEEP="0"))
    _check(p)
    assert f"marked flow run dexlite/fake-killed ({fake.id}) Crashed" in p.stderr
    fake = _flow_run(prefect_server, str(fake.id))
    assert fake.state.type.value == "CRASHED" and "marked by dexlite run" in fake.state.message
    assert _records(out) == []
    print(f"first run {t_first:.1f} s, whole test {time.monotonic() - t0:.1f} s")
