"""A stage as data: what it reads, what it runs, how it fans out.

Every stage is ``run(inputs, out_dir, cfg) -> dict``: ``inputs`` maps each input name (an upstream
stage, or ``<stage>@previous`` for the previous round's artifact) to its committed artifact folder,
``out_dir`` is an empty folder the stage fills (the store commits it atomically afterwards), and the
returned dict is a small JSON-able summary. ``cfg`` is any config object with ``digest(*sections)``
and ``to_dict()`` (the engine reads nothing else of it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Inputs = dict[str, Path]
StageFn = Callable[..., dict]
FAULT_ENV = "DEXLITE_FAULT"  # "<stage>[,<stage>...]" or "*": the named stages fail on purpose
PREVIOUS_SUFFIX = "@previous"


@dataclass(frozen=True)
class Shards:
    """Fan-out of a stage: ``items(inputs, cfg)`` lists work items (object ids), ``run(inputs, dir,
    cfg, items)`` processes one shard of them into its own folder, ``merge(inputs, dirs, out_dir, cfg)``
    turns the shard folders into the stage's folder.

    ``item_inputs(inputs, cfg, items)``, when given, returns one content digest per item of exactly
    what that item reads (its object folder, its upstream item's key). Each item is then its own
    cached artifact, keyed by that digest, the ``item_config`` sections (default: the stage's) and
    the code (:func:`dag.keys.item_keys`): adding objects to a run computes only the new objects, and
    a killed stage resumes item by item. Without it a shard is keyed by the whole stage's key (stages
    whose every item depends on a shared input, such as a trained model)."""

    items: Callable[[Inputs, Any], list[str]]
    run: Callable[[Inputs, Path, Any, list[str]], dict]
    merge: Callable[[Inputs, list[Path], Path, Any], dict]
    item_inputs: Callable[[Inputs, Any, list[str]], list[str]] | None = None
    item_config: tuple[str, ...] | None = None


@dataclass(frozen=True)
class StageSpec:
    """One node of the DAG.

    deps: upstream stages (their artifact folders are the stage's ``inputs``); config: the config
    sections the stage reads (its cache key hashes exactly these); shards: fan-out, or None;
    extra_inputs: content hashes of files outside the store the stage reads (meshes named in the
    config); resumable: the stage gets a persistent ``work_dir`` (checkpoints survive a killed run);
    gpu: routed to the GPU work pool if one is configured; feedback: stages whose previous-round
    artifact the stage reads from round 2 on; version: bump to invalidate cached artifacts by hand.
    The code version is derived from what the stage's module imports (:mod:`dag.codehash`).
    """

    name: str
    run: StageFn
    deps: tuple[str, ...] = ()
    config: tuple[str, ...] = ()
    shards: Shards | None = None
    extra_inputs: Callable[[Any], dict[str, str]] | None = None
    resumable: bool = False
    gpu: bool = False
    description: str = ""
    version: int = 1
    feedback: tuple[str, ...] = ()

    @property
    def item_sections(self) -> tuple[str, ...]:
        """The config sections that key each item of a per-item stage: ``Shards.item_config``, else
        the stage's."""
        assert self.shards is not None, f"stage {self.name!r} has no shards"
        return self.shards.item_config if self.shards.item_config is not None else self.config

    def functions(self) -> list[Callable[..., Any]]:
        """Every function of the stage (their modules root its code version)."""
        fns: list[Callable[..., Any]] = [self.run]
        if self.shards is not None:
            fns += [self.shards.items, self.shards.run, self.shards.merge]
            if self.shards.item_inputs is not None:
                fns.append(self.shards.item_inputs)
        if self.extra_inputs is not None:
            fns.append(self.extra_inputs)
        return fns


def previous(stage: str) -> str:
    """Input name of `stage`'s artifact from the previous round (``dataset@previous``)."""
    return stage + PREVIOUS_SUFFIX


def input_stage(name: str) -> str:
    """The stage an input name refers to: ``dataset@previous`` -> ``dataset``."""
    return name.removesuffix(PREVIOUS_SUFFIX)


def input_names(spec: StageSpec, available: Iterable[str]) -> list[str]:
    """The inputs of `spec` given what is `available`: its deps, plus its feedback inputs when present."""
    have = set(available)
    return list(spec.deps) + [previous(f) for f in spec.feedback if previous(f) in have]


class StageFault(RuntimeError):
    """An injected failure (``$DEXLITE_FAULT``)."""


def check_fault(stage: str) -> None:
    """Raise :class:`StageFault` when ``$DEXLITE_FAULT`` names ``stage`` (fault injection)."""
    names = {s.strip() for s in os.environ.get(FAULT_ENV, "").split(",") if s.strip()}
    if stage in names or "*" in names:
        raise StageFault(f"injected fault in stage {stage!r} ({FAULT_ENV}={os.environ[FAULT_ENV]})")
