"""Prefect environment of a DexLite process, set up BEFORE Prefect is imported.

Prefect reads its settings from the environment when it is imported, and process-pool / Dask workers
inherit the environment of the process that starts them. So the CLI calls :func:`configure` first:

- ``PREFECT_HOME`` = ``<out>/.prefect`` (or ``$DEXLITE_PREFECT_HOME``): Prefect's SQLite database,
  profiles, result records and logs live with the run, never in ``~/.prefect``;
- ``PREFECT_API_DATABASE_CONNECTION_URL`` = SQLite under that home (unless set);
- no telemetry (these machines have no network), the ``dexlite`` logger shown in Prefect's logs;
- the API: ``$PREFECT_API_URL`` if set (a shared server), else a ``dexlite server`` running for this
  home (``<home>/server.json``), else an **embedded** server: Prefect's own API app under uvicorn on a
  free loopback port, started by this process and stopped with it (also on SIGKILL: Linux parent-death
  signal). Unlike Prefect's implicit ephemeral mode, its address is exported, so worker processes
  report to the same server instead of each starting their own.

Nothing here imports Prefect.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SERVER_FILE = "server.json"
DEFAULT_PORT = 4200


def prefect_home(out: str | os.PathLike[str]) -> Path:
    """Prefect's home for a run folder: ``$DEXLITE_PREFECT_HOME`` or ``<out>/.prefect``."""
    env = os.environ.get("DEXLITE_PREFECT_HOME")
    return Path(env).resolve() if env else (Path(out).resolve() / ".prefect")


def configure(home: Path) -> dict[str, str]:
    """Export the Prefect settings of this process (and its children); returns what was set."""
    home.mkdir(parents=True, exist_ok=True)
    values = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "dexlite",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_API_REQUEST_TIMEOUT": "180",  # 2 busy cores + SQLite: slow answers are not failures
    }
    set_now = {}
    for k, v in values.items():
        if k == "PREFECT_HOME" or k not in os.environ:
            os.environ[k] = v
            set_now[k] = v
    return set_now


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when a Prefect API answers ``/health`` at ``api_url`` (".../api")."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except (OSError, ValueError):
        return False


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def server_record(home: Path) -> dict | None:
    """The ``dexlite server`` running for this home, if its record exists and it answers."""
    f = home / SERVER_FILE
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return rec if healthy(rec.get("api_url", ""), timeout=1.0) else None


class EmbeddedServer:
    """Prefect's API (no UI, ephemeral services) on a free loopback port, tied to this process."""

    def __init__(self, home: Path, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_url = f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 120.0) -> str:
        import importlib.util

        spec = importlib.util.find_spec("prefect")  # locating the package does not import it
        assert spec is not None and spec.origin is not None, "prefect is not installed"
        app_dir = str(Path(spec.origin).parent.parent)
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        log = open(self.home / "embedded-server.log", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on"],
            env=env, stdout=log, stderr=log, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        log.close()
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded Prefect server exited with code {self.proc.returncode}; "
                                   f"see {self.home / 'embedded-server.log'}")
            if healthy(self.api_url, timeout=1.0):
                return self.api_url
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"embedded Prefect server did not answer within {timeout:.0f} s "
                           f"(see {self.home / 'embedded-server.log'})")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def ensure_api(home: Path, embedded: bool = True) -> tuple[str, EmbeddedServer | None]:
    """Point this process at a Prefect API: ``$PREFECT_API_URL``, a recorded ``dexlite server`` for
    ``home``, or (``embedded``) a new embedded server. Returns (api url, embedded server or None)."""
    url = os.environ.get("PREFECT_API_URL", "").strip()
    if url:
        return url, None
    rec = server_record(home)
    if rec is not None:
        os.environ["PREFECT_API_URL"] = rec["api_url"]
        return rec["api_url"], None
    if not embedded:
        raise RuntimeError(
            f"no Prefect server: set PREFECT_API_URL or start one with `dexlite server --out {home.parent}`"
        )
    server = EmbeddedServer(home)
    url = server.start()
    os.environ["PREFECT_API_URL"] = url
    return url, server
