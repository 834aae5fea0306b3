"""The stage graph: checks, dependency order, upstream and downstream sets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dag.spec import StageSpec


def check_graph(stages: Mapping[str, StageSpec]) -> None:
    """Raise ValueError for unknown dependencies, a name mismatch or a cycle."""
    for name, spec in stages.items():
        if spec.name != name:
            raise ValueError(f"stage table: key {name!r} holds spec named {spec.name!r}")
        for d in (*spec.deps, *spec.feedback):
            if d not in stages:
                raise ValueError(f"stage {name!r} depends on unknown stage {d!r}")
    topo_order(stages)


def upstream(stages: Mapping[str, StageSpec], targets: Iterable[str]) -> set[str]:
    """The targets and all their (transitive) dependencies."""
    out: set[str] = set()
    todo = list(targets)
    while todo:
        n = todo.pop()
        if n not in stages:
            raise KeyError(f"unknown stage {n!r}; stages: {', '.join(stages)}")
        if n not in out:
            out.add(n)
            todo.extend(stages[n].deps)
    return out


def topo_order(stages: Mapping[str, StageSpec], targets: Iterable[str] | None = None) -> list[str]:
    """Stages in dependency order (table order among independent ones); with ``targets``, only the
    targets and everything upstream of them."""
    want = set(stages) if targets is None else upstream(stages, targets)
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: placed

    def visit(n: str, path: tuple[str, ...]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise ValueError(f"stage graph has a cycle: {' -> '.join((*path, n))}")
        state[n] = 1
        for d in stages[n].deps:
            visit(d, (*path, n))
        state[n] = 2
        order.append(n)

    for n in stages:
        if n in want:
            visit(n, ())
    return order


def downstream(stages: Mapping[str, StageSpec], name: str) -> list[str]:
    """Stages that (transitively) depend on ``name``, in dependency order."""
    order = topo_order(stages)
    hit = {name}
    for n in order:
        if any(d in hit for d in stages[n].deps):
            hit.add(n)
    return [n for n in order if n in hit and n != name]
