"""What every ``dexlite`` command shares: the Typer app, one-line errors, config loading, Prefect setup.

Prefect is imported only inside the commands that need it, after :mod:`flows.env` has set
PREFECT_HOME (``<out>/.prefect``) and the API (an embedded server unless one is running), so
``dexlite run`` needs no server started by hand and never touches ``~/.prefect``.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from flows.configfile import ConfigError, load_config, parse_overrides

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="DexLite: dexterous grasp synthesis pipeline (Prefect DAG) and tools.")
config_app = typer.Typer(no_args_is_help=True, help="Show the resolved configuration.")
app.add_typer(config_app, name="config")

DEFAULT_OUT = "runs/default"
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (defaults: write-up)")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="run folder: artifacts/, .prefect/, stages.json")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override, e.g. --set train.epochs=3 (repeatable)")]


def one_line(msg: object) -> str:
    return " ".join(str(msg).split())


def fail(msg: str, code: int = 1) -> None:
    """Report an error as one line on stderr and exit with ``code`` (no traceback)."""
    typer.secho(one_line(msg), err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def expected_error(e: BaseException) -> bool:
    """Errors a user can cause and fix (bad file, bad value, corrupt artifact): reported in one line.
    Checked against the modules already imported, so the CLI imports nothing heavy to test it."""
    if isinstance(e, (OSError, ValueError, EOFError)):  # ConfigError, GraspTableError, ArrowInvalid: ValueError
        return True
    kinds: list[type] = []
    if (store := sys.modules.get("storage.store")) is not None:
        kinds.append(store.ArtifactError)
    if (pa := sys.modules.get("pyarrow")) is not None:
        kinds.append(pa.ArrowException)
    return isinstance(e, tuple(kinds))


F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(fn: F) -> F:
    """Command decorator: an expected error (:func:`expected_error`) becomes one stderr line
    ``<command>: <reason naming the file>`` and exit 1; anything else (a bug) keeps its traceback,
    and so does every error with DEXLITE_TRACEBACK=1 in the environment."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not expected_error(e) or os.environ.get("DEXLITE_TRACEBACK", "") not in ("", "0"):
                raise
            fail(f"{fn.__name__.replace('_', ' ')}: {e}")

    return wrapper  # type: ignore[return-value]


def command(fn: F) -> F:
    """Register a ``dexlite`` command whose expected errors are one stderr line (:func:`one_line_errors`)."""
    app.command()(one_line_errors(fn))
    return fn


def load_cfg(path: Path | None, sets: list[str] | None, **dag: Any) -> Any:
    """The resolved config (defaults <- file <- --set <- dag options); a bad one exits 2 in one line."""
    try:
        over = parse_overrides(sets or [])
        extra = {k: v for k, v in dag.items() if v is not None}
        if extra:
            over.setdefault("dag", {}).update(extra)
        return load_config(path, over)
    except ConfigError as e:
        fail(f"config error: {e}", 2)
    except OSError as e:  # e.g. the config path is a folder or unreadable
        fail(f"config error: {path}: {e.strerror or e}", 2)


def setup_prefect(out: Path, embedded: bool = True) -> Any:
    """PREFECT_HOME + API before Prefect is imported; returns the embedded server (or None)."""
    from flows import env

    home = env.prefect_home(out)
    env.configure(home)
    try:
        url, server = env.ensure_api(home, embedded=embedded)
    except RuntimeError as e:
        fail(str(e))
    typer.secho(f"Prefect API {url} ({'embedded' if server else 'server'}; PREFECT_HOME={home})", err=True,
                fg=typer.colors.BRIGHT_BLACK)
    return server


def deployment_params(config_path: Path | None, cfg: Any, out: Path, sets: list[str] | None) -> dict[str, Any]:
    """Flow parameters of a deployment: the config file (re-read at every run) or the resolved config."""
    params: dict[str, Any] = {"out": str(out.resolve()), "overrides": parse_overrides(sets or []) or None}
    if config_path is not None:
        params["config_file"] = str(config_path.resolve())
    else:
        params["config"] = cfg.to_dict()
    return params


def size_option(size: str, allow_real: bool = True) -> float | None:
    """A given ``--size``: a positive number of metres, or (`allow_real`) "real" -> None (keep the
    mesh's size). A bad value exits 2 in one line."""
    if allow_real and size.strip().lower() == "real":
        return None
    try:
        metres = float(size)
    except ValueError:
        metres = -1.0
    if not 0 < metres < math.inf:
        alternative = " or 'real'" if allow_real else ""
        fail(f"--size {size!r}: expected a positive number of metres{alternative}", 2)
    return metres


def units_option(units: str | None) -> str | None:
    """``--units``: m, cm or mm (None when not given); anything else exits 2 in one line."""
    if units is not None and units not in ("m", "cm", "mm"):
        fail(f"--units {units!r}: expected m, cm or mm", 2)
    return units


def read_grasps_arg(command: str, grasps: Path, objects: Path) -> Any:
    """The grasp table named on the command line (any Parquet file `read_grasp_table` accepts; its
    convention note on stderr) and a check of its objects folder; each problem is one line, exit 1."""
    from storage.parquet import read_grasp_table

    try:
        table, note = read_grasp_table(grasps)
    except (FileNotFoundError, ValueError) as e:
        fail(f"{command}: {e}")
    if note:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    if table.num_rows == 0:
        fail(f"{command}: {grasps}: no grasps (0 rows)")
    if not objects.is_dir():
        fail(f"{command}: {objects}: objects folder not found")
    return table


def quiet_logging() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
