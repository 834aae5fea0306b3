"""Thin Prefect tasks over `dexlite_core.stages` (`stage_tasks`)."""
