"""The DAG engine, apart from the stages it runs: no domain imports (no dexlite_core, stages, flows,
tasks or Prefect). A stage is data (:class:`dag.spec.StageSpec`); the engine orders stages, derives
their cache keys and walks them.

- :mod:`dag.spec`: ``StageSpec``, ``Shards``, round inputs (``dataset@previous``), fault injection;
- :mod:`dag.graph`: dependency checks, topological order, upstream / downstream;
- :mod:`dag.codehash`: a stage's code version, from the project modules it actually imports;
- :mod:`dag.keys`: content keys and artifact digests;
- :mod:`dag.walk`: the one walk over stages and rounds that yields each stage's key (``plan`` for
  ``dexlite status``; ``flows.pipeline.execute`` runs the same walk);
- :mod:`dag.runner`: shards run in series in this process (direct calls, tests).
"""
