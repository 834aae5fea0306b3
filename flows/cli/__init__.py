"""The ``dexlite`` command line, split by concern; every command reuses the stages and the library.

- :mod:`flows.cli.pipeline_cmds`: ``run``, ``stage``, ``status``, ``stages``, ``clean``, ``config show``;
- :mod:`flows.cli.prefect_cmds`: ``server``, ``serve``, ``deploy``;
- :mod:`flows.cli.tool_cmds`: ``ingest``, ``show``, ``evaluate``, ``sample``;
- :mod:`flows.cli.grasp_cmds`: ``grasp`` (validated grasps for your meshes), ``model show|ship``;
- :mod:`flows.cli.dataset_cmds`: ``dataset stats`` (per-split figures and the dataset card);
- :mod:`flows.cli.export_cmds`: ``export`` (grasp tables as DexGraspNet / DexGraspBench / JSON / MJCF);
- :mod:`flows.cli.common`: the app, one-line errors, config loading, Prefect setup.
"""

from flows.cli import dataset_cmds, export_cmds, grasp_cmds, pipeline_cmds, prefect_cmds, tool_cmds  # noqa: F401 - registers the commands
from flows.cli.common import app
from flows.cli.tool_cmds import ALL_PROTOCOLS, Protocol

__all__ = ["ALL_PROTOCOLS", "Protocol", "app", "main"]


def main() -> None:  # pragma: no cover
    app()
