"""Thin Prefect tasks over the stages (`stage_tasks`): each commits one artifact and returns a pointer."""
