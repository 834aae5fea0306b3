"""Records of the flow runs in progress, so that runs of killed processes are marked Crashed.

Why: Prefect marks a flow run Crashed from *inside* the process that runs it (the flow engine
catches the interrupt or the exception on its way out). A process killed with SIGKILL (the OOM
killer, ``kill -9``, a lost machine, and also SIGTERM, whose default action skips Python's
clean-up) never gets there, so its flow run stays "Running" in the UI forever. Prefect 3's own
remedy is flow-run heartbeat events (every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` s, at least 30)
plus an *automation* the user creates (a proactive trigger: no heartbeat within N s -> change the
flow run's state to Crashed), evaluated by the server's triggers service. It needs a
long-running server with that automation configured, and it cannot work in DexLite's embedded mode
(the embedded server dies with the killed run), so DexLite keeps its own records:

- while a DexLite flow runs, ``<home>/active/<flow_run_id>.json`` (``<home>`` = ``<out>/.prefect``,
  see :func:`flows.env.prefect_home`) holds the flow process's pid, host, boot id and the process
  start time (``/proc/<pid>/stat``, field 22). It is written atomically when the flow starts and
  removed when it ends (:func:`recorded`, around the flow bodies in :mod:`flows.pipeline`; a nested
  flow writes its own);
- ``dexlite run`` and ``dexlite status`` call :func:`mark_dead_runs` on their run folder: a record
  of this host whose process is gone (no such pid, a zombie, or a pid reused by a process that
  started at another time or in another boot) names a dead flow run; if the API still has it
  Running (or Pending / Cancelling) it is set to Crashed with ``force=True`` ("process <pid> gone
  (killed?) - marked by dexlite status"), and so are its unfinished task runs and the unfinished
  subflow runs it ran in its own process (not those of deployments, which run elsewhere). Then the
  record is deleted. Records of other hosts are left alone: their processes cannot be checked here.

Only the marking imports Prefect; finding dead records reads files and ``/proc``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dexlite_core.atomic import atomic_write_json

ACTIVE_DIR = "active"
UNFINISHED = ("RUNNING", "PENDING", "CANCELLING")


def active_dir(out: str | os.PathLike[str]) -> Path:
    """``<prefect home of out>/active``: one record per flow run in progress."""
    from flows.env import prefect_home

    return prefect_home(out) / ACTIVE_DIR


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks after boot) of a live pid, from ``/proc/<pid>/stat``;
    None when there is no such process or no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 (state) onwards
    return fields[0], int(fields[19])  # field 22: starttime


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """What tells this process apart from a later one that reuses its pid."""
    pid = os.getpid() if pid is None else pid
    stat = _proc_stat(pid)
    return {"pid": pid, "host": socket.gethostname(), "boot_id": _boot_id(),
            "proc_start": stat[1] if stat else None}


def process_alive(rec: dict[str, Any]) -> bool:
    """True when the process of a record (of this host) still runs: same pid, same boot, same start."""
    pid = int(rec["pid"])
    if rec.get("boot_id") and _boot_id() and rec["boot_id"] != _boot_id():
        return False  # the machine rebooted since
    stat = _proc_stat(pid)
    if stat is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc (macOS): the pid alone
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, start = stat
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    return rec.get("proc_start") is None or int(rec["proc_start"]) == start


@contextlib.contextmanager
def recorded(out: str | os.PathLike[str]) -> Iterator[Path | None]:
    """Record the current flow run (if any) as in progress in ``out``'s Prefect home while the block
    runs. Outside a flow run it records nothing."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        yield None
        return
    path = active_dir(out) / f"{ctx.flow_run.id}.json"
    rec = {"flow_run_id": str(ctx.flow_run.id), "flow_run_name": ctx.flow_run.name,
           "flow_name": getattr(ctx.flow, "name", None), **process_identity(),
           "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "api_url": os.environ.get("PREFECT_API_URL")}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, rec)
    except OSError:  # a read-only run folder must not stop the run
        path = None
    try:
        yield path
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


@dataclass
class Record:
    path: Path
    data: dict[str, Any]

    @property
    def flow_run_id(self) -> str:
        return str(self.data.get("flow_run_id") or self.path.stem)

    @property
    def label(self) -> str:
        name = self.data.get("flow_name") or "flow"
        return f"{name}/{self.data.get('flow_run_name') or '?'} ({self.flow_run_id})"


def dead_records(out: str | os.PathLike[str]) -> list[Record]:
    """The records of ``out`` written on this host whose process is gone (no Prefect needed)."""
    d = active_dir(out)
    if not d.is_dir():
        return []
    host = socket.gethostname()
    dead = []
    for f in sorted(d.glob("*.json")):
        try:
            data = json.loads(f.read_text())
            int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written or removed right now, or not ours
        if data.get("host") == host and not process_alive(data):
            dead.append(Record(f, data))
    return dead


def _crash(client: Any, flow_run: Any, message: str, depth: int = 0) -> int:
    """Set a flow run, its unfinished task runs and its in-process unfinished subflow runs Crashed;
    returns how many task and subflow runs were marked."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    unfinished = [StateType(s) for s in UNFINISHED]
    client.set_flow_run_state(flow_run.id, Crashed(message=message), force=True)
    n = 0
    for tr in client.read_task_runs(task_run_filter=TaskRunFilter(
            flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run.id]),
            state=TaskRunFilterState(type=TaskRunFilterStateType(any_=unfinished)))):
        client.set_task_run_state(tr.id, Crashed(message=message), force=True)
        n += 1
    if depth < 10:
        for child in client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)))):
            if child.deployment_id is None:  # ran inside the killed process; a deployment's runs elsewhere
                n += 1 + _crash(client, child, message, depth + 1)
    return n


def _same_database(rec: dict[str, Any], api_url: str) -> bool:
    """Whether the API now in use keeps the flow runs the record's API kept: the same URL, or both on
    loopback (an embedded server and a ``dexlite server`` of this run folder share its SQLite)."""
    def loopback(u: str | None) -> bool:
        return bool(u) and ("//127.0.0.1:" in u or "//localhost:" in u)

    return rec.get("api_url") == api_url or (loopback(rec.get("api_url")) and loopback(api_url))


def _mark(client: Any, rec: Record, by: str, api_url: str) -> str | None:
    """Mark one dead record's flow run Crashed if the API still has it unfinished; drop the record."""
    import uuid

    from prefect.exceptions import ObjectNotFound

    pid, host = rec.data["pid"], rec.data.get("host")
    try:
        fr = client.read_flow_run(uuid.UUID(rec.flow_run_id))
    except ObjectNotFound:
        if _same_database(rec.data, api_url):
            rec.path.unlink(missing_ok=True)
            return None
        return (f"flow run {rec.label} of dead process {pid}: unknown to {api_url} "
                f"(recorded at {rec.data.get('api_url')}); record kept")
    line = None
    if fr.state is not None and fr.state.type.value in UNFINISHED:
        n = _crash(client, fr, f"process {pid} on {host} gone (killed?) - marked by {by}")
        line = (f"marked flow run {rec.label} Crashed (was {fr.state.name}; process {pid} gone)"
                f"{f', and {n} unfinished task/subflow run(s)' if n else ''}")
    rec.path.unlink(missing_ok=True)
    return line


def mark_dead_runs(out: str | os.PathLike[str], by: str, setup: Callable[[], Any] | None = None) -> list[str]:
    """Mark Crashed the flow runs of ``out`` whose process died without telling Prefect (see the module
    docstring); returns one line per record handled. ``setup`` points this process at the Prefect
    API (e.g. ``setup_prefect(out)``) and is called only when there is a dead record; without it the
    API must already be configured. Never raises: a failure is returned as a line, records kept."""
    dead = dead_records(out)
    if not dead:
        return []
    lines: list[str] = []
    try:
        if setup is not None:
            setup()
        from prefect.client.orchestration import get_client

        api_url = os.environ.get("PREFECT_API_URL", "")
        with get_client(sync_client=True) as client:
            for rec in dead:
                try:
                    line = _mark(client, rec, by, api_url)
                except Exception as e:  # noqa: BLE001 - one bad record must not hide the others
                    line = f"could not mark flow run {rec.label}: {type(e).__name__}: {e}; record kept"
                if line:
                    lines.append(line)
    except Exception as e:  # noqa: BLE001 - reporting must not stop the command
        lines.append(f"could not mark the flow runs of dead processes in {active_dir(out)}: "
                     f"{type(e).__name__}: {e}")
    return lines
