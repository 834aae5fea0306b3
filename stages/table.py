"""The stage table: the DAG as data, in run order. Flows, tasks, the CLI and tests read it through
:func:`get_stages`, which a test or plugin may point at another table (``$DEXLITE_STAGE_REGISTRY``)."""

from __future__ import annotations

import importlib
import os

from dag.graph import check_graph
from dag.spec import StageSpec
from stages import baseline, dataset, evaluate, lift, objects, postopt, sample, seed, stability, train

STAGE_REGISTRY_ENV = "DEXLITE_STAGE_REGISTRY"  # "package.module:ATTRIBUTE": a substitute stage table

STAGES: dict[str, StageSpec] = {m.SPEC.name: m.SPEC for m in (
    objects, stability, seed, lift, dataset, train, sample, postopt, baseline, evaluate)}
check_graph(STAGES)


def get_stages() -> dict[str, StageSpec]:
    """The stage table in use: :data:`STAGES`, or the one ``$DEXLITE_STAGE_REGISTRY`` names (tests run
    the DAG machinery on toy stages this way)."""
    ref = os.environ.get(STAGE_REGISTRY_ENV, "").strip()
    if not ref:
        return STAGES
    mod, _, attr = ref.partition(":")
    table = getattr(importlib.import_module(mod), attr or "STAGES")
    check_graph(table)
    return table
