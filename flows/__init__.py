"""Prefect flows over the DexLite DAG (`pipeline`), the `dexlite` CLI (`cli`), config files and the
Prefect environment (`configfile`, `env`: no Prefect import, so the CLI configures Prefect first)."""
