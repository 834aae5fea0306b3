"""The pipeline's stages, one module per stage (Kedro-style nodes: plain functions, no Prefect), and
the table that wires them (:mod:`stages.table`). Each stage module reads its upstream artifacts,
calls ``dexlite_core`` and writes its artifact; its docstring lists the artifact's files.

A stage is called directly as ``stages.<name>.run(inputs, out_dir, cfg)`` (sharded stages run their
shards in series); the flows run the same functions as Prefect tasks (``tasks/``), fanning shards out.
"""
