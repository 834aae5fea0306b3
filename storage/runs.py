"""Where a run folder keeps its artifacts: ``dag.artifacts`` (a folder or fsspec URL) when set,
else ``<out>/artifacts``."""

from __future__ import annotations

import os
from pathlib import Path


def store_root(configured: str, out: str | os.PathLike[str]) -> str:
    """The artifact store of the run folder `out` (``configured``: the ``dag.artifacts`` setting)."""
    return configured or str(Path(out).resolve() / "artifacts")
