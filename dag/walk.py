"""The one walk over stages and rounds that gives each stage run its key and inputs.

``dexlite status`` (:func:`plan`, reading manifests only) and ``flows.pipeline.execute`` (running
what is missing) walk the stages through :class:`KeyWalk`, so both agree on every key, rounds
included. Round ``r > 1`` of the Dex1B loop sees the previous round's artifacts as
``<stage>@previous``; a stage whose key did not change from the last round (everything upstream of
the loop) is not walked again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dag.graph import topo_order
from dag.keys import artifact_digest, stage_key
from dag.spec import StageSpec, input_names, previous


@dataclass(frozen=True)
class Step:
    """One stage run of the walk. ``key`` is None when an upstream stage is not done (blocked)."""

    round: int
    index: int  # 1-based position in the order
    name: str
    spec: StageSpec
    key: str | None
    inputs: dict[str, str]  # input name -> key (``dataset@previous`` for the previous round's)

    @property
    def label(self) -> str:
        """``<stage>`` in round 1, ``<stage>@round<r>`` after."""
        return self.name if self.round == 1 else f"{self.name}@round{self.round}"


class KeyWalk:
    """Iterate :class:`Step` s in run order; report each finished one with :meth:`done` (its content
    digest keys the stages downstream). A step whose upstream was never reported is blocked."""

    def __init__(self, stages: Mapping[str, StageSpec], cfg: Any, targets: Iterable[str] | None = None,
                 rounds: int = 1) -> None:
        self.stages, self.cfg, self.rounds = stages, cfg, max(1, int(rounds))
        self.order = topo_order(stages, targets)
        self.keys: dict[str, str] = {}
        self.digests: dict[str, str] = {}

    def done(self, name: str, key: str, digest: str) -> None:
        self.keys[name], self.digests[name] = key, digest

    def _next_round(self) -> None:
        """The last round's artifacts become ``<stage>@previous``."""
        for n in self.order:
            if n in self.keys:
                self.keys[previous(n)], self.digests[previous(n)] = self.keys[n], self.digests[n]

    def __iter__(self) -> Iterator[Step]:
        for rnd in range(1, self.rounds + 1):
            if rnd > 1:
                self._next_round()
            for i, name in enumerate(self.order, 1):
                spec = self.stages[name]
                if any(d not in self.digests for d in spec.deps):
                    yield Step(rnd, i, name, spec, None, {})
                    continue
                key = stage_key(spec, self.cfg, self.digests)
                if rnd > 1 and key == self.keys.get(name):
                    continue  # upstream of the loop: the same artifact as last round
                yield Step(rnd, i, name, spec, key, {d: self.keys[d] for d in input_names(spec, self.keys)})


@dataclass
class StageState:
    """What ``dexlite status`` prints for one stage run."""

    name: str  # the step's label
    state: str  # "done" | "missing" | "blocked" (an upstream stage is not done)
    key: str | None = None
    path: str | None = None
    digest: str | None = None
    other_keys: list[str] = dataclasses.field(default_factory=list)  # committed outputs of other configs
    summary: dict[str, Any] | None = None


def plan(store: Any, cfg: Any, stages: Mapping[str, StageSpec], targets: Iterable[str] | None = None,
         rounds: int = 1) -> list[StageState]:
    """Status of every stage run (or the targets and their upstream) for ``cfg`` over ``rounds``,
    reading only manifests."""
    walk = KeyWalk(stages, cfg, targets, rounds)
    present = set(store.stages())
    out = []
    for step in walk:
        others = store.list_keys(step.name) if step.name in present else []
        if step.key is None:
            out.append(StageState(step.label, "blocked", other_keys=others))
            continue
        others = [k for k in others if k != step.key]
        path = str(store.stage_dir(step.name, step.key))
        if not store.is_complete(step.name, step.key):
            out.append(StageState(step.label, "missing", step.key, path, None, others))
            continue
        digest = artifact_digest(store, step.name, step.key)
        walk.done(step.name, step.key, digest)
        try:
            summary = store.read_json(step.name, step.key, "summary.json")
        except Exception:  # noqa: BLE001 - a summary is optional
            summary = None
        out.append(StageState(step.label, "done", step.key, path, digest, others, summary))
    return out
