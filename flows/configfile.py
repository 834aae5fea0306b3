"""Typed YAML config files: ``configs/*.yaml`` -> :class:`dexlite_core.config.PipelineConfig`.

A file overrides the write-up's defaults field by field (nested sections as mappings). Every value is
checked against the dataclass field's type (ints accepted for floats, lists for tuples); unknown keys
and wrong types raise :class:`ConfigError` naming the file and the dotted key. ``select.meshes``
paths are resolved relative to the config file. ``--set section.field=value`` overrides (YAML
syntax for the value) are applied on top.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from dexlite_core.config import PipelineConfig


class ConfigError(ValueError):
    """A config file or override that does not fit :class:`PipelineConfig`."""


def _validate(cfg: PipelineConfig) -> PipelineConfig:
    if cfg.dag.workers < 1 or cfg.dag.shard_size < 1:
        raise ConfigError("dag.workers and dag.shard_size must be >= 1")
    return cfg


def _check(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping (section {tp.__name__}), got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
        return {k: _check(v, hints[k], f"{where}.{k}" if where else k) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:  # a choice: checked once here, the error names the key
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return tuple(_check(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.epochs=3", "select.bundled=[box*]"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.field=value")
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        try:
            node[parts[-1]] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            where = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({where}); quote it") from None
    return out


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Defaults <- YAML file <- overrides, type-checked; mesh paths made absolute."""
    data: dict[str, Any] = {}
    where = "config"
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        where = str(p)
        try:
            loaded = yaml.safe_load(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML ({e})") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
        data = loaded or {}
        base_dir = p.resolve().parent
    data = _merge(data, overrides or {})
    try:
        checked = _check(data, PipelineConfig, "")
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e
    meshes = checked.get("select", {}).get("meshes")
    if meshes:
        checked["select"]["meshes"] = tuple(str((base_dir / m).resolve()) if not Path(m).is_absolute() else m
                                            for m in meshes)
    try:
        return _validate(PipelineConfig.from_dict(checked))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e


def config_from_dict(data: dict[str, Any]) -> PipelineConfig:
    """A config from a plain dict (flow parameters): checked like a file."""
    return _validate(PipelineConfig.from_dict(_check(data, PipelineConfig, "")))


def to_yaml(cfg: PipelineConfig) -> str:
    """The resolved config as YAML (tuples as lists)."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x

    return yaml.safe_dump(plain(cfg.to_dict()), sort_keys=False, default_flow_style=False)
