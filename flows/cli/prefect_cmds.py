"""Prefect commands: ``server`` (local server + UI, 127.0.0.1 by default), ``serve`` (deployments, the pipeline
on a cron schedule; the UI's Retry reruns a failed run), ``deploy`` (stage deployments on a work pool,
e.g. GPU training)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from dexlite_core.atomic import atomic_write_json
from flows.cli.common import (
    DEFAULT_OUT,
    ConfigOpt,
    OutOpt,
    SetOpt,
    command,
    deployment_params,
    fail,
    load_cfg,
    setup_prefect,
)

WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def local_api_url(host: str, port: int) -> str:
    """Where processes on this machine reach a server bound to ``host``: loopback for a wildcard bind."""
    loop = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{_url_host(loop)}:{port}/api"


def ui_api_url(host: str, port: int, public_url: str | None = None) -> str:
    """The API address the UI's browser code talks to (Prefect's ``PREFECT_SERVER_UI_API_URL``, which the
    server hands the page at ``/ui-settings``; left alone Prefect derives it from its default port 4200,
    not from ``--port``). ``public_url`` (how browsers reach this server, with or without ``/api``) wins;
    a server bound to one address gets that address; a wildcard bind (0.0.0.0, ::) gets the relative
    ``/api``: the page calls back whatever address it was loaded from (a hostname, an SSH tunnel's
    port), which no single absolute URL could name."""
    if public_url:
        url = public_url.rstrip("/")
        return url if url.endswith("/api") else f"{url}/api"
    if host in WILDCARD_HOSTS:
        return "/api"
    return f"http://{_url_host(host)}:{port}/api"


@command
def server(
    out: OutOpt = Path(DEFAULT_OUT),
    port: Annotated[int, typer.Option(help="port to listen on")] = 4200,
    host: Annotated[str, typer.Option(help="bind address (0.0.0.0: every interface)")] = "127.0.0.1",
    public_url: Annotated[str | None, typer.Option(
        help="URL browsers reach this server at (e.g. http://gpu-box:4200, a reverse proxy); default "
             "http://<host>:<port>, or the page's own address when --host is 0.0.0.0 or ::")] = None,
) -> None:
    """Start a local Prefect server with the UI (SQLite in <out>/.prefect); `run` then reports to it.
    The UI talks to this server's API (--port/--host/--public-url), not to Prefect's default 4200."""
    from flows import env

    home = env.prefect_home(out)
    env.configure(home)
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop("PREFECT_UI_API_URL", None)  # legacy name of the setting set below
    ui_api = ui_api_url(host, port, public_url)
    os.environ.update(PREFECT_SERVER_API_HOST=host, PREFECT_SERVER_API_PORT=str(port),
                      PREFECT_SERVER_UI_API_URL=ui_api)
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)])
    api = local_api_url(host, port)
    record = home / env.SERVER_FILE
    ui = public_url.rstrip("/").removesuffix("/api") if public_url else api[: -len("/api")]

    def stop(signum: int, frame: Any) -> None:
        proc.send_signal(signal.SIGTERM if signum != signal.SIGINT else signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 180:
            if env.healthy(api):
                atomic_write_json(record, {"api_url": api, "ui_url": ui, "ui_api_url": ui_api, "pid": proc.pid})
                typer.secho(f"Prefect server ready: UI {ui}  API {api}  (the UI calls {ui_api}; "
                            f"PREFECT_HOME={home})", err=True, fg=typer.colors.GREEN)
                break
            time.sleep(0.3)
        code = proc.wait()
    finally:
        record.unlink(missing_ok=True)
    raise typer.Exit(code if code >= 0 else 0)


@command
def serve(
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    cron: Annotated[str, typer.Option(help="schedule of the whole pipeline (cron, UTC)")] = "0 3 * * *",
    name: Annotated[str, typer.Option(help="deployment name")] = "scheduled",
) -> None:
    """Serve deployments: `dexlite/<name>` on the cron schedule and `dexlite-<stage>/<name>` on demand.

    Failed runs can be retried from the UI (`dexlite server`): this process picks them up again and
    cached stages are skipped. The config file is re-read at every run.
    """
    cfg = load_cfg(config, set_)  # validate now; runs re-read the file
    setup_prefect(out)
    from prefect import serve as prefect_serve

    from flows.pipeline import STAGE_FLOWS, dexlite_flow

    params = deployment_params(config, cfg, out, set_)
    deps = [dexlite_flow.to_deployment(name=name, cron=cron, parameters=params,
                                       description="DexLite pipeline on a schedule")]
    deps += [f.to_deployment(name=name, parameters=params) for f in STAGE_FLOWS.values()]
    typer.secho(f"serving {len(deps)} deployments; dexlite/{name} on cron {cron!r}", err=True)
    prefect_serve(*deps)


@command
def deploy(
    work_pool: Annotated[str, typer.Option(help="Prefect work pool (a worker runs its flow runs)")],
    stage_names: Annotated[list[str] | None, typer.Option("--stage", help="stage flow(s) to deploy")] = None,
    pipeline: Annotated[bool, typer.Option(help="deploy the whole pipeline flow `dexlite`")] = False,
    cron: Annotated[str | None, typer.Option(help="schedule of the pipeline deployment (cron, UTC)")] = None,
    config: ConfigOpt = None,
    out: OutOpt = Path(DEFAULT_OUT),
    set_: SetOpt = None,
    source: Annotated[Path | None, typer.Option(help="project checkout on the worker machine")] = None,
) -> None:
    """Register deployments on a work pool: `dexlite-<stage>/<pool>` (e.g. --stage train on a GPU pool:
    with `dag.train_work_pool: <pool>` the pipeline sends training there) and/or, with --pipeline, the
    whole DAG `dexlite/<pool>` (optionally on --cron). Worker and pipeline must see the same artifact
    store (a shared volume, or an fsspec URL in dag.artifacts)."""
    cfg = load_cfg(config, set_)
    if not stage_names and not pipeline:
        fail("nothing to deploy: give --stage NAME (repeatable) and/or --pipeline", 2)
    setup_prefect(out, embedded=False)
    from flows.pipeline import STAGE_FLOWS, dexlite_flow

    unknown = [n for n in stage_names or [] if n not in STAGE_FLOWS]
    if unknown:
        fail(f"unknown stage(s) {unknown}; stages: {', '.join(STAGE_FLOWS)}", 2)
    root = (source or Path(__file__).resolve().parents[2]).resolve()  # the project checkout
    params = deployment_params(config, cfg, out, set_)
    todo: list[tuple[str, Any, str | None]] = [(f"{n}_flow", STAGE_FLOWS[n], None) for n in stage_names or []]
    if pipeline:
        todo.append(("dexlite_flow", dexlite_flow, cron))
    for attr, flow_obj, schedule in todo:
        remote = flow_obj.from_source(source=str(root), entrypoint=f"flows/pipeline.py:{attr}")
        dep_id = remote.deploy(name=work_pool, work_pool_name=work_pool, parameters=params, cron=schedule,
                               build=False, push=False, print_next_steps=False)
        typer.echo(f"deployment {flow_obj.name}/{work_pool} ({dep_id}) on work pool {work_pool!r}"
                   f"{f' cron {schedule!r}' if schedule else ''}")
